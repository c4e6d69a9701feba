"""The admin API: drive faults, org rules and metadata of a running emulator over HTTP.

Routes live under ``/__admin`` (outside ``/services``): no session is needed and nothing is
counted against API limits. Each route calls the same Python operation tests use
(``Emulator``, ``Faults``, ``Limits``, ``Org``), documented in docs/emulator-admin.md.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sf_activations.emulator.errors import SalesforceError

if TYPE_CHECKING:
    from sf_activations.emulator.faults import RequestKind
    from sf_activations.emulator.schema import FieldDef, ObjectDef, Schema
    from sf_activations.emulator.server import Emulator

PREFIX = "/__admin"
_Handler = Callable[[Request], Awaitable[Response]]


class AdminError(Exception):
    """A bad admin request (HTTP 400 with ``{"error": message}``)."""


def _emulator(request: Request) -> Emulator:
    return cast("Emulator", request.app.state.emulator)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        msg = f"the body is not JSON: {exc}"
        raise AdminError(msg) from exc
    if not isinstance(data, dict):
        msg = "the body must be a JSON object"
        raise AdminError(msg)
    return data


def _endpoint(fn: _Handler) -> _Handler:
    async def wrapped(request: Request) -> Response:
        try:
            return await fn(request)
        except AdminError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except SalesforceError as exc:
            return JSONResponse(
                {"error": exc.code, "message": exc.message, "fields": exc.fields},
                status_code=exc.status if exc.status >= 400 else 400,
            )
        except (TypeError, ValueError, KeyError) as exc:
            return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=400)

    wrapped.__name__ = fn.__name__
    wrapped.__doc__ = fn.__doc__
    return wrapped


def _ok(extra: Mapping[str, Any] | None = None) -> Response:
    return JSONResponse({"ok": True, **(extra or {})})


def _opt_int(body: Mapping[str, Any], key: str, default: int | None) -> int | None:
    value = body.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"{key} must be an integer"
        raise AdminError(msg)
    return value


def _count(body: Mapping[str, Any]) -> int:
    n = _opt_int(body, "n", 1)
    if n is None or n < 1:
        msg = "n must be an integer >= 1"
        raise AdminError(msg)
    return n


# ---- emulator-level --------------------------------------------------------------------------


async def state(request: Request) -> Response:
    """``GET /__admin/state``: a summary of the emulator."""
    return JSONResponse(_emulator(request).state())


async def reset(request: Request) -> Response:
    """``POST /__admin/reset``: a fresh org; faults, rules, log, limits and sessions cleared."""
    emulator = _emulator(request)
    await run_in_threadpool(emulator.reset)
    return _ok({"org_id": emulator.org.org_id})


async def faults(request: Request) -> Response:
    """``GET``: armed faults; ``POST {"action": "fail"|"drop"|"delay", ...}``: arm one;
    ``DELETE``: clear all."""
    emulator = _emulator(request)
    if request.method == "GET":
        return JSONResponse({"faults": emulator.faults.pending()})
    if request.method == "DELETE":
        emulator.faults.clear()
        return _ok()
    body = await _body(request)
    action = body.get("action")
    path = body.get("path")
    method = body.get("method")
    if action == "fail":
        status = _opt_int(body, "status", 503)
        if status is None or not 400 <= status <= 599:
            msg = "status must be an HTTP error status (400-599)"
            raise AdminError(msg)
        emulator.faults.fail_next(_count(body), status, path=path, method=method)
    elif action == "drop":
        emulator.faults.drop_next(_count(body), path=path, method=method)
    elif action == "delay":
        seconds = body.get("seconds")
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
            msg = "delay needs seconds >= 0"
            raise AdminError(msg)
        emulator.faults.delay(float(seconds), _opt_int(body, "n", None), path=path, method=method)
    else:
        msg = f"action must be fail, drop or delay, not {action!r}"
        raise AdminError(msg)
    return _ok({"faults": emulator.faults.pending()})


async def expire_sessions(request: Request) -> Response:
    """``POST /__admin/sessions/expire`` ``{"token": optional}``: end sessions."""
    body = await _body(request)
    token = body.get("token")
    ended = _emulator(request).expire_sessions(str(token) if token else None)
    return _ok({"expired": ended})


async def connected_app(request: Request) -> Response:
    """``PUT /__admin/connected-app`` ``{"blocked": bool}``: block or unblock OAuth logins."""
    body = await _body(request)
    blocked = body.get("blocked")
    if not isinstance(blocked, bool):
        msg = "blocked must be true or false"
        raise AdminError(msg)
    _emulator(request).block_app(blocked)
    return _ok({"blocked": blocked})


async def limits(request: Request) -> Response:
    """``GET``: the /limits snapshot; ``PUT {"api_remaining": n}`` or ``{"reset": true}``."""
    emulator = _emulator(request)
    if request.method == "PUT":
        body = await _body(request)
        if body.get("reset"):
            emulator.limits.reset()
        remaining = _opt_int(body, "api_remaining", None)
        if remaining is not None:
            emulator.limits.set_api_remaining(remaining)
    return JSONResponse(emulator.limits.snapshot())


async def requests_log(request: Request) -> Response:
    """``GET /__admin/requests?kind=&method=&path_contains=``; ``DELETE`` clears the log."""
    emulator = _emulator(request)
    if request.method == "DELETE":
        emulator.request_log.clear()
        return _ok()
    params = request.query_params
    kind = cast("RequestKind | None", params.get("kind"))
    entries = emulator.request_log.entries(
        kind=kind, method=params.get("method"), path_contains=params.get("path_contains")
    )
    return JSONResponse({"count": len(entries), "requests": [e.to_json() for e in entries]})


# ---- org rules -------------------------------------------------------------------------------


async def lock_rules(request: Request) -> Response:
    """``POST /__admin/lock-rules`` ``{sobject?, share?, parent_id?, count?}``."""
    body = await _body(request)
    org = _emulator(request).org
    share = body.get("share", 1.0)
    if not isinstance(share, int | float) or isinstance(share, bool) or not 0 <= share <= 1:
        msg = "share must be a number between 0 and 1"
        raise AdminError(msg)
    await run_in_threadpool(
        lambda: org.add_lock_rule(
            sobject=body.get("sobject"),
            share=float(share),
            parent_id=body.get("parent_id"),
            count=_opt_int(body, "count", None),
        )
    )
    return _ok()


async def triggers(request: Request) -> Response:
    """``POST /__admin/triggers`` ``{sobject, field?, equals?, message?, apex_ms_per_record?}``."""
    body = await _body(request)
    org = _emulator(request).org
    sobject = body.get("sobject")
    if not isinstance(sobject, str) or not sobject:
        msg = "sobject is required"
        raise AdminError(msg)
    kwargs: dict[str, Any] = {
        "field": body.get("field"),
        "equals": body.get("equals"),
        "apex_ms_per_record": float(body.get("apex_ms_per_record", 0.0)),
    }
    if "message" in body:
        kwargs["message"] = str(body["message"])
    await run_in_threadpool(lambda: org.add_trigger(sobject, **kwargs))
    return _ok()


async def clear_rules(request: Request) -> Response:
    """``DELETE /__admin/rules``: remove every lock rule and trigger."""
    org = _emulator(request).org
    await run_in_threadpool(org.clear_rules)
    return _ok()


async def org_settings(request: Request) -> Response:
    """``PUT /__admin/org-settings`` ``{duplicate_rules_enabled?, allow_update_converted_leads?}``."""
    body = await _body(request)
    org = _emulator(request).org
    for key in ("duplicate_rules_enabled", "allow_update_converted_leads"):
        if key in body:
            if not isinstance(body[key], bool):
                msg = f"{key} must be true or false"
                raise AdminError(msg)
            with org.lock:
                setattr(org, key, body[key])
    return _ok(
        {
            "duplicate_rules_enabled": org.duplicate_rules_enabled,
            "allow_update_converted_leads": org.allow_update_converted_leads,
        }
    )


async def convert_lead(request: Request) -> Response:
    """``POST /__admin/leads/{lead_id}/convert`` ``{account_id?, contact_id?,
    create_opportunity?, converted_status?}``: the LeadConvert result."""
    body = await _body(request)
    org = _emulator(request).org
    lead_id = request.path_params["lead_id"]
    result = await run_in_threadpool(
        lambda: org.convert_lead(
            lead_id,
            account_id=body.get("account_id"),
            contact_id=body.get("contact_id"),
            create_opportunity=bool(body.get("create_opportunity", False)),
            converted_status=body.get("converted_status"),
        )
    )
    return JSONResponse(result)


async def permissions(request: Request) -> Response:
    """``GET``: the API user's permissions; ``PUT {api_enabled?, view_all_data?,
    objects?: {Obj: {create, read, edit, delete}}, fields?: {"Obj.Field": "edit"|"read"|"none"}}``."""
    org = _emulator(request).org
    perms = org.permissions
    if request.method == "PUT":
        body = await _body(request)
        with org.lock:
            for key in ("api_enabled", "view_all_data"):
                if key in body:
                    if not isinstance(body[key], bool):
                        msg = f"{key} must be true or false"
                        raise AdminError(msg)
                    setattr(perms, key, body[key])
            for sobject, access in (body.get("objects") or {}).items():
                if not isinstance(access, dict):
                    msg = f"objects.{sobject} must be an object of booleans"
                    raise AdminError(msg)
                perms.set_object(sobject, **{k: bool(v) for k, v in access.items()})
            for key, access in (body.get("fields") or {}).items():
                sobject, dot, field_name = str(key).partition(".")
                if not dot or access not in ("edit", "read", "none"):
                    msg = f'fields entries look like {{"Account.Name": "read"}}, got {key!r}'
                    raise AdminError(msg)
                perms.set_field(sobject, field_name, access)
    return JSONResponse(
        {
            "api_enabled": perms.api_enabled,
            "view_all_data": perms.view_all_data,
            "objects": {k: vars(v) for k, v in perms.objects.items()},
            "fields": dict(perms.fields),
        }
    )


# ---- metadata --------------------------------------------------------------------------------


def _field_specs(data: Mapping[str, Any], where: str) -> list[FieldDef]:
    from sf_activations.emulator.schema import field_from_mapping

    specs = data.get("fields") or []
    if not isinstance(specs, list) or not all(isinstance(f, dict) for f in specs):
        msg = f"{where}: fields must be a list of field objects"
        raise AdminError(msg)
    return [field_from_mapping(f, where=f"{where}.fields[{i}]") for i, f in enumerate(specs)]


def add_object(schema: Schema, data: Mapping[str, Any]) -> ObjectDef:
    """Add a custom object (or fields to an existing object) from an org-file style entry.

    ``data`` is one entry of the org file's ``objects`` list (docs/emulator-org.md):
    ``{"name", "label"?, "label_plural"?, "key_prefix"?, "fields"?: [...], "createable"?...}``.
    A new object gets the standard fields of every custom object (Id, Name, audit fields).
    """
    from sf_activations.emulator.schema import OBJECT_KEYS, merge_object

    name = data.get("name")
    if not isinstance(name, str) or not name:
        msg = "an object needs a 'name'"
        raise AdminError(msg)
    unknown = set(data) - OBJECT_KEYS
    if unknown:
        msg = f"unknown object key(s) {sorted(unknown)}; allowed: {sorted(OBJECT_KEYS)}"
        raise AdminError(msg)
    extra = tuple(_field_specs(data, f"objects[{name}]"))
    return merge_object(schema, name, data, extra)


async def objects(request: Request) -> Response:
    """``POST /__admin/objects``: add a custom object (or fields of an existing one)."""
    body = await _body(request)
    org = _emulator(request).org
    with org.lock:
        obj = add_object(org.schema, body)
    return _ok({"name": obj.name, "key_prefix": obj.key_prefix})


async def object_fields(request: Request) -> Response:
    """``POST /__admin/objects/{sobject}/fields``: add (or replace) one field.

    The body is a field as in the org file: ``{"name", "type", "label"?, "length"?,
    "external_id"?, "unique"?, "picklist_values"?, "reference_to"?, "default"?, ...}``.
    """
    from sf_activations.emulator.schema import field_from_mapping

    body = await _body(request)
    sobject = request.path_params["sobject"]
    org = _emulator(request).org
    with org.lock:
        target = org.schema.get(sobject)
        if target is None:
            msg = f"no object {sobject!r} in the org"
            raise AdminError(msg)
        field = field_from_mapping(body, where=f"objects/{sobject}/fields")
        org.schema.add_field(target.name, field)
    return _ok({"object": target.name, "name": field.name})


def routes() -> list[BaseRoute]:
    """The admin routes, mounted by ``server.build_app``."""
    table: list[tuple[str, _Handler, list[str]]] = [
        ("/state", state, ["GET"]),
        ("/reset", reset, ["POST"]),
        ("/faults", faults, ["GET", "POST", "DELETE"]),
        ("/sessions/expire", expire_sessions, ["POST"]),
        ("/connected-app", connected_app, ["PUT"]),
        ("/limits", limits, ["GET", "PUT"]),
        ("/requests", requests_log, ["GET", "DELETE"]),
        ("/lock-rules", lock_rules, ["POST"]),
        ("/triggers", triggers, ["POST"]),
        ("/rules", clear_rules, ["DELETE"]),
        ("/org-settings", org_settings, ["PUT"]),
        ("/leads/{lead_id}/convert", convert_lead, ["POST"]),
        ("/permissions", permissions, ["GET", "PUT"]),
        ("/objects", objects, ["POST"]),
        ("/objects/{sobject}/fields", object_fields, ["POST"]),
    ]
    return [Route(PREFIX + path, _endpoint(fn), methods=methods) for path, fn, methods in table]
