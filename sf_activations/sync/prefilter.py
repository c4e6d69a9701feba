"""Read a partition for the diff: in full when state knows nothing, else only what may differ.

See ``source.py`` for the source fingerprint. A row is *skipped* (counted unchanged without
being mapped) when its source fingerprint equals the one state stored for a synced record and
its key is present and unique (key problems are ``map_records``' to report, so such rows are
always read). Every other row is read in full and goes through map, validate and diff as usual.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import polars as pl

from sf_activations.sync import fingerprint, mapping
from sf_activations.sync.mapping import (
    check_source_columns,
    key_match_rule,
    key_match_values,
    mapped_columns,
)
from sf_activations.sync.model import ObjectDescribe
from sf_activations.sync.source import (
    KEY_HASH_COLUMN,
    KNOWN_ROW_COLUMN,
    SOURCE_ROW_COLUMN,
    PartitionSource,
    SourceSession,
    seed_digest,
)
from sf_activations.sync.spec import SyncSpec

SKIPPED_COLUMNS = ("key", "salesforce_id")
"""The state columns ``PartitionRead.skipped`` keeps."""

FULL_READ_SHARE = 0.5
"""Above this share of rows to read, one full read is cheaper than a narrow pass + a keyed read."""


@dataclass(frozen=True, slots=True)
class PartitionRead:
    """What ``read_partition`` found.

    ``rows`` are the source rows to map (the used columns and ``__source_fp``); ``skipped``
    the state rows (``SKIPPED_COLUMNS`` only) of records whose source row did not change;
    ``state`` the other state rows (what ``compute_changes`` diffs ``rows`` against: gone
    records are among them).
    """

    rows: pl.DataFrame
    records_read: int
    skipped: pl.DataFrame
    state: pl.DataFrame


def used_columns(spec: SyncSpec) -> list[str]:
    """The model columns a sync reads: the key first, then each mapping's, once each."""
    return list(dict.fromkeys([spec.key.source, *(m.source for m in spec.mappings)]))


@functools.cache
def _engine_code() -> str:
    """The release, and a digest of the code that turns a row into what is sent (mapping and
    fingerprints): a development build changes the seed too, not only a new version."""
    try:
        release = metadata.version("sf-activations")
    except metadata.PackageNotFoundError:  # run from a source tree
        release = "unknown"
    digest = hashlib.sha256()
    for module in (mapping, fingerprint):
        try:
            digest.update(Path(str(module.__file__)).read_bytes())
        except OSError:  # no source on disk (a zipped install): the release stands for it
            digest.update(module.__name__.encode())
    return f"{release} {digest.hexdigest()[:16]}"


def source_seed(spec: SyncSpec, describe: ObjectDescribe, source: PartitionSource) -> str:
    """Everything besides the row's values that decides what ``map_records`` makes of it."""
    types = source.columns()
    return seed_digest(
        "sf-activations source fingerprint v1",
        _engine_code(),
        source.scheme,
        [(c, types.get(c)) for c in used_columns(spec)],
        spec.behavior,
        spec.key,
        spec.mappings,
        [(c.header, c.describe) for c in mapped_columns(spec, describe)],
    )


def read_partition(
    spec: SyncSpec, describe: ObjectDescribe, source: PartitionSource, state: pl.DataFrame
) -> PartitionRead:
    """Read the rows of ``source`` that may differ from ``state`` (``StateStore.load`` with
    ``source_fingerprint``), or all of them when that is cheaper."""
    # By state row: the source fingerprint of each synced record (null for the others).
    known = state.select(pl.when(_SYNCED).then(pl.col("source_fingerprint"))).to_series()
    with source.session() as session:
        # Inside the session: the columns come from its connection.
        check_source_columns(spec, list(source.columns()))
        seed = source_seed(spec, describe, source)
        if known.null_count() == known.len():
            rows = session.read(used_columns(spec), seed)
            return PartitionRead(rows, rows.height, state.select(SKIPPED_COLUMNS).clear(), state)
        return _narrowed(spec, describe, session, state=state, seed=seed, known=known)


_SYNCED = (pl.col("status") == "synced") & pl.col("source_fingerprint").is_not_null()
"""State rows whose source fingerprint stands for what Salesforce holds."""


def _narrowed(
    spec: SyncSpec,
    describe: ObjectDescribe,
    session: SourceSession,
    *,
    state: pl.DataFrame,
    seed: str,
    known: pl.Series,
) -> PartitionRead:
    key = spec.key.source
    columns = used_columns(spec)

    narrow = session.fingerprints(
        key, columns, seed, known=known, key_rule=key_match_rule(spec, describe)
    )
    if KEY_HASH_COLUMN in narrow.columns:
        # The warehouse hashed each key's match text: null (maybe blank) or repeated is suspect.
        hashes = narrow.get_column(KEY_HASH_COLUMN)
        suspect = hashes.is_null() | _repeated(hashes)
    else:
        match = key_match_values(spec, narrow.get_column(key), describe)
        suspect = match.is_null() | _repeated(match.hash(seed=0))
    hit = narrow.get_column(KNOWN_ROW_COLUMN).is_not_null() & ~suspect
    misses = narrow.filter(~hit)
    if misses.height > FULL_READ_SHARE * narrow.height:
        rows = session.read(columns, seed)
        return PartitionRead(rows, rows.height, state.select(SKIPPED_COLUMNS).clear(), state)

    rows = session.read(columns, seed, rows=misses.get_column(SOURCE_ROW_COLUMN))
    skip = pl.zeros(state.height, dtype=pl.Boolean, eager=True).scatter(
        narrow.filter(hit).get_column(KNOWN_ROW_COLUMN), values=True
    )
    return PartitionRead(
        rows=rows,
        records_read=narrow.height,
        # Only what the run counts and reports of them (their other columns stay unread).
        skipped=state.select(SKIPPED_COLUMNS).filter(skip),
        state=state.filter(~skip),
    )


def _repeated(hashes: pl.Series) -> pl.Series:
    """True for every hash that occurs more than once (nulls: False). Two different keys with
    one 64-bit hash are merely both read in full, where ``map_records`` decides. Sorting a
    million hashes is several times faster than ``is_duplicated`` on the text."""
    ordered = hashes.drop_nulls().sort()
    repeated = ordered.filter(ordered == ordered.shift(1))
    if repeated.len() == 0:
        return pl.repeat(value=False, n=hashes.len(), dtype=pl.Boolean, eager=True)
    return hashes.is_in(repeated.implode()).fill_null(value=False)
