"""A record whose time partition changes is a move: its state goes with it, no stale copy stays.

Time partitions are windows of a timestamp column; when a row's timestamp changes, its key
leaves one partition and appears in another. The state of the key (fingerprint, Salesforce Id,
status, attempts) must follow it, or the partition it left keeps a stale copy that later says
"unchanged" while Salesforce holds the other partition's values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl
import pytest

from sf_activations.sync.model import RecordError
from sf_activations.sync.run import run_sync_partition
from sf_activations.sync.spec import FieldMapping, PartitionSpec, SyncSpec
from sf_activations.sync.state import RESULT_SCHEMA, StateStore
from sf_activations_tests.test_sync_engine import contact_spec
from sf_activations_tests.test_sync_fakes import FakeSalesforce

P1, P2, P3 = "2026-01-01", "2026-01-02", "2026-01-03"


def time_spec(**overrides: Any) -> SyncSpec:
    """The engine tests' Contact sync, time-partitioned, with two mappings."""
    base: dict[str, Any] = {
        "mappings": (FieldMapping("last_name", "LastName"), FieldMapping("score", "Score__c")),
        "partitions": PartitionSpec(kind="time"),
    }
    return contact_spec(**{**base, **overrides})


def rows(*records: tuple[str, str, float]) -> pl.DataFrame:
    return pl.DataFrame(
        [list(r) for r in records],
        schema={"id": pl.String, "last_name": pl.String, "score": pl.Float64},
        orient="row",
    )


def where_is(state: StateStore, key: str) -> list[tuple[str, str | None, str]]:
    """(partition, Salesforce Id, status) of every state row of ``key``."""
    out = []
    for partition in state.partitions("contacts"):
        frame = state.load("contacts", partition, columns=("key", "salesforce_id", "status"))
        out += [(partition, sid, st) for k, sid, st in frame.rows() if k == key]
    return out


def test_a_record_moving_back_with_its_old_values_is_written_again(state: StateStore) -> None:
    fake = FakeSalesforce()
    spec = time_spec()
    run_sync_partition(spec, rows(("K", "A", 1.0)), fake, state, partition=P1)
    # Its timestamp changes: K leaves P1 for P2 with other values...
    moved = run_sync_partition(spec, rows(("K", "B", 2.0)), fake, state, partition=P2)
    assert (moved.created, moved.updated) == (0, 1)
    assert fake.contact("K")["LastName"] == "B"
    # ...and comes back to P1 with the values P1 sent last: Salesforce holds B, so A is sent.
    back = run_sync_partition(spec, rows(("K", "A", 1.0)), fake, state, partition=P1)
    assert (back.created, back.updated, back.unchanged) == (0, 1, 0)
    assert fake.contact("K")["LastName"] == "A"
    assert len(fake.records["Contact"]) == 1
    assert where_is(state, "K") == [(P1, fake.contact("K")["Id"], "synced")]


def test_a_move_with_the_same_values_sends_nothing_and_keeps_the_id(state: StateStore) -> None:
    fake = FakeSalesforce()
    spec = time_spec()
    run_sync_partition(spec, rows(("K", "A", 1.0), ("L", "L", 3.0)), fake, state, partition=P1)
    sid = fake.contact("K")["Id"]
    before = dict(fake.calls)
    moved = run_sync_partition(spec, rows(("K", "A", 1.0)), fake, state, partition=P2)
    assert (moved.created, moved.updated, moved.unchanged) == (0, 0, 1)
    assert moved.bulk_job_ids == []
    assert {k: v - before.get(k, 0) for k, v in fake.calls.items() if v != before.get(k, 0)} == {
        "describe": 1
    }
    assert where_is(state, "K") == [(P2, sid, "synced")]
    assert where_is(state, "L") == [(P1, fake.contact("L")["Id"], "synced")]
    # The next run of P2 skips it at the source: the source fingerprint moved with it.
    again = run_sync_partition(spec, rows(("K", "A", 1.0)), fake, state, partition=P2)
    assert (again.unchanged, again.updated) == (1, 0)
    # P1 no longer counts K as its own.
    p1 = run_sync_partition(spec, rows(("L", "L", 3.0)), fake, state, partition=P1)
    assert (p1.unchanged, p1.updated, p1.created) == (1, 0, 0)


