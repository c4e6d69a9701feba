"""The org's columnar storage and its vectorised Bulk paths answer exactly like the per-row paths.

Frames of at least ``org._VECTOR_MIN`` rows resolve keys with joins and write whole columns;
smaller ones use dict lookups and per-record writes. Each scenario here runs both ways on the
same input and must give the same outcomes and the same stored records.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import polars as pl
import pytest

import sf_activations.emulator.org as org_module
from sf_activations.emulator.errors import SalesforceError
from sf_activations.emulator.org import BulkOutcome, Org
from sf_activations.emulator.schema import FieldDef
from sf_activations_tests.support import Clock, strings

N = 1500  # above the vectorising threshold, small enough to stay fast


def outcome_rows(out: BulkOutcome) -> list[tuple[Any, ...]]:
    return list(zip(out.ids, out.created, out.errors, strict=True))


T = TypeVar("T")
Run = tuple[T, list[dict[str, Any]]]


def both_paths(
    monkeypatch: pytest.MonkeyPatch, scenario: Callable[[Org], T]
) -> tuple[Run[T], Run[T]]:
    """Run ``scenario`` on a fresh org with joins forced, then with per-row lookups forced;
    each run gives the scenario's result and the stored Accounts."""
    results: list[Run[T]] = []
    for threshold in (1, 10**9):
        monkeypatch.setattr(org_module, "_VECTOR_MIN", threshold)
        org = Org(clock=Clock())
        results.append((scenario(org), list(org.rows("Account", include_deleted=True))))
    return results[0], results[1]


def seed_accounts(org: Org, count: int = N) -> BulkOutcome:
    keys = [f"K{i}" for i in range(count)]
    out = org.bulk_apply(
        "Account",
        "insert",
        strings(Name=[f"Account {i}" for i in range(count)], External_Id__c=keys),
    )
    assert out.errors == [None] * count
    return out


def test_upsert_by_external_id_matches_the_per_row_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def scenario(org: Org) -> list[tuple[Any, ...]]:
        seed_accounts(org)
        # Existing keys in reverse order, new keys, a repeated key, blank and #N/A keys.
        keys = [f"K{i}" for i in reversed(range(0, N, 2))] + [f"NEW{i}" for i in range(300)]
        keys += ["DUP", "DUP", "", "#N/A"]
        names = [f"Name {k}" for k in keys]
        out = org.bulk_apply(
            "Account", "upsert", strings(External_Id__c=keys, Name=names), "External_Id__c"
        )
        return outcome_rows(out)

    (vectorised, stored_v), (per_row, stored_p) = both_paths(monkeypatch, scenario)
    assert vectorised == per_row
    assert stored_v == stored_p
    errors = [e for _, _, e in vectorised if e is not None]
    assert errors.count("DUPLICATE_VALUE:Duplicate external id specified: DUP:--") == 2
    assert errors.count("MISSING_ARGUMENT:External_Id__c not specified:--") == 2
    created = [c for _, c, e in vectorised if e is None]
    assert created.count(True) == 300 and created.count(False) == N // 2


def test_non_unique_external_id_matching_several_records_in_a_large_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def scenario(org: Org) -> list[tuple[Any, ...]]:
        org.schema.add_field(
            "Account",
            FieldDef(name="Erp__c", label="ERP", type="string", length=20, external_id=True),
        )
        # Not unique: two records may share a value, and an upsert on it matches both.
        stored = ["S", "S", *[f"E{i}" for i in range(N)]]
        org.bulk_apply(
            "Account", "insert", strings(Name=[f"n{i}" for i in range(len(stored))], Erp__c=stored)
        )
        keys = ["S", "s", *[f"E{i}" for i in range(N)]]
        out = org.bulk_apply(
            "Account", "upsert", strings(Erp__c=keys, Name=["x"] * len(keys)), "Erp__c"
        )
        return outcome_rows(out)

    (vectorised, stored_v), (per_row, stored_p) = both_paths(monkeypatch, scenario)
    assert vectorised == per_row and stored_v == stored_p
    assert vectorised[0][2] == (
        "DUPLICATE_EXTERNAL_ID:A user-specified external ID matches more than one record "
        "during an upsert.:--"
    )
    assert vectorised[1][1] is True  # case-sensitive: "s" is a new record
    assert all(e is None and not c for _, c, e in vectorised[2:])


