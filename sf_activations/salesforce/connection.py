"""Logging in to Salesforce (a real org or the emulator) and building the HTTP session.

This is where simple-salesforce's login quirks are handled once:

- it hard-codes the login hosts (``login``/``test``/``{mydomain}.my`` ``.salesforce.com``), so
  when ``login_url`` is not a salesforce.com URL (the emulator) an ``HTTPAdapter`` rewrites those
  hosts to the emulator's ``host:port`` and adds ``X-Original-Host`` so the emulator can tell a
  sandbox from production and a My Domain from the generic login host;
- requests ignores ``session.verify`` when REQUESTS_CA_BUNDLE is set, so a session given a
  ``ca_cert`` turns ``trust_env`` off (salesforce-api.md §0.3);
- it has no refresh-token grant: we post that one ourselves through the same session;
- its errors (``SalesforceAuthenticationFailed`` with a code that may be an HTTP status) become
  ``SalesforceAuthError`` with Salesforce's code and advice, scrubbed of every secret.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from simple_salesforce import SalesforceAuthenticationFailed, SalesforceLogin

from sf_activations.salesforce.client import LoginResult, SalesforceClient
from sf_activations.salesforce.errors import (
    SalesforceAuthError,
    SalesforceUnavailable,
    redact,
)

__all__ = [
    "AuthFlow",
    "Authenticator",
    "LoginResult",
    "SalesforceClient",
    "SalesforceCredentials",
    "SalesforceHostAdapter",
    "build_session",
    "connect",
    "credentials_from_connection_file",
]

logger = logging.getLogger(__name__)

AuthFlow = Literal["jwt", "client_credentials", "refresh_token", "password", "session"]
_AUTH_FLOWS: tuple[str, ...] = get_args(AuthFlow)

DEFAULT_TIMEOUT: tuple[float, float] = (10.0, 120.0)  # (connect, read) seconds
_SALESFORCE_SUFFIX = ".salesforce.com"
# The My Domain the emulator is addressed as for flows that real Salesforce only accepts on a
# My Domain (client credentials). Any ``*.my.salesforce.com`` host reaches the emulator.
_EMULATOR_MY_DOMAIN = "emulator.my"
_EMULATOR_SANDBOX_MY_DOMAIN = "emulator--sandbox.sandbox.my"

_SECRET_FIELDS = ("password", "security_token", "consumer_secret", "private_key", "refresh_token")


@dataclass(frozen=True)
class SalesforceCredentials:
    """How to reach and log in to one Salesforce org (or the emulator).

    ``login_url`` is ``https://login.salesforce.com``, ``https://test.salesforce.com``, a My
    Domain such as ``https://acme.my.salesforce.com``, or the emulator's
    ``https://127.0.0.1:PORT``. ``auth`` picks the flow; each flow needs its own fields
    (checked on construction). ``repr()`` never shows a secret.
    """

    login_url: str
    auth: AuthFlow
    username: str | None = None
    password: str | None = None
    security_token: str | None = None
    consumer_key: str | None = None
    consumer_secret: str | None = None
    private_key: str | None = None  # PEM text or a path to a PEM file (JWT)
    refresh_token: str | None = None
    session_id: str | None = None  # auth == "session"
    instance_url: str | None = None  # auth == "session"
    ca_cert: str | None = None  # PEM path to trust (the emulator's CA); None = system CAs
    sandbox: bool = False  # with the emulator or a non-My-Domain login: test vs login
    api_version: str = "59.0"

    def __post_init__(self) -> None:
        if self.auth not in _AUTH_FLOWS:
            msg = f"auth must be one of {', '.join(_AUTH_FLOWS)}, not {self.auth!r}"
            raise ValueError(msg)
        parsed = urlsplit(self.login_url)
        if parsed.scheme != "https" or not parsed.hostname:
            msg = (
                f"login_url must be an https:// URL such as https://login.salesforce.com, "
                f"got {self.login_url!r}"
            )
            raise ValueError(msg)
        if self.api_version.startswith("v"):
            msg = f"api_version is written without the v: {self.api_version[1:]!r}"
            raise ValueError(msg)
        needed: dict[str, tuple[str, ...]] = {
            "jwt": ("username", "consumer_key", "private_key"),
            "client_credentials": ("consumer_key", "consumer_secret"),
            "refresh_token": ("refresh_token", "consumer_key"),
            "password": ("username", "password"),
            "session": ("session_id", "instance_url"),
        }
        missing = [name for name in needed[self.auth] if not getattr(self, name)]
        if missing:
            msg = f"the {self.auth} login flow needs {', '.join(missing)} in the Salesforce connection"
            raise ValueError(msg)
        if self.auth == "client_credentials" and _login_domain(self) in ("login", "test"):
            msg = (
                "the client_credentials flow works only on a My Domain login URL "
                "(https://yourdomain.my.salesforce.com), not on login/test.salesforce.com"
            )
            raise ValueError(msg)

    def secrets(self) -> tuple[str, ...]:
        """Every secret value set on these credentials (used to scrub error text)."""
        values = [getattr(self, name) for name in (*_SECRET_FIELDS, "session_id")]
        return tuple(v for v in values if v)

    def __repr__(self) -> str:
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in (*_SECRET_FIELDS, "session_id") and value is not None:
                shown = "'***'"
            else:
                shown = repr(value)
            parts.append(f"{f.name}={shown}")
        return f"SalesforceCredentials({', '.join(parts)})"

    __str__ = __repr__


def _is_salesforce_login_host(host: str) -> bool:
    host = host.lower()
    return host in ("login.salesforce.com", "test.salesforce.com") or host.endswith(
        ".my.salesforce.com"
    )


def _emulator_netloc(creds: SalesforceCredentials) -> str | None:
    """The emulator's ``host:port`` when ``login_url`` is not Salesforce's, else None."""
    parsed = urlsplit(creds.login_url)
    host = (parsed.hostname or "").lower()
    if host.endswith(_SALESFORCE_SUFFIX):
        return None
    return parsed.netloc


def _login_domain(creds: SalesforceCredentials) -> str:
    """simple-salesforce's ``domain``: the part before ``.salesforce.com`` of the login host."""
    host = (urlsplit(creds.login_url).hostname or "").lower()
    if host.endswith(_SALESFORCE_SUFFIX):
        domain = host.removesuffix(_SALESFORCE_SUFFIX)
        if domain == "login" and creds.sandbox:
            return "test"
        return domain
    # The emulator: pick the host real Salesforce would use for this flow; the adapter sends it
    # to the emulator with X-Original-Host set to it.
    if creds.auth == "client_credentials":
        return _EMULATOR_SANDBOX_MY_DOMAIN if creds.sandbox else _EMULATOR_MY_DOMAIN
    return "test" if creds.sandbox else "login"


