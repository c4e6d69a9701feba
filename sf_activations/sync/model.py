"""Typed records shared by the engine and the Salesforce layer.

The Salesforce layer parses API payloads into these once; the engine never sees raw JSON.
The ``SalesforcePort`` protocol is everything the engine asks of Salesforce.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

BulkOperation = Literal["insert", "update", "upsert", "delete", "hardDelete"]
BulkState = Literal["Open", "UploadComplete", "InProgress", "JobComplete", "Failed", "Aborted"]


@dataclass(frozen=True, slots=True)
class FieldDescribe:
    """One field of an object's describe(), the attributes the engine relies on."""

    name: str
    label: str
    type: str  # Salesforce type: string, email, picklist, multipicklist, boolean, double, int, date, datetime, reference, id, ...
    length: int = 0
    precision: int = 0
    scale: int = 0
    external_id: bool = False
    unique: bool = False
    case_sensitive: bool = False
    id_lookup: bool = False
    filterable: bool = True  # usable in a SOQL WHERE (long text areas are not)
    createable: bool = False
    updateable: bool = False
    nillable: bool = True
    defaulted_on_create: bool = False
    calculated: bool = False
    restricted_picklist: bool = False
    picklist_values: tuple[str, ...] = ()  # active values only
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None

    @property
    def required_on_create(self) -> bool:
        """Salesforce rejects a create without this field (REQUIRED_FIELD_MISSING)."""
        return (
            self.createable
            and not self.nillable
            and not self.defaulted_on_create
            and self.type != "boolean"
        )

    @classmethod
    def from_api(cls, payload: Mapping[str, Any]) -> FieldDescribe:
        """Build from one element of describe()'s ``fields`` array."""
        return cls(
            name=str(payload["name"]),
            label=str(payload.get("label") or payload["name"]),
            type=str(payload.get("type", "string")),
            length=int(payload.get("length") or 0),
            precision=int(payload.get("precision") or 0),
            scale=int(payload.get("scale") or 0),
            external_id=bool(payload.get("externalId", False)),
            unique=bool(payload.get("unique", False)),
            case_sensitive=bool(payload.get("caseSensitive", False)),
            id_lookup=bool(payload.get("idLookup", False)),
            filterable=bool(payload.get("filterable", True)),
            createable=bool(payload.get("createable", False)),
            updateable=bool(payload.get("updateable", False)),
            nillable=bool(payload.get("nillable", True)),
            defaulted_on_create=bool(payload.get("defaultedOnCreate", False)),
            calculated=bool(payload.get("calculated", False)),
            restricted_picklist=bool(payload.get("restrictedPicklist", False)),
            picklist_values=tuple(
                str(v["value"])
                for v in payload.get("picklistValues") or ()
                if v.get("active", True)
            ),
            reference_to=tuple(str(r) for r in payload.get("referenceTo") or ()),
            relationship_name=payload.get("relationshipName"),
        )


@dataclass(frozen=True, slots=True)
class ObjectDescribe:
    """An object's describe(): its name and fields, looked up case-insensitively."""

    name: str
    label: str
    key_prefix: str | None
    createable: bool
    updateable: bool
    deletable: bool
    fields: tuple[FieldDescribe, ...]
    _by_lower: Mapping[str, FieldDescribe] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_lower", {f.name.lower(): f for f in self.fields})

    def field(self, name: str) -> FieldDescribe | None:
        """The field called ``name`` (any case), or None."""
        return self._by_lower.get(name.lower())

    def relationship(self, relationship_name: str) -> FieldDescribe | None:
        """The reference field whose relationship is ``relationship_name`` (e.g. ``Account``)."""
        low = relationship_name.lower()
        for f in self.fields:
            if f.relationship_name and f.relationship_name.lower() == low:
                return f
        return None

    @classmethod
    def from_api(cls, payload: Mapping[str, Any]) -> ObjectDescribe:
        """Build from the JSON of ``GET /sobjects/{name}/describe``."""
        return cls(
            name=str(payload["name"]),
            label=str(payload.get("label") or payload["name"]),
            key_prefix=payload.get("keyPrefix"),
            createable=bool(payload.get("createable", False)),
            updateable=bool(payload.get("updateable", False)),
            deletable=bool(payload.get("deletable", False)),
            fields=tuple(FieldDescribe.from_api(f) for f in payload.get("fields") or ()),
        )


@dataclass(frozen=True, slots=True)
class RecordError:
    """Salesforce's verdict on one record: its status code, message and fields."""

    code: str
    message: str
    fields: tuple[str, ...] = ()

    @classmethod
    def parse_bulk(cls, cell: str) -> RecordError:
        """Parse a Bulk ``sf__Error`` cell: ``CODE:message:field1,field2 --``."""
        text = cell.removesuffix(" --").removesuffix("--")
        code, _, rest = text.partition(":")
        message, sep, fields = rest.rpartition(":")
        if not sep:
            message, fields = rest, ""
        return cls(
            code=code.strip(), message=message, fields=tuple(f for f in fields.split(",") if f)
        )


