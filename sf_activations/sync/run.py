"""One run of one (sync, partition): reconcile, map, diff, plan, execute, commit, report."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace

import polars as pl

from sf_activations.sync.diff import (
    DIFF_STATE_COLUMNS,
    SALESFORCE_ID_COLUMN,
    ChangeSet,
    compute_changes,
)
from sf_activations.sync.execute import (
    ExecutionResult,
    error_counts,
    execute_plan,
    reconcile_journal,
)
from sf_activations.sync.fingerprint import FINGERPRINT_COLUMN, with_fingerprints
from sf_activations.sync.lookup import (
    match_keys,
    needs_lookup,
    resolve_adds,
    resolve_deletes,
    resolve_ids,
    resolve_partners,
)
from sf_activations.sync.mapping import (
    KEY_COLUMN,
    MappedColumn,
    MappedFrame,
    SyncConfigError,
    key_is_case_insensitive,
    map_records,
    merged_describe,
    split_missing_required,
    validate_spec,
)
from sf_activations.sync.model import ObjectDescribe, SalesforcePort
from sf_activations.sync.plan import PlanContext, SyncPlan, plan_sync
from sf_activations.sync.prefilter import PartitionRead, read_partition
from sf_activations.sync.report import SAMPLE_SIZE, SyncReport
from sf_activations.sync.source import SOURCE_FP_COLUMN, PartitionSource, frame_source
from sf_activations.sync.spec import PARTNER_OBJECTS, SyncSpec
from sf_activations.sync.state import StateStore

CREATING = frozenset({"update_or_create", "create_only", "mirror", "add"})
"""Behaviors that may create records (so required-on-create fields matter). Not the
multi-destination ones: a record may go to an existing Contact or Account, which needs none of
Lead's required fields; a Lead created without one is refused by Salesforce and stays pending."""


