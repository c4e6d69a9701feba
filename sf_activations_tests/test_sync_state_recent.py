"""The recent-rows overlay of the state file: small commits of non-time partitions write
``record_state_recent``, readers lay it over ``record_state``, and a store that writes
through it must be indistinguishable from one that writes the base only."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl
import pytest

from sf_activations.sync import state
from sf_activations.sync.state import RESULT_SCHEMA, SNAPSHOT_COLUMNS, STATE_SCHEMA, StateStore

Outcome = tuple[str, str | None, bool, str | None]


def outcomes(rows: list[Outcome]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            (key, fp, ok, sid, None if ok else "SOME_ERROR", None if ok else "refused")
            for key, fp, ok, sid in rows
        ],
        schema=RESULT_SCHEMA,
        orient="row",
    )


@contextmanager
def limit(monkeypatch: pytest.MonkeyPatch, rows: int) -> Iterator[None]:
    """The recent table may hold ``rows`` rows per partition (0: every commit writes the base,
    as before the overlay)."""
    with monkeypatch.context() as patch:
        patch.setattr(state, "RECENT_LIMIT", rows)
        patch.setattr(state, "RECENT_SHARE", 0.0)
        yield


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A clock the test moves: stores that do the same thing at the same tick write the same
    timestamps, so their rows compare equal column by column."""
    tick = [0]
    monkeypatch.setattr(state, "now_iso", lambda: f"2026-01-01T00:00:{tick[0]:06d}")
    return tick


def table_rows(db: Path, table: str, partition: str | None = None) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        sql = f"SELECT partition, key, salesforce_id, status, attempts FROM {table}"
        if partition is not None:
            return conn.execute(sql + " WHERE partition = ? ORDER BY key", (partition,)).fetchall()
        return conn.execute(sql + " ORDER BY partition, key").fetchall()


def everything(store: StateStore, sync: str, partition: str) -> pl.DataFrame:
    """Every column, from SQLite (a column outside the snapshot's forces the SQL path)."""
    return store.load(sync, partition, columns=list(STATE_SCHEMA)).sort("key")


def readers(store: StateStore, sync: str, partitions: list[str]) -> dict[str, object]:
    """What every reader of the store says about ``sync``."""
    seen: dict[str, object] = {
        "partitions": store.partitions(sync),
        "counts": store.counts(sync),
    }
    for p in partitions:
        seen[f"rows {p}"] = everything(store, sync, p).rows()
        seen[f"fast {p}"] = store.load(sync, p, columns=SNAPSHOT_COLUMNS).sort("key").rows()
        seen[f"counts {p}"] = store.counts(sync, p)
        seen[f"pending {p}"] = store.pending_count(sync, p)
    return seen


def current_view(db: Path, partition: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT key, fingerprint, salesforce_id, status, error_code, error_message,"
            " attempts, first_failed_at, updated_at, source_fingerprint"
            " FROM record_state_current WHERE sync = 's' AND partition = ? ORDER BY key",
            (partition,),
        ).fetchall()


def test_random_runs_read_the_same_through_the_overlay_as_from_the_base(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: list[int]
) -> None:
    """Three files get the same operations: one writes the base only (the reference), one
    folds often (a limit of 12 rows), one never folds; every reader agrees after every step."""
    limits = {"base": 0, "folds": 12, "recent": 10**9}
    stores = {name: StateStore(tmp_path / f"{name}.db") for name in limits}
    rng = random.Random(5)
    keys = [f"k{i:02d}" for i in range(30)]
    partitions = ["b00", "b01", "2026-01-01"]
    used_recent = folded = 0
    try:
        for step in range(120):
            clock[0] = step
            partition = rng.choice(partitions)
            op = rng.random()
            batch = rng.sample(keys, rng.randint(1, 8))
            rows: list[Outcome] = [
                (
                    k,
                    rng.choice([None, f"fp{step}", "same"]),
                    rng.random() < 0.5,
                    rng.choice([None, f"001{k}{step}"]),
                )
                for k in batch
            ]
            if rng.random() < 0.2:
                rows += rows[:2]  # a key twice in one batch (a retry within the run)
            before = len(table_rows(tmp_path / "folds.db", "record_state_recent"))
            for name, store in stores.items():
                with limit(monkeypatch, limits[name]):
                    if op < 0.1:
                        store.forget("s", partition, batch[:2])
                    elif op < 0.2:
                        store.load("s", partition, columns=SNAPSHOT_COLUMNS)
                        store.commit_results("s", partition, outcomes(rows))
                        store.save_snapshot("s", partition)
                    else:
                        store.commit_results("s", partition, outcomes(rows))
            after = len(table_rows(tmp_path / "folds.db", "record_state_recent"))
            if op >= 0.1 and after < before:
                folded += 1
            used_recent = max(used_recent, after)
            seen = {name: readers(store, "s", partitions) for name, store in stores.items()}
            assert seen["folds"] == seen["base"], step
            assert seen["recent"] == seen["base"], step
        for p in partitions:
            view = current_view(tmp_path / "folds.db", p)
            assert view == everything(stores["base"], "s", p).rows()
    finally:
        for store in stores.values():
            store.close()
    assert table_rows(tmp_path / "base.db", "record_state_recent") == []
    assert used_recent > 0 and folded > 3
    # Time partitions never go through the overlay.
    for name in limits:
        assert all(
            p != "2026-01-01"
            for p, *_ in table_rows(tmp_path / f"{name}.db", "record_state_recent")
        )


