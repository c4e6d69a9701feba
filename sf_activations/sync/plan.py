"""Turn a ChangeSet into Salesforce operations, as the sync's behavior dictates.

Each behavior has a planner in ``PLANNERS``: Update or Create, Create Only, Update Only (by
the Id, or by any text or number field whose Ids ``lookup`` finds first), Mirror, Delete and Add
are built; the multi-destination behaviors slot in as planners without reshaping the engine. A planner returns a ``SyncPlan`` of ``PlannedBatch``es; ``execute`` runs them in order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

import polars as pl

from sf_activations.sync.diff import (
    CHANGE_COLUMN,
    PARTNER_ID_COLUMN,
    SALESFORCE_ID_COLUMN,
    ChangeSet,
)
from sf_activations.sync.fingerprint import FINGERPRINT_COLUMN
from sf_activations.sync.mapping import (
    BULK_NULL_CELL,
    KEY_COLUMN,
    MappedColumn,
    destination_columns,
)
from sf_activations.sync.model import BulkOperation, ObjectDescribe, SalesforcePort
from sf_activations.sync.spec import Behavior, SyncSpec

Transport = Literal["bulk", "rest"]

MAX_BULK_BYTES = 100 * 1024 * 1024
"""Salesforce takes at most 150 MB base64-encoded per upload: about 100 MB of raw CSV."""

"""What Bulk API 2.0 reads as "set this field to null" in a CSV cell."""

ID_HEADER = "Id"
"""The CSV column of an update by Id."""

REST_RECORDS_PER_CALL = 200
"""sObject Collections take at most 200 records per call."""

BULK_JOB_CALLS = 6
"""API calls of the smallest Bulk job: create, upload, close, two polls (the first one usually
finds it still queued) and successfulResults. failedResults and unprocessedrecords are fetched
only when the job's counts say they are not empty (``SalesforceClient.bulk_results``)."""