class Phases:
    """Wall time per phase, in seconds."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


@dataclass(frozen=True)
class Prepared:
    """Everything a run knows once it has planned, before it sends anything."""

    describe: ObjectDescribe  # the object's (merged with the partner's, multi-destination)
    picked: PartitionRead
    current: pl.DataFrame  # the partition's state rows
    mapped: MappedFrame
    records: pl.DataFrame  # the valid mapped records with fingerprints
    invalid: pl.DataFrame
    changes: ChangeSet
    looked_up: ExecutionResult  # keys a lookup could not match (not sent)
    settled: pl.DataFrame | None  # keys a lookup settled without sending
    plan: SyncPlan
    left_alone: pl.DataFrame  # keys to send that the behavior leaves alone
    reconciled: ExecutionResult
    open_jobs: int  # Bulk jobs of earlier runs still open (a preview does not settle them)


def prepare_partition(
    spec: SyncSpec,
    source: pl.DataFrame | PartitionSource,
    port: SalesforcePort,
    state: StateStore,
    *,
    partition: str,
    say: Callable[[str], None],
    phases: Phases,
    write: bool,
) -> Prepared:
    """Reconcile, read, map, diff, look up and plan one partition. With ``write`` False (a
    preview) state is only read and Salesforce only queried: open jobs are left for the next
    run and nothing a lookup finds is remembered."""
    where = f"{spec.name}[{partition}]"
    describe = port.describe(spec.sobject)
    lead = describe
    partner_name = PARTNER_OBJECTS.get(spec.behavior)
    partner = port.describe(partner_name) if partner_name is not None else None
    problems = validate_spec(spec, describe, partner=partner)
    if problems:
        msg = "\n".join(problems)
        raise SyncConfigError(msg)
    if partner is not None:
        # Values are mapped against both objects' fields (Lead's where both have one).
        describe = merged_describe(describe, partner)

    reconciled = ExecutionResult.empty()
    open_jobs = len(state.journal_open_entries(spec.name, partition))
    if write:
        with phases("reconcile"):
            reconciled = reconcile_journal(
                port, state, sync=spec.name, partition=partition, progress=say
            )
        open_jobs = 0
    if reconciled.outcomes.height:
        say(f"{where}: reconciled {reconciled.outcomes.height} record(s) from earlier jobs")

    with phases("read"):
        current = state.load(spec.name, partition, columns=DIFF_STATE_COLUMNS)
        partition_source = frame_source(source) if isinstance(source, pl.DataFrame) else source
        picked = read_partition(spec, describe, partition_source, current)
    say(
        f"{where}: read {picked.records_read} row(s) from {spec.source_model}; "
        f"{picked.skipped.height} unchanged at the source, {picked.rows.height} to compare"
    )

    with phases("map"):
        mapped = map_records(spec, picked.rows, describe, carry=(SOURCE_FP_COLUMN,))
        records = with_fingerprints(mapped.records, mapped.headers)

    with phases("diff"):
        if write:
            current, picked = _adopt_moves(
                state,
                spec,
                partition,
                records=records,
                invalid=mapped.invalid,
                current=current,
                picked=picked,
            )
        invalid_keys = mapped.invalid.get_column("key").drop_nulls()
        changes = compute_changes(
            records, picked.state, max_attempts=spec.max_attempts, invalid_keys=invalid_keys
        )
        # Only records about to be created need their required fields: check those.
        creating = (
            changes.creating_keys()
            if spec.behavior in CREATING
            else pl.Series("key", [], dtype=pl.String)
        )
        kept, missing = split_missing_required(spec, records, mapped.columns, creating)
        if missing.height:
            invalid_keys = pl.concat([invalid_keys, missing.get_column("key")])
            changes = compute_changes(
                kept, picked.state, max_attempts=spec.max_attempts, invalid_keys=invalid_keys
            )
        invalid = pl.concat([mapped.invalid, missing])
        if write:
            _refresh_source_fingerprints(
                state,
                sync=spec.name,
                partition=partition,
                records=records,
                changes=changes,
                current=current,
            )
        changes = _with_skipped(changes, picked.skipped)
    say(
        f"{where}: {changes.new.height} new, {changes.changed.height} changed, "
        f"{changes.retry.height} to retry, {changes.unchanged.height} unchanged, "
        f"{invalid.height} invalid, {changes.gone.height} gone"
    )

    looked_up = ExecutionResult.empty()
    settled: pl.DataFrame | None = None
    if needs_lookup(spec, mapped.columns[0]) and changes.send_count:
        with phases("lookup"):
            resolve = RESOLVERS.get(spec.behavior, resolve_ids)
            resolved = resolve(spec, changes, mapped.columns[0], port)
            changes, settled = resolved.changes, resolved.settled
            looked_up = ExecutionResult(outcomes=resolved.unmatched)
            for outcomes in (resolved.unmatched, settled):
                if write and outcomes is not None and outcomes.height:
                    state.commit_results(spec.name, partition, outcomes)
        say(f"{where}: {resolved.summary}")

    if spec.behavior == "mirror" and changes.gone.height:
        present = pl.concat(
            [
                records.get_column(KEY_COLUMN),
                changes.unchanged.get_column(KEY_COLUMN),
                invalid_keys.cast(pl.String).alias(KEY_COLUMN),
            ]
        )
        changes = _not_renamed(changes, present, mapped.columns[0])
        with phases("lookup"):
            changes = _gone_ids(
                spec,
                changes,
                mapped.columns[0],
                port,
                state=state if write else None,
                partition=partition,
            )

    with phases("plan"):
        context = PlanContext(columns=mapped.columns, port=port, lead=lead, partner=partner)
        plan = plan_sync(spec, changes, context)
        left_alone = _left_alone(changes, plan)
        if write and left_alone.height:
            # Create Only and Add never update: a changed row is not sent. Its state keeps
            # the fingerprint of what Salesforce holds (so switching to update_or_create
            # sends it); the new source fingerprint lets the next runs skip it unread.
            _remember_source(state, spec.name, partition, records, left_alone, current)
    return Prepared(
        describe=describe,
        picked=picked,
        current=current,
        mapped=mapped,
        records=records,
        invalid=invalid,
        changes=changes,
        looked_up=looked_up,
        settled=settled,
        plan=plan,
        left_alone=left_alone,
        reconciled=reconciled,
        open_jobs=open_jobs,
    )


def run_sync_partition(
    spec: SyncSpec,
    source: pl.DataFrame | PartitionSource,
    port: SalesforcePort,
    state: StateStore,
    *,
    partition: str = "__all__",
    progress: Callable[[str], None] | None = None,
) -> SyncReport:
    """Bring one partition of Salesforce in line with ``source`` and report what happened.

    ``source`` is a warehouse partition (``DuckDBWarehouse.source``) or a polars frame. Jobs
    an earlier run left unfinished are reconciled first; then the rows that may have changed
    since the last run (``prefilter.read_partition``: all of them the first time) are mapped
    and validated, diffed against state, looked up where the behavior needs it, planned per
    the behavior and executed, committing state per batch. Raises ``SyncConfigError`` when the
    spec does not fit the object or the model (nothing is sent), ``DeleteGuardTripped`` when a
    Mirror run would delete too much, and ``BehaviorNotSupported`` for an unknown behavior.
    """
    say = progress or (lambda _line: None)
    phases = Phases()
    calls_before = dict(port.api_calls())
    where = f"{spec.name}[{partition}]"
    ready = prepare_partition(
        spec, source, port, state, partition=partition, say=say, phases=phases, write=True
    )
    plan, records = ready.plan, ready.records

    with phases("execute"):
        state.stage_source_fingerprints(
            spec.name,
            partition,
            records.select(
                pl.col(KEY_COLUMN).alias("key"),
                pl.col(FINGERPRINT_COLUMN).alias("fingerprint"),
                pl.col(SOURCE_FP_COLUMN).alias("source_fingerprint"),
            ),
        )
        try:
            executed = execute_plan(
                plan,
                port,
                state,
                sync=spec.name,
                partition=partition,
                rest_threshold=spec.rest_threshold,
                progress=say,
            )
        finally:
            state.unstage(spec.name, partition)
    executed = ready.looked_up.merge(executed)
    if executed.stopped:
        say(f"{where}: stopped early: {executed.stopped}")
    executed, deleted = _settle_deletes(
        state, spec.name, partition, plan, executed, forget=spec.behavior == "mirror"
    )

    with phases("commit"):
        _commit_invalid(state, spec.name, partition, ready.invalid)
        _forget_aliases(state, spec.name, partition, ready.current, executed.outcomes)
        pending = state.pending_count(spec.name, partition)
        # The next run's diff loads this instead of reading every row back from SQLite.
        state.save_snapshot(spec.name, partition)

    report = _report(
        spec,
        partition,
        records_read=ready.picked.records_read,
        invalid=ready.invalid,
        unchanged=ready.changes.unchanged.height + ready.left_alone.height,
        held=ready.changes.held.height,
        executed=executed,
        deleted=deleted,
        reconciled=ready.reconciled,
        pending=pending,
        rows_compared=ready.picked.rows.height,
        api_calls=_delta(calls_before, port.api_calls()),
        phases=phases.seconds,
    )
    say(report.summary())
    return report


RESOLVERS = {
    "delete": resolve_deletes,
    "add": resolve_adds,
    "lead_or_contact": resolve_partners,
    "lead_or_account": resolve_partners,
}
"""How each behavior that looks keys up in Salesforce resolves them (else ``resolve_ids``)."""

ALREADY_DELETED = frozenset({"ENTITY_IS_DELETED"})
"""Delete outcomes that mean the record was gone already: the delete's goal is met."""


