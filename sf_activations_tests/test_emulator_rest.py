"""Contract tests: the real simple-salesforce client against the emulator's REST API over HTTPS.

Status codes and bodies are asserted exactly as salesforce-api.md §2 gives them.
"""

from __future__ import annotations

import json
import re
from typing import Any

import polars as pl
import pytest
import requests
from simple_salesforce.exceptions import (
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceResourceNotFound,
)

from sf_activations.emulator.schema import FieldDef
from sf_activations.emulator.server import EmulatorServer

# simple-salesforce resolves object names (``sf.Account``) at run time, so its static types
# cannot describe them: the client is typed loosely here.
SF = Any

ID_RE = re.compile(r"^[0-9A-Za-z]{18}$")
NOT_FOUND_BODY = [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]


def call(sf: SF, method: str, path: str, **kwargs: Any) -> requests.Response:
    """A raw call on the client's own session (status codes that simple-salesforce hides)."""
    url = path if path.startswith("https://") else f"{sf.base_url}{path}"
    headers = {
        "Authorization": f"Bearer {sf.session_id}",
        "Content-Type": "application/json",
        **kwargs.pop("headers", {}),
    }
    return sf.session.request(method, url, headers=headers, **kwargs)


def instance(sf: SF) -> str:
    return f"https://{sf.sf_instance}"


# ------------------------------------------------------------------------ versions, describe


def test_versions_list_and_resources(sf: SF) -> None:
    versions = call(sf, "GET", f"{instance(sf)}/services/data").json()
    by_version = {v["version"]: v for v in versions}
    assert by_version["59.0"] == {
        "label": "Winter '24",
        "url": "/services/data/v59.0",
        "version": "59.0",
    }
    assert by_version["31.0"]["label"] == "Summer '14"
    res = call(sf, "GET", f"{instance(sf)}/services/data/v59.0")
    assert res.status_code == 200
    assert res.json()["sobjects"] == "/services/data/v59.0/sobjects"


def test_unknown_version_is_not_found(sf: SF) -> None:
    res = call(sf, "GET", f"{instance(sf)}/services/data/v12.0/sobjects")
    assert res.status_code == 404
    assert res.json() == NOT_FOUND_BODY
    res = call(sf, "GET", f"{instance(sf)}/services/data/latest/sobjects")
    assert res.status_code == 404


def test_limits_through_client(sf: SF) -> None:
    limits = sf.limits()
    assert limits["DailyApiRequests"]["Max"] == 15000
    assert 0 < limits["DailyApiRequests"]["Remaining"] < 15000


def test_describe_global_object_and_unknown(sf: SF) -> None:
    described = sf.describe()
    assert described["encoding"] == "UTF-8"
    assert described["maxBatchSize"] == 200
    names = {s["name"] for s in described["sobjects"]}
    assert {"Account", "Contact", "Lead", "Opportunity"} <= names

    account = sf.Account.describe()
    fields = {f["name"]: f for f in account["fields"]}
    assert fields["External_Id__c"]["externalId"] is True
    assert fields["Name"]["nillable"] is False
    # Object names are case-insensitive in paths.
    assert call(sf, "GET", "sobjects/account/describe").json()["name"] == "Account"

    info = sf.Account.metadata()
    assert info["objectDescribe"]["name"] == "Account"
    assert info["recentItems"] == []

    res = call(sf, "GET", "sobjects/Accout/describe")
    assert res.status_code == 404
    assert res.json() == NOT_FOUND_BODY
    with pytest.raises(SalesforceResourceNotFound):
        sf.Accout.describe()


# ------------------------------------------------------------------------ single records


