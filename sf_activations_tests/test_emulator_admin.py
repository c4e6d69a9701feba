"""The admin API over HTTP: it drives the same operations tests use from Python."""

from __future__ import annotations

from typing import cast

import pytest
import requests
from simple_salesforce import Salesforce, SFType
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
)

from sf_activations.emulator.server import EmulatorServer
from sf_activations.emulator.testing import login


def admin(
    emulator: EmulatorServer, http: requests.Session, method: str, path: str, **kw: object
) -> requests.Response:
    return http.request(method, f"{emulator.url}/__admin{path}", **kw)  # type: ignore[arg-type]


def test_admin_needs_no_session_and_is_not_counted(
    emulator: EmulatorServer, emulator_http: requests.Session
) -> None:
    state = admin(emulator, emulator_http, "GET", "/state")
    assert state.status_code == 200
    assert state.json()["org_id"] == emulator.org.org_id
    assert emulator.emulator.limits.api_used == 0
    assert emulator.emulator.request_log.count(kind="admin") == 1


def test_fail_and_drop_faults_over_http(
    emulator: EmulatorServer, emulator_http: requests.Session
) -> None:
    sf = login(emulator, "direct")
    armed = admin(
        emulator, emulator_http, "POST", "/faults", json={"action": "fail", "n": 1, "status": 500}
    )
    assert armed.json()["faults"][0]["remaining"] == 1
    with pytest.raises(SalesforceGeneralError) as excinfo:
        sf.limits()
    assert excinfo.value.status == 500
    admin(emulator, emulator_http, "POST", "/faults", json={"action": "drop"})
    with pytest.raises(requests.exceptions.ConnectionError):
        sf.limits()
    assert sf.limits()
    admin(emulator, emulator_http, "POST", "/faults", json={"action": "delay", "seconds": 5})
    assert len(admin(emulator, emulator_http, "GET", "/faults").json()["faults"]) == 1
    admin(emulator, emulator_http, "DELETE", "/faults")
    assert emulator.emulator.faults.pending() == []


def test_bad_admin_requests_are_400(
    emulator: EmulatorServer, emulator_http: requests.Session
) -> None:
    bad_action = admin(emulator, emulator_http, "POST", "/faults", json={"action": "explode"})
    assert bad_action.status_code == 400
    assert "action" in bad_action.json()["error"]
    not_json = admin(emulator, emulator_http, "POST", "/faults", data=b"{nope")
    assert not_json.status_code == 400
    bad_n = admin(emulator, emulator_http, "POST", "/faults", json={"action": "fail", "n": 0})
    assert bad_n.status_code == 400
    bad_flag = admin(emulator, emulator_http, "PUT", "/connected-app", json={"blocked": "yes"})
    assert bad_flag.status_code == 400
    unknown_attr = admin(
        emulator,
        emulator_http,
        "POST",
        "/objects/Account/fields",
        json={"name": "X__c", "colour": "red"},
    )
    assert unknown_attr.status_code == 400


def test_expire_sessions_over_http(
    emulator: EmulatorServer, emulator_http: requests.Session
) -> None:
    direct = login(emulator, "direct")
    soap = login(emulator, "soap")
    response = admin(
        emulator, emulator_http, "POST", "/sessions/expire", json={"token": soap.session_id}
    )
    assert response.json()["expired"] == 1
    assert direct.limits()
    admin(emulator, emulator_http, "POST", "/sessions/expire", json={})
    with pytest.raises(SalesforceExpiredSession):
        direct.limits()
    assert soap.limits()  # logs in again by itself


def test_block_connected_app_over_http(
    emulator: EmulatorServer, emulator_http: requests.Session
) -> None:
    admin(emulator, emulator_http, "PUT", "/connected-app", json={"blocked": True})
    with pytest.raises(SalesforceAuthenticationFailed) as excinfo:
        login(emulator, "jwt")
    assert excinfo.value.code == "OAUTH_APP_BLOCKED"
    admin(emulator, emulator_http, "PUT", "/connected-app", json={"blocked": False})
    assert login(emulator, "jwt").limits()


