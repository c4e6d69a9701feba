"""Every login flow through ``connect()`` against the emulator over HTTPS, and its errors.

The emulator sees what real Salesforce would: simple-salesforce's own requests to
login/test/*.my.salesforce.com, rerouted by the product's adapter (``X-Original-Host``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sf_activations.emulator.server import EmulatorServer
from sf_activations.salesforce import (
    SalesforceAuthError,
    SalesforceCredentials,
    connect,
    credentials_from_connection_file,
)


@pytest.fixture
def server(emulator: EmulatorServer) -> EmulatorServer:
    """The shared emulator (conftest), reset to a fresh org for this test."""
    return emulator


def creds_for(server: EmulatorServer, auth: str, **changes: object) -> SalesforceCredentials:
    creds = credentials_from_connection_file(server.connection_file, auth)  # type: ignore[arg-type]
    return dataclasses.replace(creds, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize("auth", ["password", "jwt", "client_credentials", "refresh_token"])
def test_each_login_flow_gives_a_working_client(server: EmulatorServer, auth: str) -> None:
    with connect(creds_for(server, auth)) as client:
        assert client.instance_url == server.url
        limits = client.limits()
        assert limits["DailyApiRequests"]["Max"] == server.emulator.config.daily_api_limit
        assert client.api_calls() == {"login": 1, "limits": 1}
        used, maximum = client.api_usage() or (0, 0)
        assert (used, maximum) == (1, server.emulator.config.daily_api_limit)


def test_direct_session_makes_no_login_call(server: EmulatorServer) -> None:
    with connect(creds_for(server, "session")) as client:
        assert client.describe("Account").name == "Account"
        assert client.api_calls() == {"describe": 1}


@pytest.mark.parametrize("auth", ["password", "jwt"])
def test_sandbox_login_goes_to_test_salesforce(server: EmulatorServer, auth: str) -> None:
    # For JWT the emulator checks that the audience (test.salesforce.com) matches the host the
    # client meant, which it learns only from the adapter's X-Original-Host.
    with connect(creds_for(server, auth, sandbox=True)) as client:
        assert client.limits()["DailyApiRequests"]["Max"] > 0


def test_client_counts_match_what_the_server_saw(server: EmulatorServer) -> None:
    with connect(creds_for(server, "password")) as client:
        client.limits()
        client.describe("Contact")
        client.describe("Contact")  # cached: no call
        seen = server.emulator.request_log.entries(path_contains="/services/data")
        assert sum(v for k, v in client.api_calls().items() if k != "login") == len(seen) == 2


def test_oauth_password_grant_without_token(server: EmulatorServer) -> None:
    info = server.connection_info
    creds = creds_for(
        server,
        "password",
        security_token=None,
        password=info["password"] + info["security_token"],
        consumer_key=info["consumer_key"],
        consumer_secret=info["consumer_secret"],
    )
    with connect(creds) as client:
        assert "Account" in client.describe("Account").name


def test_jwt_with_private_key_text(server: EmulatorServer) -> None:
    key_text = Path(server.connection_info["jwt_private_key"]).read_text()
    with connect(creds_for(server, "jwt", private_key=key_text)) as client:
        assert client.limits()


def test_wrong_password_is_readable_and_secret_free(server: EmulatorServer) -> None:
    creds = creds_for(server, "password", password="Wrong-Passw0rd!")
    with pytest.raises(SalesforceAuthError) as caught:
        connect(creds)
    err = caught.value
    assert err.code == "INVALID_LOGIN"
    text = str(err)
    assert "What to do" in text and "security token" in text
    for secret in ("Wrong-Passw0rd!", server.connection_info["security_token"]):
        assert secret not in text
    assert "Wrong-Passw0rd!" not in repr(creds)


def test_revoked_refresh_token_is_invalid_grant(server: EmulatorServer) -> None:
    creds = creds_for(server, "refresh_token", refresh_token="5Aep-not-a-real-token")
    with pytest.raises(SalesforceAuthError) as caught:
        connect(creds)
    assert caught.value.code == "invalid_grant"
    assert "5Aep-not-a-real-token" not in str(caught.value)


def test_jwt_signed_with_another_key_is_refused(server: EmulatorServer, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    with pytest.raises(SalesforceAuthError) as caught:
        connect(creds_for(server, "jwt", private_key=pem))
    assert caught.value.code == "invalid_grant"
    assert "BEGIN" not in str(caught.value)


def test_unknown_consumer_key(server: EmulatorServer) -> None:
    with pytest.raises(SalesforceAuthError) as caught:
        connect(creds_for(server, "client_credentials", consumer_key="3MVGunknownKey"))
    assert caught.value.code == "invalid_client_id"
    assert "consumer key" in str(caught.value)


def test_blocked_connected_app(server: EmulatorServer) -> None:
    server.emulator.block_app()
    with pytest.raises(SalesforceAuthError) as caught:
        connect(creds_for(server, "jwt"))
    assert caught.value.code == "OAUTH_APP_BLOCKED"
    assert "unblock" in str(caught.value)


def test_expired_direct_session_says_what_to_do(server: EmulatorServer) -> None:
    with connect(creds_for(server, "session")) as client:
        server.emulator.expire_sessions()
        with pytest.raises(SalesforceAuthError) as caught:
            client.limits()
        assert caught.value.code == "INVALID_SESSION_ID"
        assert server.connection_info["access_token"] not in str(caught.value)


def test_untrusted_certificate_is_a_tls_error(server: EmulatorServer) -> None:
    with pytest.raises(SalesforceAuthError) as caught:
        connect(creds_for(server, "password", ca_cert=None))
    assert caught.value.code == "TLS_ERROR"
    assert "ca_cert" in str(caught.value)