def test_crud_round_trip(sf: SF) -> None:
    created = sf.Account.create({"Name": "Acme", "phone": "+1 555 0100"})
    assert created["success"] is True and created["errors"] == []
    record_id = created["id"]
    assert ID_RE.match(record_id) and record_id.startswith("001")

    raw = call(sf, "POST", "sobjects/Account", data=json.dumps({"Name": "Raw"}))
    assert raw.status_code == 201
    assert list(raw.json()) == ["id", "success", "errors"]

    record = sf.Account.get(record_id)
    assert record["attributes"] == {
        "type": "Account",
        "url": f"/services/data/v{sf.sf_version}/sobjects/Account/{record_id}",
    }
    assert record["Name"] == "Acme" and record["Phone"] == "+1 555 0100"
    # A 15-character id reaches the same record.
    assert sf.Account.get(record_id[:15])["Id"] == record_id

    some = call(sf, "GET", f"sobjects/Account/{record_id}?fields=Name,Phone").json()
    assert set(some) == {"attributes", "Name", "Phone"} or set(some) == {
        "attributes",
        "Id",
        "Name",
        "Phone",
    }

    assert sf.Account.update(record_id, {"Phone": None, "Website": "https://acme.example"}) == 204
    record = sf.Account.get(record_id)
    assert record["Phone"] is None and record["Website"] == "https://acme.example"

    assert sf.Account.delete(record_id) == 204
    again = call(sf, "DELETE", f"sobjects/Account/{record_id}")
    assert again.status_code == 404  # ENTITY_IS_DELETED (status UNVERIFIED in the reference)
    assert again.json()[0]["errorCode"] == "ENTITY_IS_DELETED"
    assert again.json()[0]["message"] == "entity is deleted"
    gone = call(sf, "GET", f"sobjects/Account/{record_id}")
    assert gone.status_code == 404
    assert gone.json() == NOT_FOUND_BODY


def test_create_validation_error_body(sf: SF) -> None:
    res = call(sf, "POST", "sobjects/Account", data=json.dumps({"Phone": "1"}))
    assert res.status_code == 400
    assert res.json() == [
        {
            "message": "Required fields are missing: [Name]",
            "errorCode": "REQUIRED_FIELD_MISSING",
            "fields": ["Name"],
        }
    ]
    with pytest.raises(SalesforceMalformedRequest):
        sf.Account.create({"Name": "x", "Bogus__c": 1})


def test_malformed_record_id_is_read_as_external_id_field(sf: SF) -> None:
    res = call(sf, "GET", "sobjects/Account/notAnId")
    assert res.status_code == 404
    assert res.json() == [
        {
            "errorCode": "NOT_FOUND",
            "message": "Provided external ID field does not exist or is not accessible: notAnId",
        }
    ]


def test_bad_json_and_wrong_method(sf: SF) -> None:
    res = call(sf, "POST", "sobjects/Account", data="{not json")
    assert res.status_code == 400
    assert res.json()[0]["errorCode"] == "JSON_PARSER_ERROR"
    res = call(sf, "POST", "sobjects/Account", data="")
    assert res.status_code == 400
    assert res.json()[0]["errorCode"] == "JSON_PARSER_ERROR"
    res = call(sf, "POST", "sobjects/Account", data="[1]")
    assert res.status_code == 400
    assert res.json()[0]["errorCode"] == "JSON_PARSER_ERROR"

    res = call(sf, "PUT", "sobjects/Account", data="{}")
    assert res.status_code == 405
    assert res.json()[0]["errorCode"] == "METHOD_NOT_ALLOWED"
    assert "GET" in res.headers["Allow"] and "POST" in res.headers["Allow"]
    res = call(sf, "DELETE", "limits")
    assert res.status_code == 405


def test_post_to_id_path_creates(sf: SF) -> None:
    res = call(sf, "POST", "sobjects/Account/Id", data=json.dumps({"Name": "Via Id"}))
    assert res.status_code == 201
    assert sf.Account.get(res.json()["id"])["Name"] == "Via Id"
    res = call(sf, "POST", "sobjects/Account/External_Id__c", data=json.dumps({"Name": "x"}))
    assert res.status_code == 405


# ------------------------------------------------------------------------ upsert


