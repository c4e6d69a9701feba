"""The user's project: connections, models and syncs, validated with errors that name the file,
the sync and the field. This layer never touches the network."""

from __future__ import annotations

from sf_activations.config.errors import ConfigError, ConfigProblem
from sf_activations.config.loader import (
    PROJECT_FILE,
    ModelDef,
    Project,
    SourceDef,
    credential_sources,
    load_project,
    resolve_credentials,
)
from sf_activations.config.models import ProjectConfig, SalesforceConfig, SyncConfig

__all__ = [
    "PROJECT_FILE",
    "ConfigError",
    "ConfigProblem",
    "ModelDef",
    "Project",
    "ProjectConfig",
    "SalesforceConfig",
    "SourceDef",
    "SyncConfig",
    "credential_sources",
    "load_project",
    "resolve_credentials",
]
