"""Find Salesforce records by a key field with SOQL, for the behaviors that need it.

- **Update Only** keyed on a field other than the Id (an Email, an account number, any text or
  number field): that field is not an External ID, so Salesforce cannot upsert on it. Each
  key's Id is looked up with a SOQL filter on the field and the record is then updated by Id.
  A key is looked up when it is new or retried; a key updated before keeps the Id it was
  matched to, so a re-sync of changed records costs no lookup at all. A retried key is looked
  up afresh (its record may have been deleted or merged since). A key that matches no record,
  or several, is not sent: it stays pending with ``NO_MATCHING_RECORD`` or ``AMBIGUOUS_MATCH``
  and is looked up again on every run, so it syncs once the record exists or the duplicates
  are merged. (Picking one of several duplicates would update an arbitrary record and leave
  the others stale without a word.)
- **Delete** by an External ID (``resolve_deletes``): the Id of the record to delete.
- **Add** (``resolve_adds``): the tracking values already in Salesforce, not added again.
- **Lead or Contact / Account** (``resolve_partners``): which keys a Contact (Account) has.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import polars as pl

from sf_activations.sync.diff import (
    CHANGE_COLUMN,
    PARTNER_ID_COLUMN,
    SALESFORCE_ID_COLUMN,
    ChangeSet,
)
from sf_activations.sync.execute import OUTCOME_SCHEMA
from sf_activations.sync.fingerprint import FINGERPRINT_COLUMN
from sf_activations.sync.mapping import (
    FLOAT_TYPES,
    INT_TYPES,
    KEY_COLUMN,
    MappedColumn,
    key_is_case_insensitive,
)
from sf_activations.sync.model import SalesforcePort
from sf_activations.sync.spec import PARTNER_OBJECTS, SyncSpec

NO_MATCH = "NO_MATCHING_RECORD"
AMBIGUOUS = "AMBIGUOUS_MATCH"

_SHOWN_IDS = 3


def needs_lookup(spec: SyncSpec, key: MappedColumn) -> bool:
    """True for an Update Only or Delete sync whose key is a field other than the Id, for an
    Add sync (whose records must not be added twice) and for a multi-destination sync."""
    if spec.behavior == "add" or spec.behavior in PARTNER_OBJECTS:
        return True
    return spec.behavior in ("update_only", "delete") and key.field.lower() != "id"


@dataclass(frozen=True, slots=True)
class Resolved:
    """The ChangeSet with the looked-up Ids filled in, and the keys that found none or several."""

    changes: ChangeSet
    unmatched: pl.DataFrame  # OUTCOME_SCHEMA: one failed outcome per key not sent
    looked_up: int  # distinct key values asked for
    settled: pl.DataFrame | None = None  # successful outcomes of keys with nothing to send
    settled_why: str = ""  # what the settled keys are, for the summary

    @property
    def summary(self) -> str:
        """One line for the run's progress."""
        codes = self.unmatched.get_column("error_code")
        done = 0 if self.settled is None else self.settled.height
        line = (
            f"looked up {self.looked_up} key(s): {self.looked_up - codes.len() - done} to send, "
            f"{int((codes == NO_MATCH).sum())} with no record, "
            f"{int((codes == AMBIGUOUS).sum())} ambiguous"
        )
        return line + (f", {done} {self.settled_why}" if done else "")


