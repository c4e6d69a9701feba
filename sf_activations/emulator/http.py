"""HTTP helpers shared by the emulator's REST and Bulk handlers (and usable by the server).

Salesforce answers JSON errors as an array of ``{"message", "errorCode"[, "fields"]}``; every
helper here keeps that shape so no handler can answer differently by accident.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sf_activations.emulator.errors import SalesforceError

if TYPE_CHECKING:
    from sf_activations.emulator.server import Emulator

logger = logging.getLogger(__name__)

JSON_CONTENT_TYPE = "application/json;charset=UTF-8"
CSV_CONTENT_TYPE = "text/csv"

Handler = Callable[[Request], Awaitable[Response]]
T = TypeVar("T")

_VERSION_RE = re.compile(r"^v(\d{2,3}\.\d)$")


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response the way Salesforce sends it (compact, UTF-8, ``application/json``)."""
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(content, status_code=status, media_type=JSON_CONTENT_TYPE, headers=headers)


def error_response(
    err: SalesforceError,
    headers: Mapping[str, str] | None = None,
    *,
    code_first: bool = False,
) -> Response:
    """The REST error response for ``err``: its HTTP status and a JSON array body.

    ``code_first`` orders each item ``errorCode`` first, as Bulk API 2.0 answers: the recorded
    412 body is ``[{"errorCode":"JOB_NOT_COMPLETE","message":"..."}]`` (salesforce-api.md §3.3).
    """
    body: list[dict[str, object]] = err.rest_body()
    if code_first:
        body = [{"errorCode": item["errorCode"], **item} for item in body]
    return json_response(body, status=err.status, headers=headers)


def emulator_of(request: Request) -> Emulator:
    """The running emulator that serves ``request`` (set by the server's ``build_app``)."""
    emulator: Emulator = request.app.state.emulator
    return emulator


def not_found() -> SalesforceError:
    """Salesforce's answer for a resource path it does not know."""
    return SalesforceError("NOT_FOUND", "The requested resource does not exist", status=404)


def parse_version(segment: str, versions: Sequence[str] | None = None) -> str:
    """``"v59.0"`` -> ``"59.0"``; raises NOT_FOUND (404) for a malformed or unlisted version.

    ``versions`` are the versions the emulator serves (``Emulator.api_versions``); without it,
    only the format is checked.
    """
    match = _VERSION_RE.match(segment)
    if match is None or (versions is not None and match.group(1) not in versions):
        raise not_found()
    return match.group(1)


def version_of(request: Request) -> str:
    """The API version of a ``/services/data/{version}/...`` request, validated."""
    versions = getattr(emulator_of(request), "api_versions", None)
    return parse_version(str(request.path_params["version"]), versions)


def json_parser_error(message: str) -> SalesforceError:
    """400 JSON_PARSER_ERROR. The wording mimics Jackson's (UNVERIFIED beyond the code)."""
    return SalesforceError("JSON_PARSER_ERROR", message, status=400)


def unsupported_media_type(content_type: str) -> SalesforceError:
    """415 UNSUPPORTED_MEDIA_TYPE, Salesforce's answer to a body type a resource does not take.

    The wording is the one REST answers to a form-encoded body (a ``curl -d`` without a
    Content-Type header); using it for every resource and type is UNVERIFIED.
    """
    return SalesforceError(
        "UNSUPPORTED_MEDIA_TYPE",
        f"MediaType of '{content_type}' is not supported by this resource",
        status=415,
    )


def media_type(request: Request) -> str | None:
    """The request's media type, lower case and without parameters (None when not sent)."""
    raw = request.headers.get("content-type")
    if raw is None or not raw.strip():
        return None
    return raw.split(";", 1)[0].strip().lower()


def require_media_type(request: Request, *accepted: str, required: bool = False) -> None:
    """Raise 415 unless the body's Content-Type is one of ``accepted``.

    Without a Content-Type header the body passes unless ``required``: Salesforce reads an
    untyped REST body as JSON (UNVERIFIED; every client we know sends the header).
    """
    kind = media_type(request)
    if kind is None:
        if required:
            raise unsupported_media_type("")
        return
    if kind not in accepted:
        raise unsupported_media_type(kind)


async def read_json(request: Request) -> Any:
    """The request body parsed as JSON, or SalesforceError JSON_PARSER_ERROR (400).

    A body sent as anything but ``application/json`` is 415 UNSUPPORTED_MEDIA_TYPE: real
    Salesforce would parse ``application/xml`` as XML, which the emulator does not speak, and
    refuses the other types.
    """
    raw = await request.body()
    if raw:
        require_media_type(request, "application/json")
    if not raw.strip():
        raise json_parser_error("No content to map due to end-of-input at [line:1, column:0]")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        line = getattr(exc, "lineno", 1)
        column = getattr(exc, "colno", 1)
        char = raw.decode("utf-8", "replace")[getattr(exc, "pos", 0) : getattr(exc, "pos", 0) + 1]
        msg = (
            f"Unexpected character ('{char}' (code {ord(char) if char else 0})): expected a valid "
            "value (number, String, array, object, 'true', 'false' or 'null') "
            f"at [line:{line}, column:{column}]"
        )
        raise json_parser_error(msg) from exc


async def in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking org work off the event loop (the org lock may be held by a Bulk job)."""
    return await run_in_threadpool(fn, *args, **kwargs)


def method_not_allowed(method: str, allowed: Sequence[str]) -> Response:
    """405 with Salesforce's METHOD_NOT_ALLOWED body and an ``Allow`` header."""
    allowed_text = ",".join(allowed)
    body = [
        {
            "errorCode": "METHOD_NOT_ALLOWED",
            "message": f"HTTP Method '{method}' not allowed. Allowed are {allowed_text}",
        }
    ]
    return json_response(body, status=405, headers={"Allow": allowed_text})


_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def resource(
    path: str,
    handlers: Mapping[str, Handler],
    *,
    name: str | None = None,
    code_first: bool = False,
) -> Route:
    """One route answering every method: known ones go to their handler, others get 405.

    Errors raised as ``SalesforceError`` by a handler become the REST error array (items
    ``errorCode`` first with ``code_first``, as Bulk API 2.0 writes them); the path's
    ``{version}`` segment, when present, is validated before the handler runs.
    """
    allowed = [m for m in ("HEAD", "GET", "POST", "PUT", "PATCH", "DELETE") if m in handlers]
    if "GET" in handlers and "HEAD" not in allowed:
        allowed.insert(0, "HEAD")

    async def endpoint(request: Request) -> Response:
        try:
            if "version" in request.path_params:
                version_of(request)
            method = request.method
            if method == "HEAD" and "HEAD" not in handlers and "GET" in handlers:
                response = await handlers["GET"](request)
                return Response(
                    b"", status_code=response.status_code, headers=dict(response.headers)
                )
            handler = handlers.get(method)
            if handler is None:
                return method_not_allowed(method, allowed)
            return await handler(request)
        except SalesforceError as err:
            return error_response(err, code_first=code_first)
        except Exception:
            # An emulator bug, not a Salesforce answer: log it loudly, and answer like
            # Salesforce's own 500 so that clients see a JSON array instead of a dropped
            # connection (tests still fail on the status).
            logger.exception("emulator error on %s %s", request.method, request.url.path)
            return json_response(
                [
                    {
                        "errorCode": "UNKNOWN_EXCEPTION",
                        "message": "An unexpected error occurred. Please include this "
                        f"ErrorId if you contact support: {uuid.uuid4().int % 10**10}-emulator",
                    }
                ],
                status=500,
            )

    return Route(path, endpoint, methods=_ALL_METHODS, name=name)
