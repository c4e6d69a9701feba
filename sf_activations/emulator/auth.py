"""Login endpoints: SOAP ``login()``, the OAuth 2.0 token endpoint, userinfo and revoke.

They are served on the emulator's own host. Clients reach them through a requests adapter that
rewrites ``login.salesforce.com``, ``test.salesforce.com`` and ``*.my.salesforce.com`` to the
emulator and sends the host it replaced as ``X-Original-Host``; without that header a Host
header naming a Salesforce host is used, and otherwise the request counts as a production login
(``login.salesforce.com``). Bodies follow salesforce-api.md §1.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

if TYPE_CHECKING:
    from sf_activations.emulator.server import Emulator

LoginKind = Literal["login", "test", "mydomain"]
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ORIGINAL_HOST_HEADER = "x-original-host"

_SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
_LOGIN_FAULT_MESSAGE = "Invalid username, password, security token; or user locked out."


@dataclass(frozen=True)
class LoginHost:
    """The Salesforce host a login request was meant for."""

    host: str
    kind: LoginKind

    @property
    def sandbox(self) -> bool:
        """True for test.salesforce.com and sandbox My Domains."""
        return self.kind == "test" or self.host.endswith(".sandbox.my.salesforce.com")

    @property
    def login_url(self) -> str:
        """The generic login URL of the org's environment (the JWT audience, the id URL base)."""
        return "https://test.salesforce.com" if self.sandbox else "https://login.salesforce.com"


def login_host(request: Request) -> LoginHost:
    """Where the client thought it was logging in (``X-Original-Host``, else production)."""
    host = request.headers.get(ORIGINAL_HOST_HEADER)
    if not host:
        # A client that resolves the Salesforce names to the emulator (the server certificate
        # covers them) keeps the original Host header; anything else is a production login.
        sent = request.headers.get("host", "").lower().split(":", 1)[0]
        host = sent if sent.endswith(".salesforce.com") else "login.salesforce.com"
    host = host.lower().split(":", 1)[0]
    if host == "test.salesforce.com":
        return LoginHost(host, "test")
    if host.endswith(".my.salesforce.com"):
        return LoginHost(host, "mydomain")
    return LoginHost(host, "login")


def _emulator(request: Request) -> Emulator:
    return request.app.state.emulator  # type: ignore[no-any-return]


def routes() -> list[BaseRoute]:
    """The login routes, mounted by ``server.build_app``."""
    return [
        Route("/services/Soap/u/{version}", soap_login, methods=["POST"]),
        Route("/services/oauth2/token", oauth_token, methods=["POST"]),
        Route("/services/oauth2/userinfo", userinfo, methods=["GET", "POST"]),
        Route("/services/oauth2/revoke", revoke, methods=["GET", "POST"]),
        Route("/id/{org_id}/{user_id}", identity, methods=["GET", "POST"]),
    ]


# ---------------------------------------------------------------------------------------------
# SOAP login


def _soap_fault(code: str, message: str) -> Response:
    # The exact envelope real Salesforce answers with (HTTP 500); simple-salesforce reads the
    # literal tags sf:exceptionCode / sf:exceptionMessage, jsforce reads faultstring.
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:sf="urn:fault.partner.soap.sforce.com" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body><soapenv:Fault>"
        f"<faultcode>{escape(code)}</faultcode>"
        f"<faultstring>{escape(code)}: {escape(message)}</faultstring>"
        '<detail><sf:LoginFault xsi:type="sf:LoginFault">'
        f"<sf:exceptionCode>{escape(code)}</sf:exceptionCode>"
        f"<sf:exceptionMessage>{escape(message)}</sf:exceptionMessage>"
        "</sf:LoginFault></detail>"
        "</soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    )
    return Response(body, status_code=500, media_type="text/xml; charset=utf-8")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _login_fields(body: bytes) -> tuple[str, str] | None:
    """(username, password) from a SOAP login envelope, or None if it is not one."""
    try:
        # Safe on untrusted input: expat >= 2.4 refuses entity-expansion bombs.
        root = ET.fromstring(body)
    except ET.ParseError:
        return None
    login = next((el for el in root.iter() if _local(el.tag) == "login"), None)
    if login is None:
        return None
    values = {_local(child.tag): (child.text or "") for child in login}
    if "username" not in values:
        return None
    return values["username"], values.get("password", "")