def test_update_and_delete_by_id_match_the_per_row_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def scenario(org: Org) -> list[list[tuple[Any, ...]]]:
        ids = [i or "" for i in seed_accounts(org).ids]
        gone = org.bulk_apply("Account", "delete", strings(Id=[ids[0], ids[1]]))
        # Reverse order, 15-character ids, a repeated id (the later row wins), a deleted
        # record, an unknown id, a malformed id, and a missing one.
        upd_ids = [i[:15] if n % 3 else i for n, i in enumerate(reversed(ids[2:]))]
        upd_ids += [ids[5], ids[0], "001000000000000AAA", "not-an-id", ""]
        names = [f"Renamed {n}" for n in range(len(upd_ids))]
        upd = org.bulk_apply("Account", "update", strings(Id=upd_ids, Name=names))
        hard = org.bulk_apply("Account", "hardDelete", strings(Id=[ids[1], ids[2]]))
        many = org.bulk_apply("Account", "delete", strings(Id=[*ids[100:1300], ids[100]]))
        purge = org.bulk_apply("Account", "hardDelete", strings(Id=ids[200:1400]))
        again = org.bulk_apply(
            "Account", "upsert", strings(External_Id__c=["K150", "K250", "K1450"], Name=["a"] * 3),
            "External_Id__c",
        )  # fmt: skip
        counts = [org.count("Account"), org.count("Account", include_deleted=True)]
        return [
            outcome_rows(gone),
            outcome_rows(upd),
            outcome_rows(hard),
            outcome_rows(many),
            outcome_rows(purge),
            outcome_rows(again),
            [tuple(counts)],
        ]

    (vectorised, stored_v), (per_row, stored_p) = both_paths(monkeypatch, scenario)
    assert vectorised == per_row and stored_v == stored_p
    upd_errors = [e for _, _, e in vectorised[1][-4:]]
    assert upd_errors == [
        "ENTITY_IS_DELETED:entity is deleted:--",
        "INVALID_CROSS_REFERENCE_KEY:invalid cross reference id:--",
        "MALFORMED_ID:malformed id not-an-id:--",
        "MISSING_ARGUMENT:Id not specified in an update call:--",
    ]
    assert [e for _, _, e in vectorised[2]] == [None, None]
    assert all(e is None for _, _, e in vectorised[3]) and len(vectorised[3]) == 1201
    assert all(e is None for _, _, e in vectorised[4])  # hardDelete takes recycled records
    # Deleted records no longer match their external ids: upserting them creates anew.
    assert [c for _, c, _ in vectorised[5]] == [True, True, False]
    # Live: N minus 3 early ones, 1200 recycled, 100 purged, plus 2 created = 199; with the
    # recycle bin: N minus 1202 purged, plus 2 created = 300.
    assert vectorised[6] == [(199, 300)]


def test_rest_edits_between_bulk_jobs_are_kept() -> None:
    org = Org(clock=Clock())
    ids = seed_accounts(org).ids
    org.update("Account", ids[10] or "", {"Phone": "555", "Name": "REST name"})
    extra = org.create("Account", {"Name": "Created over REST", "External_Id__c": "REST-1"})
    assert org.retrieve_by_external_id("Account", "External_Id__c", "K10")["Name"] == "REST name"
    # A full re-sync in reverse order: every stored Account but the REST one is rewritten.
    keys = [f"K{i}" for i in reversed(range(N))]
    out = org.bulk_apply(
        "Account",
        "upsert",
        strings(External_Id__c=keys, Description=[f"d-{k}" for k in keys]),
        "External_Id__c",
    )
    assert out.errors == [None] * N and not any(out.created)
    assert out.ids == list(reversed(ids))
    row = org.row("Account", ids[10] or "")
    assert row is not None
    assert (row["Name"], row["Phone"], row["Description"]) == ("REST name", "555", "d-K10")
    untouched = org.row("Account", extra)
    assert untouched is not None and untouched["Description"] is None
    assert untouched["LastModifiedDate"] != row["LastModifiedDate"]
    assert org.count("Account") == N + 1
    assert org.retrieve_by_external_id("Account", "External_Id__c", "REST-1")["Id"] == extra
    cols = org.columns("Account", ["Id", "Description"])
    assert cols["Description"][N] is None and cols["Id"][:3] == ids[:3]


def test_atomic_undo_after_a_bulk_load() -> None:
    org = Org(clock=Clock())
    ids = seed_accounts(org).ids
    with pytest.raises(SalesforceError), org.atomic():
        org.create("Account", {"Name": "rolled back", "External_Id__c": "RB"})
        org.update("Account", ids[3] or "", {"Name": "changed"})
        org.create("Account", {})  # REQUIRED_FIELD_MISSING: undoes both writes
    assert org.count("Account") == N
    assert org.retrieve("Account", ids[3] or "", ["Name"])["Name"] == "Account 3"
    with pytest.raises(SalesforceError) as missing:
        org.retrieve_by_external_id("Account", "External_Id__c", "RB")
    assert missing.value.code == "NOT_FOUND"
    again = org.create("Account", {"Name": "after", "External_Id__c": "RB"})
    assert org.row("Account", again) is not None


def test_create_with_an_id_is_invalid_field_for_insert_update() -> None:
    org = Org()
    existing = org.create("Account", {"Name": "A"})
    with pytest.raises(SalesforceError) as info:
        org.create("Account", {"Name": "B", "Id": existing})
    assert info.value.code == "INVALID_FIELD_FOR_INSERT_UPDATE"
    assert info.value.fields == ["Id"]
    assert "cannot specify Id in an insert call" in info.value.message
    assert org.count("Account") == 1


