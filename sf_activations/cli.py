"""The ``sf-activations`` command. Each subcommand lives with the layer it drives.

A subcommand module exposes ``add_parser(subparsers)``, which registers its parser and sets
``func`` (taking the parsed namespace, returning an exit code). Heavy imports (dagster) happen
inside ``func`` so that ``sf-activations emulator`` starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

_SUBCOMMAND_MODULES = (
    "sf_activations.emulator.cli",  # sf-activations emulator
    "sf_activations.demo",  # sf-activations demo
    "sf_activations.check",  # sf-activations check (connection check)
    "sf_activations.preview_command",  # sf-activations preview (sync tester)
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sf-activations",
        description="Keep Salesforce in sync with warehouse models.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in _SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # a subcommand not built yet
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sf-activations`` console script."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