async def soap_login(request: Request) -> Response:
    """``POST /services/Soap/u/{version}``: the partner API ``login()`` call."""
    emulator = _emulator(request)
    version = request.path_params["version"]
    if version not in emulator.api_versions:
        return _soap_fault("UNSUPPORTED_API_VERSION", "Invalid Api version specified on URL")
    fields = _login_fields(await request.body())
    if fields is None:
        # UNVERIFIED wording; real Salesforce answers a client fault for a malformed envelope.
        return _soap_fault("INVALID_LOGIN", _LOGIN_FAULT_MESSAGE)
    username, password = fields
    if not emulator.password_matches(username, password):
        return _soap_fault("INVALID_LOGIN", _LOGIN_FAULT_MESSAGE)
    org = emulator.org
    if not org.permissions.api_enabled:
        return _soap_fault("API_CURRENTLY_DISABLED", "API is disabled for this User")
    session = emulator.sessions.issue(org.user_id, "soap")
    host = login_host(request)
    base = emulator.instance_url
    org15 = org.org_id[:15]
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{_SOAP_ENV}" xmlns="urn:partner.soap.sforce.com" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body><loginResponse><result>"
        f"<metadataServerUrl>{base}/services/Soap/m/{version}/{org15}</metadataServerUrl>"
        "<passwordExpired>false</passwordExpired>"
        f"<sandbox>{'true' if host.sandbox else 'false'}</sandbox>"
        f"<serverUrl>{base}/services/Soap/u/{version}/{org15}</serverUrl>"
        f"<sessionId>{escape(session.token)}</sessionId>"
        f"<userId>{org.user_id}</userId>"
        "<userInfo>"
        "<accessibilityMode>false</accessibilityMode>"
        "<currencySymbol>$</currencySymbol>"
        "<orgAttachmentFileSizeLimit>5242880</orgAttachmentFileSizeLimit>"
        "<orgDefaultCurrencyIsoCode>USD</orgDefaultCurrencyIsoCode>"
        "<orgDisallowHtmlAttachments>false</orgDisallowHtmlAttachments>"
        "<orgHasPersonAccounts>false</orgHasPersonAccounts>"
        f"<organizationId>{org.org_id}</organizationId>"
        "<organizationMultiCurrency>false</organizationMultiCurrency>"
        "<organizationName>sf_activations emulator</organizationName>"
        "<profileId>00e000000000000AAA</profileId>"
        '<roleId xsi:nil="true"/>'
        f"<sessionSecondsValid>{emulator.config.session_seconds}</sessionSecondsValid>"
        f'<userDefaultCurrencyIsoCode xsi:nil="true"/>'
        f"<userEmail>{escape(org.username)}</userEmail>"
        "<userFullName>Emulator Admin</userFullName>"
        f"<userId>{org.user_id}</userId>"
        "<userLanguage>en_US</userLanguage>"
        "<userLocale>en_US</userLocale>"
        f"<userName>{escape(org.username)}</userName>"
        "<userTimeZone>America/Los_Angeles</userTimeZone>"
        "<userType>Standard</userType>"
        "<userUiSkin>Theme3</userUiSkin>"
        "</userInfo></result></loginResponse></soapenv:Body></soapenv:Envelope>"
    )
    return Response(body, status_code=200, media_type="text/xml; charset=utf-8")


# ---------------------------------------------------------------------------------------------
# OAuth 2.0 token endpoint


