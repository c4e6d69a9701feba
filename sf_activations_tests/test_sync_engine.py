"""The engine end to end through an in-memory Salesforce: runs, re-runs, rejects, crashes."""

from __future__ import annotations

import ast
import multiprocessing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from sf_activations.sync.mapping import SyncConfigError
from sf_activations.sync.model import RecordError
from sf_activations.sync.partitions import bucket_of, bucket_partition_keys
from sf_activations.sync.plan import BehaviorNotSupported
from sf_activations.sync.run import run_sync_partition
from sf_activations.sync.spec import FieldMapping, PartitionSpec, SyncKey, SyncSpec
from sf_activations.sync.state import StateStore
from sf_activations_tests.test_sync_fakes import FakeSalesforce, SimulatedCrash

SYNC_DIR = Path(__file__).resolve().parents[1] / "sf_activations" / "sync"


def contact_spec(**overrides: Any) -> SyncSpec:
    base: dict[str, Any] = {
        "name": "contacts",
        "source_model": "dim_contacts",
        "sobject": "Contact",
        "behavior": "update_or_create",
        "key": SyncKey(source="id", target="Ext_Id__c"),
        "mappings": (
            FieldMapping("last_name", "LastName"),
            FieldMapping("email", "Email"),
            FieldMapping("score", "Score__c"),
        ),
        "rest_threshold": 0,  # Bulk unless a test says otherwise
    }
    base.update(overrides)
    return SyncSpec(**base)


def people(n: int, *, offset: int = 0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": [f"k{i}" for i in range(offset, offset + n)],
            "last_name": [f"Name {i}" for i in range(offset, offset + n)],
            "email": [f"p{i}@example.com" for i in range(offset, offset + n)],
            "score": [float(i) / 2 for i in range(offset, offset + n)],
        }
    )


def test_first_run_creates_everything_and_second_run_sends_nothing(state: StateStore) -> None:
    fake = FakeSalesforce()
    first = run_sync_partition(contact_spec(), people(50), fake, state)
    assert (first.created, first.updated, first.unchanged, first.rejected) == (50, 0, 0, 0)
    assert len(first.bulk_job_ids) == 1
    assert len(fake.records["Contact"]) == 50
    calls = dict(fake.calls)

    second = run_sync_partition(contact_spec(), people(50), fake, state)
    assert (second.created, second.updated, second.unchanged) == (0, 0, 50)
    assert second.bulk_job_ids == []
    # Nothing sent: only the describe call.
    assert {k: v - calls.get(k, 0) for k, v in fake.calls.items() if v != calls.get(k, 0)} == {
        "describe": 1
    }
    assert second.api_calls == {"describe": 1}
    assert state.counts("contacts") == {"synced": 50, "pending": 0}


def test_one_changed_field_sends_exactly_one_record(state: StateStore) -> None:
    fake = FakeSalesforce()
    run_sync_partition(contact_spec(), people(20), fake, state)
    changed = people(20).with_columns(
        pl.when(pl.col("id") == "k7")
        .then(pl.lit("Renamed"))
        .otherwise(pl.col("last_name"))
        .alias("last_name")
    )
    report = run_sync_partition(contact_spec(), changed, fake, state)
    assert (report.updated, report.created, report.unchanged) == (1, 0, 19)
    upload = fake.csv_uploads[-1].splitlines()
    assert upload == ["Ext_Id__c,LastName,Email,Score__c", "k7,Renamed,p7@example.com,3.5"]
    assert fake.contact("k7")["LastName"] == "Renamed"


def test_null_clears_with_na_and_empty_string_leaves_alone(state: StateStore) -> None:
    fake = FakeSalesforce()
    run_sync_partition(contact_spec(), people(3), fake, state)
    edited = people(3).with_columns(
        pl.when(pl.col("id") == "k1").then(None).otherwise(pl.col("email")).alias("email"),
        pl.when(pl.col("id") == "k2")
        .then(pl.lit(""))
        .otherwise(pl.col("last_name"))
        .alias("last_name"),
    )
    report = run_sync_partition(contact_spec(), edited, fake, state)
    assert report.updated == 2
    rows = fake.csv_uploads[-1].splitlines()
    assert "k1,Name 1,#N/A,0.5" in rows
    assert 'k2,"",p2@example.com,1' in rows or "k2,,p2@example.com,1" in rows
    assert fake.contact("k1")["Email"] is None
    assert fake.contact("k2")["LastName"] == "Name 2"


