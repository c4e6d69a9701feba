"""The warehouse layer: build models and read a model partition into polars via Arrow.

It knows nothing about Salesforce. ``Warehouse`` is the interface; ``DuckDBWarehouse`` the
default adapter (over dagster-duckdb's ``DuckDBResource`` or a plain DuckDB file).
"""

from __future__ import annotations

from sf_activations.warehouse.base import (
    ModelSqlError,
    ModelStats,
    RowFilter,
    TableNotFound,
    Warehouse,
    WarehouseError,
    normalize_frame,
)
from sf_activations.warehouse.duckdb import DuckDBWarehouse
from sf_activations.warehouse.lineage import referenced_tables

__all__ = [
    "DuckDBWarehouse",
    "ModelSqlError",
    "ModelStats",
    "RowFilter",
    "TableNotFound",
    "Warehouse",
    "WarehouseError",
    "normalize_frame",
    "referenced_tables",
]
