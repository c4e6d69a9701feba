"""``build_definitions``: a project folder as Dagster ``Definitions``. Only assembles."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
from dagster_duckdb import DuckDBResource

from sf_activations.config.errors import ConfigError
from sf_activations.config.loader import Project, load_project
from sf_activations.config.snapshot import load_snapshot, snapshot_problems
from sf_activations.defs.assets import (
    model_asset,
    source_spec,
    sync_asset,
    sync_partitions_def,
    time_partitions_def,
)
from sf_activations.defs.preview import preview_job
from sf_activations.defs.resources import SalesforceResource, StateStoreResource
from sf_activations.defs.schedules import sync_job, sync_schedule
from sf_activations.defs.sensors import retry_sensor

AssetLike = dg.AssetsDefinition | dg.AssetSpec


def build_definitions(
    project_dir: str | os.PathLike[str] | Project,
    *,
    extra_assets: Sequence[AssetLike] = (),
    resources: Mapping[str, Any] | None = None,
    check_snapshot: bool = True,
) -> dg.Definitions:
    """Definitions for a project: models, syncs (with checks), jobs (a sync's and its preview),
    schedules, retry sensors and resources.

    ``extra_assets`` are assets defined elsewhere (a dbt project, say) that declared sources
    point at by ``asset_key``: they replace the external spec the source would get otherwise.
    ``resources`` override the defaults built from ``sf_activations.yaml`` (tests use this).
    Loading needs no network and no secret: secrets are ``dg.EnvVar``s read at launch.

    When the project has a describe snapshot (stored by every run and by ``sf-activations
    check``), every sync is checked against it and a misfit (unknown object or field, read-only
    field, key not an External ID...) raises ``ConfigError`` naming file, sync and field.
    ``check_snapshot=False`` skips that (``sf-activations check --refresh`` must load a project
    whose snapshot is stale).
    """
    project = project_dir if isinstance(project_dir, Project) else load_project(project_dir)
    if check_snapshot:
        problems = snapshot_problems(project.syncs, load_snapshot(project.describe_dir))
        if problems:
            raise ConfigError(problems)
    provided: set[dg.AssetKey] = set()
    for a in extra_assets:
        provided |= set(a.keys) if isinstance(a, dg.AssetsDefinition) else {a.key}

    assets: list[AssetLike] = list(extra_assets)
    assets += [
        source_spec(s)
        for s in project.sources.values()
        if dg.AssetKey(list(s.asset_key)) not in provided
    ]
    model_parts: dict[str, dg.PartitionsDefinition | None] = {}
    for model in project.models.values():
        mparts = time_partitions_def(model.time_partitions) if model.time_partitions else None
        model_parts[model.name] = mparts
        assets.append(model_asset(model, project, mparts))

    jobs: list[dg.UnresolvedAssetJobDefinition | dg.JobDefinition] = []
    schedules: list[dg.ScheduleDefinition] = []
    sensors: list[dg.SensorDefinition] = []
    for spec in project.syncs:
        parts = sync_partitions_def(spec, model_parts.get(spec.source_model))
        assets.append(sync_asset(spec, project, parts))
        job = sync_job(spec, parts)
        jobs += [job, preview_job(spec, project, parts)]
        sensors.append(
            retry_sensor(spec, job, str(project.state_path), partitioned=parts is not None)
        )
        if spec.schedule:
            schedules.append(sync_schedule(spec, job, parts))

    default_resources: dict[str, Any] = {
        "duckdb": DuckDBResource(database=str(project.warehouse_path)),
        "salesforce": SalesforceResource.from_config(project.config.salesforce),
        "sync_state": StateStoreResource(path=str(project.state_path)),
    }
    return dg.Definitions(
        assets=assets,
        jobs=jobs,
        schedules=schedules,
        sensors=sensors,
        resources={**default_resources, **(resources or {})},
    )