class SalesforceHostAdapter(HTTPAdapter):
    """An HTTPS adapter with default timeouts that can reroute Salesforce login hosts.

    With ``reroute_to`` set (the emulator's ``host:port``), requests for login.salesforce.com,
    test.salesforce.com and ``*.my.salesforce.com`` go there instead, carrying the original host
    in ``X-Original-Host``. Instance URLs (already the emulator's) pass through untouched.
    """

    def __init__(
        self,
        *,
        reroute_to: str | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        pool_maxsize: int = 10,
    ) -> None:
        super().__init__(pool_connections=4, pool_maxsize=pool_maxsize)
        self._reroute_to = reroute_to
        self._timeout = timeout

    def send(  # type: ignore[override]  # noqa: PLR0917 (requests' own signature)
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send ``request``, rerouted if it targets a Salesforce login host (see class doc)."""
        if self._reroute_to and request.url:
            parts = urlsplit(request.url)
            if parts.hostname and _is_salesforce_login_host(parts.hostname):
                request.url = urlunsplit(parts._replace(netloc=self._reroute_to))
                request.headers["X-Original-Host"] = parts.hostname
        # simple-salesforce's login calls pass no timeout; never wait forever.
        return super().send(
            request,
            stream=stream,
            timeout=timeout if timeout is not None else self._timeout,
            verify=verify,
            cert=cert,
            proxies=proxies,
        )


def build_session(
    creds: SalesforceCredentials, *, timeout: tuple[float, float] = DEFAULT_TIMEOUT
) -> requests.Session:
    """A ``requests.Session`` for ``creds``: TLS verification on, default timeouts, reroute.

    With ``ca_cert`` the session trusts that CA and ignores the environment's CA bundle
    (``trust_env=False``: otherwise REQUESTS_CA_BUNDLE silently overrides ``verify``).
    """
    session = requests.Session()
    if creds.ca_cert:
        session.trust_env = False
        session.verify = str(creds.ca_cert)
    else:
        session.verify = True
    adapter = SalesforceHostAdapter(reroute_to=_emulator_netloc(creds), timeout=timeout)
    session.mount("https://", adapter)
    # Plain HTTP never carries a Salesforce session: fail instead of leaking a token.
    session.mount("http://", _RefuseHTTPAdapter())
    return session


class _RefuseHTTPAdapter(HTTPAdapter):
    def send(
        self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
    ) -> requests.Response:  # type: ignore[override]
        msg = f"refusing to send a Salesforce request over plain HTTP: {urlsplit(request.url or '').netloc}"
        raise requests.exceptions.InvalidURL(msg)


# What to tell the user for each code Salesforce answers a login with, in our own words.
_ADVICE: dict[str, str] = {
    "INVALID_LOGIN": (
        "check the username, the password and the security token (Salesforce emails a new token "
        "after 'Reset My Security Token'); the user may also be locked out or frozen"
    ),
    "invalid_grant": (
        "Salesforce refused the grant: check the username, that the connected app is approved "
        "for this user (pre-authorized profile or permission set), that a JWT is signed with the "
        "key whose certificate is on the connected app, that a refresh token has not been "
        "revoked, and that production/sandbox (login/test) matches the org"
    ),
    "invalid_client_id": (
        "the consumer key is not known to this org: copy it again from the connected app, and "
        "check that the app exists in this org (production vs sandbox)"
    ),
    "invalid_client": "the consumer secret does not match the connected app's: copy it again",
    "invalid_client_credentials": "the consumer key or secret is wrong: copy them again",
    "OAUTH_APP_BLOCKED": (
        "an administrator blocked this connected app: ask them to unblock it under "
        "Setup > Connected Apps OAuth Usage"
    ),
    "unsupported_grant_type": (
        "this login flow is not enabled on the connected app (e.g. client credentials needs "
        "'Enable Client Credentials Flow' and a run-as user)"
    ),
    "INVALID_SESSION_ID": (
        "the session expired or was revoked: supply a fresh access token, or use a flow that "
        "can log in again by itself (jwt, client_credentials, refresh_token, password)"
    ),
    "LOGIN_MUST_USE_SECURITY_TOKEN": (
        "this network is not trusted by the org: append the security token (security_token)"
    ),
    "API_DISABLED_FOR_ORG": "the org's edition or the user's profile has no API access",
    "API_CURRENTLY_DISABLED": "the user's profile lacks the 'API Enabled' permission",
    "TLS_ERROR": (
        "the server's certificate was not trusted: for the emulator set ca_cert to the CA file "
        "from its connection.json"
    ),
}


def _auth_error(code: str, detail: str, creds: SalesforceCredentials) -> SalesforceAuthError:
    advice = _ADVICE.get(code) or _ADVICE.get(code.lower(), "")
    host = urlsplit(creds.login_url).netloc
    detail = (detail or code).strip().rstrip(".")
    text = f"Salesforce login ({creds.auth} flow at {host}) failed: {detail}"
    if advice:
        text += f". What to do: {advice}."
    return SalesforceAuthError(code, redact(text, creds.secrets()))


class Authenticator:
    """Runs one credentials' login flow through simple-salesforce, again whenever asked.

    Transient faults (5xx, dropped connections) are retried with backoff; each HTTP attempt is
    counted in ``calls``. A "session" flow never makes a call and cannot log in again.
    """

    def __init__(
        self,
        creds: SalesforceCredentials,
        session: requests.Session,
        *,
        max_attempts: int = 4,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.creds = creds
        self.session = session
        self.calls = 0
        self._max_attempts = max(1, max_attempts)
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._sleep = sleep

    @property
    def can_relogin(self) -> bool:
        """False for a given session id: nothing to log in again with."""
        return self.creds.auth != "session"

    def login(self) -> LoginResult:
        """Log in once (with retries of transient faults) and return the new session."""
        creds = self.creds
        if creds.auth == "session":
            assert creds.session_id is not None and creds.instance_url is not None
            return LoginResult(
                session_id=creds.session_id, instance_url=_origin(creds.instance_url)
            )
        attempt = 0
        while True:
            attempt += 1
            self.calls += 1
            try:
                session_id, sf_instance = self._login_once()
                return LoginResult(session_id=session_id, instance_url=f"https://{sf_instance}")
            except SalesforceAuthenticationFailed as exc:
                code = exc.code
                if isinstance(code, int) and code >= 500:
                    failure = f"HTTP {code}"
                else:
                    code_text = f"HTTP_{code}" if isinstance(code, int) else str(code or "UNKNOWN")
                    raise _auth_error(code_text, exc.auth_message, creds) from None
            except requests.exceptions.SSLError as exc:
                raise _auth_error("TLS_ERROR", f"{type(exc).__name__}: {exc}", creds) from None
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                failure = type(exc).__name__
            if attempt >= self._max_attempts:
                host = urlsplit(creds.login_url).netloc
                msg = redact(
                    f"Salesforce login at {host} kept failing ({failure}) after {attempt} "
                    "attempts; try again later",
                    creds.secrets(),
                )
                raise SalesforceUnavailable(msg)
            delay = min(self._backoff_max_s, self._backoff_base_s * 2 ** (attempt - 1))
            delay *= random.uniform(0.5, 1.0)  # jitter: parallel partitions do not retry in step
            logger.warning("Salesforce login failed (%s); retrying in %.2fs", failure, delay)
            self._sleep(delay)

    def _login_once(self) -> tuple[str, str]:
        creds = self.creds
        domain = _login_domain(creds)
        common: dict[str, Any] = {
            "session": self.session,
            "domain": domain,
            "sf_version": creds.api_version,
        }
        if creds.auth == "password":
            if creds.security_token is not None:
                return SalesforceLogin(  # type: ignore[no-any-return]
                    username=creds.username,
                    password=creds.password,
                    security_token=creds.security_token,
                    **common,
                )
            # No token: the OAuth password grant when a connected app is given (the token, if
            # the network needs one, is then already appended to the password), else SOAP for
            # a trusted network.
            return SalesforceLogin(  # type: ignore[no-any-return]
                username=creds.username,
                password=creds.password,
                consumer_key=creds.consumer_key,
                consumer_secret=creds.consumer_secret,
                **common,
            )
        if creds.auth == "jwt":
            key = creds.private_key or ""
            key_args: dict[str, Any] = {}
            if "-----BEGIN" in key:
                key_args["privatekey"] = key
            else:
                key_args["privatekey_file"] = key
            if domain not in ("login", "test"):
                # A My Domain: post the assertion there, with the audience real Salesforce
                # expects (login for production, test for sandboxes).
                common["instance_url"] = domain
                common["domain"] = "test" if (creds.sandbox or ".sandbox." in domain) else "login"
            return SalesforceLogin(  # type: ignore[no-any-return]
                username=creds.username,
                consumer_key=creds.consumer_key,
                **key_args,
                **common,
            )
        if creds.auth == "client_credentials":
            return SalesforceLogin(  # type: ignore[no-any-return]
                consumer_key=creds.consumer_key,
                consumer_secret=creds.consumer_secret,
                **common,
            )
        return self._refresh_token_login(domain)

    def _refresh_token_login(self, domain: str) -> tuple[str, str]:
        """The OAuth refresh-token grant, which simple-salesforce does not implement."""
        creds = self.creds
        data = {
            "grant_type": "refresh_token",
            "refresh_token": creds.refresh_token or "",
            "client_id": creds.consumer_key or "",
        }
        if creds.consumer_secret:
            data["client_secret"] = creds.consumer_secret
        response = self.session.post(
            f"https://{domain}.salesforce.com/services/oauth2/token",
            data=data,
            headers={"Accept": "application/json"},
        )
        try:
            body = response.json()
        except ValueError:
            raise SalesforceAuthenticationFailed(response.status_code, response.text) from None
        if response.status_code != 200 or not isinstance(body, dict):
            if not isinstance(body, dict):
                raise SalesforceAuthenticationFailed(response.status_code, response.text)
            raise SalesforceAuthenticationFailed(
                body.get("error") or response.status_code, body.get("error_description")
            )
        instance = str(body.get("instance_url") or "")
        return str(body["access_token"]), instance.removeprefix("https://").rstrip("/")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"https://{parts.netloc}" if parts.netloc else url.rstrip("/")


def connect(creds: SalesforceCredentials, **client_options: Any) -> SalesforceClient:
    """Log in with ``creds`` and return a ready ``SalesforceClient``.

    ``client_options`` go to ``SalesforceClient`` (retry budget, backoff and poll intervals,
    timeouts). Raises ``SalesforceAuthError`` when Salesforce refuses the login and
    ``SalesforceUnavailable`` when it cannot be reached.
    """
    timeout = client_options.get("timeout", DEFAULT_TIMEOUT)
    session = build_session(creds, timeout=timeout)
    auth_options: dict[str, Any] = {
        key: client_options[key]
        for key in ("backoff_base_s", "backoff_max_s", "sleep")
        if key in client_options
    }
    if "max_attempts" in client_options:
        auth_options["max_attempts"] = client_options["max_attempts"]
    authenticator = Authenticator(creds, session, **auth_options)
    try:
        first = authenticator.login()
    except BaseException:
        session.close()
        raise
    return SalesforceClient(
        session,
        authenticator,
        first,
        api_version=creds.api_version,
        **client_options,
    )


def credentials_from_connection_file(
    path: str | os.PathLike[str], auth: AuthFlow = "password"
) -> SalesforceCredentials:
    """Credentials for the emulator described by its ``connection.json``, for flow ``auth``.

    Only the fields the chosen flow needs are taken, so the flow is unambiguous. Relative file
    paths in the file (CA, JWT key) are resolved against the file's directory.
    """
    file = Path(path)
    try:
        info: dict[str, Any] = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        msg = f"no emulator connection file at {file}: start the emulator with --state-dir first"
        raise FileNotFoundError(msg) from None

    def resolve(value: Any) -> str | None:
        if not value:
            return None
        p = Path(str(value))
        return str(p if p.is_absolute() else file.parent / p)

    def text(key: str) -> str | None:
        value = info.get(key)
        return None if value is None else str(value)

    common: dict[str, Any] = {
        "login_url": str(info.get("login_url") or info["instance_url"]),
        "auth": auth,
        "ca_cert": resolve(info.get("ca_cert")),
        "sandbox": bool(info.get("sandbox", False)),
    }
    if info.get("api_version"):
        common["api_version"] = str(info["api_version"])
    per_flow: dict[str, dict[str, Any]] = {
        "password": {
            "username": text("username"),
            "password": text("password"),
            "security_token": text("security_token"),
        },
        "jwt": {
            "username": text("username"),
            "consumer_key": text("consumer_key"),
            "private_key": resolve(info.get("jwt_private_key")),
        },
        "client_credentials": {
            "consumer_key": text("consumer_key"),
            "consumer_secret": text("consumer_secret"),
        },
        "refresh_token": {
            "refresh_token": text("refresh_token"),
            "consumer_key": text("consumer_key"),
            "consumer_secret": text("consumer_secret"),
        },
        "session": {
            "session_id": text("access_token"),
            "instance_url": text("instance_url"),
        },
    }
    if auth not in per_flow:
        msg = f"auth must be one of {', '.join(_AUTH_FLOWS)}, not {auth!r}"
        raise ValueError(msg)
    return SalesforceCredentials(**common, **per_flow[auth])