def _not_renamed(changes: ChangeSet, present: pl.Series, key: MappedColumn) -> ChangeSet:
    """``changes`` without the gone keys that a present key names in another letter case: with
    a case-insensitive key both find one record, which the upsert keeps (the old key's state
    row is dropped once it succeeds, see ``_forget_aliases``); it must not be deleted."""
    if not key_is_case_insensitive(key) or changes.gone.height == 0:
        return changes
    lowered = present.drop_nulls().str.to_lowercase().implode()
    gone = changes.gone.filter(~pl.col("key").str.to_lowercase().is_in(lowered))
    return replace(changes, gone=gone)


def _gone_ids(
    spec: SyncSpec,
    changes: ChangeSet,
    key: MappedColumn,
    port: SalesforcePort,
    *,
    state: StateStore | None,
    partition: str,
) -> ChangeSet:
    """Mirror: give the gone records state knows no Salesforce Id of (never confirmed: a
    rejected create, an upsert whose answer was lost) the Id of the record their key finds
    in Salesforce, and forget those that find none (nothing to delete; ``state`` None: a
    preview, which forgets nothing)."""
    gone = changes.gone
    unknown = gone.filter(pl.col("salesforce_id").is_null())
    if unknown.height == 0:
        return changes
    found = match_keys(spec, key, port, unknown.select(pl.col("key").alias(KEY_COLUMN)))
    one = found.filter(pl.col("__ids").list.len() == 1).select(
        pl.col(KEY_COLUMN).alias("key"), pl.col("__ids").list.first().alias("__found")
    )
    absent = found.filter(pl.col("__ids").is_null()).get_column(KEY_COLUMN)
    if state is not None and absent.len():
        state.forget(spec.name, partition, absent.to_list())
    gone = (
        gone.filter(~pl.col("key").is_in(absent.implode()))
        .join(one, on="key", how="left")
        .with_columns(pl.coalesce("salesforce_id", "__found").alias("salesforce_id"))
        .drop("__found")
    )
    return replace(changes, gone=gone)


