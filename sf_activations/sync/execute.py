"""Run a SyncPlan through the SalesforcePort and commit each batch's outcomes to state.

Bulk jobs are journaled before they are submitted (see ``state``), so a crash at any point
leaves either nothing sent or a job that the next run reconciles by id. Records Salesforce
refuses with a transient code are sent once more in the same run, in a smaller batch.
"""

from __future__ import annotations

import io
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import polars as pl

from sf_activations.sync.fingerprint import FINGERPRINT_COLUMN
from sf_activations.sync.mapping import KEY_COLUMN, MappedColumn
from sf_activations.sync.model import (
    BulkJobInfo,
    RecordError,
    RecordOutcome,
    SalesforcePort,
    SalesforceRequestError,
    SalesforceUnavailable,
)
from sf_activations.sync.plan import (
    BULK_NULL_CELL,
    PlannedBatch,
    SyncPlan,
    Transport,
    rest_is_cheaper,
)
from sf_activations.sync.state import JournalEntry, StateStore

NULL_CELL = BULK_NULL_CELL
"""What Bulk API 2.0 reads as "set this field to null" (an empty cell means "leave it")."""

OUTCOME_SCHEMA: dict[str, pl.DataType] = {
    "key": pl.String(),
    "fingerprint": pl.String(),
    "success": pl.Boolean(),
    "salesforce_id": pl.String(),
    "created": pl.Boolean(),
    "error_code": pl.String(),
    "error_message": pl.String(),
}
"""One row per record the run sent (or reconciled): its fate in Salesforce."""

TRANSIENT_CODES = frozenset({"UNABLE_TO_LOCK_ROW"})
"""Per-record codes worth one more try in the same run: the next attempt usually succeeds."""

_NUMBER_TYPES = frozenset({"double", "currency", "percent"})
_INT_TYPES = frozenset({"int", "long"})

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ExecutionResult:
    """Outcomes of the executed (or reconciled) batches and what Salesforce reported."""

    outcomes: pl.DataFrame  # OUTCOME_SCHEMA
    bulk_job_ids: tuple[str, ...] = ()
    sf_processing_ms: int = 0
    apex_ms: int = 0
    stopped: str | None = None  # why the run stopped early (Salesforce unavailable), if it did
    jobs: tuple[BulkJobInfo, ...] = field(default_factory=tuple)

    @staticmethod
    def empty() -> ExecutionResult:
        """No batches."""
        return ExecutionResult(outcomes=pl.DataFrame(schema=OUTCOME_SCHEMA))

    def merge(self, other: ExecutionResult) -> ExecutionResult:
        """Both results, self first (outcomes are appended: call ``settled`` once at the end)."""
        return ExecutionResult(
            outcomes=pl.concat([self.outcomes, other.outcomes], rechunk=False),
            bulk_job_ids=self.bulk_job_ids + other.bulk_job_ids,
            sf_processing_ms=self.sf_processing_ms + other.sf_processing_ms,
            apex_ms=self.apex_ms + other.apex_ms,
            stopped=self.stopped or other.stopped,
            jobs=self.jobs + other.jobs,
        )

    def settled(self) -> ExecutionResult:
        """One outcome per key: the last one (a retry's outcome replaces the first attempt's).

        Done once per run rather than per merge, which would be quadratic in the batch count.
        """
        outcomes = self.outcomes.unique(subset="key", keep="last", maintain_order=True)
        return replace(self, outcomes=outcomes)


# ---------------------------------------------------------------------------- CSV and JSON


def to_bulk_csv(records: pl.DataFrame, headers: Sequence[str]) -> bytes:
    """The Bulk API 2.0 CSV of ``records``' ``headers`` columns: UTF-8, comma, LF.

    Null becomes ``#N/A`` (clear the field) and "" an empty cell (leave it alone); quoting is
    polars' CSV writer's, so commas, quotes and newlines in values stay values.
    """
    frame = records.select([pl.col(h).cast(pl.String) for h in headers])
    return frame.write_csv(
        null_value=NULL_CELL, line_terminator="\n", quote_style="necessary"
    ).encode("utf-8")


