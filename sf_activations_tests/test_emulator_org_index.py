"""The org's kept key indexes answer like a fresh look at the stored records.

A Bulk job that is small next to its table matches its external ids and record ids against a
hash-sorted index that is built once and kept up by later writes (``org._SortedKeys``); larger
jobs hash the whole column. Each scenario here runs twice on fresh orgs: once with every job
reading the kept index, once with every job hashing the whole column; both must give the same
outcomes and the same stored records, and the kept indexes must equal fresh builds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl
import pytest

import sf_activations.emulator.org as org_module
from sf_activations.emulator.errors import SalesforceError
from sf_activations.emulator.org import BulkOutcome, Org
from sf_activations.emulator.schema import FieldDef
from sf_activations_tests.support import Clock, strings

Rows = list[tuple[Any, ...]]


def outcome_rows(out: BulkOutcome) -> Rows:
    return list(zip(out.ids, out.created, out.errors, strict=True))


def assert_indexes_fresh(org: Org, sobject: str) -> None:
    """Every kept sorted index of ``sobject`` matches like one built now from the records."""
    table = org._table(sobject)
    for (name, live_only), kept in table.sorted_keys.items():
        fresh = org_module._SortedKeys(table, name, kept.dtype, ci=kept.ci, live_only=live_only)
        stored = org_module._norm(table.series(name), kept.dtype, ci=kept.ci)
        probe = pl.concat([stored, pl.Series(["absent", None], dtype=kept.dtype)])
        got, want = kept.match(table, probe), fresh.match(table, probe)
        assert got is not None and want is not None
        assert got.equals(want), (name, live_only)


def both_ways(
    monkeypatch: pytest.MonkeyPatch, scenario: Callable[[Org], Rows]
) -> tuple[tuple[Rows, list[dict[str, Any]]], tuple[Rows, list[dict[str, Any]]]]:
    """Run ``scenario`` with every job on the kept index, then with every job hashing the
    whole column; each run gives the scenario's outcomes and the stored Accounts."""
    monkeypatch.setattr(org_module, "_VECTOR_MIN", 1)  # even a 1-row job goes column-wise
    results = []
    for share in (0, 10**9):
        monkeypatch.setattr(org_module, "_INDEX_SHARE", share)
        org = Org(clock=Clock())
        outcome = scenario(org)
        if share == 0:
            assert org._table("Account").sorted_keys  # the kept index was really used
        results.append((outcome, list(org.rows("Account", include_deleted=True))))
    return results[0], results[1]


def seed(org: Org, count: int = 60) -> list[str]:
    out = org.bulk_apply(
        "Account",
        "insert",
        strings(
            Name=[f"Account {i}" for i in range(count)],
            External_Id__c=[f"K{i}" for i in range(count)],
        ),
    )
    assert out.errors == [None] * count
    return [i for i in out.ids if i is not None]


def test_index_follows_inserts_updates_deletes_across_many_jobs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def scenario(org: Org) -> Rows:
        ids = seed(org)
        log: Rows = []
        for job in range(12):
            # Existing keys (some in another case), keys of earlier jobs, and new keys.
            keys = [f"K{(job * 7 + i) % 60}" for i in range(6)] + ["k3", f"NEW{job}"]
            keys += [f"NEW{job - 1}", f"MOVED{job - 1}"]
            names = [f"job {job} {k}" for k in keys]
            out = org.bulk_apply(
                "Account", "upsert", strings(External_Id__c=keys, Name=names), "External_Id__c"
            )
            log += outcome_rows(out)
            # Change one record's external id by Id (the old key must stop matching).
            moved = ids[(job * 5 + 1) % 60]
            out = org.bulk_apply(
                "Account", "update", strings(Id=[moved], External_Id__c=[f"MOVED{job}"])
            )
            log += outcome_rows(out)
            # Single-record REST writes between the jobs.
            created = org.create("Account", {"Name": f"rest {job}", "External_Id__c": f"R{job}"})
            org.update("Account", created, {"External_Id__c": f"RR{job}"})
            if job % 3 == 0:
                try:
                    org.delete("Account", ids[(job * 11 + 2) % 60])
                    log.append(("deleted", True, None))
                except SalesforceError as exc:
                    log.append(("deleted", False, exc.code))
            if job % 4 == 1:
                out = org.bulk_apply("Account", "delete", strings(Id=[ids[(job * 13 + 3) % 60]]))
                log += outcome_rows(out)
            if job % 4 == 2:
                out = org.bulk_apply(
                    "Account", "hardDelete", strings(Id=[ids[(job * 17 + 4) % 60]])
                )
                log += outcome_rows(out)
            # Keys that were deleted, moved away or renamed by REST, and ids of every kind.
            probe = ["K2", "K13", f"R{job}", f"RR{job}", f"MOVED{job}", "K1", "K6"]
            out = org.bulk_apply(
                "Account",
                "upsert",
                strings(External_Id__c=probe, Name=[f"probe {job}"] * len(probe)),
                "External_Id__c",
            )
            log += outcome_rows(out)
            updates = [ids[(job * 3) % 60], ids[(job * 17 + 4) % 60], ids[(job * 11 + 2) % 60]]
            updates += [ids[5][:15], ids[6].lower(), ids[7][:17] + "x", "001000000000000AAA"]
            out = org.bulk_apply(
                "Account",
                "update",
                strings(Id=updates, Description=[f"d{job}"] * len(updates)),
            )
            log += outcome_rows(out)
            assert_indexes_fresh(org, "Account")
        return log

    (kept, stored_k), (hashed, stored_h) = both_ways(monkeypatch, scenario)
    assert kept == hashed
    assert stored_k == stored_h
    errors = {e.split(":")[0] for _, _, e in kept if e is not None}
    assert {"ENTITY_IS_DELETED", "MALFORMED_ID", "INVALID_CROSS_REFERENCE_KEY"} <= errors


