"""The emulator's REST API: versions, limits, describe, sObject rows, query and Collections.

Every handler answers what salesforce-api.md §2 says real Salesforce answers: the same status
codes, the same JSON shapes (errors are arrays with ``errorCode``; Collections items use
``statusCode``) and the same messages. Records and their semantics live in ``Org``; SOQL in
``soql.py``; this module only speaks HTTP.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from sf_activations.emulator.errors import MoreThanOneRecord, SalesforceError
from sf_activations.emulator.http import (
    emulator_of,
    in_thread,
    json_response,
    method_not_allowed,
    not_found,
    parse_version,
    read_json,
    resource,
    version_of,
)
from sf_activations.emulator.ids import IdAllocator, is_well_formed, to_18
from sf_activations.emulator.soql import execute_soql

if TYPE_CHECKING:
    from sf_activations.emulator.org import Org

__all__ = ["parse_version", "routes"]

DATA = "/services/data/{version}"

# Collections accept at most 200 records (ids for delete) per call; retrieve takes 2000 ids.
COLLECTION_LIMIT = 200
RETRIEVE_LIMIT = 2000
# Mixed-type Collections calls run in runs ("chunks") of one object type, at most 10.
MAX_CHUNKS = 10
# Query pages: 2000 by default; Sforce-Query-Options batchSize may ask for 200..2000.
DEFAULT_BATCH = 2000
MIN_BATCH = 200
# Salesforce keeps at most 10 open query cursors per user (opening another releases the
# oldest) and drops a cursor after 15 minutes without use.
MAX_OPEN_CURSORS = 10
CURSOR_IDLE_SECONDS = 15 * 60
# Upsert on an existing record answers 200 + body from this version on, 204 before it.
UPSERT_BODY_SINCE = 46.0

_ROLLED_BACK = SalesforceError(
    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "Record rolled back because not all records were valid and the request was using AllOrNone header",
)


def _org(request: Request) -> Org:
    return emulator_of(request).org


def _ext_field_missing(field: str) -> SalesforceError:
    return SalesforceError(
        "NOT_FOUND",
        f"Provided external ID field does not exist or is not accessible: {field}",
        status=404,
    )


def _check_object(org: Org, sobject: str) -> str:
    """The object's canonical name; unknown objects are 404 NOT_FOUND on every sObject path."""
    try:
        return org.object_def(sobject).name
    except SalesforceError as err:
        raise not_found() from err


def _check_external_id_field(org: Org, sobject: str, field: str) -> str:
    """The canonical name of an external-id field usable in a path, else 404 NOT_FOUND."""
    fd = org.visible_field(sobject, field)
    if fd is None or not (fd.external_id or fd.name == "Id"):
        raise _ext_field_missing(field)
    return fd.name


def _record_url(version: str, sobject: str, record_id: str) -> str:
    return f"/services/data/v{version}/sobjects/{sobject}/{record_id}"


def _multiple_choices(version: str, err: MoreThanOneRecord) -> Response:
    # UNVERIFIED body: Salesforce documents "a list of matching records"; URLs are the most
    # plausible form (and what simple-salesforce passes through in SalesforceMoreThanOneRecord).
    urls = [_record_url(version, err.sobject, rid) for rid in err.record_ids]
    return json_response(urls, status=300)


def _json_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        kind = "START_ARRAY" if isinstance(body, list) else "VALUE_STRING"
        msg = f"Cannot deserialize instance of SObject out of {kind} token at [line:1, column:1]"
        raise SalesforceError("JSON_PARSER_ERROR", msg)
    return body


def _fields_param(request: Request) -> list[str] | None:
    raw = request.query_params.get("fields")
    if raw is None:
        return None
    return [f.strip() for f in raw.split(",") if f.strip()]


# --------------------------------------------------------------------------- versions, limits


def _release_label(version: str) -> str:
    """Salesforce's release name for an API version: 59.0 is Winter '24, three per year."""
    n = int(float(version)) - 59
    season = ("Winter", "Spring", "Summer")[n % 3]
    return f"{season} '{24 + n // 3:02d}"


