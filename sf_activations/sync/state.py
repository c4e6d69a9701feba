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

_DDL = """
CREATE TABLE IF NOT EXISTS record_state (
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
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS record_state_pending ON record_state (sync, partition)
    WHERE status = 'pending';
-- Time partition keys start with a digit (2026-01-31, 2026-01-31-10:00): only their rows are
-- looked up by key across partitions (adopt), so only they pay for this index.
CREATE INDEX IF NOT EXISTS record_state_time_key ON record_state (sync, key)
    WHERE partition GLOB '[0-9]*';
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

_UPSERT_SUCCESS = """
INSERT INTO record_state (sync, partition, key, fingerprint, salesforce_id, status,
                          error_code, error_message, attempts, first_failed_at, updated_at,
                          source_fingerprint)
VALUES (?, ?, ?, ?, ?, 'synced', NULL, NULL, 0, NULL, ?, ?)
ON CONFLICT (sync, partition, key) DO UPDATE SET
    fingerprint = excluded.fingerprint,
    salesforce_id = COALESCE(excluded.salesforce_id, record_state.salesforce_id),
    status = 'synced', error_code = NULL, error_message = NULL, attempts = 0,
    first_failed_at = NULL, updated_at = excluded.updated_at,
    source_fingerprint = excluded.source_fingerprint
"""

_UPSERT_FAILURE = """
INSERT INTO record_state (sync, partition, key, fingerprint, salesforce_id, status,
                          error_code, error_message, attempts, first_failed_at, updated_at)
VALUES (?, ?, ?, ?, NULL, 'pending', ?, ?, 1, ?, ?)
ON CONFLICT (sync, partition, key) DO UPDATE SET
    fingerprint = excluded.fingerprint,
    status = 'pending', error_code = excluded.error_code, error_message = excluded.error_message,
    attempts = record_state.attempts + 1,
    first_failed_at = COALESCE(record_state.first_failed_at, excluded.first_failed_at),
    updated_at = excluded.updated_at, source_fingerprint = NULL
