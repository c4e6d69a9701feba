"""``python -m sf_activations.emulator``: the same as ``sf-activations emulator``."""

from __future__ import annotations

import sys

from sf_activations.cli import main

if __name__ == "__main__":
    sys.exit(main(["emulator", *sys.argv[1:]]))