def test_upsert_created_updated_and_by_external_id(sf: SF) -> None:
    assert sf.Account.upsert("External_Id__c/A-1", {"Name": "One"}) == 201
    res = call(sf, "PATCH", "sobjects/Account/External_Id__c/A-2", data=json.dumps({"Name": "Two"}))
    assert res.status_code == 201
    body = res.json()
    assert body["success"] is True and body["created"] is True and body["errors"] == []
    two_id = body["id"]

    res = call(sf, "PATCH", "sobjects/Account/External_Id__c/A-2", data=json.dumps({"Name": "2"}))
    assert res.status_code == 200
    assert res.json() == {"id": two_id, "success": True, "errors": [], "created": False}
    assert sf.Account.upsert("External_Id__c/A-2", {"Name": "Deux"}) == 200

    old = f"{instance(sf)}/services/data/v45.0/sobjects/Account/External_Id__c/A-2"
    res = call(sf, "PATCH", old, data=json.dumps({"Name": "Old API"}))
    assert res.status_code == 204 and res.content == b""

    # The unique, case-insensitive External_Id__c matches regardless of case.
    record = sf.Account.get_by_custom_id("External_Id__c", "a-2")
    assert record["Id"] == two_id and record["Name"] == "Old API"

    res = call(sf, "PATCH", "sobjects/Account/updateOnly_test/x", data="{}")
    assert res.status_code == 404
    res = call(
        sf,
        "PATCH",
        "sobjects/Account/External_Id__c/A-404?updateOnly=true",
        data=json.dumps({"Name": "never"}),
    )
    assert res.status_code == 404
    assert sf.query("SELECT Id FROM Account WHERE External_Id__c = 'A-404'")["totalSize"] == 0

    res = call(sf, "DELETE", "sobjects/Account/External_Id__c/A-1")
    assert res.status_code == 204
    assert sf.query("SELECT Id FROM Account WHERE External_Id__c = 'A-1'")["totalSize"] == 0


def test_upsert_unknown_external_id_field(sf: SF) -> None:
    res = call(sf, "PATCH", "sobjects/Account/ERP_Id__c/1", data=json.dumps({"Name": "x"}))
    assert res.status_code == 404
    assert res.json() == [
        {
            "errorCode": "NOT_FOUND",
            "message": "Provided external ID field does not exist or is not accessible: ERP_Id__c",
        }
    ]
    # A field that exists but is no external id is refused the same way.
    res = call(sf, "PATCH", "sobjects/Account/Phone/1", data=json.dumps({"Name": "x"}))
    assert res.status_code == 404
    with pytest.raises(SalesforceResourceNotFound):
        sf.Account.upsert("ERP_Id__c/1", {"Name": "x"})


def test_upsert_several_matches_is_300(sf: SF, emulator: EmulatorServer) -> None:
    emulator.org.schema.add_field(
        "Account",
        FieldDef(
            name="Legacy_Id__c",
            label="Legacy Id",
            type="string",
            length=50,
            external_id=True,
            custom=True,
        ),
    )
    first = sf.Account.create({"Name": "a", "Legacy_Id__c": "L-1"})["id"]
    second = sf.Account.create({"Name": "b", "Legacy_Id__c": "L-1"})["id"]
    res = call(sf, "PATCH", "sobjects/Account/Legacy_Id__c/L-1", data=json.dumps({"Name": "c"}))
    assert res.status_code == 300
    v = sf.sf_version
    assert sorted(res.json()) == sorted(
        [
            f"/services/data/v{v}/sobjects/Account/{first}",
            f"/services/data/v{v}/sobjects/Account/{second}",
        ]
    )
    with pytest.raises(SalesforceMoreThanOneRecord):
        sf.Account.upsert("Legacy_Id__c/L-1", {"Name": "c"})
    with pytest.raises(SalesforceMoreThanOneRecord):
        sf.Account.get_by_custom_id("Legacy_Id__c", "L-1")


# ------------------------------------------------------------------------ query


def _seed_accounts(emulator: EmulatorServer, n: int) -> list[str]:
    # One vectorised insert: thousands of single creates would dominate the test's time.
    frame = pl.DataFrame({"Name": [f"Acc {i:05d}" for i in range(n)]})
    outcome = emulator.org.bulk_apply("Account", "insert", frame)
    assert outcome.errors == [None] * n
    return [str(i) for i in outcome.ids]