def test_rejected_record_stays_pending_and_succeeds_once_fixed(state: StateStore) -> None:
    def no_bad_scores(_sobject: str, values: Mapping[str, Any]) -> RecordError | None:
        if values.get("Score__c") == "-1":
            return RecordError(
                "FIELD_CUSTOM_VALIDATION_EXCEPTION", "Score must be positive", ("Score__c",)
            )
        return None

    fake = FakeSalesforce(reject=no_bad_scores)
    data = people(10).with_columns(
        pl.when(pl.col("id") == "k4").then(-1.0).otherwise(pl.col("score")).alias("score")
    )
    first = run_sync_partition(contact_spec(), data, fake, state)
    assert (first.created, first.rejected, first.pending_retries) == (9, 1, 1)
    assert first.error_counts == {"FIELD_CUSTOM_VALIDATION_EXCEPTION": 1}
    assert first.rejected_sample[0]["key"] == "k4"
    assert first.rejected_fraction == pytest.approx(0.1)

    # Unchanged data: the reject is retried (and refused again), attempts are counted.
    second = run_sync_partition(contact_spec(), data, fake, state)
    assert (second.rejected, second.unchanged, second.pending_retries) == (1, 9, 1)
    row = state.load("contacts", "__all__").filter(pl.col("key") == "k4").row(0, named=True)
    assert (row["status"], row["error_code"], row["attempts"]) == (
        "pending",
        "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        2,
    )
    assert row["first_failed_at"] is not None

    third = run_sync_partition(contact_spec(), people(10), fake, state)
    assert (third.created, third.rejected, third.pending_retries) == (1, 0, 0)
    row = state.load("contacts", "__all__").filter(pl.col("key") == "k4").row(0, named=True)
    assert (row["status"], row["attempts"], row["error_code"]) == ("synced", 0, None)
    assert row["salesforce_id"] == fake.contact("k4")["Id"]


def test_max_attempts_holds_an_unchanged_reject(state: StateStore) -> None:
    fake = FakeSalesforce(
        reject=lambda _o, v: RecordError("X", "no") if v["Ext_Id__c"] == "k0" else None
    )
    spec = contact_spec(max_attempts=2)
    for _ in range(3):
        report = run_sync_partition(spec, people(2), fake, state)
    assert fake.sent["k0"] == 2
    assert (report.held, report.pending_retries) == (1, 1)


def test_crash_after_upload_then_rerun_does_not_resubmit(state: StateStore) -> None:
    fake = FakeSalesforce()
    fake.crash_in_wait = True
    with pytest.raises(SimulatedCrash):
        run_sync_partition(contact_spec(), people(30), fake, state)
    # Salesforce has the records, state has nothing confirmed yet.
    assert len(fake.records["Contact"]) == 30
    assert state.counts("contacts") == {"synced": 0, "pending": 0}

    report = run_sync_partition(contact_spec(), people(30), fake, state)
    assert report.reconciled == 30
    assert (report.created, report.updated, report.unchanged) == (0, 0, 30)
    assert set(fake.sent.values()) == {1}  # every key went to Salesforce exactly once
    assert len(fake.jobs) == 1
    assert state.counts("contacts") == {"synced": 30, "pending": 0}
    assert state.journal_open_entries("contacts", "__all__") == []


def test_transient_lock_is_retried_in_the_same_run(state: StateStore) -> None:
    fake = FakeSalesforce()
    fake.lock_failures["k3"] = 1
    report = run_sync_partition(contact_spec(), people(8), fake, state)
    assert (report.created, report.rejected, report.pending_retries) == (8, 0, 0)
    assert fake.sent["k3"] == 2


