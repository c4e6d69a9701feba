"""Per-emulator runtime state that is not org data: faults, request log, limits, sessions.

Each class is small, thread-safe and driven both from Python (tests) and from the admin API.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

FaultAction = Literal["fail", "drop", "delay"]
RequestKind = Literal["auth", "rest", "bulk", "bulk_v1", "versions", "admin", "other"]


@dataclass(frozen=True)
class Fault:
    """One armed fault: what to do, to which requests, how many more times."""

    action: FaultAction
    status: int = 503
    seconds: float = 0.0
    path: re.Pattern[str] | None = None  # only requests whose path matches (search)
    method: str | None = None


@dataclass(frozen=True)
class FaultDecision:
    """What the middleware does to one request before it reaches the routes."""

    delay: float = 0.0
    fail_status: int | None = None
    drop: bool = False


@dataclass
class _Armed:
    fault: Fault
    remaining: int | None  # None = until cleared


class Faults:
    """Injected transport faults for requests under ``/services/data`` and ``/services/async``.

    Faults fire in the order they were armed; a request consumes at most one fail/drop and at
    most one delay, so ``fail_next(2)`` followed by ``drop_next(1)`` fails two requests and then
    drops the third.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: list[_Armed] = []

    def fail_next(
        self, n: int = 1, status: int = 503, *, path: str | None = None, method: str | None = None
    ) -> None:
        """Answer the next ``n`` matching requests with ``status`` (500, 502, 503, ...)."""
        self._arm(Fault("fail", status=status, path=_compile(path), method=_upper(method)), n)

    def drop_next(self, n: int = 1, *, path: str | None = None, method: str | None = None) -> None:
        """Close the connection of the next ``n`` matching requests without any response."""
        self._arm(Fault("drop", path=_compile(path), method=_upper(method)), n)

    def delay(
        self,
        seconds: float,
        n: int | None = None,
        *,
        path: str | None = None,
        method: str | None = None,
    ) -> None:
        """Hold the next ``n`` matching requests (every one if ``n`` is None) for ``seconds``."""
        self._arm(Fault("delay", seconds=seconds, path=_compile(path), method=_upper(method)), n)

    def clear(self) -> None:
        """Disarm every fault."""
        with self._lock:
            self._armed.clear()

    def pending(self) -> list[dict[str, Any]]:
        """The armed faults, for the admin API."""
        with self._lock:
            return [
                {
                    "action": a.fault.action,
                    "status": a.fault.status,
                    "seconds": a.fault.seconds,
                    "path": a.fault.path.pattern if a.fault.path else None,
                    "method": a.fault.method,
                    "remaining": a.remaining,
                }
                for a in self._armed
            ]

    def take(self, method: str, path: str) -> FaultDecision | None:
        """Consume the faults that apply to one request (None: nothing armed, the usual case)."""
        if not self._armed:  # unlocked fast path: a stale read only delays a new fault by one call
            return None
        with self._lock:
            delay = 0.0
            fail_status: int | None = None
            drop = False
            got_delay = got_fault = False
            for armed in list(self._armed):
                fault = armed.fault
                if fault.method is not None and fault.method != method:
                    continue
                if fault.path is not None and not fault.path.search(path):
                    continue
                if fault.action == "delay":
                    if got_delay:
                        continue
                    got_delay = True
                    delay = fault.seconds
                else:
                    if got_fault:
                        continue
                    got_fault = True
                    if fault.action == "drop":
                        drop = True
                    else:
                        fail_status = fault.status
                if armed.remaining is not None:
                    armed.remaining -= 1
                    if armed.remaining <= 0:
                        self._armed.remove(armed)
            if not (got_delay or got_fault):
                return None
            return FaultDecision(delay=delay, fail_status=fail_status, drop=drop)

    def _arm(self, fault: Fault, n: int | None) -> None:
        if n is not None and n < 1:
            msg = f"a fault needs n >= 1 (or None for 'until cleared'), got {n}"
            raise ValueError(msg)
        with self._lock:
            self._armed.append(_Armed(fault, n))