def test_case_sensitive_field_with_values_held_by_several_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def scenario(org: Org) -> Rows:
        org.schema.add_field(
            "Account",
            FieldDef(name="Erp__c", label="ERP", type="string", length=20, external_id=True),
        )
        stored = ["S", "S", "s", *[f"E{i}" for i in range(40)]]
        out = org.bulk_apply(
            "Account",
            "insert",
            strings(Name=[f"n{i}" for i in range(len(stored))], Erp__c=stored),
        )
        ids = out.ids
        log: Rows = []
        for job in range(4):
            keys = ["S", "s", "e1", "E1", f"E{job + 2}"]
            out = org.bulk_apply(
                "Account", "upsert", strings(Erp__c=keys, Name=[f"x{job}"] * 5), "Erp__c"
            )
            log += outcome_rows(out)
            assert_indexes_fresh(org, "Account")
            if job == 1:
                assert ids[0] is not None
                org.delete("Account", ids[0])  # "S" is now held by one live record only
        return log

    (kept, stored_k), (hashed, stored_h) = both_ways(monkeypatch, scenario)
    assert kept == hashed and stored_k == stored_h
    duplicate = (
        "DUPLICATE_EXTERNAL_ID:A user-specified external ID matches more than one record "
        "during an upsert.:--"
    )
    assert kept[0][2] == duplicate and kept[5][2] == duplicate  # "S" twice, before the delete
    assert kept[10][2] is None and not kept[10][1]  # after it: the one live "S" is updated
    assert kept[2][1] is True  # case-sensitive: "e1" is a new record, "E1" an update
    assert kept[3][2] is None and not kept[3][1]


