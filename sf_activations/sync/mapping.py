"""Map a model's rows to Salesforce fields and set aside the records Salesforce would reject.

Everything here is vectorised polars: one expression per mapped column, no row loops. Every
mapped value is canonicalised to the exact string the Bulk CSV will carry (ISO dates,
``true``/``false``, numbers without float noise) so that fingerprints and CSV always agree.

Null means "clear the field" and stays null; the empty string means "leave it alone" and stays
"" for every type (it is never a type error).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import polars as pl

from sf_activations.sync.model import FieldDescribe, ObjectDescribe
from sf_activations.sync.spec import PARTNER_OBJECTS, FieldMapping, SyncSpec

KEY_COLUMN = "__key"
"""The canonical key (a string) of every mapped record; state and results are keyed by it."""

BULK_NULL_CELL = "#N/A"
"""A Bulk API CSV cell that sets the field to null (an empty cell leaves it alone)."""

INVALID_SCHEMA: Mapping[str, pl.DataType] = {
    "key": pl.String(),
    "reason": pl.String(),
    "column": pl.String(),
    "field": pl.String(),
    "value": pl.String(),
    "message": pl.String(),
}

TEXT_TYPES = frozenset(
    {
        "string",
        "textarea",
        "email",
        "phone",
        "url",
        "picklist",
        "combobox",
        "encryptedstring",
        "id",
        "reference",
        "time",
        "address",
    }
)
INT_TYPES = frozenset({"int", "long"})
FLOAT_TYPES = frozenset({"double", "currency", "percent"})

REASON_TEXT: Mapping[str, str] = {
    "INVALID_NULL_KEY": "the key is null, empty or only blanks, so the record cannot be matched",
    "INVALID_DUPLICATE_KEY": "the key appears on more than one row of the model",
    "INVALID_STRING_TOO_LONG": "the value is longer than the field allows",
    "INVALID_PICKLIST_VALUE": "the value is not one of the field's allowed picklist values",
    "INVALID_TYPE": "the value cannot be converted to the field's type",
    "INVALID_EMAIL": "the value is not an email address",
    "INVALID_ID": "the value is not a 15- or 18-character Salesforce Id",
    "INVALID_REQUIRED_MISSING": "the field is required to create the record but the value is null",
    "INVALID_BULK_NULL_MARKER": (
        "the value is the literal text '#N/A', which a Bulk API insert reads as 'no value'"
    ),
}

_EMAIL_RE = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
_ID_RE = r"^[a-zA-Z0-9]{15}([a-zA-Z0-9]{3})?$"
_DATETIME_FORMATS: Sequence[tuple[str, bool]] = (
    ("%Y-%m-%dT%H:%M:%S%.fZ", False),
    ("%Y-%m-%dT%H:%M:%S%.f%z", True),
    ("%Y-%m-%dT%H:%M:%S%.f", False),
    ("%Y-%m-%d %H:%M:%S%.f", False),
    ("%Y-%m-%d", False),
)
_DATETIME_OUT = "%Y-%m-%dT%H:%M:%S%.3fZ"


class SyncConfigError(ValueError):
    """The sync's configuration does not fit the model or the Salesforce object."""


@dataclass(frozen=True, slots=True)
class MappedColumn:
    """One column of the mapped frame: its CSV header, where it comes from and its field."""

    header: str  # the Bulk CSV header: ``Name`` or ``Account.External_Id__c`` for a lookup
    source: str  # the model column
    field: str  # the Salesforce field (``AccountId`` for a lookup)
    describe: FieldDescribe | None
    lookup_field: str | None = None
    is_key: bool = False


@dataclass(frozen=True, slots=True)
class MappedFrame:
    """The outcome of mapping one partition.

    ``records`` holds the valid records: ``__key`` plus one String column per CSV header.
    ``invalid`` holds one row per set-aside record (schema ``INVALID_SCHEMA``): the first
    problem found, with a user-facing message.
    """

    records: pl.DataFrame
    invalid: pl.DataFrame
    columns: tuple[MappedColumn, ...]

    @property
    def headers(self) -> list[str]:
        """The Salesforce-side column names, in CSV order (key first)."""
        return [c.header for c in self.columns]


