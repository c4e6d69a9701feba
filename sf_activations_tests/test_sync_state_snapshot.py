"""The state snapshot: a columnar copy of a partition's diff columns that is never wrong."""

from __future__ import annotations

import random
from pathlib import Path

import polars as pl
import pytest

from sf_activations.sync.state import RESULT_SCHEMA, SNAPSHOT_COLUMNS, STATE_SCHEMA, StateStore


def outcomes(rows: list[tuple[str, str | None, bool, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            (key, fp, ok, sid, None if ok else "SOME_ERROR", None if ok else "refused")
            for key, fp, ok, sid in rows
        ],
        schema=RESULT_SCHEMA,
        orient="row",
    )


def from_sqlite(store: StateStore, sync: str, partition: str) -> pl.DataFrame:
    """The truth: every column asked for, so the rows come from SQLite."""
    return store.load(sync, partition, columns=list(STATE_SCHEMA)).select(SNAPSHOT_COLUMNS)


def snapshots(db: Path) -> list[Path]:
    return sorted(Path(f"{db}.snapshots").glob("*.arrow"))


def test_snapshot_replays_sqlite_rules_exactly(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    rng = random.Random(7)
    keys = [f"k{i}" for i in range(60)]
    for run in range(6):
        with StateStore(db) as store:
            loaded = store.load("s", "p", columns=SNAPSHOT_COLUMNS)
            assert loaded.sort("key").equals(from_sqlite(store, "s", "p").sort("key"))
            if run > 1:
                # From the third run on, the previous run's snapshot is current and is used.
                assert len(snapshots(db)) == 1
            for _ in range(rng.randint(1, 4)):
                batch = rng.sample(keys, 15)
                # Keys repeat across commits of one run (a retry); some successes have no Id,
                # some failures have no fingerprint (invalid records).
                store.commit_results(
                    "s",
                    "p",
                    outcomes(
                        [
                            (
                                k,
                                rng.choice([None, f"fp{run}-{k}", "same"]),
                                rng.random() < 0.6,
                                rng.choice([None, f"001{k}{run}"]),
                            )
                            for k in batch
                        ]
                    ),
                )
            assert store.save_snapshot("s", "p")
    with StateStore(db) as store:
        fast = store.load("s", "p", columns=SNAPSHOT_COLUMNS)
        assert fast.sort("key").equals(from_sqlite(store, "s", "p").sort("key"))
        assert fast.schema == pl.Schema({c: STATE_SCHEMA[c] for c in SNAPSHOT_COLUMNS})


def test_a_write_by_another_store_makes_the_snapshot_stale(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with StateStore(db) as store:
        store.load("s", "p", columns=("key", "fingerprint"))
        store.commit_results("s", "p", outcomes([("a", "f1", True, "001A")]))
        assert store.save_snapshot("s", "p")
    with StateStore(db) as other:
        other.commit_results("s", "p", outcomes([("a", "f2", False, None)]))
    with StateStore(db) as store:
        got = store.load("s", "p", columns=SNAPSHOT_COLUMNS)
        assert got.rows() == [("a", "f2", "001A", "pending", 1, None)]


def test_a_write_between_load_and_save_means_no_snapshot(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with StateStore(db) as store, StateStore(db) as other:
        store.load("s", "p", columns=SNAPSHOT_COLUMNS)
        store.commit_results("s", "p", outcomes([("a", "f1", True, "001A")]))
        other.commit_results("s", "p", outcomes([("b", "f1", True, "001B")]))
        store.commit_results("s", "p", outcomes([("c", "f1", True, "001C")]))
        assert not store.save_snapshot("s", "p")
    assert snapshots(db) == []


def test_forget_and_unreadable_snapshots_fall_back_to_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with StateStore(db) as store:
        store.load("s", "p", columns=SNAPSHOT_COLUMNS)
        store.commit_results("s", "p", outcomes([("a", "f", True, "001A"), ("b", "f", True, None)]))
        assert store.save_snapshot("s", "p")
        store.forget("s", "p", ["a"])
        assert not store.save_snapshot("s", "p")
        assert store.load("s", "p", columns=("key",)).rows() == [("b",)]
        store.commit_results("s", "p", outcomes([("c", "f", True, "001C")]))
        assert store.save_snapshot("s", "p")
    [snapshot] = snapshots(db)
    snapshot.write_bytes(b"not arrow")
    with StateStore(db) as store:
        got = store.load("s", "p", columns=("key", "salesforce_id"))
        assert sorted(got.rows()) == [("b", None), ("c", "001C")]


def test_a_new_database_never_uses_an_old_snapshot(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with StateStore(db) as store:
        store.load("s", "p", columns=SNAPSHOT_COLUMNS)
        store.commit_results("s", "p", outcomes([("a", "f", True, "001A")]))
        assert store.save_snapshot("s", "p")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    with StateStore(db) as store:
        # Same generation number (1) in a new database: its own id keeps the old file out.
        store.commit_results("s", "p", outcomes([("z", "f", True, "001Z")]))
        assert store.load("s", "p", columns=("key",)).rows() == [("z",)]


@pytest.mark.parametrize("columns", [None, ("key", "error_code")])
def test_other_columns_always_come_from_sqlite(tmp_path: Path, columns: tuple[str] | None) -> None:
    db = tmp_path / "state.db"
    with StateStore(db) as store:
        store.load("s", "p", columns=SNAPSHOT_COLUMNS)
        store.commit_results("s", "p", outcomes([("a", "f", False, None)]))
        assert store.save_snapshot("s", "p")
        got = store.load("s", "p", columns=columns)
        assert got.get_column("error_code").to_list() == ["SOME_ERROR"]


def test_one_commit_per_run_keeps_ids_and_counts_attempts(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    runs: list[list[tuple[str, str | None, bool, str | None]]] = [
        [("a", "f1", True, "001A"), ("b", "f1", False, None), ("c", "f1", False, None)],
        [("a", "f2", True, None), ("b", "f2", False, None), ("c", "f2", True, "001C")],
        [("a", "f3", False, None), ("b", "f3", False, None)],
    ]
    for rows in runs:
        with StateStore(db) as store:
            store.load("s", "p", columns=SNAPSHOT_COLUMNS)
            store.commit_results("s", "p", outcomes(rows))
            assert store.save_snapshot("s", "p")
    with StateStore(db) as store:
        fast = store.load("s", "p", columns=SNAPSHOT_COLUMNS).sort("key")
        assert fast.rows() == [
            ("a", "f3", "001A", "pending", 1, None),
            ("b", "f3", None, "pending", 3, None),
            ("c", "f2", "001C", "synced", 0, None),
        ]
        assert fast.equals(from_sqlite(store, "s", "p").sort("key"))
