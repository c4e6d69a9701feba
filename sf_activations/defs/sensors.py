"""A sensor per sync that re-runs the partitions holding records Salesforce rejected.

Invalid records (the model's own data problems, ``INVALID_*``) do not trigger a run: re-running
cannot fix them, a change of the model will. Stopped by default, like the schedules.
"""

from __future__ import annotations

import dagster as dg
import polars as pl

from sf_activations.sync.spec import SyncSpec

RETRY_INTERVAL_S = 3600


def partitions_to_retry(state_path: str, sync: str) -> list[str]:
    """Partitions of ``sync`` with pending records that Salesforce (not validation) refused."""
    from pathlib import Path

    from sf_activations.sync.state import StateStore

    if not Path(state_path).exists():
        return []
    with StateStore(state_path) as store:
        wanted = []
        for partition in store.partitions(sync):
            rows = store.load(sync, partition, columns=["status", "error_code"])
            retry = rows.filter(
                (pl.col("status") == "pending")
                & ~pl.col("error_code").fill_null("").str.starts_with("INVALID_")
            )
            if retry.height:
                wanted.append(partition)
    return wanted


def retry_sensor(
    spec: SyncSpec, job: dg.UnresolvedAssetJobDefinition, state_path: str, *, partitioned: bool
) -> dg.SensorDefinition:
    """Requests a run of each partition of ``spec`` that has rejected records pending."""

    @dg.sensor(
        name=f"{spec.name}_retry_rejected",
        job=job,
        minimum_interval_seconds=RETRY_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=f"Re-runs partitions of sync {spec.name} whose records Salesforce rejected.",
    )
    def _sensor(context: dg.SensorEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
        parts = partitions_to_retry(state_path, spec.name)
        if not parts:
            return dg.SkipReason(f"no rejected records pending for {spec.name}")
        if not partitioned:
            return [dg.RunRequest()]
        return [dg.RunRequest(partition_key=p) for p in parts]

    return _sensor
