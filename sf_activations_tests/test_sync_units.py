"""Unit tests of each engine stage on literal frames."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal, assert_series_equal

from sf_activations.sync.diff import ChangeSet, compute_changes
from sf_activations.sync.execute import parse_bulk_results, rest_records, to_bulk_csv
from sf_activations.sync.fingerprint import encode_records, fingerprints, with_fingerprints
from sf_activations.sync.mapping import (
    MappedColumn,
    SyncConfigError,
    map_records,
    mapped_columns,
    split_missing_required,
    validate_spec,
)
from sf_activations.sync.model import FieldDescribe, ObjectDescribe
from sf_activations.sync.partitions import bucket_of, bucket_partition_keys, filter_bucket
from sf_activations.sync.plan import PLANNERS, BehaviorNotSupported, PlanContext, plan_sync
from sf_activations.sync.report import ERROR_GUIDE
from sf_activations.sync.spec import FieldMapping, SyncKey, SyncSpec
from sf_activations.sync.state import StateStore
from sf_activations_tests.test_sync_fakes import contact_describe


def _f(name: str, type_: str, **kw: object) -> FieldDescribe:
    return FieldDescribe(name=name, label=name, type=type_, createable=True, updateable=True, **kw)  # type: ignore[arg-type]


TYPED = ObjectDescribe(
    name="Thing__c",
    label="Thing",
    key_prefix="a01",
    createable=True,
    updateable=True,
    deletable=True,
    fields=(
        _f("Key__c", "string", length=10, external_id=True, unique=True),
        _f("Name", "string", length=5),
        _f("Flag__c", "boolean"),
        _f("N__c", "int"),
        _f("Amount__c", "currency"),
        _f("Day__c", "date"),
        _f("At__c", "datetime"),
        _f("Tier__c", "picklist", restricted_picklist=True, picklist_values=("Gold", "Silver")),
        _f("Tags__c", "multipicklist", restricted_picklist=True, picklist_values=("a", "b")),
        _f("Parent__c", "reference", reference_to=("Account",), relationship_name="Parent__r"),
        _f("Owner__c", "reference", reference_to=("User",), relationship_name="Owner__r"),
        _f("Formula__c", "string", calculated=True),
        FieldDescribe(name="Req__c", label="Req", type="string", createable=True, nillable=False),
    ),
)


def thing_spec(*mappings: FieldMapping, behavior: str = "update_or_create") -> SyncSpec:
    return SyncSpec(
        name="things",
        source_model="m_things",
        sobject="Thing__c",
        behavior=behavior,  # type: ignore[arg-type]
        key=SyncKey("k", "Key__c"),
        mappings=mappings,
    )


# ---------------------------------------------------------------------------- mapping


def test_values_are_canonicalised_to_what_the_csv_carries() -> None:
    spec = thing_spec(
        FieldMapping("flag", "Flag__c"),
        FieldMapping("n", "N__c"),
        FieldMapping("amount", "Amount__c"),
        FieldMapping("day", "Day__c"),
        FieldMapping("at", "At__c"),
        FieldMapping("tags", "Tags__c"),
        FieldMapping("parent", "Parent__c", lookup_field="Ext__c"),
    )
    source = pl.DataFrame(
        {
            "k": [1, 2, 3],
            "flag": [True, False, None],
            "n": ["7", "8.0", ""],
            "amount": [1.0, 0.1, 2.50],
            "day": [dt.date(2024, 2, 29), None, dt.date(1999, 12, 31)],
            "at": [
                dt.datetime(2024, 1, 2, 3, 4, 5, 6000, tzinfo=dt.UTC),
                dt.datetime(2024, 1, 2, 12, tzinfo=dt.timezone(dt.timedelta(hours=2))),
                None,
            ],
            "tags": [["a", "b"], [], None],
            "parent": ["P1", None, ""],
        }
    )
    mapped = map_records(spec, source, TYPED)
    expected = pl.DataFrame(
        {
            "__key": ["1", "2", "3"],
            "Key__c": ["1", "2", "3"],
            "Flag__c": ["true", "false", None],
            "N__c": ["7", "8", ""],
            "Amount__c": ["1", "0.1", "2.5"],
            "Day__c": ["2024-02-29", None, "1999-12-31"],
            "At__c": ["2024-01-02T03:04:05.006Z", "2024-01-02T10:00:00.000Z", None],
            "Tags__c": ["a;b", "", None],
            "Parent__r.Ext__c": ["P1", None, ""],
        }
    )
    assert_frame_equal(mapped.records, expected)
    assert mapped.invalid.height == 0
    assert mapped.headers[-1] == "Parent__r.Ext__c"


def test_text_sources_are_validated_against_field_types() -> None:
    spec = thing_spec(
        FieldMapping("name", "Name"),
        FieldMapping("flag", "Flag__c"),
        FieldMapping("n", "N__c"),
        FieldMapping("day", "Day__c"),
        FieldMapping("tier", "Tier__c"),
        FieldMapping("tags", "Tags__c"),
        FieldMapping("owner", "Owner__c"),
    )
    source = pl.DataFrame(
        {
            "k": ["ok", "long", "flag", "int", "day", "tier", "tags", "owner"],
            "name": ["abc", "abcdef", "a", "a", "a", "a", "a", "a"],
            "flag": ["yes", "no", "maybe", "1", "0", None, "", "TRUE"],
            "n": ["1", "2", "3", "2.5", "4", "5", "6", "7"],
            "day": ["2024-01-31", None, "", None, "2024-13-01", None, None, None],
            "tier": ["Gold", None, None, None, None, "gold", None, None],
            "tags": ["a;b", None, None, None, None, None, "a;z", None],
            "owner": ["005000000000001", None, None, None, None, None, None, "bob"],
        }
    )
    mapped = map_records(spec, source, TYPED)
    assert mapped.records["__key"].to_list() == ["ok"]
    assert mapped.records.row(0, named=True)["Flag__c"] == "true"
    got = mapped.invalid.select("key", "reason", "column", "field", "value")
    expected = pl.DataFrame(
        {
            "key": ["long", "flag", "int", "day", "tier", "tags", "owner"],
            "reason": [
                "INVALID_STRING_TOO_LONG",
                "INVALID_TYPE",
                "INVALID_TYPE",
                "INVALID_TYPE",
                "INVALID_PICKLIST_VALUE",
                "INVALID_PICKLIST_VALUE",
                "INVALID_ID",
            ],
            "column": ["name", "flag", "n", "day", "tier", "tags", "owner"],
            "field": ["Name", "Flag__c", "N__c", "Day__c", "Tier__c", "Tags__c", "Owner__c"],
            "value": ["abcdef", "maybe", "2.5", "2024-13-01", "gold", "a;z", "bob"],
        }
    )
    assert_frame_equal(got, expected)
    message = mapped.invalid["message"][0]
    assert "things" in message and "'name'" in message and "Thing__c.Name" in message
    assert "'abcdef'" in message


def test_null_and_duplicate_keys_are_invalid_in_every_occurrence() -> None:
    source = pl.DataFrame({"k": ["a", "B", "b", None, "", "c"], "name": list("uvwxyz")})
    mapped = map_records(thing_spec(FieldMapping("name", "Name")), source, TYPED)
    # Key__c is Unique and case-insensitive, so "B" and "b" are the same record.
    assert mapped.records["__key"].to_list() == ["a", "c"]
    assert_frame_equal(
        mapped.invalid.select("key", "reason"),
        pl.DataFrame(
            {
                "key": ["B", "b", None, ""],
                "reason": [
                    "INVALID_DUPLICATE_KEY",
                    "INVALID_DUPLICATE_KEY",
                    "INVALID_NULL_KEY",
                    "INVALID_NULL_KEY",
                ],
            }
        ),
    )


def test_literal_na_text_is_set_aside_only_where_bulk_would_read_it_as_null() -> None:
    source = pl.DataFrame({"k": ["a", "b", "#N/A"], "name": ["#N/A", "#n/a", "ok"]})
    mappings = (FieldMapping("name", "Name"),)
    created = map_records(thing_spec(*mappings, behavior="create_only"), source, TYPED)
    # Create Only inserts through Bulk, where '#N/A' means "no value": the text would be lost.
    assert created.records["__key"].to_list() == ["b"]
    assert created.invalid.select("key", "reason", "field").rows() == [
        ("a", "INVALID_BULK_NULL_MARKER", "Name"),
        ("#N/A", "INVALID_BULK_NULL_MARKER", "Key__c"),
    ]
    assert "things" in created.invalid["message"][0]
    # Upserts keep them: the planner sends such records through REST, where it is plain text.
    upserted = map_records(thing_spec(*mappings), source, TYPED)
    assert upserted.invalid.height == 0
    assert upserted.records["Name"].to_list() == ["#N/A", "#n/a", "ok"]


def test_missing_source_column_is_a_config_error() -> None:
    with pytest.raises(SyncConfigError, match="'nope'"):
        map_records(thing_spec(FieldMapping("nope", "Name")), pl.DataFrame({"k": ["a"]}), TYPED)


def test_required_on_create_only_flags_records_to_create() -> None:
    spec = thing_spec(FieldMapping("req", "Req__c"))
    mapped = map_records(
        spec, pl.DataFrame({"k": ["a", "b", "c"], "req": [None, None, "x"]}), TYPED
    )
    kept, invalid = split_missing_required(
        spec, mapped.records, mapped.columns, pl.Series(["b", "c"])
    )
    assert kept["__key"].to_list() == ["a", "c"]
    assert invalid.select("key", "reason", "column", "field").rows() == [
        ("b", "INVALID_REQUIRED_MISSING", "req", "Req__c")
    ]


def test_validate_spec_names_sync_field_and_fix() -> None:
    spec = SyncSpec(
        name="things",
        source_model="m",
        sobject="Thing__c",
        behavior="update_or_create",
        key=SyncKey("k", "Name"),
        mappings=(
            FieldMapping("a", "Nope__c"),
            FieldMapping("b", "Formula__c"),
            FieldMapping("c", "Name"),
            FieldMapping("d", "N__c", lookup_field="Ext__c"),
        ),
        source_file="syncs/things.yaml",
    )
    problems = validate_spec(spec, TYPED)
    text = "\n".join(problems)
    assert all(p.startswith("sync 'things' (syncs/things.yaml)") for p in problems)
    assert "Thing__c.Name is not an External ID" in text
    assert "no field 'Nope__c'" in text
    assert "Formula__c: the field is read-only" in text
    assert "already written by the key" in text
    assert "N__c is not a lookup field" in text
    assert "Req__c is required to create" in text
    assert len(problems) == 6


def test_validate_spec_checks_lookup_target_on_parent() -> None:
    account = ObjectDescribe(
        name="Account",
        label="Account",
        key_prefix="001",
        createable=True,
        updateable=True,
        deletable=True,
        fields=(_f("Ext__c", "string", external_id=True), _f("Site", "string")),
    )
    ok = thing_spec(
        FieldMapping("req", "Req__c"), FieldMapping("p", "Parent__c", lookup_field="Ext__c")
    )
    assert validate_spec(ok, TYPED, parents={"Account": account}) == []
    bad = thing_spec(
        FieldMapping("req", "Req__c"), FieldMapping("p", "Parent__c", lookup_field="Site")
    )
    assert (
        "Account.Site is neither an External ID"
        in validate_spec(bad, TYPED, parents={"Account": account})[0]
    )


# ---------------------------------------------------------------------------- fingerprint


def test_fingerprint_is_md5_of_a_documented_encoding() -> None:
    frame = pl.DataFrame({"B": ["x", None], "A": ["é", ""]})
    assert encode_records(frame, ["B", "A"]).to_list() == ["A\x002\x00éB\x001\x00x", "A\x000\x00"]
    expected = hashlib.md5("A\x002\x00éB\x001\x00x".encode()).hexdigest()
    assert fingerprints(frame, ["A", "B"])[0] == expected
    # Pinned literal: a change here re-sends every record of every sync.
    assert expected == hashlib.md5(b"A\x002\x00\xc3\xa9B\x001\x00x").hexdigest()


def test_fingerprint_separates_null_empty_and_field_names() -> None:
    frame = pl.DataFrame({"A": [None, "", "ab", "a"], "B": ["", None, None, "b"]})
    fps = fingerprints(frame, ["A", "B"])
    assert fps.n_unique() == 4


def test_new_mapped_column_changes_only_records_with_a_value() -> None:
    before = pl.DataFrame({"__key": ["1", "2", "3"], "A": ["x", "y", "z"]})
    after = before.with_columns(pl.Series("C", [None, "new", ""]))
    old = fingerprints(before, ["A"])
    new = fingerprints(after, ["A", "C"])
    assert (old == new).to_list() == [True, False, False]


# ---------------------------------------------------------------------------- diff


def _state(rows: list[tuple[str, str | None, str | None, str, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "key": pl.String,
            "fingerprint": pl.String,
            "salesforce_id": pl.String,
            "status": pl.String,
            "attempts": pl.Int64,
        },
        orient="row",
    )


def test_diff_sorts_records_by_what_must_happen() -> None:
    records = pl.DataFrame(
        {
            "__key": ["new", "same", "chg", "pend", "held", "heldchg"],
            "__fingerprint": ["n", "s", "c2", "p", "h", "x2"],
        }
    )
    state = _state(
        [
            ("same", "s", "001A", "synced", 0),
            ("chg", "c1", "001B", "synced", 0),
            ("pend", "p", None, "pending", 1),
            ("held", "h", None, "pending", 3),
            ("heldchg", "x1", None, "pending", 3),
            ("gone", "g", "001G", "synced", 0),
            ("bad", None, "001H", "pending", 1),
        ]
    )
    changes = compute_changes(records, state, max_attempts=3, invalid_keys=pl.Series(["bad"]))
    assert changes.new["__key"].to_list() == ["new"]
    assert_frame_equal(
        changes.changed,
        pl.DataFrame({"__key": ["chg"], "__fingerprint": ["c2"], "__salesforce_id": ["001B"]}),
    )
    assert changes.retry["__key"].to_list() == ["pend", "heldchg"]
    assert changes.unchanged["__key"].to_list() == ["same"]
    assert changes.held["__key"].to_list() == ["held"]
    assert changes.gone["key"].to_list() == ["gone"]
    assert changes.send_count == 4
    assert sorted(changes.creating_keys().to_list()) == ["heldchg", "new", "pend"]


def test_diff_without_max_attempts_retries_forever() -> None:
    records = pl.DataFrame({"__key": ["p"], "__fingerprint": ["f"]})
    changes = compute_changes(records, _state([("p", "f", None, "pending", 99)]))
    assert changes.retry.height == 1 and changes.held.height == 0


# ---------------------------------------------------------------------------- plan


def _changes(n: int) -> tuple[SyncSpec, ChangeSet, tuple[MappedColumn, ...]]:
    spec = SyncSpec(
        name="contacts",
        source_model="m",
        sobject="Contact",
        behavior="update_or_create",
        key=SyncKey("id", "Ext_Id__c"),
        mappings=(FieldMapping("name", "LastName"),),
        batch_size=4,
        rest_threshold=3,
    )
    mapped = map_records(
        spec,
        pl.DataFrame({"id": [f"k{i}" for i in range(n)], "name": ["x" * 10] * n}),
        contact_describe(),
    )
    records = with_fingerprints(mapped.records, mapped.headers)
    return spec, compute_changes(records, _state([])), mapped.columns


def test_plan_uses_rest_up_to_the_threshold_and_bulk_batches_above() -> None:
    spec, changes, columns = _changes(3)
    plan = plan_sync(spec, changes, PlanContext(columns=columns))
    assert [(b.transport, b.operation, b.external_id_field, b.size) for b in plan.batches] == [
        ("rest", "upsert", "Ext_Id__c", 3)
    ]
    spec, changes, columns = _changes(10)
    plan = plan_sync(spec, changes, PlanContext(columns=columns))
    assert [(b.transport, b.size) for b in plan.batches] == [("bulk", 4), ("bulk", 4), ("bulk", 2)]
    assert plan.record_count == 10
    # A byte budget splits a job further (here: about two rows per job).
    plan = plan_sync(spec, changes, PlanContext(columns=columns, max_bulk_bytes=120))
    assert sum(b.size for b in plan.batches) == 10
    assert all(
        len(to_bulk_csv(b.records, [c.header for c in columns])) <= 120 for b in plan.batches
    )
    assert len(plan.batches) > 3


def test_every_behavior_has_a_planner_and_an_unknown_one_says_so() -> None:
    spec, changes, columns = _changes(1)
    assert set(PLANNERS) == {
        "update_or_create",
        "create_only",
        "update_only",
        "mirror",
        "delete",
        "add",
        "lead_or_contact",
        "lead_or_account",
    }
    from dataclasses import replace

    with pytest.raises(BehaviorNotSupported, match="unknown behavior 'teleport'"):
        plan_sync(replace(spec, behavior="teleport"), changes, PlanContext(columns=columns))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- CSV, JSON and results


def test_bulk_csv_writes_na_for_null_and_quotes_by_csv_rules() -> None:
    frame = pl.DataFrame(
        {
            "__key": ["1", "2", "3"],
            "Ext__c": ["1", "2", "3"],
            "Name": [None, "", 'a,"b"\nc'],
            "Account.Ext__c": ["x", None, "y"],
        }
    )
    body = to_bulk_csv(frame, ["Ext__c", "Name", "Account.Ext__c"])
    assert body.decode() == 'Ext__c,Name,Account.Ext__c\n1,#N/A,x\n2,"",#N/A\n3,"a,""b""\nc",y\n'
    rows = list(csv.reader(io.StringIO(body.decode())))
    assert rows[3] == ["3", 'a,"b"\nc', "y"]
    assert rows[2][1] == ""


def test_rest_records_omit_empty_nest_lookups_and_type_values() -> None:
    spec = SyncSpec(
        name="c",
        source_model="m",
        sobject="Contact",
        behavior="update_or_create",
        key=SyncKey("id", "Ext_Id__c"),
        mappings=(
            FieldMapping("name", "LastName"),
            FieldMapping("score", "Score__c"),
            FieldMapping("acct", "AccountId", lookup_field="Ext__c"),
        ),
    )
    mapped = map_records(
        spec,
        pl.DataFrame(
            {"id": ["a", "b"], "name": ["", None], "score": ["2.5", "3"], "acct": ["A1", None]}
        ),
        contact_describe(),
    )
    records = with_fingerprints(mapped.records, mapped.headers)
    plan = plan_sync(
        spec,
        compute_changes(records, _state([])),
        PlanContext(columns=mapped_columns(spec, contact_describe())),
    )
    assert rest_records(plan.batches[0]) == [
        {"Ext_Id__c": "a", "Score__c": 2.5, "Account": {"Ext__c": "A1"}},
        {"Ext_Id__c": "b", "LastName": None, "Score__c": 3, "AccountId": None},
    ]


def test_bulk_results_map_back_to_keys() -> None:
    ok = b'"sf__Id","sf__Created",Ext__c,Name\n"003A","true","k1","x"\n"003B","false","k2",""\n'
    failed = b'"sf__Id","sf__Error",Ext__c,Name\n"","REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --","k3","#N/A"\n'
    left = b"Ext__c,Name\nk4,y\n"
    got = parse_bulk_results(ok, failed, left, "Ext__c")
    assert got.rows() == [
        ("k1", True, "003A", True, None, None),
        ("k2", True, "003B", False, None, None),
        ("k3", False, None, False, "REQUIRED_FIELD_MISSING", "Required fields are missing: [Name]"),
        (
            "k4",
            False,
            None,
            False,
            "UNPROCESSED",
            "Salesforce did not process the record before the job ended",
        ),
    ]
    assert parse_bulk_results(b"", b"", b"", "Ext__c").height == 0


# ---------------------------------------------------------------------------- partitions, state, guide


def test_buckets_are_md5_based_and_stable() -> None:
    keys = pl.Series(["a", "b", "c", None])
    assert_series_equal(bucket_of(keys, 16), pl.Series("bucket", [9, 14, 0, None], dtype=pl.UInt32))
    assert bucket_of(pl.Series(["a"]), 16)[0] == int(hashlib.md5(b"a").hexdigest()[:8], 16) % 16
    assert bucket_partition_keys(3) == ["b00", "b01", "b02"]
    frame = pl.DataFrame({"id": [str(i) for i in range(100)]})
    parts = [filter_bucket(frame, "id", k, 3) for k in bucket_partition_keys(3)]
    assert sum(p.height for p in parts) == 100
    with pytest.raises(ValueError, match="at least 1"):
        bucket_of(keys, 0)


def test_state_journal_round_trip(tmp_path: Path) -> None:
    with StateStore(tmp_path / "s.db") as store:
        entry = store.journal_open(
            sync="s",
            partition="p",
            sobject="Contact",
            operation="upsert",
            external_id_field="Ext__c",
            key_header="Ext__c",
            keys=pl.Series(["a", "b"]),
            fingerprints=pl.Series(["fa", "fb"]),
        )
        assert store.journal_open_entries("s", "p")[0].job_id is None
        store.journal_submitted(entry, "750X")
        assert store.journal_open_entries("s", "p")[0].job_id == "750X"
        assert store.journal_records(entry).sort("key").rows() == [("a", "fa"), ("b", "fb")]
        results = pl.DataFrame(
            {
                "key": ["a", "b"],
                "fingerprint": ["fa", "fb"],
                "success": [True, False],
                "salesforce_id": ["003A", None],
                "error_code": [None, "X"],
                "error_message": [None, "bad"],
            }
        )
        store.commit_results("s", "p", results, close_entry=entry)
        assert store.journal_open_entries("s", "p") == []
        assert store.counts("s", "p") == {"synced": 1, "pending": 1}
        assert store.load("s", "other").height == 0
        narrow = store.load("s", "p", columns=["status"])
        assert narrow.columns == ["key", "status"]
        with pytest.raises(ValueError, match="unknown state column"):
            store.load("s", "p", columns=["nope"])


def test_error_guide_covers_the_common_codes() -> None:
    for code in (
        "DUPLICATES_DETECTED",
        "UNABLE_TO_LOCK_ROW",
        "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY",
        "INVALID_CROSS_REFERENCE_KEY",
        "OAUTH_APP_BLOCKED",
        "REQUIRED_FIELD_MISSING",
        "STRING_TOO_LONG",
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        "DUPLICATE_VALUE",
        "DUPLICATE_EXTERNAL_ID",
        "INVALID_FIELD",
        "INVALID_FIELD_FOR_INSERT_UPDATE",
        "MALFORMED_ID",
        "ENTITY_IS_DELETED",
        "CANNOT_UPDATE_CONVERTED_LEAD",
        "REQUEST_LIMIT_EXCEEDED",
        "INVALID_NULL_KEY",
        "INVALID_DUPLICATE_KEY",
        "INVALID_TYPE",
        "INVALID_REQUIRED_MISSING",
    ):
        cause, fix = ERROR_GUIDE[code]
        assert cause.endswith(".") and fix.endswith(".") and "\n" not in cause + fix
