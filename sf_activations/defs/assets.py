"""Asset factories: one asset per model, one per sync, an external spec per declared source.

Bodies are one call into ``steps.py``; everything else here is wiring (keys, deps, partitions).
"""

# No `from __future__ import annotations` here: Dagster checks the asset functions' `context`
# annotation by identity, and a postponed (string) annotation fails that check.

import dagster as dg
from dagster_duckdb import DuckDBResource

from sf_activations.config.loader import ModelDef, Project, SourceDef
from sf_activations.config.models import TimePartitionConfig
from sf_activations.defs.metadata import CHECK_NAME
from sf_activations.defs.resources import SalesforceResource, StateStoreResource
from sf_activations.defs.steps import materialize_model_step, run_sync_step
from sf_activations.sync.spec import SyncSpec
from sf_activations.warehouse.duckdb import DuckDBWarehouse

MODELS_GROUP = "models"
SYNCS_GROUP = "salesforce_syncs"
SOURCES_GROUP = "sources"
SYNC_KEY_PREFIX = "salesforce"


def sync_asset_key(sync_name: str) -> dg.AssetKey:
    """``salesforce/<sync>``: a prefix keeps syncs apart from models of the same name."""
    return dg.AssetKey([SYNC_KEY_PREFIX, sync_name])


def time_partitions_def(tp: TimePartitionConfig) -> dg.TimeWindowPartitionsDefinition:
    """The Dagster time partitions of a model's ``time_partitions`` setting."""
    classes: dict[str, type[dg.TimeWindowPartitionsDefinition]] = {
        "hourly": dg.HourlyPartitionsDefinition,
        "daily": dg.DailyPartitionsDefinition,
        "weekly": dg.WeeklyPartitionsDefinition,
        "monthly": dg.MonthlyPartitionsDefinition,
    }
    return classes[tp.granularity](start_date=tp.start, end_offset=tp.end_offset)  # type: ignore[call-arg]


def source_key(project: Project, name: str) -> dg.AssetKey:
    """The asset key of a model or declared source."""
    if name in project.sources:
        return dg.AssetKey(list(project.sources[name].asset_key))
    return dg.AssetKey([name])


def source_spec(source: SourceDef) -> dg.AssetSpec:
    """An external asset for a table built elsewhere (shown in lineage, never materialized here)."""
    return dg.AssetSpec(
        key=dg.AssetKey(list(source.asset_key)),
        group_name=SOURCES_GROUP,
        description=source.description,
        metadata={"dagster/table_name": source.table},
        kinds={"duckdb"},
    )


def model_asset(
    model: ModelDef, project: Project, partitions: dg.PartitionsDefinition | None
) -> dg.AssetsDefinition:
    """The asset that builds ``models/<name>.sql`` as a warehouse table."""

    @dg.asset(
        key=dg.AssetKey([model.name]),
        group_name=MODELS_GROUP,
        deps=[source_key(project, d) for d in model.deps],
        partitions_def=partitions,
        description=model.description or f"models/{model.name}.sql",
        kinds={"duckdb", "sql"},
        metadata={"sf/model_file": str(model.path)},
    )
    def _model(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
        return materialize_model_step(context, model, DuckDBWarehouse(duckdb.get_connection))

    return _model


def sync_partitions_def(
    spec: SyncSpec, model_partitions: dg.PartitionsDefinition | None
) -> dg.PartitionsDefinition | None:
    """Hash buckets, the model's time partitions, or none."""
    from sf_activations.sync.partitions import bucket_partition_keys

    if spec.partitions.kind == "hash":
        return dg.StaticPartitionsDefinition(bucket_partition_keys(spec.partitions.buckets))
    if spec.partitions.kind == "time":
        return model_partitions
    return None


def sync_asset(
    spec: SyncSpec,
    project: Project,
    partitions: dg.PartitionsDefinition | None,
) -> dg.AssetsDefinition:
    """The asset that keeps ``spec.sobject`` in sync with the sync's source model."""
    key = sync_asset_key(spec.name)
    deps: list[dg.AssetKey] = [source_key(project, spec.source_model)]
    deps += [sync_asset_key(other) for other in project.sync_after.get(spec.name, ())]
    mapping_lines = "\n".join(
        f"| `{m.source}` | `{m.target}`{f' (lookup by `{m.lookup_field}`)' if m.lookup_field else ''} |"
        for m in spec.mappings
    )

    @dg.asset(
        key=key,
        group_name=SYNCS_GROUP,
        deps=deps,
        partitions_def=partitions,
        check_specs=[
            dg.AssetCheckSpec(
                CHECK_NAME,
                asset=key,
                description=f"At most {spec.max_rejected_fraction:.1%} of the records read are rejected by Salesforce.",
            )
        ],
        description=(
            f"Keeps Salesforce **{spec.sobject}** in sync with `{spec.source_model}` "
            f"({spec.behavior}, key `{spec.key.source}` → `{spec.key.target}`).\n\n"
            f"| column | Salesforce field |\n|---|---|\n{mapping_lines}"
        ),
        kinds={"salesforce"},
        metadata={
            "sf/object": spec.sobject,
            "sf/behavior": spec.behavior,
            "sf/sync_file": spec.source_file,
        },
    )
    def _sync(
        context: dg.AssetExecutionContext,
        duckdb: DuckDBResource,
        salesforce: SalesforceResource,
        sync_state: StateStoreResource,
    ) -> dg.MaterializeResult:
        return run_sync_step(
            context,
            spec,
            project,
            warehouse=DuckDBWarehouse(duckdb.get_connection),
            salesforce=salesforce,
            state=sync_state,
        )

    return _sync
