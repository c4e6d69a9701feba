"""The Salesforce layer: the only code that talks to Salesforce (through simple-salesforce).

``connect(creds)`` logs in and returns a ``SalesforceClient``, the engine's ``SalesforcePort``.
"""

from __future__ import annotations

from sf_activations.salesforce.client import LoginResult, SalesforceClient
from sf_activations.salesforce.connection import (
    AuthFlow,
    SalesforceCredentials,
    build_session,
    connect,
    credentials_from_connection_file,
)
from sf_activations.salesforce.errors import (
    SalesforceAuthError,
    SalesforceOutcomeUnknown,
    SalesforceRequestError,
    SalesforceUnavailable,
    is_transient,
)
from sf_activations.salesforce.soql import soql_in, soql_like, soql_literal

__all__ = [
    "AuthFlow",
    "LoginResult",
    "SalesforceAuthError",
    "SalesforceClient",
    "SalesforceCredentials",
    "SalesforceOutcomeUnknown",
    "SalesforceRequestError",
    "SalesforceUnavailable",
    "build_session",
    "connect",
    "credentials_from_connection_file",
    "is_transient",
    "soql_in",
    "soql_like",
    "soql_literal",
]
