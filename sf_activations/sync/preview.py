"""A sync tester: what the next run of one (sync, partition) would send, without sending it.

``preview_sync_partition`` runs the same stages as a real run up to the plan (read, map and
validate, diff against state, the behavior's Salesforce lookups, plan) but only reads state and
only queries Salesforce: nothing is written to either. It returns a ``SyncPreview``: the
counts, the invalid records with their reasons, the keys a lookup could not match, and each
planned write (object, operation, transport, records, the API calls it would take) with a
sample of the exact values it would carry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import polars as pl

from sf_activations.sync.model import SalesforcePort
from sf_activations.sync.plan import BULK_JOB_CALLS, PlannedBatch, rest_calls
from sf_activations.sync.report import SAMPLE_SIZE
from sf_activations.sync.run import Phases, prepare_partition
from sf_activations.sync.source import PartitionSource
from sf_activations.sync.spec import SyncSpec
from sf_activations.sync.state import StateStore

NULL_SHOWN = "NULL (clears the field)"
EMPTY_SHOWN = "'' (leaves the field as it is)"


@dataclass(frozen=True)
class PlannedWrite:
    """One batch the run would send."""

    sobject: str
    operation: str  # upsert, insert, update, delete
    transport: str  # bulk or rest
    records: int
    api_calls: int  # about: a Bulk job's usual calls, or one REST call per 200 records
    headers: tuple[str, ...]  # the Salesforce columns, in CSV order
    sample: tuple[Mapping[str, str], ...]  # the first records' values as they would be sent


@dataclass(frozen=True)
class SyncPreview:
    """What the next run of one (sync, partition) would do."""

    sync: str
    partition: str
    sobject: str
    behavior: str
    records_read: int
    rows_compared: int
    new: int
    changed: int
    retry: int
    unchanged: int
    invalid: int
    gone: int  # keys in state that left the model (Mirror deletes them; others leave them)
    left_alone: int  # changed rows the behavior does not send (Create Only, Add)
    settled: int  # keys a lookup settled without a write (Delete: no record; Add: there)
    open_jobs: int  # Bulk jobs of earlier runs the next run settles first
    writes: tuple[PlannedWrite, ...]
    invalid_sample: Sequence[Mapping[str, str]] = ()  # key, reason, column, value, message
    unmatched: Mapping[str, int] = field(default_factory=dict)  # lookup code -> keys
    unmatched_sample: Sequence[Mapping[str, str]] = ()  # key, code, message
    api_calls: Mapping[str, int] = field(default_factory=dict)  # what the preview itself used

    @property
    def estimated_calls(self) -> int:
        """API calls the planned writes would take (about)."""
        return sum(w.api_calls for w in self.writes)

    def lines(self) -> list[str]:
        """The preview as text, for a terminal."""
        out = [
            f"{self.sync}[{self.partition}] -> {self.sobject} ({self.behavior}): "
            f"{self.records_read} row(s) in the model, {self.rows_compared} compared",
            f"  new {self.new}, changed {self.changed}, to retry {self.retry}, "
            f"unchanged {self.unchanged}, invalid {self.invalid}, gone {self.gone}",
        ]
        if self.left_alone:
            out.append(
                f"  {self.left_alone} changed row(s) left alone ({self.behavior} never updates)"
            )
        if self.settled:
            out.append(f"  {self.settled} key(s) settled by the lookup, nothing to send")
        if self.open_jobs:
            out.append(
                f"  {self.open_jobs} Bulk job(s) of an earlier run are still open: the next "
                "run settles them before anything else"
            )
        for w in self.writes:
            out.append(
                f"  would {w.operation} {w.records} {w.sobject} record(s) via {w.transport} "
                f"(about {w.api_calls} API call(s)); columns: {', '.join(w.headers)}"
            )
            for row in w.sample:
                shown = ", ".join(f"{k}={v}" for k, v in row.items())
                out.append(f"    {shown}")
        if not self.writes:
            out.append("  nothing to send")
        else:
            out.append(f"  about {self.estimated_calls} API call(s) in all")
        for code, n in self.unmatched.items():
            out.append(f"  not sent: {n} key(s) {code}")
        out.extend(f"    {row['key']}: {row['message']}" for row in self.unmatched_sample)
        if sum(self.unmatched.values()) > len(self.unmatched_sample):
            out.append(f"    ... {sum(self.unmatched.values()) - len(self.unmatched_sample)} more")
        out.extend(
            f"  invalid: key {row['key'] or '(none)'}: {row['reason']}: {row['message']}"
            for row in self.invalid_sample
        )
        if self.invalid > len(self.invalid_sample):
            out.append(f"  ... {self.invalid - len(self.invalid_sample)} more invalid")
        return out


def preview_sync_partition(
    spec: SyncSpec,
    source: pl.DataFrame | PartitionSource,
    port: SalesforcePort,
    state: StateStore,
    *,
    partition: str = "__all__",
    sample: int = 5,
    progress: Callable[[str], None] | None = None,
) -> SyncPreview:
    """What ``run_sync_partition`` would send for this partition now, without sending it or
    changing state; ``sample`` records of each write (and as many invalid and unmatched keys,
    at most ``SAMPLE_SIZE``) are kept. Raises what a run raises before sending
    (``SyncConfigError``, ``DeleteGuardTripped``, ...)."""
    calls_before = dict(port.api_calls())
    ready = prepare_partition(
        spec,
        source,
        port,
        state,
        partition=partition,
        say=progress or (lambda _line: None),
        phases=Phases(),
        write=False,
    )
    changes = ready.changes
    unmatched = ready.looked_up.outcomes
    shown = min(SAMPLE_SIZE, max(0, sample))  # invalid and unmatched keys listed
    codes = unmatched.group_by("error_code").len().sort("error_code").iter_rows()
    return SyncPreview(
        sync=spec.name,
        partition=partition,
        sobject=spec.sobject,
        behavior=spec.behavior,
        records_read=ready.picked.records_read,
        rows_compared=ready.picked.rows.height,
        new=changes.new.height,
        changed=changes.changed.height,
        retry=changes.retry.height,
        unchanged=changes.unchanged.height,
        invalid=ready.invalid.height,
        gone=changes.gone.height,
        left_alone=ready.left_alone.height,
        settled=0 if ready.settled is None else ready.settled.height,
        open_jobs=ready.open_jobs,
        writes=tuple(_write(b, sample) for b in ready.plan.batches),
        invalid_sample=[
            {k: "" if v is None else str(v) for k, v in row.items()}
            for row in ready.invalid.head(shown)
            .select("key", "reason", "column", "value", "message")
            .iter_rows(named=True)
        ],
        unmatched={str(code): int(n) for code, n in codes},
        unmatched_sample=[
            {"key": str(k), "code": str(c), "message": str(m)}
            for k, c, m in unmatched.head(shown)
            .select("key", "error_code", "error_message")
            .iter_rows()
        ],
        api_calls={
            k: v - calls_before.get(k, 0)
            for k, v in port.api_calls().items()
            if v != calls_before.get(k, 0)
        },
    )


def _write(batch: PlannedBatch, sample: int) -> PlannedWrite:
    headers = tuple(c.header for c in batch.columns)
    rows = batch.records.head(max(0, sample)).select(headers).iter_rows()
    return PlannedWrite(
        sobject=batch.sobject,
        operation=batch.operation,
        transport=batch.transport,
        records=batch.size,
        api_calls=BULK_JOB_CALLS if batch.transport == "bulk" else rest_calls(batch.size),
        headers=headers,
        sample=tuple({h: _shown(v) for h, v in zip(headers, row, strict=True)} for row in rows),
    )


def _shown(value: object) -> str:
    if value is None:
        return NULL_SHOWN
    if value == "":
        return EMPTY_SHOWN
    return str(value)