def lookup_header(mapping: FieldMapping, describe: ObjectDescribe) -> str:
    """The Bulk header for a lookup mapping: ``<relationship>.<lookup field>``."""
    if mapping.lookup_field is None:
        return describe_name(mapping.target, describe)
    target = describe.field(mapping.target)
    relationship = target.relationship_name if target is not None else None
    if relationship is None:
        # Custom lookups follow the __c -> __r rule; standard ones drop the trailing Id.
        if mapping.target.endswith("__c"):
            relationship = mapping.target[:-3] + "__r"
        elif mapping.target.endswith("Id"):
            relationship = mapping.target[:-2]
        else:
            relationship = mapping.target
    return f"{relationship}.{mapping.lookup_field}"


def describe_name(name: str, describe: ObjectDescribe) -> str:
    """The field's API name as Salesforce spells it (names are case-insensitive)."""
    found = describe.field(name)
    return found.name if found is not None else name


def mapped_columns(spec: SyncSpec, describe: ObjectDescribe) -> tuple[MappedColumn, ...]:
    """The key column first, then each mapping, as they will appear in the CSV."""
    key_name = describe_name(spec.key.target, describe)
    cols = [
        MappedColumn(
            header=key_name,
            source=spec.key.source,
            field=key_name,
            describe=describe.field(spec.key.target),
            is_key=True,
        )
    ]
    for m in spec.mappings:
        cols.append(
            MappedColumn(
                header=lookup_header(m, describe),
                source=m.source,
                field=describe_name(m.target, describe),
                describe=describe.field(m.target),
                lookup_field=m.lookup_field,
            )
        )
    return tuple(cols)


def map_records(
    spec: SyncSpec,
    source: pl.DataFrame,
    describe: ObjectDescribe,
    *,
    carry: Sequence[str] = (),
) -> MappedFrame:
    """Map ``source`` per ``spec`` and validate it against ``describe``.

    ``carry`` names source columns passed through unchanged to ``records`` (the engine carries
    each row's source fingerprint this way). Raises ``SyncConfigError`` when a mapped source
    column is missing from the model.
    """
    columns = mapped_columns(spec, describe)
    check_source_columns(spec, source.columns)

    schema = source.schema
    work = source.select(
        [pl.int_range(0, pl.len(), dtype=pl.Int64).alias("__row")]
        + [
            _as_text(pl.col(c.source), schema[c.source]).alias(f"__raw{i}")
            for i, c in enumerate(columns)
        ]
        + [pl.col(name) for name in carry]
    )
    canon: list[pl.Expr] = []
    errors: list[pl.Expr] = []
    # Create Only inserts always go through Bulk (plan_create_only), where a cell reading
    # '#N/A' means "no value": set such records aside rather than silently drop the text.
    # (Upserts and updates send them through REST instead, where it is plain text.)
    marker_is_null = spec.behavior in ("create_only", "add")
    for i, c in enumerate(columns):
        raw = pl.col(f"__raw{i}")
        value, error = _canonical(raw, schema[c.source], c)
        if marker_is_null:
            error = pl.coalesce(
                error,
                pl.when(value == BULK_NULL_CELL).then(pl.lit("INVALID_BULK_NULL_MARKER")),
            )
        canon.append(value.alias(f"__val{i}"))
        errors.append(error.alias(f"__err{i}"))
    work = work.with_columns(canon).with_columns(errors)

    key_val = pl.col("__val0")
    match_key = _match_key(key_val, columns[0])
    work = work.with_columns(
        key_val.alias(KEY_COLUMN),
        pl.when(match_key.is_null())
        .then(pl.lit("INVALID_NULL_KEY"))
        .when(match_key.is_duplicated())
        .then(pl.lit("INVALID_DUPLICATE_KEY"))
        .otherwise(pl.col("__err0"))
        .alias("__err0"),
    )

    problems = [
        work.filter(pl.col(f"__err{i}").is_not_null()).select(
            pl.col("__row"),
            pl.lit(i).alias("__prio"),
            pl.col(KEY_COLUMN).alias("key"),
            pl.col(f"__err{i}").alias("reason"),
            pl.lit(c.source).alias("column"),
            pl.lit(c.header).alias("field"),
            pl.col(f"__raw{i}").alias("value"),
        )
        for i, c in enumerate(columns)
    ]
    invalid = (
        pl.concat(problems)
        .sort("__row", "__prio")
        .unique(subset="__row", keep="first", maintain_order=True)
    )
    invalid = _with_messages(invalid, spec).drop("__row", "__prio")

    bad_rows = invalid.height > 0
    valid = work
    if bad_rows:
        any_error = pl.any_horizontal(
            [pl.col(f"__err{i}").is_not_null() for i in range(len(columns))]
        )
        valid = work.filter(~any_error)
    records = valid.select(
        [pl.col(KEY_COLUMN)]
        + [pl.col(f"__val{i}").alias(c.header) for i, c in enumerate(columns)]
        + [pl.col(name) for name in carry]
    )
    return MappedFrame(records=records, invalid=invalid, columns=columns)