def test_query_paging_with_query_all_and_query_more(sf: SF, emulator: EmulatorServer) -> None:
    _seed_accounts(emulator, 2500)
    first = sf.query("SELECT Id, Name FROM Account ORDER BY Name")
    assert first["totalSize"] == 2500 and first["done"] is False
    assert len(first["records"]) == 2000
    assert re.fullmatch(
        rf"/services/data/v{sf.sf_version}/query/01g[0-9A-Za-z]{{15}}-2000",
        first["nextRecordsUrl"],
    )
    second = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert second["done"] is True and "nextRecordsUrl" not in second
    assert len(second["records"]) == 500
    assert second["records"][-1]["Name"] == "Acc 02499"

    everything = sf.query_all("SELECT Name FROM Account")
    assert everything["totalSize"] == 2500 and len(everything["records"]) == 2500
    assert everything["records"][0]["attributes"]["type"] == "Account"


def test_query_batch_size_header(sf: SF, emulator: EmulatorServer) -> None:
    _seed_accounts(emulator, 450)
    res = call(
        sf,
        "GET",
        "query",
        params={"q": "SELECT Id FROM Account"},
        headers={"Sforce-Query-Options": "batchSize=200"},
    )
    body = res.json()
    assert len(body["records"]) == 200 and body["nextRecordsUrl"].endswith("-200")
    # Later pages keep the batch size the query asked for.
    nxt = sf.query_more(body["nextRecordsUrl"], identifier_is_url=True)
    assert len(nxt["records"]) == 200 and nxt["nextRecordsUrl"].endswith("-400")
    # Below the minimum the batch size is raised to 200.
    small = call(
        sf,
        "GET",
        "query",
        params={"q": "SELECT Id FROM Account"},
        headers={"Sforce-Query-Options": "batchSize=10"},
    ).json()
    assert len(small["records"]) == 200


def test_query_all_sees_deleted_and_its_locator_works_under_both_paths(
    sf: SF, emulator: EmulatorServer
) -> None:
    ids = _seed_accounts(emulator, 2100)
    for record_id in ids[:3]:
        sf.Account.delete(record_id)
    assert sf.query("SELECT Id FROM Account")["totalSize"] == 2097
    deleted = sf.query_all("SELECT Id FROM Account WHERE IsDeleted = true", include_deleted=True)
    assert sorted(r["Id"] for r in deleted["records"]) == sorted(ids[:3])

    first = call(sf, "GET", "queryAll", params={"q": "SELECT Id, IsDeleted FROM Account"}).json()
    assert first["totalSize"] == 2100
    locator = first["nextRecordsUrl"].rsplit("/", 1)[1]
    via_query = call(sf, "GET", f"query/{locator}").json()
    via_query_all = call(sf, "GET", f"queryAll/{locator}").json()
    assert via_query == via_query_all
    assert len(via_query["records"]) == 100 and via_query["done"] is True


def test_only_ten_cursors_stay_open(sf: SF, emulator: EmulatorServer) -> None:
    _seed_accounts(emulator, 2001)
    urls = [sf.query("SELECT Id FROM Account")["nextRecordsUrl"] for _ in range(11)]
    # Opening an eleventh cursor released the oldest one.
    res = call(sf, "GET", f"{instance(sf)}{urls[0]}")
    assert res.status_code == 400
    assert res.json()[0]["errorCode"] == "INVALID_QUERY_LOCATOR"
    assert len(sf.query_more(urls[1], identifier_is_url=True)["records"]) == 1


def test_query_errors(sf: SF) -> None:
    res = call(sf, "GET", "query", params={"q": "SELECT Id FROM Accout"})
    assert res.status_code == 400
    assert res.json()[0]["errorCode"] == "INVALID_TYPE"
    res = call(sf, "GET", "query/01gZZZZZZZZZZZZZZZ-2000")
    assert res.status_code == 400
    assert res.json() == [
        {"message": "invalid query locator", "errorCode": "INVALID_QUERY_LOCATOR"}
    ]
    res = call(sf, "GET", "query")
    assert res.status_code == 400
    assert res.json()[0]["errorCode"] == "MALFORMED_QUERY"


