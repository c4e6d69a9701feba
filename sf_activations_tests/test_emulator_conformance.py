"""Conformance: the emulator against salesforce-api.md §0–§5, statement by statement.

Every test speaks HTTPS to the running emulator, through the real simple-salesforce client or
raw ``requests`` on the same verified session, and asserts the exact status, headers and body
the reference records for real Salesforce. Where the reference says UNVERIFIED, the test pins
the emulator's chosen strict answer (see the comment at that answer in the emulator).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import polars as pl
import pytest
import requests
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceExpiredSession,
    SalesforceMoreThanOneRecord,
    SalesforceResourceNotFound,
)

from sf_activations.emulator.ids import checksum
from sf_activations.emulator.schema import FieldDef
from sf_activations.emulator.testing import login

if TYPE_CHECKING:
    from sf_activations.emulator.server import EmulatorServer

SF = Any  # simple-salesforce's client is dynamic (attribute access builds object proxies)


# ----------------------------------------------------------------------------------- helpers


def raw(sf: SF, method: str, path: str, **kwargs: Any) -> requests.Response:
    """A call on the client's own session, with the headers simple-salesforce sends."""
    url = path if path.startswith("https://") else f"{sf.base_url}{path}"
    headers = {
        "Authorization": f"Bearer {sf.session_id}",
        "Content-Type": "application/json",
        **kwargs.pop("headers", {}),
    }
    response: requests.Response = sf.session.request(method, url, headers=headers, **kwargs)
    return response


def job(sf: SF, **body: Any) -> dict[str, Any]:
    """Create an ingest job and return its info."""
    res = raw(sf, "POST", "jobs/ingest", data=json.dumps(body))
    assert res.status_code == 200, res.text
    info: dict[str, Any] = res.json()
    return info


def put(sf: SF, job_id: str, data: Any, content_type: str = "text/csv") -> requests.Response:
    """Upload job data."""
    return raw(
        sf,
        "PUT",
        f"jobs/ingest/{job_id}/batches",
        data=data,
        headers={"Content-Type": content_type},
    )


def close(sf: SF, job_id: str) -> requests.Response:
    """PATCH the job to UploadComplete."""
    return raw(sf, "PATCH", f"jobs/ingest/{job_id}", data=json.dumps({"state": "UploadComplete"}))


def finished(sf: SF, path: str) -> dict[str, Any]:
    """Poll a job until it reaches a terminal state."""
    deadline = time.monotonic() + 20
    while True:
        info: dict[str, Any] = raw(sf, "GET", path).json()
        if info["state"] in ("JobComplete", "Failed", "Aborted"):
            return info
        assert time.monotonic() < deadline, info
        time.sleep(0.02)


def seed(emulator: EmulatorServer, names: list[str]) -> list[str]:
    """Insert Accounts straight into the org (one vectorised call); returns their ids."""
    outcome = emulator.org.bulk_apply("Account", "insert", pl.DataFrame({"Name": names}))
    assert all(e is None for e in outcome.errors)
    return [str(i) for i in outcome.ids]


