"""The catalogue: one small named case per bad or edge-case input.

Each case says, in ``why``, which documented behaviour its expectation rests on. The
references are ``salesforce-api.md`` (what Salesforce answers; cited as "api §N") and the
destination guide (what the product promises; cited as "guide"). Reasons such as
``INVALID_DUPLICATE_KEY`` are the engine's documented pre-send checks (``sync/report.py``
ERROR_GUIDE): a record Salesforce would refuse for a reason the engine can see in the row is
set aside before sending, with that reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

import polars as pl

from sf_activations.sync.spec import FieldMapping, SyncKey
from sf_activations_tests.catalogue.model import (
    TRANSPORTS,
    Case,
    Invalid,
    Refused,
    Rejected,
    Step,
    Synced,
    Transport,
)
from sf_activations_tests.catalogue.org import KEY, NOTES_LIMIT, OBJECT, PARENT_KEY, TEXT_LIMIT

PARENT_ID = "<id of the parent Account 'acme'>"
"""Placeholder (in rows and expected values) for the seeded parent Account's 18-character Id."""
PARENT_ID15 = "<15-character id of the parent Account 'acme'>"
"""Placeholder (in rows) for the same Id in its 15-character, case-sensitive form."""
MISSING_ACCOUNT_ID = "001000000000001"
"""A well-formed Account Id that names no record in the org."""

BY_EXT = SyncKey(source="id", target=KEY)
S = pl.String


def _m(*pairs: tuple[str, str]) -> tuple[FieldMapping, ...]:
    return tuple(FieldMapping(source, target) for source, target in pairs)


def _case(
    name: str,
    why: str,
    mappings: tuple[FieldMapping, ...],
    *steps: Step,
    sobject: str = OBJECT,
    key: SyncKey = BY_EXT,
    seed: tuple[Mapping[str, Any], ...] = (),
    xfail: Mapping[Transport, str] | None = None,
    behavior: Literal["update_or_create", "create_only"] = "update_or_create",
) -> Case:
    """A case on ``Catalogue_Item__c`` keyed by ``Ext__c`` unless told otherwise."""
    return Case(
        name=name,
        why=why,
        sobject=sobject,
        key=key,
        mappings=mappings,
        steps=steps,
        seed=seed,
        xfail=xfail or {},
        behavior=behavior,
        transports=TRANSPORTS if behavior == "update_or_create" else ("bulk",),
    )


TEXT = _m(("text", "Text__c"))
NOTES = _m(("notes", "Notes__c"))

