"""DuckDB adapter: models are tables in one DuckDB file, read back through Arrow."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import duckdb
import polars as pl

from sf_activations.sync.source import DuckDBSource, quote_identifier
from sf_activations.warehouse.base import (
    ModelSqlError,
    ModelStats,
    RowFilter,
    TableNotFound,
    normalize_frame,
)

ConnectionFactory = Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]

__all__ = ["DuckDBWarehouse", "quote_identifier"]


def _window(where: RowFilter | None) -> tuple[str, list[Any]]:
    if where is None:
        return "", []
    col = quote_identifier(where.column)
    # Values are bound as parameters, never spliced into the SQL.
    return f" WHERE {col} >= $1 AND {col} < $2", [where.start, where.end]


class DuckDBWarehouse:
    """A ``Warehouse`` over one DuckDB database.

    ``connect`` yields a connection for one short unit of work; pass dagster-duckdb's
    ``DuckDBResource.get_connection`` or use ``DuckDBWarehouse.at(path)``. Connections are
    short-lived because a DuckDB file admits one writing process at a time: parallel
    partitions then wait (the resource retries) instead of failing.
    """

    def __init__(self, connect: ConnectionFactory) -> None:
        self._connect = connect

    @classmethod
    def at(cls, path: str) -> DuckDBWarehouse:
        """A warehouse on the DuckDB file ``path`` (created if missing)."""

        @contextmanager
        def connect() -> Iterator[duckdb.DuckDBPyConnection]:
            conn = duckdb.connect(path)
            try:
                yield conn
            finally:
                conn.close()

        return cls(connect)

    def materialize_model(
        self, name: str, sql: str, *, where: RowFilter | None = None
    ) -> ModelStats:
        """Build table ``name`` from ``sql`` (whole table, or only the rows in ``where``).

        Raises ``ModelSqlError`` with DuckDB's own explanation when the SQL fails.
        """
        try:
            return self._materialize(name, sql, where)
        except duckdb.IOException:
            raise  # the file (a lock, the disk), not the SQL: DuckDB's message says it best
        except duckdb.Error as exc:
            raise ModelSqlError(name, str(exc).strip()) from exc

    def _materialize(self, name: str, sql: str, where: RowFilter | None) -> ModelStats:
        table = quote_identifier(name)
        body = sql.strip().rstrip(";")
        window, params = _window(where)
        with self._connect() as conn:
            if where is None:
                conn.execute(f"CREATE OR REPLACE TABLE {table} AS {body}")
            else:
                exists = conn.execute(
                    "SELECT count(*) FROM information_schema.tables WHERE table_name = $1",
                    [name.rsplit(".", maxsplit=1)[-1]],
                ).fetchone()
                conn.execute("BEGIN TRANSACTION")
                try:
                    if exists and exists[0]:
                        conn.execute(f"DELETE FROM {table}{window}", params)
                        conn.execute(f"INSERT INTO {table} SELECT * FROM ({body}){window}", params)
                    else:
                        conn.execute(
                            f"CREATE TABLE {table} AS SELECT * FROM ({body}){window}", params
                        )
                    conn.execute("COMMIT")
                except duckdb.Error:
                    conn.execute("ROLLBACK")
                    raise
            count = conn.query(
                f"SELECT count(*) FROM {table}{window}", params=params or None
            ).fetchall()
            cols = conn.query(f"SELECT * FROM {table} LIMIT 0")
            columns = tuple(zip(cols.columns, [str(t) for t in cols.types], strict=True))
        return ModelStats(table=name, rows=int(count[0][0]) if count else 0, columns=columns)

    def read(self, table: str, *, where: RowFilter | None = None) -> pl.DataFrame:
        """The rows of ``table`` (in ``where`` if given) as polars, via Arrow, Decimals cast.

        Raises ``TableNotFound`` if the table does not exist (its model was never built).
        """
        window, params = _window(where)
        with self._connect() as conn:
            try:
                reader = conn.query(
                    f"SELECT * FROM {quote_identifier(table)}{window}", params=params or None
                ).arrow()
            except duckdb.CatalogException as exc:
                raise TableNotFound(table, str(exc).strip()) from exc
            arrow_table = reader.read_all() if hasattr(reader, "read_all") else reader
        frame = pl.from_arrow(arrow_table)
        if not isinstance(frame, pl.DataFrame):  # a single column may come back as a Series
            frame = frame.to_frame()
        return normalize_frame(frame)

    def source(self, table: str, *, where: RowFilter | None = None) -> DuckDBSource:
        """The table's rows (in ``where`` if given) as the engine's ``PartitionSource``: the
        engine reads a narrow fingerprint pass first and then only the rows that may differ.

        Nothing is read yet; its ``columns()`` (or the engine's first read) raises
        ``TableNotFound`` if the table does not exist (its model was never built).
        """
        window, params = _window(where)

        def missing(exc: duckdb.CatalogException) -> Exception:
            return TableNotFound(table, str(exc).strip())

        return DuckDBSource(
            self._connect,
            quote_identifier(table),
            window.removeprefix(" WHERE "),
            params,
            row_id="rowid?",
            post=normalize_frame,
            missing=missing,
        )

    def columns(self, table: str) -> list[str]:
        """Column names of ``table`` (``TableNotFound`` if it does not exist)."""
        with self._connect() as conn:
            try:
                rel = conn.query(f"SELECT * FROM {quote_identifier(table)} LIMIT 0")
            except duckdb.CatalogException as exc:
                raise TableNotFound(table, str(exc).strip()) from exc
            return list(rel.columns)

    def replace_table(self, name: str, frame: pl.DataFrame) -> int:
        """Create or replace table ``name`` with the rows of ``frame`` (through Arrow)."""
        with self._connect() as conn:
            conn.register("__sf_activations_frame", frame.to_arrow())
            try:
                conn.execute(
                    f"CREATE OR REPLACE TABLE {quote_identifier(name)} AS SELECT * FROM __sf_activations_frame"
                )
            finally:
                conn.unregister("__sf_activations_frame")
        return frame.height

    def execute(self, sql: str, params: list[Any] | None = None) -> None:
        """Run one statement (used to load raw data, e.g. by the demo's generator)."""
        with self._connect() as conn:
            conn.execute(sql, params)