def test_a_pending_record_moves_with_its_attempts(state: StateStore) -> None:
    def no_negative(_sobject: str, values: Mapping[str, Any]) -> RecordError | None:
        if values.get("Score__c") == "-1":
            return RecordError("FIELD_CUSTOM_VALIDATION_EXCEPTION", "Score must be positive")
        return None

    fake = FakeSalesforce(reject=no_negative)
    spec = time_spec(max_attempts=2)
    for _ in range(2):
        run_sync_partition(spec, rows(("K", "A", -1.0)), fake, state, partition=P1)
    assert where_is(state, "K") == [(P1, None, "pending")]
    # Same data in another partition: still held after two attempts, not a fresh record.
    moved = run_sync_partition(spec, rows(("K", "A", -1.0)), fake, state, partition=P2)
    assert (moved.held, moved.rejected, moved.created) == (1, 0, 0)
    errors = state.load("contacts", P2, columns=("key", "attempts", "error_code")).rows()
    assert errors == [("K", 2, "FIELD_CUSTOM_VALIDATION_EXCEPTION")]
    assert fake.sent["K"] == 2


def test_stale_copies_in_several_partitions_leave_one_row(state: StateStore) -> None:
    """State written before moves were adopted may hold a key in several partitions: the
    latest row moves, the older copies go."""
    fake = FakeSalesforce()
    spec = time_spec()
    run_sync_partition(spec, rows(("K", "A", 1.0)), fake, state, partition=P1)
    sid = fake.contact("K")["Id"]
    # A copy written later by another partition, as the engine did before moves were adopted.
    state.commit_results(
        "contacts",
        P2,
        pl.DataFrame(
            [("K", "stale-fingerprint", True, sid, None, None)], schema=RESULT_SCHEMA, orient="row"
        ),
    )
    report = run_sync_partition(spec, rows(("K", "A", 1.0)), fake, state, partition=P3)
    # P2's row is the latest: adopted with its fingerprint, so the record is sent again.
    assert (report.updated, report.created) == (1, 0)
    assert where_is(state, "K") == [(P3, sid, "synced")]
    assert state.counts("contacts") == {"synced": 1, "pending": 0}


def test_unpartitioned_and_hash_syncs_never_adopt(state: StateStore) -> None:
    """Only time partitions move keys: other syncs keep one row per (partition, key)."""
    fake = FakeSalesforce()
    for kind in ("none", "hash"):
        spec = time_spec(name=f"c_{kind}", partitions=PartitionSpec(kind=kind))  # type: ignore[arg-type]
        run_sync_partition(spec, rows(("K", "A", 1.0)), fake, state, partition="b00")
        run_sync_partition(spec, rows(("K", "A", 1.0)), fake, state, partition="b01")
        assert state.partitions(spec.name) == ["b00", "b01"]


def test_a_job_reconciled_after_its_record_moved_leaves_no_stale_copy(state: StateStore) -> None:
    from sf_activations_tests.test_sync_fakes import SimulatedCrash

    fake = FakeSalesforce()
    spec = time_spec()
    run_sync_partition(spec, rows(("K", "A0", 0.5), ("L", "L", 3.0)), fake, state, partition=P1)
    # P1 sends K's new values A and crashes while its Bulk job runs: the job stays open.
    fake.crash_in_wait = True
    with pytest.raises(SimulatedCrash):
        run_sync_partition(spec, rows(("K", "A", 1.0), ("L", "L", 3.0)), fake, state, partition=P1)
    fake.crash_in_wait = False
    # K moves to P2, which takes its state over and sends B.
    moved = run_sync_partition(spec, rows(("K", "B", 2.0)), fake, state, partition=P2)
    assert moved.updated == 1
    # P1 runs again: it reconciles its old job, but K is P2's now.
    again = run_sync_partition(spec, rows(("L", "L", 3.0)), fake, state, partition=P1)
    assert again.bulk_job_ids  # the old job was settled...
    assert state.journal_open_entries("contacts", P1) == []
    assert again.reconciled == 0  # ...but its only record, K, is not P1's any more
    assert [p for p, _, _ in where_is(state, "K")] == [P2]
    # So when K comes back to P1 with the values of the reconciled job, it is sent again.
    back = run_sync_partition(
        spec, rows(("K", "A", 1.0), ("L", "L", 3.0)), fake, state, partition=P1
    )
    assert back.updated == 1
    assert fake.contact("K")["LastName"] == "A"
    assert [p for p, _, _ in where_is(state, "K")] == [P1]
