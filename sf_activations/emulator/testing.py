"""Helpers for tests that talk to the emulator through the real simple-salesforce client.

simple-salesforce hard-codes the login hosts (login/test/*.my.salesforce.com) and always uses
``https://``. ``LoginHostAdapter`` sends those hosts to the emulator instead, telling it which
host was meant (``X-Original-Host``); certificate verification stays on, against the
emulator's CA. The product has its own adapter in ``sf_activations.salesforce``; this one is
deliberately tiny.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from sf_activations.emulator.server import Emulator, EmulatorConfig, EmulatorServer

if TYPE_CHECKING:
    from simple_salesforce import Salesforce

    from sf_activations.emulator.org import Org


class LoginHostAdapter(HTTPAdapter):
    """Rewrites ``https://*.salesforce.com/...`` to the emulator's ``host:port``."""

    def __init__(self, target_netloc: str) -> None:
        super().__init__()
        self.target_netloc = target_netloc

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Redirect Salesforce login hosts, then send as usual."""
        parts = urlsplit(request.url or "")
        host = (parts.hostname or "").lower()
        if host.endswith(".salesforce.com"):
            request.headers["X-Original-Host"] = host
            request.url = urlunsplit(parts._replace(netloc=self.target_netloc))
        return super().send(request, *args, **kwargs)


def client_session(server: EmulatorServer) -> requests.Session:
    """A requests session that reaches the emulator with TLS verification on."""
    session = requests.Session()
    # REQUESTS_CA_BUNDLE is set on these machines; with trust_env on, requests would ignore
    # ``verify`` below (salesforce-api.md §0.3).
    session.trust_env = False
    session.verify = str(server.certs.ca_cert)
    session.mount("https://", LoginHostAdapter(urlsplit(server.url).netloc))
    return session


def login(
    server: EmulatorServer,
    flow: str = "soap",
    *,
    session: requests.Session | None = None,
    **overrides: Any,
) -> Salesforce:
    """A ``simple_salesforce.Salesforce`` logged in to the emulator through ``flow``.

    Flows: ``soap`` (username, password, security token), ``sandbox`` (the same on
    test.salesforce.com), ``password`` (OAuth username-password), ``jwt`` (JWT bearer with the
    connected app's key), ``client_credentials`` (on the My Domain ``acme.my``) and ``direct``
    (the initial access token and the instance URL). ``overrides`` replace constructor
    arguments (e.g. ``password="wrong"``).
    """
    from simple_salesforce import Salesforce

    info = server.connection_info
    kwargs: dict[str, Any]
    if flow in ("soap", "sandbox"):
        kwargs = {
            "username": info["username"],
            "password": info["password"],
            "security_token": info["security_token"],
        }
        if flow == "sandbox":
            kwargs["domain"] = "test"
    elif flow == "password":
        kwargs = {
            "username": info["username"],
            "password": info["password"] + info["security_token"],
            "consumer_key": info["consumer_key"],
            "consumer_secret": info["consumer_secret"],
        }
    elif flow == "jwt":
        kwargs = {
            "username": info["username"],
            "consumer_key": info["consumer_key"],
            "privatekey_file": info["jwt_private_key"],
        }
    elif flow == "client_credentials":
        kwargs = {
            "consumer_key": info["consumer_key"],
            "consumer_secret": info["consumer_secret"],
            "domain": "acme.my",
        }
    elif flow == "direct":
        kwargs = {"session_id": info["access_token"], "instance_url": info["instance_url"]}
    else:
        msg = f"unknown login flow {flow!r}"
        raise ValueError(msg)
    kwargs.update(overrides)
    return Salesforce(session=session or client_session(server), **kwargs)


@contextmanager
def running_emulator(
    org: Org | None = None,
    state_dir: str | Path | None = None,
    *,
    config: EmulatorConfig | None = None,
) -> Iterator[EmulatorServer]:
    """An emulator serving HTTPS on a free loopback port for the duration of the block."""
    server = EmulatorServer(Emulator(org, config), state_dir=state_dir)
    with server:
        yield server