def test_count_query(sf: SF, emulator: EmulatorServer) -> None:
    _seed_accounts(emulator, 5)
    result = sf.query("SELECT COUNT() FROM Account")
    assert result == {"totalSize": 5, "done": True, "records": []}


# ------------------------------------------------------------------------ collections

ROLLED_BACK = {
    "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "message": "Record rolled back because not all records were valid and the request was using AllOrNone header",
    "fields": [],
}
NAME_MISSING = {
    "statusCode": "REQUIRED_FIELD_MISSING",
    "message": "Required fields are missing: [Name]",
    "fields": ["Name"],
}


def _acc(**values: Any) -> dict[str, Any]:
    return {"attributes": {"type": "Account"}, **values}


def test_collection_create_partial_and_all_or_none(sf: SF) -> None:
    body: dict[str, Any] = {"allOrNone": False, "records": [_acc(Name="ok"), _acc(Phone="1")]}
    res = call(sf, "POST", "composite/sobjects", data=json.dumps(body))
    assert res.status_code == 200
    items = res.json()
    assert items[0]["success"] is True and ID_RE.match(items[0]["id"])
    assert items[1] == {"success": False, "errors": [NAME_MISSING]}

    body = {"allOrNone": True, "records": [_acc(Name="kept?"), _acc(Phone="2")]}
    items = call(sf, "POST", "composite/sobjects", data=json.dumps(body)).json()
    assert items == [
        {"success": False, "errors": [ROLLED_BACK]},
        {"success": False, "errors": [NAME_MISSING]},
    ]
    assert sf.query("SELECT Id FROM Account WHERE Name = 'kept?'")["totalSize"] == 0

    # simple-salesforce's generic restful() reaches the same endpoint.
    items = sf.restful(
        "composite/sobjects",
        method="POST",
        data=json.dumps(
            {"records": [_acc(Name="a"), {"attributes": {"type": "Contact"}, "LastName": "b"}]}
        ),
    )
    assert [i["success"] for i in items] == [True, True]
    assert items[1]["id"].startswith("003")


def test_collection_limits_and_empty(sf: SF) -> None:
    res = call(sf, "POST", "composite/sobjects", data=json.dumps({"records": []}))
    assert res.status_code == 400
    assert res.json() == [
        {"message": "At least 1 record is required", "errorCode": "REQUIRED_FIELD_MISSING"}
    ]
    records = [_acc(Name=f"n{i}") for i in range(201)]
    res = call(sf, "POST", "composite/sobjects", data=json.dumps({"records": records}))
    assert res.status_code == 400
    assert res.json() == [
        {
            "message": "record limit reached. cannot submit more than 200 records into this call",
            "errorCode": "EXCEEDED_ID_LIMIT",
        }
    ]
    res = call(sf, "POST", "composite/sobjects", data=json.dumps({"records": records[:200]}))
    assert res.status_code == 200 and all(i["success"] for i in res.json())


def test_collection_update_missing_id_and_rollback(sf: SF) -> None:
    a = sf.Account.create({"Name": "A"})["id"]
    b = sf.Account.create({"Name": "B"})["id"]
    body: dict[str, Any] = {"records": [_acc(Name="no id"), _acc(id=a, Name="A2")]}
    items = call(sf, "PATCH", "composite/sobjects", data=json.dumps(body)).json()
    assert items[0] == {
        "success": False,
        "errors": [
            {
                "statusCode": "MISSING_ARGUMENT",
                "message": "Id not specified in an update call",
                "fields": [],
            }
        ],
    }
    assert items[1] == {"id": a, "success": True, "errors": []}
    assert sf.Account.get(a)["Name"] == "A2"

    body = {"allOrNone": True, "records": [_acc(id=b, Name="B2"), _acc(id=a, Bogus__c="x")]}
    items = call(sf, "PATCH", "composite/sobjects", data=json.dumps(body)).json()
    assert items[0] == {"success": False, "errors": [ROLLED_BACK]}
    assert items[1]["errors"][0]["statusCode"] == "INVALID_FIELD"
    assert (
        items[1]["errors"][0]["message"] == "No such column 'Bogus__c' on sobject of type Account"
    )
    assert sf.Account.get(b)["Name"] == "B"