def test_small_sets_go_through_rest_collections(state: StateStore) -> None:
    fake = FakeSalesforce()
    spec = contact_spec(rest_threshold=200)
    data = people(3).with_columns(
        pl.when(pl.col("id") == "k1").then(None).otherwise(pl.col("email")).alias("email")
    )
    report = run_sync_partition(spec, data, fake, state)
    assert report.created == 3 and report.bulk_job_ids == []
    assert report.api_calls == {"collection_upsert": 1, "describe": 1}
    payload = fake.rest_payloads[0]
    assert payload[0] == {
        "Ext_Id__c": "k0",
        "LastName": "Name 0",
        "Email": "p0@example.com",
        "Score__c": 0,
    }
    assert payload[1]["Email"] is None and payload[1]["Score__c"] == 0.5


def test_bulk_jobs_respect_batch_size(state: StateStore) -> None:
    fake = FakeSalesforce()
    report = run_sync_partition(contact_spec(batch_size=40), people(100), fake, state)
    assert len(report.bulk_job_ids) == 3
    assert [len(j.rows) for j in fake.jobs.values()] == [40, 40, 20]
    assert report.sf_processing_ms == 21 and report.apex_ms == 6


def test_invalid_records_are_set_aside_and_tracked(state: StateStore) -> None:
    fake = FakeSalesforce()
    data = pl.DataFrame(
        {
            "id": ["a", "b", "b", None, "c", "d"],
            "last_name": ["A", "B1", "B2", "N", "C", None],
            "email": ["a@x.io", "b@x.io", "b@x.io", "n@x.io", "not-an-email", "d@x.io"],
            "score": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        }
    )
    report = run_sync_partition(contact_spec(), data, fake, state)
    assert report.created == 1
    assert report.invalid == 5
    assert report.error_counts == {
        "INVALID_DUPLICATE_KEY": 2,
        "INVALID_NULL_KEY": 1,
        "INVALID_EMAIL": 1,
        "INVALID_REQUIRED_MISSING": 1,
    }
    assert report.skipped == 5
    # Keyed invalid records are pending in state (b, c, d), the null key cannot be.
    assert report.pending_retries == 3
    assert {s["reason"] for s in report.invalid_sample} >= {"INVALID_NULL_KEY", "INVALID_EMAIL"}


def test_config_problems_stop_the_run_before_anything_is_sent(state: StateStore) -> None:
    fake = FakeSalesforce()
    spec = contact_spec(
        mappings=(FieldMapping("last_name", "LastName"), FieldMapping("x", "Nope__c"))
    )
    with pytest.raises(SyncConfigError, match="Nope__c"):
        run_sync_partition(spec, people(2), fake, state)
    assert fake.jobs == {}


def test_an_unknown_behavior_names_itself_and_the_known_ones(state: StateStore) -> None:
    fake = FakeSalesforce()
    with pytest.raises(BehaviorNotSupported, match=r"unknown behavior 'teleport'; known: \["):
        run_sync_partition(contact_spec(behavior="teleport"), people(2), fake, state)
    assert fake.jobs == {}


def test_gone_records_are_reported_not_deleted(state: StateStore) -> None:
    fake = FakeSalesforce()
    run_sync_partition(contact_spec(), people(5), fake, state)
    report = run_sync_partition(contact_spec(), people(4), fake, state)
    assert report.deleted == 0 and report.unchanged == 4
    assert len(fake.records["Contact"]) == 5


def test_progress_lines_describe_the_run(state: StateStore) -> None:
    lines: list[str] = []
    run_sync_partition(contact_spec(), people(5), FakeSalesforce(), state, progress=lines.append)
    text = "\n".join(lines)
    assert "5 new" in text and "bulk job 750" in text and "created 5" in text


def _run_partition(db: str, partition: str, buckets: int, rows: int) -> tuple[str, int]:
    """A whole partition run in its own process, each with its own (fake) Salesforce."""
    spec = contact_spec(partitions=PartitionSpec(kind="hash", buckets=buckets))
    data = people(rows)
    mine = data.filter(bucket_of(data["id"], buckets) == int(partition[1:]))
    fake = FakeSalesforce()
    with StateStore(db) as store:
        for _ in range(3):
            report = run_sync_partition(spec, mine, fake, store, partition=partition)
    return partition, report.unchanged + report.created


