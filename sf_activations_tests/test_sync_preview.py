"""The sync tester: what a run would send, computed without sending or changing state."""

from __future__ import annotations

import polars as pl

from sf_activations.salesforce import SalesforceClient
from sf_activations.sync.lookup import NO_MATCH
from sf_activations.sync.preview import EMPTY_SHOWN, NULL_SHOWN, preview_sync_partition
from sf_activations.sync.run import run_sync_partition
from sf_activations.sync.spec import FieldMapping, SyncKey
from sf_activations.sync.state import StateStore
from sf_activations_tests.test_sync_emulator import contact_spec, contacts, people, writes


def test_a_first_preview_shows_every_record_and_changes_nothing(
    client: SalesforceClient, state: StateStore
) -> None:
    data = people(4).with_columns(
        pl.when(pl.col("id") == "c1").then(None).otherwise("email").alias("email"),
        pl.when(pl.col("id") == "c2").then(pl.lit("")).otherwise("last_name").alias("last_name"),
    )
    bad = people(1).with_columns(pl.lit("c9").alias("id"), pl.lit("not-an-email").alias("email"))
    preview = preview_sync_partition(contact_spec(), pl.concat([data, bad]), client, state)
    assert (preview.new, preview.changed, preview.unchanged, preview.invalid) == (4, 0, 0, 1)
    (write,) = preview.writes
    assert (write.sobject, write.operation, write.transport, write.records) == (
        "Contact",
        "upsert",
        "bulk",
        4,
    )
    assert write.headers == ("External_Id__c", "LastName", "Email", "Account.External_Id__c")
    first = {row["External_Id__c"]: row for row in write.sample}
    assert first["c1"]["Email"] == NULL_SHOWN and first["c2"]["LastName"] == EMPTY_SHOWN
    assert first["c0"]["Email"] == "p0@example.com"
    assert preview.invalid_sample[0]["reason"] == "INVALID_EMAIL"
    text = "\n".join(preview.lines())
    assert "would upsert 4 Contact record(s) via bulk (about 6 API call(s))" in text
    assert "invalid: key c9: INVALID_EMAIL" in text
    # Nothing sent, nothing remembered.
    assert writes(preview.api_calls) == {}
    assert contacts(client) == {}
    assert state.counts("contacts") == {"synced": 0, "pending": 0}


def test_a_preview_after_a_change_shows_exactly_what_the_run_sends(
    client: SalesforceClient, state: StateStore
) -> None:
    run_sync_partition(contact_spec(), people(5), client, state)
    changed = people(5).with_columns(
        pl.when(pl.col("id") == "c3")
        .then(pl.lit("Renamed"))
        .otherwise("last_name")
        .alias("last_name")
    )
    spec = contact_spec(rest_threshold=None)
    for _ in range(2):  # a preview changes nothing, so a second one sees the same
        preview = preview_sync_partition(spec, changed, client, state)
        assert (preview.changed, preview.unchanged, preview.rows_compared) == (1, 4, 1)
        (write,) = preview.writes
        assert (write.transport, write.records, write.api_calls) == ("rest", 1, 1)
        assert write.sample[0]["LastName"] == "Renamed"
    report = run_sync_partition(spec, changed, client, state)
    assert (report.updated, report.sent) == (1, 1)
    assert preview_sync_partition(spec, changed, client, state).writes == ()


def test_a_preview_looks_keys_up_but_remembers_nothing(
    client: SalesforceClient, state: StateStore
) -> None:
    run_sync_partition(contact_spec(), people(2), client, state)
    spec = contact_spec(
        name="enrich",
        behavior="update_only",
        key=SyncKey(source="email", target="Email"),
        mappings=(FieldMapping("last_name", "LastName"),),
    )
    data = pl.DataFrame({"email": ["P0@example.com", "ghost@x.io"], "last_name": ["A", "B"]})
    preview = preview_sync_partition(spec, data, client, state)
    assert preview.api_calls.get("query") == 1
    assert preview.unmatched == {NO_MATCH: 1}
    assert preview.unmatched_sample[0]["key"] == "ghost@x.io"
    (write,) = preview.writes
    assert (write.operation, write.records, write.headers) == ("update", 1, ("Id", "LastName"))
    assert state.counts("enrich") == {"synced": 0, "pending": 0}
    assert contacts(client)["c0"]["LastName"] == "Person 0"


def test_a_mirror_preview_lists_the_deletes(client: SalesforceClient, state: StateStore) -> None:
    spec = contact_spec(behavior="mirror")
    run_sync_partition(spec, people(6), client, state)
    preview = preview_sync_partition(spec, people(6).head(4), client, state)
    assert preview.gone == 2
    (delete,) = preview.writes
    assert (delete.operation, delete.records, delete.headers) == ("delete", 2, ("Id",))
    assert len(contacts(client)) == 6