def rest_records(batch: PlannedBatch) -> list[dict[str, Any]]:
    """The batch's records as sObject Collections JSON records (API field names).

    Null is JSON null (clears the field); "" is left out (leaves the field alone). A lookup
    column ``Account.Ext__c`` becomes ``{"Account": {"Ext__c": value}}``; a null lookup
    clears the reference field itself. Numbers and booleans are sent as JSON numbers and
    booleans.
    """
    headers = [c.header for c in batch.columns]
    rows = batch.records.select(headers).rows()
    out: list[dict[str, Any]] = []
    for row in rows:
        record: dict[str, Any] = {}
        for col, value in zip(batch.columns, row, strict=True):
            if value == "":
                continue
            if col.lookup_field is not None:
                relationship = col.header.split(".", 1)[0]
                if value is None:
                    record[col.field] = None
                else:
                    record[relationship] = {col.lookup_field: value}
            else:
                record[col.field] = _json_value(col, value)
        out.append(record)
    if batch.operation == "update":
        # Update by Id: the Id comes from state (or a planner's lookup), never from the model.
        ids = batch.records.get_column("__salesforce_id").to_list()
        for record, sf_id in zip(out, ids, strict=True):
            record["Id"] = sf_id
    return out


def _json_value(col: MappedColumn, value: str | None) -> Any:
    if value is None or col.describe is None:
        return value
    kind = col.describe.type
    if kind == "boolean":
        return value == "true"
    if kind in _INT_TYPES:
        return int(value)
    if kind in _NUMBER_TYPES:
        number = float(value)
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    return value


def parse_bulk_results(
    successful: bytes, failed: bytes, unprocessed: bytes, key_header: str
) -> pl.DataFrame:
    """Salesforce's three result CSVs as outcomes by key (OUTCOME_SCHEMA without fingerprint).

    Unprocessed records come back as failures coded ``UNPROCESSED``.
    """
    frames: list[pl.DataFrame] = []
    ok = _read_csv(successful)
    if ok is not None and key_header in ok.columns:
        frames.append(
            ok.select(
                pl.col(key_header).alias("key"),
                pl.lit(value=True).alias("success"),
                pl.col("sf__Id").replace("", None).alias("salesforce_id"),
                (pl.col("sf__Created").str.to_lowercase() == "true").alias("created"),
                pl.lit(None, dtype=pl.String).alias("error_code"),
                pl.lit(None, dtype=pl.String).alias("error_message"),
            )
        )
    bad = _read_csv(failed)
    if bad is not None and key_header in bad.columns and bad.height:
        errors = [RecordError.parse_bulk(c or "") for c in bad.get_column("sf__Error").to_list()]
        frames.append(
            bad.select(
                pl.col(key_header).alias("key"),
                pl.lit(value=False).alias("success"),
                pl.col("sf__Id").replace("", None).alias("salesforce_id"),
                pl.lit(value=False).alias("created"),
            ).with_columns(
                pl.Series("error_code", [e.code for e in errors], dtype=pl.String),
                pl.Series("error_message", [e.message for e in errors], dtype=pl.String),
            )
        )
    left = _read_csv(unprocessed)
    if left is not None and key_header in left.columns and left.height:
        frames.append(
            left.select(
                pl.col(key_header).alias("key"),
                pl.lit(value=False).alias("success"),
                pl.lit(None, dtype=pl.String).alias("salesforce_id"),
                pl.lit(value=False).alias("created"),
                pl.lit("UNPROCESSED").alias("error_code"),
                pl.lit("Salesforce did not process the record before the job ended").alias(
                    "error_message"
                ),
            )
        )
    schema = {k: v for k, v in OUTCOME_SCHEMA.items() if k != "fingerprint"}
    if not frames:
        return pl.DataFrame(schema=schema)
    return pl.concat([f.cast(pl.Schema(schema)) for f in frames]).unique(
        subset="key", keep="first", maintain_order=True
    )


def _read_csv(body: bytes) -> pl.DataFrame | None:
    if not body.strip():
        return None
    # Every value as text, and "" stays "" (a result echoes the values exactly as uploaded).
    return pl.read_csv(io.BytesIO(body), infer_schema=False, empty_string_is_null=False)


def outcomes_from_rest(keys: Sequence[str], outcomes: Sequence[RecordOutcome]) -> pl.DataFrame:
    """REST outcomes (in input order) as a frame keyed by the keys the engine sent."""
    if len(outcomes) != len(keys):
        msg = f"Salesforce answered {len(outcomes)} results for {len(keys)} records"
        raise SalesforceUnavailable(msg)
    return pl.DataFrame(
        {
            "key": list(keys),
            "success": [o.success for o in outcomes],
            "salesforce_id": [o.salesforce_id for o in outcomes],
            "created": [o.created for o in outcomes],
            "error_code": [o.error.code if o.error else None for o in outcomes],
            "error_message": [o.error.message if o.error else None for o in outcomes],
        },
        schema={k: v for k, v in OUTCOME_SCHEMA.items() if k != "fingerprint"},
    )


