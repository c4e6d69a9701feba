"""Reading only what may have changed: source fingerprints from the warehouse, in state.

Each test runs the real engine (``run_sync_partition``) on a DuckDB table through
``DuckDBWarehouse.source`` and the in-memory Salesforce, and checks both what was read (the
progress line and ``read_partition``) and what was sent.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from sf_activations.sync.diff import DIFF_STATE_COLUMNS
from sf_activations.sync.mapping import SyncConfigError, key_match_rule, key_match_values
from sf_activations.sync.model import RecordError
from sf_activations.sync.partitions import bucket_of, filter_bucket
from sf_activations.sync.prefilter import read_partition
from sf_activations.sync.report import SyncReport
from sf_activations.sync.run import run_sync_partition
from sf_activations.sync.source import (
    KEY_HASH_COLUMN,
    KNOWN_ROW_COLUMN,
    SOURCE_FP_COLUMN,
    SOURCE_ROW_COLUMN,
    frame_source,
)
from sf_activations.sync.spec import FieldMapping
from sf_activations.sync.state import StateStore
from sf_activations.warehouse.base import RowFilter, TableNotFound
from sf_activations.warehouse.duckdb import DuckDBWarehouse
from sf_activations_tests.test_sync_engine import contact_spec, people
from sf_activations_tests.test_sync_fakes import FakeSalesforce, contact_describe


@pytest.fixture
def warehouse(tmp_path: Path) -> DuckDBWarehouse:
    return DuckDBWarehouse.at(str(tmp_path / "wh.duckdb"))


def _compared(lines: list[str]) -> int:
    """How many rows the run read in full ('..., N to compare')."""
    read = next(line for line in lines if "to compare" in line)
    return int(read.rsplit(", ", 1)[1].split()[0])


def _run(
    warehouse: DuckDBWarehouse, fake: FakeSalesforce, state: StateStore, **spec: object
) -> tuple[int, SyncReport]:
    lines: list[str] = []
    report = run_sync_partition(
        contact_spec(**spec), warehouse.source("m"), fake, state, progress=lines.append
    )
    return _compared(lines), report


def test_a_rerun_reads_in_full_only_the_rows_that_changed(
    warehouse: DuckDBWarehouse, state: StateStore
) -> None:
    fake = FakeSalesforce()
    warehouse.replace_table("m", people(200))
    compared, first = _run(warehouse, fake, state)
    assert compared == 200
    assert first.created == 200

    compared, second = _run(warehouse, fake, state)
    assert compared == 0
    assert (second.unchanged, second.updated, second.bulk_job_ids) == (200, 0, [])

    edited = people(200).with_columns(
        pl.when(pl.col("id").is_in(["k3", "k150"]))
        .then(pl.lit("Renamed"))
        .otherwise(pl.col("last_name"))
        .alias("last_name")
    )
    warehouse.replace_table("m", edited)
    compared, third = _run(warehouse, fake, state)
    assert compared == 2
    assert (third.updated, third.unchanged, third.records_read) == (2, 198, 200)
    assert fake.contact("k3")["LastName"] == "Renamed"
    assert fake.sent["k3"] == 2 and fake.sent["k4"] == 1


def test_a_new_duplicate_of_an_unchanged_key_sets_both_rows_aside(
    warehouse: DuckDBWarehouse, state: StateStore
) -> None:
    fake = FakeSalesforce()
    warehouse.replace_table("m", people(20))
    _run(warehouse, fake, state)
    # k5 is unchanged, but a second row now claims it (in another case: Ext_Id__c is not
    # case-sensitive): neither may be sent, so both must be read.
    twin = people(1, offset=5).with_columns(
        pl.lit("K5").alias("id"), pl.lit("Twin").alias("last_name")
    )
    warehouse.replace_table("m", pl.concat([people(20), twin]))
    compared, report = _run(warehouse, fake, state)
    assert compared == 2
    assert report.invalid == 2
    assert report.error_counts == {"INVALID_DUPLICATE_KEY": 2}
    assert fake.contact("k5")["LastName"] == "Name 5"


def test_rows_without_a_key_are_always_read_and_reported(
    warehouse: DuckDBWarehouse, state: StateStore
) -> None:
    fake = FakeSalesforce()
    data = pl.concat(
        [people(5), people(1, offset=9).with_columns(pl.lit(None, pl.String).alias("id"))]
    )
    warehouse.replace_table("m", data)
    _run(warehouse, fake, state)
    compared, report = _run(warehouse, fake, state)
    assert compared == 1
    assert report.error_counts == {"INVALID_NULL_KEY": 1}


def test_rejected_records_are_read_again_on_every_run(
    warehouse: DuckDBWarehouse, state: StateStore
) -> None:
    def refuse_k2(_sobject: str, record: Mapping[str, Any]) -> RecordError | None:
        if record.get("Ext_Id__c") == "k2":
            return RecordError("FIELD_CUSTOM_VALIDATION_EXCEPTION", "no", ())
        return None

    fake = FakeSalesforce(reject=refuse_k2)
    warehouse.replace_table("m", people(10))
    _run(warehouse, fake, state)
    compared, report = _run(warehouse, fake, state)
    assert compared == 1
    assert report.rejected == 1
    fake.reject = None
    compared, report = _run(warehouse, fake, state)
    assert (compared, report.created) == (1, 1)
    compared, _ = _run(warehouse, fake, state)
    assert compared == 0


def test_a_source_change_that_maps_to_the_same_values_sends_nothing_and_is_remembered(
    warehouse: DuckDBWarehouse, state: StateStore
) -> None:
    fake = FakeSalesforce()
    warehouse.replace_table("m", people(10))
    _run(warehouse, fake, state)
    # score 1.5 as text instead of a double: the row's source fingerprint changes (other type,
    # other seed), Salesforce's value does not.
    as_text = people(10).with_columns(pl.col("score").cast(pl.String))
    warehouse.replace_table("m", as_text)
    compared, report = _run(warehouse, fake, state)
    assert compared == 10
    assert (report.updated, report.unchanged, report.bulk_job_ids) == (0, 10, [])
    compared, _ = _run(warehouse, fake, state)
    assert compared == 0


def test_a_new_mapping_reads_everything_once_and_sends_only_rows_with_a_value(
    warehouse: DuckDBWarehouse, state: StateStore
) -> None:
    fake = FakeSalesforce()
    warehouse.replace_table(
        "m",
        people(10).with_columns(pl.when(pl.col("id") == "k1").then(pl.lit("Gold")).alias("tier")),
    )
    _run(warehouse, fake, state)
    mappings = (*contact_spec().mappings, FieldMapping("tier", "Tier__c"))
    compared, report = _run(warehouse, fake, state, mappings=mappings)
    assert compared == 10
    assert (report.updated, report.unchanged) == (1, 9)
    assert fake.contact("k1")["Tier__c"] == "Gold"
    compared, _ = _run(warehouse, fake, state, mappings=mappings)
    assert compared == 0


def test_gone_records_are_found_among_the_rows_not_skipped(state: StateStore) -> None:
    fake = FakeSalesforce()
    run_sync_partition(contact_spec(), people(6), fake, state)
    current = state.load("contacts", "__all__", columns=DIFF_STATE_COLUMNS)
    spec = contact_spec()
    picked = read_partition(spec, contact_describe(), frame_source(people(5)), current)
    assert picked.rows.height == 0
    assert picked.skipped.height == 5
    assert picked.state.get_column("key").to_list() == ["k5"]


def test_a_crash_before_commit_leaves_no_source_fingerprint_so_the_rows_are_read_again(
    warehouse: DuckDBWarehouse, state: StateStore
) -> None:
    from sf_activations_tests.test_sync_fakes import SimulatedCrash

    fake = FakeSalesforce()
    warehouse.replace_table("m", people(8))
    fake.crash_in_wait = True
    with pytest.raises(SimulatedCrash):
        _run(warehouse, fake, state)
    fake.crash_in_wait = False
    # The re-run reconciles the job by id (no source fingerprints known then): every row is
    # compared, nothing is sent twice, and the fingerprints are stored for the run after.
    compared, report = _run(warehouse, fake, state)
    assert compared == 8
    assert report.reconciled == 8
    assert (report.unchanged, report.created, report.updated) == (8, 0, 0)
    assert "bulk_upload" not in report.api_calls  # only the reconciled job's results
    assert max(fake.sent.values()) == 1
    compared, _ = _run(warehouse, fake, state)
    assert compared == 0


def test_a_time_window_source_reads_only_its_window(warehouse: DuckDBWarehouse) -> None:
    frame = people(4).with_columns(pl.Series("day", [datetime(2026, 1, d) for d in (1, 1, 2, 3)]))
    warehouse.replace_table("m", frame)
    window = RowFilter("day", datetime(2026, 1, 1), datetime(2026, 1, 2))
    with warehouse.source("m", where=window).session() as session:
        narrow = session.fingerprints("id", ["id", "last_name"], "seed")
        assert sorted(narrow.get_column("id").to_list()) == ["k0", "k1"]
        second = narrow.filter(pl.col("id") == "k1").get_column(SOURCE_ROW_COLUMN)
        rows = session.read(["id", "last_name"], "seed", rows=second)
    assert rows.get_column("id").to_list() == ["k1"]
    assert (
        rows.get_column(SOURCE_FP_COLUMN).to_list()
        == narrow.filter(pl.col("id") == "k1").get_column(SOURCE_FP_COLUMN).to_list()
    )


def test_a_view_is_read_by_key_and_a_rebuilt_table_does_not_disturb_a_session(
    warehouse: DuckDBWarehouse,
) -> None:
    warehouse.replace_table("m", people(6))
    warehouse.execute("CREATE VIEW v AS SELECT * FROM m")
    with warehouse.source("v").session() as session:
        narrow = session.fingerprints("id", ["id", "email"], "s")
        picked = narrow.filter(pl.col("id").is_in(["k2", "k4"])).get_column(SOURCE_ROW_COLUMN)
        rows = session.read(["id", "email"], "s", rows=picked)
    assert sorted(rows.get_column("id").to_list()) == ["k2", "k4"]

    with warehouse.source("m").session() as session:
        narrow = session.fingerprints("id", ["id"], "s")
        # Another connection rebuilds the model between the two reads of the session.
        warehouse.replace_table("m", people(6, offset=100))
        picked = narrow.filter(pl.col("id") == "k3").get_column(SOURCE_ROW_COLUMN)
        rows = session.read(["id"], "s", rows=picked)
    assert rows.get_column("id").to_list() == ["k3"]


def test_a_bucket_source_keeps_only_its_bucket(warehouse: DuckDBWarehouse) -> None:
    warehouse.replace_table("m", people(50))
    source = warehouse.source("m").filtered(lambda f: filter_bucket(f, "id", "b1", 3))
    expected = people(50).filter(bucket_of(people(50)["id"], 3) == 1)["id"].sort().to_list()
    with source.session() as session:
        narrow = session.fingerprints("id", ["id"], "s")
        assert narrow.get_column("id").sort().to_list() == expected
        assert session.read(["id"], "s").get_column("id").sort().to_list() == expected


def _fps(frame: pl.DataFrame, columns: list[str], seed: str) -> list[int]:
    with frame_source(frame).session() as session:
        return session.fingerprints("k", columns, seed).get_column(SOURCE_FP_COLUMN).to_list()


def test_source_fingerprints_depend_on_seed_values_and_column_order() -> None:
    frame = pl.DataFrame({"k": ["a", "b"], "x": ["1", "2"], "y": ["2", "1"]})
    one = _fps(frame, ["k", "x", "y"], "s1")
    assert all(isinstance(v, int) for v in one)
    assert one == _fps(frame, ["k", "x", "y"], "s1")
    assert set(one).isdisjoint(_fps(frame, ["k", "x", "y"], "s2"))
    # x and y swapped within each row: a different fingerprint.
    swapped = frame.with_columns(x=pl.col("y"), y=pl.col("x"))
    assert set(one).isdisjoint(_fps(swapped, ["k", "x", "y"], "s1"))
    # null and empty text differ.
    nulls = frame.with_columns(pl.lit(None, pl.String).alias("x"))
    empty = frame.with_columns(pl.lit("").alias("x"))
    assert set(_fps(nulls, ["k", "x"], "s")).isdisjoint(_fps(empty, ["k", "x"], "s"))


def test_a_state_file_from_before_source_fingerprints_is_upgraded(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.execute(
            """CREATE TABLE record_state (sync TEXT NOT NULL, partition TEXT NOT NULL,
            key TEXT NOT NULL, fingerprint TEXT, salesforce_id TEXT, status TEXT NOT NULL,
            error_code TEXT, error_message TEXT, attempts INTEGER NOT NULL DEFAULT 0,
            first_failed_at TEXT, updated_at TEXT NOT NULL, PRIMARY KEY (sync, partition, key))
            WITHOUT ROWID"""
        )
        conn.execute(
            "INSERT INTO record_state VALUES ('contacts', '__all__', 'k0', 'fp', '003X', "
            "'synced', NULL, NULL, 0, NULL, '2026-01-01')"
        )
    fake = FakeSalesforce()
    with StateStore(db) as store:
        got = store.load("contacts", "__all__")
        assert got.select("key", "salesforce_id", "source_fingerprint").rows() == [
            ("k0", "003X", None)
        ]
        run_sync_partition(contact_spec(), people(1), fake, store)
        after = store.load("contacts", "__all__")
        assert after.get_column("source_fingerprint").null_count() == 0
    with StateStore(db) as store:  # opening again is a no-op
        assert store.load("contacts", "__all__").height == 1


def test_snapshot_replays_source_fingerprints_like_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    fake = FakeSalesforce()
    spec = replace(contact_spec(), rest_threshold=0)
    with StateStore(db) as store:
        run_sync_partition(spec, people(30), fake, store)
        run_sync_partition(
            spec, people(30).with_columns(pl.lit("X").alias("last_name")), fake, store
        )
    with StateStore(db) as store:
        fast = store.load("contacts", "__all__", columns=DIFF_STATE_COLUMNS).sort("key")
        slow = store.load("contacts", "__all__").select(DIFF_STATE_COLUMNS).sort("key")
        assert fast.equals(slow)
        assert fast.get_column("source_fingerprint").null_count() == 0


@pytest.mark.parametrize("relation", ["m", "v"])
def test_known_fingerprints_are_matched_in_the_warehouse_one_match_per_row(
    warehouse: DuckDBWarehouse, relation: str
) -> None:
    warehouse.replace_table("m", people(5))
    warehouse.execute("CREATE OR REPLACE VIEW v AS SELECT * FROM m")
    source = warehouse.source(relation)
    with source.session() as session:
        first = session.fingerprints("id", ["id", "email"], "s")
        fps = dict(zip(first["id"], first[SOURCE_FP_COLUMN], strict=True))
        # k2's fingerprint twice (as if two state rows collided), k4's once, and a null.
        known = pl.Series([fps["k2"], None, fps["k4"], fps["k2"]], dtype=pl.Int64)
        narrow = session.fingerprints("id", ["id", "email"], "s", known=known)
    assert narrow.height == 5
    assert narrow.get_column(SOURCE_ROW_COLUMN).n_unique() == 5
    matched = dict(zip(narrow["id"], narrow[KNOWN_ROW_COLUMN], strict=True))
    assert matched["k4"] == 2
    assert matched["k2"] in (0, 3)
    assert [matched[k] for k in ("k0", "k1", "k3")] == [None, None, None]


def test_a_mapped_column_missing_from_the_model_fails_before_anything_is_read_or_sent(
    warehouse: DuckDBWarehouse, state: StateStore
) -> None:
    fake = FakeSalesforce()
    warehouse.replace_table("m", people(3).drop("email"))
    with pytest.raises(SyncConfigError, match=r"has no column\(s\) 'email'.*it has: id"):
        _run(warehouse, fake, state)
    assert set(fake.calls) == {"describe"}
    assert state.counts("contacts") == {"synced": 0, "pending": 0}


def test_a_source_opens_nothing_until_asked_and_names_a_missing_table(
    warehouse: DuckDBWarehouse,
) -> None:
    source = warehouse.source("not_built_yet")  # no error yet: nothing was read
    with pytest.raises(TableNotFound, match="not_built_yet"):
        source.columns()
    with pytest.raises(TableNotFound, match="not_built_yet"), source.session():
        pass
    warehouse.replace_table("not_built_yet", people(2))
    with source.session():
        assert list(source.columns()) == ["id", "last_name", "email", "score"]


def test_new_engine_code_reads_everything_once_and_sends_nothing(
    warehouse: DuckDBWarehouse, state: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sf_activations.sync import prefilter

    fake = FakeSalesforce()
    warehouse.replace_table("m", people(12))
    _run(warehouse, fake, state)
    assert _run(warehouse, fake, state)[0] == 0
    # Another build of the mapping code (a new release, or a change in a source tree).
    monkeypatch.setattr(prefilter, "_engine_code", lambda: "a later build")
    compared, report = _run(warehouse, fake, state)
    assert (compared, report.unchanged, report.bulk_job_ids) == (12, 12, [])
    assert _run(warehouse, fake, state)[0] == 0


SCHEMA_ID_V = {"id": pl.String, "v": pl.String}
_TRICKY_KEYS = [
    "a",
    "A",
    "b",
    "",
    " ",
    "\t",
    "\u00a0",
    " \u00a0",
    " c",
    "c",
    None,
    "x\u00e9",
    "X\u00c9",
]


@pytest.mark.parametrize("case_insensitive", [True, False])
def test_warehouse_key_hashes_flag_every_row_key_match_values_would(
    *, case_insensitive: bool
) -> None:
    """The narrow pass's ``__key_hash`` is null wherever polars sees no key, and equal for keys
    ``map_records`` calls duplicates; non-ASCII keys compared in lower case fall back to the
    key text (only polars knows their lower case)."""
    plain = contact_describe()
    describe = replace(
        plain,
        fields=tuple(
            replace(f, case_sensitive=not case_insensitive) if f.name == "Ext_Id__c" else f
            for f in plain.fields
        ),
    )
    spec = contact_spec()
    rule = key_match_rule(spec, describe)
    assert rule == ("lower" if case_insensitive else "exact")
    ascii_only = [k for k in _TRICKY_KEYS if k is None or k.isascii()]
    for keys in (ascii_only, _TRICKY_KEYS):
        frame = pl.DataFrame({"id": keys, "v": ["1"] * len(keys)}, schema=SCHEMA_ID_V)
        with frame_source(frame).session() as session:
            narrow = session.fingerprints("id", ["id", "v"], "s", key_rule=rule)
        narrow = narrow.sort(SOURCE_ROW_COLUMN)
        if rule == "lower" and keys is _TRICKY_KEYS:
            assert KEY_HASH_COLUMN not in narrow.columns
            assert narrow.get_column("id").to_list() == keys
            continue
        assert "id" not in narrow.columns
        hashes = narrow.get_column(KEY_HASH_COLUMN).to_list()
        match = key_match_values(spec, pl.Series(keys, dtype=pl.String), describe).to_list()
        for i, (m, h) in enumerate(zip(match, hashes, strict=True)):
            if m is None:
                assert h is None, keys[i]
            for j in range(i):
                if m is not None and m == match[j]:
                    assert h is not None and h == hashes[j], (keys[i], keys[j])
        # Rows with a key hash: equal hashes only for equal match texts (no false alarms here).
        pairs = [(m, h) for m, h in zip(match, hashes, strict=True) if h is not None]
        assert len({m for m, _ in pairs}) == len({h for _, h in pairs})


def test_a_key_that_only_polars_lower_cases_like_an_unchanged_one_sets_both_aside(
    warehouse: DuckDBWarehouse, state: StateStore
) -> None:
    fake = FakeSalesforce()
    warehouse.replace_table("m", people(20))
    _run(warehouse, fake, state)
    # U+212A KELVIN SIGN lower-cases to "k": "\u212a5" and the unchanged "k5" are one key.
    kelvin = people(1, offset=5).with_columns(
        pl.lit("\u212a5").alias("id"), pl.lit("Kelvin").alias("last_name")
    )
    blank = people(1, offset=30).with_columns(pl.lit("\u00a0 ").alias("id"))
    warehouse.replace_table("m", pl.concat([people(20), kelvin, blank]))
    compared, report = _run(warehouse, fake, state)
    assert compared == 3
    assert report.error_counts == {"INVALID_DUPLICATE_KEY": 2, "INVALID_NULL_KEY": 1}
    assert fake.contact("k5")["LastName"] == "Name 5"


def test_a_bucket_source_returns_the_key_for_its_filter_even_with_key_hashes(
    warehouse: DuckDBWarehouse,
) -> None:
    warehouse.replace_table("m", people(30))
    source = warehouse.source("m").filtered(lambda f: filter_bucket(f, "id", "b0", 2))
    expected = people(30).filter(bucket_of(people(30)["id"], 2) == 0)["id"].sort().to_list()
    with source.session() as session:
        narrow = session.fingerprints("id", ["id"], "s", key_rule="exact")
    assert narrow.get_column("id").sort().to_list() == expected
    assert narrow.get_column(KEY_HASH_COLUMN).null_count() == 0
