"""Where a sync's rows come from, read in two steps so that unchanged rows cost almost nothing.

A million-row partition with 1% changed should not be mapped, validated and fingerprinted in
full on every run (invariant 7: work scales with change). So the engine asks its source first
for a narrow frame, the key column and a *source fingerprint* per row, computed by the
warehouse itself, and compares those with the source fingerprints state recorded when each
record was last confirmed. Only the rows that differ (plus rows whose key is missing or
duplicated) are then read in full and go through map, validate and the stable MD5 fingerprint.

The source fingerprint is a cache hint, not the record of truth (that stays the mapped MD5 of
``fingerprint.py``, invariant 3). It is DuckDB's 64-bit ``hash`` of a *seed* and the used
columns, computed where the data lives. DuckDB's hash may change between releases, so the seed
names the DuckDB release, our own release and mapping code, the column types, the mapping and
the mapped fields' describe: when any of those changes every row is read in full once, its mapped fingerprint
decides whether anything is sent (usually nothing), and the new source fingerprints are stored.
The hash folds the columns in order with a multiply-then-xor step, so a change confined to one
column always changes the hash (when that value's own hash changes); two different rows agree
only by 64-bit chance.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Literal, Protocol

import duckdb
import polars as pl

# DuckDB reads registered polars frames through pyarrow. Importing it with the engine puts its
# one-time cost (about 0.15 s) at start-up rather than inside a run's first read.
import pyarrow  # noqa: F401

SOURCE_FP_COLUMN = "__source_fp"
"""The source fingerprint column (Int64: the hash's 64 bits read as signed)."""

SOURCE_ROW_COLUMN = "__source_row"
"""A row's id within one ``PartitionSource.session`` (what ``SourceSession.read`` takes)."""

KNOWN_ROW_COLUMN = "__known_row"
"""The position in ``known`` of the fingerprint a row matched (null: none)."""

KEY_HASH_COLUMN = "__key_hash"
"""A 64-bit hash of a text key's match text, computed by the warehouse (see
``SourceSession.fingerprints``' ``key_rule``)."""

KeyRule = Literal["exact", "lower"]
"""How a text key is compared for duplicates: as written, or lower-cased."""

# Every code point Unicode calls white space (polars' ``strip_chars`` strips them) beyond
# U+0000..U+0020: a key starting with one of these might be blank.
_WIDE_SPACES = "133, 160, 5760, 8232, 8233, 8239, 8287, 12288"

ConnectionFactory = Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]


class SourceSession(Protocol):
    """One consistent view of a partition: both reads see the same rows."""

    def fingerprints(
        self,
        key: str,
        columns: Sequence[str],
        seed: str,
        *,
        known: pl.Series | None = None,
        key_rule: KeyRule | None = None,
    ) -> pl.DataFrame:
        """Every row's ``key`` column (as read), ``__source_fp`` over ``columns``,
        ``__source_row``, and ``__known_row``: the position in ``known`` (source fingerprints,
        nulls allowed) of the row's fingerprint, or null. The match runs where the data is.

        With ``key_rule`` (the caller's promise that ``map_records`` compares the key's own
        text, lower-cased for ``"lower"``), the source may instead return ``__key_hash``: a
        64-bit hash of each row's match text, null where the key is missing or might be blank
        (it may be null for more rows than that, never fewer; equal match texts always get
        equal hashes). The key column is then left out unless the source needs it itself."""
        ...

    def read(
        self, columns: Sequence[str], seed: str, *, rows: pl.Series | None = None
    ) -> pl.DataFrame:
        """``columns`` and ``__source_fp`` of every row, or of the ``rows`` (``__source_row``
        values from ``fingerprints``)."""
        ...


class PartitionSource(Protocol):
    """One partition of a sync's source model, as the engine reads it."""

    @property
    def scheme(self) -> str:
        """What computes the source fingerprints (part of the seed), e.g. ``duckdb 1.2 hash``."""
        ...

    def columns(self) -> dict[str, str]:
        """The model's columns and their warehouse types, in order."""
        ...

    def session(self) -> AbstractContextManager[SourceSession]:
        """A consistent view of the partition for one run's reads."""
        ...


