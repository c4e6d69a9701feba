"""The emulator process: its state (``Emulator``), the ASGI app, and an HTTPS server thread.

``Emulator`` is everything one running emulator holds: the org, credentials, sessions, limits,
faults and request log. ``build_app`` wires the login, admin, REST and Bulk routes behind the
middleware in ``app.py``. ``EmulatorServer`` serves that app with uvicorn over TLS on a
background thread and writes ``connection.json`` for clients.
"""

from __future__ import annotations

import contextlib
import hmac
import importlib
import json
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from sf_activations.emulator import admin, auth
from sf_activations.emulator.app import TRANSPORT_SCOPE_KEY, ServicesMiddleware
from sf_activations.emulator.certs import CertBundle, ensure_certs
from sf_activations.emulator.faults import Faults, Limits, RequestLog, Sessions

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

    from sf_activations.emulator.org import Org

# Every version from Summer '14 (31.0) to Summer '26 (67.0, the newest the reference names):
# a real org serves all of them (30.0 and older are retired), so refusing a current version
# would be stricter than Salesforce. simple-salesforce defaults to 59.0.
API_VERSIONS: tuple[str, ...] = tuple(f"{v}.0" for v in range(31, 68))
LATEST_API_VERSION = API_VERSIONS[-1]
CONNECTION_FILE = "connection.json"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class EmulatorConfig:
    """The credentials the emulator accepts (also written to connection.json)."""

    username: str = "admin@emulator.example"
    password: str = "emulator-password"
    security_token: str = "emulatortoken"
    consumer_key: str = "3MVG9emulatorConsumerKey"
    consumer_secret: str = "emulator-consumer-secret"
    refresh_token: str = "5Aep861emulatorRefresh"
    daily_api_limit: int = 15000
    session_seconds: int = 7200


def _new_org(username: str) -> Org:
    from sf_activations.emulator.org import Org
    from sf_activations.emulator.schema import default_schema

    return Org(default_schema(), username=username)


class Emulator:
    """Everything one running emulator holds. Handlers reach it as ``request.app.state.emulator``.

    The org's ``username`` is the login name the emulator accepts (``config.username`` names
    the user of orgs the emulator creates itself).
    """

    def __init__(
        self,
        org: Org | None = None,
        config: EmulatorConfig | None = None,
        *,
        org_factory: Callable[[], Org] | None = None,
        certs: CertBundle | None = None,
    ) -> None:
        self.config = config or EmulatorConfig()
        self._org_factory: Callable[[], Org] = org_factory or (
            lambda: _new_org(self.config.username)
        )
        self.org: Org = org if org is not None else self._org_factory()
        self.certs = certs
        self.instance_url = ""
        self.api_versions: tuple[str, ...] = API_VERSIONS
        self.limits = Limits(daily_api_max=self.config.daily_api_limit)
        self.faults = Faults()
        self.request_log = RequestLog()
        self.sessions = Sessions(self.org.org_id, self.config.session_seconds)
        self.app_blocked = False
        self.bulk_jobs: Any = None  # bulk.BulkJobStore, attached by build_app
        self._jwt_key: RSAPublicKey | None = None
        # A session for the API user that exists from the start: connection.json hands it out
        # for the "direct session id + instance URL" flow.
        self.access_token = self.sessions.issue(self.org.user_id, "initial").token

    # ---- credentials ------------------------------------------------------------------------
    def username_matches(self, username: str) -> bool:
        """Salesforce usernames are case-insensitive."""
        return username.strip().lower() == self.org.username.lower()

    def password_matches(self, username: str, password: str) -> bool:
        """Username plus password with the security token appended (what login() checks)."""
        expected = self.config.password + self.config.security_token
        return self.username_matches(username) and hmac.compare_digest(
            password.encode(), expected.encode()
        )

    def jwt_public_key(self) -> RSAPublicKey:
        """The key of the certificate registered on the connected app."""
        if self._jwt_key is None:
            if self.certs is None:
                msg = "this emulator has no certificates (start it with EmulatorServer)"
                raise RuntimeError(msg)
            self._jwt_key = self.certs.jwt_public_key()
        return self._jwt_key

    # ---- operations the admin API and tests drive --------------------------------------------
    def expire_sessions(self, token: str | None = None) -> int:
        """End every session (or one): the next API call answers 401 INVALID_SESSION_ID."""
        return self.sessions.expire(token)

    def block_app(self, blocked: bool = True) -> None:
        """Block (or unblock) the connected app: OAuth logins answer OAUTH_APP_BLOCKED."""
        self.app_blocked = blocked

    def count_bulk_query_job(self) -> None:
        """Count one Bulk API 2.0 query job against ``DailyBulkV2QueryJobs``."""
        self.limits.count_bulk_query_job()

    def reset(self, org: Org | None = None) -> None:
        """Start over with a fresh org (or ``org``), as if the emulator had just started.

        Faults, rules, the request log, limits, bulk jobs and sessions are cleared; the initial
        access token (the one in connection.json) stays valid.
        """
        self.org = org if org is not None else self._org_factory()
        self.faults.clear()
        self.request_log.clear()
        self.limits.reset()
        self.limits.daily_api_max = self.config.daily_api_limit
        self.app_blocked = False
        self.sessions.expire()
        # A test may have swapped the clock or shortened sessions: undo that too.
        self.sessions.clock = time.time
        self.sessions.session_seconds = self.config.session_seconds
        self.sessions.org_id = self.org.org_id
        self.sessions.issue(self.org.user_id, "initial", token=self.access_token)
        self.bulk_jobs = _new_bulk_store(self)

    def state(self) -> dict[str, Any]:
        """A summary for the admin API."""
        return {
            "instance_url": self.instance_url,
            "org_id": self.org.org_id,
            "user_id": self.org.user_id,
            "username": self.org.username,
            "app_blocked": self.app_blocked,
            "active_sessions": self.sessions.active(),
            "api_usage": {"used": self.limits.api_used, "max": self.limits.daily_api_max},
            "faults": self.faults.pending(),
            "duplicate_rules_enabled": self.org.duplicate_rules_enabled,
            "api_enabled": self.org.permissions.api_enabled,
        }


