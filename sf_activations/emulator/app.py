"""The ASGI middleware in front of every API route.

Everything Salesforce does to a request before it reaches an endpoint happens here, once, so
the REST and Bulk handlers never deal with it: trailing-slash normalisation, injected faults,
the session check, the "API Enabled" permission, daily API limit counting with the
``Sforce-Limit-Info`` header, and the request log. It is plain ASGI (no
``BaseHTTPMiddleware``): request bodies stream through untouched, which matters for 100 MB
Bulk uploads.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sf_activations.emulator.faults import RequestKind, RequestLogEntry

if TYPE_CHECKING:
    from sf_activations.emulator.server import Emulator

# Scope key under which the server's protocol exposes the connection's transport, so that a
# "drop" fault can close the connection without answering.
TRANSPORT_SCOPE_KEY = "sf_emulator.transport"

_DATA = "/services/data"
_ASYNC = "/services/async"
_JSON = (b"content-type", b"application/json;charset=UTF-8")

INVALID_SESSION_BODY = [
    {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
]
LIMIT_EXCEEDED_BODY = [
    {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
]
# A user whose profile lacks "API Enabled" gets API_CURRENTLY_DISABLED ("API is disabled for
# this User"); API_DISABLED_FOR_ORG is for editions without API access at all, which is not
# something a permission toggle models. The exact 403 status is UNVERIFIED.
API_DISABLED_BODY = [
    {"message": "API is disabled for this User", "errorCode": "API_CURRENTLY_DISABLED"}
]
# Bulk API v1 (/services/async) answers in its own XML dialect.
_V1_INVALID_SESSION = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<error xmlns="http://www.force.com/2009/06/asyncapi/dataload">'
    b"<exceptionCode>InvalidSessionId</exceptionCode>"
    b"<exceptionMessage>Invalid session id</exceptionMessage></error>"
)


def classify(path: str) -> RequestKind:
    """The request-log ``kind`` of a path."""
    if path.startswith(_DATA):
        rest = path[len(_DATA) :]
        if rest in ("", "/"):
            return "versions"
        if "/jobs/" in rest or rest.endswith("/jobs"):
            return "bulk"
        return "rest"
    if path.startswith(_ASYNC):
        return "bulk_v1"
    if path.startswith(("/services/Soap/u/", "/services/oauth2/", "/id/")):
        return "auth"
    if path.startswith("/__admin"):
        return "admin"
    return "other"


def fault_body(status: int) -> tuple[bytes, bytes]:
    """(content type, body) of an injected failure."""
    if status == 500:
        # The shape of Salesforce's internal server errors (the ErrorId is made up).
        body = [
            {
                "errorCode": "UNKNOWN_EXCEPTION",
                "message": "An unexpected error occurred. Please include this ErrorId if you "
                "contact support: 1234567890-12345 (-1234567890)",
            }
        ]
        return _JSON[1], _compact(body)
    if status == 503:
        # UNVERIFIED: a 503 during maintenance or overload; clients treat any 503 as transient.
        body = [{"errorCode": "SERVER_UNAVAILABLE", "message": "Server is temporarily unavailable"}]
        return _JSON[1], _compact(body)
    return b"text/html;charset=UTF-8", f"<html><body>Error {status}</body></html>".encode()


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _session_token(scope: Scope, *, bulk_v1: bool) -> str | None:
    if bulk_v1:
        token = _header(scope, b"x-sfdc-session")
        if token:
            return token.strip()
    auth = _header(scope, b"authorization")
    if not auth:
        return None
    scheme, _, token = auth.partition(" ")
    # Salesforce accepts the legacy "OAuth" scheme as well as "Bearer".
    if scheme.lower() in ("bearer", "oauth") and token.strip():
        return token.strip()
    return None


async def _send_simple(
    send: Send, status: int, body: bytes, content_type: bytes, extra: list[tuple[bytes, bytes]]
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ServicesMiddleware:
    """Pure-ASGI gatekeeper for ``/services/data`` and ``/services/async``; logs every request."""

    def __init__(self, app: ASGIApp, emulator: Emulator) -> None:
        self.app = app
        self.emulator = emulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        arrived = time.time()
        path: str = scope["path"]
        kind = classify(path)
        status = 0
        limit_header = kind in ("rest", "bulk", "bulk_v1")
        emulator = self.emulator

        async def send_logged(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if limit_header:
                    headers = list(message.get("headers", []))
                    headers.append((b"sforce-limit-info", emulator.limits.usage_header().encode()))
                    message = {**message, "headers": headers}
            await send(message)

        try:
            too_long = _too_long(scope)
            if too_long is not None:
                status_line, body = too_long
                await _send_simple(send_logged, status_line, body, b"text/plain", [])
                return
            if kind in ("rest", "bulk", "bulk_v1", "versions"):
                if len(path) > 1 and path.endswith("/"):
                    # simple-salesforce sends "sobjects/Account/", "limits/", "query/?q=":
                    # routes are declared without the slash, so strip exactly one here.
                    path = path[:-1]
                    raw: bytes = scope.get("raw_path") or path.encode()
                    scope = {
                        **scope,
                        "path": path,
                        "raw_path": raw[:-1] if raw.endswith(b"/") else raw,
                    }
                if not await self._guard(scope, kind, send_logged):
                    return
            await self.app(scope, receive, send_logged)
        except BaseException:
            if status == 0:
                status = 500
            raise
        finally:
            emulator.request_log.record(
                RequestLogEntry(
                    method=scope["method"],
                    path=path,
                    query=bytes(scope.get("query_string", b"")).decode("latin-1"),
                    status=status,
                    ms=round((time.perf_counter() - started) * 1000.0, 3),
                    kind=kind,
                    at=arrived,
                )
            )

    async def _guard(self, scope: Scope, kind: RequestKind, send: Send) -> bool:
        """Apply faults and checks; True lets the request through, False means answered."""
        emulator = self.emulator
        decision = emulator.faults.take(scope["method"], scope["path"])
        if decision is not None:
            if decision.delay > 0:
                await asyncio.sleep(decision.delay)
            if decision.drop:
                await _drop(scope)
                return False
            if decision.fail_status is not None:
                content_type, body = fault_body(decision.fail_status)
                await _send_simple(send, decision.fail_status, body, content_type, [])
                return False
        if kind == "versions":
            return True  # the version list is public on real Salesforce
        token = _session_token(scope, bulk_v1=kind == "bulk_v1")
        if token is None or emulator.sessions.check(token) is None:
            if kind == "bulk_v1":
                await _send_simple(send, 400, _V1_INVALID_SESSION, b"application/xml", [])
            else:
                await _send_json(send, 401, INVALID_SESSION_BODY)
            return False
        if not emulator.org.permissions.api_enabled:
            await _send_json(send, 403, API_DISABLED_BODY)
            return False
        if not emulator.limits.try_count_api_request():
            await _send_json(send, 403, LIMIT_EXCEEDED_BODY)
            return False
        return True


MAX_REQUEST_HEAD_BYTES = 16_384
"""Salesforce's limit on a request's URI, and on its URI and headers together (help article
000386264): over it the URI alone gets 414 URI Too Long, URI plus headers 431."""


def _too_long(scope: Scope) -> tuple[int, bytes] | None:
    """(status, body) when the request's URI, or its URI and headers, exceed the limit.

    UNVERIFIED: the bodies; Salesforce's front end answers before any API code runs."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    uri = len(raw) + (len(query) + 1 if query else 0)
    if uri > MAX_REQUEST_HEAD_BYTES:
        return 414, b"URI Too Long"
    headers = sum(len(k) + len(v) + 4 for k, v in scope.get("headers", ()))
    if uri + headers > MAX_REQUEST_HEAD_BYTES:
        return 431, b"Request Header Fields Too Large"
    return None


def _compact(body: Any) -> bytes:
    # Salesforce sends compact JSON: the recorded 401 body is byte for byte
    # [{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}].
    return json.dumps(body, separators=(",", ":")).encode()


async def _send_json(send: Send, status: int, body: Any) -> None:
    await _send_simple(send, status, _compact(body), _JSON[1], [])


async def _drop(scope: Scope) -> None:
    transport = scope.get(TRANSPORT_SCOPE_KEY)
    if transport is None:
        msg = "drop fault needs the emulator's protocol (EmulatorServer) to reach the transport"
        raise RuntimeError(msg)
    transport.abort()
    # Let the loop deliver connection_lost so the server marks the request disconnected and
    # does not try to answer it with a 500.
    for _ in range(3):
        await asyncio.sleep(0)