def rest_calls(records: int) -> int:
    """API calls REST collections need for ``records`` records: ceil(records / 200)."""
    return -(-records // REST_RECORDS_PER_CALL)


def rest_is_cheaper(records: int) -> bool:
    """True when REST collections cost fewer API calls than one Bulk job.

    The rule: REST when ceil(records / 200) < ``BULK_JOB_CALLS`` (6), i.e. up to 1,000
    records; a tie goes to Bulk, which does not hold a connection per 200 records.
    """
    return rest_calls(records) < BULK_JOB_CALLS


class BehaviorNotSupported(NotImplementedError):
    """The sync's behavior has no planner yet."""


@dataclass(frozen=True, slots=True)
class PlannedBatch:
    """One unit of work: a Bulk job or a series of REST collection calls."""

    operation: BulkOperation
    sobject: str
    external_id_field: str | None  # upsert only
    key_header: str  # the column whose value identifies each record in the results
    columns: tuple[MappedColumn, ...]  # the Salesforce columns sent, CSV order
    records: pl.DataFrame  # __key, __fingerprint, __change, __salesforce_id + the columns
    transport: Transport
    result_key: str | None = None
    """The records' column whose value the results' ``key_header`` column echoes, when that
    is not the key itself: ``__salesforce_id`` for an update by looked-up Id."""

    @property
    def size(self) -> int:
        """Number of records in the batch."""
        return self.records.height


@dataclass(frozen=True, slots=True)
class SyncPlan:
    """The operations of one run, in execution order."""

    batches: tuple[PlannedBatch, ...]

    @property
    def record_count(self) -> int:
        """Records the plan sends, over all batches."""
        return sum(b.size for b in self.batches)


@dataclass(frozen=True, slots=True)
class PlanContext:
    """What a planner may consult beyond the ChangeSet."""

    columns: tuple[MappedColumn, ...]  # key column first
    port: SalesforcePort | None = None  # for planners that must look ids up (Update Only)
    max_bulk_bytes: int = MAX_BULK_BYTES
    lead: ObjectDescribe | None = None  # multi-destination: Lead's own describe
    partner: ObjectDescribe | None = None  # multi-destination: Contact's or Account's


Planner = Callable[[SyncSpec, ChangeSet, PlanContext], SyncPlan]


def plan_update_or_create(spec: SyncSpec, changes: ChangeSet, ctx: PlanContext) -> SyncPlan:
    """Upsert every new, changed and retried record on the External ID key."""
    records = changes.to_send()
    if records.height == 0:
        return SyncPlan(batches=())
    key = ctx.columns[0]
    return SyncPlan(
        batches=split_batches(
            spec,
            records,
            operation="upsert",
            external_id_field=key.field,
            key_header=key.header,
            columns=ctx.columns,
            max_bytes=ctx.max_bulk_bytes,
        )
    )


class DeleteGuardTripped(RuntimeError):
    """A Mirror run would delete more of the sync's records than ``max_delete_fraction``.

    ``finding`` states the numbers alone (without the sync's name or advice), for callers
    that frame the message themselves."""

    def __init__(self, message: str, *, finding: str) -> None:
        super().__init__(message)
        self.finding = finding


def plan_mirror(spec: SyncSpec, changes: ChangeSet, ctx: PlanContext) -> SyncPlan:
    """Upsert like Update or Create, then delete the records whose keys left the model.

    ``changes.gone`` must carry a Salesforce Id for each record to delete (``run`` looks up
    the few gone records state knows no Id of, and forgets those Salesforce does not have).
    Deletes come last, so a record whose key was renamed is created before the old one goes.
    A run that would delete more than ``spec.max_delete_fraction`` of the records the sync
    tracks raises ``DeleteGuardTripped`` before anything is sent.
    """
    gone = changes.gone.filter(pl.col("salesforce_id").is_not_null())
    tracked = changes.tracked_count
    if gone.height and gone.height > spec.max_delete_fraction * tracked:
        finding = (
            f"this run would delete {gone.height} of the {tracked} {spec.sobject} records the "
            f"sync tracks ({gone.height / tracked:.0%}), more than max_delete_fraction "
            f"({spec.max_delete_fraction:.0%}); nothing was sent"
        )
        msg = (
            f"sync {spec.name!r}: {finding}. If the model really lost these rows, raise "
            "max_delete_fraction in the sync's file (1 for no limit) and run again; otherwise "
            "fix the model."
        )
        raise DeleteGuardTripped(msg, finding=finding)
    upserts = plan_update_or_create(spec, changes, ctx)
    records = gone.select(
        pl.col("key").alias(KEY_COLUMN),
        pl.col("fingerprint").fill_null("").alias(FINGERPRINT_COLUMN),
        pl.col("salesforce_id").alias(SALESFORCE_ID_COLUMN),
    )
    return SyncPlan(batches=upserts.batches + _delete_batches(spec, records, ctx))


def plan_delete(spec: SyncSpec, changes: ChangeSet, ctx: PlanContext) -> SyncPlan:
    """Delete the records the model lists, by the Ids ``lookup.resolve_deletes`` found (or the
    key itself when it is the Id). A key is deleted once: its record stays unchanged in state
    afterwards, so it is not deleted again while the row stays in the model."""
    records = changes.to_send()
    if records.height == 0:
        return SyncPlan(batches=())
    if ctx.columns[0].field.lower() == "id":
        records = records.with_columns(pl.col(KEY_COLUMN).alias(SALESFORCE_ID_COLUMN))
    return SyncPlan(batches=_delete_batches(spec, records, ctx))


def _delete_batches(
    spec: SyncSpec, records: pl.DataFrame, ctx: PlanContext
) -> tuple[PlannedBatch, ...]:
    """Delete batches of ``records`` (``__key``, ``__fingerprint``, ``__salesforce_id``): a
    Bulk CSV of one ``Id`` column, whose results are matched back to keys by Id."""
    if records.height == 0:
        return ()
    records = records.select(
        KEY_COLUMN,
        FINGERPRINT_COLUMN,
        SALESFORCE_ID_COLUMN,
        pl.lit("delete").alias(CHANGE_COLUMN),
        pl.col(SALESFORCE_ID_COLUMN).alias(ID_HEADER),
    )
    by_id = MappedColumn(header=ID_HEADER, source=spec.key.source, field="Id", describe=None)
    batches = split_batches(
        spec,
        records,
        operation="delete",
        external_id_field=None,
        key_header=ID_HEADER,
        columns=(by_id,),
        max_bytes=ctx.max_bulk_bytes,
    )
    return tuple(replace(b, result_key=SALESFORCE_ID_COLUMN) for b in batches)


def plan_lead_or_partner(spec: SyncSpec, changes: ChangeSet, ctx: PlanContext) -> SyncPlan:
    """Multi-destination: records whose key a Contact (or Account) has are updated there by
    Id (``lookup.resolve_partners`` found it), with the mapped fields that object has; the
    others are upserted as Leads on the key, with the fields Lead has."""
    if ctx.lead is None or ctx.partner is None:
        msg = f"sync {spec.name!r}: a {spec.behavior} plan needs the Lead and partner describes"
        raise ValueError(msg)
    records = changes.to_send()
    if records.height == 0:
        return SyncPlan(batches=())
    if PARTNER_ID_COLUMN not in records.columns:
        records = records.with_columns(pl.lit(None, dtype=pl.String).alias(PARTNER_ID_COLUMN))
    key = ctx.columns[0]
    leads = split_batches(
        spec,
        records.filter(pl.col(PARTNER_ID_COLUMN).is_null()),
        operation="upsert",
        external_id_field=key.field,
        key_header=key.header,
        columns=destination_columns(ctx.columns, ctx.lead, key=True),
        max_bytes=ctx.max_bulk_bytes,
    )
    found = records.filter(pl.col(PARTNER_ID_COLUMN).is_not_null()).with_columns(
        pl.col(PARTNER_ID_COLUMN).alias(SALESFORCE_ID_COLUMN),
        pl.col(PARTNER_ID_COLUMN).alias(ID_HEADER),
    )
    by_id = MappedColumn(header=ID_HEADER, source=key.source, field="Id", describe=None)
    partners = split_batches(
        spec,
        found,
        operation="update",
        external_id_field=None,
        key_header=ID_HEADER,
        columns=(by_id, *destination_columns(ctx.columns, ctx.partner, key=False)),
        max_bytes=ctx.max_bulk_bytes,
    )
    moved = tuple(
        replace(b, sobject=ctx.partner.name, result_key=SALESFORCE_ID_COLUMN) for b in partners
    )
    return SyncPlan(batches=moved + leads)


def plan_create_only(spec: SyncSpec, changes: ChangeSet, ctx: PlanContext) -> SyncPlan:
    """Insert records Salesforce does not have yet; never update (Create Only, and Add).

    New records and earlier rejects without a confirmed Salesforce Id are inserted; changed
    records are left alone (that is the behavior). The key column is sent too (an External ID,
    or an Add sync's tracking field, see ``validate_spec``), so results map back to keys and a crashed job is reconciled by id
    before anything is inserted again: no duplicates (invariant 1). Always Bulk, even for a
    few records: a REST insert whose response is lost cannot be reconciled by job id.
    """
    records = pl.concat([changes.new, changes.retry]).filter(pl.col(SALESFORCE_ID_COLUMN).is_null())
    if records.height == 0:
        return SyncPlan(batches=())
    key = ctx.columns[0]
    return SyncPlan(
        batches=split_batches(
            spec,
            records.with_columns(pl.lit("new").alias(CHANGE_COLUMN)),
            operation="insert",
            external_id_field=None,
            key_header=key.header,
            columns=ctx.columns,
            max_bytes=ctx.max_bulk_bytes,
            transport="bulk",
        )
    )


def plan_update_only(spec: SyncSpec, changes: ChangeSet, ctx: PlanContext) -> SyncPlan:
    """Update existing records by their Salesforce Id; never create.

    When the key is the Id, the key column holds it. Any other key field (an Email, an
    account number) cannot be upserted on: ``lookup.resolve_ids`` has filled each record's
    ``__salesforce_id`` beforehand, and the records are updated by that Id, the key's own
    field left as it is in Salesforce.
    """
    key = ctx.columns[0]
    records = changes.to_send()
    if records.height == 0:
        return SyncPlan(batches=())
    if key.field.lower() == "id":
        # The key is the Id: REST updates take it from __salesforce_id.
        records = records.with_columns(pl.col(KEY_COLUMN).alias(SALESFORCE_ID_COLUMN))
        columns, result_key = ctx.columns, None
    else:
        unresolved = records.filter(pl.col(SALESFORCE_ID_COLUMN).is_null()).height
        if unresolved:
            msg = (
                f"sync {spec.name!r}: {unresolved} record(s) keyed on {key.field!r} have no "
                "Salesforce Id; look them up first (lookup.resolve_ids)"
            )
            raise ValueError(msg)
        records = records.with_columns(pl.col(SALESFORCE_ID_COLUMN).alias(ID_HEADER))
        by_id = MappedColumn(header=ID_HEADER, source=key.source, field="Id", describe=None)
        columns, result_key = (by_id, *ctx.columns[1:]), SALESFORCE_ID_COLUMN
    batches = split_batches(
        spec,
        records,
        operation="update",
        external_id_field=None,
        key_header=columns[0].header,
        columns=columns,
        max_bytes=ctx.max_bulk_bytes,
    )
    return SyncPlan(batches=tuple(replace(b, result_key=result_key) for b in batches))


def split_batches(
    spec: SyncSpec,
    records: pl.DataFrame,
    *,
    operation: BulkOperation,
    external_id_field: str | None,
    key_header: str,
    columns: tuple[MappedColumn, ...],
    max_bytes: int = MAX_BULK_BYTES,
    transport: Transport | None = None,
) -> tuple[PlannedBatch, ...]:
    """Cut ``records`` into batches: one REST batch or Bulk jobs of at most
    ``spec.batch_size`` records and ``max_bytes`` of CSV each (upserts and updates with a
    value that is literally ``#N/A``, Bulk's null marker, go in a last REST batch instead).

    The transport, unless ``transport`` fixes it: REST when the sync sets ``rest_threshold``
    and there are at most that many records; without ``rest_threshold``, REST when it costs
    fewer API calls than one Bulk job (``rest_is_cheaper``: ceil(n / 200) < 6, so up to
    1,000 records), else Bulk.
    """
    if records.height == 0:
        return ()
    chosen: Transport = transport or _transport(spec, records.height)

    def batch(frame: pl.DataFrame) -> PlannedBatch:
        return PlannedBatch(
            operation=operation,
            sobject=spec.sobject,
            external_id_field=external_id_field,
            key_header=key_header,
            columns=columns,
            records=frame,
            transport=chosen,
        )

    if chosen == "rest":
        return (batch(records),)
    literal_na: pl.DataFrame | None = None
    if operation in ("upsert", "update"):
        # A value that is literally "#N/A" would read as "clear the field" in a Bulk CSV (a
        # value turned into a command): those records go through REST, where it is a value.
        marked = pl.any_horizontal(
            [pl.col(c.header).eq(BULK_NULL_CELL).fill_null(value=False) for c in columns]
        )
        literal_na = records.filter(marked)
        if literal_na.height:
            records = records.filter(~marked)
    out: list[PlannedBatch] = []
    size = max(1, spec.batch_size)
    for start in range(0, records.height, size):
        chunk = records.slice(start, size)
        out.extend(batch(piece) for piece in _split_by_bytes(chunk, columns, max_bytes))
    if literal_na is not None and literal_na.height:
        out.append(replace(batch(literal_na), transport="rest"))
    return tuple(out)


def _transport(spec: SyncSpec, records: int) -> Transport:
    if spec.rest_threshold is not None:
        return "rest" if records <= spec.rest_threshold else "bulk"
    return "rest" if rest_is_cheaper(records) else "bulk"


def _split_by_bytes(
    chunk: pl.DataFrame, columns: tuple[MappedColumn, ...], max_bytes: int
) -> list[pl.DataFrame]:
    """Split so that each piece's CSV stays under ``max_bytes`` (an upper-bound estimate)."""
    headers = [c.header for c in columns]
    # Each value may be quoted with every quote doubled: bound it by 2*len + 3 bytes.
    row_bytes = chunk.select(
        pl.sum_horizontal(
            [pl.col(h).str.len_bytes().cast(pl.Int64).fill_null(4) * 2 + 3 for h in headers]
        ).alias("b")
    ).get_column("b")
    header_bytes = sum(len(h.encode()) + 3 for h in headers)
    if int(row_bytes.sum()) + header_bytes <= max_bytes:
        return [chunk]
    piece_of = ((row_bytes.cum_sum() + header_bytes) // max(1, max_bytes - header_bytes)).alias(
        "__piece"
    )
    framed = chunk.with_columns(piece_of)
    return [
        framed.filter(pl.col("__piece") == p).drop("__piece")
        for p in framed.get_column("__piece").unique(maintain_order=True).to_list()
    ]


PLANNERS: Mapping[Behavior, Planner] = {
    "update_or_create": plan_update_or_create,
    "create_only": plan_create_only,
    "update_only": plan_update_only,
    "mirror": plan_mirror,
    "delete": plan_delete,
    "add": plan_create_only,  # after lookup.resolve_adds dropped what Salesforce has
    "lead_or_contact": plan_lead_or_partner,
    "lead_or_account": plan_lead_or_partner,
}
"""The planner of each behavior."""


def plan_sync(spec: SyncSpec, changes: ChangeSet, ctx: PlanContext) -> SyncPlan:
    """The plan for ``changes`` under ``spec.behavior``."""
    planner = PLANNERS.get(spec.behavior)
    if planner is None:
        msg = f"sync {spec.name!r}: unknown behavior {spec.behavior!r}; known: {sorted(PLANNERS)}"
        raise BehaviorNotSupported(msg)
    return planner(spec, changes, ctx)