CASES: tuple[Case, ...] = (
    # ---------------------------------------------------------------- keys
    _case(
        "duplicate_key_exact",
        "Two rows with one key cannot both be right; the engine sends neither "
        "(INVALID_DUPLICATE_KEY, even when the rows are identical: the model needs "
        "deduplicating) and the other rows go through.",
        TEXT,
        Step(
            rows={
                "id": ["k1", "k1", "k2", "k3", "k3"],
                "text": ["first", "second", "other", "same", "same"],
            },
            expect={
                "k1": Invalid("INVALID_DUPLICATE_KEY"),
                "k2": Synced({"Text__c": "other"}),
                "k3": Invalid("INVALID_DUPLICATE_KEY"),
            },
            total=1,
        ),
    ),
    _case(
        "duplicate_key_case_variant_on_case_insensitive_external_id",
        "Ext__c is Unique and case-insensitive: Salesforce matches 'K1' and 'k1' (and 'Ä1'/'ä1') "
        "to the same record (api §5 External ids), so they are duplicate keys.",
        TEXT,
        Step(
            rows={
                "id": ["K1", "k1", "Ä1", "ä1", "k2"],
                "text": ["upper", "lower", "umlaut up", "umlaut low", "other"],
            },
            expect={
                "K1": Invalid("INVALID_DUPLICATE_KEY"),
                "k1": Invalid("INVALID_DUPLICATE_KEY"),
                "Ä1": Invalid("INVALID_DUPLICATE_KEY"),
                "ä1": Invalid("INVALID_DUPLICATE_KEY"),
                "k2": Synced({"Text__c": "other"}),
            },
            total=1,
        ),
    ),
    _case(
        "case_variant_on_case_sensitive_external_id",
        "Code__c is Unique but case-sensitive: 'AB' and 'ab' are different records (api §5).",
        _m(("text", "Text__c")),
        Step(
            rows={"id": ["AB", "ab"], "text": ["upper", "lower"]},
            expect={"AB": Synced({"Text__c": "upper"}), "ab": Synced({"Text__c": "lower"})},
            total=2,
        ),
        key=SyncKey(source="id", target="Code__c"),
    ),
    _case(
        "null_key",
        "A row without a key cannot be matched to a record: INVALID_NULL_KEY, not sent.",
        TEXT,
        Step(
            rows={"id": [None, "k1"], "text": ["orphan", "kept"]},
            schema={"id": S, "text": S},
            expect={"k1": Synced({"Text__c": "kept"})},
            keyless={"INVALID_NULL_KEY": 1},
            total=1,
        ),
    ),
    _case(
        "empty_string_key",
        "An empty key is no key (an empty upsert value would create a record every run).",
        TEXT,
        Step(
            rows={"id": ["", "k1"], "text": ["orphan", "kept"]},
            expect={"k1": Synced({"Text__c": "kept"})},
            keyless={"INVALID_NULL_KEY": 1},
            total=1,
        ),
    ),
    _case(
        "padded_key",
        "CSV values are not trimmed (api §3.2), so ' k1 ' and 'k1' are two keys, each stored "
        "verbatim.",
        TEXT,
        Step(
            rows={"id": [" k1 ", "k1", "k1 "], "text": ["both sides", "plain", "trailing"]},
            expect={
                " k1 ": Synced({KEY: " k1 ", "Text__c": "both sides"}),
                "k1": Synced({KEY: "k1", "Text__c": "plain"}),
                "k1 ": Synced({KEY: "k1 ", "Text__c": "trailing"}),
            },
            total=3,
        ),
    ),
    _case(
        "blank_key",
        "A key of only blanks is no key: the engine's rule 'null or empty' (INVALID_NULL_KEY) "
        "covers what no person can tell apart from empty. (Product judgement: whether "
        "Salesforce trims such a value through the API is not documented.)",
        TEXT,
        Step(
            rows={"id": ["   ", "\t", "k1"], "text": ["blank", "tab", "kept"]},
            expect={"k1": Synced({"Text__c": "kept"})},
            keyless={"INVALID_NULL_KEY": 2},
            total=1,
        ),
    ),
    _case(
        "duplicate_key_of_an_already_synced_record",
        "A key that was synced and now appears on two rows: neither row is sent and Salesforce "
        "keeps what it had.",
        TEXT,
        Step(
            rows={"id": ["k1"], "text": ["original"]},
            expect={"k1": Synced({"Text__c": "original"})},
        ),
        Step(
            rows={"id": ["k1", "k1"], "text": ["first", "second"]},
            expect={"k1": Invalid("INVALID_DUPLICATE_KEY", stored={"Text__c": "original"})},
            total=1,
        ),
    ),
    _case(
        "special_characters_in_keys",
        "Keys are data wherever they go (CSV cell, JSON body, SOQL literal; DESIGN invariant 6): "
        "URL, CSV and SOQL metacharacters in a key are stored verbatim, and a text key is never "
        "read as a number ('007' and '7' are two keys).",
        TEXT,
        Step(
            rows={
                "id": [
                    "a/b",
                    "a?b&c=d",
                    "a#b",
                    "a%20b",
                    "a,b",
                    'a"b',
                    "a'b",
                    "a\\b",
                    "x' OR Id != '",
                    "007",
                    "7",
                ],
                "text": [
                    "slash",
                    "query",
                    "hash",
                    "percent",
                    "comma",
                    "dquote",
                    "squote",
                    "bslash",
                    "soql",
                    "leading zeros",
                    "seven",
                ],
            },
            expect={
                "a/b": Synced({"Text__c": "slash"}),
                "a?b&c=d": Synced({"Text__c": "query"}),
                "a#b": Synced({"Text__c": "hash"}),
                "a%20b": Synced({"Text__c": "percent"}),
                "a,b": Synced({"Text__c": "comma"}),
                'a"b': Synced({"Text__c": "dquote"}),
                "a'b": Synced({"Text__c": "squote"}),
                "a\\b": Synced({"Text__c": "bslash"}),
                "x' OR Id != '": Synced({"Text__c": "soql"}),
                "007": Synced({KEY: "007", "Text__c": "leading zeros"}),
                "7": Synced({KEY: "7", "Text__c": "seven"}),
            },
            total=11,
        ),
    ),
    _case(
        "integer_key_column",
        "An integer key column is matched by its decimal text ('7', not '7.0').",
        TEXT,
        Step(
            rows={"id": [7, 10_000_000_000, -1], "text": ["seven", "big", "negative"]},
            schema={"id": pl.Int64, "text": S},
            expect={
                "7": Synced({KEY: "7", "Text__c": "seven"}),
                "10000000000": Synced({KEY: "10000000000", "Text__c": "big"}),
                "-1": Synced({KEY: "-1", "Text__c": "negative"}),
            },
            total=3,
        ),
    ),
    _case(
        "key_longer_than_its_field",
        "Ext__c is Text(80): an 81-character key cannot be stored (STRING_TOO_LONG, api §4; "
        "the engine sees it first: INVALID_STRING_TOO_LONG); 80 characters are fine.",
        TEXT,
        Step(
            rows={"id": ["k" * 80, "k" * 81], "text": ["at", "over"]},
            expect={
                "k" * 80: Synced({"Text__c": "at"}),
                "k" * 81: Invalid("INVALID_STRING_TOO_LONG"),
            },
            total=1,
        ),
    ),
    _case(
        "key_change_between_runs",
        "Update or Create never deletes: a row whose key changes from k1 to k2 creates k2 and "
        "leaves k1's record as it was (guide: sync behaviors).",
        TEXT,
        Step(rows={"id": ["k1"], "text": ["alpha"]}, expect={"k1": Synced({"Text__c": "alpha"})}),
        Step(
            rows={"id": ["k2"], "text": ["alpha"]},
            expect={"k2": Synced({"Text__c": "alpha"})},
            total=2,
        ),
    ),
    _case(
        "key_case_change_on_case_insensitive_external_id",
        "Ext__c matches case-insensitively (api §5), so 'k1' becoming 'K1' updates the same "
        "record (no duplicate) and the upsert writes the new spelling; going back to 'k1' with "
        "the first run's values writes them again (Salesforce holds the 'K1' run's values).",
        TEXT,
        Step(rows={"id": ["k1"], "text": ["alpha"]}, expect={"k1": Synced({"Text__c": "alpha"})}),
        Step(
            rows={"id": ["K1"], "text": ["beta"]},
            expect={"K1": Synced({KEY: "K1", "Text__c": "beta"})},
            total=1,
            absent=("k1",),
        ),
        Step(
            rows={"id": ["k1"], "text": ["alpha"]},
            expect={"k1": Synced({KEY: "k1", "Text__c": "alpha"})},
            total=1,
            absent=("K1",),
        ),
    ),
    _case(
        "record_removed_then_re_added",
        "Update or Create leaves a record that left the model alone; when it comes back with a "
        "new value the same record is updated, never duplicated (DESIGN invariant 1).",
        TEXT,
        Step(
            rows={"id": ["k1", "k2"], "text": ["one", "two"]},
            expect={"k1": Synced({"Text__c": "one"}), "k2": Synced({"Text__c": "two"})},
        ),
        Step(
            rows={"id": ["k1"], "text": ["one"]},
            expect={"k1": Synced({"Text__c": "one"})},
            total=2,
        ),
        Step(
            rows={"id": ["k1", "k2"], "text": ["one", "two again"]},
            expect={"k1": Synced({"Text__c": "one"}), "k2": Synced({"Text__c": "two again"})},
            total=2,
        ),
    ),
    # ---------------------------------------------------------------- text
    _case(
        "unicode_in_values_and_keys",
        "Text is UTF-8 end to end (api §3.2) and stored as given: emoji, CJK, RTL and combining "
        "marks survive, and a precomposed 'é' and 'e'+U+0301 are different keys (no "
        "normalisation is documented).",
        _m(("text", "Text__c"), ("notes", "Notes__c")),
        Step(
            rows={
                "id": ["🔑-1", "鍵-2", "é-3", "e\u0301-3", "مفتاح-4"],
                "text": ["🎉 party 🎉", "東京 名前", "cafe\u0301", "naïve", "سلام"],
                "notes": [
                    "👨‍👩‍👧 family",
                    "中文，标点。",
                    "Z\u0351\u0358algo",
                    "ﬁ ligature",
                    "עברית",
                ],
            },
            expect={
                "🔑-1": Synced({"Text__c": "🎉 party 🎉", "Notes__c": "👨‍👩‍👧 family"}),
                "鍵-2": Synced({"Text__c": "東京 名前", "Notes__c": "中文，标点。"}),
                "é-3": Synced({"Text__c": "cafe\u0301", "Notes__c": "Z\u0351\u0358algo"}),
                "e\u0301-3": Synced({"Text__c": "naïve", "Notes__c": "ﬁ ligature"}),
                "مفتاح-4": Synced({"Text__c": "سلام", "Notes__c": "עברית"}),
            },
            total=5,
        ),
    ),
    _case(
        "csv_special_characters",
        "Quotes, delimiters, CR/LF, backslashes and formula-looking text are data: the CSV "
        "writer quotes them (api §3.2) and Salesforce stores them verbatim (DESIGN invariant 6).",
        NOTES,
        Step(
            rows={
                "id": ["q", "c", "n", "r", "b", "f", "s"],
                "notes": [
                    'say "hi", "bye"',
                    "a,b,,c,",
                    "line one\nline two\n",
                    "crlf\r\nend",
                    "C:\\path\\to\\file \\n not a newline \\",
                    '=HYPERLINK("x")',
                    "  spaced  ",
                ],
            },
            expect={
                "q": Synced({"Notes__c": 'say "hi", "bye"'}),
                "c": Synced({"Notes__c": "a,b,,c,"}),
                "n": Synced({"Notes__c": "line one\nline two\n"}),
                "r": Synced({"Notes__c": "crlf\r\nend"}),
                "b": Synced({"Notes__c": "C:\\path\\to\\file \\n not a newline \\"}),
                "f": Synced({"Notes__c": '=HYPERLINK("x")'}),
                "s": Synced({"Notes__c": "  spaced  "}),
            },
            total=7,
        ),
    ),
    _case(
        "literal_na_string_is_a_value",
        "'#N/A' in a Bulk CSV means null (api §3.2), but in the model it is a string: a value "
        "must never turn into a command (DESIGN invariant 6), so it is stored as '#N/A', not "
        "cleared; the same for a key '#N/A'. Strings that merely look like null ('null', "
        "'None', 'nan') are text too.",
        _m(("text", "Text__c"), ("notes", "Notes__c")),
        Step(
            rows={
                "id": ["k1", "k2", "k3", "k4", "#N/A"],
                "text": ["#N/A", "#n/a", "null", "None", "key"],
                "notes": ["#N/A", "x #N/A", "NULL", "nan", "key"],
            },
            expect={
                "k1": Synced({"Text__c": "#N/A", "Notes__c": "#N/A"}),
                "k2": Synced({"Text__c": "#n/a", "Notes__c": "x #N/A"}),
                "k3": Synced({"Text__c": "null", "Notes__c": "NULL"}),
                "k4": Synced({"Text__c": "None", "Notes__c": "nan"}),
                "#N/A": Synced({KEY: "#N/A", "Text__c": "key"}),
            },
        ),
    ),
    _case(
        "string_length_at_and_over_the_limit",
        "Text(20) holds 20 characters (CJK count as one each) and not 21 (STRING_TOO_LONG, "
        "api §4; the engine sees it first: INVALID_STRING_TOO_LONG). The same for a "
        "32,000-character Long Text Area.",
        _m(("text", "Text__c"), ("notes", "Notes__c")),
        Step(
            rows={
                "id": ["at", "over", "cjk", "long", "longer"],
                "text": ["x" * TEXT_LIMIT, "x" * (TEXT_LIMIT + 1), "名" * TEXT_LIMIT, "", ""],
                "notes": ["", "", "", "n" * NOTES_LIMIT, "n" * (NOTES_LIMIT + 1)],
            },
            expect={
                "at": Synced({"Text__c": "x" * TEXT_LIMIT}),
                "over": Invalid("INVALID_STRING_TOO_LONG"),
                "cjk": Synced({"Text__c": "名" * TEXT_LIMIT}),
                "long": Synced({"Notes__c": "n" * NOTES_LIMIT}),
                "longer": Invalid("INVALID_STRING_TOO_LONG"),
            },
            total=3,
        ),
    ),
    # ---------------------------------------------------------------- numbers
    _case(
        "numbers_as_text",
        "Number(16,2) takes big, negative and scientific values (doubles may use scientific "
        "notation, api §3.2) and rounds extra decimals to its scale; NaN, infinity, words and "
        "grouped digits are not numbers (INVALID_TYPE); 17 integer digits do not fit 16 "
        "(Salesforce: NUMBER_OUTSIDE_VALID_RANGE).",
        _m(("amount", "Amount__c"), ("count", "Count__c")),
        Step(
            rows={
                "id": [
                    "big",
                    "neg",
                    "decimals",
                    "sci",
                    "nan",
                    "inf",
                    "word",
                    "int_sci",
                    "grouped",
                    "too_big",
                ],
                "amount": [
                    "1234567890123456",
                    "-42.5",
                    "3.14159",
                    "1.5E3",
                    "NaN",
                    "-inf",
                    "ten",
                    "",
                    "1,234.5",
                    "12345678901234567",
                ],
                "count": ["", "-99999999", "", "", "", "", "", "1e3", "", ""],
            },
            expect={
                "big": Synced({"Amount__c": 1234567890123456.0}),
                "neg": Synced({"Amount__c": -42.5, "Count__c": -99999999}),
                "decimals": Synced({"Amount__c": 3.14}),
                "sci": Synced({"Amount__c": 1500.0}),
                "nan": Invalid("INVALID_TYPE"),
                "inf": Invalid("INVALID_TYPE"),
                "word": Invalid("INVALID_TYPE"),
                "int_sci": Synced({"Count__c": 1000}),
                "grouped": Invalid("INVALID_TYPE"),
                "too_big": Rejected("NUMBER_OUTSIDE_VALID_RANGE"),
            },
            total=5,
        ),
    ),
    _case(
        "numbers_as_floats",
        "A float column: the same values typed by the warehouse. NaN and ±infinity cannot be "
        "stored in a Salesforce number (INVALID_TYPE); -0.0 is 0.",
        _m(("amount", "Amount__c")),
        Step(
            rows={
                "id": ["big", "neg", "decimals", "tiny", "nan", "inf", "ninf", "negzero"],
                "amount": [
                    1.234567890123456e15,
                    -42.5,
                    2.71828,
                    1e-7,
                    math.nan,
                    math.inf,
                    -math.inf,
                    -0.0,
                ],
            },
            schema={"id": S, "amount": pl.Float64},
            expect={
                "big": Synced({"Amount__c": 1234567890123456.0}),
                "neg": Synced({"Amount__c": -42.5}),
                "decimals": Synced({"Amount__c": 2.72}),
                "tiny": Synced({"Amount__c": 0.0}),
                "nan": Invalid("INVALID_TYPE"),
                "inf": Invalid("INVALID_TYPE"),
                "ninf": Invalid("INVALID_TYPE"),
                "negzero": Synced({"Amount__c": 0.0}),
            },
            total=5,
        ),
    ),
    _case(
        "integer_column_to_number_fields",
        "Integer and Decimal columns go to number fields exactly (a Decimal's trailing zeros "
        "do not matter).",
        _m(("amount", "Amount__c"), ("count", "Count__c")),
        Step(
            rows={"id": ["a", "b"], "amount": [7, -3], "count": [123456789, -5]},
            schema={"id": S, "amount": pl.Int64, "count": pl.Int32},
            expect={
                "a": Synced({"Amount__c": 7.0, "Count__c": 123456789}),
                "b": Synced({"Amount__c": -3.0, "Count__c": -5}),
            },
        ),
    ),
    _case(
        "decimal_column_to_number_field",
        "Warehouse NUMBER/DECIMAL columns arrive as Decimal: trailing zeros do not matter and "
        "extra decimals round to the field's scale.",
        _m(("amount", "Amount__c")),
        Step(
            rows={
                "id": ["zeros", "big", "decimals", "neg"],
                "amount": [
                    Decimal("1.50"),
                    Decimal("12345678901234.56"),
                    Decimal("2.71828"),
                    Decimal("-0.25"),
                ],
            },
            schema={"id": S, "amount": pl.Decimal(38, 10)},
            expect={
                "zeros": Synced({"Amount__c": 1.5}),
                "big": Synced({"Amount__c": 12345678901234.56}),
                "decimals": Synced({"Amount__c": 2.72}),
                "neg": Synced({"Amount__c": -0.25}),
            },
        ),
    ),
    # ---------------------------------------------------------------- booleans
    _case(
        "boolean_spellings",
        "A checkbox takes true/false (api §3.2); the engine reads the usual spellings "
        "(true/1/yes/y/t, any case) and refuses others (INVALID_TYPE). A checkbox is never "
        "null: null clears it to false.",
        _m(("active", "Active__c")),
        Step(
            rows={
                "id": ["t1", "t2", "t3", "t4", "t5", "f1", "f2", "f3", "f4", "bad", "none"],
                "active": [
                    "true",
                    "TRUE",
                    "True",
                    "1",
                    "yes",
                    "false",
                    "FALSE",
                    "0",
                    "No",
                    "maybe",
                    None,
                ],
            },
            schema={"id": S, "active": S},
            expect={
                **{k: Synced({"Active__c": True}) for k in ("t1", "t2", "t3", "t4", "t5")},
                **{k: Synced({"Active__c": False}) for k in ("f1", "f2", "f3", "f4", "none")},
                "bad": Invalid("INVALID_TYPE"),
            },
            total=10,
        ),
    ),
    _case(
        "boolean_column",
        "A Boolean column: true, false and null (null leaves a checkbox false).",
        _m(("active", "Active__c")),
        Step(
            rows={"id": ["t", "f", "n"], "active": [True, False, None]},
            schema={"id": S, "active": pl.Boolean},
            expect={
                "t": Synced({"Active__c": True}),
                "f": Synced({"Active__c": False}),
                "n": Synced({"Active__c": False}),
            },
        ),
    ),
    # ---------------------------------------------------------------- dates
    _case(
        "dates_as_text",
        "A date is yyyy-MM-dd (api §3.2): leap days are dates, 2023-02-29 and month 13 are not "
        "(INVALID_TYPE).",
        _m(("start", "Start__c")),
        Step(
            rows={
                "id": ["leap", "plain", "not_leap", "month13", "garbage"],
                "start": ["2024-02-29", "1999-12-31", "2023-02-29", "2024-13-01", "yesterday"],
            },
            expect={
                "leap": Synced({"Start__c": "2024-02-29"}),
                "plain": Synced({"Start__c": "1999-12-31"}),
                "not_leap": Invalid("INVALID_TYPE"),
                "month13": Invalid("INVALID_TYPE"),
                "garbage": Invalid("INVALID_TYPE"),
            },
            total=2,
        ),
    ),
    _case(
        "datetimes_with_time_zones",
        "A dateTime carries an offset or Z (api §3.2) and Salesforce stores UTC "
        "(returned as ...+0000, api §5). A naive value is read as UTC. Feb 30 is no date.",
        _m(("seen", "Seen_At__c")),
        Step(
            rows={
                "id": ["z", "plus2", "minus0530", "naive", "millis", "feb30"],
                "seen": [
                    "2024-01-15T10:00:00Z",
                    "2024-01-15T10:00:00+02:00",
                    "2024-01-15T10:00:00-05:30",
                    "2024-01-15 10:00:00",
                    "2024-01-15T10:00:00.123Z",
                    "2024-02-30T00:00:00Z",
                ],
            },
            expect={
                "z": Synced({"Seen_At__c": "2024-01-15T10:00:00.000+0000"}),
                "plus2": Synced({"Seen_At__c": "2024-01-15T08:00:00.000+0000"}),
                "minus0530": Synced({"Seen_At__c": "2024-01-15T15:30:00.000+0000"}),
                "naive": Synced({"Seen_At__c": "2024-01-15T10:00:00.000+0000"}),
                "millis": Synced({"Seen_At__c": "2024-01-15T10:00:00.123+0000"}),
                "feb30": Invalid("INVALID_TYPE"),
            },
            total=5,
        ),
    ),
    _case(
        "typed_date_and_zoned_datetime_columns",
        "Date and time-zone-aware Datetime columns: the instant is kept (12:00 in New York in "
        "July is 16:00 UTC).",
        _m(("start", "Start__c"), ("seen", "Seen_At__c")),
        Step(
            rows={
                "id": ["ny"],
                "start": [date(2024, 7, 1)],
                "seen": [datetime(2024, 7, 1, 12, 0, tzinfo=ZoneInfo("America/New_York"))],
            },
            schema={
                "id": S,
                "start": pl.Date,
                "seen": pl.Datetime("us", "America/New_York"),
            },
            expect={
                "ny": Synced(
                    {"Start__c": "2024-07-01", "Seen_At__c": "2024-07-01T16:00:00.000+0000"}
                )
            },
        ),
    ),
    _case(
        "int_column_mapped_to_a_date_field",
        "A column type mismatch: 20240115 is an integer, not a yyyy-MM-dd date (INVALID_TYPE).",
        _m(("start", "Start__c")),
        Step(
            rows={"id": ["k1", "k2"], "start": [20240115, None]},
            schema={"id": S, "start": pl.Int64},
            expect={"k1": Invalid("INVALID_TYPE"), "k2": Synced({"Start__c": None})},
            total=1,
        ),
    ),
    # ---------------------------------------------------------------- picklists
    _case(
        "restricted_picklist_values",
        "A restricted picklist takes only its values (INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST, "
        "api §4; the engine sees it first: INVALID_PICKLIST_VALUE). Matching is on the exact "
        "API value, so 'gold' is not 'Gold'. An unrestricted picklist takes any value.",
        _m(("tier", "Tier__c"), ("color", "Color__c")),
        Step(
            rows={
                "id": ["good", "bad", "case", "free"],
                "tier": ["Gold", "Platinum", "gold", None],
                "color": [None, None, None, "Chartreuse"],
            },
            schema={"id": S, "tier": S, "color": S},
            expect={
                "good": Synced({"Tier__c": "Gold"}),
                "bad": Invalid("INVALID_PICKLIST_VALUE"),
                "case": Invalid("INVALID_PICKLIST_VALUE"),
                "free": Synced({"Tier__c": None, "Color__c": "Chartreuse"}),
            },
            total=2,
        ),
    ),
    _case(
        "multipicklist_as_list_column",
        "A list column is joined with ';' (guide: Supported Data Types); an empty list or null "
        "leaves nothing selected; a value outside the restricted set is refused.",
        _m(("tags", "Tags__c")),
        Step(
            rows={
                "id": ["two", "one", "empty", "none", "bad"],
                "tags": [["Red", "Blue"], ["Green"], [], None, ["Red", "Purple"]],
            },
            schema={"id": S, "tags": pl.List(pl.String)},
            expect={
                "two": Synced({"Tags__c": "Red;Blue"}),
                "one": Synced({"Tags__c": "Green"}),
                "empty": Synced({"Tags__c": None}),
                "none": Synced({"Tags__c": None}),
                "bad": Invalid("INVALID_PICKLIST_VALUE"),
            },
            total=4,
        ),
    ),
    _case(
        "multipicklist_as_semicolon_string",
        "A ';'-separated string is the multipicklist's own format (api §3.2).",
        _m(("tags", "Tags__c")),
        Step(
            rows={"id": ["two", "one", "bad"], "tags": ["Red;Blue", "Green", "Red;Purple"]},
            expect={
                "two": Synced({"Tags__c": "Red;Blue"}),
                "one": Synced({"Tags__c": "Green"}),
                "bad": Invalid("INVALID_PICKLIST_VALUE"),
            },
            total=2,
        ),
    ),
    # ---------------------------------------------------------------- null vs empty
    _case(
        "null_clears_empty_string_leaves_alone",
        "Syncing NULL clears a field; '' makes no change (guide: Clearing fields; DESIGN "
        "invariant 4; api §3.2 '#N/A' vs empty cell), for text, number, date and picklist.",
        _m(
            ("text", "Text__c"),
            ("notes", "Notes__c"),
            ("amount", "Amount__c"),
            ("start", "Start__c"),
            ("tier", "Tier__c"),
        ),
        Step(
            rows={
                "id": ["clear", "keep"],
                "text": ["t", "t"],
                "notes": ["n", "n"],
                "amount": ["1.5", "1.5"],
                "start": ["2024-01-01", "2024-01-01"],
                "tier": ["Gold", "Gold"],
            },
            expect={
                k: Synced(
                    {
                        "Text__c": "t",
                        "Notes__c": "n",
                        "Amount__c": 1.5,
                        "Start__c": "2024-01-01",
                        "Tier__c": "Gold",
                    }
                )
                for k in ("clear", "keep")
            },
        ),
        Step(
            rows={
                "id": ["clear", "keep"],
                "text": [None, ""],
                "notes": [None, ""],
                "amount": [None, ""],
                "start": [None, ""],
                "tier": [None, ""],
            },
            schema={c: S for c in ("id", "text", "notes", "amount", "start", "tier")},
            expect={
                "clear": Synced(
                    {
                        "Text__c": None,
                        "Notes__c": None,
                        "Amount__c": None,
                        "Start__c": None,
                        "Tier__c": None,
                    }
                ),
                "keep": Synced(
                    {
                        "Text__c": "t",
                        "Notes__c": "n",
                        "Amount__c": 1.5,
                        "Start__c": "2024-01-01",
                        "Tier__c": "Gold",
                    }
                ),
            },
            total=2,
        ),
    ),
    _case(
        "invalid_value_fixed_on_the_next_run",
        "An invalid record stays pending with its reason; once the model is fixed it is sent "
        "and synced (guide: rejected records are retried).",
        TEXT,
        Step(
            rows={"id": ["k1", "k2"], "text": ["x" * (TEXT_LIMIT + 1), "fine"]},
            expect={"k1": Invalid("INVALID_STRING_TOO_LONG"), "k2": Synced({"Text__c": "fine"})},
            total=1,
        ),
        Step(
            rows={"id": ["k1", "k2"], "text": ["x" * TEXT_LIMIT, "fine"]},
            expect={"k1": Synced({"Text__c": "x" * TEXT_LIMIT}), "k2": Synced({"Text__c": "fine"})},
            total=2,
        ),
    ),
    _case(
        "synced_record_turns_invalid_then_recovers",
        "A synced record whose row turns invalid keeps its Salesforce values; when the row "
        "returns to its old values the same record is written again (no duplicate).",
        TEXT,
        Step(rows={"id": ["k1"], "text": ["good"]}, expect={"k1": Synced({"Text__c": "good"})}),
        Step(
            rows={"id": ["k1"], "text": ["x" * (TEXT_LIMIT + 1)]},
            expect={"k1": Invalid("INVALID_STRING_TOO_LONG", stored={"Text__c": "good"})},
            total=1,
        ),
        Step(
            rows={"id": ["k1"], "text": ["good"]},
            expect={"k1": Synced({"Text__c": "good"})},
            total=1,
        ),
    ),
    _case(
        "deleted_in_salesforce_then_changed",
        "Someone deletes a synced record in Salesforce; when its row next changes, the upsert "
        "by External ID finds no live record (deleted ones sit in the recycle bin, api §5) and "
        "creates a new one, so the row is in Salesforce again, once.",
        TEXT,
        Step(rows={"id": ["k1"], "text": ["v1"]}, expect={"k1": Synced({"Text__c": "v1"})}),
        Step(
            rows={"id": ["k1"], "text": ["v2"]},
            expect={"k1": Synced({"Text__c": "v2"})},
            total=1,
            deleted_in_salesforce=("k1",),
        ),
    ),
    _case(
        "email_format",
        "An Email field takes only addresses (Salesforce: INVALID_EMAIL_ADDRESS; the engine sees "
        "it first: INVALID_EMAIL); unusual but valid addresses go through.",
        _m(("last_name", "LastName"), ("email", "Email")),
        Step(
            rows={
                "id": ["ok", "plus", "bad", "spaces"],
                "last_name": ["A", "B", "C", "D"],
                "email": [
                    "a@example.com",
                    "first.last+tag@sub.example.co.uk",
                    "not-an-email",
                    "a b@example.com",
                ],
            },
            expect={
                "ok": Synced({"Email": "a@example.com"}),
                "plus": Synced({"Email": "first.last+tag@sub.example.co.uk"}),
                "bad": Invalid("INVALID_EMAIL"),
                "spaces": Invalid("INVALID_EMAIL"),
            },
            total=2,
        ),
        sobject="Contact",
        key=SyncKey(source="id", target="External_Id__c"),
    ),
    _case(
        "empty_string_on_create_leaves_fields_unset",
        "On insert an empty cell leaves the field unset (api §3.2): text and numbers stay null, "
        "a checkbox takes its default (false).",
        _m(("text", "Text__c"), ("amount", "Amount__c"), ("active", "Active__c")),
        Step(
            rows={"id": ["k1"], "text": [""], "amount": [""], "active": [""]},
            expect={"k1": Synced({"Text__c": None, "Amount__c": None, "Active__c": False})},
            total=1,
        ),
    ),
    # ---------------------------------------------------------------- lookups
    _case(
        "lookup_by_external_id",
        "A lookup by the parent's External ID resolves to the parent's Id; a missing parent "
        "is refused with INVALID_FIELD 'Foreign key external ID: ... not found' (api §2.4, "
        "§4) and stays pending; a null lookup leaves the field empty, and on a later run NULL "
        "clears a lookup that was set (guide: Clearing fields).",
        (FieldMapping("account", "Account__c", lookup_field="External_Id__c"),),
        Step(
            rows={"id": ["has", "ghost", "none"], "account": [PARENT_KEY, "ghost", None]},
            schema={"id": S, "account": S},
            expect={
                "has": Synced({"Account__c": PARENT_ID}),
                "ghost": Rejected("INVALID_FIELD"),
                "none": Synced({"Account__c": None}),
            },
            total=2,
        ),
        Step(
            rows={"id": ["has", "ghost", "none"], "account": [None, "ghost", PARENT_KEY]},
            schema={"id": S, "account": S},
            expect={
                "has": Synced({"Account__c": None}),
                "ghost": Rejected("INVALID_FIELD"),
                "none": Synced({"Account__c": PARENT_ID}),
            },
            total=2,
        ),
    ),
    _case(
        "lookup_parent_key_case_variant",
        "Account.External_Id__c is Unique and case-insensitive, so 'ACME' finds 'acme' "
        "(api §5 External ids).",
        (FieldMapping("account", "Account__c", lookup_field="External_Id__c"),),
        Step(
            rows={"id": ["upper"], "account": [PARENT_KEY.upper()]},
            expect={"upper": Synced({"Account__c": PARENT_ID})},
        ),
    ),
    _case(
        "lookup_empty_string_leaves_it_alone",
        "'' makes no change (guide: Clearing fields), for a lookup column too: the parent set "
        "on the first run stays.",
        (FieldMapping("account", "Account__c", lookup_field="External_Id__c"),),
        Step(
            rows={"id": ["k1"], "account": [PARENT_KEY]},
            expect={"k1": Synced({"Account__c": PARENT_ID})},
        ),
        Step(
            rows={"id": ["k1"], "account": [""]},
            expect={"k1": Synced({"Account__c": PARENT_ID})},
            total=1,
        ),
    ),
    _case(
        "lookup_by_salesforce_id",
        "A lookup column of Salesforce Ids: a 15-character Id is accepted and stored as 18 "
        "(api §5); text that is no Id is INVALID_ID; a well-formed Id that names no record is "
        "INVALID_CROSS_REFERENCE_KEY (guide: Common Errors).",
        _m(("account", "Account__c")),
        Step(
            rows={
                "id": ["id18", "id15", "junk", "missing"],
                "account": [PARENT_ID, PARENT_ID15, "001-not-an-id", MISSING_ACCOUNT_ID],
            },
            expect={
                "id18": Synced({"Account__c": PARENT_ID}),
                "id15": Synced({"Account__c": PARENT_ID}),
                "junk": Invalid("INVALID_ID"),
                "missing": Rejected("INVALID_CROSS_REFERENCE_KEY"),
            },
            total=2,
        ),
    ),
    # ---------------------------------------------------------------- required fields
    _case(
        "required_field_missing_on_create_fine_on_update",
        "Contact.LastName is required: a new record without it cannot be created "
        "(REQUIRED_FIELD_MISSING, api §4; the engine may see it first: "
        "INVALID_REQUIRED_MISSING). "
        "On update '' leaves it alone, so an existing contact updates fine; NULL would clear a "
        "required field, which Salesforce refuses (REQUIRED_FIELD_MISSING) and the old value "
        "stays.",
        _m(("last_name", "LastName"), ("title", "Title")),
        Step(
            rows={"id": ["c1", "c9"], "last_name": ["Doe", "Roe"], "title": ["Eng", "Ops"]},
            expect={"c1": Synced({"LastName": "Doe"}), "c9": Synced({"LastName": "Roe"})},
        ),
        Step(
            rows={
                "id": ["c1", "c2", "c3", "c9"],
                "last_name": ["", "", None, "Roe"],
                "title": ["Lead Eng", "New", "New", "Ops"],
            },
            schema={"id": S, "last_name": S, "title": S},
            expect={
                "c1": Synced({"LastName": "Doe", "Title": "Lead Eng"}),
                "c2": Refused("INVALID_REQUIRED_MISSING", "REQUIRED_FIELD_MISSING"),
                "c3": Refused("INVALID_REQUIRED_MISSING", "REQUIRED_FIELD_MISSING"),
                "c9": Synced({"LastName": "Roe", "Title": "Ops"}),
            },
            total=2,
        ),
        Step(
            rows={"id": ["c1", "c9"], "last_name": [None, "Roe"], "title": ["Boss", "Ops"]},
            schema={"id": S, "last_name": S, "title": S},
            expect={
                "c1": Rejected(
                    "REQUIRED_FIELD_MISSING", stored={"LastName": "Doe", "Title": "Lead Eng"}
                ),
                "c9": Synced({"LastName": "Roe", "Title": "Ops"}),
            },
            total=2,
        ),
        sobject="Contact",
        key=SyncKey(source="id", target="External_Id__c"),
    ),
    _case(
        "record_already_in_salesforce_before_the_first_sync",
        "Records an admin already keyed in Salesforce (guide: reusing existing External ID "
        "fields) are matched by the upsert, case-insensitively (api §5): no duplicate, and an "
        "empty required value ('' = leave alone) is fine because Salesforce updates, not "
        "creates. The truly new record 'new' still cannot be created.",
        _m(("last_name", "LastName"), ("title", "Title")),
        Step(
            rows={"id": ["c1", "c2", "new"], "last_name": ["", "", ""], "title": ["A", "B", "C"]},
            expect={
                "c1": Synced({"External_Id__c": "c1", "LastName": "Doe", "Title": "A"}),
                "c2": Synced({"External_Id__c": "c2", "LastName": "Roe", "Title": "B"}),
                "new": Refused("INVALID_REQUIRED_MISSING", "REQUIRED_FIELD_MISSING"),
            },
            total=2,
        ),
        sobject="Contact",
        key=SyncKey(source="id", target="External_Id__c"),
        seed=(
            {"External_Id__c": "c1", "LastName": "Doe"},
            {"External_Id__c": "C2", "LastName": "Roe"},
        ),
    ),
    # ---------------------------------------------------------------- other behaviors
    _case(
        "create_only_never_updates",
        "Create Only inserts records Salesforce does not have and leaves changed ones alone "
        "(guide: sync behaviors).",
        TEXT,
        Step(rows={"id": ["k1"], "text": ["first"]}, expect={"k1": Synced({"Text__c": "first"})}),
        Step(
            rows={"id": ["k1", "k2"], "text": ["changed", "new"]},
            expect={"k1": Synced({"Text__c": "first"}), "k2": Synced({"Text__c": "new"})},
            total=2,
        ),
        behavior="create_only",
    ),
    _case(
        "create_only_when_the_key_already_exists_in_salesforce",
        "Create Only inserts; a record with the same Unique External ID already in Salesforce "
        "(case-insensitively) makes the insert fail with DUPLICATE_VALUE (api §4), and the "
        "existing record is not touched.",
        TEXT,
        Step(
            rows={"id": ["k1", "k2"], "text": ["mine", "new"]},
            expect={
                "k1": Rejected("DUPLICATE_VALUE", stored={KEY: "K1", "Text__c": "theirs"}),
                "k2": Synced({"Text__c": "new"}),
            },
            total=2,
        ),
        behavior="create_only",
        seed=({KEY: "K1", "Text__c": "theirs"},),
    ),
    # ---------------------------------------------------------------- empty sources
    _case(
        "zero_rows",
        "A model with no rows sends nothing and, under Update or Create, deletes nothing.",
        TEXT,
        Step(
            rows={"id": [], "text": []},
            schema={"id": S, "text": S},
            expect={},
            total=0,
        ),
        Step(rows={"id": ["k1"], "text": ["kept"]}, expect={"k1": Synced({"Text__c": "kept"})}),
        Step(
            rows={"id": [], "text": []},
            schema={"id": S, "text": S},
            expect={"k1": Synced({"Text__c": "kept"})},
            total=1,
        ),
    ),
)
"""Every case, in catalogue order (names are unique)."""