"""


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
        # executescript commits by itself; every statement is idempotent (IF NOT EXISTS).
        self._conn.executescript(_DDL)
        _add_missing_columns(self._conn)
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
        self._conn.execute("BEGIN")
        try:
            generation = self._generation(sync, partition)
            tracked = self._read_snapshot(sync, partition, generation)
            if tracked is None:
                frame = self._select(sync, partition, list(SNAPSHOT_COLUMNS))
                tracked = _Tracked(generation=generation, base=frame)
        finally:
            self._conn.execute("COMMIT")
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
        cur = self._conn.execute(
            f"SELECT {', '.join(wanted)} FROM record_state WHERE sync = ? AND partition = ?",
            (sync, partition),
        )
        rows = cur.fetchall()
        return pl.DataFrame(rows, schema={c: STATE_SCHEMA[c] for c in wanted}, orient="row")

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
        if tracked.events:
            changed = _changed_rows(tracked.base, tracked.events)
            frame = _overlay(tracked.base, changed)
        else:
            changed, frame = None, tracked.base
        base = tracked.base_generation
        if changed is not None and base is not None and not tracked.moved_in:
            # Most runs change a few rows of a big partition: write those, next to the last
            # full snapshot, until they add up to DELTA_SHARE of it.
            delta = changed if tracked.delta is None else _overlay(tracked.delta, changed)
            if delta.height <= DELTA_SHARE * frame.height:
                target = self._delta_path(sync, partition, generation, base)
                _write_ipc(delta, target)
                self._drop_snapshots_but(
                    sync, partition, {target, self._snapshot_path(sync, partition, base)}
                )
                self._tracked[(sync, partition)] = _Tracked(
                    generation, frame, base_generation=base, delta=delta
                )
                return True
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
        """The partitions that hold state for ``sync``."""
        cur = self._conn.execute(
            "SELECT DISTINCT partition FROM record_state WHERE sync = ? ORDER BY partition", (sync,)
        )
        return [r[0] for r in cur.fetchall()]

    def counts(self, sync: str, partition: str | None = None) -> dict[str, int]:
        """Number of records by status (``synced``/``pending``), for one partition or all."""
        sql = "SELECT status, COUNT(*) FROM record_state WHERE sync = ?"
        args: tuple[str, ...] = (sync,)
        if partition is not None:
            sql += " AND partition = ?"
            args = (sync, partition)
        cur = self._conn.execute(sql + " GROUP BY status", args)
        out = {"synced": 0, "pending": 0}
        out.update({str(s): int(n) for s, n in cur.fetchall()})
        return out

    def pending_count(self, sync: str, partition: str) -> int:
        """Records of (sync, partition) still pending (a partial index keeps this instant)."""
        cur = self._conn.execute(
            "SELECT COUNT(*) FROM record_state INDEXED BY record_state_pending"
            " WHERE sync = ? AND partition = ? AND status = 'pending'",
            (sync, partition),
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
            if ok_rows:
                conn.executemany(_UPSERT_SUCCESS, ok_rows)
            if bad_rows:
                conn.executemany(_UPSERT_FAILURE, bad_rows)
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

    def stage_source_fingerprints(self, sync: str, partition: str, rows: pl.DataFrame) -> None:
        """Remember the source fingerprints of records about to be sent (``key``,
        ``fingerprint``, ``source_fingerprint``): a success committed for one of these keys
        with the same fingerprint stores its source fingerprint too. Replaces earlier staging;
        ``unstage`` drops it."""
        self._staged[(sync, partition)] = rows.select(
            pl.col("key").cast(pl.String),
            pl.col("fingerprint").cast(pl.String),
            pl.col("source_fingerprint").cast(pl.Int64),
        ).unique(subset="key", keep="last")

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
        joined = ok.join(staged.rename({"fingerprint": "__staged_fp"}), on="key", how="left")
        same = pl.col("fingerprint").eq_missing(pl.col("__staged_fp"))
        return joined.with_columns(
            pl.when(same).then(pl.col("source_fingerprint")).alias("source_fingerprint")
        ).drop("__staged_fp")

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
        with self._write() as conn:
            conn.executemany(
                "DELETE FROM record_state WHERE sync = ? AND partition = ? AND key = ?",
                [(sync, partition, k) for k in keys],
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
            base=pl.concat([base, adopted.cast(pl.Schema(base.schema))]),
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
    ) -> str:
        """Write a journal entry for a job about to be submitted; return its entry id."""
        entry_id = uuid.uuid4().hex
        stamp = now_iso()
        # One Arrow IPC blob per job instead of a row per record: a 10,000-record job costs
        # one insert, and reading it back is zero-copy.
        frame = pl.DataFrame(
            {"key": keys.cast(pl.String), "fingerprint": fingerprints.cast(pl.String)}
        )
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
        """The keys and fingerprints an entry's job carried (columns key, fingerprint)."""
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
    base: pl.DataFrame  # SNAPSHOT_COLUMNS as loaded (before ``events``)
    events: list[pl.DataFrame] = field(default_factory=list)
    broken: bool = False
    moved_in: bool = False  # ``base`` holds rows ``adopt`` moved in since the last snapshot
    # The full snapshot file ``base`` derives from (None: read from SQLite), and the rows of
    # ``base`` that differ from it (what the delta file at ``generation`` holds).
    base_generation: int | None = None
    delta: pl.DataFrame | None = None


def _digest(sync: str, partition: str) -> str:
    return hashlib.sha256(f"{sync}\x00{partition}".encode()).hexdigest()[:32]


def _read_ipc(path: Path) -> pl.DataFrame | None:
    try:
        frame = pl.read_ipc(path)
    except (OSError, pl.exceptions.ComputeError):
        return None
    return frame if frame.columns == list(SNAPSHOT_COLUMNS) else None


def _write_ipc(frame: pl.DataFrame, target: Path) -> None:
    """Write ``target`` whole or not at all (a temporary file renamed into place)."""
    partial = target.with_name(f"{target.name}.{uuid.uuid4().hex}.tmp")
    frame.write_ipc(partial, compression="lz4")
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


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    """Bring a state file written by an earlier release up to this schema (idempotent)."""
    have = {str(row[1]) for row in conn.execute("PRAGMA table_info(record_state)")}
    if "source_fingerprint" not in have:
        try:
            conn.execute("ALTER TABLE record_state ADD COLUMN source_fingerprint INTEGER")
        except sqlite3.OperationalError as exc:
            # Another process added it between our look and our ALTER.
            if "duplicate column" not in str(exc):
                raise