def test_collection_upsert_delete_retrieve(sf: SF) -> None:
    existing = sf.Account.create({"Name": "Old", "External_Id__c": "E-1"})["id"]
    body = {
        "allOrNone": False,
        "records": [
            _acc(External_Id__c="E-1", Name="Updated"),
            _acc(External_Id__c="E-2", Name="New"),
        ],
    }
    res = call(sf, "PATCH", "composite/sobjects/Account/External_Id__c", data=json.dumps(body))
    assert res.status_code == 200
    items = res.json()
    assert items[0] == {"id": existing, "success": True, "errors": [], "created": False}
    assert items[1]["created"] is True and items[1]["success"] is True
    new_id = items[1]["id"]

    fetched = call(
        sf,
        "POST",
        "composite/sobjects/Account",
        data=json.dumps({"ids": [existing, new_id, "001000000000000AAA"], "fields": ["Name"]}),
    ).json()
    assert [r["Name"] for r in fetched[:2]] == ["Updated", "New"]
    assert fetched[2] is None

    res = call(sf, "DELETE", f"composite/sobjects?ids={existing},{new_id}&allOrNone=true")
    assert res.status_code == 200
    assert res.json() == [
        {"id": existing, "success": True, "errors": []},
        {"id": new_id, "success": True, "errors": []},
    ]
    again = call(sf, "DELETE", f"composite/sobjects?ids={existing}").json()
    assert again[0]["success"] is False
    assert again[0]["errors"][0]["statusCode"] == "ENTITY_IS_DELETED"

    res = call(sf, "PATCH", "composite/sobjects/Account/Nope__c", data=json.dumps(body))
    assert res.status_code == 404


def test_collection_items_naming_missing_or_malformed_ids(sf: SF) -> None:
    body = {
        "records": [
            _acc(id="001000000000000AAA", Name="ghost"),
            _acc(id="bad", Name="x"),
        ]
    }
    items = call(sf, "PATCH", "composite/sobjects", data=json.dumps(body)).json()
    assert items == [
        {
            "success": False,
            "errors": [
                {
                    "statusCode": "INVALID_CROSS_REFERENCE_KEY",
                    "message": "invalid cross reference id",
                    "fields": [],
                }
            ],
        },
        {
            "success": False,
            "errors": [{"statusCode": "MALFORMED_ID", "message": "malformed id bad", "fields": []}],
        },
    ]
    items = call(sf, "DELETE", "composite/sobjects?ids=001000000000000AAA").json()
    assert items[0]["errors"][0]["statusCode"] == "INVALID_CROSS_REFERENCE_KEY"
    res = call(sf, "DELETE", "composite/sobjects")
    assert res.status_code == 400 and res.json()[0]["errorCode"] == "MISSING_ARGUMENT"


def test_emulator_bug_answers_unknown_exception(
    sf: SF, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("simulated emulator bug")

    monkeypatch.setattr(emulator.org, "describe_global", broken)
    res = call(sf, "GET", "sobjects")
    assert res.status_code == 500
    assert res.json()[0]["errorCode"] == "UNKNOWN_EXCEPTION"
    # The connection survives: the next call on the same session works.
    assert call(sf, "GET", "limits").status_code == 200


def test_collection_mixed_types_at_most_ten_chunks(sf: SF) -> None:
    def contact(i: int) -> dict[str, Any]:
        return {"attributes": {"type": "Contact"}, "LastName": f"c{i}"}

    ten = [_acc(Name=f"a{i}") if i % 2 == 0 else contact(i) for i in range(10)]
    res = call(sf, "POST", "composite/sobjects", data=json.dumps({"records": ten}))
    assert res.status_code == 200 and all(i["success"] for i in res.json())
    eleven = [*ten, _acc(Name="a10")]
    res = call(sf, "POST", "composite/sobjects", data=json.dumps({"records": eleven}))
    assert res.status_code == 400
    assert res.json()[0]["message"].startswith("Cannot have more than 10 chunks")