def _settle_deletes(
    state: StateStore,
    sync: str,
    partition: str,
    plan: SyncPlan,
    executed: ExecutionResult,
    *,
    forget: bool,
) -> tuple[ExecutionResult, int]:
    """Count the records the plan's deletes removed (or found removed already) and take their
    outcomes out of the ones counted as created, updated or rejected. Mirror (``forget``)
    drops their state rows; Delete keeps them as done, so a key still in the model is not
    deleted again. A failed delete stays pending and is tried again by the next run."""
    frames = [b.records.get_column(KEY_COLUMN) for b in plan.batches if b.operation == "delete"]
    if not frames:
        return executed, 0
    keys = pl.concat(frames).implode()
    outcomes = executed.outcomes
    is_delete = pl.col("key").is_in(keys)
    gone_before = ~pl.col("success") & pl.col("error_code").is_in(list(ALREADY_DELETED))
    done = is_delete & (pl.col("success") | gone_before)
    removed = outcomes.filter(done).get_column("key")
    if forget and removed.len():
        state.forget(sync, partition, removed.to_list())
    elif not forget:
        # Committed as refused with ENTITY_IS_DELETED: the goal is met, record it as done.
        met = outcomes.filter(is_delete & gone_before).with_columns(
            pl.lit(value=True).alias("success"),
            pl.lit(None, dtype=pl.String).alias("error_code"),
            pl.lit(None, dtype=pl.String).alias("error_message"),
        )
        if met.height:
            state.commit_results(sync, partition, met)
    return replace(executed, outcomes=outcomes.filter(~done)), removed.len()


def _adopt_moves(
    state: StateStore,
    spec: SyncSpec,
    partition: str,
    *,
    records: pl.DataFrame,
    invalid: pl.DataFrame,
    current: pl.DataFrame,
    picked: PartitionRead,
) -> tuple[pl.DataFrame, PartitionRead]:
    """``current`` and ``picked`` with the state of records that moved here from another time
    partition (``StateStore.adopt``): the diff then knows them (unchanged, changed or to
    retry) instead of taking them for new, and the partition they left keeps no stale copy.

    Only time partitions move keys (one partition has nowhere to move from; a key's hash
    bucket never changes), so other syncs skip the look-up. The adopted rows keep their
    source fingerprint: it is the fingerprint of the row Salesforce holds, wherever it lives.
    """
    if spec.partitions.kind != "time":
        return current, picked
    keys = pl.concat(
        [records.get_column(KEY_COLUMN).cast(pl.String), invalid.get_column("key").cast(pl.String)]
    )
    new = keys.filter(~keys.is_in(current.get_column("key").implode()))
    adopted = state.adopt(spec.name, partition, new)
    if adopted.height == 0:
        return current, picked
    adopted = adopted.select(current.columns).cast(pl.Schema(current.schema))
    return pl.concat([current, adopted]), replace(
        picked, state=pl.concat([picked.state, adopted.select(picked.state.columns)])
    )


