"""Every login flow simple-salesforce can reach, against the emulator over verified HTTPS.

Each test logs in through the real client (or posts what it would post) and checks the answer
against salesforce-api.md §1: success shapes, error codes and HTTP statuses.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from pathlib import Path

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceExpiredSession,
    SalesforceRefusedRequest,
)

from sf_activations.emulator.server import EmulatorServer
from sf_activations.emulator.testing import client_session, login

SOAP_NS = "{urn:partner.soap.sforce.com}"


def soap_envelope(username: str, password: str) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8" ?>'
        '<env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/">'
        '<env:Body><n1:login xmlns:n1="urn:partner.soap.sforce.com">'
        f"<n1:username>{username}</n1:username><n1:password>{password}</n1:password>"
        "</n1:login></env:Body></env:Envelope>"
    )


def soap_headers() -> dict[str, str]:
    return {"content-type": "text/xml", "charset": "UTF-8", "SOAPAction": "login"}


def good_password(server: EmulatorServer) -> str:
    info = server.connection_info
    return info["password"] + info["security_token"]


# ---- SOAP ------------------------------------------------------------------------------------


@pytest.mark.parametrize("flow", ["soap", "sandbox", "password", "jwt", "client_credentials"])
def test_each_credential_flow_logs_in_and_calls_the_api(
    emulator: EmulatorServer, flow: str
) -> None:
    sf = login(emulator, flow)
    assert sf.sf_instance == emulator.url.removeprefix("https://")
    assert emulator.emulator.sessions.check(sf.session_id) is not None
    limits = sf.limits()
    assert limits["DailyApiRequests"]["Max"] == 15000
    assert sf.api_usage["api-usage"].used == 1


def test_direct_session_uses_the_connection_file_token(emulator: EmulatorServer) -> None:
    sf = login(emulator, "direct")
    assert sf.session_id == emulator.connection_info["access_token"]
    assert sf.limits()["DailyApiRequests"]["Remaining"] == 14999


def test_soap_login_response_shape(emulator: EmulatorServer) -> None:
    http = client_session(emulator)
    info = emulator.connection_info
    response = http.post(
        "https://login.salesforce.com/services/Soap/u/59.0",
        soap_envelope(info["username"].upper(), good_password(emulator)),  # usernames ignore case
        headers=soap_headers(),
    )
    assert response.status_code == 200
    root = ET.fromstring(response.content)
    result = root.find(f".//{SOAP_NS}result")
    assert result is not None
    assert result.findtext(f"{SOAP_NS}sandbox") == "false"
    assert result.findtext(f"{SOAP_NS}serverUrl", "").startswith(
        f"{emulator.url}/services/Soap/u/59.0/"
    )
    assert result.findtext(f"{SOAP_NS}userId") == emulator.org.user_id
    assert result.findtext(f"{SOAP_NS}userInfo/{SOAP_NS}organizationId") == emulator.org.org_id
    assert result.findtext(f"{SOAP_NS}userInfo/{SOAP_NS}sessionSecondsValid") == "7200"
    # simple-salesforce reads the unprefixed literal tag names.
    assert b"<sessionId>" in response.content and b"<serverUrl>" in response.content


def test_sandbox_login_reports_sandbox(emulator: EmulatorServer) -> None:
    http = client_session(emulator)
    response = http.post(
        "https://test.salesforce.com/services/Soap/u/59.0",
        soap_envelope(emulator.connection_info["username"], good_password(emulator)),
        headers=soap_headers(),
    )
    assert response.status_code == 200
    assert b"<sandbox>true</sandbox>" in response.content
    # Without the adapter's header, a Host header naming the sandbox login host also counts.
    envelope = soap_envelope(emulator.connection_info["username"], good_password(emulator))
    direct = http.post(
        f"{emulator.url}/services/Soap/u/59.0",
        envelope,
        headers={**soap_headers(), "Host": "test.salesforce.com"},
    )
    assert b"<sandbox>true</sandbox>" in direct.content
    plain = http.post(f"{emulator.url}/services/Soap/u/59.0", envelope, headers=soap_headers())
    assert b"<sandbox>false</sandbox>" in plain.content


def test_soap_bad_password_is_invalid_login_fault(emulator: EmulatorServer) -> None:
    with pytest.raises(SalesforceAuthenticationFailed) as excinfo:
        login(emulator, "soap", password="wrong")
    assert excinfo.value.code == "INVALID_LOGIN"
    assert excinfo.value.auth_message == (
        "Invalid username, password, security token; or user locked out."
    )
    raw = client_session(emulator).post(
        "https://login.salesforce.com/services/Soap/u/59.0",
        soap_envelope("nobody@example.com", "x"),
        headers=soap_headers(),
    )
    assert raw.status_code == 500
    assert b"<faultcode>INVALID_LOGIN</faultcode>" in raw.content
    assert b"<faultstring>INVALID_LOGIN: Invalid username" in raw.content


def test_soap_password_without_token_is_rejected(emulator: EmulatorServer) -> None:
    info = emulator.connection_info
    with pytest.raises(SalesforceAuthenticationFailed) as excinfo:
        Salesforce(
            username=info["username"],
            password=info["password"],
            security_token="",
            session=client_session(emulator),
        )
    assert excinfo.value.code == "INVALID_LOGIN"


def test_soap_unknown_version_is_a_fault(emulator: EmulatorServer) -> None:
    response = client_session(emulator).post(
        "https://login.salesforce.com/services/Soap/u/12.0",
        soap_envelope(emulator.connection_info["username"], good_password(emulator)),
        headers=soap_headers(),
    )
    assert response.status_code == 500
    assert b"UNSUPPORTED_API_VERSION" in response.content


# ---- OAuth -----------------------------------------------------------------------------------


def test_oauth_password_success_body(emulator: EmulatorServer) -> None:
    info = emulator.connection_info
    response = client_session(emulator).post(
        "https://login.salesforce.com/services/oauth2/token",
        data={
            "grant_type": "password",
            "client_id": info["consumer_key"],
            "client_secret": info["consumer_secret"],
            "username": info["username"],
            "password": good_password(emulator),
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert body["instance_url"] == emulator.url
    assert body["token_type"] == "Bearer"
    assert body["id"] == (
        f"https://login.salesforce.com/id/{emulator.org.org_id}/{emulator.org.user_id}"
    )
    assert body["issued_at"].isdigit()
    assert body["signature"]
    assert set(body["scope"].split()) >= {"api", "web"}


def test_oauth_password_wrong_password(emulator: EmulatorServer) -> None:
    with pytest.raises(SalesforceAuthenticationFailed) as excinfo:
        login(emulator, "password", password="nope")
    assert excinfo.value.code == "invalid_grant"
    assert excinfo.value.auth_message == "authentication failure"


def test_oauth_invalid_client_id(emulator: EmulatorServer) -> None:
    with pytest.raises(SalesforceAuthenticationFailed) as excinfo:
        login(emulator, "password", consumer_key="3MVG9somebodyElse")
    assert excinfo.value.code == "invalid_client_id"
    assert excinfo.value.auth_message == "client identifier invalid"


def test_blocked_app_refuses_oauth_but_not_soap(emulator: EmulatorServer) -> None:
    emulator.emulator.block_app()
    for flow in ("password", "jwt", "client_credentials"):
        with pytest.raises(SalesforceAuthenticationFailed) as excinfo:
            login(emulator, flow)
        assert excinfo.value.code == "OAUTH_APP_BLOCKED", flow
    assert login(emulator, "soap").limits()
    emulator.emulator.block_app(False)
    assert login(emulator, "password").limits()


def test_jwt_signed_with_another_key_is_invalid_grant(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "other.pem"
    key_file.write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(SalesforceAuthenticationFailed) as excinfo:
        login(emulator, "jwt", privatekey_file=str(key_file))
    assert excinfo.value.code == "invalid_grant"


def test_jwt_unknown_issuer_is_invalid_client_id(emulator: EmulatorServer) -> None:
    with pytest.raises(SalesforceAuthenticationFailed) as excinfo:
        login(emulator, "jwt", consumer_key="3MVG9unknownApp")
    assert excinfo.value.code == "invalid_client_id"


def test_jwt_sandbox_audience_and_host_must_match(emulator: EmulatorServer) -> None:
    # simple-salesforce with domain='test' signs aud=https://test.salesforce.com and posts to
    # test.salesforce.com: accepted.
    assert login(emulator, "jwt", domain="test").limits()
    # The same sandbox assertion posted to the production host has the wrong audience.
    info = emulator.connection_info
    key = Path(info["jwt_private_key"]).read_bytes()

    def post(claims: dict[str, object], host: str = "login.salesforce.com") -> requests.Response:
        assertion = jwt.encode(claims, key, algorithm="RS256")
        return client_session(emulator).post(
            f"https://{host}/services/oauth2/token",
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": assertion,
            },
        )

    base = {"iss": info["consumer_key"], "sub": info["username"], "exp": int(time.time()) + 60}
    wrong_aud = post({**base, "aud": "https://test.salesforce.com"})
    assert wrong_aud.status_code == 400
    assert wrong_aud.json() == {
        "error": "invalid_grant",
        "error_description": "audience is invalid",
    }
    expired = post({**base, "aud": "https://login.salesforce.com", "exp": int(time.time()) - 5})
    assert expired.status_code == 400
    assert expired.json()["error"] == "invalid_grant"
    stranger = post({**base, "aud": "https://login.salesforce.com", "sub": "who@example.com"})
    assert stranger.json()["error"] == "invalid_grant"
    ok = post({**base, "aud": "https://login.salesforce.com"})
    assert ok.status_code == 200, ok.text
    garbage = client_session(emulator).post(
        "https://login.salesforce.com/services/oauth2/token",
        data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": "a.b"},
    )
    assert garbage.json()["error"] == "invalid_grant"


def test_client_credentials_only_on_my_domain(emulator: EmulatorServer) -> None:
    info = emulator.connection_info
    http = client_session(emulator)
    form = {
        "grant_type": "client_credentials",
        "client_id": info["consumer_key"],
        "client_secret": info["consumer_secret"],
    }
    refused = http.post("https://login.salesforce.com/services/oauth2/token", data=form)
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"
    # Form credentials (not only the Basic header simple-salesforce sends) work on My Domain.
    accepted = http.post("https://acme.my.salesforce.com/services/oauth2/token", data=form)
    assert accepted.status_code == 200
    wrong_secret = http.post(
        "https://acme.my.salesforce.com/services/oauth2/token",
        data={**form, "client_secret": "nope"},
    )
    assert wrong_secret.status_code == 400
    assert wrong_secret.json()["error"] == "invalid_client"


def test_refresh_token_grant(emulator: EmulatorServer) -> None:
    info = emulator.connection_info
    http = client_session(emulator)
    url = "https://login.salesforce.com/services/oauth2/token"
    form = {
        "grant_type": "refresh_token",
        "client_id": info["consumer_key"],
        "refresh_token": info["refresh_token"],
    }
    ok = http.post(url, data=form)
    assert ok.status_code == 200
    token = ok.json()["access_token"]
    limits = http.get(
        f"{emulator.url}/services/data/v59.0/limits", headers={"Authorization": f"Bearer {token}"}
    )
    assert limits.status_code == 200
    bad = http.post(url, data={**form, "refresh_token": "5Aep861stale"})
    assert bad.status_code == 400
    assert bad.json() == {
        "error": "invalid_grant",
        "error_description": "expired access/refresh token",
    }
    unsupported = http.post(url, data={"grant_type": "authorization_code"})
    assert unsupported.json()["error"] == "unsupported_grant_type"


def test_userinfo_and_revoke(emulator: EmulatorServer) -> None:
    sf = login(emulator, "password")
    http = client_session(emulator)
    auth = {"Authorization": f"Bearer {sf.session_id}"}
    info = http.get(f"{emulator.url}/services/oauth2/userinfo", headers=auth)
    assert info.status_code == 200
    body = info.json()
    assert body["user_id"] == emulator.org.user_id
    assert body["organization_id"] == emulator.org.org_id
    assert body["preferred_username"] == emulator.org.username
    revoked = http.post(f"{emulator.url}/services/oauth2/revoke", data={"token": sf.session_id})
    assert revoked.status_code == 200
    assert http.get(f"{emulator.url}/services/oauth2/userinfo", headers=auth).status_code == 403


# ---- sessions ----------------------------------------------------------------------------------


def test_expired_session_body_and_relogin(emulator: EmulatorServer) -> None:
    sf = login(emulator, "soap")
    first_session = sf.session_id
    assert emulator.emulator.expire_sessions() >= 1
    raw = client_session(emulator).get(
        f"{emulator.url}/services/data/v59.0/limits",
        headers={"Authorization": f"Bearer {first_session}"},
    )
    assert raw.status_code == 401
    assert raw.json() == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
    ]
    # A credential login re-authenticates on INVALID_SESSION_ID and retries transparently.
    assert sf.limits()["DailyApiRequests"]["Max"] == 15000
    assert sf.session_id != first_session


def test_expired_direct_session_raises(emulator: EmulatorServer) -> None:
    sf = login(emulator, "direct")
    assert sf.limits()
    emulator.emulator.expire_sessions(sf.session_id)
    with pytest.raises(SalesforceExpiredSession):
        sf.limits()


def test_expiring_one_session_keeps_the_others(emulator: EmulatorServer) -> None:
    one = login(emulator, "password")
    two = login(emulator, "direct")
    assert emulator.emulator.expire_sessions(one.session_id) == 1
    assert two.limits()
    assert emulator.emulator.sessions.check(one.session_id) is None


def test_session_times_out_after_inactivity(emulator: EmulatorServer) -> None:
    sessions = emulator.emulator.sessions
    now = [1_000_000.0]
    sessions.clock = lambda: now[0]
    try:
        token = sessions.issue(emulator.org.user_id, "test").token
        sf = login(emulator, "direct", session_id=token)
        now[0] += 7000
        assert sf.limits()  # activity restarts the idle timer
        now[0] += 7000
        assert sf.limits()
        now[0] += 7201
        with pytest.raises(SalesforceExpiredSession):
            sf.limits()
    finally:
        sessions.clock = time.time


def test_missing_or_malformed_authorization_is_401(emulator: EmulatorServer) -> None:
    http = client_session(emulator)
    url = f"{emulator.url}/services/data/v59.0/limits"
    assert http.get(url).status_code == 401
    assert http.get(url, headers={"Authorization": "Basic abc"}).status_code == 401
    # The legacy "OAuth" scheme is still accepted by Salesforce.
    token = emulator.connection_info["access_token"]
    assert http.get(url, headers={"Authorization": f"OAuth {token}"}).status_code == 200


def test_api_disabled_user(emulator: EmulatorServer) -> None:
    sf = login(emulator, "direct")
    emulator.org.permissions.api_enabled = False
    with pytest.raises(SalesforceRefusedRequest) as excinfo:
        sf.limits()
    assert excinfo.value.content == [
        {"message": "API is disabled for this User", "errorCode": "API_CURRENTLY_DISABLED"}
    ]
    with pytest.raises(SalesforceAuthenticationFailed) as login_error:
        login(emulator, "soap")
    assert login_error.value.code == "API_CURRENTLY_DISABLED"
