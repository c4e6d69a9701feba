"""Contract tests: simple-salesforce's bulk2 client (and raw calls) against the emulator's Bulk 2.0.

Result CSVs are compared byte for byte with the format of salesforce-api.md §3.1.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from simple_salesforce.exceptions import SalesforceOperationError

from sf_activations.emulator.server import EmulatorServer

# simple-salesforce resolves object names (``sf.Account``) at run time, so its static types
# cannot describe them: the client is typed loosely here.
SF = Any

JOB_ID_RE = re.compile(r"^750[0-9A-Za-z]{15}$")
TIMESTAMP_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000\+0000$")


def call(sf: SF, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {
        "Authorization": f"Bearer {sf.session_id}",
        "Content-Type": "application/json",
        **kwargs.pop("headers", {}),
    }
    return sf.session.request(method, f"{sf.base_url}{path}", headers=headers, **kwargs)


def create_job(sf: SF, **body: Any) -> dict[str, Any]:
    payload = {"object": "Account", "contentType": "CSV", **body}
    res = call(sf, "POST", "jobs/ingest", data=json.dumps(payload))
    assert res.status_code == 200, res.text
    job: dict[str, Any] = res.json()
    return job


def put_csv(sf: SF, job_id: str, data: bytes | Iterator[bytes]) -> requests.Response:
    return call(
        sf, "PUT", f"jobs/ingest/{job_id}/batches", data=data, headers={"Content-Type": "text/csv"}
    )


def close(sf: SF, job_id: str, state: str = "UploadComplete") -> requests.Response:
    return call(sf, "PATCH", f"jobs/ingest/{job_id}", data=json.dumps({"state": state}))


def wait_done(sf: SF, job_id: str, kind: str = "ingest") -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        info: dict[str, Any] = call(sf, "GET", f"jobs/{kind}/{job_id}").json()
        if info["state"] in ("JobComplete", "Failed", "Aborted"):
            return info
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish")


def run_raw(sf: SF, data: bytes, **body: Any) -> dict[str, Any]:
    job = create_job(sf, **body)
    assert put_csv(sf, job["id"], data).status_code == 201
    assert close(sf, job["id"]).status_code == 200
    return wait_done(sf, job["id"])


def results(sf: SF, job_id: str, kind: str) -> bytes:
    res = call(sf, "GET", f"jobs/ingest/{job_id}/{kind}")
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/csv")
    return res.content


# ------------------------------------------------------------------------ job lifecycle


def test_job_info_shapes(sf: SF) -> None:
    job = create_job(sf, operation="upsert", externalIdFieldName="External_Id__c")
    assert list(job) == [
        "id",
        "operation",
        "object",
        "createdById",
        "createdDate",
        "systemModstamp",
        "state",
        "externalIdFieldName",
        "concurrencyMode",
        "contentType",
        "apiVersion",
        "contentUrl",
        "lineEnding",
        "columnDelimiter",
    ]
    assert JOB_ID_RE.match(job["id"]) and TIMESTAMP_RE.match(job["createdDate"])
    assert job["state"] == "Open" and job["concurrencyMode"] == "Parallel"
    assert job["contentUrl"] == f"services/data/v{sf.sf_version}/jobs/ingest/{job['id']}/batches"
    raw = call(sf, "GET", f"jobs/ingest/{job['id']}").text
    assert f'"apiVersion":{sf.sf_version}' in raw  # a JSON number, not a string

    assert put_csv(sf, job["id"], b"Name,External_Id__c\nA,x-1\n").status_code == 201
    closed = close(sf, job["id"])
    assert closed.status_code == 200
    assert closed.json()["state"] == "UploadComplete"
    assert "contentUrl" not in closed.json()

    info = wait_done(sf, job["id"])
    assert info["state"] == "JobComplete"
    assert info["jobType"] == "V2Ingest"
    assert info["numberRecordsProcessed"] == 1 and info["numberRecordsFailed"] == 0
    for key in ("retries", "totalProcessingTime", "apiActiveProcessingTime", "apexProcessingTime"):
        assert isinstance(info[key], int)
    assert "errorMessage" not in info

    listed = call(sf, "GET", "jobs/ingest").json()
    assert listed["done"] is True and [j["id"] for j in listed["records"]] == [job["id"]]

    delete = call(sf, "DELETE", f"jobs/ingest/{job['id']}")
    assert delete.status_code == 204 and delete.content == b""
    assert call(sf, "GET", f"jobs/ingest/{job['id']}").status_code == 404


def test_create_job_validation(sf: SF) -> None:
    def error_of(**body: Any) -> tuple[int, list[dict[str, Any]]]:
        res = call(sf, "POST", "jobs/ingest", data=json.dumps({"contentType": "CSV", **body}))
        return res.status_code, res.json()

    status, body = error_of(object="Account", operation="upsert")
    assert status == 400 and body[0]["errorCode"] == "INVALIDJOB"
    assert "External ID" in body[0]["message"]
    status, body = error_of(object="Account", operation="upsert", externalIdFieldName="Phone")
    assert status == 400 and body[0]["errorCode"] == "INVALIDJOB"
    status, body = error_of(object="Accout", operation="insert")
    assert status == 400 and body[0]["errorCode"] == "INVALIDJOB"
    status, body = error_of(object="Account", operation="merge")
    assert status == 400
    status, body = error_of(object="Account", operation="insert", columnDelimiter="COLON")
    assert status == 400
    status, body = error_of(object="Account", operation="insert", lineEnding="CR")
    assert status == 400
    status, body = error_of(object="Account", operation="insert", contentType="JSON")
    assert status == 400
    res = call(sf, "POST", "jobs/ingest", data="{oops")
    assert res.status_code == 400 and res.json()[0]["errorCode"] == "JSON_PARSER_ERROR"


def test_second_put_is_rejected(sf: SF) -> None:
    job = create_job(sf, operation="insert")
    assert put_csv(sf, job["id"], b"Name\nA\n").status_code == 201
    second = put_csv(sf, job["id"], b"Name\nB\n")
    assert second.status_code == 400
    assert second.json()[0]["errorCode"] == "INVALIDJOB"
    assert second.json()[0]["message"].startswith("Found multiple contents for job")
    info = run_to_done = close(sf, job["id"])
    assert run_to_done.status_code == 200 and info.json()["state"] == "UploadComplete"
    assert wait_done(sf, job["id"])["numberRecordsProcessed"] == 1
    # No upload after close either.
    assert put_csv(sf, job["id"], b"Name\nC\n").status_code >= 400


def test_chunked_upload(sf: SF) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"Name,External_Id__c\n"
        for i in range(1000):
            yield f"Chunk {i},c-{i}\n".encode()

    job = create_job(sf, operation="insert")
    res = put_csv(sf, job["id"], chunks())  # requests sends a generator chunked
    assert res.status_code == 201
    assert close(sf, job["id"]).status_code == 200
    info = wait_done(sf, job["id"])
    assert info["numberRecordsProcessed"] == 1000 and info["numberRecordsFailed"] == 0
    batches = sf.limits()["DailyBulkApiBatches"]
    assert batches["Max"] - batches["Remaining"] == 1  # one internal batch per 10,000 rows


def test_upload_size_cap(sf: SF, emulator: EmulatorServer) -> None:
    emulator.emulator.bulk_jobs.max_upload_bytes = 1000
    job = create_job(sf, operation="insert")
    res = put_csv(sf, job["id"], b"Name\n" + b"x" * 2000 + b"\n")
    assert res.status_code == 413
    assert res.json()[0]["errorCode"] == "BULK_API_ERROR"
    # The job is still Open and takes a proper upload.
    assert put_csv(sf, job["id"], b"Name\nSmall\n").status_code == 201


# ------------------------------------------------------------------------ simple-salesforce bulk2


def test_bulk2_insert_and_result_files(sf: SF) -> None:
    records = [{"Name": "Acme", "External_Id__c": "B-1"}, {"Name": "Beta", "External_Id__c": "B-2"}]
    [summary] = sf.bulk2.Account.insert(records=records, wait=0)
    assert summary["numberRecordsProcessed"] == 2 and summary["numberRecordsFailed"] == 0
    job_id = summary["job_id"]
    ok = sf.bulk2.Account.get_successful_records(job_id)
    rows = list(csv.DictReader(io.StringIO(ok)))
    assert sorted(r["Name"] for r in rows) == ["Acme", "Beta"]
    assert all(r["sf__Created"] == "true" and r["sf__Id"].startswith("001") for r in rows)
    assert ok.splitlines()[0].startswith('"sf__Id","sf__Created",')
    # Every data value is quoted.
    for line in ok.splitlines()[1:]:
        assert re.fullmatch(r'"[^"]*"(,"[^"]*")*', line)
    failed = sf.bulk2.Account.get_failed_records(job_id)
    assert failed.startswith('"sf__Id","sf__Error",')
    assert failed.count("\n") == 1


def test_bulk2_upsert_update_and_failed_rows(sf: SF) -> None:
    sf.bulk2.Account.upsert(
        records=[{"Name": "One", "External_Id__c": "U-1"}],
        external_id_field="External_Id__c",
        wait=0,
    )
    data = b'External_Id__c,Name\nU-1,One again\nU-2,Two\nU-3,""\n'
    info = run_raw(sf, data, operation="upsert", externalIdFieldName="External_Id__c")
    assert info["state"] == "JobComplete"
    assert info["numberRecordsProcessed"] == 3 and info["numberRecordsFailed"] == 1

    ok = results(sf, info["id"], "successfulResults").decode()
    one = sf.Account.get_by_custom_id("External_Id__c", "U-1")["Id"]
    two = sf.Account.get_by_custom_id("External_Id__c", "U-2")["Id"]
    assert ok == (
        '"sf__Id","sf__Created",External_Id__c,Name\n'
        f'"{one}","false","U-1","One again"\n'
        f'"{two}","true","U-2","Two"\n'
    )
    failed = results(sf, info["id"], "failedResults").decode()
    assert failed == (
        '"sf__Id","sf__Error",External_Id__c,Name\n'
        '"","REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --","U-3",""\n'
    )
    # Client-side parsing of the same files.
    all_records = sf.bulk2.Account.get_all_ingest_records(info["id"])
    assert len(all_records["successfulRecords"]) == 2
    assert all_records["failedRecords"][0]["sf__Error"].startswith("REQUIRED_FIELD_MISSING")
    assert all_records["unprocessedRecords"] == []


def test_na_clears_and_empty_leaves(sf: SF) -> None:
    record_id = sf.Account.create({"Name": "Keep", "Phone": "111", "Website": "https://w.example"})[
        "id"
    ]
    data = f"Id,Phone,Website\n{record_id},#N/A,\n".encode()
    info = run_raw(sf, data, operation="update")
    assert info["numberRecordsFailed"] == 0
    record = sf.Account.get(record_id)
    assert record["Phone"] is None
    assert record["Website"] == "https://w.example"
    ok = results(sf, info["id"], "successfulResults").decode()
    assert (
        ok
        == f'"sf__Id","sf__Created",Id,Phone,Website\n"{record_id}","false","{record_id}","#N/A",""\n'
    )


def test_bad_header_fails_the_job(sf: SF) -> None:
    info = run_raw(sf, b"Name,StageName_invalid\nA,B\n", operation="insert")
    assert info["state"] == "Failed"
    assert info["numberRecordsProcessed"] == 0 and info["numberRecordsFailed"] == 0
    assert info["errorMessage"] == "InvalidBatch : Field name not found : StageName_invalid"
    # Nothing was processed: every uploaded row is unprocessed.
    assert results(sf, info["id"], "unprocessedrecords") == b'Name,StageName_invalid\n"A","B"\n'
    with pytest.raises(SalesforceOperationError, match="Field name not found"):
        sf.bulk2.Account.insert(records=[{"Name": "x", "Nope__c": "y"}], wait=0)


def test_bulk2_delete_and_hard_delete(sf: SF) -> None:
    ids = [sf.Account.create({"Name": f"D{i}"})["id"] for i in range(4)]
    [soft] = sf.bulk2.Account.delete(records=[{"Id": i} for i in ids[:2]], wait=0)
    assert soft["numberRecordsProcessed"] == 2 and soft["numberRecordsFailed"] == 0
    ok = sf.bulk2.Account.get_successful_records(soft["job_id"])
    assert ok.splitlines()[0] == '"sf__Id","sf__Created",Id'
    assert all(line.endswith(f'"false","{line[1:19]}"') for line in ok.splitlines()[1:])
    [hard] = sf.bulk2.Account.hard_delete(records=[{"Id": i} for i in ids[2:]], wait=0)
    assert hard["numberRecordsFailed"] == 0
    assert sf.query("SELECT Id FROM Account")["totalSize"] == 0
    # Soft-deleted rows stay in the recycle bin; hard-deleted ones are gone.
    bin_ids = {
        r["Id"] for r in sf.query_all("SELECT Id FROM Account", include_deleted=True)["records"]
    }
    assert bin_ids == set(ids[:2])


def test_line_ending_and_delimiter_respected(sf: SF) -> None:
    data = b"Name|External_Id__c\r\nPipe, Inc|P-1\r\n"
    info = run_raw(sf, data, operation="insert", lineEnding="CRLF", columnDelimiter="PIPE")
    assert info["numberRecordsFailed"] == 0
    ok = results(sf, info["id"], "successfulResults").decode()
    lines = ok.split("\r\n")
    assert lines[0] == '"sf__Id"|"sf__Created"|Name|External_Id__c'
    assert lines[1].endswith('|"true"|"Pipe, Inc"|"P-1"') and lines[2] == ""

    # LF data in a CRLF job fails the job.
    mismatch = run_raw(sf, b"Name\nX\n", operation="insert", lineEnding="CRLF")
    assert mismatch["state"] == "Failed"
    assert mismatch["errorMessage"] == (
        "ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is CRLF"
    )


def test_abort_and_unprocessed(sf: SF) -> None:
    job = create_job(sf, operation="insert")
    assert put_csv(sf, job["id"], b"Name\nA\nB\n").status_code == 201
    # An Open job cannot be deleted.
    assert call(sf, "DELETE", f"jobs/ingest/{job['id']}").status_code >= 400
    aborted = close(sf, job["id"], "Aborted")
    assert aborted.status_code == 200 and aborted.json()["state"] == "Aborted"
    assert results(sf, job["id"], "unprocessedRecords") == b'Name\n"A"\n"B"\n'
    assert results(sf, job["id"], "successfulResults") == b'"sf__Id","sf__Created",Name\n'
    assert sf.query("SELECT Id FROM Account")["totalSize"] == 0
    assert close(sf, job["id"], "UploadComplete").status_code >= 400


def test_in_progress_state_is_visible(sf: SF, emulator: EmulatorServer) -> None:
    emulator.emulator.bulk_jobs.processing_delay = 0.5
    job = create_job(sf, operation="insert")
    put_csv(sf, job["id"], b"Name\nA\n")
    close(sf, job["id"])
    time.sleep(0.1)
    assert call(sf, "GET", f"jobs/ingest/{job['id']}").json()["state"] == "InProgress"
    assert call(sf, "GET", f"jobs/ingest/{job['id']}/successfulResults").status_code >= 400
    assert wait_done(sf, job["id"])["state"] == "JobComplete"


# ------------------------------------------------------------------------ query jobs


def test_bulk2_query_through_client(sf: SF, emulator: EmulatorServer) -> None:
    for i in range(5):
        emulator.org.create("Account", {"Name": f"Q{i}", "Phone": None if i == 0 else f"{i}"})
    pages = list(
        sf.bulk2.Account.query("SELECT name, Id, Phone FROM Account ORDER BY Name", wait=0)
    )
    assert len(pages) == 1
    lines = pages[0].splitlines()
    assert lines[0] == '"Name","Id","Phone"'
    assert lines[1].startswith('"Q0","001') and lines[1].endswith('",""')
    assert len(lines) == 6

    paged = list(
        sf.bulk2.Account.query("SELECT Name FROM Account ORDER BY Name", max_records=2, wait=0)
    )
    assert paged == [
        '"Name"\n"Q0"\n"Q1"\n',
        '"Name"\n"Q2"\n"Q3"\n',
        '"Name"\n"Q4"\n',
    ]
    limits = sf.limits()
    assert limits["DailyBulkV2QueryJobs"]["Max"] - limits["DailyBulkV2QueryJobs"]["Remaining"] == 2


def test_query_job_results_headers_and_412(sf: SF, emulator: EmulatorServer) -> None:
    emulator.org.create("Account", {"Name": "Only"})
    emulator.emulator.bulk_jobs.processing_delay = 0.5
    job = call(
        sf,
        "POST",
        "jobs/query",
        data=json.dumps({"operation": "query", "query": "SELECT Id, Name FROM Account"}),
    ).json()
    assert job["state"] == "UploadComplete" and job["object"] == "Account"
    early = call(sf, "GET", f"jobs/query/{job['id']}/results")
    assert early.status_code == 412
    assert early.json()[0]["errorCode"] == "JOB_NOT_COMPLETE"
    info = wait_done(sf, job["id"], "query")
    assert info["jobType"] == "V2Query" and info["numberRecordsProcessed"] == 1
    res = call(sf, "GET", f"jobs/query/{job['id']}/results", params={"maxRecords": 10})
    assert res.status_code == 200
    assert res.headers["Sforce-NumberOfRecords"] == "1"
    assert res.headers["Sforce-Locator"] == "null"
    assert res.text.startswith('"Id","Name"\n"001')

    bad = call(
        sf,
        "POST",
        "jobs/query",
        data=json.dumps({"operation": "query", "query": "SELECT Nope FROM Account"}),
    )
    assert bad.status_code == 400 and bad.json()[0]["errorCode"] == "INVALID_FIELD"


def test_query_all_job_sees_deleted(sf: SF) -> None:
    record_id = sf.Account.create({"Name": "Gone"})["id"]
    sf.Account.delete(record_id)
    assert list(sf.bulk2.Account.query("SELECT Id FROM Account", wait=0)) == ['"Id"\n']
    pages = list(sf.bulk2.Account.query_all("SELECT Id, IsDeleted FROM Account", wait=0))
    assert pages == [f'"Id","IsDeleted"\n"{record_id}","true"\n']


def test_abort_while_in_progress(sf: SF, emulator: EmulatorServer) -> None:
    emulator.emulator.bulk_jobs.processing_delay = 0.4
    job = create_job(sf, operation="insert")
    put_csv(sf, job["id"], b"Name\nA\n")
    close(sf, job["id"])
    time.sleep(0.1)
    aborted = close(sf, job["id"], "Aborted")
    assert aborted.status_code == 200 and aborted.json()["state"] == "Aborted"
    emulator.emulator.bulk_jobs.wait_idle()
    info = call(sf, "GET", f"jobs/ingest/{job['id']}").json()
    assert info["state"] == "Aborted" and info["numberRecordsProcessed"] == 0
    assert results(sf, job["id"], "unprocessedrecords") == b'Name\n"A"\n'
    assert sf.query("SELECT Id FROM Account")["totalSize"] == 0


def test_bulk2_update_through_client(sf: SF) -> None:
    first = sf.Account.create({"Name": "Before", "Phone": "1"})["id"]
    second = sf.Account.create({"Name": "Other", "Phone": "2"})["id"]
    [summary] = sf.bulk2.Account.update(
        records=[{"Id": first, "Name": "After"}, {"Id": second, "Name": ""}], wait=0
    )
    assert summary["numberRecordsProcessed"] == 2 and summary["numberRecordsFailed"] == 0
    # simple-salesforce writes "" for a missing value: Salesforce leaves the field as it was.
    assert sf.Account.get(first)["Name"] == "After"
    assert sf.Account.get(second)["Name"] == "Other"
    assert sf.Account.get(first)["Phone"] == "1"
    assert sf.bulk2.Account.get_unprocessed_records(summary["job_id"]).splitlines() in (
        ["Id,Name"],
        ["Name,Id"],
    )
