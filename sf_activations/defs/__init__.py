"""The Dagster layer: assets, resources, partitions, checks and schedules. No business logic."""

from __future__ import annotations

from sf_activations.defs.build import build_definitions
from sf_activations.defs.metadata import CHECK_NAME, report_metadata
from sf_activations.defs.resources import SalesforceResource, StateStoreResource

__all__ = [
    "CHECK_NAME",
    "SalesforceResource",
    "StateStoreResource",
    "build_definitions",
    "report_metadata",
]
