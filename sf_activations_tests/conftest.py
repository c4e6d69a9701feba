"""Shared fixtures: a running Salesforce emulator and simple-salesforce clients logged in to it.

One HTTPS emulator serves the whole test session (per xdist worker); ``emulator`` resets it to a
fresh org before each test, which is much cheaper than starting uvicorn again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import requests

from sf_activations.emulator.server import EmulatorServer
from sf_activations.emulator.testing import client_session, login, running_emulator

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
