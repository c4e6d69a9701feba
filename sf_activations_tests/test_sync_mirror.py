"""Mirror: upsert like Update or Create, and delete the records whose keys left the model."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from sf_activations.salesforce import SalesforceClient
from sf_activations.sync.execute import OUTCOME_SCHEMA
from sf_activations.sync.mapping import SyncConfigError
from sf_activations.sync.plan import DeleteGuardTripped
from sf_activations.sync.run import run_sync_partition
from sf_activations.sync.spec import PartitionSpec
from sf_activations.sync.state import StateStore
from sf_activations_tests.test_sync_emulator import (
    CrashAfterUpload,
    contact_spec,
    contacts,
    people,
    writes,
)
from sf_activations_tests.test_sync_fakes import SimulatedCrash


def mirror(**overrides: Any) -> Any:
    return contact_spec(behavior="mirror", **overrides)


def without(frame: pl.DataFrame, *keys: str) -> pl.DataFrame:
    return frame.filter(~pl.col("id").is_in(list(keys)))


def test_records_that_left_the_model_are_deleted(
    client: SalesforceClient, state: StateStore
) -> None:
    first = run_sync_partition(mirror(), people(10), client, state)
    assert (first.created, first.deleted) == (10, 0)
    ids = {k: r["Id"] for k, r in contacts(client).items()}

    data = without(people(10), "c2", "c5", "c7").with_columns(
        pl.when(pl.col("id") == "c1")
        .then(pl.lit("Renamed"))
        .otherwise("last_name")
        .alias("last_name")
    )
    second = run_sync_partition(mirror(), data, client, state)
    assert (second.updated, second.created, second.deleted, second.rejected) == (1, 0, 3, 0)
    left = contacts(client)
    assert sorted(left) == sorted(f"c{i}" for i in range(10) if i not in (2, 5, 7))
    assert left["c1"]["LastName"] == "Renamed"
    deleted = client.query("SELECT Id FROM Contact WHERE IsDeleted = true", include_deleted=True)
    assert sorted(r["Id"] for r in deleted) == sorted(ids[k] for k in ("c2", "c5", "c7"))
    assert state.counts("contacts") == {"synced": 7, "pending": 0}

    third = run_sync_partition(mirror(), data, client, state)
    assert (third.unchanged, third.deleted) == (7, 0)
    assert writes(third.api_calls) == {}


def test_a_run_deleting_too_much_stops_before_sending(
    client: SalesforceClient, state: StateStore
) -> None:
    run_sync_partition(mirror(), people(10), client, state)
    shrunk = people(10).head(4).with_columns(pl.lit("Changed").alias("last_name"))
    with pytest.raises(
        DeleteGuardTripped, match=r"delete 6 of the 10 Contact records the sync tracks \(60%\)"
    ):
        run_sync_partition(mirror(), shrunk, client, state)
    assert len(contacts(client)) == 10
    assert {r["LastName"] for r in contacts(client).values()} != {"Changed"}
    allowed = run_sync_partition(mirror(max_delete_fraction=1.0), shrunk, client, state)
    assert (allowed.deleted, allowed.updated) == (6, 4)
    assert sorted(contacts(client)) == ["c0", "c1", "c2", "c3"]


def test_a_record_deleted_in_salesforce_already_counts_as_deleted(
    client: SalesforceClient, state: StateStore
) -> None:
    run_sync_partition(mirror(), people(4), client, state)
    client.collection_delete([contacts(client)["c3"]["Id"]])
    report = run_sync_partition(mirror(), without(people(4), "c3"), client, state)
    assert (report.deleted, report.rejected) == (1, 0)
    assert state.counts("contacts") == {"synced": 3, "pending": 0}


def test_gone_records_without_a_known_id_are_found_by_key(
    client: SalesforceClient, state: StateStore
) -> None:
    run_sync_partition(mirror(), people(4), client, state)
    # State knows two more keys, both pending without an Id: "c8" was never created, "c9"
    # was (an upsert whose answer was lost), so only Salesforce knows its Id.
    made = client.collection_insert(
        "Contact", [{"LastName": "Lost answer", "External_Id__c": "C9"}], keys=["c9"]
    )
    pending = pl.DataFrame(
        {
            "key": ["c8", "c9"],
            "fingerprint": ["x", "y"],
            "success": [False, False],
            "salesforce_id": [None, None],
            "created": [False, False],
            "error_code": ["SALESFORCE_UNAVAILABLE"] * 2,
            "error_message": ["lost"] * 2,
        },
        schema=OUTCOME_SCHEMA,
    )
    state.commit_results("contacts", "__all__", pending)
    report = run_sync_partition(mirror(), people(4), client, state)
    assert (report.deleted, report.unchanged) == (1, 4)
    assert "c9" not in contacts(client)
    assert client.query(f"SELECT Id FROM Contact WHERE Id = '{made[0].salesforce_id}'") == []
    assert state.counts("contacts") == {"synced": 4, "pending": 0}


def test_a_key_renamed_in_case_keeps_its_record(
    client: SalesforceClient, state: StateStore
) -> None:
    run_sync_partition(mirror(), people(3), client, state)
    before = contacts(client)["c1"]["Id"]
    renamed = people(3).with_columns(
        pl.when(pl.col("id") == "c1").then(pl.lit("C1")).otherwise("id").alias("id")
    )
    report = run_sync_partition(mirror(), renamed, client, state)
    assert (report.deleted, report.updated) == (0, 1)
    assert {r["External_Id__c"]: r["Id"] for r in contacts(client).values()}["C1"] == before
    assert len(contacts(client)) == 3
    again = run_sync_partition(mirror(), renamed, client, state)
    assert (again.deleted, again.unchanged) == (0, 3)


def test_a_crash_during_the_delete_job_converges(
    client: SalesforceClient, state: StateStore
) -> None:
    run_sync_partition(mirror(), people(10), client, state)
    data = without(people(10), "c0", "c4")
    with pytest.raises(SimulatedCrash):
        run_sync_partition(mirror(), data, CrashAfterUpload(client), state)  # type: ignore[arg-type]
    assert len(contacts(client)) == 8  # the job ran; state has not heard of it
    report = run_sync_partition(mirror(), data, client, state)
    assert report.reconciled == 2
    assert state.counts("contacts") == {"synced": 8, "pending": 0}
    assert run_sync_partition(mirror(), data, client, state).deleted == 0


def test_mirror_needs_the_whole_model(client: SalesforceClient, state: StateStore) -> None:
    spec = mirror(partitions=PartitionSpec(kind="hash", buckets=2))
    with pytest.raises(SyncConfigError, match="use partitions: none"):
        run_sync_partition(spec, people(2), client, state, partition="b00")
