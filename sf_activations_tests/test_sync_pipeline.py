"""Pipelined Bulk jobs and the choice of transport by API-call cost."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import polars as pl
import pytest

from sf_activations.sync.diff import compute_changes
from sf_activations.sync.execute import execute_plan
from sf_activations.sync.fingerprint import with_fingerprints
from sf_activations.sync.mapping import map_records
from sf_activations.sync.model import BulkJobInfo, BulkOperation, RecordOutcome
from sf_activations.sync.plan import (
    PlanContext,
    SyncPlan,
    plan_sync,
    rest_calls,
    rest_is_cheaper,
    split_batches,
)
from sf_activations.sync.run import run_sync_partition
from sf_activations.sync.state import StateStore
from sf_activations_tests.test_sync_engine import contact_spec, people
from sf_activations_tests.test_sync_fakes import FakeSalesforce, contact_describe


class RecordingSalesforce(FakeSalesforce):
    """The fake, noting the order in which jobs are submitted and waited for."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    def bulk_submit(
        self,
        sobject: str,
        operation: BulkOperation,
        csv_data: bytes,
        *,
        external_id_field: str | None = None,
    ) -> str:
        job = super().bulk_submit(sobject, operation, csv_data, external_id_field=external_id_field)
        self.events.append(f"submit {job[-6:-3]}")
        return job

    def bulk_wait(self, job_id: str, *, timeout_s: float = 86400.0) -> BulkJobInfo:
        self.events.append(f"wait {job_id[-6:-3]}")
        return super().bulk_wait(job_id, timeout_s=timeout_s)

    def collection_upsert(
        self, sobject: str, external_id_field: str, records: Sequence[Mapping[str, Any]]
    ) -> list[RecordOutcome]:
        self.events.append("rest")
        return super().collection_upsert(sobject, external_id_field, records)


def test_the_next_job_is_submitted_before_the_previous_one_is_waited_for(
    state: StateStore,
) -> None:
    fake = RecordingSalesforce()
    report = run_sync_partition(contact_spec(batch_size=5), people(15), fake, state)
    assert report.created == 15 and len(report.bulk_job_ids) == 3
    assert fake.events == [
        "submit 001",
        "submit 002",
        "wait 001",
        "submit 003",
        "wait 002",
        "wait 003",
    ]
    assert state.counts("contacts") == {"synced": 15, "pending": 0}
    assert state.journal_open_entries("contacts", "__all__") == []


def _plan(spec_batch: int, rows: int) -> tuple[SyncPlan, pl.DataFrame]:
    spec = contact_spec(batch_size=spec_batch)
    describe = contact_describe()
    mapped = map_records(spec, people(rows), describe)
    records = with_fingerprints(mapped.records, mapped.headers)
    empty = pl.DataFrame(
        schema={
            "key": pl.String,
            "fingerprint": pl.String,
            "salesforce_id": pl.String,
            "status": pl.String,
            "attempts": pl.Int64,
        }
    )
    changes = compute_changes(records, empty)
    return plan_sync(spec, changes, PlanContext(columns=mapped.columns)), records


def test_window_of_one_runs_jobs_one_at_a_time(state: StateStore) -> None:
    fake = RecordingSalesforce()
    plan, _ = _plan(5, 10)
    execute_plan(plan, fake, state, sync="contacts", partition="p", bulk_window=1)
    assert fake.events == ["submit 001", "wait 001", "submit 002", "wait 002"]


def test_a_batch_of_another_kind_waits_for_every_earlier_job(state: StateStore) -> None:
    fake = RecordingSalesforce()
    plan, _ = _plan(5, 15)
    first, second, third = plan.batches
    mixed = SyncPlan(batches=(first, replace(second, transport="rest"), third))
    result = execute_plan(mixed, fake, state, sync="contacts", partition="p")
    assert fake.events == ["submit 001", "wait 001", "rest", "submit 002", "wait 002"]
    assert result.outcomes.height == 15 and result.outcomes["success"].all()


def test_outage_with_two_jobs_in_flight_leaves_both_to_the_next_run(state: StateStore) -> None:
    fake = RecordingSalesforce()
    fake.unavailable_waits = 1
    first = run_sync_partition(contact_spec(batch_size=5), people(15), fake, state)
    # Job 1's wait failed while job 2 was already submitted: neither is waited for again,
    # the third batch is not sent.
    assert fake.events == ["submit 001", "submit 002", "wait 001"]
    assert first.created == 0 and len(first.bulk_job_ids) == 2
    assert first.error_counts == {"SALESFORCE_UNAVAILABLE": 5}
    assert len(state.journal_open_entries("contacts", "__all__")) == 2

    second = run_sync_partition(contact_spec(batch_size=5), people(15), fake, state)
    assert (second.reconciled, second.created) == (10, 5)
    assert state.journal_open_entries("contacts", "__all__") == []
    assert state.counts("contacts") == {"synced": 15, "pending": 0}
    # Nothing was sent twice (invariant 1).
    assert set(fake.sent.values()) == {1} and len(fake.jobs) == 3


def test_rest_costs_one_call_per_200_records() -> None:
    assert [rest_calls(n) for n in (1, 200, 201, 1000, 1001)] == [1, 1, 2, 5, 6]
    # A Bulk job costs at least 6 calls: REST while it needs at most 5.
    assert rest_is_cheaper(1) and rest_is_cheaper(1000)
    assert not rest_is_cheaper(1001) and not rest_is_cheaper(1_000_000)


@pytest.mark.parametrize(
    ("rows", "threshold", "expected"),
    [
        (1000, None, "rest"),
        (1001, None, "bulk"),
        (5, 0, "bulk"),  # an explicit threshold wins over the cost rule
        (2000, 5000, "rest"),
    ],
)
def test_transport_follows_cost_unless_the_sync_fixes_a_threshold(
    rows: int, threshold: int | None, expected: str
) -> None:
    spec = contact_spec(rest_threshold=threshold, batch_size=100_000)
    describe = contact_describe()
    mapped = map_records(spec, people(rows), describe)
    batches = split_batches(
        spec,
        mapped.records,
        operation="upsert",
        external_id_field="Ext_Id__c",
        key_header="Ext_Id__c",
        columns=mapped.columns,
    )
    assert {b.transport for b in batches} == {expected}
    assert sum(b.size for b in batches) == rows
