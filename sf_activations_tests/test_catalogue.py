"""The bad-input catalogue, end to end: engine -> SalesforceClient (simple-salesforce over HTTPS)
-> emulator, then read back from the org with SOQL.

Every case runs twice, once through a Bulk API 2.0 job and once through REST sObject
Collections, since Salesforce's two surfaces encode nulls, empties and errors differently.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import polars as pl
import pytest

from sf_activations.emulator.server import EmulatorServer
from sf_activations.salesforce import SalesforceClient
from sf_activations.sync.report import SyncReport
from sf_activations.sync.run import run_sync_partition
from sf_activations.sync.spec import SyncSpec
from sf_activations.sync.state import StateStore
from sf_activations_tests.catalogue import (
    CASES,
    PARENT_ID,
    PARENT_ID15,
    Case,
    Invalid,
    Outcome,
    Refused,
    Step,
    Synced,
    Transport,
)
from sf_activations_tests.catalogue.org import install
from sf_activations_tests.support import FAST_RETRIES

FAST = FAST_RETRIES
PARTITION = "__all__"


def _params() -> Iterator[Any]:
    for case in CASES:
        for transport in case.transports:
            marks = []
            if transport in case.xfail:
                marks.append(pytest.mark.xfail(strict=True, reason=case.xfail[transport]))
            yield pytest.param(case, transport, id=f"{case.name}-{transport}", marks=marks)


def spec_for(case: Case, transport: Transport) -> SyncSpec:
    """The sync of ``case``; ``transport`` picks Bulk (threshold 0) or REST collections."""
    return SyncSpec(
        name=f"catalogue_{case.name}",
        source_model=f"catalogue.{case.name}",
        sobject=case.sobject,
        behavior=case.behavior,
        key=case.key,
        mappings=case.mappings,
        rest_threshold=0 if transport == "bulk" else 10_000,
    )


def test_case_names_are_unique_and_every_case_expects_something() -> None:
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
    for case in CASES:
        assert case.steps, case.name
        assert any(s.expect or s.keyless or s.total is not None for s in case.steps), case.name


@pytest.mark.parametrize(("case", "transport"), list(_params()))
def test_catalogue(
    case: Case,
    transport: Transport,
    emulator: EmulatorServer,
    client: SalesforceClient,
    state: StateStore,
) -> None:
    parent_id = install(emulator.emulator.org)
    spec = spec_for(case, transport)
    placeholders = {PARENT_ID: parent_id, PARENT_ID15: parent_id[:15]}
    for record in case.seed:
        emulator.emulator.org.create(case.sobject, record)
    for number, step in enumerate(case.steps, start=1):
        _delete_in_salesforce(emulator, client, case, step.deleted_in_salesforce)
        frame = step.frame(placeholders)
        report = run_sync_partition(spec, frame, client, state, partition=PARTITION)
        where = f"{case.name} ({transport}), run {number}"
        _check_transport(report, transport, where)
        _check_step(case, step, report, client, state, transport, parent_id, where)


def _delete_in_salesforce(
    emulator: EmulatorServer, client: SalesforceClient, case: Case, keys: tuple[str, ...]
) -> None:
    """What a user does in the Salesforce UI: move the records of ``keys`` to the recycle bin."""
    if not keys:
        return
    key_field = case.key.target
    rows = client.query(f"SELECT Id, {key_field} FROM {case.sobject}")
    ids = [r["Id"] for r in rows if r[key_field] in keys]
    assert len(ids) == len(keys), f"records to delete for {keys}: {rows}"
    for record_id in ids:
        emulator.emulator.org.delete(case.sobject, record_id)


def _check_transport(report: SyncReport, transport: Transport, where: str) -> None:
    """The run really went the way the parameter says (else the case tests nothing new)."""
    if transport == "rest":
        assert report.bulk_job_ids == [], f"{where}: expected REST, the run used Bulk"
    elif report.sent:
        assert report.bulk_job_ids, f"{where}: expected a Bulk job, the run used REST"


def _check_step(
    case: Case,
    step: Step,
    report: SyncReport,
    client: SalesforceClient,
    state: StateStore,
    transport: Transport,
    parent_id: str,
    where: str,
) -> None:
    org = _read_org(case, step, client)
    key_field = case.key.target
    by_key: dict[str, list[dict[str, Any]]] = {}
    by_lower: dict[str, list[dict[str, Any]]] = {}
    for record in org:
        by_key.setdefault(str(record[key_field]), []).append(record)
        by_lower.setdefault(str(record[key_field]).lower(), []).append(record)
    key_describe = client.describe(case.sobject).field(key_field)
    # Salesforce matches such a key in any case (api §5): 'k1' finds a record keyed 'K1'.
    any_case = key_describe is not None and key_describe.unique and not key_describe.case_sensitive
    rows = {
        r["key"]: r for r in state.load(f"catalogue_{case.name}", PARTITION).iter_rows(named=True)
    }

    problems: list[str] = []
    for key, outcome in step.expect.items():
        problems += _check_record(
            key,
            outcome,
            rows.get(key),
            by_key.get(key) or (by_lower.get(key.lower(), []) if any_case else []),
            transport,
            parent_id,
            sync=f"catalogue_{case.name}",
            sobject=case.sobject,
        )
    keyless = Counter(s["reason"] for s in report.invalid_sample if not str(s["key"]).strip())
    if dict(keyless) != dict(step.keyless):
        problems.append(f"keyless invalid rows {dict(keyless)} != expected {dict(step.keyless)}")
    if step.total is not None and len(org) != step.total:
        problems.append(f"{len(org)} live {case.sobject} records, expected {step.total}")
    for key in step.absent:
        if key in by_key:
            problems.append(f"{key!r}: expected no record, found {by_key[key]}")
    assert not problems, f"{where}: " + "; ".join(problems) + f"\nreport: {report.summary()}"


def _check_record(
    key: str,
    outcome: Outcome,
    row: Mapping[str, Any] | None,
    records: list[dict[str, Any]],
    transport: Transport,
    parent_id: str,
    *,
    sync: str,
    sobject: str,
) -> list[str]:
    if row is None:
        return [f"{key!r}: no state row, expected {outcome}"]
    if len(records) > 1:
        return [f"{key!r}: {len(records)} records in Salesforce, expected at most one"]
    record = records[0] if records else None
    if isinstance(outcome, Synced):
        out = []
        if row["status"] != "synced":
            out.append(
                f"{key!r}: state {row['status']} ({row['error_code']}: {row['error_message']}),"
                " expected synced"
            )
        if record is None:
            return [*out, f"{key!r}: not in Salesforce, expected synced"]
        if row["salesforce_id"] != record["Id"]:
            out.append(f"{key!r}: state id {row['salesforce_id']} != Salesforce {record['Id']}")
        return out + _check_values(key, outcome.values, record, parent_id)
    if isinstance(outcome, Invalid):
        codes = {outcome.reason}
    elif isinstance(outcome, Refused):
        codes = {outcome.reason, outcome.code}
    else:
        codes = {outcome.code_for(transport)}
    out = []
    if row["status"] != "pending" or row["error_code"] not in codes:
        out.append(
            f"{key!r}: state {row['status']} {row['error_code']!r} ({row['error_message']}), "
            f"expected pending {' or '.join(sorted(codes))}"
        )
    message = str(row["error_message"] or "")
    # STYLE: a user-facing error names the sync and the object, and says what to do.
    engine_side = isinstance(outcome, Invalid) or (
        isinstance(outcome, Refused) and row["error_code"] == outcome.reason
    )
    if engine_side and not (sync in message and sobject in message):
        out.append(f"{key!r}: invalid message {message!r} names neither sync nor object")
    if not message:
        out.append(f"{key!r}: pending without an error message")
    if outcome.stored is None:
        if record is not None:
            out.append(f"{key!r}: expected no record in Salesforce, found {record}")
    elif record is None:
        out.append(f"{key!r}: expected the earlier record to stay, found none")
    else:
        out += _check_values(key, outcome.stored, record, parent_id)
    return out


def _check_values(
    key: str, expected: Mapping[str, Any], record: Mapping[str, Any], parent_id: str
) -> list[str]:
    out = []
    for name, given in expected.items():
        want = parent_id if given == PARENT_ID else given
        got = record.get(name)
        same = (
            isinstance(want, float)
            and isinstance(got, int | float)
            and not isinstance(got, bool)
            and math.isclose(want, float(got), rel_tol=1e-12, abs_tol=1e-9)
        ) or (got == want and type(got) is type(want))
        if not same:
            out.append(f"{key!r}.{name}: stored {got!r}, expected {want!r}")
    return out


def _read_org(case: Case, step: Step, client: SalesforceClient) -> list[dict[str, Any]]:
    """Every live record of the case's object, with the fields the step's expectations name."""
    names = {"Id", case.key.target}
    for outcome in step.expect.values():
        if isinstance(outcome, Synced):
            names |= set(outcome.values)
        elif not isinstance(outcome, Synced) and outcome.stored:
            names |= set(outcome.stored)
    fields = ", ".join(sorted(names))
    return client.query(f"SELECT {fields} FROM {case.sobject}")


def test_catalogue_reads_back_what_it_wrote(
    emulator: EmulatorServer, client: SalesforceClient
) -> None:
    """The harness's own check: a record written straight into the org reads back typed."""
    install(emulator.emulator.org)
    emulator.emulator.org.create(
        "Catalogue_Item__c", {"Ext__c": "x", "Amount__c": 2.5, "Active__c": True}
    )
    rows = client.query("SELECT Ext__c, Amount__c, Active__c, Text__c FROM Catalogue_Item__c")
    assert rows == [{"Ext__c": "x", "Amount__c": 2.5, "Active__c": True, "Text__c": None}]
    assert pl.DataFrame(rows).height == 1
