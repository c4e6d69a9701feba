"""``SalesforceClient`` against the emulator over HTTPS: describe, query, Bulk, Collections,
retries and exact API-call accounting."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from sf_activations.emulator.server import EmulatorServer
from sf_activations.salesforce import (
    SalesforceClient,
    SalesforceOutcomeUnknown,
    SalesforceRequestError,
    SalesforceUnavailable,
    connect,
    credentials_from_connection_file,
    soql_in,
    soql_literal,
)
from sf_activations.sync.model import BulkJobInfo, SalesforcePort
from sf_activations_tests.support import FAST_RETRIES

FAST = FAST_RETRIES


@pytest.fixture
def server(emulator: EmulatorServer) -> EmulatorServer:
    """The shared emulator (conftest), reset to a fresh org for this test."""
    return emulator


@pytest.fixture
def client(server: EmulatorServer) -> Iterator[SalesforceClient]:
    creds = credentials_from_connection_file(server.connection_file, "jwt")
    with connect(creds, **FAST) as c:
        yield c


def calls(client: SalesforceClient) -> dict[str, int]:
    return {k: v for k, v in client.api_calls().items() if k != "login"}


def rows(body: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body.decode("utf-8"))))


def test_client_is_a_salesforce_port(client: SalesforceClient) -> None:
    port: SalesforcePort = client
    assert port.api_calls()["login"] == 1


# ----------------------------------------------------------------------------------- describe


def test_describe_is_cached_per_client(client: SalesforceClient) -> None:
    account = client.describe("Account")
    assert account.name == "Account"
    ext = account.field("external_id__c")
    assert ext is not None and ext.external_id and ext.unique
    assert client.describe("account") is account
    assert calls(client) == {"describe": 1}
    client.describe("Account", refresh=True)
    assert calls(client) == {"describe": 2}


def test_describe_unknown_object(client: SalesforceClient) -> None:
    with pytest.raises(SalesforceRequestError) as caught:
        client.describe("Acount")
    assert caught.value.code == "NOT_FOUND"
    assert "__c" in caught.value.message
    with pytest.raises(ValueError):
        client.describe("Account/../limits")


# --------------------------------------------------------------------------------- Collections


def test_collections_insert_reports_per_record_errors(client: SalesforceClient) -> None:
    outcomes = client.collection_insert(
        "Contact",
        [{"LastName": "Lovelace", "FirstName": "Ada"}, {"FirstName": "NoLastName"}],
        keys=["k1", "k2"],
    )
    ok, bad = outcomes
    assert (ok.key, ok.success, ok.created) == ("k1", True, True)
    assert ok.salesforce_id is not None and ok.salesforce_id.startswith("003")
    assert len(ok.salesforce_id) == 18
    assert (bad.key, bad.success, bad.salesforce_id) == ("k2", False, None)
    assert bad.error is not None
    assert bad.error.code == "REQUIRED_FIELD_MISSING"
    assert bad.error.fields == ("LastName",)
    assert calls(client) == {"collections": 1}


def test_collections_split_at_200(client: SalesforceClient) -> None:
    records = [{"Name": f"Co {i}"} for i in range(250)]
    outcomes = client.collection_insert("Account", records, keys=[str(i) for i in range(250)])
    assert [o.key for o in outcomes] == [str(i) for i in range(250)]
    assert all(o.success for o in outcomes)
    assert len({o.salesforce_id for o in outcomes}) == 250
    assert calls(client) == {"collections": 2}


def test_collections_upsert_update_and_delete(client: SalesforceClient) -> None:
    first = client.collection_upsert(
        "Account", "External_Id__c", [{"External_Id__c": "E1", "Name": "One", "Phone": "111"}]
    )
    assert first[0].success and first[0].created and first[0].key == "E1"
    again = client.collection_upsert(
        "Account",
        "External_Id__c",
        [
            {"External_Id__c": "E1", "Name": "One", "Phone": None},  # None clears
            {"External_Id__c": "E2", "Name": "Two"},
        ],
    )
    assert [(o.key, o.success, o.created) for o in again] == [
        ("E1", True, False),
        ("E2", True, True),
    ]
    assert again[0].salesforce_id == first[0].salesforce_id
    e1 = again[0].salesforce_id
    assert e1 is not None
    updated = client.collection_update(
        "Account", [{"Id": e1, "Website": "https://one.example"}], keys=["E1"]
    )
    assert updated[0].success and not updated[0].created
    got = client.query(f"SELECT Name, Phone, Website FROM Account WHERE Id = {soql_literal(e1)}")
    assert got == [{"Name": "One", "Phone": None, "Website": "https://one.example"}]

    deleted = client.collection_delete([e1, "not-an-id"])
    assert deleted[0].success and deleted[0].key == e1
    assert deleted[1].error is not None and deleted[1].error.code == "MALFORMED_ID"
    twice = client.collection_delete([e1])
    assert twice[0].error is not None and twice[0].error.code == "ENTITY_IS_DELETED"


def test_upsert_without_key_is_refused_before_any_call(client: SalesforceClient) -> None:
    with pytest.raises(ValueError, match="External_Id__c"):
        client.collection_upsert("Account", "External_Id__c", [{"Name": "no key"}])
    assert calls(client) == {}


# ------------------------------------------------------------------------------------ queries

HOSTILE = [
    "O'Brien & Sons",
    "back\\slash",
    'say "hello"',
    "two\nlines",
    "tab\there",
    "trailing\\",
    "' OR Name != '",
    "50%_off",
]


def test_hostile_values_round_trip_through_real_queries(client: SalesforceClient) -> None:
    outcomes = client.collection_insert(
        "Account", [{"Name": v} for v in [*HOSTILE, "decoy"]], keys=[*HOSTILE, "decoy"]
    )
    assert all(o.success for o in outcomes), outcomes
    ids = {o.key: o.salesforce_id for o in outcomes}
    for value in HOSTILE:
        found = client.query(f"SELECT Id, Name FROM Account WHERE Name = {soql_literal(value)}")
        assert found == [{"Id": ids[value], "Name": value}]
    everything = client.query(f"SELECT Name FROM Account WHERE Name IN {soql_in(HOSTILE)}")
    assert sorted(r["Name"] for r in everything) == sorted(HOSTILE)


def test_query_follows_next_records_url(client: SalesforceClient) -> None:
    body = "Name,External_Id__c\n" + "".join(f"Paged {i},P{i}\n" for i in range(450))
    job = client.bulk_submit("Account", "insert", body.encode())
    assert client.bulk_wait(job).records_processed == 450
    before = calls(client).get("query", 0)
    records = client.query("SELECT Id, External_Id__c FROM Account", batch_size=200)
    assert len(records) == 450
    assert len({r["Id"] for r in records}) == 450
    assert all("attributes" not in r for r in records)
    assert calls(client)["query"] - before == 3  # pages of 200, 200, 50


def test_bad_query_is_permanent(client: SalesforceClient) -> None:
    with pytest.raises(SalesforceRequestError) as caught:
        client.query("SELECT NoSuchField__c FROM Account")
    assert caught.value.code == "INVALID_FIELD"
    assert calls(client) == {"query": 1}


# --------------------------------------------------------------------------------------- Bulk


def test_bulk_upsert_null_clears_and_empty_leaves(client: SalesforceClient) -> None:
    seed = client.collection_upsert(
        "Account",
        "External_Id__c",
        [{"External_Id__c": "B1", "Name": "Bulk One", "Phone": "111", "Website": "w.example"}],
    )
    assert seed[0].success
    csv_data = (
        b'External_Id__c,Name,Phone,Website\nB1,"Bulk One, Renamed",#N/A,\nB2,Bulk Two,222,\n'
    )
    job = client.bulk_submit("Account", "upsert", csv_data, external_id_field="External_Id__c")
    info = client.bulk_wait(job)
    assert (info.state, info.records_processed, info.records_failed) == ("JobComplete", 2, 0)
    assert info.operation == "upsert" and info.object == "Account"
    ok, failed, unprocessed = client.bulk_results(job)
    by_key = {r["External_Id__c"]: r for r in rows(ok)}
    assert by_key["B1"]["sf__Created"] == "false"
    assert by_key["B2"]["sf__Created"] == "true"
    assert by_key["B1"]["sf__Id"] == seed[0].salesforce_id
    assert rows(failed) == [] and rows(unprocessed) == []
    got = {
        r["External_Id__c"]: r
        for r in client.query(
            "SELECT External_Id__c, Name, Phone, Website FROM Account "
            f"WHERE External_Id__c IN {soql_in(['B1', 'B2'])}"
        )
    }
    assert got["B1"] == {
        "External_Id__c": "B1",
        "Name": "Bulk One, Renamed",
        "Phone": None,  # #N/A cleared it
        "Website": "w.example",  # the empty cell left it alone
    }
    assert got["B2"]["Phone"] == "222"
    counted = calls(client)
    assert counted["bulk_create"] == counted["bulk_upload"] == counted["bulk_close"] == 1
    # No record failed and the job completed: failedResults and unprocessedrecords are known
    # to be empty and not downloaded.
    assert counted["bulk_results"] == 1
    assert counted["bulk_poll"] >= 1


def test_bulk_row_errors_come_back_in_failed_results(client: SalesforceClient) -> None:
    job = client.bulk_submit("Contact", "insert", b"FirstName,LastName\nAda,Lovelace\nNo,\n")
    info = client.bulk_wait(job)
    assert (info.records_processed, info.records_failed) == (2, 1)
    failed = rows(client.bulk_results(job)[1])
    assert len(failed) == 1
    assert failed[0]["sf__Id"] == ""
    assert failed[0]["sf__Error"].startswith("REQUIRED_FIELD_MISSING:")
    # A failed record: failedResults is downloaded; the job completed, so unprocessedrecords
    # (known empty) is not.
    assert calls(client)["bulk_results"] == 2


def test_bulk_wait_reports_each_poll_of_a_running_job(
    client: SalesforceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = client.bulk_submit("Contact", "insert", b"FirstName,LastName\nAda,Lovelace\n")
    real = client.bulk_job_info
    seen: list[tuple[str, str]] = []
    polls = iter(["InProgress", "InProgress"])

    def first_two_still_running(job_id: str) -> BulkJobInfo:
        # The emulator finishes a one-record job almost at once: two polls say otherwise.
        info = real(job_id)
        state = next(polls, None)
        return replace(info, state=state) if state else info

    monkeypatch.setattr(client, "bulk_job_info", first_two_still_running)
    client.bulk_poll_listener = lambda info: seen.append((info.id, info.state))
    assert client.bulk_wait(job).state == "JobComplete"
    # At least the two forced ones (a loaded emulator may really be running it for longer).
    assert len(seen) >= 2
    assert set(seen) == {(job, "InProgress")}


def test_the_first_poll_of_a_just_closed_job_waits_poll_initial_s(server: EmulatorServer) -> None:
    creds = credentials_from_connection_file(server.connection_file, "jwt")
    slept: list[float] = []
    options = {**FAST, "poll_initial_s": 0.2, "sleep": slept.append}
    with connect(creds, **options) as c:
        job = c.bulk_submit("Contact", "insert", b"FirstName,LastName\nAda,Lovelace\n")
        # Let the emulator finish, so that the poll after the settle finds it done.
        deadline = time.monotonic() + 10
        while server.emulator.bulk_jobs.ingest[job].state != "JobComplete":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert c.bulk_wait(job).state == "JobComplete"
        # One sleep before the first poll (what was left of 0.2 s), then one poll: done.
        assert len(slept) == 1 and 0 < slept[0] <= 0.2
        assert calls(c)["bulk_poll"] == 1
        # A job this client did not just close (found in a journal) is polled at once.
        slept.clear()
        assert c.bulk_wait(job).state == "JobComplete"
        assert slept == []


def test_bulk_results_of_a_job_not_seen_finished_fetches_all_three(
    server: EmulatorServer, client: SalesforceClient
) -> None:
    job = client.bulk_submit("Contact", "insert", b"FirstName,LastName\nAda,Lovelace\n")
    assert client.bulk_wait(job).state == "JobComplete"
    # Another client (a later run reconciling the job) knows nothing of its counts.
    creds = credentials_from_connection_file(server.connection_file, "jwt")
    with connect(creds, **FAST) as other:
        ok, failed, unprocessed = other.bulk_results(job)
        assert calls(other) == {"bulk_results": 3}
    assert [r["LastName"] for r in rows(ok)] == ["Lovelace"]
    assert rows(failed) == [] and rows(unprocessed) == []


def test_bulk_bad_header_fails_the_job(client: SalesforceClient) -> None:
    job = client.bulk_submit("Account", "insert", b"Name,NoSuchField__c\nx,y\n")
    info = client.bulk_wait(job)
    assert info.state == "Failed"
    assert info.error_message is not None and "NoSuchField__c" in info.error_message
    assert client.bulk_job_info(job).state == "Failed"


def test_bulk_upsert_needs_external_id_field(client: SalesforceClient) -> None:
    with pytest.raises(ValueError, match="external_id_field"):
        client.bulk_submit("Account", "upsert", b"Name\nx\n")
    assert calls(client) == {}


# ------------------------------------------------------------------------------------ retries


def test_503_twice_then_success(server: EmulatorServer, client: SalesforceClient) -> None:
    server.emulator.faults.fail_next(2, status=503, path="/limits")
    assert client.limits()["DailyApiRequests"]["Max"] > 0
    assert calls(client) == {"limits": 3}


def test_dropped_connection_on_a_read_is_retried(
    server: EmulatorServer, client: SalesforceClient
) -> None:
    server.emulator.faults.drop_next(1, path="/describe")
    assert client.describe("Lead").name == "Lead"
    assert calls(client) == {"describe": 2}


def test_gives_up_after_the_budget(server: EmulatorServer, client: SalesforceClient) -> None:
    server.emulator.faults.fail_next(10, status=503)
    with pytest.raises(SalesforceUnavailable, match="3 attempts"):
        client.query("SELECT Id FROM Account")
    assert calls(client) == {"query": 3}


def test_expired_session_relogs_in_once_for_bulk(
    server: EmulatorServer, client: SalesforceClient
) -> None:
    server.emulator.expire_sessions()
    job = client.bulk_submit("Account", "insert", b"Name\nAfter Expiry\n")
    assert client.bulk_wait(job).records_processed == 1
    counted = client.api_calls()
    assert counted["login"] == 2
    assert counted["bulk_create"] == 2  # the 401 and the repeat
    assert counted["bulk_upload"] == counted["bulk_close"] == 1


def test_insert_with_lost_response_is_not_repeated(
    server: EmulatorServer, client: SalesforceClient
) -> None:
    server.emulator.faults.drop_next(1, path="/composite/sobjects")
    with pytest.raises(SalesforceOutcomeUnknown):
        client.collection_insert("Account", [{"Name": "Maybe"}], keys=["m"])
    assert calls(client) == {"collections": 1}


def test_insert_turned_away_with_503_is_repeated_once(
    server: EmulatorServer, client: SalesforceClient
) -> None:
    server.emulator.faults.fail_next(1, status=503, path="/composite/sobjects")
    outcomes = client.collection_insert("Account", [{"Name": "Exactly Once"}], keys=["x"])
    assert outcomes[0].success
    assert calls(client) == {"collections": 2}
    found = client.query(f"SELECT Id FROM Account WHERE Name = {soql_literal('Exactly Once')}")
    assert len(found) == 1


def test_upsert_after_server_error_is_repeated(
    server: EmulatorServer, client: SalesforceClient
) -> None:
    server.emulator.faults.fail_next(1, status=500, path="/composite/sobjects")
    outcomes = client.collection_upsert(
        "Account", "External_Id__c", [{"External_Id__c": "R1", "Name": "Repeat"}]
    )
    assert outcomes[0].success
    assert calls(client) == {"collections": 2}


def test_lost_bulk_upload_aborts_the_job_and_starts_over(
    server: EmulatorServer, client: SalesforceClient
) -> None:
    server.emulator.faults.drop_next(1, path="/batches", method="PUT")
    job = client.bulk_submit("Account", "insert", b"Name\nOnly Once\n")
    assert client.bulk_wait(job).records_processed == 1
    counted = calls(client)
    assert counted["bulk_create"] == counted["bulk_upload"] == 2
    assert counted["bulk_abort"] == 1 and counted["bulk_close"] == 1
    found = client.query(f"SELECT Id FROM Account WHERE Name = {soql_literal('Only Once')}")
    assert len(found) == 1


def test_daily_limit_exhausted(server: EmulatorServer, client: SalesforceClient) -> None:
    server.emulator.limits.set_api_remaining(0)
    with pytest.raises(SalesforceUnavailable, match="REQUEST_LIMIT_EXCEEDED"):
        client.limits()
    assert calls(client) == {"limits": 3}


def test_api_usage_tracks_the_limit_header(
    server: EmulatorServer, client: SalesforceClient
) -> None:
    client.describe("Account")
    first = client.api_usage()
    client.describe("Contact")
    second = client.api_usage()
    assert first is not None and second is not None
    assert second[0] == first[0] + 1
    assert second[1] == server.emulator.config.daily_api_limit


# A response lost after Salesforce did the work: the emulator holds the request longer than the
# client's read timeout, then applies it. The retry waits (backoff) until that has happened.
# Margins are wide (0.75 s read timeout, 1.5 s hold, 2 s backoff) so a loaded machine cannot
# turn an ordinary request into a "lost" one or retry before the held request was applied.
LOST = {**FAST, "timeout": (5.0, 0.75), "backoff_base_s": 2.0, "backoff_max_s": 2.0}
HOLD_S = 1.5


def test_delete_whose_response_was_lost_counts_as_deleted(server: EmulatorServer) -> None:
    creds = credentials_from_connection_file(server.connection_file, "jwt")
    with connect(creds, **LOST) as client:
        record_id = client.collection_insert("Account", [{"Name": "Gone"}], keys=["g"])[0]
        assert record_id.salesforce_id is not None
        server.emulator.faults.delay(HOLD_S, 1, path="/composite/sobjects", method="DELETE")
        outcome = client.collection_delete([record_id.salesforce_id])[0]
        assert outcome.success and outcome.error is None
        assert calls(client)["collections"] == 3  # insert, lost delete, repeated delete
        assert client.query("SELECT Id FROM Account") == []


def test_insert_that_timed_out_is_reported_unknown(server: EmulatorServer) -> None:
    # A read timeout proves nothing about what Salesforce did: never insert twice blindly.
    creds = credentials_from_connection_file(server.connection_file, "jwt")
    with connect(creds, **LOST) as client:
        server.emulator.faults.delay(HOLD_S, 1, path="/composite/sobjects", method="POST")
        with pytest.raises(SalesforceOutcomeUnknown, match="by their key"):
            client.collection_insert("Account", [{"Name": "Schrodinger"}], keys=["s"])
        assert calls(client) == {"collections": 1}


def test_bulk_close_whose_response_was_lost(server: EmulatorServer) -> None:
    creds = credentials_from_connection_file(server.connection_file, "jwt")
    with connect(creds, **LOST) as client:
        server.emulator.faults.delay(HOLD_S, 1, path="/jobs/ingest/[^/]+$", method="PATCH")
        job = client.bulk_submit("Account", "insert", b"Name\nClosed Once\n")
        assert client.bulk_wait(job).records_processed == 1
        counted = calls(client)
        assert counted["bulk_create"] == counted["bulk_upload"] == 1
        assert counted["bulk_close"] == 2
        assert "bulk_abort" not in counted


def test_request_level_lock_error_is_retried(client: SalesforceClient) -> None:
    # The emulator reports locks per record; a whole request refused for a lock (as Salesforce
    # does for some parent-record locks) is injected in front of the real transport.
    import requests
    from requests.adapters import HTTPAdapter

    session: requests.Session = client._session
    real = session.get_adapter("https://127.0.0.1")

    class LockOnce(HTTPAdapter):
        refused = 0

        def send(
            self, request: requests.PreparedRequest, *args: object, **kwargs: object
        ) -> requests.Response:  # type: ignore[override]
            if request.method == "PATCH" and LockOnce.refused == 0:
                LockOnce.refused += 1
                response = requests.Response()
                response.status_code = 400
                response._content = (
                    b'[{"message":"unable to obtain exclusive access to this record",'
                    b'"errorCode":"UNABLE_TO_LOCK_ROW"}]'
                )
                response.request = request
                return response
            return real.send(request, *args, **kwargs)  # type: ignore[arg-type]

    session.mount("https://", LockOnce())
    outcomes = client.collection_upsert(
        "Account", "External_Id__c", [{"External_Id__c": "L1", "Name": "Locked"}]
    )
    assert outcomes[0].success and LockOnce.refused == 1
    assert calls(client) == {"collections": 2}
