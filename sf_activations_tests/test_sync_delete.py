"""Delete: the model lists the records to delete, by External ID or by Salesforce Id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

from sf_activations.config import load_project
from sf_activations.salesforce import SalesforceClient
from sf_activations.sync.mapping import SyncConfigError
from sf_activations.sync.run import run_sync_partition
from sf_activations.sync.spec import FieldMapping, SyncKey
from sf_activations.sync.state import StateStore
from sf_activations_tests.test_config import make_project, problems_of
from sf_activations_tests.test_sync_emulator import contact_spec, contacts, people, writes


def deleting(**overrides: Any) -> Any:
    base: dict[str, Any] = {"name": "purge", "behavior": "delete", "mappings": ()}
    base.update(overrides)
    return contact_spec(**base)


def keys(*values: str, column: str = "id") -> pl.DataFrame:
    return pl.DataFrame({column: list(values)}, schema={column: pl.String})


def test_delete_by_external_id(client: SalesforceClient, state: StateStore) -> None:
    run_sync_partition(contact_spec(), people(6), client, state)
    before = contacts(client)
    report = run_sync_partition(deleting(), keys("c1", "C2", "nobody"), client, state)
    # C2 finds c2 (the External ID ignores case); "nobody" has no record: nothing to delete.
    assert (report.deleted, report.rejected, report.updated, report.created) == (2, 0, 0, 0)
    assert report.api_calls["query"] == 1
    assert sorted(contacts(client)) == ["c0", "c3", "c4", "c5"]
    binned = client.query("SELECT Id FROM Contact WHERE IsDeleted = true", include_deleted=True)
    assert sorted(r["Id"] for r in binned) == sorted(before[k]["Id"] for k in ("c1", "c2"))
    assert state.counts("purge") == {"synced": 3, "pending": 0}

    # A key is deleted once: the same rows again cost nothing.
    again = run_sync_partition(deleting(), keys("c1", "C2", "nobody"), client, state)
    assert (again.unchanged, again.deleted) == (3, 0)
    assert "query" not in again.api_calls and writes(again.api_calls) == {}
    # A new key is looked up and deleted; the others stay untouched.
    more = run_sync_partition(deleting(), keys("c1", "C2", "nobody", "c4"), client, state)
    assert (more.deleted, more.unchanged) == (1, 3)
    assert sorted(contacts(client)) == ["c0", "c3", "c5"]


def test_delete_by_salesforce_id(client: SalesforceClient, state: StateStore) -> None:
    run_sync_partition(contact_spec(), people(4), client, state)
    ids = {k: r["Id"] for k, r in contacts(client).items()}
    client.collection_delete([ids["c3"]])  # someone was faster
    spec = deleting(key=SyncKey(source="sf_id", target="Id"), rest_threshold=None)
    report = run_sync_partition(spec, keys(ids["c0"], ids["c3"], column="sf_id"), client, state)
    assert (report.deleted, report.rejected) == (2, 0)
    assert "query" not in report.api_calls
    assert writes(report.api_calls) == {"collections": 1}
    assert sorted(contacts(client)) == ["c1", "c2"]
    assert state.counts("purge") == {"synced": 2, "pending": 0}


def test_a_refused_delete_stays_pending(client: SalesforceClient, state: StateStore) -> None:
    run_sync_partition(contact_spec(), people(2), client, state)
    spec = deleting(key=SyncKey(source="sf_id", target="Id"))
    bogus = "003000000000000AAA"
    report = run_sync_partition(spec, keys(bogus, column="sf_id"), client, state)
    assert report.deleted == 0 and report.rejected == 1
    assert state.counts("purge") == {"synced": 0, "pending": 1}


def test_delete_syncs_are_checked(client: SalesforceClient, state: StateStore) -> None:
    with pytest.raises(SyncConfigError, match="a delete sync writes no fields"):
        run_sync_partition(
            deleting(mappings=(FieldMapping("last_name", "LastName"),)), people(1), client, state
        )
    with pytest.raises(SyncConfigError, match="must be the Id or a Unique External ID"):
        run_sync_partition(
            deleting(key=SyncKey(source="email", target="Email")), people(1), client, state
        )


DELETE_SYNC = """
source: accounts
object: Account
behavior: delete
key: {source: account_id, target: External_Id__c}
mappings: []
"""


def test_delete_sync_files(tmp_path: Path) -> None:
    (spec,) = load_project(make_project(tmp_path / "ok", syncs={"gone": DELETE_SYNC})).syncs
    assert (spec.behavior, spec.mappings) == ("delete", ())
    with_mapping = DELETE_SYNC.replace("mappings: []", "mappings: [{source: n, target: Name}]")
    (problem,) = problems_of(make_project(tmp_path / "a", syncs={"gone": with_mapping}))
    assert "field 'mappings'" in problem and "takes no mappings" in problem
    upsert = DELETE_SYNC.replace("behavior: delete", "behavior: upsert")
    (problem,) = problems_of(make_project(tmp_path / "b", syncs={"up": upsert}))
    assert "needs at least one mapping" in problem