class OAuthError(Exception):
    """An OAuth error answer: HTTP 400 ``{"error", "error_description"}``."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status

    def response(self) -> Response:
        """The JSON error response."""
        return JSONResponse(
            {"error": self.error, "error_description": self.description},
            status_code=self.status,
        )


def _authentication_failure() -> OAuthError:
    return OAuthError("invalid_grant", "authentication failure")


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _form(body: bytes) -> dict[str, str]:
    # The token endpoint takes application/x-www-form-urlencoded; parse it directly rather than
    # pulling in python-multipart for Starlette's request.form().
    parsed = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {key: values[0] for key, values in parsed.items()}


def _client_from_basic(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    key, sep, secret = decoded.partition(":")
    return (key, secret) if sep else None


def _check_client(emulator: Emulator, client_id: str | None, secret: str | None) -> None:
    config = emulator.config
    if client_id != config.consumer_key:
        raise OAuthError("invalid_client_id", "client identifier invalid")
    if emulator.app_blocked:
        # Description from a public report whose text was partly garbled: UNVERIFIED wording.
        raise OAuthError("OAUTH_APP_BLOCKED", "this app is blocked by admin")
    if secret is not None and not hmac.compare_digest(secret, config.consumer_secret):
        raise OAuthError("invalid_client", "invalid client credentials")


def _verify_jwt(emulator: Emulator, assertion: str, host: LoginHost) -> str:
    """Check an RS256 JWT bearer assertion; returns its subject (the username)."""
    parts = assertion.split(".")
    if len(parts) != 3:
        raise OAuthError("invalid_grant", "invalid assertion")
    try:
        header = json.loads(_b64url_decode(parts[0]))
        claims = json.loads(_b64url_decode(parts[1]))
        signature = _b64url_decode(parts[2])
    except (ValueError, binascii.Error) as exc:
        raise OAuthError("invalid_grant", "invalid assertion") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise OAuthError("invalid_grant", "invalid assertion")
    # Salesforce checks the issuer (the connected app) before the signature.
    if claims.get("iss") != emulator.config.consumer_key:
        raise OAuthError("invalid_client_id", "client identifier invalid")
    if emulator.app_blocked:
        raise OAuthError("OAUTH_APP_BLOCKED", "this app is blocked by admin")
    if header.get("alg") != "RS256":
        raise OAuthError("invalid_grant", "invalid assertion")
    try:
        emulator.jwt_public_key().verify(
            signature,
            f"{parts[0]}.{parts[1]}".encode("ascii"),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    except InvalidSignature as exc:
        raise OAuthError("invalid_grant", "invalid assertion") from exc
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if host.login_url not in audiences:
        raise OAuthError("invalid_grant", "audience is invalid")
    # simple-salesforce sends exp as a *string* of epoch seconds; Salesforce accepts both.
    try:
        exp = float(claims.get("exp"))  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise OAuthError("invalid_grant", "invalid assertion") from exc
    if exp <= time.time():
        # UNVERIFIED wording for an expired assertion.
        raise OAuthError("invalid_grant", "expired authorization code")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not emulator.username_matches(subject):
        # The real answer for a user who is not pre-authorised for the app.
        raise OAuthError("invalid_grant", "user hasn't approved this consumer")
    return subject


async def oauth_token(request: Request) -> Response:
    """``POST /services/oauth2/token`` for the password, JWT bearer, client credentials and
    refresh token grants."""
    emulator = _emulator(request)
    form = _form(await request.body())
    host = login_host(request)
    grant = form.get("grant_type", "")
    try:
        if grant == "password":
            _check_client(emulator, form.get("client_id"), form.get("client_secret", ""))
            if not emulator.password_matches(form.get("username", ""), form.get("password", "")):
                raise _authentication_failure()
            flow = "password"
        elif grant == JWT_BEARER:
            _verify_jwt(emulator, form.get("assertion", ""), host)
            flow = "jwt"
        elif grant == "client_credentials":
            basic = _client_from_basic(request.headers.get("authorization"))
            client_id, secret = basic or (form.get("client_id"), form.get("client_secret", ""))
            if host.kind != "mydomain":
                # Salesforce serves the client credentials flow on My Domain hosts only.
                raise OAuthError("invalid_grant", "request not supported on this domain")
            _check_client(emulator, client_id, secret)
            flow = "client_credentials"
        elif grant == "refresh_token":
            _check_client(emulator, form.get("client_id"), form.get("client_secret"))
            if not hmac.compare_digest(
                form.get("refresh_token", ""), emulator.config.refresh_token
            ):
                raise OAuthError("invalid_grant", "expired access/refresh token")
            flow = "refresh_token"
        else:
            raise OAuthError("unsupported_grant_type", "grant type not supported")
    except OAuthError as err:
        return err.response()
    return JSONResponse(token_response(emulator, host, flow))


def token_response(emulator: Emulator, host: LoginHost, flow: str) -> dict[str, Any]:
    """Issue a session and build the token endpoint's success body."""
    org = emulator.org
    session = emulator.sessions.issue(org.user_id, flow)
    identity_url = f"{host.login_url}/id/{org.org_id}/{org.user_id}"
    issued_at = str(int(session.issued_at * 1000))
    # Salesforce signs id + issued_at with the consumer secret (HMAC-SHA256, base64).
    digest = hmac.new(
        emulator.config.consumer_secret.encode(),
        (identity_url + issued_at).encode(),
        hashlib.sha256,
    ).digest()
    body: dict[str, Any] = {
        "access_token": session.token,
        "instance_url": emulator.instance_url,
        "id": identity_url,
        "token_type": "Bearer",
        "issued_at": issued_at,
        "signature": base64.b64encode(digest).decode("ascii"),
        "scope": "api web refresh_token" if flow == "refresh_token" else "api web",
    }
    return body


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() in ("bearer", "oauth") and token.strip():
        return token.strip()
    return None