def resolve_ids(
    spec: SyncSpec, changes: ChangeSet, key: MappedColumn, port: SalesforcePort
) -> Resolved:
    """Fill ``__salesforce_id`` of the records to send by looking their keys up by field.

    Records sent because they changed keep the Id they were matched to before; new and
    retried records are looked up. Records that match no record or several are taken out
    of the ChangeSet and returned as failed outcomes.
    """
    send = changes.to_send()
    keep = (pl.col(CHANGE_COLUMN) == "changed") & pl.col(SALESFORCE_ID_COLUMN).is_not_null()
    wanted = send.filter(~keep).select(KEY_COLUMN, FINGERPRINT_COLUMN)
    if wanted.height == 0:
        return Resolved(changes, pl.DataFrame(schema=OUTCOME_SCHEMA), 0)
    picked = match_keys(spec, key, port, wanted)
    count = pl.col("__ids").list.len().fill_null(0)
    picked = picked.with_columns(
        pl.when(count == 1).then(pl.col("__ids").list.first()).alias("__resolved"),
        count.alias("__count"),
    )
    # A record claimed by two keys (one kept from before, one just looked up, or two looked
    # up) cannot take both keys' values: neither looked-up key is sent.
    kept_ids = send.filter(keep).get_column(SALESFORCE_ID_COLUMN)
    claims = pl.concat([kept_ids, picked.get_column("__resolved").drop_nulls()])
    claimed_twice = claims.filter(claims.is_duplicated()).unique()
    twice = pl.col("__resolved").is_in(claimed_twice.implode()).fill_null(value=False)
    picked = picked.with_columns(
        pl.when(twice).then(None).otherwise(pl.col("__resolved")).alias("__resolved"),
        twice.alias("__shared"),
    )
    unmatched = _unmatched(spec, key, picked.filter(pl.col("__resolved").is_null()))
    ids = picked.filter(pl.col("__resolved").is_not_null()).select(KEY_COLUMN, "__resolved")
    dropped = unmatched.get_column("key").implode()

    def fill(frame: pl.DataFrame) -> pl.DataFrame:
        return (
            frame.filter(~pl.col(KEY_COLUMN).is_in(dropped))
            .join(ids, on=KEY_COLUMN, how="left")
            .with_columns(
                pl.coalesce("__resolved", SALESFORCE_ID_COLUMN).alias(SALESFORCE_ID_COLUMN)
            )
            .drop("__resolved")
        )

    resolved = replace(
        changes, new=fill(changes.new), changed=fill(changes.changed), retry=fill(changes.retry)
    )
    return Resolved(resolved, unmatched, picked.height)


def resolve_deletes(
    spec: SyncSpec, changes: ChangeSet, key: MappedColumn, port: SalesforcePort
) -> Resolved:
    """Delete: the Id of the record each key to send finds (every one is looked up: the Id a
    key had before may be gone). A key with no record has nothing to delete: it comes back in
    ``absent`` as a success, not sent. A key finding several records (only possible if the
    field lost its Unique flag) is not sent and stays pending with ``AMBIGUOUS_MATCH``."""
    wanted = changes.to_send().select(KEY_COLUMN, FINGERPRINT_COLUMN)
    if wanted.height == 0:
        return Resolved(changes, pl.DataFrame(schema=OUTCOME_SCHEMA), 0)
    picked = match_keys(spec, key, port, wanted).with_columns(
        pl.col("__ids").list.len().fill_null(0).alias("__count"),
        pl.lit(value=False).alias("__shared"),
    )
    one = picked.filter(pl.col("__count") == 1).select(
        KEY_COLUMN, pl.col("__ids").list.first().alias("__resolved")
    )
    unmatched = _unmatched(spec, key, picked.filter(pl.col("__count") > 1))
    absent = picked.filter(pl.col("__count") == 0)
    keep = one.get_column(KEY_COLUMN).implode()

    def fill(frame: pl.DataFrame) -> pl.DataFrame:
        return (
            frame.filter(pl.col(KEY_COLUMN).is_in(keep))
            .drop(SALESFORCE_ID_COLUMN)
            .join(one, on=KEY_COLUMN, how="left")
            .rename({"__resolved": SALESFORCE_ID_COLUMN})
        )

    resolved = replace(
        changes,
        new=fill(changes.new),
        changed=fill(changes.changed),
        retry=fill(changes.retry),
        unchanged=_with_unchanged(changes.unchanged, absent, None),
    )
    settled = _successes(absent, None)
    return Resolved(resolved, unmatched, picked.height, settled, "with no record to delete")