def check_source_columns(spec: SyncSpec, available: Sequence[str]) -> None:
    """Raise ``SyncConfigError`` naming the mapped columns the model does not have."""
    wanted = {spec.key.source, *(m.source for m in spec.mappings)}
    missing = sorted(wanted - set(available))
    if missing:
        msg = (
            f"sync {spec.name!r}: the model {spec.source_model!r} has no column(s) "
            f"{', '.join(map(repr, missing))}; fix the mapping or add the column to the model "
            f"(it has: {', '.join(available)}); nothing was sent"
        )
        raise SyncConfigError(msg)


def _match_key(key_val: pl.Expr, key: MappedColumn) -> pl.Expr:
    """What two keys are compared by to find duplicates (lower case where Salesforce treats
    ``ABC`` and ``abc`` as one record); null for a missing key or one of only blanks (which
    cannot be told apart by eye from another: no key either)."""
    match_key = key_val.str.to_lowercase() if _case_insensitive(key.describe) else key_val
    missing = key_val.is_null() | (key_val.str.strip_chars() == "")
    return pl.when(missing).then(None).otherwise(match_key)


def key_match_values(spec: SyncSpec, keys: pl.Series, describe: ObjectDescribe) -> pl.Series:
    """For each raw value of the key column: the text ``map_records`` compares to find
    duplicate keys, or null where it finds no key (INVALID_NULL_KEY). Cheap enough for every
    row of a partition (only the key column is mapped)."""
    key = mapped_columns(spec, describe)[0]
    raw = _as_text(pl.col("k"), keys.dtype)
    value, _ = _canonical(raw, keys.dtype, key)
    return pl.DataFrame({"k": keys}).select(_match_key(value, key).alias("match")).to_series()


def key_match_rule(spec: SyncSpec, describe: ObjectDescribe) -> Literal["exact", "lower"] | None:
    """How ``map_records`` compares the values of a text key column for duplicates when it
    compares their own text: ``"exact"``, or ``"lower"`` (lower-cased, see ``_match_key``);
    None when the key's field turns its text into another canonical form (a number, a date),
    where only ``key_match_values`` says."""
    key = mapped_columns(spec, describe)[0]
    raw = pl.col("k")
    value, _ = _canonical(raw, pl.String(), key)
    if not value.meta.eq(raw):
        return None
    return "lower" if _case_insensitive(key.describe) else "exact"


