"""Shared fixtures: a running Salesforce emulator and simple-salesforce clients logged in to it.

One HTTPS emulator serves the whole test session (per xdist worker); ``emulator`` resets it to a
fresh org before each test, which is much cheaper than starting uvicorn again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests

from sf_activations.emulator.server import EmulatorServer
from sf_activations.emulator.testing import client_session, login, running_emulator
from sf_activations.salesforce import SalesforceClient, connect, credentials_from_connection_file
from sf_activations.sync.state import StateStore
from sf_activations_tests.support import FAST_RETRIES

if TYPE_CHECKING:
    from simple_salesforce import Salesforce


@pytest.fixture(scope="session")
def emulator_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    """The session's emulator server (use ``emulator`` instead: it starts each test clean)."""
    with running_emulator(state_dir=tmp_path_factory.mktemp("emulator")) as server:
        yield server


@pytest.fixture
def emulator(emulator_server: EmulatorServer) -> EmulatorServer:
    """A running emulator with a fresh org, no faults, empty request log and full limits."""
    emulator_server.emulator.reset()
    return emulator_server


@pytest.fixture
def emulator_http(emulator: EmulatorServer) -> requests.Session:
    """A requests session that reaches the emulator (and its login hosts) with TLS verified."""
    return client_session(emulator)


@pytest.fixture
def sf(emulator: EmulatorServer) -> Salesforce:
    """simple-salesforce logged in to the emulator through SOAP (username+password+token)."""
    return login(emulator, "soap")


@pytest.fixture
def client(emulator: EmulatorServer) -> Iterator[SalesforceClient]:
    """The product's Salesforce client (JWT login) on a fresh emulator, with short retries."""
    creds = credentials_from_connection_file(emulator.connection_file, "jwt")
    with connect(creds, **FAST_RETRIES) as c:
        yield c


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateStore]:
    """An empty engine state store in the test's temp dir."""
    with StateStore(tmp_path / "state.db") as store:
        yield store