def test_partitions_in_parallel_processes_keep_consistent_state(tmp_path: Path) -> None:
    db = str(tmp_path / "state.db")
    buckets = 4
    keys = bucket_partition_keys(buckets)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(len(keys)) as pool:
        done = pool.starmap(_run_partition, [(db, k, buckets, 400) for k in keys])
    assert sum(n for _, n in done) == 400
    with StateStore(db) as store:
        assert sorted(store.partitions("contacts")) == keys
        assert store.counts("contacts") == {"synced": 400, "pending": 0}
        all_keys = pl.concat([store.load("contacts", k)["key"] for k in keys])
        assert all_keys.n_unique() == 400
        for k in keys:
            part = store.load("contacts", k)["key"]
            assert (bucket_of(part, buckets) == int(k[1:])).all()


def test_engine_imports_neither_dagster_nor_simple_salesforce() -> None:
    banned = {"dagster", "simple_salesforce", "sf_activations.salesforce", "sf_activations.defs"}
    for path in SYNC_DIR.glob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not any(name == b or name.startswith(b + ".") for b in banned), (path, name)


def test_outage_before_the_job_exists_leaves_records_pending_then_sends_them(
    state: StateStore,
) -> None:
    fake = FakeSalesforce()
    fake.unavailable_submits = 1
    first = run_sync_partition(contact_spec(batch_size=5), people(10), fake, state)
    # The first job failed to submit, so the run stopped: both batches are pending.
    assert (first.created, first.rejected, first.pending_retries) == (0, 10, 10)
    assert first.error_counts == {"SALESFORCE_UNAVAILABLE": 10}
    assert fake.jobs == {}
    second = run_sync_partition(contact_spec(batch_size=5), people(10), fake, state)
    assert (second.created, second.pending_retries) == (10, 0)
    assert set(fake.sent.values()) == {1}


def test_outage_while_waiting_leaves_the_job_to_the_next_run(state: StateStore) -> None:
    fake = FakeSalesforce()
    fake.unavailable_waits = 1
    first = run_sync_partition(contact_spec(), people(6), fake, state)
    assert first.created == 0 and len(first.bulk_job_ids) == 1
    assert len(state.journal_open_entries("contacts", "__all__")) == 1
    second = run_sync_partition(contact_spec(), people(6), fake, state)
    assert (second.reconciled, second.created, second.unchanged) == (6, 0, 6)
    assert state.journal_open_entries("contacts", "__all__") == []
    assert set(fake.sent.values()) == {1} and len(fake.jobs) == 1


def test_adding_a_mapping_resends_only_records_with_a_value_for_it(state: StateStore) -> None:
    fake = FakeSalesforce()
    data = people(10).with_columns(
        pl.when(pl.col("id").is_in(["k1", "k5"])).then(pl.lit("Gold")).otherwise(None).alias("tier")
    )
    run_sync_partition(contact_spec(), data, fake, state)
    spec = contact_spec(mappings=(*contact_spec().mappings, FieldMapping("tier", "Tier__c")))
    report = run_sync_partition(spec, data, fake, state)
    assert (report.updated, report.unchanged) == (2, 8)
    assert fake.csv_uploads[-1].splitlines()[1:] == [
        "k1,Name 1,p1@example.com,0.5,Gold",
        "k5,Name 5,p5@example.com,2.5,Gold",
    ]
    assert fake.contact("k5")["Tier__c"] == "Gold"


def test_create_only_inserts_new_records_and_never_updates(state: StateStore) -> None:
    fake = FakeSalesforce()
    spec = contact_spec(behavior="create_only")
    first = run_sync_partition(spec, people(5), fake, state)
    assert first.created == 5 and fake.jobs["750000000000001AAA"].operation == "insert"
    renamed = people(6).with_columns(pl.lit("Changed").alias("last_name"))
    second = run_sync_partition(spec, renamed, fake, state)
    assert (second.created, second.updated) == (1, 0)
    assert fake.contact("k0")["LastName"] == "Name 0"
    assert fake.contact("k5")["LastName"] == "Changed"