def _compile(pattern: str | None) -> re.Pattern[str] | None:
    return re.compile(pattern) if pattern else None


def _upper(method: str | None) -> str | None:
    return method.upper() if method else None


@dataclass(frozen=True)
class RequestLogEntry:
    """One request the emulator answered (or dropped: status 0)."""

    method: str
    path: str
    query: str
    status: int
    ms: float
    kind: RequestKind
    at: float  # epoch seconds when the request arrived

    def to_json(self) -> dict[str, Any]:
        """The entry as the admin API returns it."""
        return asdict(self)


class RequestLog:
    """The most recent requests, oldest first (bounded so a long-running emulator stays small)."""

    def __init__(self, maxlen: int = 100_000) -> None:
        self._entries: deque[RequestLogEntry] = deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def record(self, entry: RequestLogEntry) -> None:
        """Append one entry."""
        with self._lock:
            self._entries.append(entry)

    def entries(
        self,
        *,
        kind: RequestKind | None = None,
        method: str | None = None,
        path_contains: str | None = None,
    ) -> list[RequestLogEntry]:
        """The logged requests, optionally filtered."""
        with self._lock:
            items = list(self._entries)
        if kind is not None:
            items = [e for e in items if e.kind == kind]
        if method is not None:
            items = [e for e in items if e.method == method.upper()]
        if path_contains is not None:
            items = [e for e in items if path_contains in e.path]
        return items

    def count(self, *, kind: RequestKind | None = None, method: str | None = None) -> int:
        """How many logged requests match."""
        return len(self.entries(kind=kind, method=method))

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()


def _max_remaining(maximum: int, used: int) -> dict[str, int]:
    return {"Max": maximum, "Remaining": max(maximum - used, 0)}


@dataclass
class Limits:
    """The org's rolling 24-hour allocations (only the ones the emulator counts move).

    ``api_used`` counts every authenticated request under ``/services/data`` and
    ``/services/async``; the Bulk counters are moved by the Bulk routes.
    """

    daily_api_max: int = 15000
    api_used: int = 0
    bulk_batches_max: int = 15000  # shared by Bulk v1 batches and Bulk 2.0 ingest
    bulk_batches_used: int = 0
    bulk_v2_query_jobs_max: int = 10000
    bulk_v2_query_jobs_used: int = 0
    bulk_v2_query_storage_mb_max: int = 976562  # 1 TB
    bulk_v2_query_storage_mb_used: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def try_count_api_request(self) -> bool:
        """Count one API request; False (and nothing counted) when the allocation is spent."""
        with self._lock:
            if self.api_used >= self.daily_api_max:
                return False
            self.api_used += 1
            return True

    @property
    def api_remaining(self) -> int:
        """Requests left today."""
        return max(self.daily_api_max - self.api_used, 0)

    def set_api_remaining(self, remaining: int) -> None:
        """Pretend the org has used all but ``remaining`` of its daily API requests."""
        with self._lock:
            self.api_used = self.daily_api_max - max(0, min(remaining, self.daily_api_max))

    def count_bulk_batches(self, n: int = 1) -> None:
        """Count Bulk batches (Bulk 2.0 ingest: one per 10,000 records uploaded)."""
        with self._lock:
            self.bulk_batches_used += n

    def count_bulk_query_job(self, storage_mb: int = 0) -> None:
        """Count one Bulk 2.0 query job and the result storage it takes."""
        with self._lock:
            self.bulk_v2_query_jobs_used += 1
            self.bulk_v2_query_storage_mb_used += storage_mb

    def usage_header(self) -> str:
        """The ``Sforce-Limit-Info`` header value."""
        return f"api-usage={self.api_used}/{self.daily_api_max}"

    def reset(self) -> None:
        """Start a new 24-hour window."""
        with self._lock:
            self.api_used = 0
            self.bulk_batches_used = 0
            self.bulk_v2_query_jobs_used = 0
            self.bulk_v2_query_storage_mb_used = 0

    def snapshot(self) -> dict[str, dict[str, int]]:
        """The ``/limits`` response body, in the real shape (``{"Name": {"Max","Remaining"}}``)."""
        with self._lock:
            return {
                "ActiveScratchOrgs": _max_remaining(3, 0),
                "AnalyticsExternalDataSizeMB": _max_remaining(40960, 0),
                "ConcurrentAsyncGetReportInstances": _max_remaining(200, 0),
                "ConcurrentSyncReportRuns": _max_remaining(20, 0),
                "DailyAnalyticsDataflowJobExecutions": _max_remaining(60, 0),
                "DailyApiRequests": _max_remaining(self.daily_api_max, self.api_used),
                "DailyAsyncApexExecutions": _max_remaining(250000, 0),
                "DailyBulkApiBatches": _max_remaining(
                    self.bulk_batches_max, self.bulk_batches_used
                ),
                "DailyBulkApiRequests": _max_remaining(10000, 0),
                "DailyBulkV2QueryFileStorageMB": _max_remaining(
                    self.bulk_v2_query_storage_mb_max, self.bulk_v2_query_storage_mb_used
                ),
                "DailyBulkV2QueryJobs": _max_remaining(
                    self.bulk_v2_query_jobs_max, self.bulk_v2_query_jobs_used
                ),
                "DailyGenericStreamingApiEvents": _max_remaining(10000, 0),
                "DailyStreamingApiEvents": _max_remaining(10000, 0),
                "DataStorageMB": _max_remaining(5, 0),
                "FileStorageMB": _max_remaining(20, 0),
                "HourlyAsyncReportRuns": _max_remaining(1200, 0),
                "HourlyDashboardRefreshes": _max_remaining(200, 0),
                "HourlySyncReportRuns": _max_remaining(500, 0),
                "MassEmail": _max_remaining(10, 0),
                "SingleEmail": _max_remaining(15, 0),
            }