@dataclass(frozen=True, slots=True)
class RecordOutcome:
    """The fate of one submitted record, in submission order for REST, by key for Bulk."""

    key: str  # the sync key value the engine sent (or the Salesforce Id for delete)
    success: bool
    salesforce_id: str | None = None
    created: bool = False
    error: RecordError | None = None


@dataclass(frozen=True, slots=True)
class BulkJobInfo:
    """A Bulk API 2.0 ingest job's state and Salesforce's own timings (milliseconds)."""

    id: str
    object: str
    operation: str
    state: str
    records_processed: int = 0
    records_failed: int = 0
    error_message: str | None = None
    total_processing_ms: int = 0
    api_active_processing_ms: int = 0
    apex_processing_ms: int = 0
    retries: int = 0

    @classmethod
    def from_api(cls, payload: Mapping[str, Any]) -> BulkJobInfo:
        return cls(
            id=str(payload["id"]),
            object=str(payload.get("object", "")),
            operation=str(payload.get("operation", "")),
            state=str(payload.get("state", "")),
            records_processed=int(payload.get("numberRecordsProcessed") or 0),
            records_failed=int(payload.get("numberRecordsFailed") or 0),
            error_message=payload.get("errorMessage"),
            total_processing_ms=int(payload.get("totalProcessingTime") or 0),
            api_active_processing_ms=int(payload.get("apiActiveProcessingTime") or 0),
            apex_processing_ms=int(payload.get("apexProcessingTime") or 0),
            retries=int(payload.get("retries") or 0),
        )

    @property
    def finished(self) -> bool:
        return self.state in ("JobComplete", "Failed", "Aborted")


class SalesforceUnavailable(Exception):
    """A transient fault outlived the retry budget (5xx, dropped connection, lock, limit).

    The engine leaves the affected records pending; the next run retries them.
    """


class SalesforceRequestError(Exception):
    """A permanent request-level error (bad field, bad object, no permission, auth refused)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class SalesforcePort(Protocol):
    """What the engine needs from Salesforce. ``sf_activations.salesforce`` implements it.

    Every method retries transient faults within its own bounds and raises
    ``SalesforceUnavailable`` when they persist, ``SalesforceRequestError`` for permanent ones.
    """

    def describe(self, sobject: str, *, refresh: bool = False) -> ObjectDescribe:
        """The object's describe (cached per connection unless ``refresh``)."""
        ...

    def bulk_submit(
        self,
        sobject: str,
        operation: BulkOperation,
        csv_data: bytes,
        *,
        external_id_field: str | None = None,
    ) -> str:
        """Create an ingest job, upload ``csv_data`` (LF, comma) in one PUT, close it; return its id.

        ``csv_data`` must be at most 100 MB; the caller splits larger sets into several jobs.
        """
        ...

    def bulk_wait(self, job_id: str, *, timeout_s: float = 86400.0) -> BulkJobInfo:
        """Poll the job (short, growing intervals; no fixed sleep) until it has finished."""
        ...

    def bulk_results(self, job_id: str) -> tuple[bytes, bytes, bytes]:
        """The job's successfulResults, failedResults and unprocessedrecords CSV bodies."""
        ...

    def bulk_job_info(self, job_id: str) -> BulkJobInfo:
        """One GET of the job's info (used to reconcile jobs a crashed run left behind)."""
        ...

    def collection_upsert(
        self, sobject: str, external_id_field: str, records: Sequence[Mapping[str, Any]]
    ) -> list[RecordOutcome]:
        """sObject Collections upsert, allOrNone=false, ≤200 records per call (split inside).

        ``records`` hold API field names; a None value is sent as JSON null (clears the field).
        Outcomes come back in input order with ``key`` set to each record's external id value.
        """
        ...

    def collection_insert(
        self, sobject: str, records: Sequence[Mapping[str, Any]], *, keys: Sequence[str]
    ) -> list[RecordOutcome]:
        """sObject Collections create; ``keys`` label the outcomes in input order."""
        ...

    def collection_update(
        self, sobject: str, records: Sequence[Mapping[str, Any]], *, keys: Sequence[str]
    ) -> list[RecordOutcome]:
        """sObject Collections update (each record carries ``Id``)."""
        ...

    def collection_delete(self, ids: Sequence[str]) -> list[RecordOutcome]:
        """sObject Collections delete, allOrNone=false; ``key`` is the Salesforce Id."""
        ...

    def query(self, soql: str) -> list[dict[str, Any]]:
        """All records of a SOQL query (follows nextRecordsUrl), without ``attributes``."""
        ...

    def lookup_ids(
        self, sobject: str, field: str, values: Sequence[str], *, numeric: bool = False
    ) -> list[tuple[str, Any]]:
        """(Id, value of ``field``) of every record of ``sobject`` whose ``field`` equals one of
        ``values``, compared as a SOQL filter compares them (text ignoring case unless the
        field is case-sensitive; ``numeric``: the values are numbers). How many queries, and
        of which API, is the port's choice.
        """
        ...

    def api_calls(self) -> Mapping[str, int]:
        """API calls made so far through this port, by kind (e.g. ``bulk_create``, ``query``)."""
        ...