async def versions(request: Request) -> Response:
    """``GET /services/data``: every version the emulator serves (labels are UNVERIFIED)."""
    api_versions: Sequence[str] = emulator_of(request).api_versions
    body = [
        {"label": _release_label(v), "url": f"/services/data/v{v}", "version": v}
        for v in api_versions
    ]
    return json_response(body)


async def resources(request: Request) -> Response:
    """``GET /services/data/vXX.X``: the resources this version offers (the ones we serve)."""
    version = version_of(request)
    org = _org(request)
    base = f"/services/data/v{version}"
    body = {
        "sobjects": f"{base}/sobjects",
        "query": f"{base}/query",
        "queryAll": f"{base}/queryAll",
        "limits": f"{base}/limits",
        "composite": f"{base}/composite",
        "jobs": f"{base}/jobs",
        "identity": f"https://login.salesforce.com/id/{org.org_id}/{org.user_id}",
    }
    return json_response(body)


async def limits(request: Request) -> Response:
    """``GET /limits``: the counters the server keeps."""
    snapshot: dict[str, Any] = emulator_of(request).limits.snapshot()
    return json_response(snapshot)


# --------------------------------------------------------------------------- describe


async def describe_global(request: Request) -> Response:
    """``GET /sobjects``."""
    return json_response(await in_thread(_org(request).describe_global))


async def describe_object(request: Request) -> Response:
    """``GET /sobjects/{obj}/describe``."""
    org = _org(request)
    sobject = request.path_params["sobject"]
    await in_thread(_check_object, org, sobject)
    return json_response(await in_thread(org.describe, sobject))


async def object_info(request: Request) -> Response:
    """``GET /sobjects/{obj}``: basic info (UNVERIFIED shape: objectDescribe + recentItems)."""
    org = _org(request)
    name = await in_thread(_check_object, org, request.path_params["sobject"])
    described = await in_thread(org.describe_global)
    entry = next(
        (
            s
            for s in described.get("sobjects", [])
            if str(s.get("name", "")).lower() == name.lower()
        ),
        None,
    )
    if entry is None:
        raise not_found()
    return json_response({"objectDescribe": entry, "recentItems": []})


# --------------------------------------------------------------------------- single records


async def create_record(request: Request) -> Response:
    """``POST /sobjects/{obj}`` (and ``POST /sobjects/{obj}/Id``): 201 with the new id."""
    org = _org(request)
    sobject = await in_thread(_check_object, org, request.path_params["sobject"])
    values = _json_object(await read_json(request))
    record_id = await in_thread(org.create, sobject, values)
    return json_response({"id": record_id, "success": True, "errors": []}, status=201)


async def create_by_id_path(request: Request) -> Response:
    """``POST /sobjects/{obj}/{field}``: only ``Id`` (a null external id) means create."""
    if request.path_params["record_id"].lower() != "id":
        return _method_not_allowed_for_record(request)
    return await create_record(request)


def _method_not_allowed_for_record(request: Request) -> Response:
    return method_not_allowed(request.method, ["HEAD", "GET", "PATCH", "DELETE"])


def _check_record_id(record_id: str) -> None:
    # A path segment that is no id is read as an external id field name by Salesforce.
    if not is_well_formed(record_id):
        raise _ext_field_missing(record_id)


async def _record_target(request: Request) -> tuple[Org, str, str]:
    """The org, the checked object name and the record id of a ``/sobjects/{obj}/{id}`` call."""
    org = _org(request)
    sobject = await in_thread(_check_object, org, request.path_params["sobject"])
    record_id = request.path_params["record_id"]
    _check_record_id(record_id)
    return org, sobject, record_id


async def get_record(request: Request) -> Response:
    """``GET /sobjects/{obj}/{id}[?fields=...]``."""
    org, sobject, record_id = await _record_target(request)
    record = await in_thread(org.retrieve, sobject, record_id, _fields_param(request))
    return json_response(record)


async def update_record(request: Request) -> Response:
    """``PATCH /sobjects/{obj}/{id}``: 204."""
    org, sobject, record_id = await _record_target(request)
    values = _json_object(await read_json(request))
    if any(key.lower() == "id" for key in values):
        # The id belongs in the path only; the wording is the one widely reported for a
        # PATCH whose body repeats it.
        raise SalesforceError(
            "INVALID_FIELD", "The Id field should not be specified in the sobject data."
        )
    await in_thread(org.update, sobject, record_id, values)
    return Response(status_code=204)


