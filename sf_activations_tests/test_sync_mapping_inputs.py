"""Mapping fixes for catalogue findings: NaN/inf floats, blank keys, "" in required fields."""

from __future__ import annotations

import polars as pl

from sf_activations.sync.mapping import map_records, split_missing_required
from sf_activations.sync.spec import FieldMapping
from sf_activations_tests.test_sync_units import TYPED, thing_spec


def test_nan_and_infinities_in_float_columns_are_invalid_types() -> None:
    source = pl.DataFrame(
        {
            "k": ["a", "b", "c", "d", "e"],
            "amount": [1.5, float("nan"), float("inf"), float("-inf"), None],
            "n": [2.0, 3.0, 3.5, float("nan"), 4.0],
        }
    )
    spec = thing_spec(FieldMapping("amount", "Amount__c"), FieldMapping("n", "N__c"))
    mapped = map_records(spec, source, TYPED)
    assert mapped.records.rows() == [("a", "a", "1.5", "2"), ("e", "e", None, "4")]
    assert mapped.invalid.select("key", "reason", "column").rows() == [
        ("b", "INVALID_TYPE", "amount"),
        ("c", "INVALID_TYPE", "amount"),
        ("d", "INVALID_TYPE", "amount"),
    ]
    # Text "NaN" was refused already; a float column now agrees with it.
    text = map_records(
        thing_spec(FieldMapping("amount", "Amount__c")),
        pl.DataFrame({"k": ["x"], "amount": ["NaN"]}),
        TYPED,
    )
    assert text.invalid["reason"].to_list() == ["INVALID_TYPE"]


def test_a_fraction_in_a_float_column_is_not_an_integer() -> None:
    mapped = map_records(
        thing_spec(FieldMapping("n", "N__c")),
        pl.DataFrame({"k": ["a", "b"], "n": [3.5, 7.0]}),
        TYPED,
    )
    assert mapped.records.rows() == [("b", "b", "7")]
    assert mapped.invalid.select("key", "reason").rows() == [("a", "INVALID_TYPE")]


def test_a_key_of_only_blanks_is_no_key_but_a_padded_key_is_one() -> None:
    source = pl.DataFrame({"k": ["   ", "\t", " k1 ", "k2"], "name": ["a", "b", "c", "d"]})
    mapped = map_records(thing_spec(FieldMapping("name", "Name")), source, TYPED)
    assert mapped.records["__key"].to_list() == [" k1 ", "k2"]
    assert mapped.invalid.select("key", "reason").rows() == [
        ("   ", "INVALID_NULL_KEY"),
        ("\t", "INVALID_NULL_KEY"),
    ]
    assert "only blanks" in mapped.invalid["message"][0]


def test_empty_string_in_a_required_field_is_sent_null_is_set_aside() -> None:
    spec = thing_spec(FieldMapping("req", "Req__c"))
    mapped = map_records(spec, pl.DataFrame({"k": ["a", "b"], "req": ["", None]}), TYPED)
    # Both keys are unknown to state: "a" may exist in Salesforce already, where "" leaves
    # the field as it is; a null would clear a required field, which can never work.
    kept, invalid = split_missing_required(
        spec, mapped.records, mapped.columns, pl.Series(["a", "b"])
    )
    assert kept["__key"].to_list() == ["a"]
    assert invalid.select("key", "reason").rows() == [("b", "INVALID_REQUIRED_MISSING")]
