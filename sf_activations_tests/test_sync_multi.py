"""Multi-destination: Lead or Contact, Lead or Account (through the emulator)."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from sf_activations.emulator.schema import FieldDef
from sf_activations.emulator.server import EmulatorServer
from sf_activations.salesforce import SalesforceClient
from sf_activations.sync.mapping import SyncConfigError
from sf_activations.sync.run import run_sync_partition
from sf_activations.sync.spec import FieldMapping, SyncKey, SyncSpec
from sf_activations.sync.state import StateStore


def multi(behavior: str = "lead_or_contact", **overrides: Any) -> SyncSpec:
    base: dict[str, Any] = {
        "name": "people",
        "source_model": "people",
        "sobject": "Lead",
        "behavior": behavior,
        "key": SyncKey(source="id", target="External_Id__c"),
        "mappings": (
            FieldMapping("last_name", "LastName"),
            FieldMapping("company", "Company"),
            FieldMapping("title", "Title"),
        ),
        "rest_threshold": 0,
    }
    base.update(overrides)
    return SyncSpec(**base)


def rows(*people: tuple[str, str, str, str]) -> pl.DataFrame:
    return pl.DataFrame(
        [list(p) for p in people],
        schema=["id", "last_name", "company", "title"],
        orient="row",
    )


def by_key(client: SalesforceClient, sobject: str, fields: str) -> dict[str, dict[str, Any]]:
    found = client.query(f"SELECT Id, External_Id__c, {fields} FROM {sobject}")
    return {str(r["External_Id__c"]): r for r in found}


def test_contacts_are_updated_and_the_rest_become_leads(
    client: SalesforceClient, state: StateStore, emulator: EmulatorServer
) -> None:
    made = client.collection_insert(
        "Contact", [{"LastName": "Known", "External_Id__c": "K1"}], keys=["k1"]
    )
    data = rows(("k1", "Known", "Acme", "CTO"), ("k2", "New", "Initech", "Analyst"))
    first = run_sync_partition(multi(), data, client, state)
    assert (first.created, first.updated, first.rejected) == (1, 1, 0)
    contact = by_key(client, "Contact", "LastName, Title")["K1"]
    assert (contact["Id"], contact["Title"]) == (made[0].salesforce_id, "CTO")
    leads = by_key(client, "Lead", "LastName, Company, Title, IsConverted")
    assert sorted(leads) == ["k2"]  # no Lead for a key a Contact has
    assert (leads["k2"]["Company"], leads["k2"]["Title"]) == ("Initech", "Analyst")

    # The lead converts; its Contact inherits the key (Map Lead Fields). The next change goes
    # to the Contact, and the converted Lead is left alone.
    emulator.org.convert_lead(leads["k2"]["Id"])
    changed = data.with_columns(pl.lit("Manager").alias("title"))
    second = run_sync_partition(multi(), changed, client, state)
    assert (second.updated, second.created, second.rejected) == (2, 0, 0)
    contacts = by_key(client, "Contact", "Title")
    assert (contacts["K1"]["Title"], contacts["k2"]["Title"]) == ("Manager", "Manager")
    assert by_key(client, "Lead", "Title")["k2"]["Title"] == "Analyst"

    third = run_sync_partition(multi(), changed, client, state)
    assert (third.unchanged, third.updated) == (2, 0)
    assert not [k for k in third.api_calls if k.startswith(("bulk", "collection", "query"))]


def test_the_key_must_be_unique_on_both_objects(
    client: SalesforceClient, state: StateStore, emulator: EmulatorServer
) -> None:
    # A non-unique External ID: two Contacts could share a key, and the sync would have to guess.
    for obj in ("Lead", "Contact"):
        emulator.org.schema.add_field(
            obj,
            FieldDef(
                name="Legacy_Id__c", label="Legacy", type="string", length=40, external_id=True
            ),
        )
    client.collection_insert(
        "Contact",
        [{"LastName": n, "Legacy_Id__c": "dup"} for n in ("A", "B")],
        keys=["a", "b"],
    )
    spec = multi(key=SyncKey(source="id", target="Legacy_Id__c"))
    with pytest.raises(SyncConfigError, match="Unique External ID on Contact"):
        run_sync_partition(spec, rows(("dup", "X", "Co", "T")), client, state)


def test_lead_or_account_writes_each_field_where_it_exists(
    client: SalesforceClient, state: StateStore
) -> None:
    client.collection_insert("Account", [{"Name": "Old Name", "External_Id__c": "a1"}], keys=["a1"])
    spec = multi(
        "lead_or_account",
        mappings=(
            FieldMapping("last_name", "LastName"),  # Lead only
            FieldMapping("company", "Company"),  # Lead only
            FieldMapping("company", "Name"),  # read-only on Lead: Account only
            FieldMapping("site", "Website"),  # both
        ),
    )
    data = pl.DataFrame(
        {
            "id": ["a1", "a2"],
            "last_name": ["Owner", "Founder"],
            "company": ["Globex", "Hooli"],
            "site": ["globex.example", "hooli.example"],
        }
    )
    report = run_sync_partition(spec, data, client, state)
    assert (report.updated, report.created, report.rejected) == (1, 1, 0)
    account = by_key(client, "Account", "Name, Website")["a1"]
    assert (account["Name"], account["Website"]) == ("Globex", "globex.example")
    lead = by_key(client, "Lead", "LastName, Company, Website")["a2"]
    assert (lead["LastName"], lead["Company"], lead["Website"]) == (
        "Founder",
        "Hooli",
        "hooli.example",
    )
    assert "a1" not in by_key(client, "Lead", "Company")


def test_multi_destination_syncs_are_checked(client: SalesforceClient, state: StateStore) -> None:
    with pytest.raises(SyncConfigError, match="set object: Lead"):
        run_sync_partition(multi(sobject="Contact"), rows(("k", "L", "C", "T")), client, state)
    bad = multi(mappings=(FieldMapping("last_name", "LastName"), FieldMapping("x", "Nope__c")))
    with pytest.raises(SyncConfigError, match="neither Lead nor Contact has a writable field"):
        run_sync_partition(bad, rows(("k", "L", "C", "T")), client, state)
