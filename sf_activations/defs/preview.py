"""The sync tester in the Dagster UI: a job ``<sync>_preview`` per sync, one op.

The op calls ``steps.preview_sync_step`` (the engine's ``preview_sync_partition`` with the sync
asset's resources) and materializes nothing: a preview sent nothing, so the sync asset's
history must not say it ran. The job takes the sync asset's partitions, so the launchpad asks
for a hash bucket or a time partition exactly as it does for the sync, and Dagster itself
checks the key and computes the time window.
"""

# No `from __future__ import annotations` here: Dagster reads the op function's `context` and
# `config` annotations as objects (see assets.py).

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field

from sf_activations.config.loader import Project
from sf_activations.defs.resources import SalesforceResource, StateStoreResource
from sf_activations.defs.steps import preview_sync_step
from sf_activations.sync.spec import SyncSpec
from sf_activations.warehouse.duckdb import DuckDBWarehouse


class PreviewConfig(dg.Config):
    """What the launchpad lets the user set for one preview."""

    rows: int = Field(
        default=5,
        ge=0,
        description="Sample records shown per planned write, exactly as they would be sent "
        "(the invalid rows and unmatched keys listed too, at most 20).",
    )


def preview_job(
    spec: SyncSpec, project: Project, partitions: dg.PartitionsDefinition | None
) -> dg.JobDefinition:
    """``<sync>_preview``: what the next run of ``spec`` would send, without sending it."""
    description = (
        f"Sync tester: what the next run of sync {spec.name} would send to Salesforce "
        f"{spec.sobject}, without sending it. State is only read and Salesforce only queried; "
        "the counts and planned writes are in the run log and the op's output metadata."
    )

    @dg.op(
        name=f"preview_{spec.name}",
        out=dg.Out(dg.Nothing),
        description=description,
        tags={"sf/sync": spec.name},
    )
    def _preview(
        context: dg.OpExecutionContext,
        config: PreviewConfig,
        duckdb: DuckDBResource,
        salesforce: SalesforceResource,
        sync_state: StateStoreResource,
    ) -> dg.Output[None]:
        return preview_sync_step(
            context,
            spec,
            project,
            warehouse=DuckDBWarehouse(duckdb.get_connection),
            salesforce=salesforce,
            state=sync_state,
            rows=config.rows,
        )

    @dg.job(
        name=f"{spec.name}_preview",
        partitions_def=partitions,
        description=description,
        tags={"sf/sync": spec.name, "sf/preview": "true"},
    )
    def _job() -> None:
        _preview()

    return _job