def test_ids_attempts_and_first_failure_carry_across_base_and_recent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: list[int]
) -> None:
    db = tmp_path / "state.db"

    def row(store: StateStore) -> tuple[object, ...]:
        got = everything(store, "s", "p").filter(pl.col("key") == "a")
        return got.select("salesforce_id", "status", "attempts", "first_failed_at").row(0)

    with StateStore(db) as store:
        clock[0] = 1
        with limit(monkeypatch, 0):
            store.commit_results("s", "p", outcomes([("a", "f1", True, "001A")]))
        assert table_rows(db, "record_state_recent") == []
        clock[0] = 2
        with limit(monkeypatch, 100):
            # The base row is copied first: the failure keeps the Id and counts from 0.
            store.commit_results("s", "p", outcomes([("a", "f2", False, None)]))
            assert table_rows(db, "record_state_recent") == [("p", "a", "001A", "pending", 1)]
            assert table_rows(db, "record_state") == [("p", "a", "001A", "synced", 0)]
            assert row(store) == ("001A", "pending", 1, "2026-01-01T00:00:000002")
            clock[0] = 3
            store.commit_results("s", "p", outcomes([("a", "f2", False, None)]))
            assert row(store) == ("001A", "pending", 2, "2026-01-01T00:00:000002")
        clock[0] = 4
        with limit(monkeypatch, 0):
            # Folded into the base, then counted there.
            store.commit_results("s", "p", outcomes([("a", "f2", False, None)]))
            assert table_rows(db, "record_state_recent") == []
            assert row(store) == ("001A", "pending", 3, "2026-01-01T00:00:000002")
        clock[0] = 5
        with limit(monkeypatch, 100):
            # A success without an Id keeps the one the base holds.
            store.commit_results("s", "p", outcomes([("a", "f3", True, None)]))
            assert row(store) == ("001A", "synced", 0, None)
            clock[0] = 6
            store.commit_results("s", "p", outcomes([("a", "f4", False, None)]))
            assert row(store) == ("001A", "pending", 1, "2026-01-01T00:00:000006")
            # A success with an Id, then a failure of the same key in the same batch.
            clock[0] = 7
            store.commit_results(
                "s", "p", outcomes([("a", "f5", True, "001B"), ("a", "f5", False, None)])
            )
            assert row(store) == ("001B", "pending", 1, "2026-01-01T00:00:000007")
            # A new key that succeeds with an Id needs no copy and lands in recent whole.
            store.commit_results("s", "p", outcomes([("z", "fz", True, "001Z")]))
            assert store.load("s", "p", columns=SNAPSHOT_COLUMNS).sort("key").rows() == [
                ("a", "f5", "001B", "pending", 1, None),
                ("z", "fz", "001Z", "synced", 0, None),
            ]
            assert store.pending_count("s", "p") == 1
            assert store.counts("s", "p") == {"synced": 1, "pending": 1}


def test_a_fold_empties_the_partitions_recent_rows_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "state.db"
    with StateStore(db) as store, limit(monkeypatch, 5):
        store.commit_results(
            "s", "b00", outcomes([("a", "f", True, "001A"), ("b", "f", False, None)])
        )
        store.commit_results("s", "b00", outcomes([("c", "f", True, "001C")]))
        store.commit_results("s", "b01", outcomes([("x", "f", True, "001X")]))
        store.commit_results("t", "b00", outcomes([("y", "f", True, "001Y")]))
        assert table_rows(db, "record_state") == []
        assert len(table_rows(db, "record_state_recent")) == 5
        # 3 held + 3 new > 5: b00 of sync s folds, and the batch goes to the base.
        store.commit_results(
            "s",
            "b00",
            outcomes([("b", "g", True, "001B"), ("d", "g", False, None), ("e", "g", True, None)]),
        )
        assert table_rows(db, "record_state") == [
            ("b00", "a", "001A", "synced", 0),
            ("b00", "b", "001B", "synced", 0),
            ("b00", "c", "001C", "synced", 0),
            ("b00", "d", None, "pending", 1),
            ("b00", "e", None, "synced", 0),
        ]
        # b01, and b00 of another sync, keep their recent rows.
        assert table_rows(db, "record_state_recent") == [
            ("b00", "y", "001Y", "synced", 0),
            ("b01", "x", "001X", "synced", 0),
        ]
        assert store.partitions("s") == ["b00", "b01"]
        assert store.partitions("t") == ["b00"]
        assert store.counts("s") == {"synced": 5, "pending": 1}