def resolve_adds(
    spec: SyncSpec, changes: ChangeSet, key: MappedColumn, port: SalesforcePort
) -> Resolved:
    """Add: look the tracking values of the records about to be inserted up in Salesforce. A
    key whose record is there already (state was lost, or another process added it) is not
    inserted again: it is recorded as done with that record's Id and counted unchanged."""
    about = pl.concat([changes.new, changes.retry]).filter(pl.col(SALESFORCE_ID_COLUMN).is_null())
    if about.height == 0:
        return Resolved(changes, pl.DataFrame(schema=OUTCOME_SCHEMA), 0)
    picked = match_keys(spec, key, port, about.select(KEY_COLUMN, FINGERPRINT_COLUMN))
    there = picked.filter(pl.col("__ids").is_not_null())
    first = pl.col("__ids").list.first()
    found = there.get_column(KEY_COLUMN).implode()
    resolved = replace(
        changes,
        new=changes.new.filter(~pl.col(KEY_COLUMN).is_in(found)),
        retry=changes.retry.filter(~pl.col(KEY_COLUMN).is_in(found)),
        unchanged=_with_unchanged(changes.unchanged, there, first),
    )
    settled = _successes(there, first)
    empty = pl.DataFrame(schema=OUTCOME_SCHEMA)
    return Resolved(resolved, empty, picked.height, settled, "in Salesforce already")


