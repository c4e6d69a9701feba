"""What a sync is, in the engine's terms (the config layer builds these from YAML)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Behavior = Literal[
    "update_or_create",
    "create_only",
    "update_only",
    "mirror",
    "delete",
    "add",
    "lead_or_contact",
    "lead_or_account",
]
PartitionKind = Literal["none", "hash", "time"]

PARTNER_OBJECTS: dict[str, str] = {"lead_or_contact": "Contact", "lead_or_account": "Account"}
"""Multi-destination behaviors: a record goes to this object when one there has its key, else
it is upserted as a Lead (the sync's ``sobject``)."""


@dataclass(frozen=True, slots=True)
class FieldMapping:
    """One source column written to one Salesforce field.

    ``lookup_field`` makes it a lookup by external id: the column holds the parent's
    external id value and is sent as ``<relationship>.<lookup_field>`` (e.g. the mapping
    ``account_ext -> AccountId`` with ``lookup_field='External_Id__c'`` is sent as the Bulk
    column ``Account.External_Id__c``).
    """

    source: str
    target: str
    lookup_field: str | None = None


@dataclass(frozen=True, slots=True)
class SyncKey:
    """The column that identifies a record and the Salesforce field it matches."""

    source: str
    target: str  # an External ID field for update_or_create; Id or any field for update_only


@dataclass(frozen=True, slots=True)
class PartitionSpec:
    kind: PartitionKind = "none"
    buckets: int = 1  # for kind == "hash"


@dataclass(frozen=True, slots=True)
class SyncSpec:
    """One sync: a source model into one Salesforce object with one behavior."""

    name: str
    source_model: str
    sobject: str
    behavior: Behavior
    key: SyncKey
    mappings: tuple[FieldMapping, ...]
    partitions: PartitionSpec = field(default_factory=PartitionSpec)
    batch_size: int = 100_000  # records per Bulk job (also cut at about 100 MB of CSV)
    # At most this many records to send: REST collections instead of Bulk. None: whichever
    # costs fewer API calls (sf_activations.sync.plan.rest_is_cheaper).
    rest_threshold: int | None = None
    max_rejected_fraction: float = (
        0.05  # the asset check fails above this share of rejected records
    )
    max_attempts: int = 0  # 0 = retry rejected records on every run, forever
    # Mirror: a run that would delete more than this share of the records it tracks stops
    # before sending anything (a model that suddenly lost rows must not empty Salesforce).
    max_delete_fraction: float = 0.5
    schedule: str | None = None  # cron
    source_file: str = ""  # the YAML file it came from, for error messages
