"""``SalesforceClient``: the engine's ``SalesforcePort`` over REST, Collections and Bulk API 2.0
(ingest jobs, and query jobs for reading many records).

Every call goes through ``_send``, which owns retries, re-login and API-call accounting, so the
rules live in one place:

- Transient faults (HTTP 5xx, dropped connections, timeouts, request-level UNABLE_TO_LOCK_ROW,
  REQUEST_LIMIT_EXCEEDED) are retried with exponential backoff and jitter, within
  ``max_attempts``; then ``SalesforceUnavailable``.
- INVALID_SESSION_ID re-logs in once per call (for every call, Bulk included: simple-salesforce
  only does this for its own REST calls) and repeats the call at once.
- Anything else is permanent: ``SalesforceRequestError(code, message)``.

Which calls are safe to repeat after a lost response:

- reads (describe, query, job info, results, limits): always;
- Bulk query job create: a lost response at worst leaves a query job nobody reads (one more
  against the daily DailyBulkV2QueryJobs allowance);
- Collections update and upsert: they converge (the same values land again). An upsert whose
  first attempt did create the record reports ``created=False`` on the repeat;
- Collections delete: a repeat answers ENTITY_IS_DELETED for what the lost attempt deleted;
  after such a repeat we report those as deleted;
- Bulk job create: a lost response at worst leaves an empty Open job, which Salesforce discards;
- Bulk upload (PUT): not repeatable (one PUT per job), so the half-uploaded job is aborted and
  the whole create/upload/close is done again with a new job (nothing is processed before
  close);
- Bulk close: repeated; an "already closed" answer is checked against the job's state;
- Collections insert: NOT safe. Only faults that prove Salesforce did not process the request
  (503, INVALID_SESSION_ID, REQUEST_LIMIT_EXCEEDED, lock errors, a connection never opened) are
  retried; a lost response raises ``SalesforceOutcomeUnknown`` so the engine reconciles.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
import logging
import random
import re
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import requests
import urllib3

from sf_activations.salesforce.errors import (
    SalesforceAuthError,
    SalesforceOutcomeUnknown,
    SalesforceRequestError,
    SalesforceUnavailable,
    is_transient_status,
)
from sf_activations.salesforce.soql import soql_identifier, soql_literal
from sf_activations.sync.model import (
    BulkJobInfo,
    BulkOperation,
    ObjectDescribe,
    RecordError,
    RecordOutcome,
    SalesforcePort,
)

__all__ = ["ApiCallKind", "LoginResult", "SalesforceClient"]

logger = logging.getLogger(__name__)

ApiCallKind = Literal[
    "login",
    "describe",
    "query",
    "bulk_create",
    "bulk_upload",
    "bulk_close",
    "bulk_abort",
    "bulk_poll",
    "bulk_results",
    "bulk_query",
    "bulk_query_poll",
    "bulk_query_results",
    "collections",
    "limits",
]

COLLECTION_LIMIT = 200  # records per sObject Collections call (salesforce-api.md §2.5)
BULK_MAX_UPLOAD_BYTES = 100 * 1024 * 1024  # raw CSV per job (150 MB after base64)
LOOKUP_URL_CHARS = 8_000
"""The longest URL-encoded query a lookup sends in one GET: Salesforce refuses a URI and headers
over 16,384 bytes (414 / 431); half of that leaves room for the host, path and headers."""
LOOKUP_REST_QUERIES = 8
"""Lookups needing more REST queries than this read the field's values with one Bulk query."""
_LIMIT_INFO = re.compile(r"(?:^|[;\s])api-usage=(\d+)/(\d+)")
_RECORD_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
_CLOSED_STATES = frozenset({"UploadComplete", "InProgress", "JobComplete", "Failed"})

Safety = Literal["safe", "unsafe"]


@dataclass(frozen=True)
class LoginResult:
    """A live Salesforce session: the access token and the instance it belongs to."""

    session_id: str
    instance_url: str  # https://host[:port], no trailing slash

    def __repr__(self) -> str:
        return f"LoginResult(session_id='***', instance_url={self.instance_url!r})"


class LoginProvider(Protocol):
    """What the client needs to (re-)establish a session; ``connection.Authenticator``."""

    calls: int

    @property
    def can_relogin(self) -> bool: ...

    def login(self) -> LoginResult: ...


@dataclass(frozen=True)
class _Sent:
    response: requests.Response
    repeated_after_loss: bool  # an earlier attempt of this call may have been applied


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value) if value != value.to_integral_value() else int(value)
    msg = f"cannot send a {type(value).__name__} to Salesforce as JSON: {value!r}"
    raise TypeError(msg)


def _dumps(body: Any) -> bytes:
    return json.dumps(body, default=_json_default, ensure_ascii=False).encode("utf-8")