def test_create_only_crash_after_upload_does_not_insert_twice(state: StateStore) -> None:
    fake = FakeSalesforce()
    fake.crash_in_wait = True
    spec = contact_spec(behavior="create_only")
    with pytest.raises(SimulatedCrash):
        run_sync_partition(spec, people(12), fake, state)
    report = run_sync_partition(spec, people(12), fake, state)
    assert (report.reconciled, report.created) == (12, 0)
    assert len(fake.records["Contact"]) == 12
    assert set(fake.sent.values()) == {1}


def test_update_only_by_id_updates_existing_records(state: StateStore) -> None:
    fake = FakeSalesforce()
    run_sync_partition(contact_spec(), people(3), fake, state)
    ids = [fake.contact(f"k{i}")["Id"] for i in range(3)]
    spec = contact_spec(
        behavior="update_only",
        key=SyncKey(source="sf_id", target="Id"),
        mappings=(FieldMapping("email", "Email"),),
        rest_threshold=1,
    )
    data = pl.DataFrame(
        {"sf_id": [*ids, "003999999999999AAA"], "email": ["n0@x.io", "n1@x.io", None, "z@x.io"]}
    )
    report = run_sync_partition(spec, data, fake, state, partition="by_id")
    assert (report.updated, report.created, report.rejected) == (3, 0, 1)
    assert report.error_counts == {"INVALID_CROSS_REFERENCE_KEY": 1}
    assert fake.contact("k0")["Email"] == "n0@x.io"
    assert fake.contact("k2")["Email"] is None
    assert fake.contact("k2")["LastName"] == "Name 2"
    # Small follow-ups go through REST collection updates.
    data = data.with_columns(pl.lit("again@x.io").alias("email")).head(1)
    again = run_sync_partition(spec, data, fake, state, partition="by_id")
    assert again.updated == 1
    assert fake.rest_payloads[-1] == [{"Id": ids[0], "Email": "again@x.io"}]


def test_a_journaled_job_salesforce_no_longer_knows_is_abandoned(state: StateStore) -> None:
    entry = state.journal_open(
        sync="contacts",
        partition="__all__",
        sobject="Contact",
        operation="upsert",
        external_id_field="Ext_Id__c",
        key_header="Ext_Id__c",
        keys=pl.Series(["k0", "k1"]),
        fingerprints=pl.Series(["f0", "f1"]),
    )
    state.journal_submitted(entry, "750000000000404AAA")
    fake = FakeSalesforce()
    report = run_sync_partition(contact_spec(), people(2), fake, state)
    assert (report.reconciled, report.created) == (0, 2)
    stale = state.journal_entry(entry)
    assert stale is not None and stale.state == "abandoned"


def test_create_only_leaves_changed_rows_alone_but_accounts_for_them(state: StateStore) -> None:
    fake = FakeSalesforce()
    spec = contact_spec(behavior="create_only")
    run_sync_partition(spec, people(5), fake, state)
    changed = people(5).with_columns(
        pl.when(pl.col("id") == "k1")
        .then(pl.lit("Renamed"))
        .otherwise("last_name")
        .alias("last_name")
    )
    first = run_sync_partition(spec, changed, fake, state)
    assert (first.unchanged, first.created, first.updated, first.rows_compared) == (5, 0, 0, 1)
    assert fake.contact("k1")["LastName"] == "Name 1" and fake.sent["k1"] == 1
    # Left alone once, the row is skipped unread from then on.
    second = run_sync_partition(spec, changed, fake, state)
    assert (second.unchanged, second.rows_compared) == (5, 0)
    # State still holds what Salesforce has: an upsert sync on the same state sends the row.
    upsert = run_sync_partition(contact_spec(), changed, fake, state)
    assert (upsert.updated, upsert.unchanged) == (1, 4)
    assert fake.contact("k1")["LastName"] == "Renamed"