def test_forget_removes_a_key_from_both_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "state.db"
    with StateStore(db) as store:
        with limit(monkeypatch, 0):
            store.commit_results(
                "s", "p", outcomes([("a", "f", True, "001A"), ("b", "f", True, "001B")])
            )
        with limit(monkeypatch, 100):
            store.commit_results("s", "p", outcomes([("a", "g", False, None)]))
        assert [k for _, k, *_ in table_rows(db, "record_state")] == ["a", "b"]
        assert [k for _, k, *_ in table_rows(db, "record_state_recent")] == ["a"]
        assert store.pending_count("s", "p") == 1
        store.forget("s", "p", ["a"])
        assert [k for _, k, *_ in table_rows(db, "record_state")] == ["b"]
        assert table_rows(db, "record_state_recent") == []
        assert everything(store, "s", "p").get_column("key").to_list() == ["b"]
        assert store.pending_count("s", "p") == 0
        assert store.counts("s", "p") == {"synced": 1, "pending": 0}


def test_time_partitions_write_the_base_and_adopt_still_moves_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "state.db"
    with StateStore(db) as store, limit(monkeypatch, 10**9):
        store.commit_results("s", "2026-01-01", outcomes([("a", "f", True, "001A")]))
        store.commit_results("s", "2026-01-02", outcomes([("b", "f", False, None)]))
        assert table_rows(db, "record_state_recent") == []
        moved = store.adopt("s", "2026-01-02", pl.Series("key", ["a"]))
        assert moved.rows() == [("a", "f", "001A", "synced", 0, None)]
        assert table_rows(db, "record_state") == [
            ("2026-01-02", "a", "001A", "synced", 0),
            ("2026-01-02", "b", None, "pending", 1),
        ]
        assert table_rows(db, "record_state_recent") == []