def test_set_remaining_api_requests_over_http(
    emulator: EmulatorServer, emulator_http: requests.Session
) -> None:
    sf = login(emulator, "direct")
    snapshot = admin(emulator, emulator_http, "PUT", "/limits", json={"api_remaining": 0}).json()
    assert snapshot["DailyApiRequests"] == {"Max": 15000, "Remaining": 0}
    with pytest.raises(SalesforceRefusedRequest):
        sf.limits()
    admin(emulator, emulator_http, "PUT", "/limits", json={"reset": True})
    assert sf.limits()["DailyApiRequests"]["Remaining"] == 14999


def test_request_log_over_http(emulator: EmulatorServer, emulator_http: requests.Session) -> None:
    sf = login(emulator, "soap")
    sf.limits()
    sf.limits()
    log = admin(emulator, emulator_http, "GET", "/requests", params={"kind": "rest"}).json()
    assert log["count"] == 2
    assert {r["path"] for r in log["requests"]} == {"/services/data/v59.0/limits"}
    assert all(r["status"] == 200 and r["method"] == "GET" for r in log["requests"])
    auth = admin(emulator, emulator_http, "GET", "/requests", params={"kind": "auth"}).json()
    assert auth["count"] == 1
    admin(emulator, emulator_http, "DELETE", "/requests")
    assert (
        admin(emulator, emulator_http, "GET", "/requests", params={"kind": "rest"}).json()["count"]
        == 0
    )


def test_permissions_over_http(emulator: EmulatorServer, emulator_http: requests.Session) -> None:
    sf = login(emulator, "direct")
    body = admin(
        emulator,
        emulator_http,
        "PUT",
        "/permissions",
        json={
            "api_enabled": False,
            "objects": {"Account": {"create": False, "read": True, "edit": False, "delete": False}},
            "fields": {"Contact.Email": "read"},
        },
    ).json()
    assert body["api_enabled"] is False
    assert body["objects"]["account"]["create"] is False
    assert body["fields"] == {"contact.email": "read"}
    assert emulator.org.permissions.field_access("Contact", "Email") == "read"
    with pytest.raises(SalesforceRefusedRequest):
        sf.limits()
    admin(emulator, emulator_http, "PUT", "/permissions", json={"api_enabled": True})
    assert sf.limits()


def test_org_settings_over_http(emulator: EmulatorServer, emulator_http: requests.Session) -> None:
    body = admin(
        emulator,
        emulator_http,
        "PUT",
        "/org-settings",
        json={"duplicate_rules_enabled": True, "allow_update_converted_leads": True},
    ).json()
    assert body["duplicate_rules_enabled"] is True
    assert emulator.org.duplicate_rules_enabled is True
    assert emulator.org.allow_update_converted_leads is True


def test_reset_over_http(emulator: EmulatorServer, emulator_http: requests.Session) -> None:
    emulator.emulator.faults.fail_next(5)
    emulator.emulator.block_app()
    response = admin(emulator, emulator_http, "POST", "/reset")
    assert response.status_code == 200
    assert response.json()["org_id"] == emulator.org.org_id
    assert emulator.emulator.faults.pending() == []
    assert not emulator.emulator.app_blocked


# ---- org rules and metadata through the real org ---------------------------------------------


def obj(sf: Salesforce, name: str) -> SFType:
    """``sf.<name>`` typed as the REST handle (simple-salesforce's __getattr__ is a union)."""
    return cast(SFType, getattr(sf, name))


def error_code(exc: SalesforceMalformedRequest) -> str:
    content = exc.content
    assert isinstance(content, list)
    return str(content[0]["errorCode"])