async def delete_record(request: Request) -> Response:
    """``DELETE /sobjects/{obj}/{id}``: 204; a second delete is ENTITY_IS_DELETED."""
    org, sobject, record_id = await _record_target(request)
    await in_thread(org.delete, sobject, record_id)
    return Response(status_code=204)


async def _external_target(request: Request) -> tuple[Org, str, str, str, str]:
    """Org, API version, checked object, checked external-id field and the value of a
    ``/sobjects/{obj}/{extField}/{value}`` call."""
    org = _org(request)
    version = version_of(request)
    sobject = await in_thread(_check_object, org, request.path_params["sobject"])
    field = await in_thread(_check_external_id_field, org, sobject, request.path_params["field"])
    return org, version, sobject, field, request.path_params["value"]


async def get_by_external_id(request: Request) -> Response:
    """``GET /sobjects/{obj}/{extField}/{value}``: 200, or 300 with the matching record URLs."""
    org, version, sobject, field, value = await _external_target(request)
    try:
        record = await in_thread(
            org.retrieve_by_external_id, sobject, field, value, _fields_param(request)
        )
    except MoreThanOneRecord as err:
        return _multiple_choices(version, err)
    return json_response(record)


async def upsert_record(request: Request) -> Response:
    """``PATCH /sobjects/{obj}/{extField}/{value}``: 201 created, 200/204 updated, 300, 404."""
    org, version, sobject, field, value = await _external_target(request)
    values = _json_object(await read_json(request))
    _check_body_key(values, field, value)
    update_only = request.query_params.get("updateOnly", "").lower() == "true"

    def run() -> tuple[str, bool]:
        with org.lock:
            if update_only:
                # Raises NOT_FOUND (or 300) when nothing matches: updateOnly never creates.
                org.retrieve_by_external_id(sobject, field, value, ["Id"])
            return org.upsert(sobject, field, value, values)

    try:
        record_id, created = await in_thread(run)
    except MoreThanOneRecord as err:
        return _multiple_choices(version, err)
    if created:
        body = {"id": record_id, "success": True, "errors": [], "created": True}
        return json_response(body, status=201)
    if float(version) < UPSERT_BODY_SINCE:
        return Response(status_code=204)
    return json_response({"id": record_id, "success": True, "errors": [], "created": False})


def _check_body_key(values: Mapping[str, Any], field: str, value: str) -> None:
    """The external id is given by the path: the body may not name another value for it.

    UNVERIFIED: repeating the same value is let through (clients build bodies from whole
    records); a different value, which could only be a mistake, is refused with the wording
    Salesforce uses for an Id in an update body.
    """
    for key, body_value in values.items():
        if key.lower() == field.lower() and (body_value is None or str(body_value) != value):
            msg = f"The {field} field should not be specified in the sobject data."
            raise SalesforceError("INVALID_FIELD", msg)


async def delete_by_external_id(request: Request) -> Response:
    """``DELETE /sobjects/{obj}/{extField}/{value}``: 204."""
    org, version, sobject, field, value = await _external_target(request)

    def run() -> None:
        with org.lock:
            record = org.retrieve_by_external_id(sobject, field, value, ["Id"])
            org.delete(sobject, str(record["Id"]))

    try:
        await in_thread(run)
    except MoreThanOneRecord as err:
        return _multiple_choices(version, err)
    return Response(status_code=204)


# --------------------------------------------------------------------------- query


@dataclass
class _Cursor:
    records: list[dict[str, Any]]
    total_size: int
    batch_size: int  # set by the query's Sforce-Query-Options; later pages keep it
    last_used: float = field(default_factory=time.monotonic)