def split_missing_required(
    spec: SyncSpec,
    records: pl.DataFrame,
    columns: Sequence[MappedColumn],
    creating: pl.Series,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Set aside records that will be created but leave a required-on-create field empty.

    ``records`` are mapped records (``MappedFrame.records``, maybe with more columns) and
    ``creating`` the keys expected to be inserts (no Salesforce Id in state). Returns
    ``records`` without them and their ``INVALID_REQUIRED_MISSING`` rows (``INVALID_SCHEMA``).

    Only null (clear the field) is set aside here. "" (leave it alone) is sent: a key without
    state may already exist in Salesforce (a record entered by hand, or a key differing only
    in case), and then the upsert updates it and leaves the field as it is; for a true create
    Salesforce answers REQUIRED_FIELD_MISSING and the record stays pending with that error.
    """
    required = [c for c in columns if c.describe is not None and c.describe.required_on_create]
    if not required or creating.len() == 0 or records.height == 0:
        return records, pl.DataFrame(schema=INVALID_SCHEMA)
    is_new = pl.col(KEY_COLUMN).is_in(creating.implode())
    checks = [
        work_col
        for c in required
        for work_col in [
            pl.when(is_new & pl.col(c.header).is_null()).then(pl.lit(c.header)).otherwise(None)
        ]
    ]
    flagged = records.with_columns(pl.coalesce(checks).alias("__missing"))
    bad = flagged.filter(pl.col("__missing").is_not_null())
    if bad.height == 0:
        return records, pl.DataFrame(schema=INVALID_SCHEMA)
    header_to_source = {c.header: c.source for c in columns}
    invalid = bad.select(
        pl.col(KEY_COLUMN).alias("key"),
        pl.lit("INVALID_REQUIRED_MISSING").alias("reason"),
        pl.col("__missing").replace_strict(header_to_source).alias("column"),
        pl.col("__missing").alias("field"),
        pl.lit(None, dtype=pl.String).alias("value"),
    )
    return (
        flagged.filter(pl.col("__missing").is_null()).drop("__missing"),
        _with_messages(invalid, spec),
    )


def validate_spec(
    spec: SyncSpec,
    describe: ObjectDescribe,
    *,
    parents: Mapping[str, ObjectDescribe] | None = None,
    partner: ObjectDescribe | None = None,
) -> list[str]:
    """Configuration problems of ``spec`` against the object's describe, as user-facing messages.

    ``parents`` (object name -> describe) lets lookup mappings be checked against the
    referenced object; without it only the lookup field's own side is checked. ``partner`` is
    the second object of a multi-destination sync (Contact or Account; looked up in
    ``parents`` when not given): a mapping must then be writable on either object. An empty
    list means the sync can run.
    """
    where = f"sync {spec.name!r}" + (f" ({spec.source_file})" if spec.source_file else "")
    obj = describe.name
    problems: list[str] = []
    multi = ("lead_or_contact", "lead_or_account")
    creates = spec.behavior in ("update_or_create", "create_only", "add", "mirror", *multi)
    updates = spec.behavior in ("update_or_create", "update_only", "mirror", *multi)
    deletes = spec.behavior in ("mirror", "delete")

    if creates and not describe.createable:
        problems.append(f"{where}: {obj} is not createable for this user; grant Create on {obj}.")
    if updates and not describe.updateable:
        problems.append(f"{where}: {obj} is not updateable for this user; grant Edit on {obj}.")
    if deletes and not describe.deletable:
        problems.append(f"{where}: {obj} is not deletable for this user; grant Delete on {obj}.")
    if spec.behavior == "mirror" and spec.partitions.kind != "none":
        problems.append(
            f"{where}: a mirror sync deletes the records that left the model, so it must read "
            f"the whole model in one run; use partitions: none (not {spec.partitions.kind})."
        )

    key = describe.field(spec.key.target)
    if key is None:
        problems.append(
            f"{where}: key field {spec.key.target!r} does not exist on {obj}; "
            "pick an existing field (refresh the describe if it was just created)."
        )
    elif spec.behavior == "add":
        problems.extend(_tracking_field_problems(where, obj, key))
    elif spec.behavior in (
        "update_or_create",
        "create_only",
        "mirror",
        "lead_or_contact",
        "lead_or_account",
    ):
        if key.name == "Id":
            problems.append(
                f"{where}: the Salesforce Id cannot be the key of a {spec.behavior} sync "
                "(Salesforce assigns it on create); use an External ID field."
            )
        elif not key.external_id:
            problems.append(
                f"{where}: key field {obj}.{key.name} is not an External ID; mark it External ID "
                "(and Unique) in Salesforce's Object Manager, or choose another key."
            )
        elif not key.unique:
            # Refused like every problem: Salesforce would upsert on it, but once two records
            # share a value every upsert of that key fails with DUPLICATE_EXTERNAL_ID.
            problems.append(
                f"{where}: key field {obj}.{key.name} is an External ID but not Unique; "
                "mark it Unique so a key cannot match several records (DUPLICATE_EXTERNAL_ID)."
            )
    elif spec.behavior == "update_only" and key.name != "Id":
        problems.extend(_match_field_problems(where, obj, key))
    elif spec.behavior == "delete" and key.name != "Id" and not (key.external_id and key.unique):
        problems.append(
            f"{where}: key field {obj}.{key.name} must be the Id or a Unique External ID for a "
            "delete sync, so that one key finds exactly one record to delete."
        )
    if spec.behavior == "delete" and spec.mappings:
        problems.append(
            f"{where}: a delete sync writes no fields; remove its mappings (write mappings: [])."
        )
    if key is not None and creates and key.name != "Id" and not key.createable:
        problems.append(f"{where}: key field {obj}.{key.name} is read-only; it must be writable.")

    partner_name = PARTNER_OBJECTS.get(spec.behavior)
    if partner_name is not None:
        partner = partner or (parents or {}).get(partner_name)
        problems.extend(_partner_problems(where, spec, describe, partner, partner_name))
    seen: dict[str, str] = {key.name.lower(): "the key"} if key is not None else {}
    for m in spec.mappings:
        f = describe.field(m.target)
        if partner_name is not None and (f is None or not (f.createable or f.updateable)):
            # Written to the partner object only: checked there (by _partner_problems).
            seen[m.target.lower()] = f"mapping {m.source!r}"
            continue
        if f is None:
            problems.append(
                f"{where}: mapping {m.source!r} -> {m.target!r}: {obj} has no field {m.target!r}; "
                "check the API name (custom fields end in __c)."
            )
            continue
        if f.name.lower() in seen:
            problems.append(
                f"{where}: mapping {m.source!r} -> {obj}.{f.name} writes a field already "
                f"written by {seen[f.name.lower()]}; map each field once."
            )
        seen[f.name.lower()] = f"mapping {m.source!r}"
        if f.calculated or not (f.createable or f.updateable):
            problems.append(
                f"{where}: mapping {m.source!r} -> {obj}.{f.name}: the field is read-only "
                "(formula, system or no edit access); remove the mapping or grant edit access."
            )
        elif spec.behavior in ("create_only", "add") and not f.createable:
            problems.append(
                f"{where}: mapping {m.source!r} -> {obj}.{f.name}: the field cannot be set on "
                "create; remove it from this sync (it only inserts records)."
            )
        elif spec.behavior == "update_only" and not f.updateable:
            problems.append(
                f"{where}: mapping {m.source!r} -> {obj}.{f.name}: the field cannot be updated; "
                "remove it from this Update Only sync."
            )
        if m.lookup_field is not None:
            problems.extend(_lookup_problems(where, obj, m, f, parents))

    if creates:
        mapped_fields = {c.lower() for c in seen}
        for f in describe.fields:
            if f.required_on_create and f.name.lower() not in mapped_fields:
                problems.append(
                    f"{where}: {obj}.{f.name} is required to create a record but is not mapped; "
                    "map a column to it or every create will fail with REQUIRED_FIELD_MISSING."
                )
    return problems


def _lookup_problems(
    where: str,
    obj: str,
    m: FieldMapping,
    f: FieldDescribe,
    parents: Mapping[str, ObjectDescribe] | None,
) -> list[str]:
    if f.type != "reference" or not f.reference_to:
        return [
            f"{where}: mapping {m.source!r} -> {obj}.{f.name} has lookup_field "
            f"{m.lookup_field!r} but {f.name} is not a lookup field; drop lookup_field."
        ]
    if parents is None:
        return []
    out: list[str] = []
    for parent_name in f.reference_to:
        parent = parents.get(parent_name)
        if parent is None:
            continue
        pf = parent.field(m.lookup_field or "")
        if pf is None:
            out.append(
                f"{where}: mapping {m.source!r} -> {obj}.{f.name}: {parent_name} has no field "
                f"{m.lookup_field!r} to look up by; check the API name."
            )
        elif not (pf.external_id or pf.id_lookup):
            out.append(
                f"{where}: mapping {m.source!r} -> {obj}.{f.name}: {parent_name}.{pf.name} is "
                "neither an External ID nor an indexed lookup field; mark it External ID "
                "(and Unique) to look records up by it."
            )
    return out


MATCH_FIELD_TYPES = (
    (TEXT_TYPES - {"encryptedstring", "address", "time", "id", "reference"})
    | INT_TYPES
    | FLOAT_TYPES
)
"""Field types an Update Only sync can match records by, besides the Id: text and numbers."""


def _match_field_problems(where: str, obj: str, key: FieldDescribe) -> list[str]:
    """Why ``key`` cannot identify the records of an Update Only sync (looked up by SOQL)."""
    if key.type not in MATCH_FIELD_TYPES:
        return [
            f"{where}: key field {obj}.{key.name} is a {key.type} field; an Update Only sync "
            "finds its records by the Id or by a text or number field (ideally a Unique "
            "External ID): choose one of those as key.target."
        ]
    if not key.filterable:
        return [
            f"{where}: key field {obj}.{key.name} cannot be used in a SOQL filter (long text "
            "areas cannot), so records cannot be looked up by it; choose another key.target."
        ]
    return []


def key_is_case_insensitive(key: MappedColumn) -> bool:
    """Whether Salesforce finds records by ``key`` ignoring case (see ``_case_insensitive``)."""
    return _case_insensitive(key.describe)


def _partner_problems(
    where: str,
    spec: SyncSpec,
    lead: ObjectDescribe,
    partner: ObjectDescribe | None,
    partner_name: str,
) -> list[str]:
    """A multi-destination sync: the object is Lead, and the key and every mapping fit the
    partner (Contact or Account) as well, each mapping on at least one of the two."""
    out: list[str] = []
    if lead.name.lower() != "lead":
        out.append(
            f"{where}: a {spec.behavior} sync writes Leads and {partner_name}s: set object: "
            f"Lead (not {lead.name})."
        )
    if partner is None:
        return out
    key = partner.field(spec.key.target)
    if key is None or not (key.external_id and key.unique):
        out.append(
            f"{where}: key field {spec.key.target!r} must be a Unique External ID on "
            f"{partner_name} too (the same field as on Lead, kept across lead conversion by "
            "Setup > Lead > Map Lead Fields), so a converted lead's record is found by its key."
        )
    if not partner.updateable:
        out.append(f"{where}: {partner_name} is not updateable for this user; grant Edit.")
    for m in spec.mappings:
        on_lead = lead.field(m.target)
        on_partner = partner.field(m.target)
        writable = [
            f for f in (on_lead, on_partner) if f is not None and (f.createable or f.updateable)
        ]
        if not writable:
            out.append(
                f"{where}: mapping {m.source!r} -> {m.target!r}: neither Lead nor {partner_name} "
                "has a writable field of that name; check the API name."
            )
        elif m.lookup_field is not None and (on_lead is None) != (on_partner is None):
            out.append(
                f"{where}: mapping {m.source!r} -> {m.target!r}: a lookup must exist on both "
                f"Lead and {partner_name}; map it in a separate sync."
            )
    return out


def merged_describe(lead: ObjectDescribe, partner: ObjectDescribe) -> ObjectDescribe:
    """Lead's describe plus the partner's fields Lead does not have (a multi-destination sync
    maps and validates values against this)."""
    extra = tuple(f for f in partner.fields if lead.field(f.name) is None)
    return replace(lead, fields=lead.fields + extra)


def destination_columns(
    columns: Sequence[MappedColumn], target: ObjectDescribe, *, key: bool
) -> tuple[MappedColumn, ...]:
    """The mapped columns a multi-destination batch to ``target`` carries: those whose field
    ``target`` has and can write (the key column too when ``key``)."""
    out: list[MappedColumn] = []
    for c in columns:
        f = target.field(c.field)
        if c.is_key:
            if key:
                out.append(replace(c, describe=f))
        elif f is not None and (f.createable or f.updateable):
            out.append(replace(c, describe=f))
    return tuple(out)


def _tracking_field_problems(where: str, obj: str, key: FieldDescribe) -> list[str]:
    """Why ``key`` cannot be an Add sync's tracking field: a text field that is written on
    insert and can be filtered on (the sync looks its values up so as not to add twice)."""
    if key.type not in MATCH_FIELD_TYPES - INT_TYPES - FLOAT_TYPES - {"picklist"}:
        return [
            f"{where}: key field {obj}.{key.name} is a {key.type} field; an add sync keeps "
            "its key in a text field of the object (e.g. a custom Sync_Tracking_Id__c, "
            "ideally an External ID) so it never adds a record twice."
        ]
    if not key.filterable:
        return [
            f"{where}: key field {obj}.{key.name} cannot be used in a SOQL filter, so the sync "
            "could not check which records exist; use a short text field."
        ]
    return []


def _case_insensitive(field: FieldDescribe | None) -> bool:
    """Whether Salesforce finds a record by this key field ignoring case: an External ID
    that is Unique with "treat ABC and abc as duplicates" on (caseSensitive=false), and any
    other text field used by an Update Only sync (matched by SOQL, which compares text
    ignoring case except on case-sensitive fields)."""
    if field is None or field.type not in TEXT_TYPES or field.type in ("id", "reference"):
        return False
    return not field.case_sensitive


def _float_text(expr: pl.Expr) -> pl.Expr:
    """Shortest round-trip text of a float, without a trailing ``.0`` (``1.0`` -> ``1``)."""
    text = expr.cast(pl.String)
    return (
        pl.when(text.str.ends_with(".0"))
        .then(text.str.slice(0, text.str.len_chars() - 2))
        .otherwise(text)
    )


def _as_text(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """The source value as text, the way a person reading the model would write it."""
    if dtype == pl.String:
        return expr
    if dtype == pl.Boolean:
        return pl.when(expr).then(pl.lit("true")).when(~expr).then(pl.lit("false")).otherwise(None)
    if dtype.is_float():
        return _float_text(expr)
    if dtype.is_integer():
        return expr.cast(pl.String)
    if isinstance(dtype, pl.Decimal):
        text = expr.cast(pl.String)
        # 1.50 -> 1.5 and 2.00 -> 2, as Salesforce would store them.
        trimmed = text.str.replace(r"(\.\d*?)0+$", "$1").str.replace(r"\.$", "")
        return pl.when(text.str.contains(r"\.")).then(trimmed).otherwise(text)
    if dtype == pl.Date:
        return expr.dt.strftime("%Y-%m-%d")
    if isinstance(dtype, pl.Datetime):
        utc = (
            expr.dt.replace_time_zone("UTC")
            if dtype.time_zone is None
            else expr.dt.convert_time_zone("UTC")
        )
        return utc.dt.strftime(_DATETIME_OUT)
    if isinstance(dtype, pl.List | pl.Array):
        return expr.cast(pl.List(pl.String)).list.join(";")
    return expr.cast(pl.String, strict=False)


def _canonical(raw: pl.Expr, dtype: pl.DataType, col: MappedColumn) -> tuple[pl.Expr, pl.Expr]:
    """(canonical text, reason code or null) of one mapped column, from its raw text."""
    f = col.describe
    no_error = pl.lit(None, dtype=pl.String)
    blank = raw.is_null() | (raw == "")
    if f is None or col.lookup_field is not None:
        # Unknown fields are validate_spec's business; lookups carry the parent's key as text.
        return raw, no_error
    sf_type = f.type

    if sf_type == "boolean":
        if dtype == pl.Boolean:
            return raw, no_error
        low = raw.str.strip_chars().str.to_lowercase()
        value = (
            pl.when(raw == "")
            .then(pl.lit(""))
            .when(low.is_in(["true", "1", "yes", "y", "t"]))
            .then(pl.lit("true"))
            .when(low.is_in(["false", "0", "no", "n", "f"]))
            .then(pl.lit("false"))
            .otherwise(None)
        )
        return value, _type_error(blank, value)

    if sf_type in INT_TYPES:
        if dtype.is_integer():
            return raw, no_error
        if dtype.is_float():
            # NaN and infinities have no Salesforce form; neither has a fraction for an int.
            return _float_number(raw, whole=True)
        number = raw.str.strip_chars().cast(pl.Float64, strict=False)
        whole = number.is_finite() & (number == number.floor()) & (number.abs() < 2**63)
        value = (
            pl.when(raw == "")
            .then(pl.lit(""))
            .when(whole)
            .then(number.cast(pl.Int64, strict=False).cast(pl.String))
            .otherwise(None)
        )
        return value, _type_error(blank, value)

    if sf_type in FLOAT_TYPES:
        if dtype.is_integer():
            return raw, no_error
        if dtype.is_float():
            return _float_number(raw, whole=False)
        number = raw.str.strip_chars().cast(pl.Float64, strict=False)
        value = (
            pl.when(raw == "")
            .then(pl.lit(""))
            .when(number.is_finite())
            .then(_float_text(number))
            .otherwise(None)
        )
        return value, _type_error(blank, value)

    if sf_type == "date":
        if dtype == pl.Date:
            return raw, no_error
        parsed = pl.coalesce(
            [
                raw.str.strip_chars().str.to_date("%Y-%m-%d", strict=False),
                _parse_datetime(raw.str.strip_chars()).dt.date(),
            ]
        )
        value = pl.when(raw == "").then(pl.lit("")).otherwise(parsed.dt.strftime("%Y-%m-%d"))
        return value, _type_error(blank, value)

    if sf_type == "datetime":
        if isinstance(dtype, pl.Datetime):
            return raw, no_error
        parsed = _parse_datetime(raw.str.strip_chars())
        value = pl.when(raw == "").then(pl.lit("")).otherwise(parsed.dt.strftime(_DATETIME_OUT))
        return value, _type_error(blank, value)

    if sf_type == "multipicklist":
        value = raw
        error = no_error
        if f.restricted_picklist:
            bad = (
                raw.str.split(";")
                .list.eval(pl.element().is_in(list(f.picklist_values)).not_())
                .list.any()
            )
            error = pl.when(~blank & bad).then(pl.lit("INVALID_PICKLIST_VALUE")).otherwise(None)
        return value, _combine(error, _length_error(raw, f))

    # Every other type (TEXT_TYPES and anything unknown) travels as text.
    error = _length_error(raw, f)
    if sf_type == "picklist" and f.restricted_picklist:
        error = _combine(
            pl.when(~blank & ~raw.is_in(list(f.picklist_values)))
            .then(pl.lit("INVALID_PICKLIST_VALUE"))
            .otherwise(None),
            error,
        )
    elif sf_type == "email":
        error = _combine(
            pl.when(~blank & ~raw.str.contains(_EMAIL_RE))
            .then(pl.lit("INVALID_EMAIL"))
            .otherwise(None),
            error,
        )
    elif sf_type in ("reference", "id"):
        error = _combine(
            pl.when(~blank & ~raw.str.contains(_ID_RE)).then(pl.lit("INVALID_ID")).otherwise(None),
            error,
        )
    return raw, error


def _float_number(raw: pl.Expr, *, whole: bool) -> tuple[pl.Expr, pl.Expr]:
    """(text, error) of a float column's text (``_float_text``): NaN and ±inf are INVALID_TYPE,
    as the same words in a text column are; with ``whole``, so is a fraction."""
    number = raw.cast(pl.Float64, strict=False)
    good = number.is_finite()
    if whole:
        good = good & (number == number.floor()) & (number.abs() < 2**63)
    value = pl.when(raw.is_null() | good).then(raw).otherwise(None)
    return value, _type_error(raw.is_null(), value)


def _parse_datetime(text: pl.Expr) -> pl.Expr:
    attempts = []
    for fmt, aware in _DATETIME_FORMATS:
        parsed = text.str.to_datetime(
            fmt, strict=False, time_unit="us", time_zone="UTC" if aware else None
        )
        attempts.append(parsed if aware else parsed.dt.replace_time_zone("UTC"))
    return pl.coalesce(attempts)


def _type_error(blank: pl.Expr, value: pl.Expr) -> pl.Expr:
    return pl.when(~blank & value.is_null()).then(pl.lit("INVALID_TYPE")).otherwise(None)


def _length_error(raw: pl.Expr, f: FieldDescribe) -> pl.Expr:
    if f.length <= 0:
        return pl.lit(None, dtype=pl.String)
    return (
        pl.when(raw.str.len_chars() > f.length)
        .then(pl.lit("INVALID_STRING_TOO_LONG"))
        .otherwise(None)
    )


def _combine(first: pl.Expr, second: pl.Expr) -> pl.Expr:
    return pl.coalesce([first, second])


def _with_messages(invalid: pl.DataFrame, spec: SyncSpec) -> pl.DataFrame:
    """Add the user-facing message: sync, row, column, object.field, what is wrong, the value.

    The row (1-based, in the partition's rows as read) is given when ``invalid`` has ``__row``.
    """
    where = (
        pl.concat_str([pl.lit(" row "), (pl.col("__row") + 1).cast(pl.String), pl.lit(",")])
        if "__row" in invalid.columns
        else pl.lit("")
    )
    shown = (
        pl.when(pl.col("value").is_null())
        .then(pl.lit("null"))
        .when(pl.col("value").str.len_chars() > 80)
        .then(pl.concat_str([pl.lit("'"), pl.col("value").str.slice(0, 80), pl.lit("…'")]))
        .otherwise(pl.concat_str([pl.lit("'"), pl.col("value"), pl.lit("'")]))
    )
    message = pl.concat_str(
        [
            pl.lit(f"sync {spec.name!r}:"),
            where,
            pl.lit(" column '"),
            pl.col("column"),
            pl.lit(f"' -> {spec.sobject}."),
            pl.col("field"),
            pl.lit(": "),
            pl.col("reason").replace_strict(REASON_TEXT, default=pl.col("reason")),
            pl.lit(" (value "),
            shown,
            pl.lit("); fix it in the model"),
        ]
    )
    return invalid.with_columns(message.alias("message"))
