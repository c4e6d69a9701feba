"""Per-record sync state and the journal of submitted Bulk jobs, in one SQLite file.

SQLite in WAL mode lets partitions running in different processes read while one writes; each
write is a short ``BEGIN IMMEDIATE`` transaction and ``busy_timeout`` makes a second writer wait
for the lock instead of failing. Each (sync, partition) writes only its own rows, so parallel
partitions never contend for the same state, only briefly for the file's write lock.

The journal is what makes a crash harmless (invariant 1): an entry with the records' keys and
fingerprints is written *before* a Bulk job is submitted, the job id right after, and the entry
is closed in the same transaction that commits the job's results. A run that finds an entry
still open reconciles it by job id before planning anything.
"""

from __future__ import annotations

import io
import os
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
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
}
"""Columns of ``StateStore.load``: one row per record key of the (sync, partition)."""

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
    PRIMARY KEY (sync, partition, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS record_state_pending ON record_state (sync, partition)
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
"""

_UPSERT_SUCCESS = """
INSERT INTO record_state (sync, partition, key, fingerprint, salesforce_id, status,
                          error_code, error_message, attempts, first_failed_at, updated_at)
VALUES (?, ?, ?, ?, ?, 'synced', NULL, NULL, 0, NULL, ?)
ON CONFLICT (sync, partition, key) DO UPDATE SET
    fingerprint = excluded.fingerprint,
    salesforce_id = COALESCE(excluded.salesforce_id, record_state.salesforce_id),
    status = 'synced', error_code = NULL, error_message = NULL, attempts = 0,
    first_failed_at = NULL, updated_at = excluded.updated_at
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
    updated_at = excluded.updated_at
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
    different processes (each (sync, partition) writes only its own rows; writes in transactions).
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

        ``columns`` narrows the read to what the caller needs (``key`` is always first):
        SQLite hands rows to Python one object per value, so fewer columns load faster
        (about 1 s per million rows for the four columns the diff uses).
        """
        wanted = ["key", *[c for c in columns or STATE_SCHEMA if c != "key"]]
        unknown = set(wanted) - set(STATE_SCHEMA)
        if unknown:
            msg = f"unknown state column(s): {sorted(unknown)}; known: {list(STATE_SCHEMA)}"
            raise ValueError(msg)
        cur = self._conn.execute(
            f"SELECT {', '.join(wanted)} FROM record_state WHERE sync = ? AND partition = ?",
            (sync, partition),
        )
        rows = cur.fetchall()
        return pl.DataFrame(rows, schema={c: STATE_SCHEMA[c] for c in wanted}, orient="row")

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
        ok = results.filter(pl.col("success"))
        bad = results.filter(~pl.col("success"))
        ok_rows = [
            (sync, partition, k, fp, sid, stamp)
            for k, fp, sid in ok.select("key", "fingerprint", "salesforce_id").iter_rows()
        ]
        bad_rows = [
            (sync, partition, k, fp, code, message, stamp, stamp)
            for k, fp, code, message in bad.select(
                "key", "fingerprint", "error_code", "error_message"
            ).iter_rows()
        ]
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

    def forget(self, sync: str, partition: str, keys: Sequence[str]) -> None:
        """Drop the state of ``keys`` (records deleted in Salesforce or moved elsewhere)."""
        with self._write() as conn:
            conn.executemany(
                "DELETE FROM record_state WHERE sync = ? AND partition = ? AND key = ?",
                [(sync, partition, k) for k in keys],
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
