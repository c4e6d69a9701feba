"""One emulated Salesforce org: records, DML semantics, validation and vectorised Bulk ingest."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from sf_activations.emulator.schema import ObjectDef, Schema

if TYPE_CHECKING:
    import polars as pl

    from sf_activations.emulator.schema import FieldDef

FieldAccess = Literal["edit", "read", "none"]


@dataclass
class ObjectAccess:
    """Object-level permissions of the connected user's profile."""

    create: bool = True
    read: bool = True
    edit: bool = True
    delete: bool = True


@dataclass
class Permissions:
    """What the connected (API) user may do: the profile plus permission sets, flattened."""

    api_enabled: bool = True
    view_all_data: bool = True
    objects: dict[str, ObjectAccess] = field(default_factory=dict)  # keyed by lower-case name
    fields: dict[str, FieldAccess] = field(default_factory=dict)  # "object.field" lower-case

    def object_access(self, sobject: str) -> ObjectAccess:
        """The access to ``sobject`` (full access unless restricted)."""
        return self.objects.get(sobject.lower(), ObjectAccess())

    def set_object(
        self,
        sobject: str,
        *,
        create: bool = True,
        read: bool = True,
        edit: bool = True,
        delete: bool = True,
    ) -> None:
        """Restrict (or restore) object-level access."""
        self.objects[sobject.lower()] = ObjectAccess(create, read, edit, delete)

    def field_access(self, sobject: str, field_name: str) -> FieldAccess:
        """'edit', 'read' or 'none' for one field (edit unless restricted)."""
        return self.fields.get(f"{sobject}.{field_name}".lower(), "edit")

    def set_field(self, sobject: str, field_name: str, access: FieldAccess) -> None:
        """Set field-level security for one field."""
        self.fields[f"{sobject}.{field_name}".lower()] = access


@dataclass
class BulkOutcome:
    """Per-row results of one Bulk ingest, in input row order."""

    ids: list[str | None]
    created: list[bool]
    errors: list[str | None]  # sf__Error cells "CODE:message:fields --"; None = success
    apex_ms: int = 0


class Org:
    """One emulated org. Thread-safe: every public method holds ``self.lock`` (an RLock).

    Standard duplicate rules are OFF by default (``duplicate_rules_enabled``) so that plain
    syncs work; turn them on to get DUPLICATES_DETECTED like a fresh org.
    """

    def __init__(
        self,
        schema: Schema | None = None,
        *,
        username: str = "admin@emulator.example",
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.schema = schema if schema is not None else Schema()
        self.username = username
        self.org_id = ""
        self.user_id = ""
        self.duplicate_rules_enabled = False
        self.allow_update_converted_leads = False
        self.permissions = Permissions()
        raise NotImplementedError

    # ---- metadata ----
    def describe_global(self) -> dict[str, Any]:
        """Describe global: ``{"encoding","maxBatchSize","sobjects":[...]}``."""
        raise NotImplementedError

    def describe(self, sobject: str) -> dict[str, Any]:
        """An object's describe JSON as the connected user sees it."""
        raise NotImplementedError

    def object_def(self, sobject: str) -> ObjectDef:
        """The object's definition (SalesforceError NOT_FOUND for an unknown object)."""
        raise NotImplementedError

    def visible_field(self, sobject: str, field: str) -> FieldDef | None:
        """The field, or None if unknown or hidden by field-level security."""
        raise NotImplementedError

    # ---- single-record DML ----
    def create(self, sobject: str, values: Mapping[str, Any]) -> str:
        """Insert one record from JSON values; returns its 18-character id."""
        raise NotImplementedError

    def update(self, sobject: str, record_id: str, values: Mapping[str, Any]) -> None:
        """Update one record from JSON values."""
        raise NotImplementedError

    def upsert(
        self, sobject: str, ext_field: str, ext_value: str, values: Mapping[str, Any]
    ) -> tuple[str, bool]:
        """Upsert by external id; returns (id, created). MoreThanOneRecord on several matches."""
        raise NotImplementedError

    def delete(self, sobject: str, record_id: str) -> None:
        """Move one record to the recycle bin."""
        raise NotImplementedError

    def retrieve(
        self, sobject: str, record_id: str, fields: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """One record as REST returns it (with ``attributes``)."""
        raise NotImplementedError

    def retrieve_by_external_id(
        self, sobject: str, ext_field: str, value: str, fields: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """One record by external id (MoreThanOneRecord on several matches)."""
        raise NotImplementedError

    def sobject_of_id(self, record_id: str) -> str | None:
        """The object name an id belongs to, by key prefix."""
        raise NotImplementedError

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Undo every DML done inside the block if an exception leaves it."""
        raise NotImplementedError
        yield

    # ---- Bulk API 2.0 ingest ----
    def bulk_apply(
        self,
        sobject: str,
        operation: str,
        frame: pl.DataFrame,
        external_id_field: str | None = None,
    ) -> BulkOutcome:
        """Apply one Bulk ingest job's rows (all-string frame) and return per-row outcomes."""
        raise NotImplementedError

    # ---- for SOQL ----
    def rows(self, sobject: str, *, include_deleted: bool = False) -> Iterator[dict[str, Any]]:
        """Canonical record dicts in insertion order."""
        raise NotImplementedError

    def row(
        self, sobject: str, record_id: str, *, include_deleted: bool = True
    ) -> dict[str, Any] | None:
        """One canonical record dict, or None."""
        raise NotImplementedError

    # ---- org behaviour and faults ----
    def convert_lead(
        self,
        lead_id: str,
        *,
        account_id: str | None = None,
        contact_id: str | None = None,
        create_opportunity: bool = False,
        converted_status: str | None = None,
    ) -> dict[str, Any]:
        """Convert a lead (test hook standing in for SOAP convertLead)."""
        raise NotImplementedError

    def add_lock_rule(
        self,
        *,
        sobject: str | None = None,
        share: float = 1.0,
        parent_id: str | None = None,
        count: int | None = None,
    ) -> None:
        """Make matching records fail with UNABLE_TO_LOCK_ROW."""
        raise NotImplementedError

    def add_trigger(
        self,
        sobject: str,
        *,
        field: str | None = None,
        equals: object = None,
        message: str = "Record rejected by trigger",
        apex_ms_per_record: float = 0.0,
    ) -> None:
        """Add a simulated Apex trigger (rejects matching records and/or costs Apex time)."""
        raise NotImplementedError

    def clear_rules(self) -> None:
        """Remove all lock rules and triggers."""
        raise NotImplementedError

    def count(self, sobject: str, *, include_deleted: bool = False) -> int:
        """Number of records of ``sobject``."""
        raise NotImplementedError