def test_rest_upsert_and_update_with_only_the_key() -> None:
    org = Org()
    record_id, created = org.upsert("Account", "External_Id__c", "only-key", {"Name": "A"})
    assert created
    again, created_again = org.upsert("Account", "External_Id__c", "only-key", {})
    assert (again, created_again) == (record_id, False)
    org.update("Account", record_id, {})
    row = org.row("Account", record_id)
    assert row is not None and row["Name"] == "A"


def test_now_follows_the_org_clock() -> None:
    clock = Clock()
    org = Org(clock=clock)
    before = clock.now
    assert org.now() == before + timedelta(seconds=1)


def test_bulk_outcome_frame_and_lists_agree() -> None:
    org = Org()
    out = org.bulk_apply(
        "Account", "insert", strings(Name=["ok", "", "x" * 300], Phone=["1", "2", "3"])
    )
    frame = out.frame()
    assert frame.columns == ["sf__Id", "sf__Created", "sf__Error"]
    assert frame.dtypes == [pl.String, pl.Boolean, pl.String]
    assert frame["sf__Id"].to_list() == out.ids and frame["sf__Error"].to_list() == out.errors
    assert out.created == [True, False, False]
    assert out.errors[1] == "REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --"
    assert out.errors[2] is not None and out.errors[2].startswith("STRING_TOO_LONG:")


def test_column_wise_error_cells_match_the_row_wise_format() -> None:
    with_fields = org_module._enc("A_CODE", "message: with colon", ["F1", "F2"])
    without = org_module._enc("B_CODE", "no fields")
    cells = org_module._cells(pl.Series([with_fields, without, None], dtype=pl.String))
    assert cells.to_list() == [org_module._cell(with_fields), org_module._cell(without), None]
    assert cells[0] == "A_CODE:message: with colon:F1,F2 --"


@pytest.mark.parametrize("start", [1, 62**5 - 700, 62**6 + 5])
def test_minted_id_blocks_equal_ids_minted_one_by_one(start: int) -> None:
    block, single = org_module._Ids("a01"), org_module._Ids("a01")
    block._next = single._next = start
    minted = block.take_series(1400).to_list()
    assert minted == [single.next() for _ in range(1400)]


def test_key_matching_survives_hash_collisions() -> None:
    def by_length(series: pl.Series) -> pl.Series:
        return series.str.len_bytes().cast(pl.UInt64)  # collides on purpose

    column = pl.Series(["a", "bb", None, "ccc", "dd"], dtype=pl.String)
    live = pl.Series([True, True, True, True, False])
    keys = pl.Series(["x", "bb", "ccc", None, "dd", "a"], dtype=pl.String)
    # "bb" and "dd" share a hash but "dd" is not live: the merge path, verified on values.
    merged = org_module._match_keys(column, live, keys, hash_of=by_length)
    assert merged["pos"].to_list() == [None, 1, 3, None, None, 0]
    assert merged["hits"].to_list() == [0, 1, 1, 0, 0, 1]
    # With "dd" live, two stored values share a hash: the exact join decides.
    everything = pl.Series([True] * 5)
    exact = org_module._match_keys(column, everything, keys, hash_of=by_length)
    assert exact["pos"].to_list() == [None, 1, 3, None, 4, 0]
    assert exact["hits"].to_list() == [0, 1, 1, 0, 1, 1]
    assert org_module._match_keys(column, everything, keys)["pos"].to_list() == [
        None, 1, 3, None, 4, 0,
    ]  # fmt: skip


def test_derived_values_on_large_jobs_and_single_records_after_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def scenario(org: Org) -> list[Any]:
        out = org.bulk_apply(
            "Contact",
            "insert",
            strings(
                FirstName=[f"F{i}" if i % 2 else "" for i in range(N)],
                LastName=[f"L{i}" for i in range(N)],
            ),
        )
        first = out.ids[0] or ""
        org.update("Contact", first, {"FirstName": "Ann"})
        lead = org.create("Lead", {"LastName": "Lee", "Company": "Big Co"})
        converted = org.convert_lead(lead)
        names = org.columns("Contact", ["Name"])["Name"]
        return [
            (names[0], names[1], names[N - 1], names[N], len(names)),
            (org.row("Contact", converted["contactId"]) or {}).get("Name"),
            (org.row("Account", converted["accountId"]) or {}).get("Name"),
        ]

    (vectorised, _), (per_row, _) = both_paths(monkeypatch, scenario)
    assert vectorised == per_row
    assert vectorised == [
        ("Ann L0", "F1 L1", f"F{N - 1} L{N - 1}", "Lee", N + 1),
        "Lee",
        "Big Co",
    ]
