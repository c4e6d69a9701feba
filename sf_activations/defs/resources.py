"""Dagster resources: the Salesforce connection and the sync state store.

The warehouse resource is dagster-duckdb's ``DuckDBResource`` itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field

from sf_activations.config.loader import credential_sources
from sf_activations.config.models import SalesforceConfig
from sf_activations.sync.model import SalesforceUnavailable

if TYPE_CHECKING:
    from sf_activations.salesforce.client import SalesforceClient
    from sf_activations.salesforce.connection import SalesforceCredentials
    from sf_activations.sync.state import StateStore


class SalesforceResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """A Salesforce org (or the emulator). Secrets arrive through ``dg.EnvVar``.

    The client retries transient faults of each call (login included) itself; ``login_attempts``
    can add whole rounds of login retries for orgs behind flaky networks.
    """

    login_url: str = Field(
        description="https://login.salesforce.com, https://test.salesforce.com, a My Domain URL or the emulator's URL."
    )
    auth: str = Field(
        default="password",
        description="jwt | client_credentials | refresh_token | password | session",
    )
    username: str | None = Field(default=None, description="API user name (jwt, password).")
    password: str | None = Field(default=None, description="Password (password flow).")
    security_token: str | None = Field(default=None, description="Security token (password flow).")
    consumer_key: str | None = Field(default=None, description="Connected app consumer key.")
    consumer_secret: str | None = Field(default=None, description="Connected app consumer secret.")
    private_key: str | None = Field(default=None, description="JWT private key: PEM text or path.")
    refresh_token: str | None = Field(default=None, description="OAuth refresh token.")
    session_id: str | None = Field(
        default=None, description="An existing session id (session flow)."
    )
    instance_url: str | None = Field(default=None, description="Instance URL (session flow).")
    ca_cert: str | None = Field(default=None, description="PEM file to trust (the emulator's CA).")
    sandbox: bool = Field(default=False, description="Log in to a sandbox (test.salesforce.com).")
    api_version: str = Field(default="59.0", description="REST API version, without the v.")
    login_attempts: int = Field(
        default=1,
        description="Extra rounds of login attempts on transient faults, on top of the client's own retries.",
    )
    bulk_progress_every_s: float = Field(
        default=10.0,
        description="While a Bulk job runs, log the records processed so far at most this often (seconds).",
    )

    @classmethod
    def from_config(cls, sf: SalesforceConfig, **settings: Any) -> SalesforceResource:
        """The resource for a project's ``salesforce`` section: env var names become ``dg.EnvVar``.

        ``settings`` set the resource's own options (``login_attempts``, ``bulk_progress_every_s``).
        """
        values: dict[str, Any] = {}
        for field, (literal, env_name) in credential_sources(sf).items():
            values[field] = dg.EnvVar(env_name) if env_name is not None else literal
        return cls(
            auth=sf.auth, sandbox=sf.sandbox, api_version=sf.api_version, **values, **settings
        )

    def credentials(self) -> SalesforceCredentials:
        """The typed credentials (``repr`` hides the secrets)."""
        from sf_activations.salesforce.connection import SalesforceCredentials

        return SalesforceCredentials(
            login_url=self.login_url,
            auth=self.auth,  # type: ignore[arg-type]  # checked by SalesforceCredentials
            username=self.username,
            password=self.password,
            security_token=self.security_token,
            consumer_key=self.consumer_key,
            consumer_secret=self.consumer_secret,
            private_key=self.private_key,
            refresh_token=self.refresh_token,
            session_id=self.session_id,
            instance_url=self.instance_url,
            ca_cert=self.ca_cert,
            sandbox=self.sandbox,
            api_version=self.api_version,
        )

    @contextmanager
    def client(self) -> Iterator[SalesforceClient]:
        """A logged-in client for one run, closed afterwards."""
        from sf_activations.salesforce.connection import connect

        creds = self.credentials()
        attempt = 1
        while True:
            try:
                client = connect(creds)
                break
            except SalesforceUnavailable:
                if attempt >= self.login_attempts:
                    raise
                time.sleep(min(2.0**attempt, 30.0))
                attempt += 1
        try:
            yield client
        finally:
            client.close()


class StateStoreResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The per-record sync state (one SQLite file per project)."""

    path: str = Field(description="SQLite file holding every sync's per-record state.")

    @contextmanager
    def store(self) -> Iterator[StateStore]:
        """An open ``StateStore`` for one run."""
        from pathlib import Path

        from sf_activations.sync.state import StateStore

        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        store = StateStore(self.path)
        try:
            yield store
        finally:
            store.close()
