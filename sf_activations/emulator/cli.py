"""``sf-activations emulator``: run the Salesforce API emulator until interrupted."""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType
from typing import Any

_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def add_parser(subparsers: Any) -> None:
    """Register the ``emulator`` subcommand on the top-level parser's subparsers."""
    parser = subparsers.add_parser(
        "emulator",
        help="run the local Salesforce API emulator (HTTPS)",
        description=(
            "Serve a local Salesforce API emulator over HTTPS until SIGINT/SIGTERM. "
            "Credentials, the CA certificate and a live access token are written to "
            "STATE_DIR/connection.json."
        ),
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: a free one)")
    parser.add_argument(
        "--host",
        default=None,
        help="address to bind (default 127.0.0.1; anything but loopback must be given here "
        "explicitly and exposes the emulator's credentials to that network)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where certificates and connection.json live (default: a new temporary directory)",
    )
    parser.add_argument(
        "--org-file",
        type=Path,
        default=None,
        help="YAML file with extra objects and fields for the org (docs/emulator-org.md)",
    )
    parser.set_defaults(func=run)


def _org_factory(org_file: Path | None, username: str) -> Any:
    from sf_activations.emulator.org import Org
    from sf_activations.emulator.schema import default_schema, load_org_yaml

    def make() -> Org:
        schema = default_schema()
        if org_file is not None:
            schema = load_org_yaml(org_file, schema)
        return Org(schema, username=username)

    return make


def run(args: argparse.Namespace) -> int:
    """Start the emulator, print where it is, and serve until SIGINT or SIGTERM."""
    from sf_activations.emulator.server import Emulator, EmulatorConfig, EmulatorServer

    host: str = args.host or "127.0.0.1"
    if args.org_file is not None and not args.org_file.is_file():
        print(f"error: --org-file {args.org_file} does not exist", file=sys.stderr)
        return 2
    state_dir: Path = args.state_dir or Path(tempfile.mkdtemp(prefix="sf-emulator-"))
    config = EmulatorConfig()
    factory = _org_factory(args.org_file, config.username)
    emulator = Emulator(config=config, org_factory=factory)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Installed explicitly: a process started in the background of a non-interactive shell
    # inherits SIGINT as ignored.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    server = EmulatorServer(emulator, host=host, port=args.port, state_dir=state_dir)
    server.start()
    try:
        if host not in _LOOPBACK_HOSTS and not host.startswith("127."):
            print(
                f"warning: listening on {host}: anyone who can reach it can use the emulator",
                file=sys.stderr,
            )
        print(f"Salesforce emulator listening on {server.url}", flush=True)
        print(f"connection details: {server.connection_file}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    print("emulator stopped", flush=True)
    return 0
