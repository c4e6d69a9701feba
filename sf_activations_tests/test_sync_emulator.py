"""The engine's scenarios through the real client (simple-salesforce over HTTPS) and the emulator."""

from __future__ import annotations

import multiprocessing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from sf_activations.emulator.server import EmulatorServer
from sf_activations.salesforce import SalesforceClient, connect, credentials_from_connection_file
from sf_activations.sync.model import BulkJobInfo
from sf_activations.sync.partitions import bucket_of, bucket_partition_keys
from sf_activations.sync.run import run_sync_partition
from sf_activations.sync.spec import FieldMapping, PartitionSpec, SyncKey, SyncSpec
from sf_activations.sync.state import StateStore
from sf_activations_tests.support import FAST_RETRIES
from sf_activations_tests.test_sync_fakes import SimulatedCrash

FAST = FAST_RETRIES

WRITE_KINDS = ("bulk", "collection")


def contact_spec(**overrides: Any) -> SyncSpec:
    base: dict[str, Any] = {
        "name": "contacts",
        "source_model": "dim_contacts",
        "sobject": "Contact",
        "behavior": "update_or_create",
        "key": SyncKey(source="id", target="External_Id__c"),
        "mappings": (
            FieldMapping("last_name", "LastName"),
            FieldMapping("email", "Email"),
            FieldMapping("account", "AccountId", lookup_field="External_Id__c"),
        ),
        "rest_threshold": 0,
    }
    base.update(overrides)
    return SyncSpec(**base)


def account_spec() -> SyncSpec:
    return SyncSpec(
        name="accounts",
        source_model="dim_accounts",
        sobject="Account",
        behavior="update_or_create",
        key=SyncKey(source="id", target="External_Id__c"),
        mappings=(FieldMapping("name", "Name"),),
    )


def people(n: int, *, account: str | None = None) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": [f"c{i}" for i in range(n)],
            "last_name": [f"Person {i}" for i in range(n)],
            "email": [f"p{i}@example.com" for i in range(n)],
            "account": [account] * n,
        },
        schema={"id": pl.String, "last_name": pl.String, "email": pl.String, "account": pl.String},
    )


def writes(calls: Mapping[str, int]) -> dict[str, int]:
    return {k: v for k, v in calls.items() if k.startswith(WRITE_KINDS)}


def contacts(client: SalesforceClient) -> dict[str, dict[str, Any]]:
    rows = client.query("SELECT Id, External_Id__c, LastName, Email, AccountId FROM Contact")
    return {str(r["External_Id__c"]): r for r in rows}


def test_create_then_rerun_sends_nothing(client: SalesforceClient, state: StateStore) -> None:
    first = run_sync_partition(contact_spec(), people(25), client, state)
    assert (first.created, first.rejected, first.invalid) == (25, 0, 0)
    assert len(first.bulk_job_ids) == 1
    assert len(contacts(client)) == 25

    second = run_sync_partition(contact_spec(), people(25), client, state)
    assert (second.created, second.updated, second.unchanged) == (0, 0, 25)
    assert writes(second.api_calls) == {}
    assert second.bulk_job_ids == []


def test_one_change_sends_one_record_and_null_clears(
    client: SalesforceClient, state: StateStore
) -> None:
    run_sync_partition(contact_spec(), people(10), client, state)
    edited = people(10).with_columns(
        pl.when(pl.col("id") == "c3").then(None).otherwise(pl.col("email")).alias("email")
    )
    report = run_sync_partition(contact_spec(), edited, client, state)
    assert (report.updated, report.unchanged) == (1, 9)
    job = report.bulk_job_ids[0]
    info = client.bulk_job_info(job)
    assert info.records_processed == 1
    now = contacts(client)
    assert now["c3"]["Email"] is None
    assert now["c4"]["Email"] == "p4@example.com"


def test_small_change_goes_through_collections(client: SalesforceClient, state: StateStore) -> None:
    spec = contact_spec(rest_threshold=200)
    report = run_sync_partition(spec, people(5), client, state)
    assert report.created == 5 and report.bulk_job_ids == []
    assert writes(report.api_calls) == {"collections": 1}
    assert len(contacts(client)) == 5


