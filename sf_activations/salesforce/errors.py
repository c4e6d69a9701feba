"""The Salesforce layer's error taxonomy: transient faults are retried, permanent ones raised.

Three outcomes reach the engine:

- ``SalesforceRequestError(code, message)``: permanent. Retrying the same request cannot help
  (bad field, unknown object, no permission). ``SalesforceAuthError`` is the login flavour.
- ``SalesforceUnavailable``: a transient fault outlived the retry budget. The records stay
  pending and the next run retries them.
- ``SalesforceOutcomeUnknown`` (a ``SalesforceUnavailable``): a write that is not safe to repeat
  (a Collections insert) may or may not have reached Salesforce. The engine must reconcile
  those records (find them by key) before it sends them again, or it may create duplicates.
"""

from __future__ import annotations

from collections.abc import Iterable

from sf_activations.sync.model import SalesforceRequestError, SalesforceUnavailable

__all__ = [
    "PERMANENT_HTTP_STATUSES",
    "TRANSIENT_CODES",
    "SalesforceAuthError",
    "SalesforceOutcomeUnknown",
    "SalesforceRequestError",
    "SalesforceUnavailable",
    "is_transient",
    "is_transient_status",
    "redact",
]

# Salesforce status codes that describe the moment, not the data: the same request can succeed
# later. Everything else is a data or configuration error (salesforce-api.md §4).
TRANSIENT_CODES: frozenset[str] = frozenset(
    {
        "UNABLE_TO_LOCK_ROW",
        "REQUEST_LIMIT_EXCEEDED",
        "INVALID_SESSION_ID",
        "SERVER_UNAVAILABLE",
        "REQUEST_RUNNING_TOO_LONG",
        "CONCURRENT_REQUESTS_LIMIT_EXCEEDED",
        "TXN_SECURITY_METERING_ERROR",
    }
)

# CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY is a trigger's verdict and usually permanent, but this
# message means the platform gave up retrying a lock inside the trigger: the record is fine.
_TRANSIENT_MESSAGES: tuple[str, ...] = (
    "Too many retries of batch save",
    "unable to obtain exclusive access",
)

PERMANENT_HTTP_STATUSES: frozenset[int] = frozenset({400, 403, 404, 405, 409, 412, 414, 415})


def is_transient(code: str, message: str | None = None) -> bool:
    """True if a Salesforce error ``code`` (with its ``message``) is worth retrying later.

    Works for request-level codes (``errorCode``) and per-record ones (``statusCode`` and the
    code part of a Bulk ``sf__Error`` cell).
    """
    if code.upper() in TRANSIENT_CODES:
        return True
    if message and code.upper() == "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY":
        return any(hint in message for hint in _TRANSIENT_MESSAGES)
    return False


def is_transient_status(status: int) -> bool:
    """True for HTTP statuses that say "try again" (server errors and gateway timeouts)."""
    return status >= 500


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every secret value replaced by ``***`` (short values are left alone).

    Salesforce never echoes passwords, but proxies and error pages might; this keeps them out
    of exception text and logs whatever the server answers.
    """
    for secret in secrets:
        # A 1-3 character "secret" would blank out ordinary words; real secrets are longer.
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


class SalesforceAuthError(SalesforceRequestError):
    """Salesforce refused to log in (or a session could not be renewed).

    ``code`` is Salesforce's own (``INVALID_LOGIN``, ``invalid_grant``, ``invalid_client_id``,
    ``OAUTH_APP_BLOCKED``, ``INVALID_SESSION_ID``...); ``message`` says what to do about it.
    Neither ever contains a password, token, secret or key.
    """


class SalesforceOutcomeUnknown(SalesforceUnavailable):
    """A write that must not be blindly repeated lost its response (dropped, 500, timeout).

    Raised for Collections inserts only: every other call this layer makes is safe to repeat.
    """

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(
            f"{kind}: the response was lost ({detail}); Salesforce may or may not have applied "
            "the request. Find the affected records by their key before sending them again."
        )
        self.kind = kind