def test_a_state_file_from_the_previous_release_opens_and_works(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        # The previous release's schema, by hand: no recent table, no view.
        conn.executescript(
            """
            CREATE TABLE record_state (sync TEXT NOT NULL, partition TEXT NOT NULL,
                key TEXT NOT NULL, fingerprint TEXT, salesforce_id TEXT,
                status TEXT NOT NULL CHECK (status IN ('synced', 'pending')), error_code TEXT,
                error_message TEXT, attempts INTEGER NOT NULL DEFAULT 0, first_failed_at TEXT,
                updated_at TEXT NOT NULL, source_fingerprint INTEGER,
                PRIMARY KEY (sync, partition, key)) WITHOUT ROWID;
            CREATE INDEX record_state_pending ON record_state (sync, partition)
                WHERE status = 'pending';
            CREATE INDEX record_state_time_key ON record_state (sync, key)
                WHERE partition GLOB '[0-9]*';
            CREATE TABLE bulk_jobs (entry_id TEXT PRIMARY KEY, job_id TEXT,
                sync TEXT NOT NULL, partition TEXT NOT NULL, sobject TEXT NOT NULL,
                operation TEXT NOT NULL, external_id_field TEXT, key_header TEXT NOT NULL,
                state TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
                records BLOB NOT NULL);
            CREATE TABLE partition_generation (sync TEXT NOT NULL, partition TEXT NOT NULL,
                generation INTEGER NOT NULL, PRIMARY KEY (sync, partition)) WITHOUT ROWID;
            CREATE TABLE store_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
            INSERT INTO store_meta VALUES ('store_id', 'feedfacefeedface');
            INSERT INTO partition_generation VALUES ('s', '__all__', 3);
            INSERT INTO record_state VALUES
                ('s', '__all__', 'k0', 'fp', '003X', 'synced', NULL, NULL, 0, NULL, '2026', 7),
                ('s', '__all__', 'k1', 'fp', NULL, 'pending', 'E', 'm', 2, '2025', '2026', NULL);
            """
        )
    with StateStore(db) as store:
        assert store.load("s", "__all__", columns=SNAPSHOT_COLUMNS).sort("key").rows() == [
            ("k0", "fp", "003X", "synced", 0, 7),
            ("k1", "fp", None, "pending", 2, None),
        ]
        store.commit_results("s", "__all__", outcomes([("k1", "fp2", False, None)]))
        assert store.save_snapshot("s", "__all__")
    assert [k for _, k, *_ in table_rows(db, "record_state_recent")] == ["k1"]
    with StateStore(db) as store:  # opening again is a no-op
        got = everything(store, "s", "__all__")
        assert got.select("key", "attempts", "first_failed_at").rows() == [
            ("k0", 0, None),
            ("k1", 3, "2025"),
        ]
        assert (
            store.load("s", "__all__", columns=SNAPSHOT_COLUMNS)
            .sort("key")
            .equals(got.select(SNAPSHOT_COLUMNS))
        )
        assert store.pending_count("s", "__all__") == 1
        assert [r[0] for r in current_view(db, "__all__")] == ["k0", "k1"]
    assert _schema_version(db) == str(state.STATE_SCHEMA_VERSION) == "2"


def _schema_version(db: Path) -> str | None:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT value FROM store_meta WHERE name = 'schema_version'").fetchone()
    return None if row is None else str(row[0])


def test_a_state_file_of_a_later_layout_is_refused_untouched(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with StateStore(db) as store:
        store.commit_results("s", "__all__", outcomes([("k0", "fp", True, "003A")]))
    assert _schema_version(db) == "2"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE store_meta SET value = '3' WHERE name = 'schema_version'")
        conn.execute("DROP VIEW record_state_current")  # as a later layout might have done
    with pytest.raises(state.StateFileTooNew) as caught:
        StateStore(db)
    message = str(caught.value)
    assert str(db) in message
    assert "layout 3" in message and "reads up to 2" in message
    assert "Upgrade sf_activations" in message
    with sqlite3.connect(db) as conn:
        # Nothing was created or changed in the file.
        assert (
            conn.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'record_state_current'"
            ).fetchone()
            is None
        )
        assert conn.execute(
            "SELECT value FROM store_meta WHERE name = 'schema_version'"
        ).fetchone() == ("3",)


def test_two_stores_on_one_file_see_each_others_recent_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "state.db"
    with StateStore(db) as one, StateStore(db) as two, limit(monkeypatch, 4):
        one.load("s", "p", columns=SNAPSHOT_COLUMNS)
        one.commit_results("s", "p", outcomes([("a", "f", True, "001A"), ("b", "f", False, None)]))
        assert two.load("s", "p", columns=("key", "status")).sort("key").rows() == [
            ("a", "synced"),
            ("b", "pending"),
        ]
        assert two.pending_count("s", "p") == 1
        # two's commit takes the recent table past its limit: it folds one's rows too.
        two.commit_results(
            "s",
            "p",
            outcomes([("b", "g", True, "001B"), ("c", "g", True, None), ("d", "g", True, None)]),
        )
        assert table_rows(db, "record_state_recent") == []
        # one's frame is stale (two wrote in between): no snapshot, and SQLite serves.
        one.commit_results("s", "p", outcomes([("a", "h", False, None)]))
        assert not one.save_snapshot("s", "p")
        assert one.load("s", "p", columns=SNAPSHOT_COLUMNS).sort("key").rows() == [
            ("a", "h", "001A", "pending", 1, None),
            ("b", "g", "001B", "synced", 0, None),
            ("c", "g", None, "synced", 0, None),
            ("d", "g", None, "synced", 0, None),
        ]
        assert two.counts("s", "p") == {"synced": 3, "pending": 1}
        assert everything(two, "s", "p").equals(everything(one, "s", "p"))


def test_a_full_load_writes_the_base_and_the_limit_grows_with_the_partition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "state.db"
    monkeypatch.setattr(state, "RECENT_LIMIT", 10)  # RECENT_SHARE stays a tenth
    keys = [f"k{i:04d}" for i in range(1000)]
    with StateStore(db) as store:
        assert store.load("s", "p", columns=SNAPSHOT_COLUMNS).height == 0
        for start in range(0, 1000, 100):  # batches bigger than the limit: no copying
            store.commit_results(
                "s", "p", outcomes([(k, "f", True, f"001{k}") for k in keys[start : start + 100]])
            )
        assert table_rows(db, "record_state_recent") == []
        assert store.save_snapshot("s", "p")
    with StateStore(db) as store:
        store.load("s", "p", columns=SNAPSHOT_COLUMNS)
        # 1,000 rows loaded: up to 100 may wait in the recent table.
        store.commit_results("s", "p", outcomes([(k, "g", False, None) for k in keys[::20]]))
        store.commit_results("s", "p", outcomes([(k, "g", False, None) for k in keys[1::20]]))
        assert len(table_rows(db, "record_state_recent")) == 100
        store.commit_results("s", "p", outcomes([("k0002", "g", False, None)]))
        assert table_rows(db, "record_state_recent") == []
        assert store.pending_count("s", "p") == 101
        assert store.save_snapshot("s", "p")
    with StateStore(db) as store:
        fast = store.load("s", "p", columns=SNAPSHOT_COLUMNS).sort("key")
        assert fast.equals(everything(store, "s", "p").select(SNAPSHOT_COLUMNS))