@dataclass
class Session:
    """One access token issued to the API user."""

    token: str
    user_id: str
    flow: str  # "soap", "password", "jwt", "client_credentials", "refresh_token", "initial"
    issued_at: float
    last_used: float


class Sessions:
    """Access tokens and their lifetime.

    Like Salesforce, a session times out after ``session_seconds`` of inactivity (each request
    extends it), and it can be ended at once: all sessions, or one token.
    """

    def __init__(
        self, org_id: str, session_seconds: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.org_id = org_id
        self.session_seconds = session_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._by_token: dict[str, Session] = {}

    def issue(self, user_id: str, flow: str, *, token: str | None = None) -> Session:
        """A new session (``token`` fixes its value, e.g. the one in connection.json)."""
        # Real session ids look like "00D5g000004AbCd!AQ0AQ...": the 15-character org id, a
        # "!" and an opaque part. Clients treat them as opaque, but the shape helps debugging.
        value = token or f"{self.org_id[:15]}!{secrets.token_urlsafe(72)}"
        now = self.clock()
        session = Session(value, user_id, flow, now, now)
        with self._lock:
            self._by_token[value] = session
        return session

    def check(self, token: str) -> Session | None:
        """The live session for ``token`` (its idle timer restarts), or None."""
        now = self.clock()
        with self._lock:
            session = self._by_token.get(token)
            if session is None:
                return None
            if now - session.last_used > self.session_seconds:
                del self._by_token[token]
                return None
            session.last_used = now
            return session

    def expire(self, token: str | None = None) -> int:
        """End one session, or all of them; returns how many ended."""
        with self._lock:
            if token is None:
                n = len(self._by_token)
                self._by_token.clear()
                return n
            return 1 if self._by_token.pop(token, None) is not None else 0

    def active(self) -> int:
        """Number of sessions not yet ended (idle ones included until next checked)."""
        with self._lock:
            return len(self._by_token)
