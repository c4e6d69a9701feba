"""The state snapshot: a columnar copy of a partition's diff columns that is never wrong."""

from __future__ import annotations

import io
import random
import sqlite3
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


# ---------------------------------------------------------------------- adopt (moved records)


def keyed(*keys: str) -> pl.Series:
    return pl.Series("key", list(keys), dtype=pl.String)


def test_adopt_moves_rows_and_both_snapshots_stay_true(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with StateStore(db) as store:
        first: dict[str, list[tuple[str, str | None, bool, str | None]]] = {
            "2026-01-01": [
                ("a", "fa", True, "001A"),
                ("b", "fb", False, None),
                ("c", "fc", True, "001C"),
            ],
            "2026-01-02": [("d", "fd", True, "001D")],
        }
        for partition, rows in first.items():
            store.load("s", partition, columns=SNAPSHOT_COLUMNS)
            store.commit_results("s", partition, outcomes(rows))
            assert store.save_snapshot("s", partition)
    with StateStore(db) as store:
        store.load("s", "2026-01-02", columns=SNAPSHOT_COLUMNS)
        # "d" is p2's already, "z" is nowhere: only a and b move.
        moved = store.adopt("s", "2026-01-02", keyed("a", "b", "d", "z"))
        assert sorted(moved.rows()) == [
            ("a", "fa", "001A", "synced", 0, None),
            ("b", "fb", None, "pending", 1, None),
        ]
        store.commit_results("s", "2026-01-02", outcomes([("b", "fb2", True, "001B")]))
        assert store.save_snapshot("s", "2026-01-02")
        # The rows left p1: its snapshot is stale and p1 reads SQLite.
        assert not store.save_snapshot("s", "2026-01-01")
    with StateStore(db) as store:
        for partition, keys in (("2026-01-01", ["c"]), ("2026-01-02", ["a", "b", "d"])):
            fast = store.load("s", partition, columns=SNAPSHOT_COLUMNS).sort("key")
            assert fast.equals(from_sqlite(store, "s", partition).sort("key"))
            assert fast.get_column("key").to_list() == keys
        assert store.load("s", "2026-01-02", columns=("key", "attempts")).sort("key").rows() == [
            ("a", 0),
            ("b", 0),
            ("d", 0),
        ]


def test_an_adoption_alone_is_worth_a_snapshot(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with StateStore(db) as store:
        store.commit_results("s", "2026-01-01", outcomes([("a", "fa", True, "001A")]))
        store.load("s", "2026-01-02", columns=SNAPSHOT_COLUMNS)
        assert store.adopt("s", "2026-01-02", keyed("a")).height == 1
        assert store.save_snapshot("s", "2026-01-02")
    [snapshot] = snapshots(db)
    assert pl.read_ipc(snapshot).rows() == [("a", "fa", "001A", "synced", 0, None)]
    with StateStore(db) as store:
        assert store.load("s", "2026-01-02", columns=SNAPSHOT_COLUMNS).equals(
            from_sqlite(store, "s", "2026-01-02")
        )
        assert store.load("s", "2026-01-01", columns=("key",)).height == 0


def test_a_parallel_run_of_the_partition_left_saves_no_stale_snapshot(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with StateStore(db) as setup:
        setup.load("s", "2026-01-01", columns=SNAPSHOT_COLUMNS)
        setup.commit_results(
            "s", "2026-01-01", outcomes([("a", "fa", True, "001A"), ("b", "fb", True, "001B")])
        )
        assert setup.save_snapshot("s", "2026-01-01")
    with StateStore(db) as run1, StateStore(db) as run2:
        loaded = run1.load("s", "2026-01-01", columns=SNAPSHOT_COLUMNS)
        assert loaded.height == 2
        # run2 (partition p2, another process) adopts "a" while run1 is between load and save.
        assert run2.adopt("s", "2026-01-02", keyed("a")).height == 1
        run1.commit_results("s", "2026-01-01", outcomes([("b", "fb2", True, None)]))
        assert not run1.save_snapshot("s", "2026-01-01")
        assert run1.load("s", "2026-01-01", columns=SNAPSHOT_COLUMNS).rows() == [
            ("b", "fb2", "001B", "synced", 0, None)
        ]


def test_adopt_under_random_moves_matches_sqlite(tmp_path: Path) -> None:
    """Runs as the engine makes them: commit keys the partition holds or nobody holds, adopt
    some keys, commit outcomes for keys it now holds; the snapshot equals SQLite throughout."""
    db = tmp_path / "state.db"
    rng = random.Random(11)
    keys = [f"k{i}" for i in range(40)]
    partitions = ["2026-01-01", "2026-01-02", "2026-01-03"]

    def held(store: StateStore) -> dict[str, str]:
        return {k: p for p in partitions for (k,) in store.load("s", p, columns=("key",)).rows()}

    moved = 0
    for run in range(10):
        partition = rng.choice(partitions)
        with StateStore(db) as store:
            loaded = store.load("s", partition, columns=SNAPSHOT_COLUMNS)
            assert loaded.sort("key").equals(from_sqlite(store, "s", partition).sort("key"))
            owner = held(store)
            free = [k for k in keys if owner.get(k, partition) == partition]
            store.commit_results(
                "s",
                partition,
                outcomes([(k, f"fp{run}", rng.random() < 0.7, None) for k in rng.sample(free, 5)]),
            )
            moved += store.adopt("s", partition, pl.Series("key", rng.sample(keys, 12))).height
            mine = sorted(held(store).items())
            store.commit_results(
                "s",
                partition,
                outcomes(
                    [
                        (k, f"fq{run}", rng.random() < 0.7, rng.choice([None, f"001{k}"]))
                        for k, p in mine
                        if p == partition and rng.random() < 0.5
                    ]
                ),
            )
            assert store.save_snapshot("s", partition)
            everywhere = pl.concat([store.load("s", p, columns=("key",)) for p in partitions])
            assert everywhere.get_column("key").is_unique().all()
    assert moved > 10
    with StateStore(db) as store:
        for partition in partitions:
            fast = store.load("s", partition, columns=SNAPSHOT_COLUMNS).sort("key")
            assert fast.equals(from_sqlite(store, "s", partition).sort("key"))


def test_small_changes_are_saved_as_a_delta_next_to_the_last_full_snapshot(
    tmp_path: Path,
) -> None:
    db = tmp_path / "state.db"
    keys = [f"k{i:03d}" for i in range(100)]
    with StateStore(db) as store:
        store.load("s", "p", columns=SNAPSHOT_COLUMNS)
        store.commit_results("s", "p", outcomes([(k, "f0", True, f"001{k}") for k in keys]))
        assert store.save_snapshot("s", "p")
    assert [p.name.count(".delta.") for p in snapshots(db)] == [0]

    rng = random.Random(3)
    kinds: list[str] = []
    for run in range(1, 9):
        with StateStore(db) as store:
            store.load("s", "p", columns=SNAPSHOT_COLUMNS)
            # 6 records a run, some refused: 4 runs stay under DELTA_SHARE (25 of 100 rows).
            rows: list[tuple[str, str | None, bool, str | None]] = [
                (k, f"f{run}", rng.random() < 0.8, None) for k in rng.sample(keys, 6)
            ]
            store.commit_results("s", "p", outcomes(rows))
            assert store.save_snapshot("s", "p")
        files = snapshots(db)
        kinds.append("delta" if any(".delta." in p.name for p in files) else "full")
        assert len(files) == (2 if kinds[-1] == "delta" else 1)
        with StateStore(db) as store:
            fast = store.load("s", "p", columns=SNAPSHOT_COLUMNS).sort("key")
            assert fast.equals(from_sqlite(store, "s", "p").sort("key"))
    assert kinds[0] == "delta" and "full" in kinds
    # After a full snapshot the next small change is a delta again.
    assert kinds[kinds.index("full") + 1] == "delta"


def test_a_missing_base_snapshot_falls_back_to_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with StateStore(db) as store:
        store.load("s", "p", columns=SNAPSHOT_COLUMNS)
        store.commit_results("s", "p", outcomes([(f"k{i}", "f", True, "001") for i in range(40)]))
        assert store.save_snapshot("s", "p")
        store.load("s", "p", columns=SNAPSHOT_COLUMNS)
        store.commit_results("s", "p", outcomes([("k1", "g", False, None)]))
        assert store.save_snapshot("s", "p")
    full = [p for p in snapshots(db) if ".delta." not in p.name]
    assert len(full) == 1
    full[0].unlink()
    with StateStore(db) as store:
        got = store.load("s", "p", columns=SNAPSHOT_COLUMNS).sort("key")
        assert got.equals(from_sqlite(store, "s", "p").sort("key"))
        assert got.filter(pl.col("key") == "k1").get_column("status").to_list() == ["pending"]


def test_saving_again_from_the_same_store_builds_on_the_last_delta(tmp_path: Path) -> None:
    """A delta save does not build the whole frame; the next save in the same store (no load
    in between) must still start from the rows as they are after it."""
    db = tmp_path / "state.db"
    keys = [f"k{i:03d}" for i in range(100)]
    with StateStore(db) as store:
        store.load("s", "p", columns=SNAPSHOT_COLUMNS)
        store.commit_results("s", "p", outcomes([(k, "f0", True, f"001{k}") for k in keys]))
        assert store.save_snapshot("s", "p")
        for run in range(1, 4):
            store.commit_results(
                "s",
                "p",
                outcomes([("k001", f"f{run}", False, None), (f"new{run}", "f", True, None)]),
            )
            assert store.save_snapshot("s", "p")
            assert sum(".delta." in p.name for p in snapshots(db)) == 1
    with StateStore(db) as store:
        fast = store.load("s", "p", columns=SNAPSHOT_COLUMNS).sort("key")
        assert fast.equals(from_sqlite(store, "s", "p").sort("key"))
        assert fast.filter(pl.col("key") == "k001").row(0) == (
            "k001",
            "f3",
            "001k001",
            "pending",
            3,
            None,
        )
        assert fast.height == 103


def test_an_lz4_snapshot_of_the_previous_release_is_still_read(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with StateStore(db) as store:
        store.load("s", "p", columns=SNAPSHOT_COLUMNS)
        store.commit_results(
            "s", "p", outcomes([("a", "f", True, "001A"), ("b", "f", False, None)])
        )
        assert store.save_snapshot("s", "p")
    [snapshot] = snapshots(db)
    # This release writes snapshots uncompressed (to map them); the previous one used lz4.
    pl.read_ipc(io.BytesIO(snapshot.read_bytes())).write_ipc(snapshot, compression="lz4")
    # Change a row behind the store's back (no generation bump): only a snapshot read sees
    # the old fingerprint, which shows the lz4 file was read rather than skipped.
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE record_state_recent SET fingerprint = 'behind' WHERE key = 'a'")
    with StateStore(db) as store:
        assert store.load("s", "p", columns=SNAPSHOT_COLUMNS).sort("key").rows() == [
            ("a", "f", "001A", "synced", 0, None),
            ("b", "f", None, "pending", 1, None),
        ]