def _with_skipped(changes: ChangeSet, skipped: pl.DataFrame) -> ChangeSet:
    """``changes`` with the records the prefilter skipped counted as unchanged."""
    if skipped.height == 0:
        return changes
    more = skipped.select(
        pl.col("key").alias(KEY_COLUMN), pl.col("salesforce_id").alias(SALESFORCE_ID_COLUMN)
    )
    return replace(changes, unchanged=pl.concat([changes.unchanged, more]))


def _left_alone(changes: ChangeSet, plan: SyncPlan) -> pl.DataFrame:
    """The records to send that no batch of the plan carries (the behavior leaves them),
    with their state fingerprint and source fingerprint columns as ``changes`` has them."""
    send = changes.to_send()
    if plan.record_count == send.height:
        return send.select(KEY_COLUMN).clear()  # every record to send is planned (the usual)
    planned = [b.records.get_column(KEY_COLUMN) for b in plan.batches]
    if not planned:
        return send.select(KEY_COLUMN)
    return send.filter(~pl.col(KEY_COLUMN).is_in(pl.concat(planned).implode())).select(KEY_COLUMN)


def _remember_source(  # noqa: PLR0917 - one call site
    state: StateStore,
    sync: str,
    partition: str,
    records: pl.DataFrame,
    keys: pl.DataFrame,
    current: pl.DataFrame,
) -> None:
    """Store the source fingerprint of ``keys``' rows, their state fingerprint (``current``,
    the partition's state rows) unchanged."""
    current = current.select("key", "fingerprint", "salesforce_id")
    rows = (
        records.join(keys, on=KEY_COLUMN, how="semi")
        .select(
            pl.col(KEY_COLUMN).alias("key"), pl.col(SOURCE_FP_COLUMN).alias("source_fingerprint")
        )
        .join(current, on="key", how="inner")
    )
    state.commit_results(
        sync,
        partition,
        rows.select(
            "key",
            "fingerprint",
            pl.lit(value=True).alias("success"),
            "salesforce_id",
            pl.lit(None, dtype=pl.String).alias("error_code"),
            pl.lit(None, dtype=pl.String).alias("error_message"),
            "source_fingerprint",
        ),
    )


def _refresh_source_fingerprints(
    state: StateStore,
    *,
    sync: str,
    partition: str,
    records: pl.DataFrame,
    changes: ChangeSet,
    current: pl.DataFrame,
) -> None:
    """Store the source fingerprint of records whose source row changed but whose mapped
    values did not (a column the sync does not send differently, a new DuckDB release...), so
    the next run skips them without mapping. Nothing is sent for them."""
    if changes.unchanged.height == 0:
        return
    stored = current.select("key", pl.col("source_fingerprint").alias("__stored"))
    stale = (
        records.join(changes.unchanged.select(KEY_COLUMN), on=KEY_COLUMN, how="semi")
        .select(
            pl.col(KEY_COLUMN).alias("key"),
            pl.col(FINGERPRINT_COLUMN).alias("fingerprint"),
            pl.col(SOURCE_FP_COLUMN).alias("source_fingerprint"),
        )
        .join(stored, on="key", how="left")
        .filter(~pl.col("source_fingerprint").eq_missing(pl.col("__stored")))
    )
    if stale.height == 0:
        return
    state.commit_results(
        sync,
        partition,
        stale.select(
            "key",
            "fingerprint",
            pl.lit(value=True).alias("success"),
            pl.lit(None, dtype=pl.String).alias("salesforce_id"),
            pl.lit(None, dtype=pl.String).alias("error_code"),
            pl.lit(None, dtype=pl.String).alias("error_message"),
            "source_fingerprint",
        ),
    )


