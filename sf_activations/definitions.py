"""Entry point for ``dagster dev -m sf_activations.definitions``.

Loads the project folder named by ``SF_ACTIVATIONS_PROJECT``, or the embedded demo project.
"""

from __future__ import annotations

import os

from sf_activations.defs import build_definitions
from sf_activations.demo_project import DEMO_PROJECT_DIR

defs = build_definitions(os.environ.get("SF_ACTIVATIONS_PROJECT") or DEMO_PROJECT_DIR)
