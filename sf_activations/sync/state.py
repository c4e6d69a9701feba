"""Per-record sync state and the journal of submitted Bulk jobs, in one SQLite file.

SQLite in WAL mode lets partitions running in different processes read while one writes; each
write is a short ``BEGIN IMMEDIATE`` transaction and ``busy_timeout`` makes a second writer wait
for the lock instead of failing. Each (sync, partition) writes only its own rows, so parallel
partitions never contend for the same state, only briefly for the file's write lock. The one
exception is ``adopt``: a record that moved to another time partition takes its row along
(see there why that stays safe next to a parallel run of the partition it left).

The journal is what makes a crash harmless (invariant 1): an entry with the records' keys and
fingerprints is written *before* a Bulk job is submitted, the job id right after, and the entry
is closed in the same transaction that commits the job's results. A run that finds an entry
still open reconciles it by job id before planning anything.

SQLite stays the only source of truth, but reading a million rows out of it costs seconds
(one Python object per value). So a run also leaves a columnar *snapshot* of the partition's
diff columns next to the database (Arrow IPC, ``<db>.snapshots/``), stamped with the
partition's *generation*: a counter every write to the partition's rows bumps in the same
transaction. ``load`` uses the snapshot only when its generation (and the database's own id)
match, so a snapshot can be missing or stale but never wrong; ``save_snapshot`` builds the next
one from the loaded frame plus the outcomes this store committed since, replaying SQLite's
upsert rules in polars (a test compares the two).

A run that changes a few rows of a big partition would still pay SQLite for every B-tree page
its scattered keys land on. So the rows of non-time partitions live in two tables:
``record_state`` (the base) and ``record_state_recent``, a small overlay whose row replaces
the base row of the same (sync, partition, key); small commits write the overlay and, once
it holds enough, fold it into the base in key order (see ``commit_results``). Every reader
reads both in one transaction; the view ``record_state_current`` shows the result to people
who open the file by hand. Time partitions write the base only (see ``commit_results``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import repeat
from pathlib import Path
from types import TracebackType
from typing import Literal

import polars as pl
import pyarrow as pa

JournalState = Literal["submitting", "submitted", "reconciled", "abandoned"]

STATE_SCHEMA: dict[str, pl.DataType] = {
    "key": pl.String(),
    "fingerprint": pl.String(),
    "salesforce_id": pl.String(),
    "status": pl.String(),
    "error_code": pl.String(),
    "error_message": pl.String(),
    "attempts": pl.Int64(),
    "first_failed_at": pl.String(),
    "updated_at": pl.String(),
    "source_fingerprint": pl.Int64(),
}
"""Columns of ``StateStore.load``: one row per record key of the (sync, partition).

``source_fingerprint`` is the warehouse's fingerprint of the source row last confirmed
(``sync/source.py``): set by a success whose row was staged with ``stage_source_fingerprints``,
cleared by any failure. It lets a run skip rows that did not change without mapping them."""

RESULT_SCHEMA: dict[str, pl.DataType] = {
    "key": pl.String(),
    "fingerprint": pl.String(),
    "success": pl.Boolean(),
    "salesforce_id": pl.String(),
    "error_code": pl.String(),
    "error_message": pl.String(),
}
"""Columns ``StateStore.commit_results`` expects: one row per record outcome."""

# The record tables' columns: the base and the overlay (see StateStore.commit_results) alike.
_RECORD_COLUMNS_DDL = """
    sync TEXT NOT NULL,
    partition TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT,
    salesforce_id TEXT,
    status TEXT NOT NULL CHECK (status IN ('synced', 'pending')),
    error_code TEXT,
    error_message TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    first_failed_at TEXT,
    updated_at TEXT NOT NULL,
    source_fingerprint INTEGER,
    PRIMARY KEY (sync, partition, key)
"""

_DDL = f"""
CREATE TABLE IF NOT EXISTS record_state (
{_RECORD_COLUMNS_DDL}) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS record_state_pending ON record_state (sync, partition)
    WHERE status = 'pending';
-- Time partition keys start with a digit (2026-01-31, 2026-01-31-10:00): only their rows are
-- looked up by key across partitions (adopt), so only they pay for this index.
CREATE INDEX IF NOT EXISTS record_state_time_key ON record_state (sync, key)
    WHERE partition GLOB '[0-9]*';