def test_trigger_and_clear_rules_over_http(
    emulator: EmulatorServer, emulator_http: requests.Session, sf: Salesforce
) -> None:
    added = admin(
        emulator,
        emulator_http,
        "POST",
        "/triggers",
        json={
            "sobject": "Contact",
            "field": "LastName",
            "equals": "Reject",
            "message": "no thanks",
        },
    )
    assert added.status_code == 200
    with pytest.raises(SalesforceMalformedRequest) as excinfo:
        obj(sf, "Contact").create({"LastName": "Reject"})
    assert error_code(excinfo.value) == "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY"
    assert obj(sf, "Contact").create({"LastName": "Keep"})["success"] is True
    admin(emulator, emulator_http, "DELETE", "/rules")
    assert obj(sf, "Contact").create({"LastName": "Reject"})["success"] is True


def test_lock_rule_over_http(
    emulator: EmulatorServer, emulator_http: requests.Session, sf: Salesforce
) -> None:
    account_id = obj(sf, "Account").create({"Name": "Locked Inc"})["id"]
    admin(emulator, emulator_http, "POST", "/lock-rules", json={"sobject": "Account", "count": 1})
    with pytest.raises(SalesforceMalformedRequest) as excinfo:
        obj(sf, "Account").update(account_id, {"Name": "Renamed"})
    assert error_code(excinfo.value) == "UNABLE_TO_LOCK_ROW"
    assert obj(sf, "Account").update(account_id, {"Name": "Renamed"}) == 204  # the rule fired once
    bad_share = admin(emulator, emulator_http, "POST", "/lock-rules", json={"share": 2})
    assert bad_share.status_code == 400


def test_convert_lead_over_http(
    emulator: EmulatorServer, emulator_http: requests.Session, sf: Salesforce
) -> None:
    lead_id = obj(sf, "Lead").create({"LastName": "Lovelace", "Company": "Analytical Engines"})[
        "id"
    ]
    response = admin(emulator, emulator_http, "POST", f"/leads/{lead_id}/convert", json={})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["success"] is True
    assert result["leadId"][:15] == lead_id[:15]
    assert obj(sf, "Account").get(result["accountId"])["Name"] == "Analytical Engines"
    assert obj(sf, "Contact").get(result["contactId"])["LastName"] == "Lovelace"
    with pytest.raises(SalesforceMalformedRequest) as excinfo:
        obj(sf, "Lead").update(lead_id, {"LastName": "Byron"})
    assert error_code(excinfo.value) == "CANNOT_UPDATE_CONVERTED_LEAD"
    again = admin(emulator, emulator_http, "POST", f"/leads/{lead_id}/convert", json={})
    assert again.status_code == 400
    assert again.json()["error"] == "CANNOT_UPDATE_CONVERTED_LEAD"


def test_add_object_and_field_over_http(
    emulator: EmulatorServer, emulator_http: requests.Session, sf: Salesforce
) -> None:
    created = admin(
        emulator,
        emulator_http,
        "POST",
        "/objects",
        json={
            "name": "Widget__c",
            "fields": [{"name": "Sku__c", "type": "string", "external_id": True, "unique": True}],
        },
    )
    assert created.status_code == 200, created.text
    field = admin(
        emulator,
        emulator_http,
        "POST",
        "/objects/Widget__c/fields",
        json={"name": "Tier__c", "type": "picklist", "picklist_values": ["Gold", "Silver"]},
    )
    assert field.status_code == 200, field.text
    names = {f["name"] for f in obj(sf, "Widget__c").describe()["fields"]}
    assert {"Id", "Name", "Sku__c", "Tier__c", "CreatedDate"} <= names
    widget_id = obj(sf, "Widget__c").create({"Name": "W-1", "Sku__c": "SKU-1", "Tier__c": "Gold"})[
        "id"
    ]
    assert widget_id.startswith(created.json()["key_prefix"])
    assert obj(sf, "Widget__c").get_by_custom_id("Sku__c", "SKU-1")["Tier__c"] == "Gold"
    missing = admin(
        emulator,
        emulator_http,
        "POST",
        "/objects/Nope__c/fields",
        json={"name": "A__c", "type": "string"},
    )
    assert missing.status_code == 400
