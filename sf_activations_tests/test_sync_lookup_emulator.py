"""Update Only by Email through the real client and the emulator: SOQL lookups, then updates by Id."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from sf_activations.salesforce import SalesforceClient
from sf_activations.sync.lookup import AMBIGUOUS, NO_MATCH
from sf_activations.sync.mapping import SyncConfigError
from sf_activations.sync.run import run_sync_partition
from sf_activations.sync.spec import SyncKey, SyncSpec
from sf_activations.sync.state import StateStore
from sf_activations_tests.test_sync_emulator import contact_spec, contacts, people
from sf_activations_tests.test_sync_lookup import by_email as update_only_by_email


def by_email(**overrides: Any) -> SyncSpec:
    return update_only_by_email(spec_of=contact_spec, **overrides)


def test_update_only_by_email_end_to_end(client: SalesforceClient, state: StateStore) -> None:
    run_sync_partition(contact_spec(), people(6), client, state)  # p0..p5@example.com
    twin = people(1).with_columns(pl.lit("c9").alias("id"), pl.lit("P5@Example.COM").alias("email"))
    run_sync_partition(contact_spec(), twin, client, state, partition="twin")
    data = pl.DataFrame(
        {
            "email": ["P0@EXAMPLE.com", "p1@example.com", "nobody@x.io", "p5@example.com"],
            "last_name": ["Zero", "One", "Nobody", "Five"],
        }
    )
    first = run_sync_partition(by_email(), data, client, state)
    assert (first.updated, first.created, first.rejected) == (2, 0, 2)
    assert first.error_counts == {NO_MATCH: 1, AMBIGUOUS: 1}
    assert first.api_calls.get("query") == 1  # four keys: one short REST query
    got = contacts(client)
    assert (got["c0"]["LastName"], got["c0"]["Email"]) == ("Zero", "p0@example.com")
    assert got["c1"]["LastName"] == "One"
    assert got["c5"]["LastName"] == "Person 5" and got["c9"]["LastName"] == "Person 0"
    assert len(first.bulk_job_ids) == 1  # rest_threshold=0: the two updates went by Bulk

    # Unchanged rows cost nothing; the two pending keys are looked up again.
    second = run_sync_partition(by_email(), data, client, state)
    assert (second.unchanged, second.updated, second.rejected) == (2, 0, 2)
    assert second.api_calls.get("query") == 1
    assert not [k for k in second.api_calls if k.startswith(("bulk", "collection"))]

    # A changed row goes straight to its record by Id (no lookup); REST for a small set.
    changed = data.with_columns(
        pl.when(pl.col("email") == "p1@example.com")
        .then(pl.lit("One v2"))
        .otherwise(pl.col("last_name"))
        .alias("last_name")
    ).head(2)
    third = run_sync_partition(by_email(rest_threshold=None), changed, client, state)
    assert (third.updated, third.unchanged) == (1, 1)
    assert "query" not in third.api_calls
    assert third.api_calls.get("collections") == 1
    assert contacts(client)["c1"]["LastName"] == "One v2"


def test_a_deleted_record_is_looked_up_again(client: SalesforceClient, state: StateStore) -> None:
    run_sync_partition(contact_spec(), people(2), client, state)
    data = pl.DataFrame({"email": ["p0@example.com"], "last_name": ["First"]})
    spec = by_email(rest_threshold=None)
    assert run_sync_partition(spec, data, client, state).updated == 1
    old_id = contacts(client)["c0"]["Id"]
    client.collection_delete([old_id])
    # A replacement record with the same email appears (a re-import, a merge).
    again = people(1).with_columns(
        pl.lit("c7").alias("id"), pl.lit("P0@example.com").alias("email")
    )
    run_sync_partition(contact_spec(), again, client, state, partition="again")

    moved = data.with_columns(pl.lit("Second").alias("last_name"))
    failed = run_sync_partition(spec, moved, client, state)
    assert failed.rejected == 1 and "ENTITY_IS_DELETED" in failed.error_counts
    found = run_sync_partition(spec, moved, client, state)
    assert (found.updated, found.rejected) == (1, 0)
    assert contacts(client)["c7"]["LastName"] == "Second"


def test_many_keys_are_looked_up_in_short_queries(
    client: SalesforceClient, state: StateStore
) -> None:
    n = 700
    run_sync_partition(contact_spec(), people(n), client, state)
    data = pl.DataFrame(
        {
            "email": [f"p{i}@example.com" for i in range(n)],
            "last_name": [f"Renamed {i}" for i in range(n)],
        }
    )
    report = run_sync_partition(by_email(), data, client, state)
    assert (report.updated, report.rejected) == (n, 0)
    # ~26 URL-encoded characters per key: several queries, each URL well under 16 KB.
    assert 2 <= report.api_calls["query"] <= 4
    got = contacts(client)
    assert all(got[f"c{i}"]["LastName"] == f"Renamed {i}" for i in range(n))


def test_a_long_text_key_is_refused(client: SalesforceClient, state: StateStore) -> None:
    spec = by_email(key=SyncKey(source="about", target="Description"))
    data = pl.DataFrame({"about": ["x"], "last_name": ["y"]})
    with pytest.raises(SyncConfigError, match="cannot be used in a SOQL filter"):
        run_sync_partition(spec, data, client, state)