def quote_identifier(name: str) -> str:
    """``a.b`` -> ``"a"."b"``: each part quoted, embedded quotes doubled."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))


def seed_digest(*parts: object) -> str:
    """A short, stable text naming everything the source fingerprints depend on."""
    text = "\x1f".join(repr(p) for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class DuckDBSource:
    """A ``PartitionSource`` over a DuckDB relation: a table, a view or a registered Arrow
    table (``relation``, a FROM item), optionally narrowed by ``where`` (SQL with ``$1..$n``
    placeholders for ``params``: values are always bound, never spliced into the SQL).

    A session is one connection in one read transaction, so the narrow pass and the read of
    the rows it picked see the same data even if the model is rebuilt meanwhile. Rows are
    fetched by ``row_id`` (an SQL expression such as a table's ``rowid``: a direct fetch,
    several times faster than a join on the key; ``row_id="rowid?"`` uses ``rowid`` when the
    relation has one, i.e. is a table) or else by key. ``post`` is applied to every frame
    returned (the warehouse's type clean-up; a hash bucket's filter by key). ``missing`` turns
    DuckDB's "no such table" into the caller's error. Nothing is opened until the columns or a
    session are asked for, and the columns asked for during a session come from its
    connection (opening a DuckDB file costs tens of milliseconds).
    """

    def __init__(
        self,
        connect: ConnectionFactory,
        relation: str,
        where: str = "",
        params: Sequence[Any] = (),
        *,
        row_id: str | None = None,
        post: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
        columns: dict[str, str] | None = None,
        missing: Callable[[duckdb.CatalogException], Exception] | None = None,
    ) -> None:
        self._connect = connect
        self._relation = relation
        self._where = where
        self._params = list(params)
        self._row_id = row_id
        self._post = post
        self._post_needs_key = False  # ``filtered``'s ``keep`` may look at the key column
        self._columns = columns  # known already when the caller looked at the table
        self._missing = missing
        self._active: duckdb.DuckDBPyConnection | None = None  # the open session's

    @property
    def scheme(self) -> str:
        return f"duckdb {duckdb.__version__} hash"

    def filtered(self, keep: Callable[[pl.DataFrame], pl.DataFrame]) -> DuckDBSource:
        """The same relation, with ``keep`` applied to every frame it returns (after ``post``)."""
        post = self._post

        def both(frame: pl.DataFrame) -> pl.DataFrame:
            return keep(post(frame) if post is not None else frame)

        narrowed = DuckDBSource(
            self._connect,
            self._relation,
            self._where,
            self._params,
            row_id=self._row_id,
            post=both,
            columns=self._columns,
            missing=self._missing,
        )
        narrowed._post_needs_key = True
        return narrowed

    def columns(self) -> dict[str, str]:
        if self._columns is None:
            if self._active is not None:
                self._probe(self._active)
            else:
                with self._connect() as conn:
                    self._probe(conn)
        assert self._columns is not None
        return dict(self._columns)

    def _probe(self, conn: duckdb.DuckDBPyConnection) -> None:
        """Learn the relation's columns (and whether it has a rowid) on ``conn``."""
        try:
            rel = conn.query(self._select("*") + " LIMIT 0", params=self._params or None)
        except duckdb.CatalogException as exc:
            if self._missing is None:
                raise
            raise self._missing(exc) from exc
        self._columns = {
            name: str(dtype) for name, dtype in zip(rel.columns, rel.types, strict=True)
        }
        if self._row_id == "rowid?":
            try:
                conn.query(f"SELECT rowid FROM {self._relation} LIMIT 0")
                self._row_id = "rowid"
            except duckdb.BinderException:
                self._row_id = None  # a view: rows are fetched by key

    @contextmanager
    def session(self) -> Iterator[_DuckDBSession]:
        with self._connect() as conn:
            conn.execute("BEGIN TRANSACTION")
            self._active = conn
            try:
                if self._columns is None or self._row_id == "rowid?":
                    self._probe(conn)
                yield _DuckDBSession(self, conn)
            finally:
                self._active = None
                conn.execute("ROLLBACK")  # read only: nothing to keep

    def _select(self, what: str, also: str = "") -> str:
        """``SELECT what FROM relation`` with the window and ``also`` as its WHERE."""
        conditions = [f"({c})" for c in (self._where, also) if c]
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        return f"SELECT {what} FROM {self._relation}{where}"

    def _finish(self, frame: pl.DataFrame) -> pl.DataFrame:
        # UInt64 -> Int64 bit for bit: SQLite stores signed 64-bit integers.
        frame = frame.with_columns(pl.col(SOURCE_FP_COLUMN).reinterpret(signed=True))
        return self._post(frame) if self._post is not None else frame