def test_rejected_lookup_is_pending_and_succeeds_once_the_parent_exists(
    client: SalesforceClient, state: StateStore
) -> None:
    first = run_sync_partition(contact_spec(), people(4, account="acme"), client, state)
    assert (first.created, first.rejected, first.pending_retries) == (0, 4, 4)
    assert set(first.error_counts) == {"INVALID_FIELD"}
    assert "acme" in first.rejected_sample[0]["message"]

    accounts = pl.DataFrame({"id": ["acme"], "name": ["Acme Inc"]})
    assert run_sync_partition(account_spec(), accounts, client, state).created == 1

    second = run_sync_partition(contact_spec(), people(4, account="acme"), client, state)
    assert (second.created, second.rejected, second.pending_retries) == (4, 0, 0)
    account_id = client.query("SELECT Id FROM Account")[0]["Id"]
    assert {r["AccountId"] for r in contacts(client).values()} == {account_id}


class CrashAfterUpload:
    """The real client, except that the process 'dies' while the first Bulk job runs."""

    def __init__(self, inner: SalesforceClient) -> None:
        self.inner = inner
        self.armed = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def bulk_wait(self, job_id: str, *, timeout_s: float = 86400.0) -> BulkJobInfo:
        info = self.inner.bulk_wait(job_id, timeout_s=timeout_s)
        if self.armed:
            self.armed = False
            raise SimulatedCrash(job_id)
        return info


def test_crash_after_upload_is_reconciled_without_duplicates(
    client: SalesforceClient, state: StateStore
) -> None:
    crashing = CrashAfterUpload(client)
    with pytest.raises(SimulatedCrash):
        run_sync_partition(contact_spec(), people(30), crashing, state)  # type: ignore[arg-type]
    assert len(contacts(client)) == 30
    assert state.counts("contacts") == {"synced": 0, "pending": 0}

    report = run_sync_partition(contact_spec(), people(30), client, state)
    assert report.reconciled == 30
    assert (report.created, report.updated, report.unchanged) == (0, 0, 30)
    assert writes(report.api_calls).get("bulk_create", 0) == 0
    assert len(client.query("SELECT Id FROM Contact")) == 30
    assert state.counts("contacts") == {"synced": 30, "pending": 0}


def _partition_worker(connection_file: str, db: str, partition: str, buckets: int) -> int:
    spec = contact_spec(partitions=PartitionSpec(kind="hash", buckets=buckets))
    data = people(200)
    mine = data.filter(bucket_of(data["id"], buckets) == int(partition[1:]))
    creds = credentials_from_connection_file(connection_file, "jwt")
    with connect(creds, **FAST) as port, StateStore(db) as store:
        report = run_sync_partition(spec, mine, port, store, partition=partition)
        again = run_sync_partition(spec, mine, port, store, partition=partition)
    assert again.unchanged == report.created
    return report.created


def test_partitions_in_two_processes(
    emulator: EmulatorServer, client: SalesforceClient, tmp_path: Path
) -> None:
    db = str(tmp_path / "state.db")
    keys: Sequence[str] = bucket_partition_keys(2)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        created = pool.starmap(
            _partition_worker, [(str(emulator.connection_file), db, k, 2) for k in keys]
        )
    assert sum(created) == 200
    assert len(contacts(client)) == 200
    with StateStore(db) as store:
        assert store.counts("contacts") == {"synced": 200, "pending": 0}
        ids = pl.concat([store.load("contacts", k)["salesforce_id"] for k in keys])
        assert ids.n_unique() == 200


def test_row_locks_are_retried_within_the_run(
    emulator: EmulatorServer, client: SalesforceClient, state: StateStore
) -> None:
    emulator.emulator.org.add_lock_rule(sobject="Contact", share=1.0, count=3)
    report = run_sync_partition(contact_spec(), people(10), client, state)
    assert (report.created, report.rejected, report.pending_retries) == (10, 0, 0)
    assert len(report.bulk_job_ids) == 2  # the job, then one smaller job for the 3 locked
    assert len(contacts(client)) == 10