def _failed(keys: pl.Series, fingerprints: pl.Series, code: str, message: str) -> pl.DataFrame:
    n = keys.len()
    return pl.DataFrame(
        {
            "key": keys.cast(pl.String),
            "fingerprint": fingerprints.cast(pl.String),
            "success": [False] * n,
            "salesforce_id": [None] * n,
            "created": [False] * n,
            "error_code": [code] * n,
            "error_message": [message] * n,
        },
        schema=OUTCOME_SCHEMA,
    )


def _by_key(results: pl.DataFrame, submitted: pl.DataFrame) -> pl.DataFrame:
    """Results identified by ``result_key`` (e.g. the Id of an update by looked-up Id) turned
    back into results by key; a result naming no submitted record is dropped."""
    keys = submitted.select(pl.col("result_key").alias("key"), pl.col("key").alias("__key"))
    return (
        results.join(keys, on="key", how="inner")
        .with_columns(pl.col("__key").alias("key"))
        .drop("__key")
    )


def _attach(
    submitted: pl.DataFrame, results: pl.DataFrame, missing_code: str, missing_message: str
) -> pl.DataFrame:
    """One outcome per submitted (key, fingerprint); keys absent from results get a failure."""
    joined = submitted.join(results, on="key", how="left")
    absent = pl.col("success").is_null()
    return joined.select(
        pl.col("key"),
        pl.col("fingerprint"),
        pl.col("success").fill_null(value=False),
        pl.col("salesforce_id"),
        pl.col("created").fill_null(value=False),
        pl.when(absent)
        .then(pl.lit(missing_code))
        .otherwise(pl.col("error_code"))
        .alias("error_code"),
        pl.when(absent)
        .then(pl.lit(missing_message))
        .otherwise(pl.col("error_message"))
        .alias("error_message"),
    ).cast(pl.Schema(OUTCOME_SCHEMA))


# ---------------------------------------------------------------------------- execution


@dataclass(frozen=True)
class _Run:
    port: SalesforcePort
    state: StateStore
    sync: str
    partition: str
    rest_threshold: int | None
    progress: Progress
    timeout_s: float


def execute_plan(
    plan: SyncPlan,
    port: SalesforcePort,
    state: StateStore,
    *,
    sync: str,
    partition: str,
    rest_threshold: int | None = None,
    progress: Progress | None = None,
    transient_retries: int = 1,
    bulk_timeout_s: float = 86400.0,
    bulk_window: int = 2,
) -> ExecutionResult:
    """Run the plan's batches in order, committing each batch's outcomes as it completes.

    Consecutive Bulk batches of the same object and operation are pipelined: up to
    ``bulk_window`` jobs are submitted before the oldest one is waited for, so the next job's
    CSV, journal entry and upload, and the previous job's results and state commit, overlap
    with Salesforce processing a job. Each job is still journaled before it is submitted and
    its results committed on their own (invariants 1 and 2). A batch of another object or
    operation waits until every earlier job has finished (a child job never runs before the
    parents it looks up). ``bulk_window=1`` runs one job at a time.

    When Salesforce stays unavailable the remaining batches are not sent: their records are
    committed as pending (``SALESFORCE_UNAVAILABLE``) and ``stopped`` says why. A Bulk job whose
    wait failed (and any job submitted after it) stays in the journal and is reconciled by the
    next run. ``rest_threshold`` (None: by cost, see ``plan.rest_is_cheaper``) picks the
    transport of transient-error retries.
    """
    run = _Run(port, state, sync, partition, rest_threshold, progress or _quiet, bulk_timeout_s)
    result = ExecutionResult.empty()
    in_flight: deque[_Submitted] = deque()
    window = max(1, bulk_window)

    def finish_oldest() -> ExecutionResult:
        job = in_flight.popleft()
        if result.stopped is not None:
            # Salesforce is unavailable: do not wait; the next run reconciles the job by id.
            run.progress(f"bulk job {job.job_id}: not waited for; the next run reconciles it")
            return ExecutionResult(
                outcomes=pl.DataFrame(schema=OUTCOME_SCHEMA), bulk_job_ids=(job.job_id,)
            )
        done = _finish_job(run, job.entry, job.job_id, submitted=job.submitted)
        return _retry_transient(run, job.batch, done, transient_retries)

    for index, batch in enumerate(plan.batches):
        if in_flight and (batch.transport != "bulk" or not _same_kind(in_flight[0].batch, batch)):
            while in_flight:
                result = result.merge(finish_oldest())
        if result.stopped is not None:
            result = result.merge(_give_up(run, batch, result.stopped))
            continue
        run.progress(
            f"batch {index + 1}/{len(plan.batches)}: {batch.operation} {batch.size} "
            f"{batch.sobject} record(s) via {batch.transport}"
        )
        if batch.transport != "bulk":
            result = result.merge(_execute_batch(run, batch, transient_retries))
            continue
        submitted = _submit_bulk(run, batch)
        if isinstance(submitted, ExecutionResult):
            result = result.merge(submitted)
            continue
        in_flight.append(submitted)
        while len(in_flight) >= window:
            result = result.merge(finish_oldest())
    while in_flight:
        result = result.merge(finish_oldest())
    return result.settled()


