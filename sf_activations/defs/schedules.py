"""One job and one schedule per sync that sets ``schedule:`` (cron)."""

from __future__ import annotations

import dagster as dg

from sf_activations.defs.assets import sync_asset_key
from sf_activations.sync.spec import SyncSpec


def sync_job(
    spec: SyncSpec, partitions: dg.PartitionsDefinition | None
) -> dg.UnresolvedAssetJobDefinition:
    """A job that materializes only this sync (and runs its check)."""
    return dg.define_asset_job(
        name=f"{spec.name}_job",
        selection=dg.AssetSelection.assets(sync_asset_key(spec.name)),
        partitions_def=partitions,
        description=f"Sync {spec.source_model} into Salesforce {spec.sobject}.",
    )


def sync_schedule(
    spec: SyncSpec, job: dg.UnresolvedAssetJobDefinition, partitions: dg.PartitionsDefinition | None
) -> dg.ScheduleDefinition:
    """Runs every hash bucket (or the latest time partition, or the whole sync) on the cron.

    Stopped by default: turning a schedule on that writes to Salesforce is the user's call.
    """
    assert spec.schedule is not None

    @dg.schedule(
        name=f"{spec.name}_schedule",
        cron_schedule=spec.schedule,
        job=job,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=f"Runs sync {spec.name} on '{spec.schedule}'.",
    )
    def _schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
        tick = context.scheduled_execution_time.isoformat()
        if partitions is None:
            return [dg.RunRequest(run_key=f"{spec.name}:{tick}")]
        if isinstance(partitions, dg.TimeWindowPartitionsDefinition):
            last = partitions.get_last_partition_key()
            if last is None:
                return dg.SkipReason("no time partition has started yet")
            return [dg.RunRequest(run_key=f"{spec.name}:{last}:{tick}", partition_key=last)]
        return [
            dg.RunRequest(run_key=f"{spec.name}:{key}:{tick}", partition_key=key)
            for key in partitions.get_partition_keys()
        ]

    return _schedule
