"""The interface every warehouse adapter implements, and the frame clean-up they share."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import polars as pl

from sf_activations.sync.source import DuckDBSource

# Integers up to this many digits fit an Int64 exactly.
_INT64_DIGITS = 18


class WarehouseError(Exception):
    """The warehouse refused a model's SQL or a read; the message says which and why."""


class TableNotFound(WarehouseError):
    """The table a model or sync reads does not exist (yet) in the warehouse."""

    def __init__(self, table: str, detail: str) -> None:
        super().__init__(f"table '{table}' does not exist in the warehouse ({detail})")
        self.table = table


class ModelSqlError(WarehouseError):
    """A model's SELECT failed in the warehouse (syntax, unknown column, type error...)."""

    def __init__(self, model: str, detail: str) -> None:
        super().__init__(f"model '{model}': the warehouse refused its SQL: {detail}")
        self.model = model
        self.detail = detail


@dataclass(frozen=True, slots=True)
class RowFilter:
    """Rows whose ``column`` lies in ``[start, end)``: one time partition of a model.

    A typed filter instead of SQL text, so that no value ever becomes SQL code.
    """

    column: str
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class ModelStats:
    """What building a model produced."""

    table: str
    rows: int
    columns: tuple[tuple[str, str], ...]  # (name, warehouse type)


class Warehouse(Protocol):
    """What the Dagster layer needs from a warehouse."""

    def materialize_model(
        self, name: str, sql: str, *, where: RowFilter | None = None
    ) -> ModelStats:
        """Build table ``name`` from the SELECT ``sql``.

        Without ``where`` the table is replaced; with it only the rows in that window are
        replaced (a time partition), so other partitions stay as they are.
        """
        ...

    def read(self, table: str, *, where: RowFilter | None = None) -> pl.DataFrame:
        """The table's rows (optionally one window) as a polars frame, through Arrow."""
        ...

    def columns(self, table: str) -> list[str]:
        """The table's column names, in order."""
        ...

    def source(self, table: str, *, where: RowFilter | None = None) -> DuckDBSource:
        """The table's rows (optionally one window) as the engine's ``PartitionSource``."""
        ...


def normalize_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Turn warehouse-only types into ones the engine and Dagster metadata accept.

    NUMBER/DECIMAL columns come back as Decimal, which Dagster metadata rejects and Salesforce
    does not need: whole numbers become Int64 when they fit (else exact strings), the rest Float64
    (Salesforce's number fields are doubles anyway).
    """
    casts: list[pl.Expr] = []
    for name, dtype in frame.schema.items():
        if isinstance(dtype, pl.Decimal):
            scale = dtype.scale or 0
            precision = dtype.precision or 38
            if scale == 0 and precision <= _INT64_DIGITS:
                casts.append(pl.col(name).cast(pl.Int64))
            elif scale == 0:
                casts.append(pl.col(name).cast(pl.String))
            else:
                casts.append(pl.col(name).cast(pl.Float64))
    return frame.with_columns(casts) if casts else frame