def _same_kind(a: PlannedBatch, b: PlannedBatch) -> bool:
    return (a.sobject, a.operation, a.external_id_field) == (
        b.sobject,
        b.operation,
        b.external_id_field,
    )


def _quiet(_: str) -> None:
    return None


def _give_up(run: _Run, batch: PlannedBatch, why: str) -> ExecutionResult:
    outcomes = _failed(
        batch.records.get_column(KEY_COLUMN),
        batch.records.get_column(FINGERPRINT_COLUMN),
        "SALESFORCE_UNAVAILABLE",
        f"not sent: {why}",
    )
    run.state.commit_results(run.sync, run.partition, outcomes)
    return ExecutionResult(outcomes=outcomes)


def _execute_batch(run: _Run, batch: PlannedBatch, retries_left: int) -> ExecutionResult:
    if batch.transport == "rest":
        return _retry_transient(run, batch, _execute_rest(run, batch), retries_left)
    submitted = _submit_bulk(run, batch)
    if isinstance(submitted, ExecutionResult):
        return submitted
    done = _finish_job(run, submitted.entry, submitted.job_id, submitted=submitted.submitted)
    return _retry_transient(run, batch, done, retries_left)


def _retry_transient(
    run: _Run, batch: PlannedBatch, result: ExecutionResult, retries_left: int
) -> ExecutionResult:
    """Send once more, in the same run, the records Salesforce refused with a transient code."""
    transient = result.outcomes.filter(
        ~pl.col("success") & pl.col("error_code").is_in(list(TRANSIENT_CODES))
    )
    if retries_left <= 0 or transient.height == 0 or result.stopped is not None:
        return result
    keys = transient.get_column("key")
    again = batch.records.filter(pl.col(KEY_COLUMN).is_in(keys.implode()))
    run.progress(f"retrying {again.height} record(s) refused with a transient error (row lock)")
    # The retry carries only the refused records: far fewer rows contend for the same parent
    # locks than in the first pass. Through REST when that costs fewer calls (no job to wait
    # for), unless the sync fixes the threshold.
    rest = (
        again.height <= run.rest_threshold
        if run.rest_threshold is not None
        else rest_is_cheaper(again.height)
    )
    transport: Transport = "rest" if rest else "bulk"
    retry = replace(batch, records=again, transport=transport)
    return result.merge(_execute_batch(run, retry, retries_left - 1))