-- The overlay (see StateStore.commit_results): a row here replaces the row of the same
-- (sync, partition, key) in record_state. Small runs of non-time partitions write here.
CREATE TABLE IF NOT EXISTS record_state_recent (
{_RECORD_COLUMNS_DDL}) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS record_state_recent_pending ON record_state_recent (sync, partition)
    WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS bulk_jobs (
    entry_id TEXT PRIMARY KEY,
    job_id TEXT,
    sync TEXT NOT NULL,
    partition TEXT NOT NULL,
    sobject TEXT NOT NULL,
    operation TEXT NOT NULL,
    external_id_field TEXT,
    key_header TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    records BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS bulk_jobs_open ON bulk_jobs (sync, partition, state);
CREATE TABLE IF NOT EXISTS partition_generation (
    sync TEXT NOT NULL,
    partition TEXT NOT NULL,
    generation INTEGER NOT NULL,
    PRIMARY KEY (sync, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS store_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO store_meta (name, value) VALUES ('store_id', lower(hex(randomblob(8))));
"""

_COLUMNS = (
    "sync",
    "partition",
    "key",
    "fingerprint",
    "salesforce_id",
    "status",
    "error_code",
    "error_message",
    "attempts",
    "first_failed_at",
    "updated_at",
    "source_fingerprint",
)
_COLUMN_LIST = ", ".join(_COLUMNS)

# Created after ``_add_missing_columns``: it names every column of both tables.
_VIEW_DDL = f"""
CREATE VIEW IF NOT EXISTS record_state_current AS
SELECT {_COLUMN_LIST} FROM record_state_recent
UNION ALL
SELECT {", ".join(f"b.{c}" for c in _COLUMNS)} FROM record_state AS b
WHERE NOT EXISTS (SELECT 1 FROM record_state_recent AS r
                  WHERE r.sync = b.sync AND r.partition = b.partition AND r.key = b.key)
"""

_BASE = "record_state"
_RECENT = "record_state_recent"

RECENT_LIMIT = 50_000
"""Rows of one (sync, partition) that ``record_state_recent`` may hold, at least: a commit
that would take them past ``max(RECENT_LIMIT, RECENT_SHARE * rows of the partition)`` first
folds them into ``record_state`` and writes its own rows there.

Why the overlay pays: a small run's upserts land on scattered keys of a big B-tree, and
SQLite writes every page they touch (to the WAL, then again at the checkpoint): 10,000 keys
of a 1M-row partition touch some 8,500 of its 37,000 pages, 34 MB, 0.3 s. In the recent
table the same rows fill a few hundred pages (0.03-0.15 s). The fold then writes the held
rows into the base in key order, once per base page however many of them land on it, so
it stays below what the runs would have cost writing the base directly: measured on that
partition, folding 100,000 scattered rows costs 1.0 s where ten 10,000-row commits cost
3.0 s (and 50,000 rows 1.0 s too: past a share of the partition a fold rewrites most pages
anyway, which is why the limit grows with the partition).

Why this floor: below it a partition's first runs and a modest partition do not fold
often; and it stays under the batches of a full load (a Bulk job of 100,000 records into a
new partition goes straight to the base, with no copying; a partition's size is known
only once it has been loaded).
"""

RECENT_SHARE = 0.10
"""See ``RECENT_LIMIT``: the share of the partition's rows (as this store last loaded them)
the recent table may hold when that is more than ``RECENT_LIMIT``. A tenth keeps the
recent table small next to the base (what a read lays over it, and what a small run's
upserts touch) while a fold takes in ten 1% runs."""

_TIME_PARTITION_FIRST = frozenset("0123456789")

_COPY_TO_RECENT = f"""
INSERT OR IGNORE INTO record_state_recent ({_COLUMN_LIST})
SELECT {", ".join(f"b.{c}" for c in _COLUMNS)} FROM json_each(?) AS j
CROSS JOIN record_state AS b
WHERE b.sync = ? AND b.partition = ? AND b.key = j.value
"""

# An upsert, not INSERT OR REPLACE: an update in place writes a third less to the WAL than a
# delete and insert of the same row (measured: 57 MB against 87 MB for 70,000 rows).
_FOLD = f"""
INSERT INTO record_state ({_COLUMN_LIST})
SELECT {_COLUMN_LIST} FROM record_state_recent WHERE sync = ? AND partition = ? ORDER BY key
ON CONFLICT (sync, partition, key) DO UPDATE SET
{", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[3:])}
"""

STATE_SCHEMA_VERSION = 2
"""The layout of the state file this release writes (``store_meta.schema_version``): 1 is
``record_state`` alone (files without the entry), 2 adds ``record_state_recent``. A file of
a later layout is refused (``StateFileTooNew``): this release would not read rows that one
keeps elsewhere, and would send those records again or, for ``create_only``, create them
twice."""


class StateFileTooNew(RuntimeError):
    """The state file was written by a later release, in a layout this one cannot read."""

    def __init__(self, path: Path, found: int) -> None:
        self.path, self.found = path, found
        super().__init__(
            f"The state file {path} was written by a later sf_activations (state layout "
            f"{found}; this release reads up to {STATE_SCHEMA_VERSION}). Upgrade sf_activations "
            "to the release that wrote it; do not run this one on it: it would not see every "
            "record's state, and would send records again (create_only syncs would create "
            "them twice)."
        )


_BUMP = """
INSERT INTO partition_generation (sync, partition, generation) VALUES (?, ?, 1)
ON CONFLICT (sync, partition) DO UPDATE SET generation = generation + 1
RETURNING generation
"""

DELTA_SHARE = 0.25
"""A snapshot is saved as the changed rows next to the last full one while they stay under
this share of the partition; then in full again."""

SNAPSHOT_COLUMNS = (
    "key",
    "fingerprint",
    "salesforce_id",
    "status",
    "attempts",
    "source_fingerprint",
)
"""The state columns a snapshot holds (the diff's): ``load`` serves these from it."""

_UPSERT_SUCCESS_SQL = """
INSERT INTO {table} (sync, partition, key, fingerprint, salesforce_id, status,
                     error_code, error_message, attempts, first_failed_at, updated_at,
                     source_fingerprint)
VALUES (?, ?, ?, ?, ?, 'synced', NULL, NULL, 0, NULL, ?, ?)
ON CONFLICT (sync, partition, key) DO UPDATE SET
    fingerprint = excluded.fingerprint,
    salesforce_id = COALESCE(excluded.salesforce_id, {table}.salesforce_id),
    status = 'synced', error_code = NULL, error_message = NULL, attempts = 0,
    first_failed_at = NULL, updated_at = excluded.updated_at,
    source_fingerprint = excluded.source_fingerprint
"""

_UPSERT_FAILURE_SQL = """
INSERT INTO {table} (sync, partition, key, fingerprint, salesforce_id, status,
                     error_code, error_message, attempts, first_failed_at, updated_at)
VALUES (?, ?, ?, ?, NULL, 'pending', ?, ?, 1, ?, ?)
ON CONFLICT (sync, partition, key) DO UPDATE SET
    fingerprint = excluded.fingerprint,
    status = 'pending', error_code = excluded.error_code, error_message = excluded.error_message,
    attempts = {table}.attempts + 1,
    first_failed_at = COALESCE({table}.first_failed_at, excluded.first_failed_at),
    updated_at = excluded.updated_at, source_fingerprint = NULL
"""

# The same rules against either table: the recent table first receives a copy of the base
# rows of the batch's keys, so the upserts see the old Id, attempts and first failure there.
_UPSERT_SUCCESS = {t: _UPSERT_SUCCESS_SQL.format(table=t) for t in (_BASE, _RECENT)}
_UPSERT_FAILURE = {t: _UPSERT_FAILURE_SQL.format(table=t) for t in (_BASE, _RECENT)}


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """A Bulk job the engine submitted (or was about to) and has not reconciled yet."""

    entry_id: str
    job_id: str | None  # None: the run stopped before Salesforce returned the job id
    sync: str
    partition: str
    sobject: str
    operation: str
    external_id_field: str | None
    key_header: str  # the CSV column whose value is the record's key in the job's results
    state: JournalState
    created_at: str


def now_iso() -> str:
    """The current UTC time as ISO 8601 text with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class StateStore:
    """Per-record sync state in one SQLite file (WAL mode), safe for parallel partitions in
    different processes (each (sync, partition) writes only its own rows, except the rows of
    records that moved in, see ``adopt``; writes in transactions).
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 120.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE), so a writer takes
        # the lock up front and waits on busy_timeout instead of failing mid-transaction.
        self._conn = sqlite3.connect(
            self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        found = _schema_version(self._conn)
        if found > STATE_SCHEMA_VERSION:
            self._conn.close()
            raise StateFileTooNew(self.path, found)
        # executescript commits by itself; every statement is idempotent (IF NOT EXISTS).
        self._conn.executescript(_DDL)
        _add_missing_columns(self._conn)
        self._conn.execute(_VIEW_DDL)
        if found < STATE_SCHEMA_VERSION:
            # After the upgrade above: a release that checks the layout sees this one's.
            self._conn.execute(
                "INSERT INTO store_meta (name, value) VALUES ('schema_version', ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value"
                " WHERE CAST(store_meta.value AS INTEGER) < CAST(excluded.value AS INTEGER)",
                (str(STATE_SCHEMA_VERSION),),
            )
        self._store_id = str(
            self._conn.execute("SELECT value FROM store_meta WHERE name = 'store_id'").fetchone()[0]
        )
        self._snapshots = Path(f"{self.path}.snapshots")
        # (sync, partition) -> what this store loaded and committed since: see save_snapshot.
        self._tracked: dict[tuple[str, str], _Tracked] = {}
        # (sync, partition) -> key, fingerprint, source_fingerprint of the rows being sent.
        self._staged: dict[tuple[str, str], pl.DataFrame] = {}

    def __repr__(self) -> str:
        return f"StateStore({str(self.path)!r})"

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """One read transaction (unless one is open already): the base and the recent table
        read in it agree, even while another process folds one into the other."""
        if self._conn.in_transaction:
            yield
            return
        self._conn.execute("BEGIN")
        try:
            yield
        finally:
            self._conn.execute("COMMIT")

    # ------------------------------------------------------------------ record state

    def load(
        self, sync: str, partition: str, *, columns: Sequence[str] | None = None
    ) -> pl.DataFrame:
        """The (sync, partition)'s state, one row per key (schema ``STATE_SCHEMA``).

        ``columns`` narrows the read to what the caller needs (``key`` is always first). When
        they are among ``SNAPSHOT_COLUMNS`` and the partition's snapshot is current, they come
        from it (a million rows in a fraction of a second); otherwise from SQLite, which hands
        rows to Python one object per value (about 1.5 s per million rows for the diff's five
        columns).
        """
        wanted = ["key", *[c for c in columns or STATE_SCHEMA if c != "key"]]
        unknown = set(wanted) - set(STATE_SCHEMA)
        if unknown:
            msg = f"unknown state column(s): {sorted(unknown)}; known: {list(STATE_SCHEMA)}"
            raise ValueError(msg)
        if not set(wanted) <= set(SNAPSHOT_COLUMNS):
            return self._select(sync, partition, wanted)
        # One read transaction: the generation and the rows agree.
        with self._reading():
            generation = self._generation(sync, partition)
            tracked = self._read_snapshot(sync, partition, generation)
            if tracked is None:
                frame = self._select(sync, partition, list(SNAPSHOT_COLUMNS))
                tracked = _Tracked(generation=generation, frame=frame)
        self._tracked[(sync, partition)] = tracked
        return tracked.base.select(wanted)

    def _read_snapshot(self, sync: str, partition: str, generation: int) -> _Tracked | None:
        """The partition at ``generation`` from its snapshot files, or None if they are missing,
        unreadable (e.g. cut short by a full disk) or of another layout: then SQLite serves."""
        full = self._snapshot_path(sync, partition, generation)
        deltas = sorted(self._snapshots.glob(f"{full.name.removesuffix('.arrow')}.delta.*.arrow"))
        try:
            if full.exists():
                frame = _read_ipc(full)
                if frame is None:
                    return None
                return _Tracked(generation, frame, base_generation=generation)
            for delta_path in deltas:
                base_generation = int(delta_path.name.split(".")[-2])
                base = _read_ipc(self._snapshot_path(sync, partition, base_generation))
                delta = _read_ipc(delta_path)
                if base is None or delta is None:
                    return None
                return _Tracked(
                    generation,
                    _overlay(base, delta),
                    base_generation=base_generation,
                    delta=delta,
                )
        except ValueError:
            return None  # a file name this release did not write
        return None

    def _select(self, sync: str, partition: str, wanted: Sequence[str]) -> pl.DataFrame:
        """The partition's rows from SQLite: the base with the recent table's rows laid over
        it. The overlay is done in polars: one pass over the base's keys, where SQL would look
        every base row up in the recent table."""
        columns = ", ".join(wanted)
        schema = {c: STATE_SCHEMA[c] for c in wanted}
        with self._reading():
            recent = self._conn.execute(
                f"SELECT {columns} FROM record_state_recent WHERE sync = ? AND partition = ?",
                (sync, partition),
            ).fetchall()
            rows = self._conn.execute(
                f"SELECT {columns} FROM record_state WHERE sync = ? AND partition = ?",
                (sync, partition),
            ).fetchall()
        base = pl.DataFrame(rows, schema=schema, orient="row")
        if not recent:
            return base
        return _overlay(base, pl.DataFrame(recent, schema=schema, orient="row"))

    def _generation(self, sync: str, partition: str) -> int:
        row = self._conn.execute(
            "SELECT generation FROM partition_generation WHERE sync = ? AND partition = ?",
            (sync, partition),
        ).fetchone()
        return int(row[0]) if row is not None else 0

    def _bump(self, conn: sqlite3.Connection, sync: str, partition: str) -> int:
        """Count a write to the partition's rows (inside the writing transaction)."""
        return int(conn.execute(_BUMP, (sync, partition)).fetchone()[0])

    def _snapshot_path(self, sync: str, partition: str, generation: int) -> Path:
        return self._snapshots / f"{_digest(sync, partition)}.{self._store_id}.{generation}.arrow"

    def _delta_path(self, sync: str, partition: str, generation: int, base: int) -> Path:
        full = self._snapshot_path(sync, partition, generation)
        return full.with_name(f"{full.name.removesuffix('.arrow')}.delta.{base}.arrow")

    def save_snapshot(self, sync: str, partition: str) -> bool:
        """Write the partition's snapshot for its current generation; True if written.

        Built from the frame the last ``load`` returned plus the rows ``adopt`` moved in and
        the outcomes this store committed since, with SQLite's rules (a success stores the
        fingerprint and keeps the old Id when it has none, resets attempts; a failure stores
        the fingerprint, keeps the Id, counts the attempt). Nothing is written when the
        partition was not loaded through this store, when another writer (or ``forget``, or
        an ``adopt`` that moved rows out) touched it since, or when nothing changed.
        """
        tracked = self._tracked.get((sync, partition))
        if tracked is None or tracked.broken or not (tracked.events or tracked.moved_in):
            return False
        if self._generation(sync, partition) != tracked.generation:
            self._tracked.pop((sync, partition), None)
            return False
        generation = tracked.generation
        self._snapshots.mkdir(parents=True, exist_ok=True)
        changed = _changed_rows(tracked.base, tracked.events) if tracked.events else None
        base = tracked.base_generation
        if changed is not None and base is not None and not tracked.moved_in:
            # Most runs change a few rows of a big partition: write those, next to the last
            # full snapshot, until they add up to DELTA_SHARE of it (of the rows before this
            # run's new ones: the whole frame is not built for this).
            delta = changed if tracked.delta is None else _overlay(tracked.delta, changed)
            if delta.height <= DELTA_SHARE * tracked.base.height:
                target = self._delta_path(sync, partition, generation, base)
                _write_ipc(delta, target)
                self._drop_snapshots_but(
                    sync, partition, {target, self._snapshot_path(sync, partition, base)}
                )
                self._tracked[(sync, partition)] = _Tracked(
                    generation, tracked.base, base_generation=base, delta=delta, replaced=changed
                )
                return True
        frame = tracked.base if changed is None else _overlay(tracked.base, changed)
        target = self._snapshot_path(sync, partition, generation)
        _write_ipc(frame, target)
        self._drop_snapshots_but(sync, partition, {target})
        self._tracked[(sync, partition)] = _Tracked(generation, frame, base_generation=generation)
        return True

    def _drop_snapshots_but(self, sync: str, partition: str, keep: set[Path]) -> None:
        for old in self._snapshots.glob(f"{_digest(sync, partition)}.*.arrow"):
            if old not in keep:
                old.unlink(missing_ok=True)

    def partitions(self, sync: str) -> list[str]:
        """The partitions that hold state for ``sync`` (in either table: the recent table
        holds no deletions, so a partition with a row there holds state)."""
        cur = self._conn.execute(
            "SELECT DISTINCT partition FROM record_state WHERE sync = ?"
            " UNION SELECT DISTINCT partition FROM record_state_recent WHERE sync = ?"
            " ORDER BY 1",
            (sync, sync),
        )
        return [r[0] for r in cur.fetchall()]

    def counts(self, sync: str, partition: str | None = None) -> dict[str, int]:
        """Number of records by status (``synced``/``pending``), for one partition or all.

        One statement (one consistent read): the base's counts, plus the recent table's,
        minus the base rows the recent table replaces (found by key from the recent side, so
        the base is scanned once, as before the overlay)."""
        args: tuple[str, ...]
        if partition is None:
            where, replaced, args = "sync = ?", "r.sync = ?", (sync,)
        else:
            where, replaced = "sync = ? AND partition = ?", "r.sync = ? AND r.partition = ?"
            args = (sync, partition)
        cur = self._conn.execute(
            "SELECT status, SUM(n) FROM ("
            f" SELECT status, COUNT(*) AS n FROM record_state WHERE {where} GROUP BY status"
            " UNION ALL"
            f" SELECT status, COUNT(*) FROM record_state_recent WHERE {where} GROUP BY status"
            " UNION ALL"
            " SELECT b.status, -COUNT(*) FROM record_state_recent AS r CROSS JOIN record_state AS b"
            " WHERE b.sync = r.sync AND b.partition = r.partition AND b.key = r.key"
            f" AND {replaced} GROUP BY b.status"
            ") GROUP BY status",
            args * 3,
        )
        out = {"synced": 0, "pending": 0}
        out.update({str(s): int(n) for s, n in cur.fetchall()})
        return out

    def pending_count(self, sync: str, partition: str) -> int:
        """Records of (sync, partition) still pending (the partial indexes on both tables keep
        this instant: it reads the pending rows only)."""
        cur = self._conn.execute(
            "SELECT (SELECT COUNT(*) FROM record_state AS b INDEXED BY record_state_pending"
            "  WHERE b.sync = ? AND b.partition = ? AND b.status = 'pending'"
            "  AND NOT EXISTS (SELECT 1 FROM record_state_recent AS r"
            "   WHERE r.sync = b.sync AND r.partition = b.partition AND r.key = b.key))"
            " + (SELECT COUNT(*) FROM record_state_recent INDEXED BY record_state_recent_pending"
            "  WHERE sync = ? AND partition = ? AND status = 'pending')",
            (sync, partition, sync, partition),
        )
        return int(cur.fetchone()[0])

    def commit_results(
        self,
        sync: str,
        partition: str,
        results: pl.DataFrame,
        *,
        close_entry: str | None = None,
    ) -> None:
        """Record outcomes (schema ``RESULT_SCHEMA``) in one transaction.

        A success stores the fingerprint and Salesforce Id and clears the error; a failure
        marks the record pending with its error, counts the attempt and keeps any earlier
        Salesforce Id. ``close_entry`` marks that journal entry reconciled in the same
        transaction, so results and journal never disagree after a crash.

        Where the rows go (``_table_for``, in the same transaction): time partitions write
        ``record_state``, always. ``adopt`` and ``moved_away`` look records up across time
        partitions by key (index ``record_state_time_key``) and move rows with plain updates
        of the base: that stays exact only while no time partition has rows in the recent
        table. Other partitions write the recent table while it stays under its limit
        (``RECENT_LIMIT``), after copying the base rows of the batch's keys into it; past
        the limit the partition's recent rows are first folded into the base and the batch
        is written there.
        """
        stamp = now_iso()
        # In key order: SQLite then walks its B-tree forward and writes the pages it touched
        # in order (about a fifth faster for a run's scattered updates). Stable, so a key's
        # outcomes keep their order.
        ok = self._with_source_fingerprints(
            sync, partition, results.filter(pl.col("success"))
        ).sort("key", maintain_order=True)
        bad = results.filter(~pl.col("success")).sort("key", maintain_order=True)
        # Whole columns to Python lists, then zip: cheaper than a tuple per row from polars.
        n_ok, n_bad = ok.height, bad.height
        ok_rows = list(
            zip(
                repeat(sync, n_ok),
                repeat(partition, n_ok),
                ok.get_column("key").to_list(),
                ok.get_column("fingerprint").to_list(),
                ok.get_column("salesforce_id").to_list(),
                repeat(stamp, n_ok),
                ok.get_column("source_fingerprint").to_list(),
                strict=True,
            )
        )
        bad_rows = list(
            zip(
                repeat(sync, n_bad),
                repeat(partition, n_bad),
                bad.get_column("key").to_list(),
                bad.get_column("fingerprint").to_list(),
                bad.get_column("error_code").to_list(),
                bad.get_column("error_message").to_list(),
                repeat(stamp, n_bad),
                repeat(stamp, n_bad),
                strict=True,
            )
        )
        with self._write() as conn:
            table = (
                self._table_for(conn, sync, partition, ok, bad) if ok_rows or bad_rows else _BASE
            )
            if ok_rows:
                conn.executemany(_UPSERT_SUCCESS[table], ok_rows)
            if bad_rows:
                conn.executemany(_UPSERT_FAILURE[table], bad_rows)
            if close_entry is not None:
                conn.execute(
                    "UPDATE bulk_jobs SET state = 'reconciled', updated_at = ? WHERE entry_id = ?",
                    (stamp, close_entry),
                )
            if ok_rows or bad_rows:
                generation = self._bump(conn, sync, partition)
        if ok_rows or bad_rows:
            # In the order SQLite applied them: successes, then failures.
            columns = ("key", "fingerprint", "success", "salesforce_id")
            events = pl.concat(
                [
                    ok.select(*columns, "source_fingerprint"),
                    bad.select(*columns, pl.lit(None, dtype=pl.Int64).alias("source_fingerprint")),
                ]
            )
            self._track(sync, partition, generation, events)

    def _table_for(
        self,
        conn: sqlite3.Connection,
        sync: str,
        partition: str,
        ok: pl.DataFrame,
        bad: pl.DataFrame,
    ) -> str:
        """The table a batch of outcomes (``ok`` and ``bad``) is written to, made ready for
        it, inside the writing transaction (see ``commit_results``)."""
        if partition[:1] in _TIME_PARTITION_FIRST:  # GLOB '[0-9]*', as the index
            return _BASE
        held = int(
            conn.execute(
                "SELECT COUNT(*) FROM record_state_recent WHERE sync = ? AND partition = ?",
                (sync, partition),
            ).fetchone()[0]
        )
        if held + ok.height + bad.height <= self._recent_limit(sync, partition):
            # The base rows of the keys whose upsert reads the old row: a failure's (attempts,
            # first failure, Id) and an Id-less success's (Id). A success with an Id sets
            # every column, so the row it inserts is the one the base would hold. In key
            # order; a key the recent table holds already keeps its (newer) row there.
            needs_old = ok.filter(pl.col("salesforce_id").is_null()).get_column("key")
            keys = pl.concat([needs_old, bad.get_column("key")]).unique().sort()
            if keys.len():
                conn.execute(_COPY_TO_RECENT, (json.dumps(keys.to_list()), sync, partition))
            return _RECENT
        if held:
            # In key order, so the base's pages are written once each, front to back.
            conn.execute(_FOLD, (sync, partition))
            conn.execute(
                "DELETE FROM record_state_recent WHERE sync = ? AND partition = ?",
                (sync, partition),
            )
        return _BASE

    def _recent_limit(self, sync: str, partition: str) -> int:
        """How many rows of (sync, partition) the recent table may hold (``RECENT_LIMIT``).
        The partition's size comes from the frame this store last loaded; unknown (nothing
        loaded, e.g. while reconciling a crashed run's jobs) it counts as zero, which folds
        early at worst."""
        tracked = self._tracked.get((sync, partition))
        rows = tracked.frame.height if tracked is not None else 0
        return max(RECENT_LIMIT, int(RECENT_SHARE * rows))

    def stage_source_fingerprints(self, sync: str, partition: str, rows: pl.DataFrame) -> None:
        """Remember the source fingerprints of records about to be sent (``key``,
        ``fingerprint``, ``source_fingerprint``): a success committed for one of these keys
        with the same fingerprint stores its source fingerprint too. Replaces earlier staging;
        ``unstage`` drops it."""
        staged = rows.select(
            pl.col("key").cast(pl.String).alias("__staged_key"),
            pl.col("fingerprint").cast(pl.String).alias("__staged_fp"),
            pl.col("source_fingerprint").cast(pl.Int64),
        ).unique(subset="__staged_key", keep="last")
        # Looked up by a 64-bit hash of the key (each commit picks its keys out of a million
        # staged ones: far cheaper on integers than on text). Keys whose hashes collide are
        # left out: their successes store no source fingerprint, so they are merely read
        # again next run.
        hashed = staged.with_columns(pl.col("__staged_key").hash(seed=0).alias("__key_hash"))
        self._staged[(sync, partition)] = hashed.filter(pl.col("__key_hash").is_unique())

    def unstage(self, sync: str, partition: str) -> None:
        """Forget what ``stage_source_fingerprints`` staged for (sync, partition)."""
        self._staged.pop((sync, partition), None)

    def _with_source_fingerprints(
        self, sync: str, partition: str, ok: pl.DataFrame
    ) -> pl.DataFrame:
        """``ok`` (successes) with a ``source_fingerprint`` column: the one given, else the
        staged one when the fingerprint is the staged one, else null."""
        if "source_fingerprint" in ok.columns:
            return ok.with_columns(pl.col("source_fingerprint").cast(pl.Int64))
        staged = self._staged.get((sync, partition))
        if staged is None or ok.height == 0:
            return ok.with_columns(pl.lit(None, dtype=pl.Int64).alias("source_fingerprint"))
        hashes = ok.get_column("key").hash(seed=0).alias("__key_hash")
        # The staged rows of this batch's keys first (a pass over integers), then the join.
        mine = staged.filter(pl.col("__key_hash").is_in(hashes.implode()))
        joined = ok.with_columns(hashes).join(mine, on="__key_hash", how="left")
        same = (pl.col("key") == pl.col("__staged_key")) & pl.col("fingerprint").eq_missing(
            pl.col("__staged_fp")
        )
        return joined.with_columns(
            pl.when(same).then(pl.col("source_fingerprint")).alias("source_fingerprint")
        ).drop("__key_hash", "__staged_key", "__staged_fp")

    def _next_tracked(self, sync: str, partition: str, generation: int) -> _Tracked | None:
        """The partition's tracked frame if this store's write made ``generation`` (the one
        after the tracked one); None (and the frame marked broken) when another writer came
        between: no snapshot is then saved from here."""
        tracked = self._tracked.get((sync, partition))
        if tracked is None or tracked.broken:
            return None
        if generation != tracked.generation + 1:
            tracked.broken = True
            return None
        return tracked

    def _track(self, sync: str, partition: str, generation: int, events: pl.DataFrame) -> None:
        tracked = self._next_tracked(sync, partition, generation)
        if tracked is None:
            return
        tracked.generation = generation
        tracked.events.append(events.cast(pl.Schema(_EVENT_SCHEMA)))

    def forget(self, sync: str, partition: str, keys: Sequence[str]) -> None:
        """Drop the state of ``keys`` (records deleted in Salesforce or moved elsewhere)."""
        rows = [(sync, partition, k) for k in keys]
        with self._write() as conn:
            for table in (_RECENT, _BASE):
                conn.executemany(
                    f"DELETE FROM {table} WHERE sync = ? AND partition = ? AND key = ?", rows
                )
            self._bump(conn, sync, partition)
        # Rare (deletes and moves): the next load reads SQLite and starts a fresh snapshot.
        self._tracked.pop((sync, partition), None)

    def adopt(self, sync: str, partition: str, keys: pl.Series) -> pl.DataFrame:
        """Move the state of ``keys`` that other partitions of ``sync`` hold into ``partition``
        and return the moved rows (``SNAPSHOT_COLUMNS``).

        For time partitions, where a record moves when its timestamp changes: the record keeps
        its fingerprint, Salesforce Id, status, attempts and source fingerprint, so the diff
        sees a record it knows (unchanged, changed or to retry) instead of a new one, and the
        partition it left keeps no stale copy (which would later call the record "unchanged"
        while Salesforce holds what another partition sent). Keys ``partition`` already holds
        are left alone. A key held by several other partitions (state written before moves
        were adopted) takes the most recently updated row; the older copies are dropped.

        The look-up is a read (index ``record_state_time_key``, time partitions only) and
        takes no lock; only keys found elsewhere are moved, in one ``BEGIN IMMEDIATE``
        transaction that bumps the generation of every partition it touches. This is the one write to another partition's rows, and
        it stays safe next to a run of that partition in another process: SQLite serializes the
        move with every other writer, so at every commit a row is in exactly one partition; and
        the bumped generation means the other run's loaded frame no longer matches its
        partition, so neither its ``load`` nor its ``save_snapshot`` serves that frame again
        (``_track`` sees the gap) and its next load reads SQLite. Its commits are upserts by
        key: it writes a row back only for a key its own source still holds, which is a key in
        two partitions of the model at once (as before moves were adopted, each partition then
        keeps its own row).
        """
        wanted = keys.cast(pl.String).drop_nulls().unique()
        empty = pl.DataFrame(schema={c: STATE_SCHEMA[c] for c in SNAPSHOT_COLUMNS})
        if wanted.len() == 0 or not self._has_other_partitions(sync, partition):
            return empty
        found = self._held_elsewhere(sync, partition, wanted.to_list())
        if not found:
            return empty
        stamp = now_iso()
        with self._write() as conn:
            # Again under the write lock: another run may have moved or written them since.
            rows = self._held_elsewhere(sync, partition, sorted({k for k, _, _ in found}))
            latest: dict[str, tuple[str, str]] = {}
            for key, source, updated_at in rows:
                best = latest.get(key)
                if best is None or (updated_at, source) > best:
                    latest[key] = (updated_at, source)
            moves = [(partition, stamp, sync, source, key) for key, (_, source) in latest.items()]
            drops = [(sync, source, key) for key, source, _ in rows if latest[key][1] != source]
            conn.executemany(
                "UPDATE record_state SET partition = ?, updated_at = ?"
                " WHERE sync = ? AND partition = ? AND key = ?",
                moves,
            )
            conn.executemany(
                "DELETE FROM record_state WHERE sync = ? AND partition = ? AND key = ?", drops
            )
            touched = {source for _, source, _ in rows}
            for source in sorted(touched):
                self._bump(conn, sync, source)
            generation = self._bump(conn, sync, partition) if moves else None
            adopted = pl.DataFrame(
                conn.execute(
                    f"SELECT {', '.join(f'r.{c}' for c in SNAPSHOT_COLUMNS)} FROM json_each(?) AS j"
                    " CROSS JOIN record_state AS r"
                    " WHERE r.sync = ? AND r.partition = ? AND r.key = j.value",
                    (json.dumps(sorted(latest)), sync, partition),
                ).fetchall(),
                schema=empty.schema,
                orient="row",
            )
        for source in touched:
            # Rare: the next load of a partition that rows left reads SQLite and starts afresh.
            self._tracked.pop((sync, source), None)
        if generation is not None:
            self._track_adopted(sync, partition, generation, adopted)
        return adopted

    def moved_away(self, sync: str, partition: str, keys: pl.Series) -> pl.Series:
        """The ``keys`` that another (time) partition of ``sync`` holds and ``partition`` does
        not: records that moved there (``adopt``) while a job of ``partition`` was in flight."""
        wanted = keys.cast(pl.String).drop_nulls().unique()
        if wanted.len() == 0 or not self._has_other_partitions(sync, partition):
            return pl.Series("key", [], dtype=pl.String)
        found = self._held_elsewhere(sync, partition, wanted.to_list())
        return pl.Series("key", sorted({k for k, _, _ in found}), dtype=pl.String)

    def _has_other_partitions(self, sync: str, partition: str) -> bool:
        """Whether any partition of ``sync`` besides ``partition`` holds state (two seeks on
        the primary key, not a scan of ``partition``'s rows)."""
        for op in ("<", ">"):
            row = self._conn.execute(
                f"SELECT 1 FROM record_state WHERE sync = ? AND partition {op} ? LIMIT 1",
                (sync, partition),
            ).fetchone()
            if row is not None:
                return True
        return False

    def _held_elsewhere(
        self, sync: str, partition: str, keys: Sequence[str]
    ) -> list[tuple[str, str, str]]:
        """(key, partition, updated_at) of the rows of ``keys`` in other partitions of
        ``sync``, for keys ``partition`` does not hold. One statement: the keys go in as one
        JSON array and are looked up by ``record_state_time_key``."""
        cur = self._conn.execute(
            # CROSS JOIN keeps the keys the outer loop: SQLite would otherwise scan the sync's
            # rows and the JSON array for each.
            "SELECT r.key, r.partition, r.updated_at FROM json_each(?) AS j"
            " CROSS JOIN record_state AS r INDEXED BY record_state_time_key"
            " WHERE r.sync = ? AND r.key = j.value AND r.partition GLOB '[0-9]*'"
            " AND r.partition <> ? AND NOT EXISTS (SELECT 1 FROM record_state AS t"
            " WHERE t.sync = r.sync AND t.partition = ? AND t.key = r.key)",
            (json.dumps(list(keys)), sync, partition, partition),
        )
        return [(str(k), str(p), str(u)) for k, p, u in cur.fetchall()]

    def _track_adopted(
        self, sync: str, partition: str, generation: int, adopted: pl.DataFrame
    ) -> None:
        """Keep the partition's tracked frame (see ``save_snapshot``) in step with a move in."""
        tracked = self._next_tracked(sync, partition, generation)
        if tracked is None:
            return
        # Fold what was committed so far, then add the moved rows: none of their keys was in
        # the partition (checked under the write lock), so a plain concat is exact.
        base = _apply_events(tracked.base, tracked.events) if tracked.events else tracked.base
        self._tracked[(sync, partition)] = _Tracked(
            generation=generation,
            frame=pl.concat([base, adopted.cast(pl.Schema(base.schema))]),
            moved_in=True,
        )

    # ------------------------------------------------------------------ bulk job journal

    def journal_open(
        self,
        *,
        sync: str,
        partition: str,
        sobject: str,
        operation: str,
        external_id_field: str | None,
        key_header: str,
        keys: pl.Series,
        fingerprints: pl.Series,
        result_keys: pl.Series | None = None,
    ) -> str:
        """Write a journal entry for a job about to be submitted; return its entry id.

        ``result_keys`` are what the job's results identify each record by when that is not
        its key (the Salesforce Id of an update by looked-up Id).
        """
        entry_id = uuid.uuid4().hex
        stamp = now_iso()
        # One Arrow IPC blob per job instead of a row per record: a 10,000-record job costs
        # one insert, and reading it back is zero-copy.
        frame = pl.DataFrame(
            {"key": keys.cast(pl.String), "fingerprint": fingerprints.cast(pl.String)}
        )
        if result_keys is not None:
            frame = frame.with_columns(result_keys.cast(pl.String).alias("result_key"))
        buffer = io.BytesIO()
        frame.write_ipc(buffer, compression="zstd")
        blob = buffer.getvalue()
        with self._write() as conn:
            conn.execute(
                "INSERT INTO bulk_jobs (entry_id, job_id, sync, partition, sobject, operation,"
                " external_id_field, key_header, state, created_at, updated_at, records)"
                " VALUES (?, NULL, ?, ?, ?, ?, ?, ?, 'submitting', ?, ?, ?)",
                (
                    entry_id,
                    sync,
                    partition,
                    sobject,
                    operation,
                    external_id_field,
                    key_header,
                    stamp,
                    stamp,
                    blob,
                ),
            )
        return entry_id

    def journal_submitted(self, entry_id: str, job_id: str) -> None:
        """Record the job id Salesforce gave the entry's job."""
        with self._write() as conn:
            conn.execute(
                "UPDATE bulk_jobs SET job_id = ?, state = 'submitted', updated_at = ? WHERE entry_id = ?",
                (job_id, now_iso(), entry_id),
            )

    def journal_close(self, entry_id: str, state: JournalState) -> None:
        """Mark an entry ``reconciled`` or ``abandoned`` without committing results."""
        with self._write() as conn:
            conn.execute(
                "UPDATE bulk_jobs SET state = ?, updated_at = ? WHERE entry_id = ?",
                (state, now_iso(), entry_id),
            )

    def journal_open_entries(self, sync: str, partition: str) -> list[JournalEntry]:
        """Entries of (sync, partition) still ``submitting`` or ``submitted``, oldest first."""
        cur = self._conn.execute(
            "SELECT entry_id, job_id, sync, partition, sobject, operation, external_id_field,"
            " key_header, state, created_at FROM bulk_jobs"
            " WHERE sync = ? AND partition = ? AND state IN ('submitting', 'submitted')"
            " ORDER BY created_at, entry_id",
            (sync, partition),
        )
        return [JournalEntry(*row) for row in cur.fetchall()]

    def journal_entry(self, entry_id: str) -> JournalEntry | None:
        """One entry by id, whatever its state."""
        cur = self._conn.execute(
            "SELECT entry_id, job_id, sync, partition, sobject, operation, external_id_field,"
            " key_header, state, created_at FROM bulk_jobs WHERE entry_id = ?",
            (entry_id,),
        )
        row = cur.fetchone()
        return JournalEntry(*row) if row is not None else None

    def journal_records(self, entry_id: str) -> pl.DataFrame:
        """The keys and fingerprints an entry's job carried (columns key, fingerprint, and
        result_key when the entry was written with ``result_keys``)."""
        row = self._conn.execute(
            "SELECT records FROM bulk_jobs WHERE entry_id = ?", (entry_id,)
        ).fetchone()
        if row is None:
            return pl.DataFrame(schema={"key": pl.String(), "fingerprint": pl.String()})
        return pl.read_ipc(io.BytesIO(row[0]))


_EVENT_SCHEMA: dict[str, pl.DataType] = {
    "key": pl.String(),
    "fingerprint": pl.String(),
    "success": pl.Boolean(),
    "salesforce_id": pl.String(),
    "source_fingerprint": pl.Int64(),
}


@dataclass
class _Tracked:
    """A partition as this store last loaded it, and the outcomes it committed since."""

    generation: int
    frame: pl.DataFrame  # SNAPSHOT_COLUMNS as loaded (before ``events``), see ``base``
    events: list[pl.DataFrame] = field(default_factory=list)
    broken: bool = False
    moved_in: bool = False  # ``base`` holds rows ``adopt`` moved in since the last snapshot
    # The full snapshot file ``base`` derives from (None: read from SQLite), and the rows of
    # ``base`` that differ from it (what the delta file at ``generation`` holds).
    base_generation: int | None = None
    delta: pl.DataFrame | None = None
    # Rows that replace (or join) ``frame``'s rows of their keys, not laid over it yet: a
    # delta snapshot is written without building the whole partition, which a run rarely
    # needs again (its next load reads the snapshot).
    replaced: pl.DataFrame | None = None

    @property
    def base(self) -> pl.DataFrame:
        """The partition before ``events``: ``frame`` with ``replaced`` laid over it (built
        once, when first needed)."""
        if self.replaced is not None:
            self.frame = _overlay(self.frame, self.replaced)
            self.replaced = None
        return self.frame


def _digest(sync: str, partition: str) -> str:
    return hashlib.sha256(f"{sync}\x00{partition}".encode()).hexdigest()[:32]


def _read_ipc(path: Path) -> pl.DataFrame | None:
    """A snapshot file, memory-mapped: the frame's columns are the file's pages, so a million
    rows take milliseconds (decoding an lz4 file took 0.1 s). Files are written under a
    temporary name and renamed into place, never rewritten, so a mapping stays valid after
    a newer snapshot replaces (unlinks) the file. lz4 files of earlier releases are read too
    (decompressed into memory)."""
    try:
        with pa.memory_map(str(path)) as source:
            table = pa.ipc.open_file(source).read_all()
    except (OSError, pa.ArrowException):
        return None
    frame = pl.from_arrow(table)
    if not isinstance(frame, pl.DataFrame) or frame.columns != list(SNAPSHOT_COLUMNS):
        return None
    return frame


def _write_ipc(frame: pl.DataFrame, target: Path) -> None:
    """Write ``target`` whole or not at all (a temporary file renamed into place).
    Uncompressed, so that ``_read_ipc`` can map it instead of decoding it (twice the size
    of lz4 on disk)."""
    partial = target.with_name(f"{target.name}.{uuid.uuid4().hex}.tmp")
    frame.write_ipc(partial, compression="uncompressed")
    os.replace(partial, target)


def _overlay(base: pl.DataFrame, rows: pl.DataFrame) -> pl.DataFrame:
    """``base`` with the rows of ``rows``' keys replaced by (or added as) those rows."""
    if rows.height == 0:
        return base
    kept = base.filter(~pl.col("key").is_in(rows.get_column("key").implode()))
    return pl.concat([kept, rows.cast(pl.Schema(kept.schema))], how="vertical")


def _apply_events(base: pl.DataFrame, events: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """``base`` (SNAPSHOT_COLUMNS) after the committed outcomes ``events``, in order, with the
    rules of ``_UPSERT_SUCCESS`` / ``_UPSERT_FAILURE`` on the snapshot's columns."""
    return _overlay(base, _changed_rows(base, events))


def _changed_rows(base: pl.DataFrame, events: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """The rows (SNAPSHOT_COLUMNS) of the keys ``events`` touched, as they are after them."""
    ev = pl.concat(events)
    ok = pl.col("success")
    if ev.get_column("key").is_unique().all():
        # The usual case (each record committed once): no grouping needed.
        per_key = ev.select(
            "key",
            "fingerprint",
            "source_fingerprint",
            ok.alias("__last_ok"),
            ok.alias("__any_ok"),
            pl.lit(1, dtype=pl.UInt32).alias("__n"),
            pl.lit(0, dtype=pl.UInt32).alias("__trailing"),
            pl.when(ok).then(pl.col("salesforce_id")).alias("__new_id"),
        )
        return _merged_rows(base, per_key)
    # Within a group, rows keep their order (commit order): last() is the latest outcome.
    per_key = ev.group_by("key", maintain_order=True).agg(
        pl.col("fingerprint").last(),
        pl.col("source_fingerprint").last(),
        ok.last().alias("__last_ok"),
        ok.any().alias("__any_ok"),
        pl.len().alias("__n"),
        # Failures after the last success: the attempts, when there was a success.
        ok.reverse().arg_max().alias("__trailing"),
        pl.col("salesforce_id")
        .filter(ok & pl.col("salesforce_id").is_not_null())
        .last()
        .alias("__new_id"),
    )
    return _merged_rows(base, per_key)


def _merged_rows(base: pl.DataFrame, per_key: pl.DataFrame) -> pl.DataFrame:
    """The rows of ``per_key``'s keys after their outcome (``base`` gives the earlier Id and
    attempts)."""
    # One pass over the base's keys; the join then pairs the few touched rows only.
    touched = base.get_column("key").is_in(per_key.get_column("key").implode())
    old = base.filter(touched).select(
        "key",
        pl.col("salesforce_id").alias("__old_id"),
        pl.col("attempts").alias("__old_attempts"),
    )
    merged = per_key.join(old, on="key", how="left").select(
        "key",
        "fingerprint",
        pl.coalesce("__new_id", "__old_id").alias("salesforce_id"),
        pl.when("__last_ok").then(pl.lit("synced")).otherwise(pl.lit("pending")).alias("status"),
        pl.when("__any_ok")
        .then(pl.col("__trailing").cast(pl.Int64))
        .otherwise(pl.col("__old_attempts").fill_null(0) + pl.col("__n"))
        .alias("attempts"),
        # A failure clears it (_UPSERT_FAILURE), and the failure's event carries null.
        pl.col("source_fingerprint"),
    )
    return merged.cast(pl.Schema(base.schema))


def _schema_version(conn: sqlite3.Connection) -> int:
    """The file's ``store_meta.schema_version``: 0 for a new file, 1 for one written before
    the entry existed."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'store_meta'").fetchone() is None:
        has_records = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'record_state'"
        ).fetchone()
        return 0 if has_records is None else 1
    row = conn.execute("SELECT value FROM store_meta WHERE name = 'schema_version'").fetchone()
    return 1 if row is None else int(row[0])


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    """Bring a state file written by an earlier release up to this schema (idempotent). A
    file from before the recent table gains it (and its index and view) from ``_DDL``."""
    for table in (_BASE, _RECENT):
        have = {str(row[1]) for row in conn.execute(f"PRAGMA table_info({table})")}
        if "source_fingerprint" in have:
            continue
        try:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN source_fingerprint INTEGER")
        except sqlite3.OperationalError as exc:
            # Another process added it between our look and our ALTER.
            if "duplicate column" not in str(exc):
                raise
