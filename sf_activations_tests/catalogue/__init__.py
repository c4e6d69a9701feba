"""A named catalogue of bad and edge-case inputs, run end to end (see ``test_catalogue.py``).

Each case is literal source rows per run, a sync spec and the expected outcome per record,
stated from Salesforce's documented behaviour. Add a case by appending to ``cases.CASES``.
"""

from __future__ import annotations

from sf_activations_tests.catalogue.cases import CASES, PARENT_ID, PARENT_ID15
from sf_activations_tests.catalogue.model import (
    TRANSPORTS,
    Case,
    Invalid,
    Outcome,
    Refused,
    Rejected,
    Step,
    Synced,
    Transport,
)

__all__ = [
    "CASES",
    "PARENT_ID",
    "PARENT_ID15",
    "TRANSPORTS",
    "Case",
    "Invalid",
    "Outcome",
    "Refused",
    "Rejected",
    "Step",
    "Synced",
    "Transport",
]