def run_job(sf: SF, data: bytes, **body: Any) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Create, upload, close and finish a job; returns its info and its three result files."""
    info = job(sf, **body)
    assert put(sf, info["id"], data).status_code == 201
    assert close(sf, info["id"]).status_code == 200
    done = finished(sf, f"jobs/ingest/{info['id']}")
    results = {
        kind: raw(sf, "GET", f"jobs/ingest/{info['id']}/{kind}").content
        for kind in ("successfulResults", "failedResults", "unprocessedrecords")
    }
    return done, results


# ------------------------------------------------------------------- §0 transport and paths


def test_every_listed_version_and_both_slash_forms(sf: SF) -> None:
    for version in ("31.0", "46.0", "59.0", "62.0", "67.0"):
        base = f"{sf.base_url.split('/services/')[0]}/services/data/v{version}/"
        for path in ("limits", "limits/", "sobjects/Account", "sobjects/Account/"):
            res = raw(sf, "GET", base + path)
            assert res.status_code == 200, (version, path, res.text)
    # A malformed or unknown version is 404 NOT_FOUND, like any unknown resource.
    for bad in ("v59", "v5.0", "59.0", "v30.0", "v99.0"):
        res = raw(sf, "GET", f"{sf.base_url.split('/services/')[0]}/services/data/{bad}/limits")
        assert res.status_code == 404
        assert res.json() == [
            {"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}
        ] or res.json() == [
            {"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}
        ]


def test_object_and_field_names_are_case_insensitive(sf: SF) -> None:
    created = raw(sf, "POST", "sobjects/account/", data=json.dumps({"nAmE": "Mixed Case"}))
    assert created.status_code == 201
    record_id = created.json()["id"]
    record = raw(sf, "GET", f"sobjects/ACCOUNT/{record_id}?fields=name,ID").json()
    assert record["Name"] == "Mixed Case"
    assert record["attributes"]["type"] == "Account"
    rows = sf.query("select id, NAME from account where name = 'Mixed Case'")["records"]
    assert [r["Id"] for r in rows] == [record_id]
    described = sf.restful("sobjects/aCcOuNt/describe")
    assert described["name"] == "Account"


def test_chunked_upload_as_jsforce_streams_it(sf: SF) -> None:
    def body() -> Iterator[bytes]:
        yield b"Name\n"
        for i in range(50):
            yield f"Streamed {i}\n".encode()

    created = job(sf, object="Account", operation="insert")
    assert put(sf, created["id"], body()).status_code == 201  # a generator goes out chunked
    assert close(sf, created["id"]).status_code == 200
    info = finished(sf, f"jobs/ingest/{created['id']}")
    assert (info["state"], info["numberRecordsProcessed"]) == ("JobComplete", 50)


# ---------------------------------------------------------------------- §1 authentication


def test_soap_login_response_has_what_both_clients_parse(
    emulator: EmulatorServer, emulator_http: requests.Session
) -> None:
    info = emulator.connection_info
    envelope = (
        '<?xml version="1.0" encoding="utf-8" ?><env:Envelope '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        'xmlns:env="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:n1="urn:partner.soap.sforce.com"><env:Body><n1:login>'
        f"<n1:username>{info['username']}</n1:username>"
        f"<n1:password>{info['password']}{info['security_token']}</n1:password>"
        "</n1:login></env:Body></env:Envelope>"
    )
    res = emulator_http.post(
        "https://login.salesforce.com/services/Soap/u/59.0",
        data=envelope,
        headers={"content-type": "text/xml", "charset": "UTF-8", "SOAPAction": "login"},
    )
    assert res.status_code == 200
    text = res.text
    # simple-salesforce: literal, unprefixed tags; jsforce: userId and organizationId too.
    for tag in ("sessionId", "serverUrl", "userId", "organizationId", "passwordExpired"):
        assert re.search(f"<{tag}>[^<]+</{tag}>", text), tag
    assert "<passwordExpired>false</passwordExpired>" in text
    assert f"<organizationId>{info['org_id']}</organizationId>" in text
    assert f"<userId>{info['user_id']}</userId>" in text
    server_url = re.search("<serverUrl>([^<]+)</serverUrl>", text)
    assert server_url is not None and server_url.group(1).startswith(info["instance_url"] + "/")


def test_soap_login_failure_is_the_real_500_fault(
    emulator: EmulatorServer, emulator_http: requests.Session
) -> None:
    envelope = (
        '<env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:n1="urn:partner.soap.sforce.com"><env:Body><n1:login>'
        "<n1:username>nobody@example.com</n1:username><n1:password>x</n1:password>"
        "</n1:login></env:Body></env:Envelope>"
    )
    res = emulator_http.post(
        "https://login.salesforce.com/services/Soap/u/59.0",
        data=envelope,
        headers={"content-type": "text/xml", "SOAPAction": "login"},
    )
    assert res.status_code == 500
    assert "<faultcode>INVALID_LOGIN</faultcode>" in res.text
    assert (
        "<faultstring>INVALID_LOGIN: Invalid username, password, security token; "
        "or user locked out.</faultstring>"
    ) in res.text
    assert "<sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode>" in res.text
    with pytest.raises(SalesforceAuthenticationFailed) as err:
        login(emulator, "soap", password="wrong")
    assert err.value.code == "INVALID_LOGIN"


def test_oauth_token_response_and_errors(
    emulator: EmulatorServer, emulator_http: requests.Session
) -> None:
    info = emulator.connection_info
    url = "https://login.salesforce.com/services/oauth2/token"
    form = {
        "grant_type": "password",
        "client_id": info["consumer_key"],
        "client_secret": info["consumer_secret"],
        "username": info["username"],
        "password": info["password"] + info["security_token"],
    }
    ok = emulator_http.post(url, data=form)
    assert ok.status_code == 200
    body = ok.json()
    assert body["instance_url"] == info["instance_url"]
    assert body["token_type"] == "Bearer"
    # jsforce splits the id URL into organization and user ids.
    assert body["id"] == f"https://login.salesforce.com/id/{info['org_id']}/{info['user_id']}"
    bad_password = emulator_http.post(url, data={**form, "password": "nope"})
    assert (bad_password.status_code, bad_password.json()) == (
        400,
        {"error": "invalid_grant", "error_description": "authentication failure"},
    )
    bad_client = emulator_http.post(url, data={**form, "client_id": "nope"})
    assert (bad_client.status_code, bad_client.json()) == (
        400,
        {"error": "invalid_client_id", "error_description": "client identifier invalid"},
    )


def test_invalid_session_is_the_exact_401_array(sf: SF, emulator: EmulatorServer) -> None:
    res = raw(sf, "GET", "limits/", headers={"Authorization": "Bearer not-a-session"})
    assert res.status_code == 401
    assert res.content == (
        b'[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]'
    )
    assert res.headers["content-type"].startswith("application/json")


def test_credentials_login_relogs_in_and_direct_session_raises(
    sf: SF, emulator: EmulatorServer
) -> None:
    before = sf.session_id
    emulator.emulator.expire_sessions()
    # simple-salesforce logged in with credentials: on INVALID_SESSION_ID it logs in again.
    assert sf.query("SELECT Id FROM Account")["totalSize"] == 0
    assert sf.session_id != before
    direct = login(emulator, "direct")
    emulator.emulator.expire_sessions()
    with pytest.raises(SalesforceExpiredSession):
        direct.query("SELECT Id FROM Account")


# -------------------------------------------------------------------------- §2.1 headers


def test_limit_info_header_and_api_usage(sf: SF) -> None:
    sf.query("SELECT Id FROM Account")
    usage = sf.api_usage["api-usage"]
    assert usage.total == 15000 and 0 < usage.used < 15000
    res = raw(sf, "GET", "limits/")
    assert re.fullmatch(r"api-usage=\d+/15000", res.headers["Sforce-Limit-Info"])


def test_exhausted_daily_limit_is_403_request_limit_exceeded(
    sf: SF, emulator: EmulatorServer
) -> None:
    emulator.emulator.limits.set_api_remaining(0)
    res = raw(sf, "GET", "limits/")
    assert res.status_code == 403
    assert res.content == (
        b'[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]'
    )


# ------------------------------------------------------------------------- §2.2 describe


def test_versions_list_and_describe_keys(sf: SF) -> None:
    versions = raw(sf, "GET", sf.base_url.split("/v")[0]).json()
    assert {"label", "url", "version"} <= set(versions[0])
    assert {"url": "/services/data/v59.0", "version": "59.0"}.items() <= next(
        v for v in versions if v["version"] == "59.0"
    ).items()
    described_global = sf.describe()
    assert described_global["encoding"] == "UTF-8" and described_global["maxBatchSize"] == 200
    fields = sf.Account.describe()["fields"]
    keys = set(fields[0])
    assert "externalId" in keys and "externalIdFlag" not in keys
    for key in ("name", "type", "soapType", "nillable", "createable", "updateable", "idLookup"):
        assert key in keys
    res = raw(sf, "GET", "sobjects/Accout/describe")
    assert res.status_code == 404 and res.json()[0]["errorCode"] == "NOT_FOUND"


# ---------------------------------------------------------------------------- §2.3 query


def test_query_paging_and_querymore(sf: SF, emulator: EmulatorServer) -> None:
    seed(emulator, [f"Paged {i:04d}" for i in range(2105)])
    first = sf.query("SELECT Id, Name FROM Account")
    assert (first["totalSize"], first["done"], len(first["records"])) == (2105, False, 2000)
    assert re.fullmatch(
        r"/services/data/v59\.0/query/01g[0-9A-Za-z]{15}-2000", first["nextRecordsUrl"]
    )
    second = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert (second["done"], len(second["records"])) == (True, 105)
    assert "nextRecordsUrl" not in second
    record = second["records"][0]
    assert record["attributes"]["type"] == "Account"
    assert record["attributes"]["url"] == f"/services/data/v59.0/sobjects/Account/{record['Id']}"
    assert len(sf.query_all("SELECT Id FROM Account")["records"]) == 2105


def test_queryall_locator_is_served_by_query_and_queryall(sf: SF, emulator: EmulatorServer) -> None:
    ids = seed(emulator, [f"Gone {i}" for i in range(2001)])
    for record_id in ids[:5]:
        emulator.org.delete("Account", record_id)
    assert sf.query("SELECT Id FROM Account")["totalSize"] == 1996
    page = raw(sf, "GET", "queryAll/", params={"q": "SELECT Id, IsDeleted FROM Account"}).json()
    assert page["totalSize"] == 2001 and page["done"] is False
    locator = page["nextRecordsUrl"].rsplit("/", 1)[1]
    assert "/query/" in page["nextRecordsUrl"]  # [docs] QueryAll More Results
    via_query = raw(sf, "GET", f"query/{locator}").json()
    via_query_all = raw(sf, "GET", f"queryAll/{locator}").json()
    assert via_query == via_query_all and len(via_query["records"]) == 1
    bad = raw(sf, "GET", "query/01g000000000000AAA-2000")
    assert bad.status_code == 400 and bad.json()[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_query_errors(sf: SF) -> None:
    res = raw(sf, "GET", "query/", params={"q": "SELECT Id FROM Accout"})
    assert res.status_code == 400
    [error] = res.json()
    assert error["errorCode"] == "INVALID_TYPE"
    assert error["message"].endswith(
        "sObject type 'Accout' is not supported. If you are attempting to use a custom object, "
        "be sure to append the '__c' after the entity name. Please reference your WSDL or the "
        "describe call for the appropriate names."
    )
    assert "fields" not in error
    res = raw(sf, "GET", "query/", params={"q": "SELECT Nope FROM Account"})
    assert res.status_code == 400 and res.json()[0]["errorCode"] == "INVALID_FIELD"
    res = raw(sf, "GET", "query/", params={"q": "SELEKT Id FROM Account"})
    assert res.status_code == 400 and res.json()[0]["errorCode"] == "MALFORMED_QUERY"
    assert sf.query("SELECT IsSandbox FROM Organization LIMIT 1")["totalSize"] == 1


# ------------------------------------------------------------------------ §2.4 sObject rows


def test_single_record_calls_and_their_exact_bodies(sf: SF) -> None:
    created = raw(sf, "POST", "sobjects/Account/", data=json.dumps({"Name": "Row"}))
    assert created.status_code == 201
    record_id = created.json()["id"]
    assert created.json() == {"id": record_id, "success": True, "errors": []}
    assert len(record_id) == 18 and record_id.startswith("001")
    assert sf.Account.update(record_id, {"Name": "Row 2"}) == 204
    assert sf.Account.get(record_id)["Name"] == "Row 2"
    assert raw(sf, "DELETE", f"sobjects/Account/{record_id}").status_code == 204
    again = raw(sf, "DELETE", f"sobjects/Account/{record_id}")
    # The real body, recorded by amp-labs: "fields" is there, empty.
    assert again.content == (
        b'[{"message":"entity is deleted","errorCode":"ENTITY_IS_DELETED","fields":[]}]'
    )
    gone = raw(sf, "GET", f"sobjects/Account/{record_id}")
    assert gone.status_code == 404
    assert gone.json() in (
        [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}],
        [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}],
    )
    with pytest.raises(SalesforceResourceNotFound):
        sf.Account.get(record_id)


def test_ids_in_paths_must_be_ids(sf: SF) -> None:
    record_id = sf.Account.create({"Name": "Ids"})["id"]
    # 15-character form is accepted and answered with the 18-character id.
    got = raw(sf, "GET", f"sobjects/Account/{record_id[:15]}").json()
    assert got["Id"] == record_id
    # The suffix is case-insensitive.
    assert (
        raw(sf, "GET", f"sobjects/Account/{record_id[:15]}{record_id[15:].lower()}").status_code
        == 200
    )
    for bad in ("001000000000!!!", f"{record_id[:15]}ZZZ", "001abc"):
        res = raw(sf, "GET", f"sobjects/Account/{bad}")
        assert res.status_code == 404
        assert res.json()[0] == {
            "message": f"Provided external ID field does not exist or is not accessible: {bad}",
            "errorCode": "NOT_FOUND",
        }


def test_upsert_statuses(sf: SF) -> None:
    created = raw(
        sf, "PATCH", "sobjects/Account/External_Id__c/U-1", data=json.dumps({"Name": "U"})
    )
    assert created.status_code == 201
    record_id = created.json()["id"]
    assert created.json() == {"id": record_id, "success": True, "errors": [], "created": True}
    updated = raw(
        sf, "PATCH", "sobjects/Account/External_Id__c/U-1", data=json.dumps({"Name": "V"})
    )
    assert (updated.status_code, updated.json()) == (
        200,
        {"id": record_id, "success": True, "errors": [], "created": False},
    )
    old_api = sf.base_url.replace("/v59.0/", "/v45.0/") + "sobjects/Account/External_Id__c/U-1"
    old = raw(sf, "PATCH", old_api, data=json.dumps({"Name": "W"}))
    assert (old.status_code, old.content) == (204, b"")
    unknown = raw(sf, "PATCH", "sobjects/Account/ERP_Id__c/x", data=json.dumps({"Name": "X"}))
    assert unknown.status_code == 404
    assert unknown.json()[0]["message"] == (
        "Provided external ID field does not exist or is not accessible: ERP_Id__c"
    )
    # POST .../Id is an upsert on Id with a null value, i.e. a create (API 37+).
    by_id = raw(sf, "POST", "sobjects/Account/Id", data=json.dumps({"Name": "Via Id"}))
    assert by_id.status_code == 201


def test_upsert_more_than_one_match_is_300(sf: SF, emulator: EmulatorServer) -> None:
    # Only an external id WITHOUT the Unique attribute can match several records.
    emulator.org.schema.add_field(
        "Contact",
        FieldDef(
            name="Legacy_Id__c", label="Legacy Id", type="string", length=50, external_id=True
        ),
    )
    for last_name in ("A", "B"):
        sf.Contact.create({"LastName": last_name, "Legacy_Id__c": "same"})
    res = raw(sf, "PATCH", "sobjects/Contact/Legacy_Id__c/same", data=json.dumps({"LastName": "C"}))
    assert res.status_code == 300
    assert len(res.json()) == 2
    with pytest.raises(SalesforceMoreThanOneRecord):
        sf.Contact.upsert("Legacy_Id__c/same", {"LastName": "C"})
    # In Collections (like SOAP and Bulk) the item fails with DUPLICATE_EXTERNAL_ID.
    items = raw(
        sf,
        "PATCH",
        "composite/sobjects/Contact/Legacy_Id__c",
        data=json.dumps(
            {
                "records": [
                    {"attributes": {"type": "Contact"}, "Legacy_Id__c": "same", "LastName": "D"}
                ]
            }
        ),
    ).json()
    assert items[0]["errors"][0]["statusCode"] == "DUPLICATE_EXTERNAL_ID"
    assert items[0]["errors"][0]["message"] == (
        "A user-specified external ID matches more than one record during an upsert."
    )


# --------------------------------------------------------------------- §2.5 collections


def test_collections_exact_items(sf: SF) -> None:
    records = [
        {"attributes": {"type": "Contact"}, "LastName": "Ok"},
        {"attributes": {"type": "Contact"}, "FirstName": "No last name"},
    ]
    res = raw(
        sf, "POST", "composite/sobjects", data=json.dumps({"allOrNone": False, "records": records})
    )
    assert res.status_code == 200
    ok, failed = res.json()
    assert ok["success"] is True and ok["errors"] == []
    assert failed == {
        "success": False,
        "errors": [
            {
                "statusCode": "REQUIRED_FIELD_MISSING",
                "message": "Required fields are missing: [LastName]",
                "fields": ["LastName"],
            }
        ],
    }
    res = raw(
        sf, "POST", "composite/sobjects", data=json.dumps({"allOrNone": True, "records": records})
    )
    assert res.status_code == 200
    rolled_back, _ = res.json()
    assert rolled_back == {
        "success": False,
        "errors": [
            {
                "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                "message": "Record rolled back because not all records were valid and the "
                "request was using AllOrNone header",
                "fields": [],
            }
        ],
    }
    no_id = raw(
        sf,
        "PATCH",
        "composite/sobjects",
        data=json.dumps({"records": [{"attributes": {"type": "Contact"}, "LastName": "X"}]}),
    )
    assert no_id.json() == [
        {
            "success": False,
            "errors": [
                {
                    "statusCode": "MISSING_ARGUMENT",
                    "message": "Id not specified in an update call",
                    "fields": [],
                }
            ],
        }
    ]
    empty = raw(sf, "POST", "composite/sobjects", data=json.dumps({"records": []}))
    assert empty.status_code == 400
    assert empty.content == (
        b'[{"message":"At least 1 record is required","errorCode":"REQUIRED_FIELD_MISSING"}]'
    )
    many = [{"attributes": {"type": "Contact"}, "LastName": str(i)} for i in range(201)]
    over = raw(sf, "POST", "composite/sobjects", data=json.dumps({"records": many}))
    assert over.status_code == 400 and over.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


# ---------------------------------------------------------------------- §3 Bulk API 2.0


def test_ingest_job_info_shapes(sf: SF) -> None:
    created = job(sf, object="Account", operation="upsert", externalIdFieldName="External_Id__c")
    assert created["state"] == "Open" and created["id"].startswith("750")
    assert created["contentUrl"] == f"services/data/v59.0/jobs/ingest/{created['id']}/batches"
    assert created["apiVersion"] == 59.0 and isinstance(created["apiVersion"], float)
    assert (created["lineEnding"], created["columnDelimiter"]) == ("LF", "COMMA")
    assert created["concurrencyMode"] == "Parallel" and created["contentType"] == "CSV"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", created["createdDate"])
    upload = put(sf, created["id"], b"Name,External_Id__c\nA,e-1\n")
    assert (upload.status_code, upload.content) == (201, b"")
    closed = close(sf, created["id"])
    assert closed.status_code == 200 and closed.json()["state"] == "UploadComplete"
    info = finished(sf, f"jobs/ingest/{created['id']}")
    assert info["jobType"] == "V2Ingest" and info["state"] == "JobComplete"
    for key in (
        "numberRecordsProcessed",
        "numberRecordsFailed",
        "retries",
        "totalProcessingTime",
        "apiActiveProcessingTime",
        "apexProcessingTime",
    ):
        assert isinstance(info[key], int), key


def test_result_files_are_byte_exact(sf: SF) -> None:
    data = b"Name,External_Id__c\nGood,r-1\n,r-2\n"
    info, results = run_job(sf, data, object="Account", operation="insert")
    assert (info["numberRecordsProcessed"], info["numberRecordsFailed"]) == (2, 1)
    success_lines = results["successfulResults"].decode().splitlines()
    assert success_lines[0] == '"sf__Id","sf__Created",Name,External_Id__c'
    assert re.fullmatch(r'"001[0-9A-Za-z]{15}","true","Good","r-1"', success_lines[1])
    assert results["failedResults"] == (
        b'"sf__Id","sf__Error",Name,External_Id__c\n'
        b'"","REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --","","r-2"\n'
    )
    assert results["unprocessedrecords"] == b"Name,External_Id__c\n"


def test_unprocessed_records_both_casings(sf: SF) -> None:
    info = job(sf, object="Account", operation="insert")
    put(sf, info["id"], b"Name\nA\n")
    close(sf, info["id"])
    finished(sf, f"jobs/ingest/{info['id']}")
    lower = raw(sf, "GET", f"jobs/ingest/{info['id']}/unprocessedrecords")
    camel = raw(sf, "GET", f"jobs/ingest/{info['id']}/unprocessedRecords")
    assert lower.status_code == camel.status_code == 200
    assert lower.content == camel.content == b"Name\n"
    assert lower.headers["content-type"].startswith("text/csv")


def test_bad_header_fails_the_whole_job(sf: SF) -> None:
    info, _ = run_job(
        sf,
        b"Name,StageName_invalid_field_on_purpose\nA,x\n",
        object="Account",
        operation="insert",
    )
    assert info["state"] == "Failed"
    assert info["errorMessage"] == (
        "InvalidBatch : Field name not found : StageName_invalid_field_on_purpose"
    )
    assert (info["numberRecordsProcessed"], info["numberRecordsFailed"]) == (0, 0)


def test_delete_job_only_in_allowed_states(sf: SF) -> None:
    info = job(sf, object="Account", operation="insert")
    refused = raw(sf, "DELETE", f"jobs/ingest/{info['id']}")
    assert refused.status_code >= 400
    assert list(refused.json()[0]) == ["errorCode", "message"]
    put(sf, info["id"], b"Name\nA\n")
    close(sf, info["id"])
    finished(sf, f"jobs/ingest/{info['id']}")
    deleted = raw(sf, "DELETE", f"jobs/ingest/{info['id']}")
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert raw(sf, "GET", f"jobs/ingest/{info['id']}").status_code == 404


def test_query_job_paging_headers_and_412(sf: SF, emulator: EmulatorServer) -> None:
    for i in range(5):
        sf.Account.create({"Name": f"Q{i}"})
    emulator.emulator.bulk_jobs.processing_delay = 0.5
    created = raw(
        sf,
        "POST",
        "jobs/query",
        data=json.dumps({"operation": "query", "query": "SELECT Name, Id FROM Account"}),
    )
    assert created.status_code == 200 and created.json()["state"] == "UploadComplete"
    job_id = created.json()["id"]
    early = raw(sf, "GET", f"jobs/query/{job_id}/results")
    assert early.status_code == 412
    assert early.content == (
        b'[{"errorCode":"JOB_NOT_COMPLETE","message":"can only download query results of '
        b"successfully completed bulk job with status: JOB_COMPLETE. Current status: "
        b'IN_PROGRESS"}]'
    )
    emulator.emulator.bulk_jobs.processing_delay = 0.0
    finished(sf, f"jobs/query/{job_id}")
    page = raw(sf, "GET", f"jobs/query/{job_id}/results", params={"maxRecords": 3})
    assert page.headers["Sforce-NumberOfRecords"] == "3"
    locator = page.headers["Sforce-Locator"]
    assert locator != "null"
    assert page.text.splitlines()[0] == '"Name","Id"'  # SELECT order
    last = raw(
        sf, "GET", f"jobs/query/{job_id}/results", params={"maxRecords": 3, "locator": locator}
    )
    assert last.headers["Sforce-NumberOfRecords"] == "2"
    assert last.headers["Sforce-Locator"] == "null"
    # simple-salesforce's own reader relies on both headers.
    pages = list(sf.bulk2.Account.query("SELECT Name FROM Account", max_records=2, wait=0))
    assert sum(len(p.splitlines()) - 1 for p in pages) == 5


# -------------------------------------------------------------------- §3 leniency refused


def test_job_definition_with_unknown_key_is_refused(sf: SF) -> None:
    res = raw(
        sf,
        "POST",
        "jobs/ingest",
        data=json.dumps({"object": "Account", "operation": "insert", "bogus": 1}),
    )
    assert res.status_code == 400
    assert res.json() == [
        {
            "errorCode": "JSON_PARSER_ERROR",
            "message": 'Unrecognized field "bogus" (class JobInfo), not marked as ignorable',
        }
    ]
    query = raw(
        sf,
        "POST",
        "jobs/query",
        data=json.dumps({"operation": "query", "query": "SELECT Id FROM Account", "object": "x"}),
    )
    assert query.status_code == 400 and query.json()[0]["errorCode"] == "JSON_PARSER_ERROR"


def test_wrong_content_types_are_415(sf: SF) -> None:
    form = raw(
        sf,
        "POST",
        "sobjects/Account",
        data="Name=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 415
    assert form.json() == [
        {
            "message": "MediaType of 'application/x-www-form-urlencoded' is not supported by "
            "this resource",
            "errorCode": "UNSUPPORTED_MEDIA_TYPE",
        }
    ]
    created = job(sf, object="Account", operation="insert")
    as_json = put(sf, created["id"], b"Name\nA\n", content_type="application/json")
    assert as_json.status_code == 415
    assert as_json.json()[0]["errorCode"] == "UNSUPPORTED_MEDIA_TYPE"
    # The job is still Open and takes a proper upload.
    assert (
        put(sf, created["id"], b"Name\nA\n", content_type="text/csv; charset=UTF-8").status_code
        == 201
    )


def test_close_without_upload_and_second_put(sf: SF) -> None:
    created = job(sf, object="Account", operation="insert")
    res = close(sf, created["id"])
    assert res.status_code == 400 and res.json()[0]["errorCode"] == "INVALIDJOB"
    assert raw(sf, "GET", f"jobs/ingest/{created['id']}").json()["state"] == "Open"
    assert put(sf, created["id"], b"Name\nA\n").status_code == 201
    second = put(sf, created["id"], b"Name\nB\n")
    assert second.status_code == 400
    assert second.json()[0]["errorCode"] == "INVALIDJOB"
    assert second.json()[0]["message"].startswith(
        f"Found multiple contents for job: <{created['id'][:15]}>"
    )


def test_results_before_completion_are_refused(sf: SF) -> None:
    created = job(sf, object="Account", operation="insert")
    for kind in ("successfulResults", "failedResults", "unprocessedrecords"):
        res = raw(sf, "GET", f"jobs/ingest/{created['id']}/{kind}")
        assert res.status_code == 409, kind
        assert res.json()[0]["errorCode"] == "INVALIDJOBSTATE"


def test_malformed_csv_rows_fail_alone(sf: SF) -> None:
    data = (
        b"Name,Description\n"
        b"Fine,ok\n"
        b' "Lead space",x\n'
        b'"Trail space" ,x\n'
        b'Stray"quote,x\n'
        b"Too,many,values\n"
        b"Too few\n"
        b'"Quoted, fine","with ""quotes"""\n'
    )
    info, results = run_job(sf, data, object="Account", operation="insert")
    assert info["state"] == "JobComplete"
    assert (info["numberRecordsProcessed"], info["numberRecordsFailed"]) == (7, 5)
    ok = results["successfulResults"].decode().splitlines()
    assert [line.split(",", 2)[2] for line in ok[1:]] == [
        '"Fine","ok"',
        '"Quoted, fine","with ""quotes"""',
    ]
    failed = results["failedResults"].decode().splitlines()[1:]
    assert len(failed) == 5
    assert all(line.startswith('"","INVALID_FIELD:Failed to parse CSV row ') for line in failed)
    assert all(line.split('","', 2)[1].endswith(":--") for line in failed)