class QueryCursors:
    """Open query cursors of one emulator: ``nextRecordsUrl`` locators point into them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cursors: OrderedDict[str, _Cursor] = OrderedDict()
        self._counter = itertools.count(1)

    def open(self, cursor: _Cursor) -> str:
        """Keep ``cursor`` for later pages; returns its id (an 18-character ``01g`` id)."""
        with self._lock:
            cursor_id = IdAllocator("01g").make(next(self._counter))
            self._cursors[cursor_id] = cursor
            while len(self._cursors) > MAX_OPEN_CURSORS:
                self._cursors.popitem(last=False)
        return cursor_id

    def get(self, cursor_id: str) -> _Cursor | None:
        """The cursor, or None when unknown, released or idle for too long."""
        now = time.monotonic()
        with self._lock:
            cursor = self._cursors.get(cursor_id)
            if cursor is not None and now - cursor.last_used > CURSOR_IDLE_SECONDS:
                del self._cursors[cursor_id]
                cursor = None
            if cursor is not None:
                cursor.last_used = now
                self._cursors.move_to_end(cursor_id)
            return cursor


_CURSORS_LOCK = threading.Lock()
_LOCATOR_RE = re.compile(r"^(01g[0-9A-Za-z]{15})-(\d+)$")
_BATCH_RE = re.compile(r"batchSize\s*=\s*(\d+)", re.IGNORECASE)


def _cursors(request: Request) -> QueryCursors:
    state = request.app.state
    with _CURSORS_LOCK:
        cursors: QueryCursors | None = getattr(state, "query_cursors", None)
        if cursors is None:
            cursors = QueryCursors()
            state.query_cursors = cursors
    return cursors


def _batch_size(request: Request, default: int = DEFAULT_BATCH) -> int:
    # Salesforce treats batchSize as a hint within 200..2000 ("no guarantee"); clamp to it.
    match = _BATCH_RE.search(request.headers.get("sforce-query-options", ""))
    if match is None:
        return default
    return max(MIN_BATCH, min(DEFAULT_BATCH, int(match.group(1))))


def _page(
    request: Request, version: str, cursor_id: str | None, cursor: _Cursor, start: int
) -> Response:
    size = _batch_size(request, cursor.batch_size)
    chunk = cursor.records[start : start + size]
    end = start + len(chunk)
    body: dict[str, Any] = {"totalSize": cursor.total_size, "done": end >= len(cursor.records)}
    if not body["done"]:
        if cursor_id is None:
            cursor_id = _cursors(request).open(cursor)
        # queryAll locators are also served under /query (salesforce-api.md §2.3).
        body["nextRecordsUrl"] = f"/services/data/v{version}/query/{cursor_id}-{end}"
    body["records"] = chunk
    return json_response(body)


def _run_query(include_deleted: bool) -> Callable[[Request], Any]:
    async def handler(request: Request) -> Response:
        version = version_of(request)
        soql = request.query_params.get("q")
        if soql is None or not soql.strip():
            # UNVERIFIED wording; the code is what clients branch on.
            raise SalesforceError("MALFORMED_QUERY", "A query string has to be specified")
        org = _org(request)
        result = await in_thread(
            execute_soql, org, soql, include_deleted=include_deleted, api_version=version
        )
        cursor = _Cursor(list(result.records), int(result.total_size), _batch_size(request))
        return _page(request, version, None, cursor, 0)

    return handler


async def query_more(request: Request) -> Response:
    """``GET /query/{locator}`` and ``/queryAll/{locator}``: the next page of a cursor."""
    version = version_of(request)
    locator = request.path_params["locator"]
    match = _LOCATOR_RE.match(locator)
    cursor = _cursors(request).get(match.group(1)) if match else None
    if match is None or cursor is None or int(match.group(2)) > len(cursor.records):
        raise SalesforceError("INVALID_QUERY_LOCATOR", "invalid query locator")
    return _page(request, version, match.group(1), cursor, int(match.group(2)))


# --------------------------------------------------------------------------- collections


class _Rollback(Exception):
    """Leaves ``org.atomic()`` so that an allOrNone call undoes its work."""


@dataclass(frozen=True)
class _ItemResult:
    record_id: str | None
    error: SalesforceError | None
    created: bool | None = None

    def body(self, *, with_created: bool) -> dict[str, Any]:
        if self.error is not None:
            # Real failed items carry no id (amp-labs fixtures for create and update).
            return {"success": False, "errors": [self.error.item_error()]}
        item: dict[str, Any] = {"id": self.record_id, "success": True, "errors": []}
        if with_created:
            item["created"] = bool(self.created)
        return item


_Op = Callable[[], tuple[str, bool | None]]


def _run_items(
    org: Org, ops: Sequence[_Op | SalesforceError], all_or_none: bool
) -> list[_ItemResult]:
    """Run each item's operation in order; with allOrNone undo everything if any failed."""
    results: list[_ItemResult] = []

    def run_all() -> None:
        for op in ops:
            if isinstance(op, SalesforceError):
                results.append(_ItemResult(None, op))
                continue
            try:
                record_id, created = op()
            except SalesforceError as err:
                results.append(_ItemResult(None, err))
            else:
                results.append(_ItemResult(record_id, None, created))

    with org.lock:
        if not all_or_none:
            run_all()
            return results
        try:
            with org.atomic():
                run_all()
                if any(r.error is not None for r in results):
                    raise _Rollback
        except _Rollback:
            return [r if r.error is not None else _ItemResult(None, _ROLLED_BACK) for r in results]
    return results