def _optional_routes(module_name: str) -> list[BaseRoute]:
    # rest.py and bulk.py are built alongside this module; an emulator without them still
    # serves logins and the admin API.
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        return []
    routes: list[BaseRoute] = module.routes()
    return routes


def _new_bulk_store(emulator: Emulator) -> Any:
    try:
        bulk = importlib.import_module("sf_activations.emulator.bulk")
    except ModuleNotFoundError as exc:
        if exc.name != "sf_activations.emulator.bulk":
            raise
        return None
    return bulk.BulkJobStore(emulator)


_NOT_FOUND_BODY = b'[{"errorCode":"NOT_FOUND","message":"The requested resource does not exist"}]'


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if request.url.path.startswith("/services/") and status == 404:
        return Response(
            _NOT_FOUND_BODY, status_code=404, media_type="application/json;charset=UTF-8"
        )
    return PlainTextResponse(str(getattr(exc, "detail", "")) or "Error", status_code=status)


def build_app(emulator: Emulator) -> Starlette:
    """The ASGI app: login, admin, REST and Bulk routes behind the services middleware."""
    routes: list[BaseRoute] = [
        *auth.routes(),
        *admin.routes(),
        *_optional_routes("sf_activations.emulator.rest"),
        *_optional_routes("sf_activations.emulator.bulk"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(ServicesMiddleware, emulator=emulator)],
        exception_handlers={404: _http_error, 405: _http_error},
    )
    app.state.emulator = emulator
    if emulator.bulk_jobs is None:
        emulator.bulk_jobs = _new_bulk_store(emulator)
    return app


