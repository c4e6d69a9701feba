"""The rows of a model that one partition of a sync reads, as the engine's ``PartitionSource``.

Shared by the Dagster sync asset (which knows the partition from its run) and the
``sf-activations preview`` command (which is told it).
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from sf_activations.config.loader import Project
from sf_activations.sync.partitions import filter_bucket
from sf_activations.sync.source import DuckDBSource
from sf_activations.sync.spec import SyncSpec
from sf_activations.warehouse.base import RowFilter, Warehouse

ALL_PARTITIONS = "__all__"
"""The partition key of an unpartitioned sync."""


def sync_source(
    spec: SyncSpec,
    project: Project,
    warehouse: Warehouse,
    *,
    partition: str = ALL_PARTITIONS,
    window: tuple[datetime, datetime] | None = None,
) -> DuckDBSource:
    """The model rows of ``partition``: the whole table, one hash bucket (``b00``...), or the
    rows whose time column lies in ``window`` (a time-partitioned sync needs it). Nothing is
    read yet; the source raises ``TableNotFound`` when first used if the model was never
    built."""
    table = project.table_of(spec.source_model)
    if spec.partitions.kind == "time":
        tp = project.time_partitions_of(spec.source_model)
        if tp is None or window is None:
            msg = (
                f"{spec.source_file}, sync '{spec.name}': time-partitioned, so a partition's "
                f"time window is needed (model '{spec.source_model}' "
                f"{'has no time_partitions' if tp is None else 'has time_partitions'})"
            )
            raise ValueError(msg)
        return warehouse.source(
            table, where=RowFilter(column=tp.column, start=window[0], end=window[1])
        )
    source = warehouse.source(table)
    if spec.partitions.kind == "hash":
        buckets = spec.partitions.buckets

        def in_bucket(frame: pl.DataFrame) -> pl.DataFrame:
            return filter_bucket(frame, spec.key.source, partition, buckets)

        return source.filtered(in_bucket)
    return source