def _identity(emulator: Emulator, host: LoginHost) -> dict[str, Any]:
    org = emulator.org
    return {
        "sub": f"{host.login_url}/id/{org.org_id}/{org.user_id}",
        "user_id": org.user_id,
        "organization_id": org.org_id,
        "preferred_username": org.username,
        "nickname": org.username.split("@", 1)[0],
        "name": "Emulator Admin",
        "email": org.username,
        "email_verified": True,
        "user_type": "STANDARD",
        "active": True,
        "locale": "en_US",
        "language": "en_US",
        "utcOffset": -28800000,
        "is_app_installed": True,
        "urls": {
            "rest": f"{emulator.instance_url}/services/data/v{{version}}/",
            "sobjects": f"{emulator.instance_url}/services/data/v{{version}}/sobjects/",
            "query": f"{emulator.instance_url}/services/data/v{{version}}/query/",
        },
    }


async def userinfo(request: Request) -> Response:
    """``/services/oauth2/userinfo``: the OpenID Connect user info of the session's user."""
    emulator = _emulator(request)
    token = _bearer(request)
    if token is None or emulator.sessions.check(token) is None:
        # Real Salesforce answers a bad token here with a plain-text 403.
        return PlainTextResponse("Bad_OAuth_Token", status_code=403)
    return JSONResponse(_identity(emulator, login_host(request)))


async def identity(request: Request) -> Response:
    """``/id/{org}/{user}``: the identity URL returned as ``id`` by the token endpoint."""
    emulator = _emulator(request)
    org = emulator.org
    token = _bearer(request)
    if token is None or emulator.sessions.check(token) is None:
        return PlainTextResponse("Bad_OAuth_Token", status_code=403)
    if request.path_params["org_id"][:15] != org.org_id[:15] or (
        request.path_params["user_id"][:15] != org.user_id[:15]
    ):
        return PlainTextResponse("Bad_Id", status_code=403)
    body = _identity(emulator, login_host(request))
    body["id"] = body["sub"]
    body["username"] = org.username
    return JSONResponse(body)


async def revoke(request: Request) -> Response:
    """``/services/oauth2/revoke``: end one session (``token`` form field or query parameter)."""
    emulator = _emulator(request)
    token = request.query_params.get("token") or _form(await request.body()).get("token")
    if not token or emulator.sessions.expire(token) == 0:
        return JSONResponse(
            {
                "error": "unsupported_token_type",
                "error_description": "this token type is not supported",
            },
            status_code=400,
        )
    return Response(status_code=200)