def _execute_rest(run: _Run, batch: PlannedBatch) -> ExecutionResult:
    records = batch.records
    keys = records.get_column(KEY_COLUMN).to_list()
    submitted = records.select(
        pl.col(KEY_COLUMN).alias("key"), pl.col(FINGERPRINT_COLUMN).alias("fingerprint")
    )
    try:
        payload = rest_records(batch)
        if batch.operation == "upsert":
            if batch.external_id_field is None:
                msg = "an upsert batch needs its external id field"
                raise ValueError(msg)
            answers = run.port.collection_upsert(batch.sobject, batch.external_id_field, payload)
        elif batch.operation == "insert":
            answers = run.port.collection_insert(batch.sobject, payload, keys=keys)
        elif batch.operation == "update":
            answers = run.port.collection_update(batch.sobject, payload, keys=keys)
        elif batch.operation == "delete":
            ids = records.get_column("__salesforce_id").to_list()
            answers = run.port.collection_delete(ids)
        else:
            msg = f"operation {batch.operation!r} has no REST form"
            raise ValueError(msg)
        results = outcomes_from_rest(keys, answers)
    except SalesforceUnavailable as exc:
        outcomes = _failed(
            submitted["key"], submitted["fingerprint"], "SALESFORCE_UNAVAILABLE", str(exc)
        )
        run.state.commit_results(run.sync, run.partition, outcomes)
        return ExecutionResult(outcomes=outcomes, stopped=str(exc))
    except SalesforceRequestError as exc:
        outcomes = _failed(submitted["key"], submitted["fingerprint"], exc.code, exc.message)
        run.state.commit_results(run.sync, run.partition, outcomes)
        return ExecutionResult(outcomes=outcomes)
    outcomes = _attach(submitted, results, "RESULT_MISSING", "Salesforce returned no result")
    run.state.commit_results(run.sync, run.partition, outcomes)
    return ExecutionResult(outcomes=outcomes)


@dataclass(frozen=True)
class _Submitted:
    """A Bulk job submitted and journaled, not yet waited for."""

    batch: PlannedBatch
    entry: JournalEntry
    job_id: str
    submitted: pl.DataFrame  # key, fingerprint: what the journal entry holds


def _submit_bulk(run: _Run, batch: PlannedBatch) -> _Submitted | ExecutionResult:
    """Journal the batch, then create, upload and close its job (an ExecutionResult if that
    failed: the records are committed pending and nothing is left to reconcile)."""
    records = batch.records
    keys = records.get_column(KEY_COLUMN)
    fps = records.get_column(FINGERPRINT_COLUMN)
    csv_data = to_bulk_csv(records, [c.header for c in batch.columns])
    entry_id = run.state.journal_open(
        sync=run.sync,
        partition=run.partition,
        sobject=batch.sobject,
        operation=batch.operation,
        external_id_field=batch.external_id_field,
        key_header=batch.key_header,
        keys=keys,
        fingerprints=fps,
        result_keys=None if batch.result_key is None else records.get_column(batch.result_key),
    )
    try:
        job_id = run.port.bulk_submit(
            batch.sobject,
            batch.operation,
            csv_data,
            external_id_field=batch.external_id_field,
        )
    except (SalesforceUnavailable, SalesforceRequestError) as exc:
        # No job id: nothing to reconcile. Upserts are idempotent, so sending them again later
        # cannot duplicate; the records are pending with the reason.
        run.state.journal_close(entry_id, "abandoned")
        code = exc.code if isinstance(exc, SalesforceRequestError) else "SALESFORCE_UNAVAILABLE"
        message = exc.message if isinstance(exc, SalesforceRequestError) else str(exc)
        outcomes = _failed(keys, fps, code, message)
        run.state.commit_results(run.sync, run.partition, outcomes)
        stopped = str(exc) if isinstance(exc, SalesforceUnavailable) else None
        return ExecutionResult(outcomes=outcomes, stopped=stopped)
    run.state.journal_submitted(entry_id, job_id)
    run.progress(f"bulk job {job_id} submitted ({keys.len()} records, {len(csv_data)} bytes)")
    entry = run.state.journal_entry(entry_id)
    if entry is None:  # pragma: no cover - we just wrote it
        msg = f"journal entry {entry_id} vanished"
        raise RuntimeError(msg)
    submitted = pl.DataFrame({"key": keys.cast(pl.String), "fingerprint": fps.cast(pl.String)})
    if batch.result_key is not None:
        submitted = submitted.with_columns(
            records.get_column(batch.result_key).cast(pl.String).alias("result_key")
        )
    return _Submitted(batch=batch, entry=entry, job_id=job_id, submitted=submitted)