def resolve_partners(
    spec: SyncSpec, changes: ChangeSet, key: MappedColumn, port: SalesforcePort
) -> Resolved:
    """Multi-destination: which records to send have a Contact (or Account) with their key.
    Every key to send is looked up, since a lead converted since the last run now has one.
    Those found once get ``__partner_id``; a key finding several is not sent
    (``AMBIGUOUS_MATCH``); the others go to Lead."""
    partner = PARTNER_OBJECTS[spec.behavior]
    wanted = changes.to_send().select(KEY_COLUMN, FINGERPRINT_COLUMN)
    if wanted.height == 0:
        return Resolved(changes, pl.DataFrame(schema=OUTCOME_SCHEMA), 0)
    picked = match_keys(spec, key, port, wanted, sobject=partner).with_columns(
        pl.col("__ids").list.len().fill_null(0).alias("__count"),
        pl.lit(value=False).alias("__shared"),
    )
    several = picked.filter(pl.col("__count") > 1)
    unmatched = _unmatched(replace(spec, sobject=partner), key, several)
    ids = picked.filter(pl.col("__count") == 1).select(
        KEY_COLUMN, pl.col("__ids").list.first().alias(PARTNER_ID_COLUMN)
    )
    dropped = several.get_column(KEY_COLUMN).implode()

    def fill(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.filter(~pl.col(KEY_COLUMN).is_in(dropped)).join(ids, on=KEY_COLUMN, how="left")

    resolved = replace(
        changes, new=fill(changes.new), changed=fill(changes.changed), retry=fill(changes.retry)
    )
    return Resolved(resolved, unmatched, picked.height)


def _with_unchanged(
    unchanged: pl.DataFrame, rows: pl.DataFrame, salesforce_id: pl.Expr | None
) -> pl.DataFrame:
    sf_id = pl.lit(None, dtype=pl.String) if salesforce_id is None else salesforce_id
    more = rows.select(KEY_COLUMN, sf_id.alias(SALESFORCE_ID_COLUMN))
    return pl.concat([unchanged, more.cast(pl.Schema(unchanged.schema))])


def _successes(rows: pl.DataFrame, salesforce_id: pl.Expr | None) -> pl.DataFrame:
    sf_id = pl.lit(None, dtype=pl.String) if salesforce_id is None else salesforce_id
    return rows.select(
        pl.col(KEY_COLUMN).alias("key"),
        pl.col(FINGERPRINT_COLUMN).alias("fingerprint"),
        pl.lit(value=True).alias("success"),
        sf_id.alias("salesforce_id"),
        pl.lit(value=False).alias("created"),
        pl.lit(None, dtype=pl.String).alias("error_code"),
        pl.lit(None, dtype=pl.String).alias("error_message"),
    ).cast(pl.Schema(OUTCOME_SCHEMA))


def match_keys(
    spec: SyncSpec,
    key: MappedColumn,
    port: SalesforcePort,
    frame: pl.DataFrame,
    *,
    sobject: str | None = None,
) -> pl.DataFrame:
    """``frame`` (with unique ``__key``s) plus ``__ids``: the sorted Ids of the records of
    ``sobject`` (default: the sync's object) whose key field matches each key as SOQL
    compares (null where none does)."""
    numeric = key.describe is not None and key.describe.type in (INT_TYPES | FLOAT_TYPES)
    values: list[str] = frame.get_column(KEY_COLUMN).to_list()
    found = port.lookup_ids(sobject or spec.sobject, key.field, values, numeric=numeric)
    normalise = _normaliser(key, numeric=numeric)
    matches = (
        _found_frame(found, numeric=numeric)
        .with_columns(normalise(pl.col("__value")).alias("__match"))
        .group_by("__match")
        .agg(pl.col("__id").unique().sort().alias("__ids"))
    )
    return (
        frame.with_columns(normalise(pl.col(KEY_COLUMN)).alias("__match"))
        .join(matches, on="__match", how="left")
        .drop("__match")
    )


def _found_frame(found: Sequence[tuple[str, Any]], *, numeric: bool) -> pl.DataFrame:
    ids = pl.Series("__id", [row[0] for row in found], dtype=pl.String)
    # As text first: a REST query answers numbers as JSON numbers, a Bulk query as CSV text.
    text = pl.Series("__value", [None if r[1] is None else str(r[1]) for r in found], pl.String)
    return pl.DataFrame([ids, text.cast(pl.Float64, strict=False) if numeric else text])


def _normaliser(key: MappedColumn, *, numeric: bool) -> Any:
    """How a key and a field value are compared: as Salesforce's SOQL filter compares them."""
    if numeric:
        return lambda e: e.cast(pl.Float64, strict=False)
    if key_is_case_insensitive(key):
        return lambda e: e.cast(pl.String).str.to_lowercase()
    return lambda e: e.cast(pl.String)


def _unmatched(spec: SyncSpec, key: MappedColumn, rows: pl.DataFrame) -> pl.DataFrame:
    obj, field, value = pl.lit(spec.sobject), pl.lit(key.field), pl.col(KEY_COLUMN)
    later = "; the key is looked up again on every run"
    no_match = pl.format(
        "no {} record has {} = '{}'. Update Only never creates records: create the record in "
        "Salesforce or correct the value" + later,
        obj,
        field,
        value,
    )
    shown = pl.col("__ids").list.head(_SHOWN_IDS).list.join(", ")
    more = pl.when(pl.col("__count") > _SHOWN_IDS).then(pl.lit(", ...")).otherwise(pl.lit(""))
    several = pl.format(
        "{} {} records have {} = '{}' ({}{}). Update Only updates exactly one record per key: "
        "merge the duplicates in Salesforce, or key the sync on a Unique External ID" + later,
        pl.col("__count"),
        obj,
        field,
        value,
        shown,
        more,
    )
    shared = pl.format(
        "the {} record {} that {} = '{}' finds is found by another key of this sync too, and "
        "one record cannot take two keys' values: fix the duplicate rows in the model" + later,
        obj,
        pl.col("__ids").list.first(),
        field,
        value,
    )
    ambiguous = pl.col("__shared") | (pl.col("__count") > 1)
    message = (
        pl.when(pl.col("__shared"))
        .then(shared)
        .when(pl.col("__count") > 1)
        .then(several)
        .otherwise(no_match)
    )
    return rows.select(
        pl.col(KEY_COLUMN).alias("key"),
        pl.col(FINGERPRINT_COLUMN).alias("fingerprint"),
        pl.lit(value=False).alias("success"),
        pl.lit(None, dtype=pl.String).alias("salesforce_id"),
        pl.lit(value=False).alias("created"),
        pl.when(ambiguous).then(pl.lit(AMBIGUOUS)).otherwise(pl.lit(NO_MATCH)).alias("error_code"),
        message.alias("error_message"),
    ).cast(pl.Schema(OUTCOME_SCHEMA))
