"""The emulator's server side: TLS, the services middleware (paths, limits, faults, request log),
connection.json and the ``sf-activations emulator`` command."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from simple_salesforce.exceptions import SalesforceGeneralError, SalesforceRefusedRequest

from sf_activations.emulator.certs import ensure_certs
from sf_activations.emulator.server import Emulator, EmulatorConfig, EmulatorServer
from sf_activations.emulator.testing import client_session, login, running_emulator

LIMIT_EXCEEDED = [
    {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
]


def limits_url(server: EmulatorServer, *, slash: bool = False) -> str:
    return f"{server.url}/services/data/v59.0/limits" + ("/" if slash else "")


def bearer(server: EmulatorServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.connection_info['access_token']}"}


# ---- TLS ---------------------------------------------------------------------------------------


def test_tls_is_verified_against_the_emulator_ca(emulator: EmulatorServer) -> None:
    strict = requests.Session()
    strict.trust_env = False
    strict.verify = True  # the system store does not know the emulator's CA
    with pytest.raises(requests.exceptions.SSLError):
        strict.get(f"{emulator.url}/services/data")
    ok = client_session(emulator).get(f"{emulator.url}/services/data")
    assert ok.status_code == 200


def test_certificates_are_reused_per_state_dir(tmp_path: Path) -> None:
    first = ensure_certs(tmp_path)
    ca = first.ca_cert.read_bytes()
    key = first.jwt_private_key.read_bytes()
    second = ensure_certs(tmp_path)
    assert second.ca_cert.read_bytes() == ca
    assert second.jwt_private_key.read_bytes() == key
    assert stat.S_IMODE(first.server_key.stat().st_mode) == 0o600


# ---- middleware ----------------------------------------------------------------------------------


def test_trailing_slash_reaches_the_same_route(emulator: EmulatorServer) -> None:
    http = client_session(emulator)
    with_slash = http.get(limits_url(emulator, slash=True), headers=bearer(emulator))
    without = http.get(limits_url(emulator), headers=bearer(emulator))
    assert with_slash.status_code == without.status_code == 200
    assert with_slash.json()["DailyApiRequests"]["Max"] == 15000


def test_a_request_head_over_16_kb_is_refused(emulator: EmulatorServer) -> None:
    http = client_session(emulator)
    url = f"{emulator.url}/services/data/v59.0/query"
    soql = "SELECT Id FROM Contact WHERE Email IN ('" + "x" * 17_000 + "')"
    assert http.get(url, params={"q": soql}, headers=bearer(emulator)).status_code == 414
    fits = "SELECT Id FROM Contact WHERE Email IN ('" + "x" * 12_000 + "')"
    big_headers = {**bearer(emulator), "X-Padding": "p" * 5_000}
    assert http.get(url, params={"q": fits}, headers=big_headers).status_code == 431
    ok = http.get(url, params={"q": fits}, headers=bearer(emulator))
    assert ok.status_code == 200 and ok.json()["totalSize"] == 0


def test_unknown_services_path_is_salesforce_not_found(emulator: EmulatorServer) -> None:
    response = client_session(emulator).get(
        f"{emulator.url}/services/data/v59.0/no-such-thing", headers=bearer(emulator)
    )
    assert response.status_code == 404
    assert response.json() == [
        {"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}
    ]


def test_api_usage_header_counts_each_request(emulator: EmulatorServer) -> None:
    sf = login(emulator, "direct")
    sf.limits()
    assert sf.api_usage["api-usage"].used == 1
    assert sf.api_usage["api-usage"].total == 15000
    sf.limits()
    assert sf.api_usage["api-usage"].used == 2
    assert emulator.emulator.limits.api_used == 2
    # The public version list needs no session and is not counted.
    assert client_session(emulator).get(f"{emulator.url}/services/data").status_code == 200
    assert emulator.emulator.limits.api_used == 2


def test_daily_limit_exhaustion_is_403(emulator: EmulatorServer) -> None:
    sf = login(emulator, "direct")
    emulator.emulator.limits.set_api_remaining(1)
    assert sf.limits()["DailyApiRequests"]["Remaining"] == 0
    with pytest.raises(SalesforceRefusedRequest) as excinfo:
        sf.limits()
    assert excinfo.value.content == LIMIT_EXCEEDED
    raw = client_session(emulator).get(limits_url(emulator), headers=bearer(emulator))
    assert raw.status_code == 403
    assert raw.headers["Sforce-Limit-Info"] == "api-usage=15000/15000"
    assert emulator.emulator.limits.api_used == 15000  # refused calls are not counted


def test_configured_daily_limit() -> None:
    with running_emulator(config=EmulatorConfig(daily_api_limit=2)) as server:
        sf = login(server, "direct")
        sf.limits()
        sf.limits()
        with pytest.raises(SalesforceRefusedRequest):
            sf.limits()
        assert server.emulator.limits.snapshot()["DailyApiRequests"] == {"Max": 2, "Remaining": 0}


def test_fail_next_then_success(emulator: EmulatorServer) -> None:
    sf = login(emulator, "direct")
    emulator.emulator.faults.fail_next(2, status=503)
    for _ in range(2):
        with pytest.raises(SalesforceGeneralError) as excinfo:
            sf.limits()
        assert excinfo.value.status == 503
    assert sf.limits()["DailyApiRequests"]["Max"] == 15000
    emulator.emulator.faults.fail_next(1, status=500)
    raw = client_session(emulator).get(limits_url(emulator), headers=bearer(emulator))
    assert raw.status_code == 500
    assert raw.json()[0]["errorCode"] == "UNKNOWN_EXCEPTION"


def test_dropped_connection_then_success(emulator: EmulatorServer) -> None:
    sf = login(emulator, "direct")
    emulator.emulator.faults.drop_next(1)
    with pytest.raises(requests.exceptions.ConnectionError):
        sf.limits()
    assert sf.limits()["DailyApiRequests"]["Max"] == 15000
    dropped = emulator.emulator.request_log.entries(kind="rest")[0]
    assert dropped.status == 0


def test_faults_filtered_by_path_and_method(emulator: EmulatorServer) -> None:
    http = client_session(emulator)
    emulator.emulator.faults.fail_next(1, status=503, path=r"/jobs/", method="PUT")
    assert http.get(limits_url(emulator), headers=bearer(emulator)).status_code == 200
    assert emulator.emulator.faults.pending()[0]["remaining"] == 1
    emulator.emulator.faults.clear()
    assert emulator.emulator.faults.pending() == []


def test_delay_holds_requests(emulator: EmulatorServer) -> None:
    http = client_session(emulator)
    emulator.emulator.faults.delay(0.3, n=1)
    started = time.perf_counter()
    assert http.get(limits_url(emulator), headers=bearer(emulator)).status_code == 200
    assert time.perf_counter() - started >= 0.3
    assert emulator.emulator.faults.pending() == []  # the delay was used up by one request


def test_request_log_records_method_path_status_and_kind(emulator: EmulatorServer) -> None:
    sf = login(emulator, "soap")
    sf.limits()
    emulator.emulator.expire_sessions()
    http = client_session(emulator)
    http.get(limits_url(emulator, slash=True), headers={"Authorization": "Bearer stale"})
    log = emulator.emulator.request_log
    auth = log.entries(kind="auth")
    assert [(e.method, e.path, e.status) for e in auth] == [("POST", "/services/Soap/u/59.0", 200)]
    rest = log.entries(kind="rest")
    assert [(e.path, e.status) for e in rest] == [
        ("/services/data/v59.0/limits", 200),
        ("/services/data/v59.0/limits", 401),
    ]
    assert all(e.ms >= 0 for e in rest)
    assert log.count(kind="rest", method="GET") == 2


def test_chunked_upload_passes_through_the_middleware(emulator: EmulatorServer) -> None:
    info = emulator.connection_info
    envelope = (
        '<?xml version="1.0" encoding="utf-8" ?>'
        '<env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/">'
        '<env:Body><n1:login xmlns:n1="urn:partner.soap.sforce.com">'
        f"<n1:username>{info['username']}</n1:username>"
        f"<n1:password>{info['password']}{info['security_token']}</n1:password>"
        "</n1:login></env:Body></env:Envelope>"
    ).encode()
    padding = b"<!--" + b"x" * (4 * 1024 * 1024) + b"-->"

    cut = envelope.index(b"<env:Body>")

    def chunks() -> Iterator[bytes]:
        yield envelope[:cut]
        for i in range(0, len(padding), 256 * 1024):
            yield padding[i : i + 256 * 1024]
        yield envelope[cut:]

    response = client_session(emulator).post(
        "https://login.salesforce.com/services/Soap/u/59.0",
        data=chunks(),  # a generator: requests sends Transfer-Encoding: chunked
        headers={"content-type": "text/xml", "SOAPAction": "login"},
    )
    assert response.status_code == 200, response.text[:300]
    assert b"<sessionId>" in response.content


# ---- connection.json and lifecycle ---------------------------------------------------------------


def test_connection_file(emulator: EmulatorServer) -> None:
    path = emulator.connection_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    info = json.loads(path.read_text())
    for key in (
        "instance_url",
        "login_url",
        "ca_cert",
        "username",
        "password",
        "security_token",
        "consumer_key",
        "consumer_secret",
        "jwt_private_key",
        "access_token",
        "refresh_token",
    ):
        assert info[key], key
    assert info["instance_url"] == emulator.url
    assert Path(info["ca_cert"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
    response = client_session(emulator).get(
        f"{info['instance_url']}/services/data/v59.0/limits",
        headers={"Authorization": f"Bearer {info['access_token']}"},
    )
    assert response.status_code == 200


def test_reset_gives_a_clean_emulator(emulator: EmulatorServer) -> None:
    em = emulator.emulator
    em.faults.fail_next(3)
    em.block_app()
    em.limits.set_api_remaining(0)
    old_token = login(emulator, "soap").session_id
    em.reset()
    assert em.faults.pending() == []
    assert not em.app_blocked
    assert em.limits.api_remaining == 15000
    assert em.sessions.check(old_token) is None
    assert login(emulator, "direct").limits()  # the connection.json token survives resets


def test_server_stops_promptly_and_frees_the_port() -> None:
    server = EmulatorServer(Emulator()).start()
    port = server.port
    sf = login(server, "direct")
    assert sf.limits()  # leaves a pooled keep-alive connection open
    started = time.perf_counter()
    server.stop()
    # A generous bound: without closing keep-alive connections uvicorn would wait forever.
    assert time.perf_counter() - started < 15.0
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"https://127.0.0.1:{port}/services/data", verify=False, timeout=2)


def test_cli_runs_until_sigint_and_exits_zero(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sf_activations.emulator",
            "--port",
            "0",
            "--state-dir",
            str(state_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline(), process.stdout.readline()]
        assert lines[0].startswith("Salesforce emulator listening on https://127.0.0.1:"), lines
        url = lines[0].rsplit(" ", 1)[-1].strip()
        connection_file = Path(lines[1].rsplit(" ", 1)[-1].strip())
        assert connection_file == state_dir / "connection.json"
        info = json.loads(connection_file.read_text())
        assert info["instance_url"] == url
        http = requests.Session()
        http.trust_env = False
        http.verify = info["ca_cert"]
        response = http.get(
            f"{url}/services/data/v59.0/limits",
            headers={"Authorization": f"Bearer {info['access_token']}"},
        )
        assert response.status_code == 200
        http.close()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "emulator stopped" in process.stdout.read()


def test_limits_snapshot_shape_and_bulk_counters(emulator: EmulatorServer) -> None:
    em = emulator.emulator
    em.count_bulk_query_job()
    em.limits.count_bulk_batches(3)
    sf = login(emulator, "direct")
    limits = sf.limits()
    for name in (
        "DailyApiRequests",
        "DailyBulkApiBatches",
        "DailyBulkV2QueryJobs",
        "DailyBulkV2QueryFileStorageMB",
    ):
        assert set(limits[name]) == {"Max", "Remaining"}, name
    assert limits["DailyBulkV2QueryJobs"] == {"Max": 10000, "Remaining": 9999}
    assert limits["DailyBulkApiBatches"] == {"Max": 15000, "Remaining": 14997}
    em.reset()
    assert em.limits.snapshot()["DailyBulkV2QueryJobs"]["Remaining"] == 10000


def test_reset_restores_session_clock_and_lifetime(emulator: EmulatorServer) -> None:
    sessions = emulator.emulator.sessions
    sessions.clock = lambda: 0.0
    sessions.session_seconds = 1
    emulator.emulator.reset()
    assert sessions.clock is time.time
    assert sessions.session_seconds == 7200