def _finish_job(
    run: _Run, entry: JournalEntry, job_id: str, *, submitted: pl.DataFrame | None = None
) -> ExecutionResult:
    """Wait for the job, fetch its results and commit them with the journal entry closed.

    ``submitted`` (key, fingerprint) saves reading the entry's records back from the journal
    when the caller still holds them.
    """
    started = time.monotonic()
    try:
        info = run.port.bulk_wait(job_id, timeout_s=run.timeout_s)
    except SalesforceUnavailable as exc:
        # The job may still finish: leave the entry open so the next run reconciles it.
        run.progress(f"bulk job {job_id}: stopped waiting ({exc}); the next run reconciles it")
        return ExecutionResult(
            outcomes=pl.DataFrame(schema=OUTCOME_SCHEMA), bulk_job_ids=(job_id,), stopped=str(exc)
        )
    except SalesforceRequestError as exc:
        # Salesforce no longer knows the job (it deletes jobs after 7 days): its results are
        # gone. The records were never confirmed in state, so the diff sends them again.
        run.progress(f"bulk job {job_id}: {exc.code} {exc.message}; abandoning its journal entry")
        run.state.journal_close(entry.entry_id, "abandoned")
        return ExecutionResult(outcomes=pl.DataFrame(schema=OUTCOME_SCHEMA))
    run.progress(
        f"bulk job {job_id} {info.state}: {info.records_processed} processed, "
        f"{info.records_failed} failed ({time.monotonic() - started:.1f}s)"
    )
    try:
        successful, failed, unprocessed = run.port.bulk_results(job_id)
    except SalesforceRequestError:
        if info.state == "JobComplete":
            raise
        # A failed or aborted job may have no results at all: every record stays pending.
        successful = failed = unprocessed = b""
    except SalesforceUnavailable as exc:
        return ExecutionResult(
            outcomes=pl.DataFrame(schema=OUTCOME_SCHEMA),
            bulk_job_ids=(job_id,),
            stopped=str(exc),
            jobs=(info,),
        )
    results = parse_bulk_results(successful, failed, unprocessed, entry.key_header)
    if info.state == "JobComplete":
        code, message = "RESULT_MISSING", "the job finished without a result for the record"
    else:
        code = "BULK_JOB_FAILED"
        message = f"bulk job {job_id} {info.state}: {info.error_message or 'no message'}"
    if submitted is None:
        # Reconciling a job an earlier run left open: a record that has since moved to another
        # time partition (which took its state over) is that partition's now, so its outcome
        # here must not write a second, stale row for it.
        submitted = run.state.journal_records(entry.entry_id)
        moved = run.state.moved_away(run.sync, run.partition, submitted.get_column("key"))
        if moved.len():
            run.progress(f"bulk job {job_id}: {moved.len()} record(s) moved to other partitions")
            submitted = submitted.filter(~pl.col("key").is_in(moved.implode()))
    if "result_key" in submitted.columns:
        results = _by_key(results, submitted)
        submitted = submitted.drop("result_key")
    outcomes = _attach(submitted, results, code, message)
    run.state.commit_results(run.sync, run.partition, outcomes, close_entry=entry.entry_id)
    return ExecutionResult(
        outcomes=outcomes,
        bulk_job_ids=(job_id,),
        sf_processing_ms=info.total_processing_ms,
        apex_ms=info.apex_processing_ms,
        jobs=(info,),
    )


def reconcile_journal(
    port: SalesforcePort,
    state: StateStore,
    *,
    sync: str,
    partition: str,
    progress: Progress | None = None,
    bulk_timeout_s: float = 86400.0,
) -> ExecutionResult:
    """Settle Bulk jobs an earlier run of (sync, partition) left open (invariant 1).

    A job with an id is waited for and its results committed, so records it created are
    confirmed before anything is planned and are never sent twice. An entry without a job id
    (the run stopped during submission) is abandoned: its records were never confirmed and
    the diff sends them again (harmless for upserts).
    """
    run = _Run(port, state, sync, partition, 0, progress or _quiet, bulk_timeout_s)
    result = ExecutionResult.empty()
    for entry in state.journal_open_entries(sync, partition):
        if entry.job_id is None:
            run.progress(f"journal entry {entry.entry_id}: never submitted; abandoning it")
            state.journal_close(entry.entry_id, "abandoned")
            continue
        run.progress(f"reconciling bulk job {entry.job_id} left by an earlier run")
        result = result.merge(_finish_job(run, entry, entry.job_id))
        if result.stopped is not None:
            break
    return result.settled()


def error_counts(outcomes: pl.DataFrame) -> Mapping[str, int]:
    """Failed outcomes counted by error code."""
    failed = outcomes.filter(~pl.col("success"))
    if failed.height == 0:
        return {}
    counted = failed.group_by("error_code").len().sort("len", descending=True)
    return {str(code): int(n) for code, n in counted.iter_rows()}