def _records_of(body: Any) -> tuple[list[Any], bool]:
    body = _json_object(body)
    records = body.get("records")
    if not isinstance(records, list) or not records:
        raise SalesforceError("REQUIRED_FIELD_MISSING", "At least 1 record is required")
    if len(records) > COLLECTION_LIMIT:
        raise SalesforceError(
            "EXCEEDED_ID_LIMIT",
            "record limit reached. cannot submit more than 200 records into this call",
        )
    return records, bool(body.get("allOrNone", False))


def _check_chunks(records: Sequence[Any]) -> None:
    """Mixed-type calls are processed in runs of one type; Salesforce allows 10 such chunks."""
    chunks = 0
    previous: str | None = None
    for record in records:
        sobject = (_type_of(record) or "") if isinstance(record, Mapping) else ""
        if chunks == 0 or sobject.lower() != previous:
            chunks += 1
            previous = sobject.lower()
    if chunks > MAX_CHUNKS:
        # The message is Salesforce's (Apex DML); the code and status are UNVERIFIED for REST.
        raise SalesforceError(
            "INVALID_BATCH",
            "Cannot have more than 10 chunks in a single operation. Please rearrange the data "
            "to reduce chunking.",
        )


def _type_of(record: Mapping[str, Any]) -> str | None:
    attributes = record.get("attributes")
    if isinstance(attributes, Mapping) and isinstance(attributes.get("type"), str):
        return str(attributes["type"])
    return None


def _no_type() -> SalesforceError:
    # UNVERIFIED: the message Salesforce gives when attributes.type is missing.
    return SalesforceError("INVALID_TYPE", "Must send a concrete entity type.")


def _values_of(record: Mapping[str, Any], *, drop_id: bool) -> dict[str, Any]:
    return {
        k: v for k, v in record.items() if k != "attributes" and not (drop_id and k.lower() == "id")
    }


def _known_type(org: Org, sobject: str) -> str:
    try:
        return org.object_def(sobject).name
    except SalesforceError as err:
        msg = (
            f"sObject type '{sobject}' is not supported. If you are attempting to use a custom "
            "object, be sure to append the '__c' after the entity name. Please reference your "
            "WSDL or the describe call for the appropriate names."
        )
        raise SalesforceError("INVALID_TYPE", msg) from err


def _create_op(org: Org, record: Any) -> _Op | SalesforceError:
    if not isinstance(record, Mapping):
        return _no_type()
    sobject = _type_of(record)
    if sobject is None:
        return _no_type()
    values = _values_of(record, drop_id=False)

    def op() -> tuple[str, bool | None]:
        return org.create(_known_type(org, sobject), values), None

    return op


def _update_op(org: Org, record: Any) -> _Op | SalesforceError:
    if not isinstance(record, Mapping):
        return _no_type()
    record_id = next((v for k, v in record.items() if k.lower() == "id"), None)
    if not record_id:
        return SalesforceError("MISSING_ARGUMENT", "Id not specified in an update call")
    record_id = str(record_id)
    sobject = _type_of(record)
    if sobject is None:
        return _no_type()
    values = _values_of(record, drop_id=True)

    def op() -> tuple[str, bool | None]:
        if not is_well_formed(record_id):
            raise SalesforceError("MALFORMED_ID", f"malformed id {record_id}")
        with _missing_as_cross_reference():
            org.update(_known_type(org, sobject), record_id, values)
        return _id18(record_id), None

    return op