def test_whole_job_failures_for_encoding_and_header_length(sf: SF) -> None:
    latin1, _ = run_job(
        sf, "Name\nCaf\u00e9\n".encode("latin-1"), object="Account", operation="insert"
    )
    assert latin1["state"] == "Failed"
    assert latin1["errorMessage"].startswith("ClientInputError : Invalid CSV data: invalid utf-8")
    header = "Name," + ",".join(f"Col{i}__c" for i in range(4000))
    assert len(header) > 32_000
    long_header, _ = run_job(sf, (header + "\nA\n").encode(), object="Account", operation="insert")
    assert long_header["state"] == "Failed"
    assert long_header["errorMessage"] == (
        "InvalidBatch : The header row exceeds the maximum of 32000 characters"
    )


# ---------------------------------------------------------------------- §5 semantics


def test_id_checksum_and_key_prefixes(sf: SF) -> None:
    assert checksum("001D000000ISUr3") == "IAH"
    assert checksum("750ak000009E1YX") == "AA0"
    account = sf.Account.create({"Name": "P"})["id"]
    contact = sf.Contact.create({"LastName": "P"})["id"]
    assert (account[:3], contact[:3]) == ("001", "003")
    assert account[15:] == checksum(account[:15])


def test_recycle_bin_and_audit_fields(sf: SF) -> None:
    record_id = sf.Account.create({"Name": "Bin"})["id"]
    row = sf.Account.get(record_id)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", row["CreatedDate"])
    assert row["SystemModstamp"] >= row["LastModifiedDate"]
    res = raw(
        sf,
        "PATCH",
        f"sobjects/Account/{record_id}",
        data=json.dumps({"CreatedDate": "2020-01-01T00:00:00.000+0000"}),
    )
    assert res.status_code == 400
    assert res.json()[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    assert res.json()[0]["fields"] == ["CreatedDate"]
    sf.Account.delete(record_id)
    assert sf.query(f"SELECT Id FROM Account WHERE Id = '{record_id}'")["totalSize"] == 0
    deleted = sf.query_all(
        f"SELECT Id, IsDeleted FROM Account WHERE Id = '{record_id}'", include_deleted=True
    )
    assert deleted["records"][0]["IsDeleted"] is True


def test_body_may_not_contradict_the_path(sf: SF) -> None:
    record_id = sf.Account.create({"Name": "Path"})["id"]
    res = raw(
        sf,
        "PATCH",
        f"sobjects/Account/{record_id}",
        data=json.dumps({"Id": record_id, "Name": "X"}),
    )
    assert res.status_code == 400
    assert res.json() == [
        {
            "message": "The Id field should not be specified in the sobject data.",
            "errorCode": "INVALID_FIELD",
        }
    ]
    other = raw(
        sf,
        "PATCH",
        "sobjects/Account/External_Id__c/E-1",
        data=json.dumps({"Name": "X", "External_Id__c": "E-2"}),
    )
    assert other.status_code == 400 and other.json()[0]["errorCode"] == "INVALID_FIELD"
    same = raw(
        sf,
        "PATCH",
        "sobjects/Account/External_Id__c/E-1",
        data=json.dumps({"Name": "X", "External_Id__c": "E-1"}),
    )
    assert same.status_code == 201
    assert sf.Account.get(record_id)["Name"] == "Path"
