"""An in-memory Salesforce behind the SalesforcePort protocol, for engine tests.

It is a small real implementation, not a mock: records live in dicts, Bulk jobs parse the
uploaded CSV with the csv module (``#N/A`` clears, an empty cell leaves alone), results come
back as the three CSV bodies Salesforce serves, and every call is counted. Tests steer it with
``reject`` (a per-record rule), ``lock_failures`` (transient row locks) and ``crash_in_wait``.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from sf_activations.sync.model import (
    BulkJobInfo,
    BulkOperation,
    FieldDescribe,
    ObjectDescribe,
    RecordError,
    RecordOutcome,
    SalesforceRequestError,
    SalesforceUnavailable,
)

NULL_CELL = "#N/A"


class SimulatedCrash(BaseException):
    """The process dies here (BaseException: nothing in the engine may swallow it)."""


def contact_describe() -> ObjectDescribe:
    """A Contact with an External ID key and a few typed fields."""
    return ObjectDescribe(
        name="Contact",
        label="Contact",
        key_prefix="003",
        createable=True,
        updateable=True,
        deletable=True,
        fields=(
            FieldDescribe(name="Id", label="Contact ID", type="id", length=18),
            FieldDescribe(
                name="Ext_Id__c",
                label="External Id",
                type="string",
                length=40,
                external_id=True,
                unique=True,
                createable=True,
                updateable=True,
            ),
            FieldDescribe(
                name="LastName",
                label="Last Name",
                type="string",
                length=80,
                createable=True,
                updateable=True,
                nillable=False,
            ),
            FieldDescribe(
                name="Email",
                label="Email",
                type="email",
                length=80,
                createable=True,
                updateable=True,
                id_lookup=True,
            ),
            FieldDescribe(
                name="Score__c",
                label="Score",
                type="double",
                precision=18,
                scale=2,
                createable=True,
                updateable=True,
            ),
            FieldDescribe(
                name="Tier__c",
                label="Tier",
                type="picklist",
                createable=True,
                updateable=True,
                restricted_picklist=True,
                picklist_values=("Gold", "Silver", "Bronze"),
            ),
            FieldDescribe(
                name="AccountId",
                label="Account ID",
                type="reference",
                createable=True,
                updateable=True,
                reference_to=("Account",),
                relationship_name="Account",
            ),
        ),
    )


@dataclass
class _Job:
    id: str
    sobject: str
    operation: str
    external_id_field: str | None
    header: list[str]
    rows: list[list[str]]
    successful: list[list[str]] = field(default_factory=list)
    failed: list[list[str]] = field(default_factory=list)
    processed: bool = False


class FakeSalesforce:
    """In-memory Salesforce implementing ``SalesforcePort``."""

    def __init__(
        self,
        describes: Sequence[ObjectDescribe] = (),
        *,
        reject: Callable[[str, Mapping[str, Any]], RecordError | None] | None = None,
    ) -> None:
        self.describes = {d.name: d for d in describes or [contact_describe()]}
        self.records: dict[str, dict[str, dict[str, Any]]] = {n: {} for n in self.describes}
        self.reject = reject
        self.lock_failures: Counter[str] = Counter()  # key -> how many times to refuse it
        self.crash_in_wait = False
        self.unavailable_submits = 0  # the next N bulk_submit calls fail before a job exists
        self.unavailable_waits = 0  # the next N bulk_wait calls give up (the job still runs)
        self.jobs: dict[str, _Job] = {}
        self.calls: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()  # external id value -> times it was sent
        self.csv_uploads: list[str] = []
        self.rest_payloads: list[list[dict[str, Any]]] = []
        self.lookups: list[list[str]] = []  # the values of each lookup_ids call
        self._next = 0

    # ------------------------------------------------------------------ helpers for tests

    def by_ext(self, sobject: str, field_name: str, value: str) -> dict[str, Any] | None:
        """The record whose ``field_name`` equals ``value``."""
        for rec in self.records[sobject].values():
            if rec.get(field_name) == value:
                return rec
        return None

    def contact(self, key: str) -> dict[str, Any]:
        """The Contact whose Ext_Id__c is ``key`` (KeyError if there is none)."""
        found = self.by_ext("Contact", "Ext_Id__c", key)
        if found is None:
            raise KeyError(key)
        return found

    def _new_id(self, sobject: str) -> str:
        self._next += 1
        prefix = self.describes[sobject].key_prefix or "a00"
        return f"{prefix}{self._next:012d}AAA"

    def _apply(
        self, sobject: str, op: str, ext: str | None, values: Mapping[str, Any], key: str
    ) -> RecordOutcome:
        """One record's write with Salesforce's semantics: None clears, absent leaves alone."""
        self.sent[key] += 1
        if self.lock_failures[key] > 0:
            self.lock_failures[key] -= 1
            return RecordOutcome(
                key=key,
                success=False,
                error=RecordError(
                    "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record"
                ),
            )
        if self.reject is not None:
            error = self.reject(sobject, values)
            if error is not None:
                return RecordOutcome(key=key, success=False, error=error)
        describe = self.describes[sobject]
        for name in values:
            base = name.split(".", 1)[0]
            if describe.field(name) is None and describe.relationship(base) is None:
                return RecordOutcome(
                    key=key,
                    success=False,
                    error=RecordError(
                        "INVALID_FIELD", f"No such column '{name}' on sobject of type {sobject}"
                    ),
                )
        existing = self.by_ext(sobject, ext, key) if (op == "upsert" and ext) else None
        if op == "update":
            existing = self.records[sobject].get(str(values.get("Id")))
            if existing is None:
                return RecordOutcome(
                    key=key,
                    success=False,
                    error=RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id"),
                )
        if existing is None:
            for f in describe.fields:
                if f.required_on_create and values.get(f.name) in (None, ""):
                    return RecordOutcome(
                        key=key,
                        success=False,
                        error=RecordError(
                            "REQUIRED_FIELD_MISSING",
                            f"Required fields are missing: [{f.name}]",
                            (f.name,),
                        ),
                    )
            new_id = self._new_id(sobject)
            record = {"Id": new_id}
            record.update({k: v for k, v in values.items() if v != ""})
            self.records[sobject][new_id] = record
            return RecordOutcome(key=key, success=True, salesforce_id=new_id, created=True)
        existing.update({k: v for k, v in values.items() if v != ""})
        return RecordOutcome(key=key, success=True, salesforce_id=existing["Id"], created=False)

    # ------------------------------------------------------------------ SalesforcePort

    def describe(self, sobject: str, *, refresh: bool = False) -> ObjectDescribe:
        self.calls["describe"] += 1
        if sobject not in self.describes:
            raise SalesforceRequestError(
                "NOT_FOUND", f"The requested resource does not exist: {sobject}"
            )
        return self.describes[sobject]

    def bulk_submit(
        self,
        sobject: str,
        operation: BulkOperation,
        csv_data: bytes,
        *,
        external_id_field: str | None = None,
    ) -> str:
        self.calls["bulk_create"] += 1
        if self.unavailable_submits > 0:
            self.unavailable_submits -= 1
            raise SalesforceUnavailable("503 Service Unavailable (3 attempts)")
        self.calls["bulk_upload"] += 1
        self.calls["bulk_close"] += 1
        text = csv_data.decode("utf-8")
        self.csv_uploads.append(text)
        rows = list(csv.reader(io.StringIO(text)))
        job_id = f"750{len(self.jobs) + 1:012d}AAA"
        self.jobs[job_id] = _Job(job_id, sobject, operation, external_id_field, rows[0], rows[1:])
        return job_id

    def _process(self, job: _Job) -> None:
        if job.processed:
            return
        job.processed = True
        # The engine puts its key column first (the External ID, or Id for updates).
        key_index = job.header.index(job.external_id_field) if job.external_id_field else 0
        for row in job.rows:
            values: dict[str, Any] = {
                h: (None if cell == NULL_CELL else cell)
                for h, cell in zip(job.header, row, strict=True)
            }
            outcome = self._apply(
                job.sobject, job.operation, job.external_id_field, values, row[key_index]
            )
            if outcome.success:
                job.successful.append(
                    [outcome.salesforce_id or "", "true" if outcome.created else "false", *row]
                )
            else:
                assert outcome.error is not None
                cell = f"{outcome.error.code}:{outcome.error.message}:{','.join(outcome.error.fields)} --"
                job.failed.append(["", cell, *row])

    def bulk_wait(self, job_id: str, *, timeout_s: float = 86400.0) -> BulkJobInfo:
        self.calls["bulk_poll"] += 1
        if job_id not in self.jobs:
            raise SalesforceRequestError("NOT_FOUND", "The requested resource does not exist")
        job = self.jobs[job_id]
        self._process(job)
        if self.unavailable_waits > 0:
            self.unavailable_waits -= 1
            raise SalesforceUnavailable(f"polling {job_id}: connection reset (3 attempts)")
        if self.crash_in_wait:
            self.crash_in_wait = False
            raise SimulatedCrash(f"process killed while waiting for {job_id}")
        return self.bulk_job_info(job_id)

    def bulk_job_info(self, job_id: str) -> BulkJobInfo:
        self.calls["bulk_poll"] += 1
        job = self.jobs[job_id]
        return BulkJobInfo(
            id=job_id,
            object=job.sobject,
            operation=job.operation,
            state="JobComplete" if job.processed else "InProgress",
            records_processed=len(job.successful) + len(job.failed),
            records_failed=len(job.failed),
            total_processing_ms=7,
            apex_processing_ms=2,
        )

    def bulk_results(self, job_id: str) -> tuple[bytes, bytes, bytes]:
        self.calls["bulk_results"] += 3
        job = self.jobs[job_id]

        def body(prefix: list[str], rows: list[list[str]]) -> bytes:
            out = io.StringIO()
            writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
            writer.writerow(prefix + job.header)
            writer.writerows(rows)
            return out.getvalue().encode()

        unprocessed = [] if job.processed else job.rows
        return (
            body(["sf__Id", "sf__Created"], job.successful),
            body(["sf__Id", "sf__Error"], job.failed),
            body([], unprocessed),
        )

    def collection_upsert(
        self, sobject: str, external_id_field: str, records: Sequence[Mapping[str, Any]]
    ) -> list[RecordOutcome]:
        self.calls["collection_upsert"] += (len(records) + 199) // 200
        self.rest_payloads.append([dict(r) for r in records])
        out = []
        for rec in records:
            flat: dict[str, Any] = {}
            for k, v in rec.items():
                if isinstance(v, dict):
                    for sub, subv in v.items():
                        flat[f"{k}.{sub}"] = subv
                else:
                    flat[k] = v
            key = str(rec[external_id_field])
            out.append(self._apply(sobject, "upsert", external_id_field, flat, key))
        return out

    def collection_insert(
        self, sobject: str, records: Sequence[Mapping[str, Any]], *, keys: Sequence[str]
    ) -> list[RecordOutcome]:
        self.calls["collection_insert"] += 1
        self.rest_payloads.append([dict(r) for r in records])
        return [
            self._apply(sobject, "insert", None, r, k) for r, k in zip(records, keys, strict=True)
        ]

    def collection_update(
        self, sobject: str, records: Sequence[Mapping[str, Any]], *, keys: Sequence[str]
    ) -> list[RecordOutcome]:
        self.calls["collection_update"] += 1
        self.rest_payloads.append([dict(r) for r in records])
        return [
            self._apply(sobject, "update", None, r, k) for r, k in zip(records, keys, strict=True)
        ]

    def collection_delete(self, ids: Sequence[str]) -> list[RecordOutcome]:
        self.calls["collection_delete"] += 1
        raise NotImplementedError

    def query(self, soql: str) -> list[dict[str, Any]]:
        self.calls["query"] += 1
        raise NotImplementedError

    def lookup_ids(
        self, sobject: str, field: str, values: Sequence[str], *, numeric: bool = False
    ) -> list[tuple[str, Any]]:
        """SOQL's matching: numbers as numbers, text ignoring case (no case-sensitive fields)."""
        self.calls["query"] += 1
        self.lookups.append(list(values))

        def norm(v: Any) -> Any:
            return float(v) if numeric else str(v).lower()

        wanted = {norm(v) for v in values}
        return [
            (rid, rec[field])
            for rid, rec in self.records[sobject].items()
            if rec.get(field) is not None and norm(rec[field]) in wanted
        ]

    def api_calls(self) -> Mapping[str, int]:
        return dict(self.calls)


def test_fake_bulk_upsert_creates_then_updates_and_clears_with_na() -> None:
    fake = FakeSalesforce()
    csv1 = b"Ext_Id__c,LastName,Email\nk1,Smith,a@b.co\n"
    job = fake.bulk_submit("Contact", "upsert", csv1, external_id_field="Ext_Id__c")
    assert fake.bulk_wait(job).state == "JobComplete"
    ok, failed, _ = fake.bulk_results(job)
    assert b'"true","k1"' in ok and failed.count(b"\n") == 1
    job2 = fake.bulk_submit(
        "Contact", "upsert", b"Ext_Id__c,LastName,Email\nk1,,#N/A\n", external_id_field="Ext_Id__c"
    )
    fake.bulk_wait(job2)
    record = fake.by_ext("Contact", "Ext_Id__c", "k1")
    assert record is not None
    assert record["LastName"] == "Smith"  # empty cell: left alone
    assert record["Email"] is None  # #N/A: cleared


def test_fake_describe_of_unknown_object_is_a_request_error() -> None:
    with pytest.raises(SalesforceRequestError):
        FakeSalesforce().describe("Nope__c")