def _upsert_op(org: Org, sobject: str, field: str, record: Any) -> _Op | SalesforceError:
    if not isinstance(record, Mapping):
        return _no_type()
    record_type = _type_of(record)
    if record_type is None:
        return _no_type()
    if record_type.lower() != sobject.lower():
        # UNVERIFIED wording: Collections upsert takes one object type per call.
        return SalesforceError(
            "INVALID_TYPE", f"Record type {record_type} does not match {sobject}"
        )
    value = next((v for k, v in record.items() if k.lower() == field.lower()), None)
    if value is None or value == "":
        if field == "Id":
            values = _values_of(record, drop_id=True)
            return lambda: (org.create(sobject, values), True)
        # UNVERIFIED wording.
        return SalesforceError("MISSING_ARGUMENT", f"{field} not specified", [])
    values = {
        k: v for k, v in _values_of(record, drop_id=False).items() if k.lower() != field.lower()
    }
    ext_value = str(value)

    def op() -> tuple[str, bool | None]:
        try:
            return org.upsert(sobject, field, ext_value, values)
        except MoreThanOneRecord as err:
            # Collections have no 300: the item fails like SOAP/Bulk do.
            raise SalesforceError(err.code, err.message) from err

    return op


def _delete_op(org: Org, record_id: str) -> _Op | SalesforceError:
    if not is_well_formed(record_id):
        return SalesforceError("MALFORMED_ID", f"malformed id {record_id}", [])

    def op() -> tuple[str, bool | None]:
        sobject = org.sobject_of_id(record_id)
        if sobject is None:
            raise SalesforceError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
        with _missing_as_cross_reference():
            org.delete(sobject, record_id)
        return _id18(record_id), None

    return op


@contextmanager
def _missing_as_cross_reference() -> Iterator[None]:
    """Collections name a record that does not exist INVALID_CROSS_REFERENCE_KEY, not 404.

    UNVERIFIED: the SOAP/Apex wording for a well-formed id that matches no record.
    """
    try:
        yield
    except SalesforceError as err:
        if err.code != "NOT_FOUND":
            raise
        raise SalesforceError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id") from err


def _id18(record_id: str) -> str:
    return to_18(record_id)


async def _mixed_collection(
    request: Request, make_op: Callable[[Org, Any], _Op | SalesforceError]
) -> Response:
    """Create or update: records name their own type, so one call may mix objects."""
    org = _org(request)
    records, all_or_none = _records_of(await read_json(request))
    _check_chunks(records)
    ops = [make_op(org, r) for r in records]
    results = await in_thread(_run_items, org, ops, all_or_none)
    return json_response([r.body(with_created=False) for r in results])


async def collection_create(request: Request) -> Response:
    """``POST /composite/sobjects``: HTTP 200 with one result per record, in order."""
    return await _mixed_collection(request, _create_op)


async def collection_update(request: Request) -> Response:
    """``PATCH /composite/sobjects``: records carry ``id`` and ``attributes.type``."""
    return await _mixed_collection(request, _update_op)


async def collection_upsert(request: Request) -> Response:
    """``PATCH /composite/sobjects/{obj}/{extField}``: items carry ``created``."""
    org = _org(request)
    sobject = await in_thread(_check_object, org, request.path_params["sobject"])
    field = await in_thread(_check_external_id_field, org, sobject, request.path_params["field"])
    records, all_or_none = _records_of(await read_json(request))
    ops = [_upsert_op(org, sobject, field, r) for r in records]
    results = await in_thread(_run_items, org, ops, all_or_none)
    return json_response([r.body(with_created=True) for r in results])


