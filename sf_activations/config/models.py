"""Pydantic models of the user's project files: ``sf_activations.yaml`` and ``syncs/*.yaml``.

These only describe and check the YAML's shape; ``loader.py`` turns them into the engine's
``SyncSpec`` and reports problems with the file, the sync and the field named.
Secrets never appear in YAML: the Salesforce section names environment variables (``*_env``).
"""

from __future__ import annotations

import re
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sf_activations.sync.spec import Behavior, PartitionKind

AuthFlow = Literal["jwt", "client_credentials", "refresh_token", "password", "session"]
Granularity = Literal["hourly", "daily", "weekly", "monthly"]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*(_{1,2}[A-Za-z0-9]+)*$")
_ASSET_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,\-?LW#]+$")
_CRON_MACROS = frozenset({"@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually"})

# Keys a user might be tempted to write with the secret itself in it.
_SECRET_KEYS = (
    "password",
    "security_token",
    "consumer_secret",
    "private_key",
    "refresh_token",
    "session_id",
    "consumer_key",
)

# Human spellings of behaviors (as the product guide writes them) -> the engine's names.
_BEHAVIOR_ALIASES: dict[str, str] = {
    "update or create": "update_or_create",
    "update and create": "update_or_create",
    "upsert": "update_or_create",
    "create only": "create_only",
    "update only": "update_only",
    "lead or contact": "lead_or_contact",
    "lead or account": "lead_or_account",
}
BEHAVIORS: tuple[str, ...] = get_args(Behavior)


def _check_env_name(value: str | None) -> str | None:
    if value is not None and not _ENV_NAME.match(value):
        # The value is not repeated: a user who pasted the secret itself here must not see it
        # printed in a terminal, a CI log or the Dagster UI.
        msg = (
            "is not an environment variable name: write the NAME of the variable that holds "
            "the value (letters, digits and _, e.g. SF_PASSWORD), not the value itself "
            "(which is not repeated here)"
        )
        raise ValueError(msg)
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class WarehouseConfig(_Strict):
    """Where models are built and read. DuckDB (a local file) is the default warehouse."""

    type: Literal["duckdb"] = Field("duckdb", description="Warehouse kind; only duckdb for now.")
    path: str = Field("warehouse.duckdb", description="DuckDB file, relative to the project dir.")
    path_env: str | None = Field(None, description="Env var overriding `path`.")

    _env = field_validator("path_env")(_check_env_name)


class SalesforceConfig(_Strict):
    """How to reach Salesforce. Every secret is the NAME of an environment variable."""

    login_url: str = Field(
        "https://login.salesforce.com",
        description="https://login.salesforce.com, https://test.salesforce.com, a My Domain URL or the emulator's URL.",
    )
    login_url_env: str | None = None
    auth: AuthFlow = "password"
    username: str | None = None
    username_env: str | None = None
    password_env: str | None = None
    security_token_env: str | None = None
    consumer_key_env: str | None = None
    consumer_secret_env: str | None = None
    private_key_env: str | None = Field(
        None, description="Env var holding the PEM text or its path."
    )
    private_key_path: str | None = Field(None, description="Path to the JWT private key (PEM).")
    refresh_token_env: str | None = None
    session_id_env: str | None = None
    instance_url: str | None = None
    instance_url_env: str | None = None
    ca_cert: str | None = Field(None, description="PEM file to trust (the emulator's CA).")
    ca_cert_env: str | None = None
    sandbox: bool = False
    api_version: str = "59.0"

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in _SECRET_KEYS:
                if key in data:
                    msg = (
                        f"'{key}' must not be written in the YAML; put the value in an environment "
                        f"variable and write '{key}_env: <VARIABLE_NAME>' instead"
                    )
                    raise ValueError(msg)
        return data

    @field_validator(
        "login_url_env",
        "username_env",
        "password_env",
        "security_token_env",
        "consumer_key_env",
        "consumer_secret_env",
        "private_key_env",
        "refresh_token_env",
        "session_id_env",
        "instance_url_env",
        "ca_cert_env",
    )
    @classmethod
    def _env_names(cls, value: str | None) -> str | None:
        return _check_env_name(value)

    @field_validator("login_url")
    @classmethod
    def _https(cls, value: str) -> str:
        if not value.startswith("https://"):
            msg = f"login_url '{value}' must start with https:// (Salesforce and the emulator only speak HTTPS)"
            raise ValueError(msg)
        return value.rstrip("/")

    @model_validator(mode="after")
    def _auth_needs(self) -> SalesforceConfig:
        needs: dict[str, tuple[tuple[str, ...], ...]] = {
            # each inner tuple: at least one of these keys must be set
            "password": (("username", "username_env"), ("password_env",)),
            "jwt": (
                ("username", "username_env"),
                ("consumer_key_env",),
                ("private_key_env", "private_key_path"),
            ),
            "client_credentials": (("consumer_key_env",), ("consumer_secret_env",)),
            "refresh_token": (("consumer_key_env",), ("refresh_token_env",)),
            "session": (("session_id_env",), ("instance_url", "instance_url_env")),
        }
        missing = [
            " or ".join(group)
            for group in needs[self.auth]
            if all(getattr(self, key) is None for key in group)
        ]
        if missing:
            msg = f"auth '{self.auth}' needs {', '.join(missing)} (the name of the environment variable holding each secret)"
            raise ValueError(msg)
        return self


class StateConfig(_Strict):
    """Where the per-record sync state lives (one SQLite file per project)."""

    path: str = Field(".sf_state/state.sqlite", description="Relative to the project dir.")
    path_env: str | None = None

    _env = field_validator("path_env")(_check_env_name)


