"""Stable per-record fingerprints of the mapped values.

The fingerprint is the MD5 (hex) of a canonical encoding of the record's non-null mapped
fields, in field-name order: for each field ``name NUL byte-length NUL value``. MD5 and this
encoding are defined outside any library, so fingerprints agree across processes, machines and
polars/DuckDB releases (polars' ``hash`` does not). The hashing runs in DuckDB over an Arrow
view of the frame: about 0.4 s per million records on one core, three times faster than a
hashlib loop.

Why null fields are left out of the encoding: adding a mapping then changes the fingerprint only
of records that carry a value for it, so only those are re-sent; a record whose new column is
null already matches Salesforce as far as the sync knows (the field was never written). Changing
a value to null still changes the fingerprint (the field drops out), and "" (leave alone) is
kept, so null and "" never collide. Dropping a mapping re-sends the records that had a value for
it, which is harmless. Field names are part of the encoding, so renaming a target re-sends.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import duckdb
import polars as pl
import pyarrow as pa

FINGERPRINT_COLUMN = "__fingerprint"


def encode_records(records: pl.DataFrame, fields: Sequence[str]) -> pl.Series:
    """The canonical encoding of each record (see the module docstring), as a String series."""
    parts: list[pl.Expr] = []
    for name in sorted(fields):
        col = pl.col(name).cast(pl.String)
        parts.append(
            pl.when(col.is_null())
            .then(pl.lit(""))
            .otherwise(
                pl.concat_str(
                    [
                        pl.lit(f"{name}\x00"),
                        col.str.len_bytes().cast(pl.String),
                        pl.lit("\x00"),
                        col,
                    ]
                )
            )
        )
    if not parts:
        return pl.Series("encoding", [""] * records.height, dtype=pl.String)
    return records.select(pl.concat_str(parts).alias("encoding")).to_series()


def md5_hex(values: pl.Series) -> pl.Series:
    """MD5 of each UTF-8 string, as 32 lowercase hex characters (null stays null)."""
    if values.len() == 0:
        return pl.Series(values.name, [], dtype=pl.String)
    table = pl.DataFrame({"v": values.cast(pl.String)}).to_arrow()
    with _registered(table) as name:
        out = _connection().sql(f"SELECT md5(v) AS h FROM {name}").pl()
    return out.to_series().alias(values.name)


def fingerprints(records: pl.DataFrame, fields: Sequence[str]) -> pl.Series:
    """One fingerprint per record over ``fields`` (the mapped Salesforce columns).

    The encoding and the MD5 run in one DuckDB query over a zero-copy Arrow view of the
    columns, so the encoded strings never cross into polars and back (about three times
    faster than ``md5_hex(encode_records(...))``, which defines the same values).
    """
    if records.height == 0 or not fields:
        return md5_hex(encode_records(records, fields)).alias(FINGERPRINT_COLUMN)
    names = sorted(fields)
    aliases = {name: f"c{i}" for i, name in enumerate(names)}
    table = records.select(
        [pl.col(name).cast(pl.String).alias(aliases[name]) for name in names]
    ).to_arrow()
    parts = [
        # strlen counts bytes (polars' len_bytes); a null field contributes nothing.
        f"CASE WHEN {aliases[name]} IS NULL THEN '' ELSE "
        f"{_sql_text(name + chr(0))} || CAST(strlen({aliases[name]}) AS VARCHAR) || chr(0) || "
        f"{aliases[name]} END"
        for name in names
    ]
    with _registered(table) as name:
        out = _connection().sql(f"SELECT md5(concat({', '.join(parts)})) AS h FROM {name}").pl()
    return out.to_series().alias(FINGERPRINT_COLUMN)


_local = threading.local()


def _connection() -> duckdb.DuckDBPyConnection:
    """This thread's in-memory DuckDB connection (opening one costs tens of milliseconds; a
    connection must not be shared between threads)."""
    conn: duckdb.DuckDBPyConnection | None = getattr(_local, "conn", None)
    # A forked child must not use its parent's connection (DuckDB's threads did not follow).
    if conn is None or getattr(_local, "pid", None) != os.getpid():
        conn = duckdb.connect()
        _local.conn, _local.pid = conn, os.getpid()
    return conn


@contextmanager
def _registered(table: pa.Table) -> Iterator[str]:
    """``table`` registered on this thread's connection for one query, under a fresh name."""
    name = f"t_{uuid.uuid4().hex}"
    conn = _connection()
    conn.register(name, table)
    try:
        yield name
    finally:
        conn.unregister(name)


def _sql_text(value: str) -> str:
    """``value`` as a DuckDB string expression (quotes doubled, NUL as chr(0))."""
    pieces = value.split("\x00")
    quoted = ["'" + piece.replace("'", "''") + "'" for piece in pieces]
    return " || chr(0) || ".join(quoted)


def with_fingerprints(records: pl.DataFrame, fields: Sequence[str]) -> pl.DataFrame:
    """``records`` plus a ``__fingerprint`` column."""
    return records.with_columns(fingerprints(records, fields))