class _Protocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, exposing the transport so a fault can drop a connection."""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        scope: dict[str, Any] = self.scope  # type: ignore[assignment]
        scope[TRANSPORT_SCOPE_KEY] = self.transport

    def shutdown(self) -> None:
        # An idle keep-alive TLS connection would wait for the client's close_notify, which a
        # pooled requests connection never sends: stopping would hang for the graceful timeout.
        if self.cycle is None or self.cycle.response_complete:
            self.transport.abort()
        else:
            super().shutdown()


def _is_loopback(host: str) -> bool:
    return host in _LOOPBACK or host.startswith("127.")


class EmulatorServer:
    """uvicorn serving the emulator over HTTPS on a background thread (a context manager).

    ``port=0`` picks a free port. ``state_dir`` keeps the certificates (reused across runs) and
    ``connection.json``; without it a temporary directory is used and removed on ``stop()``.
    """

    def __init__(
        self,
        emulator: Emulator | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        state_dir: str | Path | None = None,
    ) -> None:
        self._tmp_dir: str | None = None
        if state_dir is None:
            self._tmp_dir = tempfile.mkdtemp(prefix="sf-emulator-")
            state_dir = self._tmp_dir
        self.state_dir = Path(state_dir)
        self.host = host
        self._requested_port = port
        extra = () if _is_loopback(host) or host in ("0.0.0.0", "::") else (host,)
        self.certs = ensure_certs(self.state_dir, extra_hosts=extra)
        self.emulator = emulator if emulator is not None else Emulator()
        self.emulator.certs = self.certs
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    # ---- lifecycle ----------------------------------------------------------------------------
    def start(self, timeout: float = 20.0) -> EmulatorServer:
        """Bind, start serving and write connection.json; returns self."""
        if self._thread is not None:
            msg = "the emulator server is already running"
            raise RuntimeError(msg)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        sock.listen(2048)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        public_host = "127.0.0.1" if self.host in ("0.0.0.0", "localhost") else self.host
        if self.host == "::":
            public_host = "::1"
        netloc = f"[{public_host}]" if ":" in public_host else public_host
        self.emulator.instance_url = f"https://{netloc}:{self.port}"
        app = build_app(self.emulator)
        config = uvicorn.Config(
            app,
            ssl_certfile=str(self.certs.server_cert),
            ssl_keyfile=str(self.certs.server_key),
            http=_Protocol,
            ws="none",
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_keep_alive=30,
            timeout_graceful_shutdown=2,
            server_header=False,
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="sf-emulator", daemon=True
        )
        self._thread.start()
        waited = 0.0
        while not server.started:
            if not self._thread.is_alive():
                sock.close()
                msg = "the emulator server failed to start (see the log above)"
                raise RuntimeError(msg)
            self._thread.join(0.01)
            waited += 0.01
            if waited > timeout:
                self.stop()
                msg = f"the emulator server did not start within {timeout} s"
                raise RuntimeError(msg)
        self._sock = sock
        self.write_connection_file()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving (open requests get ``timeout`` seconds) and drop a temporary state dir."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(timeout)
        self._thread = None
        self._server = None
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
            self._tmp_dir = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- what clients need --------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The instance URL, ``https://127.0.0.1:PORT``."""
        return self.emulator.instance_url

    @property
    def org(self) -> Org:
        """The emulated org (replaced by ``emulator.reset()``)."""
        return self.emulator.org

    @property
    def connection_file(self) -> Path:
        """Where connection.json is written."""
        return self.state_dir / CONNECTION_FILE

    @property
    def connection_info(self) -> dict[str, Any]:
        """Everything a client needs to connect: URLs, CA file, credentials, a live token."""
        config = self.emulator.config
        org = self.emulator.org
        return {
            "instance_url": self.url,
            "login_url": self.url,
            "ca_cert": str(self.certs.ca_cert),
            "username": org.username,
            "password": config.password,
            "security_token": config.security_token,
            "consumer_key": config.consumer_key,
            "consumer_secret": config.consumer_secret,
            "jwt_private_key": str(self.certs.jwt_private_key),
            "jwt_cert": str(self.certs.jwt_cert),
            "access_token": self.emulator.access_token,
            "refresh_token": config.refresh_token,
            "org_id": org.org_id,
            "user_id": org.user_id,
            "api_version": LATEST_API_VERSION,
            "daily_api_limit": config.daily_api_limit,
            "session_seconds": config.session_seconds,
        }

    def write_connection_file(self) -> Path:
        """(Re)write connection.json, readable by the owner only: it holds credentials."""
        path = self.connection_file
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.connection_info, indent=2) + "\n")
        tmp.chmod(0o600)
        tmp.replace(path)
        return path