def test_trigger_rejection_is_reported_with_its_code_and_apex_time(
    emulator: EmulatorServer, client: SalesforceClient, state: StateStore
) -> None:
    emulator.emulator.org.add_trigger(
        "Contact", field="LastName", equals="Person 2", apex_ms_per_record=1.0
    )
    report = run_sync_partition(contact_spec(), people(5), client, state)
    assert (report.created, report.rejected) == (4, 1)
    assert report.error_counts == {"CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY": 1}
    assert report.rejected_sample[0]["key"] == "c2"
    assert report.rejected_fraction == pytest.approx(0.2)
    row = state.load("contacts", "__all__").filter(pl.col("key") == "c2").row(0, named=True)
    assert row["status"] == "pending" and row["attempts"] == 1


def test_create_only_crash_is_reconciled_without_duplicate_inserts(
    client: SalesforceClient, state: StateStore
) -> None:
    spec = contact_spec(behavior="create_only")
    with pytest.raises(SimulatedCrash):
        run_sync_partition(spec, people(15), CrashAfterUpload(client), state)  # type: ignore[arg-type]
    report = run_sync_partition(spec, people(16), client, state)
    assert (report.reconciled, report.created, report.unchanged) == (15, 1, 15)
    assert len(client.query("SELECT Id FROM Contact")) == 16


def test_update_only_by_id(client: SalesforceClient, state: StateStore) -> None:
    run_sync_partition(contact_spec(), people(3), client, state)
    by_key = contacts(client)
    spec = contact_spec(
        behavior="update_only",
        key=SyncKey(source="sf_id", target="Id"),
        mappings=(FieldMapping("email", "Email"),),
    )
    data = pl.DataFrame(
        {"sf_id": [by_key[f"c{i}"]["Id"] for i in range(3)], "email": ["a@x.io", None, "c@x.io"]}
    )
    report = run_sync_partition(spec, data, client, state, partition="ids")
    assert (report.updated, report.created, report.rejected) == (3, 0, 0)
    now = contacts(client)
    assert [now[f"c{i}"]["Email"] for i in range(3)] == ["a@x.io", None, "c@x.io"]
    assert now["c1"]["LastName"] == "Person 1"


def test_awkward_values_survive_the_bulk_csv(client: SalesforceClient, state: StateStore) -> None:
    names = ['O"Brien, Jr.', "line one\nline two", "Zoë 名前 ✓", " padded ", "#N/A-ish", "=1+1"]
    data = pl.DataFrame(
        {
            "id": [f"w{i}" for i in range(len(names))],
            "last_name": names,
            "email": [None] * len(names),
            "account": [None] * len(names),
        },
        schema={"id": pl.String, "last_name": pl.String, "email": pl.String, "account": pl.String},
    )
    report = run_sync_partition(contact_spec(), data, client, state)
    assert (report.created, report.rejected) == (len(names), 0)
    got = contacts(client)
    assert [got[f"w{i}"]["LastName"] for i in range(len(names))] == names


def test_key_case_change_and_back_writes_the_record_back(
    client: SalesforceClient, state: StateStore
) -> None:
    # External_Id__c is Unique and case-insensitive: k1 and K1 are one record.
    def person(key: str, name: str) -> pl.DataFrame:
        return people(1).with_columns(pl.lit(key).alias("id"), pl.lit(name).alias("last_name"))

    first = run_sync_partition(contact_spec(), person("k1", "Alpha"), client, state)
    second = run_sync_partition(contact_spec(), person("K1", "Beta"), client, state)
    assert (first.created, second.created, second.updated) == (1, 0, 1)
    # One record, one key in state.
    assert state.load("contacts", "__all__", columns=("key",)).rows() == [("K1",)]
    third = run_sync_partition(contact_spec(), person("k1", "Alpha"), client, state)
    assert third.updated == 1
    assert {k: r["LastName"] for k, r in contacts(client).items()} == {"k1": "Alpha"}
    assert state.load("contacts", "__all__", columns=("key",)).rows() == [("k1",)]


def test_a_literal_na_value_is_stored_as_text(client: SalesforceClient, state: StateStore) -> None:
    data = people(3).with_columns(
        pl.when(pl.col("id") == "c1")
        .then(pl.lit("#N/A"))
        .otherwise(pl.col("last_name"))
        .alias("last_name")
    )
    report = run_sync_partition(contact_spec(), data, client, state)
    assert report.created == 3 and len(report.bulk_job_ids) == 1
    # The two ordinary records went by Bulk, the '#N/A' one by REST (where it is a value).
    assert writes(report.api_calls)["collections"] == 1
    assert contacts(client)["c1"]["LastName"] == "#N/A"
