"""``SalesforceClient.bulk_query`` against the emulator over HTTPS: Bulk API 2.0 query jobs,
result pages followed by ``Sforce-Locator``, errors, and exact API-call accounting."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator

import pytest
import requests

from sf_activations.emulator.server import EmulatorServer
from sf_activations.salesforce import (
    SalesforceClient,
    SalesforceRequestError,
    connect,
    credentials_from_connection_file,
)
from sf_activations.sync.model import BulkJobInfo
from sf_activations_tests.support import FAST_RETRIES

HEADER = b'"Id","Name"'


def calls(client: SalesforceClient) -> dict[str, int]:
    return {k: v for k, v in client.api_calls().items() if k != "login"}


def lines(page: bytes) -> list[bytes]:
    assert page.endswith(b"\n"), page  # LF line endings, the last line terminated too
    return page[:-1].split(b"\n")


def rows(page: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(page.decode("utf-8"))))


def seed_accounts(emulator: EmulatorServer, n: int) -> dict[str, str]:
    """``n`` Accounts created straight in the emulated org: {Id: Name}."""
    return {emulator.org.create("Account", {"Name": f"Acme {i}"}): f"Acme {i}" for i in range(n)}


@pytest.fixture
def raw(emulator: EmulatorServer, emulator_http: requests.Session) -> Iterator[requests.Session]:
    """A plain session on the emulator's REST API with the org's initial access token."""
    token = emulator.connection_info["access_token"]
    emulator_http.headers.update(
        {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    )
    yield emulator_http
    emulator_http.close()


def data_url(emulator: EmulatorServer, version: str, path: str) -> str:
    return f"{emulator.url}/services/data/v{version}/{path}"


# ----------------------------------------------------------------------------------- results


def test_pages_with_max_records_return_every_row_exactly_once(
    emulator: EmulatorServer, client: SalesforceClient
) -> None:
    seeded = seed_accounts(emulator, 7)
    pages = list(client.bulk_query("SELECT Id, Name FROM Account ORDER BY Name", max_records=3))

    assert [len(lines(p)) for p in pages] == [4, 4, 2]  # header + 3, header + 3, header + 1
    assert all(lines(p)[0] == HEADER for p in pages)
    got = [(r["Id"], r["Name"]) for p in pages for r in rows(p)]
    assert len(got) == 7 and dict(got) == seeded
    assert [name for _, name in got] == [f"Acme {i}" for i in range(7)]  # ORDER BY kept
    assert calls(client)["bulk_query_results"] == 3

    # Every page asked for maxRecords; the 2nd and 3rd followed the previous page's locator.
    queries = [e.query for e in emulator.emulator.request_log.entries(path_contains="/results")]
    assert len(queries) == 3
    assert queries[0] == "maxRecords=3"
    assert all(q.startswith("maxRecords=3&locator=") for q in queries[1:])
    assert queries[1] != queries[2]


def test_without_max_records_one_page_holds_everything(
    emulator: EmulatorServer, client: SalesforceClient
) -> None:
    seeded = seed_accounts(emulator, 5)
    [page] = client.bulk_query("SELECT Id, Name FROM Account")
    assert {r["Id"]: r["Name"] for r in rows(page)} == seeded
    [entry] = emulator.emulator.request_log.entries(path_contains="/results")
    assert entry.query == ""  # no maxRecords=0 sent


def test_values_are_quoted_and_null_is_empty(
    emulator: EmulatorServer, client: SalesforceClient
) -> None:
    emulator.org.create("Account", {"Name": 'Say "hi", then\nleave', "Phone": None})
    [page] = client.bulk_query("SELECT Name, Phone FROM Account")
    assert page == b'"Name","Phone"\n"Say ""hi"", then\nleave",""\n'


def test_empty_result_is_one_page_with_the_header_only(
    emulator: EmulatorServer, client: SalesforceClient
) -> None:
    seed_accounts(emulator, 2)
    pages = list(client.bulk_query("SELECT Id, Name FROM Account WHERE Name = 'nobody'"))
    # The emulator answers the header row alone (Sforce-NumberOfRecords: 0, locator "null").
    assert pages == [HEADER + b"\n"]
    assert calls(client)["bulk_query_results"] == 1


def test_session_expiring_between_pages_logs_in_again(
    emulator: EmulatorServer, client: SalesforceClient
) -> None:
    seeded = seed_accounts(emulator, 4)
    pages = client.bulk_query("SELECT Id, Name FROM Account", max_records=2)
    first = next(pages)
    assert emulator.emulator.expire_sessions() >= 1
    rest = list(pages)
    got = {r["Id"]: r["Name"] for p in [first, *rest] for r in rows(p)}
    assert got == seeded and len(rest) == 1
    assert client.api_calls()["login"] == 2
    # The refused attempt counts as a call too (api_calls counts every HTTP attempt).
    assert calls(client)["bulk_query_results"] == 3


def test_a_transient_fault_on_a_results_page_is_retried(
    emulator: EmulatorServer, client: SalesforceClient
) -> None:
    seeded = seed_accounts(emulator, 3)
    emulator.emulator.faults.fail_next(1, 503, path="/results")
    [page] = client.bulk_query("SELECT Id, Name FROM Account")
    assert {r["Id"]: r["Name"] for r in rows(page)} == seeded
    assert calls(client)["bulk_query_results"] == 2


# ------------------------------------------------------------------------------- accounting


def test_api_calls_of_one_small_query(emulator: EmulatorServer, client: SalesforceClient) -> None:
    seed_accounts(emulator, 2)
    still_running: list[BulkJobInfo] = []
    client.bulk_poll_listener = still_running.append
    pages = client.bulk_query("SELECT Id FROM Account", max_records=10)
    assert calls(client) == {}  # nothing is sent before the first page is asked for
    assert len(rows(b"".join(pages))) == 2
    # One create, one poll per unfinished state seen plus the one that found it done, one page.
    assert calls(client) == {
        "bulk_query": 1,
        "bulk_query_poll": len(still_running) + 1,
        "bulk_query_results": 1,
    }
    assert all(i.operation == "query" and i.object == "Account" for i in still_running)
    used = client.limits()["DailyBulkV2QueryJobs"]
    assert used["Max"] - used["Remaining"] == 1


def test_a_running_job_is_polled_at_growing_intervals(emulator: EmulatorServer) -> None:
    seed_accounts(emulator, 1)
    emulator.emulator.bulk_jobs.processing_delay = 0.4
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    creds = credentials_from_connection_file(emulator.connection_file, "jwt")
    options = {**FAST_RETRIES, "poll_initial_s": 0.02, "poll_max_s": 0.08}
    with connect(creds, **options, sleep=sleep) as c:
        seen: list[BulkJobInfo] = []
        c.bulk_poll_listener = seen.append
        assert len(rows(b"".join(c.bulk_query("SELECT Id FROM Account")))) == 1
        polls = calls(c)["bulk_query_poll"]
    # The same policy as bulk_wait: a settle of at most poll_initial_s after the create (so a
    # sleep before every poll, none at once), then intervals doubling from 2 * poll_initial_s
    # up to poll_max_s.
    assert len(slept) == polls
    assert 0 < slept[0] <= 0.02
    assert slept[1:] == [min(0.02 * 2**k, 0.08) for k in range(1, len(slept))]
    assert polls == len(seen) + 1 and len(seen) >= 3  # 0.4 s of InProgress
    assert {i.state for i in seen} <= {"UploadComplete", "InProgress"}


# ------------------------------------------------------------------------------------ errors


def test_arguments_are_checked_before_anything_is_sent(client: SalesforceClient) -> None:
    for soql in ("", "   \n"):
        with pytest.raises(ValueError, match="needs a SOQL query"):
            client.bulk_query(soql)
    for bad in (-1, True, 2.5):
        with pytest.raises(ValueError, match="max_records"):
            client.bulk_query("SELECT Id FROM Account", max_records=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout_s"):
        client.bulk_query("SELECT Id FROM Account", timeout_s=0)
    assert calls(client) == {}


@pytest.mark.parametrize(
    ("soql", "code", "says"),
    [
        ("SELECT Id, Nope FROM Account", "INVALID_FIELD", "No such column 'Nope' on entity"),
        ("SELEKT Id FROM Account", "MALFORMED_QUERY", "unexpected token: 'SELEKT'"),
        ("SELECT Id FROM Acount", "INVALID_TYPE", "sObject type 'Acount' is not supported"),
        ("SELECT COUNT() FROM Account", "INVALIDJOB", "Aggregate queries are not supported"),
        ("SELECT Id FROM Account LIMIT 5 OFFSET 1", "INVALIDJOB", "OFFSET is not supported"),
    ],
)
def test_a_query_refused_at_create_surfaces_salesforces_code(
    client: SalesforceClient, soql: str, code: str, says: str
) -> None:
    with pytest.raises(SalesforceRequestError) as caught:
        list(client.bulk_query(soql))
    assert caught.value.code == code
    assert says in caught.value.message
    assert calls(client) == {"bulk_query": 1}  # no retry, no poll


def test_a_failed_job_raises_with_salesforces_message_and_the_job_id(
    emulator: EmulatorServer, client: SalesforceClient
) -> None:
    seed_accounts(emulator, 1)
    store = emulator.emulator.bulk_jobs
    store.processing_delay = 0.5

    def fail_it(info: BulkJobInfo) -> None:
        # What a real org does to a query that runs too long (salesforce-api.md has no
        # recorded query failure, so the message is only a plausible one).
        with store.lock:
            job = store.query[info.id]
            job.error_message = "InvalidBatch : Query timed out"
            job.touch("Failed")

    client.bulk_poll_listener = fail_it
    with pytest.raises(SalesforceRequestError) as caught:
        list(client.bulk_query("SELECT Id FROM Account"))
    [job_id] = store.query
    assert caught.value.code == "BULK_QUERY_FAILED"
    assert job_id in caught.value.message
    assert "InvalidBatch : Query timed out" in caught.value.message
    assert "Account" in caught.value.message
    assert "bulk_query_results" not in calls(client)


def test_an_aborted_job_raises(
    emulator: EmulatorServer, client: SalesforceClient, raw: requests.Session
) -> None:
    seed_accounts(emulator, 1)
    emulator.emulator.bulk_jobs.processing_delay = 0.5

    def abort_it(info: BulkJobInfo) -> None:
        # Someone aborts the job (Setup, another client) while it runs.
        res = raw.patch(
            data_url(emulator, "59.0", f"jobs/query/{info.id}"),
            data=json.dumps({"state": "Aborted"}),
        )
        assert res.status_code == 200 and res.json()["state"] == "Aborted"

    client.bulk_poll_listener = abort_it
    with pytest.raises(SalesforceRequestError) as caught:
        list(client.bulk_query("SELECT Id FROM Account"))
    assert caught.value.code == "BULK_QUERY_ABORTED"
    assert "ended Aborted" in caught.value.message
    assert "bulk_query_results" not in calls(client)


# -------------------------------------------------------------- emulator strictness (§3.3)


def test_results_must_be_read_with_the_api_version_that_created_the_job(
    emulator: EmulatorServer, raw: requests.Session
) -> None:
    seed_accounts(emulator, 1)
    created = raw.post(
        data_url(emulator, "59.0", "jobs/query"),
        data=json.dumps({"operation": "query", "query": "SELECT Id FROM Account"}),
    )
    assert created.status_code == 200
    job_id = created.json()["id"]
    emulator.emulator.bulk_jobs.wait_idle()
    other = raw.get(data_url(emulator, "58.0", f"jobs/query/{job_id}/results"))
    assert other.status_code == 409
    assert other.json()[0]["errorCode"] == "API_VERSION_MISMATCH"
    same = raw.get(data_url(emulator, "59.0", f"jobs/query/{job_id}/results"))
    assert same.status_code == 200 and same.headers["Sforce-Locator"] == "null"
