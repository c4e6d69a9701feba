"""Fast tests of the Salesforce layer's pure parts: SOQL literals, credentials, taxonomy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sf_activations.salesforce import (
    SalesforceCredentials,
    credentials_from_connection_file,
    is_transient,
    soql_in,
    soql_like,
    soql_literal,
)
from sf_activations.salesforce.connection import _emulator_netloc, _login_domain
from sf_activations.salesforce.errors import redact
from sf_activations.salesforce.soql import soql_identifier


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("plain", "'plain'"),
        ("O'Brien", "'O\\'Brien'"),
        ("back\\slash", "'back\\\\slash'"),
        ('say "hi"', "'say \\\"hi\\\"'"),
        ("two\nlines\r\ttab", "'two\\nlines\\r\\ttab'"),
        ("\\'; DELETE", "'\\\\\\'; DELETE'"),
        ("ünïcødé", "'ünïcødé'"),
    ],
)
def test_soql_literal_escapes(value: str, literal: str) -> None:
    assert soql_literal(value) == literal


def test_soql_literal_refuses_unescapable_control_characters() -> None:
    with pytest.raises(ValueError, match="position 1"):
        soql_literal("a\x00b")
    with pytest.raises(TypeError):
        soql_literal(5)  # type: ignore[arg-type]


def test_soql_in_and_like() -> None:
    assert soql_in(["a", "b'c"]) == "('a','b\\'c')"
    with pytest.raises(ValueError, match="empty IN"):
        soql_in([])
    assert soql_like("50%_off", suffix=True) == "'50\\%\\_off%'"


def test_soql_identifier_rejects_injection() -> None:
    assert soql_identifier("Account.Ext_Id__c") == "Account.Ext_Id__c"
    for bad in ("Account WHERE", "Id,Name", "x'", "", "1abc"):
        with pytest.raises(ValueError):
            soql_identifier(bad)


def test_credentials_repr_hides_every_secret() -> None:
    creds = SalesforceCredentials(
        login_url="https://login.salesforce.com",
        auth="password",
        username="ops@acme.example",
        password="hunter2-password",
        security_token="TOKEN1234567",
        consumer_key="3MVGkey",
        consumer_secret="very-secret-value",
        refresh_token="5Aep-refresh",
    )
    text = repr(creds) + str(creds)
    for secret in ("hunter2-password", "TOKEN1234567", "very-secret-value", "5Aep-refresh"):
        assert secret not in text
    assert "ops@acme.example" in text


def test_credentials_name_what_a_flow_is_missing() -> None:
    with pytest.raises(ValueError, match="consumer_key, private_key"):
        SalesforceCredentials(login_url="https://login.salesforce.com", auth="jwt", username="u")
    with pytest.raises(ValueError, match="My Domain"):
        SalesforceCredentials(
            login_url="https://login.salesforce.com",
            auth="client_credentials",
            consumer_key="k",
            consumer_secret="s",
        )
    with pytest.raises(ValueError, match="https://"):
        SalesforceCredentials(
            login_url="http://127.0.0.1:1", auth="session", session_id="x", instance_url="y"
        )


@pytest.mark.parametrize(
    ("login_url", "auth", "sandbox", "domain", "reroute"),
    [
        ("https://login.salesforce.com", "password", False, "login", None),
        ("https://login.salesforce.com", "password", True, "test", None),
        ("https://test.salesforce.com", "jwt", False, "test", None),
        ("https://acme.my.salesforce.com", "client_credentials", False, "acme.my", None),
        ("https://127.0.0.1:8443", "password", False, "login", "127.0.0.1:8443"),
        ("https://127.0.0.1:8443", "password", True, "test", "127.0.0.1:8443"),
        ("https://localhost:9000", "client_credentials", False, "emulator.my", "localhost:9000"),
    ],
)
def test_login_domain_and_reroute(
    login_url: str, auth: str, sandbox: bool, domain: str, reroute: str | None
) -> None:
    creds = SalesforceCredentials(
        login_url=login_url,
        auth=auth,  # type: ignore[arg-type]
        username="u",
        password="p",
        private_key="k",
        consumer_key="k",
        consumer_secret="s",
        sandbox=sandbox,
    )
    assert _login_domain(creds) == domain
    assert _emulator_netloc(creds) == reroute


def test_credentials_from_connection_file_takes_only_the_flow_fields(tmp_path: Path) -> None:
    info = {
        "instance_url": "https://127.0.0.1:4443",
        "login_url": "https://127.0.0.1:4443",
        "ca_cert": "ca.pem",
        "username": "admin@emulator.example",
        "password": "pw",
        "security_token": "tok",
        "consumer_key": "ck",
        "consumer_secret": "cs",
        "jwt_private_key": "/abs/jwt.key",
        "access_token": "00Dsession",
        "refresh_token": "5Aep",
        "api_version": "62.0",
    }
    path = tmp_path / "connection.json"
    path.write_text(json.dumps(info))
    pw = credentials_from_connection_file(path)
    assert (pw.auth, pw.username, pw.security_token, pw.consumer_key) == (
        "password",
        "admin@emulator.example",
        "tok",
        None,
    )
    assert pw.ca_cert == str(tmp_path / "ca.pem")
    assert pw.api_version == "62.0"
    jwt = credentials_from_connection_file(path, "jwt")
    assert (jwt.private_key, jwt.password) == ("/abs/jwt.key", None)
    session = credentials_from_connection_file(path, "session")
    assert (session.session_id, session.instance_url) == ("00Dsession", "https://127.0.0.1:4443")
    with pytest.raises(FileNotFoundError, match="--state-dir"):
        credentials_from_connection_file(tmp_path / "missing.json")


def test_transient_taxonomy() -> None:
    assert is_transient("UNABLE_TO_LOCK_ROW")
    assert is_transient("REQUEST_LIMIT_EXCEEDED")
    assert not is_transient("REQUIRED_FIELD_MISSING")
    assert not is_transient("CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY", "AcctTrigger: bad value")
    assert is_transient(
        "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY",
        "Too many retries of batch save in the presence of Apex triggers with failures",
    )


def test_redact() -> None:
    assert redact("pw=hunter22 ok", ["hunter22", None, "ab"]) == "pw=*** ok"