class SourceConfig(_Strict):
    """A table built outside this project (a dbt model, a loader's table) that syncs may read."""

    name: str
    table: str = Field(description="Table name in the warehouse, optionally schema-qualified.")
    asset_key: list[str] | None = Field(
        None, description="The Dagster asset that builds the table; default [name]."
    )
    description: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _ASSET_NAME.match(value):
            msg = f"'{value}' must be letters, digits and _ only"
            raise ValueError(msg)
        return value


class TimePartitionConfig(_Strict):
    """Time partitions of a model: each partition holds the rows whose ``column`` falls in it."""

    column: str
    start: str = Field(description="First partition, e.g. 2024-01-01.")
    granularity: Granularity = "daily"
    end_offset: int = 0


class ModelConfig(_Strict):
    """Optional settings of one ``models/<name>.sql``."""

    description: str | None = None
    time_partitions: TimePartitionConfig | None = None


class ProjectConfig(_Strict):
    """``sf_activations.yaml``: the connections and the project-wide settings."""

    warehouse: WarehouseConfig = Field(default_factory=WarehouseConfig)  # type: ignore[arg-type]
    salesforce: SalesforceConfig
    state: StateConfig = Field(default_factory=StateConfig)  # type: ignore[arg-type]
    sources: list[SourceConfig] = Field(default_factory=list)
    models: dict[str, ModelConfig] = Field(default_factory=dict)


class KeyConfig(_Strict):
    source: str = Field(description="Source column holding the record's identifier.")
    target: str = Field(
        description="Salesforce field it matches (an External ID for update_or_create)."
    )

    @field_validator("target")
    @classmethod
    def _api_name(cls, value: str) -> str:
        return _check_api_name(value)


class MappingConfig(_Strict):
    source: str = Field(description="Source column.")
    target: str = Field(description="Salesforce field API name.")
    lookup: str | None = Field(
        None, description="Match the parent by this external id field (a lookup by external id)."
    )

    @field_validator("target", "lookup")
    @classmethod
    def _api_name(cls, value: str | None) -> str | None:
        return None if value is None else _check_api_name(value)


class PartitionConfig(_Strict):
    kind: PartitionKind = "none"
    buckets: int = Field(1, ge=1, le=1024)

    @model_validator(mode="after")
    def _buckets(self) -> PartitionConfig:
        if self.kind != "hash" and self.buckets != 1:
            msg = f"buckets only applies to kind 'hash' (kind is '{self.kind}')"
            raise ValueError(msg)
        return self


class SyncConfig(_Strict):
    """One ``syncs/<name>.yaml``."""

    name: str | None = Field(None, description="Default: the file name without .yaml.")
    source: str = Field(description="A model (models/<name>.sql) or a declared source.")
    object: str = Field(description="Salesforce object API name, e.g. Account or Invoice__c.")
    behavior: Behavior
    key: KeyConfig
    mappings: list[MappingConfig] = Field(
        description="The columns to write: at least one, except for behavior delete (write [])."
    )
    partitions: PartitionConfig = Field(default_factory=PartitionConfig)  # type: ignore[arg-type]
    batch_size: int = Field(100_000, ge=1, le=150_000_000)
    rest_threshold: int | None = Field(
        None,
        ge=0,
        description="Send through REST collections up to this many records, Bulk above. "
        "Default: whichever costs fewer API calls (REST up to about 1,000 records).",
    )
    max_rejected_fraction: float = Field(0.05, ge=0.0, le=1.0)
    max_attempts: int = Field(0, ge=0)
    max_delete_fraction: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Mirror: a run that would delete more than this share of the sync's records "
        "stops before sending anything. Raise it (up to 1) when a big removal is intended.",
    )
    schedule: str | None = Field(None, description="Cron, e.g. '0 * * * *' (hourly).")
    after: list[str] = Field(
        default_factory=list,
        description="Syncs that must run first (e.g. the Account sync before a Contact sync whose lookups need the accounts).",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not _ASSET_NAME.match(value):
            msg = f"sync name '{value}' must be letters, digits and _ only (it becomes a Dagster asset name)"
            raise ValueError(msg)
        return value

    @field_validator("object")
    @classmethod
    def _object(cls, value: str) -> str:
        return _check_api_name(value)

    @field_validator("behavior", mode="before")
    @classmethod
    def _behavior(cls, value: Any) -> Any:
        if isinstance(value, str):
            norm = value.strip().lower()
            norm = _BEHAVIOR_ALIASES.get(norm, norm.replace(" ", "_").replace("-", "_"))
            if norm not in BEHAVIORS:
                msg = f"unknown behavior '{value}'; use one of: {', '.join(BEHAVIORS)}"
                raise ValueError(msg)
            return norm
        return value

    @field_validator("partitions", mode="before")
    @classmethod
    def _partitions(cls, value: Any) -> Any:
        # `partitions: none` / `partitions: time` as a shorthand
        if isinstance(value, str):
            return {"kind": value}
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return value
        text = value.strip()
        fields = text.split()
        if text in _CRON_MACROS or (len(fields) == 5 and all(_CRON_FIELD.match(f) for f in fields)):
            return text
        msg = f"'{value}' is not a cron schedule; write five fields, e.g. '0 * * * *' (hourly) or '30 6 * * *' (daily at 06:30 UTC)"
        raise ValueError(msg)


def _check_api_name(value: str) -> str:
    # A letter, then letters and digits joined by single underscores; __ separates a namespace
    # and the __c/__r suffixes (ns__Field__c).
    if not _API_NAME.match(value):
        msg = f"'{value}' is not a Salesforce API name (e.g. Account, Name, External_Id__c)"
        raise ValueError(msg)
    return value
