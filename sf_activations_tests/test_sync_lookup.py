"""Update Only keyed on a field other than the Id: records are looked up by SOQL, then updated."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl
import pytest

from sf_activations.sync.lookup import AMBIGUOUS, NO_MATCH
from sf_activations.sync.mapping import SyncConfigError, validate_spec
from sf_activations.sync.model import FieldDescribe, ObjectDescribe
from sf_activations.sync.run import run_sync_partition
from sf_activations.sync.spec import FieldMapping, SyncKey, SyncSpec
from sf_activations.sync.state import StateStore
from sf_activations_tests.test_sync_engine import contact_spec, people
from sf_activations_tests.test_sync_fakes import FakeSalesforce, SimulatedCrash


def by_email(*, spec_of: Callable[..., SyncSpec] = contact_spec, **overrides: Any) -> SyncSpec:
    """An Update Only sync keyed on Contact.Email writing LastName (``spec_of`` builds it)."""
    base: dict[str, Any] = {
        "name": "enrich",
        "behavior": "update_only",
        "key": SyncKey(source="email", target="Email"),
        "mappings": (FieldMapping("last_name", "LastName"),),
    }
    base.update(overrides)
    return spec_of(**base)


def rows(emails: list[str], names: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"email": emails, "last_name": names})


@pytest.fixture
def fake(state: StateStore) -> FakeSalesforce:
    sf = FakeSalesforce()
    run_sync_partition(contact_spec(), people(5), sf, state)  # p0..p4@example.com
    return sf


def test_keys_are_looked_up_once_then_updated_by_id(
    fake: FakeSalesforce, state: StateStore
) -> None:
    data = rows(["P0@Example.com", "p1@example.com", "nobody@x.io"], ["Zero", "One", "Nobody"])
    first = run_sync_partition(by_email(), data, fake, state)
    assert (first.updated, first.created, first.rejected) == (2, 0, 1)
    assert first.error_counts == {NO_MATCH: 1}
    assert fake.lookups == [["P0@Example.com", "p1@example.com", "nobody@x.io"]]
    zero = fake.contact("k0")
    # Matched ignoring case; the key's own field is left as Salesforce has it.
    assert (zero["LastName"], zero["Email"]) == ("Zero", "p0@example.com")
    assert fake.contact("k1")["LastName"] == "One"
    sample = first.rejected_sample[0]
    assert sample["key"] == "nobody@x.io" and sample["code"] == NO_MATCH
    assert "no Contact record has Email = 'nobody@x.io'" in sample["message"]
    assert state.counts("enrich") == {"synced": 2, "pending": 1}

    # Unchanged: nothing sent; the pending key is looked up again (and still not found).
    second = run_sync_partition(by_email(), data, fake, state)
    assert (second.unchanged, second.updated, second.rejected) == (2, 0, 1)
    assert fake.lookups[-1] == ["nobody@x.io"]

    # A changed row keeps the record it was matched to: no lookup for it.
    changed = rows(["P0@Example.com", "p1@example.com"], ["Zero v2", "One"])
    third = run_sync_partition(by_email(), changed, fake, state)
    assert third.updated == 1
    assert len(fake.lookups) == 2
    assert fake.contact("k0")["LastName"] == "Zero v2"


def test_a_key_found_later_is_updated_then(fake: FakeSalesforce, state: StateStore) -> None:
    data = rows(["new@x.io"], ["Newcomer"])
    assert run_sync_partition(by_email(), data, fake, state).error_counts == {NO_MATCH: 1}
    # Someone creates the record in Salesforce; the next run finds it.
    extra = people(1).with_columns(pl.lit("k9").alias("id"), pl.lit("new@x.io").alias("email"))
    run_sync_partition(contact_spec(), extra, fake, state, partition="more")
    later = run_sync_partition(by_email(), data, fake, state)
    assert (later.updated, later.rejected, later.pending_retries) == (1, 0, 0)
    assert fake.contact("k9")["LastName"] == "Newcomer"


def test_several_matching_records_are_not_updated(fake: FakeSalesforce, state: StateStore) -> None:
    twin = people(1).with_columns(pl.lit("k8").alias("id"), pl.lit("P2@EXAMPLE.COM").alias("email"))
    run_sync_partition(contact_spec(), twin, fake, state, partition="twin")
    report = run_sync_partition(by_email(), rows(["p2@example.com"], ["Who"]), fake, state)
    assert (report.updated, report.error_counts) == (0, {AMBIGUOUS: 1})
    message = report.rejected_sample[0]["message"]
    ids = sorted([fake.contact("k2")["Id"], fake.contact("k8")["Id"]])
    assert message.startswith(
        f"2 Contact records have Email = 'p2@example.com' ({ids[0]}, {ids[1]})"
    )
    assert fake.contact("k2")["LastName"] == "Name 2" and fake.contact("k8")["LastName"] == "Name 0"


def test_keys_differing_only_in_case_are_duplicates(
    fake: FakeSalesforce, state: StateStore
) -> None:
    data = rows(["p3@example.com", "P3@example.com", "p4@example.com"], ["A", "B", "C"])
    report = run_sync_partition(by_email(), data, fake, state)
    assert report.invalid == 2 and report.updated == 1
    assert {s["reason"] for s in report.invalid_sample} == {"INVALID_DUPLICATE_KEY"}
    assert fake.contact("k3")["LastName"] == "Name 3"


def test_a_number_key_matches_numerically(fake: FakeSalesforce, state: StateStore) -> None:
    spec = by_email(key=SyncKey(source="score", target="Score__c"))
    data = pl.DataFrame({"score": [1, 7], "last_name": ["Scored", "None"]})  # people: i / 2
    report = run_sync_partition(spec, data, fake, state)
    assert (report.updated, report.error_counts) == (1, {NO_MATCH: 1})
    assert fake.contact("k2")["LastName"] == "Scored"
    assert fake.lookups[-1] == ["1", "7"]


def test_crash_after_upload_is_reconciled_by_id(fake: FakeSalesforce, state: StateStore) -> None:
    data = rows([f"p{i}@example.com" for i in range(5)], [f"New {i}" for i in range(5)])
    fake.crash_in_wait = True
    with pytest.raises(SimulatedCrash):
        run_sync_partition(by_email(), data, fake, state)
    fake.crash_in_wait = False
    jobs = len(fake.jobs)
    report = run_sync_partition(by_email(), data, fake, state)
    # The job's results (identified by Id) are matched back to their email keys.
    assert (report.reconciled, report.updated, report.unchanged) == (5, 0, 5)
    assert len(fake.jobs) == jobs
    assert state.counts("enrich") == {"synced": 5, "pending": 0}


def test_update_only_key_fields_are_checked() -> None:
    fields = (
        FieldDescribe("Id", "Id", "id", filterable=True),
        FieldDescribe("Active__c", "Active", "boolean", updateable=True),
        FieldDescribe("Notes__c", "Notes", "textarea", length=32000, filterable=False),
        FieldDescribe("Code__c", "Code", "string", length=20, updateable=True),
        FieldDescribe("Name", "Name", "string", length=80, updateable=True),
    )
    describe = ObjectDescribe(
        name="Thing__c",
        label="Thing",
        key_prefix="a01",
        createable=True,
        updateable=True,
        deletable=True,
        fields=fields,
    )

    def problems(target: str) -> list[str]:
        spec = by_email(
            sobject="Thing__c",
            key=SyncKey(source="k", target=target),
            mappings=(FieldMapping("n", "Name"),),
        )
        return validate_spec(spec, describe)

    assert problems("Code__c") == []
    assert problems("Id") == []
    (boolean,) = problems("Active__c")
    assert "Thing__c.Active__c is a boolean field" in boolean and "key.target" in boolean
    (long_text,) = problems("Notes__c")
    assert "cannot be used in a SOQL filter" in long_text


def test_a_lookup_field_key_fails_before_anything_is_sent(state: StateStore) -> None:
    fake = FakeSalesforce()
    spec = by_email(key=SyncKey(source="account", target="AccountId"))
    data = pl.DataFrame({"account": ["001000000000001AAA"], "last_name": ["X"]})
    with pytest.raises(SyncConfigError, match=r"Contact\.AccountId is a reference field"):
        run_sync_partition(spec, data, fake, state)
    assert fake.lookups == []
    assert not fake.jobs