def _commit_invalid(state: StateStore, sync: str, partition: str, invalid: pl.DataFrame) -> None:
    """Invalid records with a key are pending in state with their reason, so a fixed model
    sends them on the next run and sensors see them. Records without a key cannot be tracked.
    """
    keyed = invalid.filter(pl.col("key").is_not_null()).unique(
        subset="key", keep="first", maintain_order=True
    )
    if keyed.height == 0:
        return
    state.commit_results(
        sync,
        partition,
        keyed.select(
            pl.col("key"),
            pl.lit(None, dtype=pl.String).alias("fingerprint"),
            pl.lit(value=False).alias("success"),
            pl.lit(None, dtype=pl.String).alias("salesforce_id"),
            pl.col("reason").alias("error_code"),
            pl.col("message").alias("error_message"),
        ),
    )


def _forget_aliases(
    state: StateStore, sync: str, partition: str, current: pl.DataFrame, outcomes: pl.DataFrame
) -> None:
    """Drop state rows of other keys that name a record this run just confirmed.

    A case-insensitive External ID matches ``k1`` and ``K1`` to one record: after the model
    renames k1 to K1 the record belongs to K1 only. Were k1's row kept, a model going back to
    k1 would find it "unchanged" and never write the record back (one Salesforce record, one
    key in state).
    """
    confirmed = outcomes.filter(pl.col("success") & pl.col("salesforce_id").is_not_null()).select(
        pl.col("key").alias("__confirmed_key"), "salesforce_id"
    )
    if confirmed.height == 0 or current.height == 0:
        return
    ids = confirmed.get_column("salesforce_id")
    stale = (
        # Narrow first (one pass over the partition), then join the few candidates.
        current.filter(pl.col("salesforce_id").is_in(ids.implode()))
        .select("key", "salesforce_id")
        .join(confirmed, on="salesforce_id", how="inner")
        .filter(pl.col("key") != pl.col("__confirmed_key"))
        .get_column("key")
        .unique()
    )
    if stale.len():
        state.forget(sync, partition, stale.to_list())


def _delta(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    out = {k: int(v) - int(before.get(k, 0)) for k, v in after.items()}
    return {k: v for k, v in sorted(out.items()) if v}


def _report(
    spec: SyncSpec,
    partition: str,
    *,
    records_read: int,
    invalid: pl.DataFrame,
    unchanged: int,
    held: int,
    executed: ExecutionResult,
    deleted: int,
    reconciled: ExecutionResult,
    pending: int,
    rows_compared: int,
    api_calls: Mapping[str, int],
    phases: Mapping[str, float],
) -> SyncReport:
    outcomes = executed.outcomes
    ok = outcomes.filter(pl.col("success"))
    created = ok.filter(pl.col("created")).height
    failed = outcomes.filter(~pl.col("success"))
    counts: Counter[str] = Counter(error_counts(outcomes))
    counts.update(
        {str(k): int(n) for k, n in invalid.group_by("reason").len().iter_rows()}
        if invalid.height
        else {}
    )
    rejected_sample = [
        {"key": str(k), "code": str(c), "message": str(m or "")}
        for k, c, m in failed.head(SAMPLE_SIZE)
        .select("key", "error_code", "error_message")
        .iter_rows()
    ]
    invalid_sample = [
        {
            "key": "" if k is None else str(k),
            "reason": str(r),
            "column": str(c),
            "value": "" if v is None else str(v),
        }
        for k, r, c, v in invalid.head(SAMPLE_SIZE)
        .select("key", "reason", "column", "value")
        .iter_rows()
    ]
    both = reconciled.merge(executed)
    return SyncReport(
        sync=spec.name,
        partition=partition,
        sobject=spec.sobject,
        records_read=records_read,
        invalid=invalid.height,
        unchanged=unchanged,
        created=created,
        updated=ok.height - created,
        deleted=deleted,
        rejected=failed.height,
        skipped=invalid.height + failed.height,
        pending_retries=pending,
        error_counts=dict(counts.most_common()),
        rejected_sample=rejected_sample,
        invalid_sample=invalid_sample,
        api_calls=dict(api_calls),
        bulk_job_ids=list(both.bulk_job_ids),
        phase_seconds={k: round(v, 4) for k, v in phases.items()},
        sf_processing_ms=both.sf_processing_ms,
        apex_ms=both.apex_ms,
        reconciled=reconciled.outcomes.height,
        held=held,
        rows_compared=rows_compared,
    )