def _error_of(response: requests.Response) -> tuple[str, str]:
    """Salesforce's (code, message) from an error response of any shape."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()[:500]
        return f"HTTP_{response.status_code}", text or str(response.reason or "")
    item: Any = body[0] if isinstance(body, list) and body else body
    if isinstance(item, dict):
        code = item.get("errorCode") or item.get("statusCode") or item.get("error")
        message = item.get("message") or item.get("error_description") or ""
        if isinstance(body, list) and len(body) > 1:
            message += f" (and {len(body) - 1} more errors)"
        return str(code or f"HTTP_{response.status_code}"), str(message)
    return f"HTTP_{response.status_code}", str(body)[:500]


def _never_sent(exc: requests.RequestException) -> bool:
    """True if the connection failed before the request could reach the server."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason: Any = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


def _strip_attributes(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_attributes(v) for k, v in value.items() if k != "attributes"}
    if isinstance(value, list):
        return [_strip_attributes(v) for v in value]
    return value


def _record_error(errors: Sequence[Mapping[str, Any]]) -> RecordError:
    if not errors:
        return RecordError(code="UNKNOWN_EXCEPTION", message="Salesforce gave no error detail")
    first = errors[0]
    message = str(first.get("message") or "")
    for extra in errors[1:]:
        message += (
            f" (also {extra.get('statusCode') or extra.get('errorCode')}: {extra.get('message')})"
        )
    return RecordError(
        code=str(first.get("statusCode") or first.get("errorCode") or "UNKNOWN_EXCEPTION"),
        message=message,
        fields=tuple(str(f) for f in first.get("fields") or ()),
    )


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class SalesforceClient:
    """A logged-in connection to one org; implements ``sf_activations.sync.model.SalesforcePort``.

    Build it with ``sf_activations.salesforce.connect(creds)``. The tuning parameters are
    constructor arguments so tests can shrink every delay:

    - ``max_attempts``: HTTP attempts per call before ``SalesforceUnavailable`` (re-login
      repeats do not count);
    - ``backoff_base_s`` / ``backoff_max_s``: exponential backoff between attempts (with jitter);
    - ``limit_backoff_s``: first wait after REQUEST_LIMIT_EXCEEDED (then doubling, capped);
    - ``poll_initial_s`` / ``poll_max_s``: Bulk job polling (ingest and query), doubling from
      initial to max;
    - ``timeout``: (connect, read) seconds per HTTP request.
    """

    def __init__(
        self,
        session: requests.Session,
        login_provider: LoginProvider,
        login: LoginResult,
        *,
        api_version: str = "59.0",
        max_attempts: int = 5,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        limit_backoff_s: float = 5.0,
        poll_initial_s: float = 0.05,
        poll_max_s: float = 2.0,
        timeout: tuple[float, float] = (10.0, 120.0),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._session = session
        self._auth = login_provider
        self._login = login
        self._api_version = api_version
        self._max_attempts = max(1, max_attempts)
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._limit_backoff_s = limit_backoff_s
        self._poll_initial_s = poll_initial_s
        self._poll_max_s = poll_max_s
        self._timeout = timeout
        self._sleep = sleep
        self._describes: dict[str, ObjectDescribe] = {}
        self._calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._login_lock = threading.Lock()
        self._api_usage: tuple[int, int] | None = None
        # Final infos of jobs seen finished: a finished job never changes, and its counts tell
        # which result files are empty (see bulk_results).
        self._finished_jobs: dict[str, BulkJobInfo] = {}
        # job id -> when this client closed it (monotonic): the first poll waits a little.
        self._closed_at: dict[str, float] = {}
        self.bulk_poll_listener: Callable[[BulkJobInfo], None] | None = None
        """Called with the job's info after every poll that finds it still running (progress);
        ingest and query jobs alike."""

    # ---------------------------------------------------------------- session and accounting

    @property
    def instance_url(self) -> str:
        """The org's instance, e.g. ``https://acme.my.salesforce.com``."""
        return self._login.instance_url

    @property
    def api_version(self) -> str:
        """The REST API version every call uses, e.g. ``59.0``."""
        return self._api_version

    @property
    def session_id(self) -> str:
        """The current access token (a secret: never log it)."""
        return self._login.session_id

    def api_calls(self) -> Mapping[str, int]:
        """HTTP calls made so far (retries included), by kind; ``login`` counts login attempts."""
        with self._lock:
            counts = dict(self._calls)
        if self._auth.calls:
            counts["login"] = self._auth.calls
        return counts

    def api_usage(self) -> tuple[int, int] | None:
        """(used, max) daily API requests from the latest ``Sforce-Limit-Info`` header."""
        return self._api_usage

    def simple_salesforce(self) -> Any:
        """A ``simple_salesforce.Salesforce`` on the current session, for calls we do not wrap.

        It does not count its calls here and does not retry; prefer this client's methods.
        """
        from simple_salesforce import Salesforce

        return Salesforce(
            session_id=self._login.session_id,
            instance_url=self._login.instance_url,
            session=self._session,
            version=self._api_version,
        )

    def close(self) -> None:
        """Release the HTTP connections."""
        self._session.close()

    def __enter__(self) -> SalesforceClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SalesforceClient(instance_url={self.instance_url!r}, api_version={self._api_version!r})"

    def _count(self, kind: ApiCallKind) -> None:
        with self._lock:
            self._calls[kind] += 1

    def _note_limits(self, response: requests.Response) -> None:
        header = response.headers.get("Sforce-Limit-Info")
        if header:
            match = _LIMIT_INFO.search(header)
            if match:
                self._api_usage = (int(match.group(1)), int(match.group(2)))

    def _relogin(self, stale_session_id: str) -> None:
        if not self._auth.can_relogin:
            msg = (
                "Salesforce says the session expired or is invalid (INVALID_SESSION_ID). What to "
                "do: supply a fresh access token, or use a flow that can log in again by itself "
                "(jwt, client_credentials, refresh_token, password)."
            )
            raise SalesforceAuthError("INVALID_SESSION_ID", msg)
        with self._login_lock:
            # Another thread may have renewed it while we waited: use theirs.
            if self._login.session_id == stale_session_id:
                logger.info("Salesforce session expired; logging in again")
                self._login = self._auth.login()

    def _url(self, path: str) -> str:
        if path.startswith("/"):
            return self._login.instance_url + path
        return f"{self._login.instance_url}/services/data/v{self._api_version}/{path}"

    def _backoff(self, attempt: int, *, limit: bool, retry_after: str | None) -> float:
        base = self._limit_backoff_s if limit else self._backoff_base_s
        delay = min(self._backoff_max_s, base * 2 ** (attempt - 1))
        if retry_after and retry_after.isdigit():
            delay = max(delay, min(self._backoff_max_s, float(retry_after)))
        # Jitter spreads parallel partitions so they do not hammer Salesforce in step.
        return delay * random.uniform(0.5, 1.0)

    # ------------------------------------------------------------------------- the one sender

    def _send(
        self,
        kind: ApiCallKind,
        method: str,
        path: str,
        *,
        safety: Safety = "safe",
        expected: tuple[int, ...] = (200,),
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
        accept: str = "application/json",
        extra_headers: Mapping[str, str] | None = None,
    ) -> _Sent:
        """One logical call: attempts, re-login, backoff, accounting; returns the good response."""
        attempt = 0
        relogged = False
        maybe_applied = False
        while True:
            attempt += 1
            self._count(kind)
            session_id = self._login.session_id
            headers = {"Authorization": f"Bearer {session_id}", "Accept": accept}
            if content_type:
                headers["Content-Type"] = content_type
            if extra_headers:
                headers.update(extra_headers)
            limit = False
            retry_after: str | None = None
            try:
                response = self._session.request(
                    method,
                    self._url(path),
                    params=params,
                    data=body,
                    headers=headers,
                    timeout=self._timeout,
                )
            except requests.exceptions.SSLError as exc:
                msg = f"TLS failure talking to {self.instance_url}: {exc}"
                raise SalesforceRequestError("TLS_ERROR", msg) from None
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                failure = f"{type(exc).__name__}"
                if not _never_sent(exc):
                    if safety == "unsafe":
                        raise SalesforceOutcomeUnknown(kind, failure) from None
                    maybe_applied = True
            else:
                self._note_limits(response)
                status = response.status_code
                if status in expected:
                    return _Sent(response, repeated_after_loss=maybe_applied)
                code, message = _error_of(response)
                if status == 401 and code == "INVALID_SESSION_ID":
                    if relogged:
                        msg = (
                            "Salesforce rejected a session it had just issued (INVALID_SESSION_ID). "
                            "What to do: check the user's 'API Enabled' permission and session "
                            "settings such as 'Lock sessions to the IP address'."
                        )
                        raise SalesforceAuthError("INVALID_SESSION_ID", msg)
                    self._relogin(session_id)
                    relogged = True
                    attempt -= 1  # the renewed session gets a full budget
                    continue
                limit = code == "REQUEST_LIMIT_EXCEEDED"
                lock = code == "UNABLE_TO_LOCK_ROW"
                if not (is_transient_status(status) or limit or lock):
                    raise SalesforceRequestError(code, message)
                failure = f"HTTP {status} {code}"
                # 503 means Salesforce turned the request away unprocessed; other server
                # errors may come after the work was done.
                if is_transient_status(status) and status != 503:
                    if safety == "unsafe":
                        raise SalesforceOutcomeUnknown(kind, failure)
                    maybe_applied = True
                retry_after = response.headers.get("Retry-After")
            if attempt >= self._max_attempts:
                msg = (
                    f"Salesforce {kind} call kept failing ({failure}) after {attempt} attempts; "
                    "the affected records stay pending for the next run"
                )
                raise SalesforceUnavailable(msg)
            delay = self._backoff(attempt, limit=limit, retry_after=retry_after)
            logger.warning(
                "Salesforce %s call failed (%s), attempt %d of %d; retrying in %.2fs",
                kind,
                failure,
                attempt,
                self._max_attempts,
                delay,
            )
            self._sleep(delay)

    def _json(self, sent: _Sent) -> Any:
        try:
            return sent.response.json()
        except ValueError:
            msg = f"Salesforce answered {sent.response.request.method} with non-JSON content"
            raise SalesforceRequestError("UNEXPECTED_RESPONSE", msg) from None

    # ------------------------------------------------------------------------------ describe

    def describe(self, sobject: str, *, refresh: bool = False) -> ObjectDescribe:
        """The object's describe, cached per client (``refresh=True`` reads it again)."""
        soql_identifier(sobject)
        cache_key = sobject.lower()
        if not refresh and cache_key in self._describes:
            return self._describes[cache_key]
        try:
            sent = self._send("describe", "GET", f"sobjects/{sobject}/describe")
        except SalesforceRequestError as exc:
            if exc.code in ("NOT_FOUND", "INVALID_TYPE"):
                msg = (
                    f"Salesforce has no object {sobject!r} that this user can see ({exc.message}). "
                    "What to do: check the API name (custom objects end in __c) and the user's "
                    "object permissions."
                )
                raise SalesforceRequestError("NOT_FOUND", msg) from None
            raise
        result = ObjectDescribe.from_api(self._json(sent))
        self._describes[cache_key] = result
        return result

    # ---------------------------------------------------------------------------------- query

    def query(
        self, soql: str, *, include_deleted: bool = False, batch_size: int | None = None
    ) -> list[dict[str, Any]]:
        """All records of ``soql`` (follows ``nextRecordsUrl``), without ``attributes``.

        Build ``soql`` with ``soql_literal``/``soql_in`` for values. ``include_deleted`` uses
        ``queryAll`` (recycle bin included). ``batch_size`` (200..2000) asks Salesforce for
        smaller pages (a hint: Salesforce may answer bigger ones).
        """
        return list(self.query_iter(soql, include_deleted=include_deleted, batch_size=batch_size))

    def query_iter(
        self, soql: str, *, include_deleted: bool = False, batch_size: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Like ``query`` but yields records page by page (2,000 at a time from Salesforce)."""
        endpoint = "queryAll" if include_deleted else "query"
        options = {"Sforce-Query-Options": f"batchSize={int(batch_size)}"} if batch_size else None
        page = self._json(
            self._send("query", "GET", endpoint, params={"q": soql}, extra_headers=options)
        )
        while True:
            for record in page.get("records") or ():
                yield _strip_attributes(record)
            next_url = page.get("nextRecordsUrl")
            if page.get("done", True) or not next_url:
                return
            if not str(next_url).startswith("/services/"):
                msg = f"Salesforce answered an unexpected nextRecordsUrl: {next_url!r}"
                raise SalesforceRequestError("UNEXPECTED_RESPONSE", msg)
            page = self._json(self._send("query", "GET", str(next_url), extra_headers=options))

    # --------------------------------------------------------------------------------- limits

    def limits(self) -> dict[str, Any]:
        """The org's ``/limits`` (e.g. ``DailyApiRequests: {Max, Remaining}``)."""
        result: dict[str, Any] = self._json(self._send("limits", "GET", "limits"))
        return result

    # ---------------------------------------------------------------------------- Bulk API 2.0

    def bulk_submit(
        self,
        sobject: str,
        operation: BulkOperation,
        csv_data: bytes,
        *,
        external_id_field: str | None = None,
    ) -> str:
        """Create an ingest job, upload ``csv_data`` in one PUT, close it; return the job id.

        ``csv_data`` is UTF-8 CSV, comma-separated, LF line endings, at most 100 MB; ``#N/A``
        clears a field, an empty cell leaves it. A job that fails before it is closed is aborted.
        """
        soql_identifier(sobject)
        if operation == "upsert":
            if not external_id_field:
                msg = "a Bulk upsert needs external_id_field (the field records are matched on)"
                raise ValueError(msg)
            soql_identifier(external_id_field)
        if len(csv_data) > BULK_MAX_UPLOAD_BYTES:
            msg = (
                f"{len(csv_data)} bytes of CSV exceed one Bulk job's 100 MB; split the records "
                "into several jobs"
            )
            raise ValueError(msg)
        job: dict[str, Any] = {
            "object": sobject,
            "operation": operation,
            "contentType": "CSV",
            "columnDelimiter": "COMMA",
            "lineEnding": "LF",
        }
        if operation == "upsert":
            job["externalIdFieldName"] = external_id_field
        rounds = 0
        while True:
            rounds += 1
            created = self._create_job("bulk_create", "jobs/ingest", job)
            job_id = str(created["id"])
            try:
                if created.get("state") not in (None, "Open"):
                    msg = f"Salesforce created Bulk job {job_id} in state {created.get('state')}, not Open"
                    raise SalesforceRequestError("UNEXPECTED_RESPONSE", msg)
                self._send(
                    "bulk_upload",
                    "PUT",
                    f"jobs/ingest/{job_id}/batches",
                    safety="unsafe",
                    expected=(201, 200),
                    body=csv_data,
                    content_type="text/csv",
                )
                self._bulk_close(job_id)
                with self._lock:
                    self._closed_at[job_id] = time.monotonic()
            except SalesforceOutcomeUnknown as exc:
                # The upload may be half-stored and a job takes only one PUT: drop this job and
                # start over (nothing runs before close, so nothing was applied).
                self._abort_quietly(job_id)
                if rounds >= self._max_attempts:
                    raise SalesforceUnavailable(str(exc)) from None
                logger.warning("Bulk upload to job %s lost its response; using a new job", job_id)
                continue
            except BaseException:
                self._abort_quietly(job_id)
                raise
            return job_id

    def _create_job(self, kind: ApiCallKind, path: str, job: Mapping[str, Any]) -> Any:
        """POST a Bulk API 2.0 job definition; Salesforce's answer (the job's info)."""
        sent = self._send(
            kind,
            "POST",
            path,
            expected=(200, 201),
            body=_dumps(job),
            content_type="application/json",
        )
        return self._json(sent)

    def _bulk_close(self, job_id: str) -> None:
        try:
            self._send(
                "bulk_close",
                "PATCH",
                f"jobs/ingest/{job_id}",
                body=_dumps({"state": "UploadComplete"}),
                content_type="application/json",
            )
        except SalesforceRequestError:
            # A repeated close after a lost response finds the job already closed, which is
            # what we wanted; anything else is a real error.
            if self.bulk_job_info(job_id).state not in _CLOSED_STATES:
                raise

    def bulk_abort(self, job_id: str) -> BulkJobInfo:
        """Abort an ingest job that has not finished (state Aborted)."""
        sent = self._send(
            "bulk_abort",
            "PATCH",
            f"jobs/ingest/{self._job_id(job_id)}",
            body=_dumps({"state": "Aborted"}),
            content_type="application/json",
        )
        return BulkJobInfo.from_api(self._json(sent))

    def _abort_quietly(self, job_id: str) -> None:
        try:
            self.bulk_abort(job_id)
        except (SalesforceRequestError, SalesforceUnavailable) as exc:
            # Best effort: an unclosed job never runs, and Salesforce discards it later.
            logger.warning("could not abort Bulk job %s: %s", job_id, exc)

    @staticmethod
    def _job_id(job_id: str) -> str:
        if not _RECORD_ID.fullmatch(job_id):
            msg = f"{job_id!r} is not a Salesforce Bulk job id"
            raise ValueError(msg)
        return job_id

    def bulk_job_info(self, job_id: str) -> BulkJobInfo:
        """One GET of the job's info (state, counts, Salesforce's processing times)."""
        sent = self._send("bulk_poll", "GET", f"jobs/ingest/{self._job_id(job_id)}")
        info = BulkJobInfo.from_api(self._json(sent))
        if info.finished:
            with self._lock:
                self._finished_jobs[info.id] = info
        return info

    def bulk_wait(self, job_id: str, *, timeout_s: float = 86400.0) -> BulkJobInfo:
        """Poll until the job has finished (JobComplete, Failed or Aborted) and return its info.

        The first poll of a job this client just closed comes ``poll_initial_s`` after the close
        (a job found in the journal is polled at once); polls then double up to ``poll_max_s``:
        a small job is seen done within tens of milliseconds, a long one costs one call every
        few seconds. Each poll that finds the job still running is passed to
        ``bulk_poll_listener`` if set. A job still running after ``timeout_s`` raises
        ``SalesforceUnavailable`` (it keeps running; its id is enough to pick it up later).
        """
        with self._lock:
            closed_at = self._closed_at.pop(job_id, None)
        return self._wait_for(job_id, self.bulk_job_info, started_at=closed_at, timeout_s=timeout_s)

    def _wait_for(
        self,
        job_id: str,
        poll: Callable[[str], BulkJobInfo],
        *,
        started_at: float | None,
        timeout_s: float,
    ) -> BulkJobInfo:
        """The polling loop ``bulk_wait`` and ``bulk_query`` share (see ``bulk_wait``).

        ``started_at`` (monotonic) is when this client set the job running, None for a job it
        found elsewhere.
        """
        deadline = time.monotonic() + timeout_s
        interval = self._poll_initial_s
        if started_at is not None:
            # A job this client has just set running is not done yet: a poll right away would
            # be a call spent on "InProgress". (A job found in the journal is polled at once.)
            settle = started_at + self._poll_initial_s - time.monotonic()
            if settle > 0:
                self._sleep(settle)
            interval = min(interval * 2, self._poll_max_s)
        while True:
            info = poll(job_id)
            if info.finished:
                return info
            if self.bulk_poll_listener is not None:
                self.bulk_poll_listener(info)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                msg = f"Bulk job {job_id} is still {info.state} after {timeout_s:.0f}s"
                raise SalesforceUnavailable(msg)
            self._sleep(min(interval, remaining))
            interval = min(interval * 2, self._poll_max_s)

    def bulk_results(self, job_id: str) -> tuple[bytes, bytes, bytes]:
        """The job's successfulResults, failedResults and unprocessedrecords CSV bodies.

        A result file known to be empty is not downloaded (one API call saved each) when this
        client has seen the job finished: failedResults when the job reported no failed
        record, unprocessedrecords when it reached JobComplete (every record was processed).
        Such a file comes back as ``b""``.
        """
        job_id = self._job_id(job_id)
        with self._lock:
            info = self._finished_jobs.get(job_id)
        wanted = {
            "successfulResults": True,
            "failedResults": info is None or info.records_failed > 0,
            "unprocessedrecords": info is None or info.state != "JobComplete",
        }
        bodies = [
            self._send(
                "bulk_results", "GET", f"jobs/ingest/{job_id}/{part}", accept="text/csv"
            ).response.content
            if fetch
            else b""
            for part, fetch in wanted.items()
        ]
        return bodies[0], bodies[1], bodies[2]

    # ------------------------------------------------------------------- Bulk API 2.0 query

    def bulk_query(
        self, soql: str, *, max_records: int = 0, timeout_s: float = 86400.0
    ) -> Iterator[bytes]:
        """Run ``soql`` as a Bulk API 2.0 query job; yield its results page by page as CSV bytes.

        Each page is UTF-8 CSV with its own header row (columns in SELECT order), comma-separated,
        LF line endings, every value quoted and null as ``""``. ``max_records`` (> 0) caps the
        records per page, else Salesforce picks the page size. Build ``soql`` with
        ``soql_literal``/``soql_in`` for values; Bulk queries take no aggregates, GROUP BY,
        OFFSET or parent-to-child subqueries.

        The arguments are checked at once (``ValueError``); nothing is sent until the first page
        is asked for. Then the job is created (a query Salesforce refuses raises
        ``SalesforceRequestError`` with its code, e.g. INVALID_FIELD or MALFORMED_QUERY), polled
        like ``bulk_wait`` (``bulk_poll_listener`` sees it too; still running after
        ``timeout_s``: ``SalesforceUnavailable``), and its result pages fetched one per
        iteration by following ``Sforce-Locator``. A job that ends Failed or Aborted raises
        ``SalesforceRequestError`` (BULK_QUERY_FAILED / BULK_QUERY_ABORTED) with Salesforce's
        errorMessage and the job id.
        """
        if not isinstance(soql, str) or not soql.strip():
            msg = (
                f"bulk_query needs a SOQL query (e.g. 'SELECT Id, Name FROM Account'), not {soql!r}"
            )
            raise ValueError(msg)
        if isinstance(max_records, bool) or not isinstance(max_records, int) or max_records < 0:
            msg = (
                "max_records must be a whole number >= 0 (0 lets Salesforce pick the page "
                f"size), not {max_records!r}"
            )
            raise ValueError(msg)
        if not timeout_s > 0:
            msg = f"timeout_s must be > 0 seconds, not {timeout_s!r}"
            raise ValueError(msg)
        return self._bulk_query_pages(soql, max_records=max_records, timeout_s=timeout_s)

    def _bulk_query_pages(
        self, soql: str, *, max_records: int, timeout_s: float
    ) -> Iterator[bytes]:
        job = {
            "operation": "query",
            "query": soql,
            "contentType": "CSV",
            "columnDelimiter": "COMMA",
            "lineEnding": "LF",
        }
        created = self._create_job("bulk_query", "jobs/query", job)
        job_id = str(created["id"])
        info = self._wait_for(
            job_id, self._bulk_query_info, started_at=time.monotonic(), timeout_s=timeout_s
        )
        if info.state != "JobComplete":
            code = "BULK_QUERY_ABORTED" if info.state == "Aborted" else "BULK_QUERY_FAILED"
            msg = (
                f"Bulk query job {job_id} on {info.object or 'Salesforce'} ended {info.state}: "
                f"{info.error_message or 'Salesforce gave no errorMessage'}. What to do: check "
                "the query and the job in Setup > Bulk Data Load Jobs, then run it again."
            )
            raise SalesforceRequestError(code, msg)
        params: dict[str, str] = {}
        if max_records:
            params["maxRecords"] = str(max_records)
        while True:
            sent = self._send(
                "bulk_query_results",
                "GET",
                f"jobs/query/{job_id}/results",
                params=params,
                accept="text/csv",
            )
            locator = sent.response.headers.get("Sforce-Locator")
            if not locator:
                # Without it we cannot tell the last page from a cut-off result.
                msg = f"Salesforce sent Bulk query job {job_id}'s results without Sforce-Locator"
                raise SalesforceRequestError("UNEXPECTED_RESPONSE", msg)
            yield sent.response.content
            # The last page says so with the literal string "null" (salesforce-api.md §3.3).
            if locator == "null":
                return
            params["locator"] = locator

    def _bulk_query_info(self, job_id: str) -> BulkJobInfo:
        sent = self._send("bulk_query_poll", "GET", f"jobs/query/{self._job_id(job_id)}")
        return BulkJobInfo.from_api(self._json(sent))

    # --------------------------------------------------------------------------- lookups

    def lookup_ids(
        self, sobject: str, field: str, values: Sequence[str], *, numeric: bool = False
    ) -> list[tuple[str, Any]]:
        """(Id, value of ``field``) of the records whose ``field`` is one of ``values``.

        REST queries ``SELECT Id, <field> FROM <sobject> WHERE <field> IN (...)``, each URL
        kept under ``LOOKUP_URL_CHARS``; when that would take more than ``LOOKUP_REST_QUERIES``
        queries, one Bulk API query reads every non-null value of the field instead (a few
        calls however many records) and only the rows that can match are kept. Salesforce
        compares text ignoring case (except on case-sensitive fields): rows are returned as
        Salesforce matched them and the caller compares exactly. ``numeric``: the values are
        numbers (``"42"``, ``"-1.5"``).
        """
        soql_identifier(sobject)
        soql_identifier(field)
        unique = list(dict.fromkeys(values))
        if not unique:
            return []
        literals = [_number_literal(v) if numeric else soql_literal(v) for v in unique]
        head = f"SELECT Id, {field} FROM {sobject} WHERE {field} IN ("
        queries = _in_queries(head, literals, LOOKUP_URL_CHARS)
        if len(queries) <= LOOKUP_REST_QUERIES:
            return [(str(r["Id"]), r.get(field)) for soql in queries for r in self.query_iter(soql)]
        wanted = {_match_form(v, numeric=numeric) for v in unique}
        scan = f"SELECT Id, {field} FROM {sobject} WHERE {field} != null"
        out: list[tuple[str, Any]] = []
        for page in self.bulk_query(scan):
            for row in csv.DictReader(io.StringIO(page.decode("utf-8"))):
                value = row.get(field)
                if value not in (None, "") and _match_form(value, numeric=numeric) in wanted:
                    out.append((row["Id"], value))
        return out

    # ---------------------------------------------------------------------- sObject Collections

    def _collection_call(
        self,
        method: str,
        path: str,
        sobject: str,
        records: Sequence[Mapping[str, Any]],
        keys: Sequence[str],
        *,
        safety: Safety,
    ) -> list[RecordOutcome]:
        if len(keys) != len(records):
            msg = f"{len(keys)} keys for {len(records)} records: give one key per record"
            raise ValueError(msg)
        outcomes: list[RecordOutcome] = []
        for start in range(0, len(records), COLLECTION_LIMIT):
            chunk = records[start : start + COLLECTION_LIMIT]
            chunk_keys = keys[start : start + COLLECTION_LIMIT]
            payload = {
                "allOrNone": False,
                "records": [{"attributes": {"type": sobject}, **dict(r)} for r in chunk],
            }
            sent = self._send(
                "collections",
                method,
                path,
                safety=safety,
                body=_dumps(payload),
                content_type="application/json",
            )
            outcomes.extend(self._outcomes(sent, chunk_keys, created=method == "POST"))
        return outcomes

    def _outcomes(self, sent: _Sent, keys: Sequence[str], *, created: bool) -> list[RecordOutcome]:
        items = self._json(sent)
        if not isinstance(items, list) or len(items) != len(keys):
            count = len(items) if isinstance(items, list) else "no"
            msg = f"Salesforce answered {count} results for {len(keys)} records"
            raise SalesforceRequestError("UNEXPECTED_RESPONSE", msg)
        outcomes = []
        for key, item in zip(keys, items, strict=True):
            record_id = item.get("id") or None
            if item.get("success"):
                outcomes.append(
                    RecordOutcome(
                        key=key,
                        success=True,
                        salesforce_id=record_id,
                        created=bool(item.get("created", created)),
                    )
                )
            else:
                outcomes.append(
                    RecordOutcome(
                        key=key,
                        success=False,
                        salesforce_id=record_id,
                        error=_record_error(item.get("errors") or ()),
                    )
                )
        return outcomes

    def collection_insert(
        self, sobject: str, records: Sequence[Mapping[str, Any]], *, keys: Sequence[str]
    ) -> list[RecordOutcome]:
        """sObject Collections create (allOrNone=false, 200 per call); ``keys`` label outcomes.

        Not repeated after a lost response: raises ``SalesforceOutcomeUnknown`` instead, since
        repeating could create duplicates (see the module doc).
        """
        soql_identifier(sobject)
        return self._collection_call(
            "POST", "composite/sobjects", sobject, records, keys, safety="unsafe"
        )

    def collection_update(
        self, sobject: str, records: Sequence[Mapping[str, Any]], *, keys: Sequence[str]
    ) -> list[RecordOutcome]:
        """sObject Collections update; each record carries ``Id``. None clears a field."""
        soql_identifier(sobject)
        return self._collection_call(
            "PATCH", "composite/sobjects", sobject, records, keys, safety="safe"
        )

    def collection_upsert(
        self, sobject: str, external_id_field: str, records: Sequence[Mapping[str, Any]]
    ) -> list[RecordOutcome]:
        """sObject Collections upsert on ``external_id_field``; outcome keys are its values."""
        soql_identifier(sobject)
        soql_identifier(external_id_field)
        wanted = external_id_field.lower()
        keys: list[str] = []
        for position, record in enumerate(records):
            value = next((v for k, v in record.items() if k.lower() == wanted), None)
            if value is None or value == "":
                msg = (
                    f"record {position} of the {sobject} upsert has no {external_id_field} value; "
                    "every upserted record needs its external id"
                )
                raise ValueError(msg)
            keys.append(str(value))
        return self._collection_call(
            "PATCH",
            f"composite/sobjects/{sobject}/{external_id_field}",
            sobject,
            records,
            keys,
            safety="safe",
        )

    def collection_delete(self, ids: Sequence[str]) -> list[RecordOutcome]:
        """sObject Collections delete (allOrNone=false, 200 per call); ``key`` is the Id."""
        outcomes: list[RecordOutcome] = []
        for chunk in _chunks(ids, COLLECTION_LIMIT):
            # An id with a comma or other character would shift every later result: refuse it
            # locally, per record, the way Salesforce would.
            good = [i for i in chunk if _RECORD_ID.fullmatch(i)]
            by_id: dict[str, RecordOutcome] = {}
            if good:
                sent = self._send(
                    "collections",
                    "DELETE",
                    "composite/sobjects",
                    params={"ids": ",".join(good), "allOrNone": "false"},
                )
                for result in self._outcomes(sent, good, created=False):
                    outcome = result
                    if (
                        sent.repeated_after_loss
                        and result.error is not None
                        and result.error.code == "ENTITY_IS_DELETED"
                    ):
                        # The attempt whose response was lost deleted it.
                        outcome = RecordOutcome(
                            key=outcome.key, success=True, salesforce_id=outcome.key
                        )
                    by_id[outcome.key] = outcome
            for record_id in chunk:
                outcomes.append(
                    by_id.get(record_id)
                    or RecordOutcome(
                        key=record_id,
                        success=False,
                        error=RecordError(code="MALFORMED_ID", message=f"malformed id {record_id}"),
                    )
                )
        return outcomes


def _number_literal(value: str) -> str:
    """A SOQL number literal for ``value`` (plain digits: SOQL has no exponent notation)."""
    try:
        number = decimal.Decimal(value.strip())
    except decimal.InvalidOperation:
        number = decimal.Decimal("NaN")
    if not number.is_finite():
        msg = f"{value!r} is not a number; a numeric field can only be looked up by numbers"
        raise ValueError(msg)
    return f"{number:f}"


def _match_form(value: str, *, numeric: bool) -> Any:
    """What two values are compared by when filtering a scan: a superset of SOQL's matches."""
    if numeric:
        try:
            return decimal.Decimal(value.strip()).normalize()
        except decimal.InvalidOperation:
            return None
    return value.lower()


def _in_queries(head: str, literals: Sequence[str], max_url_chars: int) -> list[str]:
    """``head`` + ``lit, lit, ...`` + ``)`` queries whose URL-encoded form (as the ``q=``
    parameter of a GET) stays within ``max_url_chars``; every literal goes in exactly one."""
    budget = max_url_chars - len(urllib.parse.quote_plus(head)) - len("%29")
    queries: list[str] = []
    batch: list[str] = []
    used = 0
    for lit in literals:
        cost = len(urllib.parse.quote_plus(lit)) + len("%2C")
        if cost > budget:
            msg = f"a lookup value is too long for a query URL ({len(lit)} characters)"
            raise ValueError(msg)
        if batch and used + cost > budget:
            queries.append(head + ",".join(batch) + ")")
            batch, used = [], 0
        batch.append(lit)
        used += cost
    if batch:
        queries.append(head + ",".join(batch) + ")")
    return queries


def _conforms(client: SalesforceClient) -> SalesforcePort:
    # mypy checks here that the client still satisfies the engine's port.
    return client
