"""Compare the mapped records with the partition's state: what is new, changed, unchanged, gone.

All frames are joins on the canonical key; nothing here loops over rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from sf_activations.sync.fingerprint import FINGERPRINT_COLUMN
from sf_activations.sync.mapping import KEY_COLUMN
from sf_activations.sync.state import SNAPSHOT_COLUMNS

SALESFORCE_ID_COLUMN = "__salesforce_id"
"""The record's Salesforce Id from state (null when it was never confirmed)."""

PARTNER_ID_COLUMN = "__partner_id"
"""Multi-destination: the Id of the partner record (Contact, Account) a key found, else null."""

CHANGE_COLUMN = "__change"
"""Why a record is sent: ``new``, ``changed`` or ``retry``."""

DIFF_STATE_COLUMNS = SNAPSHOT_COLUMNS
"""The state columns a run loads (what ``compute_changes`` and ``read_partition`` read): the
snapshot holds exactly these, so a run never reads its partition back from SQLite."""


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """The partition's records sorted by what must happen to them.

    ``new``, ``changed`` and ``retry`` are mapped record frames (``__key``, the Salesforce
    columns, ``__fingerprint``, ``__salesforce_id``). ``unchanged`` and ``held`` hold keys and
    Salesforce Ids. ``gone`` holds the state rows of keys no longer in the model: reported now;
    Mirror and Delete act on it.
    """

    new: pl.DataFrame
    changed: pl.DataFrame
    retry: pl.DataFrame  # earlier rejects (pending in state) to try again
    unchanged: pl.DataFrame
    held: pl.DataFrame  # pending records past max_attempts whose data did not change
    gone: pl.DataFrame

    def to_send(self) -> pl.DataFrame:
        """new, changed and retry records in one frame, with a ``__change`` column."""
        return pl.concat(
            [
                self.new.with_columns(pl.lit("new").alias(CHANGE_COLUMN)),
                self.changed.with_columns(pl.lit("changed").alias(CHANGE_COLUMN)),
                self.retry.with_columns(pl.lit("retry").alias(CHANGE_COLUMN)),
            ],
            how="vertical",
        )

    @property
    def send_count(self) -> int:
        """How many records the plan has to send."""
        return self.new.height + self.changed.height + self.retry.height

    @property
    def tracked_count(self) -> int:
        """How many records of the partition state tracks (all but the new ones)."""
        return (
            self.changed.height
            + self.retry.height
            + self.unchanged.height
            + self.held.height
            + self.gone.height
        )

    def creating_keys(self) -> pl.Series:
        """Keys of records to send that have no confirmed Salesforce Id: likely creates."""
        return (
            self.to_send()
            .filter(pl.col(SALESFORCE_ID_COLUMN).is_null())
            .get_column(KEY_COLUMN)
            .alias("key")
        )


def compute_changes(
    records: pl.DataFrame,
    state: pl.DataFrame,
    *,
    max_attempts: int = 0,
    invalid_keys: pl.Series | None = None,
) -> ChangeSet:
    """Diff ``records`` (mapped, with ``__fingerprint``) against ``state`` (``StateStore.load``).

    A pending record is retried on every run while ``max_attempts`` is 0, otherwise until it
    has failed that many times; a pending record whose data changed is always retried (the
    change may be the fix). Keys in ``invalid_keys`` are set aside this run but are not gone.
    """
    st = state.select(
        pl.col("key").alias(KEY_COLUMN),
        pl.col("fingerprint").alias("__state_fp"),
        pl.col("salesforce_id").alias(SALESFORCE_ID_COLUMN),
        pl.col("status").alias("__status"),
        pl.col("attempts").alias("__attempts"),
    )
    joined = records.join(st, on=KEY_COLUMN, how="left")
    in_state = pl.col("__status").is_not_null()
    pending = pl.col("__status") == "pending"
    same = pl.col(FINGERPRINT_COLUMN).eq_missing(pl.col("__state_fp"))
    exhausted = (pl.col("__attempts") >= max_attempts) if max_attempts > 0 else pl.lit(value=False)
    kind = (
        pl.when(~in_state)
        .then(pl.lit("new"))
        .when(pending & same & exhausted)
        .then(pl.lit("held"))
        .when(pending)
        .then(pl.lit("retry"))
        .when(same)
        .then(pl.lit("unchanged"))
        .otherwise(pl.lit("changed"))
    )
    joined = joined.with_columns(kind.alias("__kind"))
    record_cols = [*records.columns, SALESFORCE_ID_COLUMN]
    # One pass splits the rows by kind (five filters would scan the joined frame five times).
    parts = joined.partition_by("__kind", as_dict=True, include_key=False)
    empty = joined.clear().select(record_cols)

    def part(name: str) -> pl.DataFrame:
        found = parts.get((name,))
        return empty if found is None else found.select(record_cols)

    present = records.select(pl.col(KEY_COLUMN).alias("key"))
    if invalid_keys is not None and invalid_keys.len() > 0:
        present = pl.concat([present, invalid_keys.cast(pl.String).alias("key").to_frame()])
    gone = state.join(present, on="key", how="anti")
    return ChangeSet(
        new=part("new"),
        changed=part("changed"),
        retry=part("retry"),
        unchanged=part("unchanged").select(KEY_COLUMN, SALESFORCE_ID_COLUMN),
        held=part("held").select(KEY_COLUMN, SALESFORCE_ID_COLUMN),
        gone=gone,
    )