class _DuckDBSession:
    def __init__(self, source: DuckDBSource, conn: duckdb.DuckDBPyConnection) -> None:
        self._source = source
        self._conn = conn
        self._keys: pl.Series | None = None  # by-key mode: the narrow pass's keys, by row
        self._key: str | None = None

    def _fp_sql(self, columns: Sequence[str]) -> str:
        # The seed is the last parameter; hash() folds its arguments in order.
        seed = f"${len(self._source._params) + 1}"
        cols = ", ".join(quote_identifier(c) for c in columns)
        return f"hash({seed}, {cols}) AS {quote_identifier(SOURCE_FP_COLUMN)}"

    def _query(self, sql: str, seed: str) -> pl.DataFrame:
        return self._conn.query(sql, params=[*self._source._params, seed]).pl()

    def fingerprints(
        self,
        key: str,
        columns: Sequence[str],
        seed: str,
        *,
        known: pl.Series | None = None,
        key_rule: KeyRule | None = None,
    ) -> pl.DataFrame:
        src = self._source
        hashed = (
            key_rule is not None
            and src._row_id is not None  # by-key reads (views) need the keys themselves
            # Text in DuckDB's words, or polars' for a ``frame_source``.
            and (src._columns or {}).get(key) in ("VARCHAR", "String")
            and not (key_rule == "lower" and self._has_wide_keys(key))
        )
        # A view has no rowid: number its rows instead (used only to tell them apart here).
        row_id = src._row_id or "row_number() OVER ()"
        what = [f"{self._fp_sql(columns)}", f"CAST({row_id} AS BIGINT) AS {SOURCE_ROW_COLUMN}"]
        if not hashed or src._post_needs_key:
            what.insert(0, quote_identifier(key))
        if hashed:
            what.append(_key_hash_sql(quote_identifier(key), key_rule == "lower"))
        narrow = src._select(", ".join(what))
        # DuckDB's hash join is several times faster than polars' is_in over a million random
        # 64-bit values. ``known`` goes in as UBIGINT, what hash() returns.
        fps = pl.Series("fp", [], dtype=pl.Int64) if known is None else known.cast(pl.Int64)
        table = pl.DataFrame({"fp": fps.reinterpret(signed=False)}).with_row_index("i")
        fp = quote_identifier(SOURCE_FP_COLUMN)
        sql = (
            f"SELECT n.*, CAST(k.i AS BIGINT) AS {KNOWN_ROW_COLUMN} FROM ({narrow}) AS n "
            f"LEFT JOIN __sf_activations_known AS k ON n.{fp} = k.fp"
        )
        self._conn.register("__sf_activations_known", table.to_arrow())
        try:
            frame = self._query(sql, seed)
            counted = self._conn.query(src._select("count(*)"), params=src._params or None)
            total = int(counted.fetchall()[0][0])
        finally:
            self._conn.unregister("__sf_activations_known")
        if frame.height != total:
            # Two known rows with one fingerprint (a 64-bit collision): one match per row.
            frame = frame.unique(subset=[SOURCE_ROW_COLUMN], keep="any")
        if src._row_id is None:
            # Rows are then read by key: a row's id is its position here.
            frame = frame.drop(SOURCE_ROW_COLUMN).with_row_index(SOURCE_ROW_COLUMN)
            frame = frame.with_columns(pl.col(SOURCE_ROW_COLUMN).cast(pl.Int64))
            self._keys, self._key = frame.get_column(key), key
        return src._finish(frame)

    def _has_wide_keys(self, key: str) -> bool:
        """Whether any key has a character beyond ASCII (whose lower case only polars knows)."""
        src = self._source
        k = quote_identifier(key)
        sql = src._select("count(*)", f"strlen({k}) <> length({k})")
        return int(self._conn.query(sql, params=src._params or None).fetchall()[0][0]) > 0

    def read(
        self, columns: Sequence[str], seed: str, *, rows: pl.Series | None = None
    ) -> pl.DataFrame:
        src = self._source
        what = ", ".join([*(quote_identifier(c) for c in columns), self._fp_sql(columns)])
        if rows is None:
            return src._finish(self._query(src._select(what), seed))
        if src._row_id is not None:
            wanted = pl.DataFrame({"r": rows.cast(pl.Int64)})
            where = f"{src._row_id} IN (SELECT r FROM __sf_activations_rows)"
        else:
            if self._keys is None or self._key is None:
                msg = "read(rows=...) needs fingerprints() first in the same session"
                raise RuntimeError(msg)
            wanted = pl.DataFrame({"r": self._keys.gather(rows).drop_nulls().unique()})
            k = quote_identifier(self._key)
            where = f"{k} IS NULL OR {k} IN (SELECT r FROM __sf_activations_rows)"
        self._conn.register("__sf_activations_rows", wanted.to_arrow())
        try:
            return src._finish(self._query(src._select(what, where), seed))
        finally:
            self._conn.unregister("__sf_activations_rows")


def _key_hash_sql(key: str, lower: bool) -> str:
    """``__key_hash`` of a text key: null for a missing key and for any key that starts with
    white space (every blank key does); else ``hash`` of the key, lower-cased when ``lower``
    (the caller has checked that every key is ASCII, where DuckDB's ``lower`` and polars'
    ``to_lowercase`` agree)."""
    text = f"lower({key})" if lower else key
    maybe_blank = (
        f"{key} IS NULL OR {key} = '' OR ord({key}) <= 32 OR ord({key}) IN ({_WIDE_SPACES})"
        f" OR ord({key}) BETWEEN 8192 AND 8202"
    )
    return (
        f"CAST(CASE WHEN {maybe_blank} THEN NULL ELSE hash({text}) END AS UBIGINT)"
        f" AS {KEY_HASH_COLUMN}"
    )


def frame_source(frame: pl.DataFrame) -> DuckDBSource:
    """A ``PartitionSource`` over an in-memory polars frame (a zero-copy Arrow view)."""
    table = frame.with_row_index("__sf_activations_row").to_arrow()

    @contextmanager
    def connect() -> Iterator[duckdb.DuckDBPyConnection]:
        conn = duckdb.connect()
        try:
            conn.register("__sf_activations_frame", table)
            yield conn
        finally:
            conn.close()

    # The frame's own columns and types (not the row index added for fetching by row).
    columns = {name: str(dtype) for name, dtype in frame.schema.items()}
    return DuckDBSource(
        connect, "__sf_activations_frame", row_id='"__sf_activations_row"', columns=columns
    )