def test_case_insensitive_external_id_matches_other_case_after_a_rename(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def scenario(org: Org) -> Rows:
        ids = seed(org)
        log: Rows = []
        # Only the case changes: the record keeps matching under either case.
        out = org.bulk_apply("Account", "update", strings(Id=[ids[4]], External_Id__c=["k4"]))
        log += outcome_rows(out)
        for keys in (["K4", "k4", "K5"], ["k5", "NEW"], ["new", "K0"]):
            out = org.bulk_apply(
                "Account",
                "upsert",
                strings(External_Id__c=keys, Name=["n"] * len(keys)),
                "External_Id__c",
            )
            log += outcome_rows(out)
            assert_indexes_fresh(org, "Account")
        return log

    (kept, stored_k), (hashed, stored_h) = both_ways(monkeypatch, scenario)
    assert kept == hashed and stored_k == stored_h
    assert [c for _, c, _ in kept] == [False, False, False, False, False, True, False, False]
    assert kept[1][2] is not None and kept[2][2] is not None  # K4 and k4 in one job: duplicates


def test_index_is_right_after_a_rolled_back_block(monkeypatch: pytest.MonkeyPatch) -> None:
    def scenario(org: Org) -> Rows:
        ids = seed(org)
        log: Rows = []
        upsert = strings(External_Id__c=["K1", "TMP", "K2"], Name=["a", "b", "c"])
        log += outcome_rows(org.bulk_apply("Account", "upsert", upsert, "External_Id__c"))
        with pytest.raises(RuntimeError), org.atomic():
            org.create("Account", {"Name": "gone", "External_Id__c": "TMP2"})
            org.delete("Account", ids[2])
            org.update("Account", ids[1], {"External_Id__c": "K1-renamed"})
            raise RuntimeError
        upsert = strings(External_Id__c=["K1", "TMP2", "K2", "K1-renamed"], Name=["d"] * 4)
        log += outcome_rows(org.bulk_apply("Account", "upsert", upsert, "External_Id__c"))
        assert_indexes_fresh(org, "Account")
        return log

    (kept, stored_k), (hashed, stored_h) = both_ways(monkeypatch, scenario)
    assert kept == hashed and stored_k == stored_h
    assert [c for _, c, _ in kept] == [False, True, False, False, True, False, True]


def test_big_org_small_jobs_use_the_kept_index() -> None:
    org = Org(clock=Clock())
    count = 100_000
    keys = [f"ext-{i}" for i in range(count)]
    org.bulk_apply("Account", "insert", strings(Name=keys, External_Id__c=keys))
    table = org._table("Account")
    seen = 0
    for job in range(5):
        batch = [k.upper() for k in keys[job::50]] + [f"new-{job}-{i}" for i in range(10)]
        out = org.bulk_apply(
            "Account",
            "upsert",
            strings(External_Id__c=batch, Name=[f"job {job}"] * len(batch)),
            "External_Id__c",
        )
        assert out.errors == [None] * len(batch)
        assert out.created == [False] * (len(batch) - 10) + [True] * 10
        # Each job rewrites its keys in upper case: the index is kept, or rebuilt once too many
        # of its rows changed.
        seen += ("External_Id__c", True) in table.sorted_keys
        assert_indexes_fresh(org, "Account")
    assert seen >= 3
    assert org.count("Account") == count + 50
    stored = org.columns("Account", ["External_Id__c", "Name"])
    assert stored["Name"][:3] == ["job 0", "job 1", "job 2"]
    assert stored["External_Id__c"][:3] == ["EXT-0", "EXT-1", "EXT-2"]


def test_column_scatters_are_folded_in_write_order() -> None:
    col = org_module._Column(pl.String())
    col.extend_series(pl.Series([f"v{i}" for i in range(100)], dtype=pl.String))
    snapshot = col.series()
    col.scatter(pl.Series([1, 2, 3]), pl.Series(["a", "b", "c"]))
    col.scatter(pl.Series([2, 50]), pl.Series(["B", "x"]))
    assert col.layers  # not yet copied into the column
    assert col.get(2) == "B"  # a read folds the pending writes in
    col.set(3, "patched")
    col.scatter(pl.Series([3, 4]), pl.Series(["C", "d"]))
    expected = [f"v{i}" for i in range(100)]
    expected[1:5] = ["a", "B", "C", "d"]
    expected[50] = "x"
    assert col.series().to_list() == expected
    assert col.to_list() == expected
    assert snapshot.to_list() == [f"v{i}" for i in range(100)]  # snapshots stay valid


def test_small_inserts_keep_unique_keys_and_ids_right(monkeypatch: pytest.MonkeyPatch) -> None:
    def scenario(org: Org) -> Rows:
        ids = seed(org)
        org.retrieve("Account", ids[0])  # builds the id cache
        log: Rows = []
        for job in range(3):
            keys = ["K1", f"NEW{job}", f"new{job - 1}", f"N{job}", f"n{job}"]
            out = org.bulk_apply(
                "Account", "insert", strings(External_Id__c=keys, Name=["x"] * len(keys))
            )
            log += outcome_rows(out)
            # Single-record lookups read the id cache and the unique-key dict.
            for record_id in out.ids:
                if record_id is not None:
                    assert org.retrieve("Account", record_id)["Id"] == record_id
            record_id, created = org.upsert("Account", "External_Id__c", f"new{job}", {"Name": "y"})
            log.append((record_id, created, None))
        return log

    (kept, stored_k), (hashed, stored_h) = both_ways(monkeypatch, scenario)
    assert kept == hashed and stored_k == stored_h
    assert kept[0][2] is not None and kept[0][2].startswith("DUPLICATE_VALUE:")
    assert kept[5][1] is False  # REST upsert of new0 finds the record the Bulk insert made


def test_prepare_key_index_after_a_big_job_leaves_a_fresh_index_for_small_ones() -> None:
    org = Org(clock=Clock())
    keys = [f"ext-{i}" for i in range(4000)]
    org.bulk_apply("Account", "insert", strings(Name=keys, External_Id__c=keys))
    # A big upsert (half the table: matched by hashing the column) that adds rows.
    more = [f"ext-{i}" for i in range(2000, 6000)]
    org.bulk_apply(
        "Account", "upsert", strings(External_Id__c=more, Name=["big"] * 4000), "External_Id__c"
    )
    table = org._table("Account")
    org.prepare_key_index("Account", "External_Id__c")
    kept = table.sorted_keys[("External_Id__c", True)]
    assert not kept.overdue(table.n)
    assert_indexes_fresh(org, "Account")
    # The next small job reads that index as built (no rebuild) and matches case-insensitively.
    out = org.bulk_apply(
        "Account",
        "upsert",
        strings(External_Id__c=["EXT-5999", "ext-6000"], Name=["a", "b"]),
        "External_Id__c",
    )
    assert table.sorted_keys[("External_Id__c", True)] is kept
    assert out.created == [False, True]
    assert out.errors == [None, None]
    # Unknown objects and fields are left alone (the job thread calls this best-effort).
    with pytest.raises(SalesforceError):
        org.prepare_key_index("NoSuchObject__c", "External_Id__c")
    org.prepare_key_index("Account", "NoSuchField__c")