async def collection_delete(request: Request) -> Response:
    """``DELETE /composite/sobjects?ids=a,b[&allOrNone=true]``."""
    org = _org(request)
    raw = request.query_params.get("ids", "")
    ids = [i.strip() for i in raw.split(",") if i.strip()]
    if not ids:
        # UNVERIFIED wording.
        raise SalesforceError("MISSING_ARGUMENT", "ids not specified")
    if len(ids) > COLLECTION_LIMIT:
        raise SalesforceError(
            "EXCEEDED_ID_LIMIT",
            "record limit reached. cannot submit more than 200 records into this call",
        )
    all_or_none = request.query_params.get("allOrNone", "false").lower() == "true"
    ops = [_delete_op(org, i) for i in ids]
    results = await in_thread(_run_items, org, ops, all_or_none)
    return json_response([r.body(with_created=False) for r in results])


async def collection_retrieve(request: Request) -> Response:
    """``POST`` (JSON ids+fields) or ``GET`` (?ids=&fields=) ``/composite/sobjects/{obj}``."""
    org = _org(request)
    sobject = await in_thread(_check_object, org, request.path_params["sobject"])
    if request.method == "POST":
        body = _json_object(await read_json(request))
        ids = [str(i) for i in body.get("ids") or []]
        fields = [str(f) for f in body.get("fields") or []]
    else:
        ids = [i for i in request.query_params.get("ids", "").split(",") if i]
        fields = [f for f in request.query_params.get("fields", "").split(",") if f]
    if not ids:
        raise SalesforceError("MISSING_ARGUMENT", "ids not specified")  # UNVERIFIED wording
    if not fields:
        raise SalesforceError("MISSING_ARGUMENT", "fields not specified")  # UNVERIFIED wording
    if len(ids) > RETRIEVE_LIMIT:
        raise SalesforceError(
            "EXCEEDED_ID_LIMIT", "record limit reached. cannot retrieve more than 2000 records"
        )

    def run() -> list[dict[str, Any] | None]:
        out: list[dict[str, Any] | None] = []
        with org.lock:
            for record_id in ids:
                if not is_well_formed(record_id):
                    raise SalesforceError("MALFORMED_ID", f"malformed id {record_id}")
                try:
                    out.append(org.retrieve(sobject, record_id, fields))
                except SalesforceError as err:
                    if err.status != 404:
                        raise
                    # Ids that match no (live) record come back as null, in order.
                    out.append(None)
        return out

    return json_response(await in_thread(run))


# --------------------------------------------------------------------------- routes


def routes() -> list[BaseRoute]:
    """Every REST route of the emulator (Bulk API 2.0 routes are in ``bulk.py``)."""
    sob = f"{DATA}/sobjects"
    return [
        resource("/services/data", {"GET": versions}),
        resource(DATA, {"GET": resources}),
        resource(f"{DATA}/limits", {"GET": limits}),
        resource(sob, {"GET": describe_global}),
        resource(f"{sob}/{{sobject}}", {"GET": object_info, "POST": create_record}),
        resource(f"{sob}/{{sobject}}/describe", {"GET": describe_object}),
        resource(
            f"{sob}/{{sobject}}/{{record_id}}",
            {
                "GET": get_record,
                "PATCH": update_record,
                "DELETE": delete_record,
                "POST": create_by_id_path,
            },
        ),
        resource(
            f"{sob}/{{sobject}}/{{field}}/{{value:path}}",
            {"GET": get_by_external_id, "PATCH": upsert_record, "DELETE": delete_by_external_id},
        ),
        resource(f"{DATA}/query", {"GET": _run_query(include_deleted=False)}),
        resource(f"{DATA}/queryAll", {"GET": _run_query(include_deleted=True)}),
        resource(f"{DATA}/query/{{locator}}", {"GET": query_more}),
        resource(f"{DATA}/queryAll/{{locator}}", {"GET": query_more}),
        resource(
            f"{DATA}/composite/sobjects",
            {"POST": collection_create, "PATCH": collection_update, "DELETE": collection_delete},
        ),
        resource(
            f"{DATA}/composite/sobjects/{{sobject}}",
            {"GET": collection_retrieve, "POST": collection_retrieve},
        ),
        resource(f"{DATA}/composite/sobjects/{{sobject}}/{{field}}", {"PATCH": collection_upsert}),
    ]
