"""One emulated Salesforce org: records, DML semantics, validation and vectorised Bulk ingest.

Storage: per object a ``_Table`` of ``_Column``s, one per field that was ever written (a missing
column means "all null"). A column is a polars series plus the edits not yet folded into it
(a position -> value patch and a tail of appended rows from single-record writes, and the
scatters of Bulk jobs), so a Bulk job appends or scatters whole series without a Python object
per cell, while REST writes stay O(1). The id index (18-character id -> position) and the key
indexes for external-id / unique / idLookup fields are dicts for single-record lookups, built on
first use, kept up by jobs that are small next to their table and dropped by larger ones. Bulk
jobs match their keys column-wise: a job small next to its table against a hash-sorted index
kept per (field, live records only) (``_SortedKeys``), so its cost follows the job and not the
org; a larger one by hashing the whole column. 1M records x 20 fields take a few hundred MB.

Every DML surface (REST dicts and Bulk frames) goes through the same pipeline, ``_process``,
so a rule is implemented once and both surfaces answer alike; only the wording of type errors
differs per surface, as it does in Salesforce.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import polars as pl

from sf_activations.emulator.errors import MoreThanOneRecord, SalesforceError
from sf_activations.emulator.ids import BASE62, checksum, is_well_formed, make_id
from sf_activations.emulator.schema import (
    LEAD_STATUSES,
    FieldDef,
    ObjectDef,
    Schema,
    default_schema,
)

FieldAccess = Literal["edit", "read", "none"]
Surface = Literal["bulk", "rest"]

API_VERSION = "59.0"
_NULL = "\x00#N/A"  # internal cell meaning "set to null" (Bulk "#N/A", REST JSON null)
_SEP = "\x1f"  # separates code, fields and message inside an encoded error
_TEXT = frozenset({"string", "textarea", "email", "phone", "url", "picklist", "multipicklist"})
_FLOAT = frozenset({"double", "currency", "percent"})
_XSD = {
    "boolean": "boolean",
    "double": "double",
    "currency": "double",
    "percent": "double",
    "int": "int",
    "date": "date",
    "datetime": "dateTime",
    "reference": "string",
    "id": "string",
}
_AUDIT_CREATE = (
    "CreatedDate",
    "CreatedById",
    "LastModifiedDate",
    "LastModifiedById",
    "SystemModstamp",
)
_AUDIT_UPDATE = ("LastModifiedDate", "LastModifiedById", "SystemModstamp")
_EMAIL_RE = r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$"
_DATE_RE = r"^\d{4}-\d{2}-\d{2}$"
_DATETIME_RE = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})$"
_ID_RE = r"^[0-9A-Za-z]{15}([0-9A-Za-z]{3})?$"
_CHECKSUM_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_READONLY_TAIL = (
    ". Please check the security settings of this field and verify that it is read/write for "
    "your profile or permission set."
)
DUPLICATES_DETECTED_MESSAGE = "Use one of these records?"
_DERIVING_OBJECTS = frozenset(
    {
        "Contact",
        "Lead",
        "User",
        "Opportunity",
        "Case",
        "OpportunityContactRole",
        "EmailMessageRelation",
    }
)


def _enc(code: str, message: str, fields: Sequence[str] = ()) -> str:
    return f"{code}{_SEP}{','.join(fields)}{_SEP}{message}"


def _dec(encoded: str) -> SalesforceError:
    code, flds, message = encoded.split(_SEP, 2)
    return SalesforceError(code, message, [f for f in flds.split(",") if f])


def _cell(encoded: str) -> str:
    """``CODE:message:fields --`` (``CODE:message:--`` without fields), as Bulk writes it."""
    code, flds, message = encoded.split(_SEP, 2)
    return f"{code}:{message}:{flds} --" if flds else f"{code}:{message}:--"


def _to18(id15: str) -> str:
    return id15 + checksum(id15)


KeyIndex = dict[Any, Any]  # normalised value -> position (int) or positions (list, 2+)


def _hits(idx: KeyIndex, key: Any) -> list[int]:
    """Positions stored under ``key`` (single positions are kept unboxed to spare the GC)."""
    found = idx.get(key)
    if found is None:
        return []
    return [found] if isinstance(found, int) else found


def _idx_add(idx: KeyIndex, key: Any, pos: int) -> None:
    found = idx.get(key)
    if found is None:
        idx[key] = pos
    elif isinstance(found, int):
        idx[key] = [found, pos]
    else:
        found.append(pos)


def _idx_remove(idx: KeyIndex, key: Any, pos: int) -> None:
    found = idx.get(key)
    if found is None:
        return
    if isinstance(found, int):
        if found == pos:
            del idx[key]
    elif pos in found:
        found.remove(pos)
        if len(found) == 1:
            idx[key] = found[0]


@functools.cache
def _digit_tables() -> tuple[pl.DataFrame, pl.DataFrame]:
    """All 3- and 2-digit base-62 strings in counting order, with their upper-case bit masks."""
    one = pl.DataFrame(
        {"s": list(BASE62), "b": [int("A" <= ch <= "Z") for ch in BASE62]},
        schema={"s": pl.String, "b": pl.Int64},
    )

    def widen(left: pl.DataFrame, right: pl.DataFrame) -> pl.DataFrame:
        return left.join(right, how="cross", maintain_order="left_right").select(
            pl.concat_str("s", "s_right").alias("s"), (pl.col("b") + pl.col("b_right") * 2)
        )

    two = widen(one, one)
    return widen(one, two), two


class _Ids:
    """Fresh record ids for one key prefix, in ``ids.IdAllocator``'s format.

    Large blocks are minted column-wise with polars: a million ids one by one in Python
    (``IdAllocator.take``) costs seconds.
    """

    def __init__(self, prefix: str, pod: str = "5g") -> None:
        self._head = prefix + pod
        self._next = 1
        self._lock = threading.Lock()

    def take(self, count: int) -> list[str]:
        """``count`` fresh ids as a list."""
        if count <= 256:
            start = self._reserve(count)
            return [self._make(n) for n in range(start, start + count)]
        return self.take_series(count).to_list()

    def take_series(self, count: int) -> pl.Series:
        """``count`` fresh ids as a String series (no Python string per id)."""
        start = self._reserve(count)
        if count <= 256:
            return pl.Series(
                "Id", [self._make(n) for n in range(start, start + count)], dtype=pl.String
            )
        # Ten base-62 digits = two checksum chunks of five. The first chunk changes once per
        # 62**5 ids, so it is a constant per segment; the second is looked up as 3 + 2 digits
        # in tables of strings and upper-case bit masks (no per-id Python).
        t3, t2 = _digit_tables()
        letters = pl.Series(list(_CHECKSUM_ALPHABET))
        segments: list[pl.Series] = []
        first, stop = start, start + count
        while first < stop:
            high = first // 62**5
            last = min(stop, (high + 1) * 62**5)
            prefix = self._make(high * 62**5)[:10]  # head + the first chunk's five digits
            bits = sum(1 << j for j, ch in enumerate(prefix) if "A" <= ch <= "Z")
            value = pl.int_range(first, last, eager=True, dtype=pl.Int64) % 62**5
            hi, lo = value // 3844, value % 3844
            parts = pl.DataFrame(
                {
                    "a": t3["s"].gather(hi),
                    "b": t2["s"].gather(lo),
                    "c": letters.gather(t3["b"].gather(hi) + t2["b"].gather(lo) * 8),
                }
            )
            checks = _CHECKSUM_ALPHABET[bits & 31] + _CHECKSUM_ALPHABET[bits >> 5]
            segments.append(
                parts.select(
                    pl.concat_str(
                        [pl.lit(prefix), pl.col("a"), pl.col("b"), pl.lit(checks), pl.col("c")]
                    ).alias("Id")
                ).to_series()
            )
            first = last
        return segments[0] if len(segments) == 1 else pl.concat(segments)

    def next(self) -> str:
        """One fresh id."""
        return self.take(1)[0]

    def _reserve(self, count: int) -> int:
        with self._lock:
            start = self._next
            self._next += count
        return start

    def _make(self, n: int) -> str:
        return make_id(self._head, n)


def _release_freed_memory() -> None:
    """Hand memory freed by a large job back to the OS (glibc keeps it in its free lists).

    After a 1M-row job the process otherwise keeps ~0.5 GB of freed intermediates resident.
    Only glibc has ``malloc_trim``; elsewhere this does nothing.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim(0)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while a large job allocates millions of objects.

    The records hold no reference cycles, but each full collection walks every container the
    process holds, which made a 1M-row insert quadratic-looking. Reference counting still
    frees everything; the GC is re-enabled (if it was on) when the block ends.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _cells(errors: pl.Series) -> pl.Series:
    """Encoded errors as Bulk ``sf__Error`` cells (see ``_cell``), column-wise."""
    if errors.null_count() == errors.len():
        return errors
    parts = errors.str.splitn(_SEP, 3).struct.unnest()
    code, flds, message = parts["field_0"], parts["field_1"], parts["field_2"]
    return (
        pl.DataFrame({"code": code, "flds": flds, "message": message})
        .select(
            pl.when(pl.col("flds") != "")
            .then(
                pl.concat_str(
                    [
                        pl.col("code"),
                        pl.lit(":"),
                        pl.col("message"),
                        pl.lit(":"),
                        pl.col("flds"),
                        pl.lit(" --"),
                    ]
                )
            )
            .otherwise(
                pl.concat_str([pl.col("code"), pl.lit(":"), pl.col("message"), pl.lit(":--")])
            )
            .alias("sf__Error")
        )
        .to_series()
    )


def _iter_rows(
    positions: pl.Series, cols: list[tuple[str, pl.Series | None]], block: int = 10_000
) -> Iterator[dict[str, Any]]:
    """Record dicts from column snapshots, materialising ``block`` rows at a time."""
    for start in range(0, positions.len(), block):
        chunk = positions.slice(start, block)
        lists = [(name, None if col is None else col.gather(chunk).to_list()) for name, col in cols]
        for i in range(chunk.len()):
            yield {name: (values[i] if values is not None else None) for name, values in lists}


def format_datetime(moment: datetime) -> str:
    """Salesforce's response format for datetimes: ``2024-09-10T13:57:45.000+0000`` (UTC)."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+0000"


# ---------------------------------------------------------------------------------------------
# permissions, outcomes, rules
# ---------------------------------------------------------------------------------------------


@dataclass
class ObjectAccess:
    """Object-level permissions of the connected user's profile."""

    create: bool = True
    read: bool = True
    edit: bool = True
    delete: bool = True


@dataclass
class Permissions:
    """What the connected (API) user may do: the profile plus permission sets, flattened.

    Full access unless restricted. ``view_all_data`` is reported for callers that check it
    (upserting on a non-unique external id needs it in Salesforce).
    """

    api_enabled: bool = True
    view_all_data: bool = True
    objects: dict[str, ObjectAccess] = field(default_factory=dict)  # keyed by lower-case name
    fields: dict[str, FieldAccess] = field(default_factory=dict)  # "object.field" lower-case

    def object_access(self, sobject: str) -> ObjectAccess:
        """The access to ``sobject`` (full access unless restricted)."""
        return self.objects.get(sobject.lower(), ObjectAccess())

    def set_object(
        self,
        sobject: str,
        *,
        create: bool = True,
        read: bool = True,
        edit: bool = True,
        delete: bool = True,
    ) -> None:
        """Restrict (or restore) object-level access."""
        self.objects[sobject.lower()] = ObjectAccess(create, read, edit, delete)

    def field_access(self, sobject: str, field_name: str) -> FieldAccess:
        """'edit', 'read' or 'none' for one field (edit unless restricted)."""
        return self.fields.get(f"{sobject}.{field_name}".lower(), "edit")

    def set_field(self, sobject: str, field_name: str, access: FieldAccess) -> None:
        """Set field-level security for one field."""
        self.fields[f"{sobject}.{field_name}".lower()] = access


class BulkOutcome:
    """Per-row results of one Bulk ingest, in input row order.

    Held as polars series (``frame()`` hands them over without a Python object per row); the
    list views ``ids``, ``created`` and ``errors`` are built on first use.
    """

    __slots__ = ("_created", "_errors", "_ids", "_lists", "apex_ms")

    def __init__(
        self,
        ids: pl.Series | Sequence[str | None],
        created: pl.Series | Sequence[bool],
        errors: pl.Series | Sequence[str | None],
        apex_ms: int = 0,
    ) -> None:
        self._ids = pl.Series("sf__Id", ids, dtype=pl.String)
        self._created = pl.Series("sf__Created", created, dtype=pl.Boolean)
        # sf__Error cells "CODE:message:fields --"; null = success
        self._errors = pl.Series("sf__Error", errors, dtype=pl.String)
        self._lists: dict[str, list[Any]] = {}
        self.apex_ms = apex_ms

    def _list(self, name: str, series: pl.Series) -> list[Any]:
        found = self._lists.get(name)
        if found is None:
            found = self._lists[name] = series.to_list()
        return found

    @property
    def ids(self) -> list[str | None]:
        """Record id per row (None where the row failed)."""
        return self._list("ids", self._ids)

    @property
    def created(self) -> list[bool]:
        """Whether the row created a record."""
        return self._list("created", self._created)

    @property
    def errors(self) -> list[str | None]:
        """The sf__Error cell per row, None on success."""
        return self._list("errors", self._errors)

    def frame(self) -> pl.DataFrame:
        """``sf__Id``, ``sf__Created``, ``sf__Error`` as one frame (no per-row Python)."""
        return pl.DataFrame([self._ids, self._created, self._errors])


@dataclass(frozen=True)
class _Trigger:
    sobject: str
    field: str | None
    equals: object
    message: str
    apex_ms_per_record: float


@dataclass
class _LockRule:
    sobject: str | None
    share: float
    parent_id15: str | None
    remaining: int | None
    seed: int


@dataclass
class _Col:
    """One uploaded column, resolved against the object."""

    header: str
    pos: int
    key: str  # the working frame's column name
    field: FieldDef  # target field (the reference field for relationship columns)
    parent: ObjectDef | None = None
    parent_field: FieldDef | None = None
    lookup_error: str | None = None  # encoded error for a relationship on a non-indexed field


def _dtype_for(fd: FieldDef | None) -> pl.DataType | None:
    """The polars type a field's canonical values are stored as (None: infer)."""
    if fd is None:
        return None
    if fd.type == "boolean":
        return pl.Boolean()
    if fd.type == "int":
        return pl.Int64()
    if fd.type in _FLOAT:
        return pl.Float64()
    return pl.String()


class _Column:
    """One stored field: a polars series, plus edits not yet folded into it.

    Bulk jobs append whole series and keep their scatters as ``layers`` (positions, values)
    until the column is read, so a job that updates a few rows of a big table does not copy
    the whole column (a copy per column per job made small jobs cost as much as the org is
    big). Single-record REST writes go to ``patch`` (position -> value) or ``tail`` (appended
    rows), which keeps them O(1). ``series()`` folds the edits in when an operation needs the
    column; layers are only pending while ``patch`` and ``tail`` are empty, so they are older
    than any patch and folding them first keeps the order of the writes.
    """

    __slots__ = ("base", "dtype", "layers", "patch", "tail")

    _MAX_LAYERS = 32

    def __init__(self, dtype: pl.DataType | None, base: pl.Series | None = None) -> None:
        self.dtype = dtype
        self.base = base
        self.patch: dict[int, Any] = {}
        self.tail: list[Any] = []
        self.layers: list[tuple[pl.Series, pl.Series]] = []

    def _settle(self) -> None:
        """Fold the pending scatters into ``base`` with one copy (later writes win)."""
        if not self.layers:
            return
        assert self.base is not None
        if len(self.layers) == 1:
            positions, values = self.layers[0]
        else:
            positions = pl.concat([p for p, _ in self.layers])
            values = pl.concat([v for _, v in self.layers])
        self.layers = []
        # scatter() writes into its Series object: work on a clone, snapshots stay valid.
        self.base = self._conform(self.base).clone().scatter(positions, values)

    def _base_len(self) -> int:
        return 0 if self.base is None else self.base.len()

    def __len__(self) -> int:
        return self._base_len() + len(self.tail)

    def get(self, pos: int) -> Any:
        self._settle()
        b = self._base_len()
        if pos >= b:
            return self.tail[pos - b]
        if pos in self.patch:
            return self.patch[pos]
        assert self.base is not None
        return self.base[pos]

    def set(self, pos: int, value: Any) -> None:
        self._settle()
        b = self._base_len()
        if pos >= b:
            self.tail[pos - b] = value
        else:
            self.patch[pos] = value

    def _build(self, values: list[Any]) -> pl.Series:
        series = pl.Series(values, dtype=self.dtype, strict=True)
        if self.dtype is None and series.dtype != pl.Null:
            self.dtype = series.dtype
        return series

    def _conform(self, series: pl.Series) -> pl.Series:
        if self.dtype is None:
            if series.dtype != pl.Null:
                self.dtype = series.dtype
            return series
        return series if series.dtype == self.dtype else series.cast(self.dtype)

    def series(self) -> pl.Series:
        """The whole column as a series (edits folded in; callers must not mutate it)."""
        self._settle()
        if self.tail:
            added = self._build(self.tail)
            if self.base is not None:
                added = pl.concat([self._conform(self.base), self._conform(added)], rechunk=False)
            self.base, self.tail = added, []
        if self.base is None:
            self.base = pl.Series([], dtype=self.dtype or pl.Null())
        if self.patch:
            positions = pl.Series(list(self.patch), dtype=pl.Int64)
            values = self._build(list(self.patch.values()))
            # scatter() writes into its Series object: work on a clone, snapshots stay valid.
            self.base = self._conform(self.base).clone().scatter(positions, values)
            self.patch = {}
        if self.base.n_chunks() > 16:
            self.base = self.base.rechunk()
        return self.base

    def to_list(self) -> list[Any]:
        """The whole column as Python values."""
        self._settle()
        out = [] if self.base is None else self.base.to_list()
        for pos, value in self.patch.items():
            out[pos] = value
        out.extend(self.tail)
        return out

    def extend(self, values: Sequence[Any]) -> None:
        """Append a few rows (kept as Python values until a vectorised use)."""
        self._settle()
        self.tail.extend(values)

    def extend_series(self, values: pl.Series) -> None:
        """Append many rows at once (pending scatters stay pending: they address older rows)."""
        if self.base is None or self.patch or self.tail:
            self.series()
        base = self.base
        assert base is not None
        if base.len() == 0:
            self.base = self._conform(values)
        else:
            self.base = pl.concat([self._conform(base), self._conform(values)], rechunk=False)

    def scatter(self, positions: pl.Series, values: pl.Series) -> None:
        """Write ``values`` at ``positions`` (later duplicates win), folded in on next read."""
        if self.base is None or self.patch or self.tail:
            self.series()
        assert self.base is not None
        self.layers.append((positions, self._conform(values)))
        pending = sum(p.len() for p, _ in self.layers)
        if len(self.layers) > self._MAX_LAYERS or pending * 8 > self.base.len():
            self._settle()

    def truncate(self, length: int) -> None:
        """Drop the rows from ``length`` on (undo of an insert)."""
        self._settle()
        b = self._base_len()
        if length >= b:
            del self.tail[length - b :]
            return
        assert self.base is not None
        self.base, self.tail = self.base.head(length), []
        self.patch = {p: v for p, v in self.patch.items() if p < length}


def _nulls(dtype: pl.DataType | None, count: int) -> pl.Series:
    return _const(None, count, dtype or pl.Null())


def _const(value: Any, count: int, dtype: pl.DataType | None) -> pl.Series:
    if count < 64:  # pl.repeat costs ~0.5 ms a call: too much for single-record REST writes
        return pl.Series([value] * count, dtype=dtype)
    return pl.repeat(value, count, dtype=dtype, eager=True)


class _Table:
    """The records of one object (see the module docstring)."""

    __slots__ = ("cols", "id_cache", "keys", "n", "name", "purged", "schema", "sorted_keys")

    def __init__(self, name: str, schema: Schema) -> None:
        self.name = name
        self.schema = schema
        self.cols: dict[str, _Column] = {}
        self.n = 0
        self.id_cache: dict[str, int] | None = {}  # 18-char id -> position; None = stale
        self.purged: set[int] = set()
        self.keys: dict[str, KeyIndex] = {}
        # (field, live records only) -> the field's keys sorted by hash, for batch lookups
        self.sorted_keys: dict[tuple[str, bool], _SortedKeys] = {}

    def dtype(self, name: str) -> pl.DataType | None:
        obj = self.schema.get(self.name)
        return _dtype_for(obj.field(name) if obj is not None else None)

    def get(self, name: str, pos: int) -> Any:
        col = self.cols.get(name)
        return None if col is None else col.get(pos)

    def column(self, name: str) -> _Column:
        col = self.cols.get(name)
        if col is None:
            dtype = self.dtype(name)
            col = self.cols[name] = _Column(dtype)
            if self.n > 256:
                col.base = _nulls(dtype, self.n)
            else:
                col.tail = [None] * self.n
        return col

    def series(self, name: str) -> pl.Series:
        """One column as a series (all null if never written)."""
        col = self.cols.get(name)
        return _nulls(self.dtype(name), self.n) if col is None else col.series()

    def values(self, name: str) -> list[Any]:
        """One column as Python values."""
        col = self.cols.get(name)
        return [None] * self.n if col is None else col.to_list()

    def is_deleted(self, pos: int) -> bool:
        return bool(self.get("IsDeleted", pos))

    def id_index(self) -> dict[str, int]:
        """Canonical 18-character id -> position, rebuilt after large appends."""
        if self.id_cache is None:
            ids = self.values("Id")
            self.id_cache = dict(zip(ids, range(len(ids)), strict=True))
        return self.id_cache

    def live_mask(self, *, include_deleted: bool = False) -> pl.Series:
        """Per position: not hard-deleted (and, unless ``include_deleted``, not deleted)."""
        live = pl.repeat(True, self.n, dtype=pl.Boolean, eager=True)
        if not include_deleted and "IsDeleted" in self.cols:
            live = ~self.series("IsDeleted").fill_null(False)
        if self.purged:
            purged = pl.int_range(0, self.n, eager=True).is_in(list(self.purged))
            live = live & ~purged
        return live

    def live_positions(self, *, include_deleted: bool) -> pl.Series:
        return self.live_mask(include_deleted=include_deleted).arg_true()

    def gather(self, name: str, positions: pl.Series) -> pl.Series:
        """One column's values at ``positions`` (null where a position is null)."""
        col = self.cols.get(name)
        if col is None:
            return _nulls(self.dtype(name), positions.len())
        return col.series().gather(positions)

    def live_at(self, positions: pl.Series, *, include_deleted: bool = False) -> pl.Series:
        """``live_mask`` at ``positions`` only (false where a position is null): O(positions)."""
        live = positions.is_not_null()
        if not include_deleted and "IsDeleted" in self.cols:
            live = live & ~self.gather("IsDeleted", positions).fill_null(False)
        if self.purged:
            purged = self.purged
            hit = [p in purged for p in positions.to_list()]
            live = live & ~pl.Series(hit, dtype=pl.Boolean)
        return live

    def sorted_index(
        self, name: str, dtype: pl.DataType, *, ci: bool, live_only: bool
    ) -> _SortedKeys:
        """The field's sorted key index, (re)built when missing, of another type, or when
        the rows changed since its build are too many to read at each lookup."""
        found = self.sorted_keys.get((name, live_only))
        if found is None or found.dtype != dtype or found.ci != ci or found.overdue(self.n):
            found = _SortedKeys(self, name, dtype, ci=ci, live_only=live_only)
            self.sorted_keys[(name, live_only)] = found
        return found

    def touch(self, name: str, positions: Sequence[int] | pl.Series) -> None:
        """Tell the sorted key indexes that ``name`` may have changed at ``positions``
        (``IsDeleted`` or a purge: whether the records are live); an index with too many
        such positions is dropped (rebuilt on next use)."""
        for (fname, live_only), index in list(self.sorted_keys.items()):
            if fname == name or (live_only and name == "IsDeleted"):
                listed = positions.to_list() if isinstance(positions, pl.Series) else positions
                index.stale.update(p for p in listed if p < index.covered)
                if index.overdue(self.n):
                    del self.sorted_keys[(fname, live_only)]

    def forget(self, name: str) -> None:
        """Drop every key index that depends on the field ``name`` (rebuilt on next use)."""
        self.keys.pop(name, None)
        for fname, live_only in list(self.sorted_keys):
            if fname == name or (live_only and name == "IsDeleted"):
                del self.sorted_keys[(fname, live_only)]
        if name == "IsDeleted":
            self.keys.clear()

    def prune(self) -> None:
        """Drop the sorted key indexes that too many appended rows made overdue."""
        for key, index in list(self.sorted_keys.items()):
            if index.overdue(self.n):
                del self.sorted_keys[key]


def _norm(series: pl.Series, dtype: pl.DataType, *, ci: bool) -> pl.Series:
    """Stored or uploaded key values as an index compares them."""
    out = series if series.dtype == dtype else series.cast(dtype)
    return out.str.to_lowercase() if ci and dtype == pl.String else out


class _SortedKeys:
    """One field's non-null keys sorted by their 64-bit hash, with each key's position.

    A job of k keys is then matched in O(k log n) instead of lowercasing, hashing and sorting
    the whole column per job. Built once; afterwards writes report the positions whose key
    (or, for a ``live_only`` index, whose deleted or purged state) may have changed
    (``stale``, see ``_Table.touch``), and rows appended since the build (from ``covered`` on)
    are new. A lookup ignores the built entries at stale positions and reads the current
    values of stale and new positions, so the answers are those of a fresh build; when such
    positions grow past a share of the table the index is rebuilt.
    """

    __slots__ = (
        "ci",
        "covered",
        "distinct",
        "dtype",
        "hashes",
        "live_only",
        "name",
        "positions",
        "stale",
    )

    def __init__(
        self, table: _Table, name: str, dtype: pl.DataType, *, ci: bool, live_only: bool
    ) -> None:
        self.name, self.dtype, self.ci, self.live_only = name, dtype, ci, live_only
        column = _norm(table.series(name), dtype, ci=ci)
        keep = column.is_not_null()
        if live_only:
            keep = keep & table.live_mask()
        hashes = column.filter(keep).hash()
        order = hashes.arg_sort()
        self.hashes = hashes.gather(order)
        self.positions = keep.arg_true().cast(pl.Int64).gather(order)
        # Distinct hashes (the common case): a key has at most one candidate in the build.
        self.distinct = not bool((self.hashes == self.hashes.shift(1)).any())
        self.covered = table.n
        self.stale: set[int] = set()

    def overdue(self, n: int) -> bool:
        """Whether the positions read at each lookup exceed a share of the table."""
        return len(self.stale) + (n - self.covered) > max(4096, self.covered // 16)

    def match(self, table: _Table, keys: pl.Series) -> pl.DataFrame | None:
        """``_match_keys`` for ``keys`` (already normalised, of ``dtype``): per key ``pos`` and
        ``hits`` (0/1/2+). None if many built entries share the keys' hashes (values held by
        many records): the caller then matches against the whole column."""
        k = keys.len()
        rows = pl.int_range(0, k, eager=True, dtype=pl.Int64)
        pairs: list[pl.DataFrame] = []
        m = self.hashes.len()
        if m:
            key_hash = keys.hash()
            lo = self.hashes.search_sorted(key_hash, side="left").cast(pl.Int64)
            if self.distinct:
                at = lo.clip(upper_bound=m - 1)
                found = (self.hashes.gather(at) == key_hash) & keys.is_not_null()
                cand = pl.DataFrame(
                    {"row": rows.filter(found), "pos": self.positions.gather(at.filter(found))}
                )
            else:
                hi = self.hashes.search_sorted(key_hash, side="right").cast(pl.Int64)
                count = hi - lo
                if int(count.sum()) > 4 * k + 10_000:
                    return None
                spans = pl.DataFrame({"row": rows, "lo": lo, "hi": hi}).filter(
                    (pl.col("hi") > pl.col("lo")) & keys.is_not_null()
                )
                spans = spans.select("row", pl.int_ranges("lo", "hi").alias("at")).explode("at")
                cand = spans.select("row", self.positions.gather(spans["at"]).alias("pos"))
            if self.stale:
                stale = pl.Series(list(self.stale), dtype=pl.Int64)
                cand = cand.filter(~pl.col("pos").is_in(stale))
            stored = _norm(table.gather(self.name, cand["pos"]), self.dtype, ci=self.ci)
            pairs.append(cand.filter((stored == keys.gather(cand["row"])).fill_null(False)))
        fresh = sorted(self.stale)
        if table.n > self.covered or fresh:
            recent = pl.Series(fresh, dtype=pl.Int64)
            if table.n > self.covered:
                tail = pl.int_range(self.covered, table.n, eager=True, dtype=pl.Int64)
                recent = pl.concat([recent, tail])
            values = _norm(table.gather(self.name, recent), self.dtype, ci=self.ci)
            keep = values.is_not_null()
            if self.live_only:
                keep = keep & table.live_at(recent)
            current = pl.DataFrame({"key": values.filter(keep), "pos": recent.filter(keep)})
            asked = pl.DataFrame({"row": rows, "key": keys})
            pairs.append(asked.join(current, on="key", how="inner").select("row", "pos"))
        hits = _const(0, k, pl.UInt32())
        pos = _nulls(pl.Int64(), k)
        found_pairs = pl.concat(pairs) if pairs else pl.DataFrame()
        if found_pairs.height:
            per_row = found_pairs.group_by("row").agg(
                pl.col("pos").min(), pl.len().cast(pl.UInt32).alias("hits")
            )
            hits = hits.scatter(per_row["row"], per_row["hits"])
            pos = pos.scatter(per_row["row"], per_row["pos"])
        return pl.DataFrame({"pos": pos, "hits": hits})


# A job at most this share of its table (1/8) matches its keys with the table's sorted key
# index; larger jobs hash the whole column (as cheap, and no index to keep up).
_INDEX_SHARE = 8


# Frames at least this tall resolve their keys with joins instead of per-row dict lookups, and
# writes of at least this many rows go column-wise; below it single-record paths stay O(1).
_VECTOR_MIN = 1000


def _hash(series: pl.Series) -> pl.Series:
    return series.hash()


def _match_keys(
    column: pl.Series,
    candidate: pl.Series,
    keys: pl.Series,
    *,
    hash_of: Callable[[pl.Series], pl.Series] = _hash,
) -> pl.DataFrame:
    """Per key, the position in ``column`` holding an equal value: ``pos`` and ``hits`` (0/1/2+).

    Only positions where ``candidate`` is true count. Both sides are sorted by a 64-bit hash
    and merged (an as-of join on sorted hashes costs about half of a hash join), then equality
    is checked on the values. When one hash is shared by two stored values (a value held by
    several records), the exact join on the values decides.
    """
    keep = candidate & column.is_not_null()
    stored, positions = column.filter(keep), keep.arg_true().cast(pl.Int64)
    if stored.len() == 0:
        return pl.DataFrame(
            {"pos": _nulls(pl.Int64(), keys.len()), "hits": _const(0, keys.len(), pl.UInt32())}
        )
    stored_hash = hash_of(stored)
    stored_order = stored_hash.arg_sort()
    stored_sorted = stored_hash.gather(stored_order)
    if not bool((stored_sorted == stored_sorted.shift(1)).any()):
        key_hash = hash_of(keys)
        key_order = key_hash.arg_sort()
        left = pl.DataFrame({"h": key_hash.gather(key_order), "row": key_order})
        right = pl.DataFrame(
            {"h": stored_sorted, "hr": stored_sorted, "pos": positions.gather(stored_order)}
        )
        merged = left.join_asof(right, on="h", strategy="backward", check_sortedness=False)
        found = merged.select(pl.when(pl.col("hr") == pl.col("h")).then(pl.col("pos")))
        pos = _nulls(pl.Int64(), keys.len()).scatter(merged["row"], found.to_series())
        equal = (column.gather(pos) == keys).fill_null(False)
        return pl.DataFrame({"pos": pos, "eq": equal}).select(
            pl.when(pl.col("eq")).then(pl.col("pos")).alias("pos"),
            pl.col("eq").cast(pl.UInt32).alias("hits"),
        )
    counts = (
        pl.DataFrame({"key": stored, "pos": positions})
        .group_by("key")
        .agg(pl.col("pos").first(), pl.len().cast(pl.UInt32).alias("hits"))
    )
    exact = pl.DataFrame({"key": keys}).join(counts, on="key", how="left", maintain_order="left")
    return exact.select(pl.col("pos"), pl.col("hits").fill_null(0))


def _errors_where(frame: pl.DataFrame, failing: pl.Series, error: pl.Expr) -> pl.Series:
    """``error`` evaluated on the failing rows only (it builds message strings), null elsewhere."""
    out = _nulls(pl.String(), frame.height)
    if failing.any():
        messages = frame.filter(failing).lazy().select(error.alias("e")).collect()
        out = out.scatter(failing.arg_true(), messages["e"])
    return out


def _duplicated(keys: pl.Series) -> pl.Series:
    """Which keys occur more than once (a sort of hashes proves the common all-distinct case)."""
    hashes = keys.drop_nulls().hash().sort()
    if not (hashes.len() > 1 and (hashes == hashes.shift(1)).any()):
        return pl.repeat(False, keys.len(), dtype=pl.Boolean, eager=True)
    return keys.is_duplicated()


class _Errors:
    """The per-row encoded errors of a job: a series, turned into a list only for checks
    that must loop over rows (relationships, unique fields, triggers, lock rules)."""

    __slots__ = ("_list", "_series")

    def __init__(self, series: pl.Series) -> None:
        self._series: pl.Series | None = series
        self._list: list[str | None] | None = None

    def as_list(self) -> list[str | None]:
        if self._list is None:
            assert self._series is not None
            self._list, self._series = self._series.to_list(), None
        return self._list

    def as_series(self) -> pl.Series:
        if self._series is None:
            self._series = pl.Series("__err", self._list, dtype=pl.String)
            self._list = None
        return self._series


# ---------------------------------------------------------------------------------------------
# vectorised cell validation (one polars expression per column)
# ---------------------------------------------------------------------------------------------


def _lit_err(code: str, fields: Sequence[str], message: str) -> pl.Expr:
    return pl.lit(_enc(code, message, fields))


def _err_with_value(
    code: str, fd: FieldDef, before: str, value: pl.Expr, after: str = ""
) -> pl.Expr:
    return pl.concat_str([pl.lit(f"{code}{_SEP}{fd.name}{_SEP}{before}"), value, pl.lit(after)])


def _err_with_names(code: str, names: list[pl.Expr], before: str, after: str) -> pl.Expr:
    """An error naming the fields whose ``names`` expression is not null in a row (null if none).

    The fields part joins them with ``,``, the message with ``, `` between ``before`` and ``after``.
    """
    listed = pl.concat_str(names, separator=", ", ignore_nulls=True)
    flds = pl.concat_str(names, separator=",", ignore_nulls=True)
    return pl.when(listed != "").then(
        pl.concat_str(
            [pl.lit(f"{code}{_SEP}"), flds, pl.lit(f"{_SEP}{before}"), listed, pl.lit(after)]
        )
    )


def _external_keys(
    work: pl.DataFrame, key_col: _Col, surface: Surface, ext: FieldDef
) -> tuple[pl.DataFrame, pl.Series]:
    """The uploaded key column as ``raw`` and canonical ``key``, and the keys as the index
    compares them (lower case when the external id is case-insensitive)."""
    src = pl.col(key_col.key)
    canon_expr = _value_exprs(key_col, src, surface)[0]
    frame = work.lazy().select(src.alias("raw"), canon_expr.alias("key")).collect()
    keys = frame["key"]
    if ext.key_case_insensitive:
        keys = keys.str.to_lowercase()
    return frame, keys


_UPPER = [chr(c) for c in range(ord("A"), ord("Z") + 1)]
_NOT_UPPER = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
# A 5-character chunk written as bits (character j -> "1" if upper case) -> checksum letter.
_BITS_TO_LETTER = {format(i, "05b")[::-1]: _CHECKSUM_ALPHABET[i] for i in range(32)}


def id_exprs(src: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """(is well-formed, canonical 18-character id) for a column of 15/18-character ids."""
    base = src.str.slice(0, 15)
    # Literal multi-pattern replacement: a regex character class is ~30x slower here.
    bits = base.str.replace_many(_UPPER + _NOT_UPPER, ["1"] * 26 + ["0"] * 36)
    suffix = pl.concat_str(
        [
            bits.str.slice(chunk * 5, 5).replace_strict(
                _BITS_TO_LETTER, default=None, return_dtype=pl.String
            )
            for chunk in range(3)
        ]
    )
    ok = src.str.contains(_ID_RE) & (
        (src.str.len_chars() == 15) | (src.str.slice(15, 3).str.to_uppercase() == suffix)
    )
    return ok.fill_null(False), pl.concat_str([base, suffix])


def _value_exprs(
    c: _Col, src: pl.Expr, surface: Surface
) -> tuple[pl.Expr, pl.Expr | None, pl.Expr | None]:
    """(canonical value, encoded error or null, "some check fails") for one uploaded column.

    The error expression builds message strings: evaluate it only on the failing rows.
    """
    fd = c.field
    has = src.is_not_null() & (src != _NULL)
    if c.parent is not None:
        if c.lookup_error is None:
            return pl.when(has).then(src), None, None
        return (
            pl.when(has).then(src),
            pl.when(src.is_not_null()).then(pl.lit(c.lookup_error)),
            src.is_not_null(),
        )
    checks: list[tuple[pl.Expr, pl.Expr]] = []

    def deserialize() -> pl.Expr:
        if surface == "bulk":
            return _err_with_value(
                "INVALID_FIELD",
                fd,
                f"Failed to deserialize field at col {c.pos}. Due to, '",
                src,
                f"' is not a valid value for the type xsd:{_XSD.get(fd.type, 'string')}",
            )
        return _err_with_value(
            "INVALID_TYPE_ON_FIELD_IN_RECORD", fd, f"{fd.label}: value not of required type: ", src
        )

    canon: pl.Expr
    if fd.type in _TEXT or fd.type not in _XSD:
        canon = src
        if fd.length:
            checks.append(
                (
                    src.str.len_chars() > fd.length,
                    _err_with_value(
                        "STRING_TOO_LONG",
                        fd,
                        f"{fd.label}: data value too large: ",
                        src,
                        f" (max length={fd.length})",
                    ),
                )
            )
        if fd.type == "email":
            checks.append(
                (
                    ~src.str.contains(_EMAIL_RE),
                    _err_with_value(
                        "INVALID_EMAIL_ADDRESS", fd, f"{fd.label}: invalid email address: ", src
                    ),
                )
            )
        if fd.restricted_picklist and fd.type in ("picklist", "multipicklist"):
            values = list(fd.picklist_values)
            if fd.type == "picklist":
                valid = src.is_in(values)
            else:
                valid = src.str.split(";").list.eval(pl.element().is_in(values)).list.all()
            checks.append(
                (
                    ~valid,
                    _err_with_value(
                        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                        fd,
                        f"{fd.label}: bad value for restricted picklist field: ",
                        src,
                    ),
                )
            )
    elif fd.type == "boolean":
        low = src.str.to_lowercase()
        checks.append((~low.is_in(["true", "false"]), deserialize()))
        # A checkbox is never null: "#N/A" / JSON null clears it to false.
        return (
            pl.when(src == _NULL).then(pl.lit(False)).when(has).then(low == "true"),
            _chain(checks, has),
            _fails(checks, has),
        )
    elif fd.type in _FLOAT:
        num = src.cast(pl.Float64, strict=False)
        checks.append((num.is_null() | ~num.is_finite(), deserialize()))
        limit = 10.0 ** max(fd.precision - fd.scale, 1)
        checks.append(
            (
                num.round(fd.scale).abs() >= limit,
                _err_with_value(
                    "NUMBER_OUTSIDE_VALID_RANGE",
                    fd,
                    f"{fd.label}: value outside of valid range on numeric field: ",
                    src,
                ),
            )
        )
        canon = num.round(fd.scale)
    elif fd.type == "int":
        num_i = src.cast(pl.Int64, strict=False)
        checks.append((num_i.is_null(), deserialize()))
        limit_i = min(10 ** max(fd.precision, 1), 2**31)
        checks.append(
            (
                num_i.abs() >= limit_i,
                _err_with_value(
                    "NUMBER_OUTSIDE_VALID_RANGE",
                    fd,
                    f"{fd.label}: value outside of valid range on numeric field: ",
                    src,
                ),
            )
        )
        canon = num_i
    elif fd.type == "date":
        parsed = src.str.to_date("%Y-%m-%d", strict=False)
        checks.append((~src.str.contains(_DATE_RE) | parsed.is_null(), deserialize()))
        canon = src
    elif fd.type == "datetime":
        norm = src.str.replace(r"Z$", "+00:00").str.replace(r"([+-]\d\d):?(\d\d)$", "$1$2")
        parsed_dt = norm.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%z", strict=False, time_zone="UTC")
        checks.append((~src.str.contains(_DATETIME_RE) | parsed_dt.is_null(), deserialize()))
        canon = parsed_dt.dt.strftime("%Y-%m-%dT%H:%M:%S%.3f+0000")
    else:  # reference, id
        ok, id18 = id_exprs(src)
        checks.append(
            (
                ~ok,
                _err_with_value(
                    "MALFORMED_ID", fd, f"{fd.label}: id value of incorrect type: ", src
                ),
            )
        )
        canon = id18
    return pl.when(has).then(canon), _chain(checks, has), _fails(checks, has)


def _chain(checks: list[tuple[pl.Expr, pl.Expr]], has: pl.Expr) -> pl.Expr | None:
    """The first failing check's error, only where the cell has a value."""
    if not checks:
        return None
    cond, err = checks[0]
    expr: Any = pl.when(has & cond.fill_null(True)).then(err)
    for cond, err in checks[1:]:
        expr = expr.when(has & cond.fill_null(True)).then(err)
    return expr


def _fails(checks: list[tuple[pl.Expr, pl.Expr]], has: pl.Expr) -> pl.Expr | None:
    """Whether any check fails where the cell has a value (cheap: no message is built)."""
    if not checks:
        return None
    return has & pl.any_horizontal([cond.fill_null(True) for cond, _ in checks])


# ---------------------------------------------------------------------------------------------
# the org
# ---------------------------------------------------------------------------------------------


class Org:
    """One emulated org. Thread-safe: every public method holds ``self.lock`` (an RLock).

    Standard duplicate rules are OFF by default (``duplicate_rules_enabled = False``) so that
    plain syncs work; switch them on to get DUPLICATES_DETECTED as a fresh org would.
    Updates of converted leads are refused unless ``allow_update_converted_leads``.
    """

    def __init__(
        self,
        schema: Schema | None = None,
        *,
        username: str = "admin@emulator.example",
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.schema = schema if schema is not None else default_schema()
        self.username = username
        self.api_version = API_VERSION
        self.duplicate_rules_enabled = False
        self.allow_update_converted_leads = False
        self.permissions = Permissions()
        self._clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self._tables: dict[str, _Table] = {}
        self._allocators: dict[str, _Ids] = {}
        self._journal: list[tuple[Any, ...]] | None = None
        self._triggers: list[_Trigger] = []
        self._locks: list[_LockRule] = []
        self.org_id = self._allocator("00D").next()
        self.user_id = self._allocator("005").next()
        now = self._now()
        self._seed_record(
            "Organization",
            self.org_id,
            {
                "Name": "Emulated Org",
                "IsSandbox": False,
                "InstanceName": "EMU1",
                "OrganizationType": "Developer Edition",
                "NamespacePrefix": None,
                "DefaultLocaleSidKey": "en_US",
            },
            now,
        )
        self._seed_record(
            "User",
            self.user_id,
            {
                "Username": username,
                "LastName": "Integration",
                "FirstName": "API",
                "Name": "API Integration",
                "Email": username,
                "Alias": "api",
                "IsActive": True,
                "TimeZoneSidKey": "GMT",
            },
            now,
        )

    # ---- plumbing ----
    def now(self) -> datetime:
        """The org's current time (the injected clock in tests): SOQL's TODAY follows it."""
        return self._clock()

    def _now(self) -> str:
        return format_datetime(self._clock())

    def _allocator(self, prefix: str) -> _Ids:
        alloc = self._allocators.get(prefix)
        if alloc is None:
            alloc = self._allocators[prefix] = _Ids(prefix)
        return alloc

    def _table(self, sobject: str) -> _Table:
        key = sobject.lower()
        table = self._tables.get(key)
        if table is None:
            obj = self.schema.get(sobject)
            table = self._tables[key] = _Table(
                obj.name if obj is not None else sobject, self.schema
            )
        return table

    def _seed_record(self, sobject: str, record_id: str, values: dict[str, Any], now: str) -> None:
        if self.schema.get(sobject) is None:
            return
        table = self._table(sobject)
        row = {
            "Id": record_id,
            "IsDeleted": False,
            "CreatedDate": now,
            "LastModifiedDate": now,
            "SystemModstamp": now,
            "CreatedById": self.user_id,
            "LastModifiedById": self.user_id,
            **values,
        }
        self._append(table, [row])

    @staticmethod
    def _key_norm(fd: FieldDef, value: Any) -> Any:
        if isinstance(value, str) and fd.key_case_insensitive:
            return value.lower()
        return value

    def _key_add(self, idx: KeyIndex, fd: FieldDef | None, pos: int, value: Any) -> None:
        if value is None:
            return
        _idx_add(idx, self._key_norm(fd, value) if fd else value, pos)

    def _key_index(self, obj: ObjectDef, fd: FieldDef) -> KeyIndex:
        """Live (not deleted) positions by normalised value of ``fd``, built on first use."""
        table = self._table(obj.name)
        idx = table.keys.get(fd.name)
        if idx is None:
            idx = {}
            if fd.name in table.cols:
                keep = table.live_mask() & table.series(fd.name).is_not_null()
                values = table.series(fd.name).filter(keep)
                if fd.key_case_insensitive and values.dtype == pl.String:
                    values = values.str.to_lowercase()
                keys, positions = values.to_list(), keep.arg_true().to_list()
                idx = dict(zip(keys, positions, strict=True))
                if len(idx) != len(keys):  # a value held by several records
                    idx = {}
                    for key, pos in zip(keys, positions, strict=True):
                        _idx_add(idx, key, pos)
            table.keys[fd.name] = idx
        return idx

    def _set(self, table: _Table, pos: int, values: Mapping[str, Any]) -> None:
        """Write canonical values into one existing record, keeping key indexes right."""
        for name, value in values.items():
            col = table.column(name)
            old = col.get(pos)
            if self._journal is not None:
                self._journal.append(("set", table, pos, name, old))
            idx = table.keys.get(name)
            if idx is not None and old != value:
                obj = self.schema.get(table.name)
                fd = obj.field(name) if obj else None
                self._key_remove(idx, fd, pos, old)
                col.set(pos, value)
                if not table.is_deleted(pos):
                    self._key_add(idx, fd, pos, value)
            else:
                col.set(pos, value)
            if table.sorted_keys:
                table.touch(name, (pos,))

    def _key_remove(self, idx: KeyIndex, fd: FieldDef | None, pos: int, value: Any) -> None:
        if value is None:
            return
        _idx_remove(idx, self._key_norm(fd, value) if fd else value, pos)

    def _locate(self, record_id: str) -> tuple[ObjectDef, _Table, int] | None:
        if not is_well_formed(record_id):
            return None
        obj = self.schema.by_key_prefix(record_id[:3])
        if obj is None:
            return None
        table = self._table(obj.name)
        pos = table.id_index().get(_to18(record_id[:15]))
        if pos is None or pos in table.purged:
            return None
        return obj, table, pos

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Undo every DML done inside the block if an exception leaves it (allOrNone)."""
        with self.lock:
            outer = self._journal
            journal: list[tuple[Any, ...]] = []
            self._journal = journal
            try:
                yield
            except BaseException:
                self._journal = None
                self._undo(journal)
                self._journal = outer
                raise
            self._journal = outer
            if outer is not None:
                outer.extend(journal)

    def _undo(self, journal: list[tuple[Any, ...]]) -> None:
        touched: list[_Table] = []
        for entry in reversed(journal):
            kind, table = entry[0], entry[1]
            touched.append(table)
            if kind == "ins":
                start = entry[2]
                for col in table.cols.values():
                    col.truncate(start)
                table.n = start
                table.id_cache = None  # rebuilt on next use
            elif kind == "set":
                table.column(entry[3]).set(entry[2], entry[4])
            elif kind == "purge":
                table.purged.discard(entry[2])
        for table in touched:
            table.keys.clear()  # rebuilt lazily: undo is rare, correctness first
            table.sorted_keys.clear()

    # ---- metadata ----
    def check_api(self) -> None:
        """Raise API_CURRENTLY_DISABLED (403) when the user lacks "API Enabled"."""
        if not self.permissions.api_enabled:
            raise SalesforceError(
                "API_CURRENTLY_DISABLED", "API is disabled for this User", status=403
            )

    def _visible_obj(self, sobject: str) -> ObjectDef | None:
        obj = self.schema.get(sobject)
        if obj is None or not self.permissions.object_access(obj.name).read:
            return None
        access = self.permissions.object_access(obj.name)
        fields_: list[FieldDef] = []
        for fd in obj.fields:
            eff = self._effective_field(obj, fd)
            if eff is not None:
                fields_.append(eff)
        return replace(
            obj,
            fields=tuple(fields_),
            createable=obj.createable and access.create,
            updateable=obj.updateable and access.edit,
            deletable=obj.deletable and access.delete,
        )

    def _effective_field(self, obj: ObjectDef, fd: FieldDef) -> FieldDef | None:
        access = self.permissions.field_access(obj.name, fd.name)
        if access == "none" and fd.name != "Id":
            return None
        if access == "read":
            return replace(fd, createable=False, updateable=False)
        return fd

    def describe_global(self) -> dict[str, Any]:
        """Describe global: ``{"encoding","maxBatchSize","sobjects":[...]}``."""
        with self.lock:
            sobjects = []
            for obj in self.schema.objects():
                visible = self._visible_obj(obj.name)
                if visible is not None:
                    sobjects.append(self._versioned(visible.describe_summary()))
            return {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": sobjects}

    def _versioned(self, body: dict[str, Any]) -> dict[str, Any]:
        urls = body.get("urls")
        if isinstance(urls, dict):
            body["urls"] = {k: v.replace("{version}", self.api_version) for k, v in urls.items()}
        return body

    def describe(self, sobject: str) -> dict[str, Any]:
        """An object's describe JSON as the connected user sees it (404 NOT_FOUND if unknown)."""
        with self.lock:
            obj = self._visible_obj(sobject)
            if obj is None:
                raise SalesforceError(
                    "NOT_FOUND", "The requested resource does not exist", status=404
                )
            return self._versioned(obj.describe(self.schema))

    def object_def(self, sobject: str) -> ObjectDef:
        """The object's definition as the user sees it (FLS applied).

        Raises SalesforceError NOT_FOUND (404, "The requested resource does not exist") for an
        unknown or unreadable object: what the sObject REST resources answer.
        """
        with self.lock:
            obj = self._visible_obj(sobject)
            if obj is None:
                raise SalesforceError(
                    "NOT_FOUND", "The requested resource does not exist", status=404
                )
            return obj

    def visible_field(self, sobject: str, field: str) -> FieldDef | None:
        """The field (read-only if FLS says read), or None if unknown or hidden by FLS."""
        with self.lock:
            obj = self.schema.get(sobject)
            if obj is None:
                return None
            fd = obj.field(field)
            return None if fd is None else self._effective_field(obj, fd)

    def sobject_of_id(self, record_id: str) -> str | None:
        """The object name an id belongs to, by key prefix."""
        obj = self.schema.by_key_prefix(record_id[:3]) if len(record_id) >= 3 else None
        return None if obj is None else obj.name

    # ---- the DML pipeline shared by REST and Bulk ----
    def _resolve_header(
        self, obj: ObjectDef, headers: Sequence[str], surface: Surface
    ) -> list[_Col]:
        cols: list[_Col] = []
        for pos, header in enumerate(headers):
            key = f"c{pos}"
            if "." not in header:
                fd = self.visible_field(obj.name, header)
                if fd is None:
                    raise self._unknown_column(obj, header, header, surface)
                cols.append(_Col(header, pos, key, fd))
                continue
            rel_part, _, parent_field_name = header.rpartition(".")
            type_hint: str | None = None
            if ":" in rel_part:
                type_hint, _, rel_part = rel_part.partition(":")
            ref = obj.relationship(rel_part) if "." not in rel_part else None
            ref = self._effective_field(obj, ref) if ref is not None else None
            if ref is None:
                raise self._unknown_column(obj, header, rel_part, surface)
            targets = [
                t for t in ref.reference_to if type_hint is None or t.lower() == type_hint.lower()
            ]
            parent = self.schema.get(targets[0]) if targets else None
            pfd = self.visible_field(parent.name, parent_field_name) if parent else None
            if parent is None or pfd is None:
                raise self._unknown_column(obj, header, header, surface)
            lookup_error = None
            if not (pfd.external_id or pfd.id_lookup):
                # UNVERIFIED wording; Salesforce only allows indexed (externalId/idLookup) fields.
                lookup_error = _enc(
                    "INVALID_FIELD",
                    f"Field {pfd.name} on entity {parent.name} is not an external ID or "
                    f"idLookup field and cannot be used in a relationship",
                )
            cols.append(_Col(header, pos, key, ref, parent, pfd, lookup_error))
        return cols

    @staticmethod
    def _unknown_column(
        obj: ObjectDef, header: str, name: str, surface: Surface
    ) -> SalesforceError:
        if surface == "bulk":
            return SalesforceError("InvalidBatch", f"Field name not found : {header}")
        return SalesforceError(
            "INVALID_FIELD", f"No such column '{name}' on sobject of type {obj.name}"
        )

    def _process(
        self,
        obj: ObjectDef,
        op: str,
        frame: pl.DataFrame,
        ext: FieldDef | None,
        surface: Surface,
        *,
        rows: int | None = None,
    ) -> tuple[pl.Series, pl.Series, pl.Series, int]:
        """Validate and apply rows; returns (ids, created, encoded errors, apex ms) as series.

        Everything is column-wise; rows are looped over in Python only by the checks that a
        job actually needs (relationship columns, unique fields, triggers, lock rules).
        """
        n = frame.height if frame.width or rows is None else rows
        cols = self._resolve_header(obj, frame.columns, surface)
        table = self._table(obj.name)
        if surface == "bulk":
            work = frame.select(
                pl.when(pl.col(c.header) == "#N/A")
                .then(pl.lit(_NULL))
                .when(pl.col(c.header) == "")
                .then(pl.lit(None, dtype=pl.String))
                .otherwise(pl.col(c.header).cast(pl.String))
                .alias(c.key)
                for c in cols
            )
        else:
            work = frame.select(pl.col(c.header).cast(pl.String).alias(c.key) for c in cols)
        if not cols:
            work = pl.DataFrame({"__row": range(n)})

        is_delete = op in ("delete", "hardDelete")
        by_id = op in ("update", "delete", "hardDelete") or (ext is not None and ext.name == "Id")
        key_col = next(
            (
                c
                for c in cols
                if c.parent is None
                and c.field.name == ("Id" if by_id else (ext.name if ext else ""))
            ),
            None,
        )
        tgt, key_err = self._resolve_targets(
            obj,
            op=op,
            table=table,
            work=work,
            key_col=key_col,
            ext=ext,
            by_id=by_id,
            n=n,
            surface=surface,
        )
        access = self.permissions.object_access(obj.name)
        key_err = self._permission_errors(obj, op, access, tgt, key_err)
        if (
            obj.name == "Lead"
            and not self.allow_update_converted_leads
            and not is_delete
            and "IsConverted" in table.cols
            and tgt.null_count() < n
        ):
            converted = table.series("IsConverted").gather(tgt).fill_null(False)
            key_err = key_err.zip_with(
                key_err.is_not_null() | ~converted,
                _const(
                    _enc("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead"),
                    n,
                    pl.String(),
                ),
            )

        work = work.with_columns(tgt.alias("__tgt"), key_err.alias("__kerr"))
        data_cols = [] if is_delete else [c for c in cols if c is not key_col or not by_id]
        outputs, failing, error = self._row_exprs(obj, op, data_cols, surface)
        # Lazy so that polars eliminates common subexpressions (id checksums are costly).
        out = work.lazy().select([*outputs, failing.alias("__bad")]).collect()
        errs = _Errors(_errors_where(work, out["__bad"], error))
        values: dict[str, pl.Series] = {}
        masks: dict[str, pl.Series] = {}
        for c in data_cols:
            if c.parent is None and c.field.name == "Id":
                continue  # never a value: the Id column of an insert is an error (above)
            vals = out[f"v_{c.key}"]
            mask = out[f"s_{c.key}"]
            if c.parent is not None:
                vals = self._resolve_relationship(c, vals, mask, errs)
            elif c.field.type == "reference":
                self._check_references(c, vals, errs)
            if c.field.name in values:  # two columns for one field: the later one wins
                old_v, old_m = values[c.field.name], masks[c.field.name]
                values[c.field.name] = vals.zip_with(mask, old_v.cast(vals.dtype))
                masks[c.field.name] = old_m | mask
            else:
                values[c.field.name], masks[c.field.name] = vals, mask
        ok = errs.as_series().is_null()
        ins = ok & tgt.is_null()
        inserts = int(ins.sum())
        if inserts == n:  # a pure load: no stored id to look up
            row_ids = self._allocator(obj.key_prefix).take_series(inserts)
        else:
            row_ids = table.series("Id").gather(tgt) if table.n else _nulls(pl.String(), n)
            if inserts:
                new_ids = self._allocator(obj.key_prefix).take_series(inserts)
                row_ids = row_ids.clone().scatter(ins.arg_true(), new_ids)

        if not is_delete:
            self._check_unique(
                obj,
                table=table,
                values=values,
                masks=masks,
                tgt=tgt,
                row_ids=row_ids,
                errs=errs,
                ext=ext,
            )
            if self.duplicate_rules_enabled:
                self._check_duplicate_rules(obj, values, masks, tgt, errs)
        apex_ms = self._run_triggers(
            obj, op=op, table=table, values=values, masks=masks, tgt=tgt, errs=errs
        )
        self._check_locks(obj, table=table, values=values, tgt=tgt, row_ids=row_ids, errs=errs)

        err_s = errs.as_series()
        ok = err_s.is_null()
        ins = ok & tgt.is_null()
        upd = ok & tgt.is_not_null()
        now = self._now()
        if is_delete:
            self._delete_many(table, tgt.filter(upd), hard=op == "hardDelete", now=now)
        else:
            start = table.n
            inserted = self._write_inserts(
                obj, table=table, ins=ins, row_ids=row_ids, values=values, now=now
            )
            self._write_updates(
                obj, table=table, upd=upd, tgt=tgt, values=values, masks=masks, now=now
            )
            if obj.name in _DERIVING_OBJECTS:
                positions = tgt.filter(upd).to_list() + list(range(start, start + inserted))
                self._after_write(obj, table, positions)
        ids_out = (
            row_ids if err_s.null_count() == n else row_ids.zip_with(ok, _nulls(pl.String(), n))
        )
        created = ins if not is_delete else pl.repeat(False, n, dtype=pl.Boolean, eager=True)
        return ids_out, created, err_s, apex_ms

    def _resolve_targets(
        self,
        obj: ObjectDef,
        *,
        op: str,
        table: _Table,
        work: pl.DataFrame,
        key_col: _Col | None,
        ext: FieldDef | None,
        by_id: bool,
        n: int,
        surface: Surface,
    ) -> tuple[pl.Series, pl.Series]:
        """Row positions each input row updates (null = insert) and key errors."""
        if op == "update":
            missing = _enc("MISSING_ARGUMENT", "Id not specified in an update call")
        elif op in ("delete", "hardDelete"):
            missing = _enc("MISSING_ARGUMENT", "Id not specified in a delete call")
        else:
            missing = _enc("MISSING_ARGUMENT", f"{ext.name if ext else 'Id'} not specified")
        no_err = _nulls(pl.String(), n).alias("__kerr")
        no_tgt = _nulls(pl.Int64(), n).alias("__tgt")
        if op == "insert":
            return no_tgt, no_err
        if key_col is None:
            if not (op == "upsert" and by_id):
                return no_tgt, _const(missing, n, pl.String()).alias("__kerr")
            return no_tgt, no_err
        if n >= _VECTOR_MIN:
            return self._resolve_targets_vectorised(
                obj, op=op, table=table, work=work, key_col=key_col, ext=ext, by_id=by_id,
                missing=missing, surface=surface,
            )  # fmt: skip
        tgt: list[int | None] = [None] * n
        key_err: list[str | None] = [None] * n
        if by_id:
            # Per row in Python: the id expressions (id_exprs) cost milliseconds to set up,
            # too much for a single-record REST call.
            prefix = obj.key_prefix
            index = table.id_index()
            for i, raw in enumerate(work[key_col.key].to_list()):
                if raw is None or raw == _NULL:
                    if op != "upsert":
                        key_err[i] = missing
                    continue
                if not is_well_formed(raw):
                    key_err[i] = _enc("MALFORMED_ID", f"malformed id {raw}")
                    continue
                rid = _to18(raw[:15])
                pos = index.get(rid) if rid[:3] == prefix else None
                if pos is None:
                    key_err[i] = _enc("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
                elif pos in table.purged or (table.is_deleted(pos) and op != "hardDelete"):
                    key_err[i] = _enc("ENTITY_IS_DELETED", "entity is deleted")
                else:
                    tgt[i] = pos
        else:
            assert ext is not None
            frame, key_series = _external_keys(work, key_col, surface, ext)
            keys = key_series.to_list()
            dup = key_series.is_duplicated().to_list() if n > 1 else [False] * n
            raws = frame["raw"].to_list()
            idx = self._key_index(obj, ext)
            for i, key in enumerate(keys):
                raw = raws[i]
                if key is None:
                    if raw is None or raw == _NULL:
                        key_err[i] = missing
                    continue  # an unparseable key: its value error is reported
                if dup[i]:
                    key_err[i] = _enc("DUPLICATE_VALUE", f"Duplicate external id specified: {raw}")
                    continue
                found = idx.get(key)
                if found is None:
                    continue
                if isinstance(found, int):
                    tgt[i] = found
                else:
                    key_err[i] = _enc(
                        "DUPLICATE_EXTERNAL_ID",
                        "A user-specified external ID matches more than one record during an "
                        "upsert.",
                    )
        return (
            pl.Series("__tgt", tgt, dtype=pl.Int64),
            pl.Series("__kerr", key_err, dtype=pl.String),
        )

    def _resolve_targets_vectorised(
        self,
        obj: ObjectDef,
        *,
        op: str,
        table: _Table,
        work: pl.DataFrame,
        key_col: _Col,
        ext: FieldDef | None,
        by_id: bool,
        missing: str,
        surface: Surface,
    ) -> tuple[pl.Series, pl.Series]:
        """``_resolve_targets`` for large frames: joins instead of per-row lookups (same
        answers; the test suite runs both paths on the same inputs)."""
        src = pl.col(key_col.key)
        raw = pl.col("raw")
        absent = raw.is_null() | (raw == _NULL)
        if by_id:
            # An 18-character id whose upper-cased suffix gives a stored (canonical) id has
            # the right checksum: the costly checksum expressions run only on the other rows.
            quick = pl.when(src.str.len_chars() == 18).then(
                pl.concat_str([src.str.slice(0, 15), src.str.slice(15, 3).str.to_uppercase()])
            )
            frame = (
                work.lazy()
                .select(
                    src.alias("raw"),
                    src.str.contains(_ID_RE).fill_null(False).alias("shape"),
                    quick.alias("id"),
                )
                .collect()
            )
            # Every stored id of this table has the object's prefix: other ids cannot match.
            pos = self._match_stored(table, "Id", frame["id"], ci=False, live_only=False)["pos"]
            ok = (pos.is_not_null() & frame["shape"]).fill_null(False)
            rest = ~ok & frame["raw"].is_not_null()
            pos = pos.zip_with(ok, _nulls(pl.Int64(), pos.len()))
            if rest.any():
                well_formed, id18 = id_exprs(pl.col("raw"))
                other = (
                    frame.lazy()
                    .filter(rest)
                    .select(well_formed.alias("ok"), id18.alias("id"))
                    .collect()
                )
                found = self._match_stored(table, "Id", other["id"], ci=False, live_only=False)
                where = rest.arg_true()
                pos = pos.scatter(where, found["pos"])
                ok = ok.scatter(where, other["ok"])
            gone = pos.is_not_null() & ~table.live_at(pos, include_deleted=op == "hardDelete")
            frame = frame.with_columns(ok.alias("ok"), pos.alias("pos"), gone.alias("gone"))
            err = (
                pl.when(absent)
                .then(pl.lit(None if op == "upsert" else missing, dtype=pl.String))
                .when(~pl.col("ok"))
                .then(pl.concat_str([pl.lit(_enc("MALFORMED_ID", "malformed id ")), raw]))
                .when(pl.col("pos").is_null())
                .then(pl.lit(_enc("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")))
                .when(pl.col("gone"))
                .then(pl.lit(_enc("ENTITY_IS_DELETED", "entity is deleted")))
            )
            failing = (
                (absent & pl.lit(op != "upsert"))
                | (~absent & (~pl.col("ok") | pl.col("pos").is_null() | pl.col("gone")))
            ).fill_null(True)
            out = frame.select(
                pl.when(~failing & ~absent).then(pl.col("pos")).alias("__tgt"),
                failing.alias("__bad"),
            )
            return out["__tgt"], _errors_where(frame, out["__bad"], err).alias("__kerr")
        assert ext is not None
        frame, keys = _external_keys(work, key_col, surface, ext)
        if ext.name not in table.cols or table.n == 0:
            match = pl.DataFrame(
                {"pos": _nulls(pl.Int64(), keys.len()), "hits": _const(0, keys.len(), pl.UInt32())}
            )
        else:
            ci = ext.key_case_insensitive and keys.dtype == pl.String
            match = self._match_stored(table, ext.name, keys, ci=ci, live_only=True)
        frame = frame.with_columns(
            keys.alias("key"), _duplicated(keys).alias("dup"), match["pos"], match["hits"]
        )
        key = pl.col("key")
        err = (
            pl.when(key.is_null())
            .then(pl.when(absent).then(pl.lit(missing)))
            .when(pl.col("dup"))
            .then(
                pl.concat_str(
                    [pl.lit(_enc("DUPLICATE_VALUE", "Duplicate external id specified: ")), raw]
                )
            )
            .when(pl.col("hits") > 1)
            .then(
                pl.lit(
                    _enc(
                        "DUPLICATE_EXTERNAL_ID",
                        "A user-specified external ID matches more than one record during an "
                        "upsert.",
                    )
                )
            )
        )
        failing = (key.is_null() & absent) | (
            key.is_not_null() & (pl.col("dup") | (pl.col("hits") > 1))
        )
        out = frame.select(
            pl.when(key.is_not_null() & ~pl.col("dup") & (pl.col("hits") == 1))
            .then(pl.col("pos"))
            .alias("__tgt"),
            failing.alias("__bad"),
        )
        return out["__tgt"], _errors_where(frame, out["__bad"], err).alias("__kerr")

    @staticmethod
    def _match_stored(
        table: _Table, name: str, keys: pl.Series, *, ci: bool, live_only: bool
    ) -> pl.DataFrame:
        """``_match_keys`` of ``keys`` against the stored ``name`` column (lower-cased when
        ``ci``; live records only when ``live_only``). A job small next to its table reads the
        table's sorted key index (O(job), see ``_SortedKeys``); a large one hashes the column."""
        if keys.len() * _INDEX_SHARE <= table.n:
            index = table.sorted_index(name, keys.dtype, ci=ci, live_only=live_only)
            found = index.match(table, keys)
            if found is not None:
                return found
        stored = _norm(table.series(name), keys.dtype, ci=ci)
        candidate = table.live_mask() if live_only else stored.is_not_null()
        return _match_keys(stored, candidate, keys)

    @staticmethod
    def _permission_errors(
        obj: ObjectDef,
        op: str,
        access: ObjectAccess,
        tgt: pl.Series,
        key_err: pl.Series,
    ) -> pl.Series:
        # UNVERIFIED codes/wording: Salesforce answers INSUFFICIENT_ACCESS_OR_READONLY when the
        # profile lacks the object permission; the messages below are the plausible ones.
        can_create = obj.createable and access.create
        can_edit = obj.updateable and access.edit
        can_delete = obj.deletable and access.delete
        if can_create and can_edit and can_delete:
            return key_err
        no_create = _enc(
            "INSUFFICIENT_ACCESS_OR_READONLY", f"entity type cannot be inserted: {obj.name}"
        )
        no_edit = _enc(
            "INSUFFICIENT_ACCESS_OR_READONLY", f"entity type cannot be updated: {obj.name}"
        )
        no_delete = _enc(
            "INSUFFICIENT_ACCESS_OR_READONLY", "insufficient access rights on object id"
        )
        kerr, found = pl.col("kerr"), pl.col("tgt").is_not_null()
        if op in ("delete", "hardDelete"):
            denied = pl.lit(no_delete if not can_delete else None, dtype=pl.String)
        else:
            denied = (
                pl.when(~found & pl.lit(not can_create))
                .then(pl.lit(no_create))
                .when(found & pl.lit(not can_edit))
                .then(pl.lit(no_edit))
            )
        frame = pl.DataFrame({"tgt": tgt, "kerr": key_err})
        return frame.select(pl.coalesce(kerr, denied).alias("__kerr")).to_series()

    def _row_exprs(
        self, obj: ObjectDef, op: str, data_cols: list[_Col], surface: Surface
    ) -> tuple[list[pl.Expr], pl.Expr, pl.Expr]:
        """How to validate every row: (``v_*`` values and ``s_*`` masks, "the row fails",
        the row's encoded error). The error builds strings: run it on failing rows only."""
        ins = pl.col("__tgt").is_null()
        errs: list[pl.Expr] = [pl.col("__kerr")]
        fails: list[pl.Expr] = [pl.col("__kerr").is_not_null()]
        readonly: list[pl.Expr] = []
        value_errs: list[pl.Expr] = []
        outputs: list[pl.Expr] = []
        for c in data_cols:
            src = pl.col(c.key)
            setc = src.is_not_null()
            fd = c.field
            if c.parent is None and fd.name == "Id":
                fails.append(setc)
                errs.append(
                    pl.when(setc).then(
                        _lit_err(
                            "INVALID_FIELD_FOR_INSERT_UPDATE",
                            ["Id"],
                            "cannot specify Id in an insert call",
                        )
                    )
                )
                continue
            if not fd.createable or not fd.updateable:
                bad = (ins & pl.lit(not fd.createable)) | (~ins & pl.lit(not fd.updateable))
                readonly.append(pl.when(setc & bad).then(pl.lit(fd.name)))
                fails.append(setc & bad)
            canon, err, failing = _value_exprs(c, src, surface)
            if err is not None and failing is not None:
                value_errs.append(err)
                fails.append(failing)
            outputs += [canon.alias(f"v_{c.key}"), setc.alias(f"s_{c.key}")]
        if readonly:
            errs.append(
                _err_with_names(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    readonly,
                    "Unable to create/update fields: ",
                    _READONLY_TAIL,
                )
            )
        errs += value_errs
        required: list[pl.Expr] = []
        for fd in obj.fields:
            if fd.required_on_create:
                provided = [
                    pl.col(c.key).is_not_null() & (pl.col(c.key) != _NULL)
                    for c in data_cols
                    if c.field.name == fd.name
                ]
                has = pl.any_horizontal(provided) if provided else pl.lit(False)
                required.append(pl.when(ins & ~has).then(pl.lit(fd.name)))
                fails.append(ins & ~has)
        for c in data_cols:
            fd = c.field
            if not fd.nillable and fd.type != "boolean" and fd.name != "Id":
                missing = ~ins & (pl.col(c.key) == _NULL).fill_null(False)
                required.append(pl.when(missing).then(pl.lit(fd.name)))
                fails.append(missing)
        if required:
            errs.append(
                _err_with_names(
                    "REQUIRED_FIELD_MISSING", required, "Required fields are missing: [", "]"
                )
            )
        return outputs, pl.any_horizontal(fails), pl.coalesce(errs)

    def _scalar_key(self, fd: FieldDef, raw: str) -> Any:
        """A lookup value in the form the key index stores it (None if it cannot match)."""
        if fd.type in _FLOAT:
            try:
                return float(raw)
            except ValueError:
                return None
        if fd.type == "int":
            try:
                return int(raw)
            except ValueError:
                return None
        if fd.type in ("id", "reference"):
            return raw[:15] + checksum(raw[:15]) if is_well_formed(raw) else None
        return raw.lower() if fd.key_case_insensitive else raw

    def _resolve_relationship(
        self, c: _Col, raw_series: pl.Series, mask_series: pl.Series, errors: _Errors
    ) -> pl.Series:
        """Parent ids for a ``Rel.Field`` column (errors for parents not found)."""
        assert c.parent is not None and c.parent_field is not None
        parent, pfd = c.parent, c.parent_field
        raws, mask, errs = raw_series.to_list(), mask_series.to_list(), errors.as_list()
        out: list[Any] = [None] * len(raws)
        ptable = self._table(parent.name)
        idx = None if pfd.name == "Id" else self._key_index(parent, pfd)
        for i, raw in enumerate(raws):
            if raw is None or errs[i] is not None or not mask[i]:
                continue
            key = self._scalar_key(pfd, raw)
            if idx is None:
                pos = ptable.id_index().get(key) if key and key[:3] == parent.key_prefix else None
                hits = (
                    [pos]
                    if pos is not None and pos not in ptable.purged and not ptable.is_deleted(pos)
                    else []
                )
            else:
                hits = _hits(idx, key) if key is not None else []
            if not hits:
                errs[i] = _enc(
                    "INVALID_FIELD",
                    f"Foreign key external ID: {raw} not found for field {pfd.name} in entity {parent.name}",
                )
            elif len(hits) > 1:
                errs[i] = _enc(
                    "DUPLICATE_EXTERNAL_ID",
                    "A user-specified external ID matches more than one record during an upsert.",
                )
            else:
                out[i] = ptable.get("Id", hits[0])
        return pl.Series(out, dtype=pl.String)

    def _check_references(self, c: _Col, series: pl.Series, errors: _Errors) -> None:
        """A reference must name an existing, live record of one of the referenced objects."""
        if series.null_count() == series.len():
            return
        targets: dict[str, _Table] = {}
        for name in c.field.reference_to:
            target = self.schema.get(name)
            if target is not None:
                targets[target.key_prefix] = self._table(target.name)
        errs = errors.as_list()
        for i, v in enumerate(series.to_list()):
            if v is None or errs[i] is not None:
                continue
            table = targets.get(v[:3])
            pos = table.id_index().get(v) if table is not None else None
            if table is None or pos is None or pos in table.purged:
                errs[i] = _enc("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
            elif table.is_deleted(pos):
                errs[i] = _enc("ENTITY_IS_DELETED", "entity is deleted")

    def _check_unique(
        self,
        obj: ObjectDef,
        *,
        table: _Table,
        values: dict[str, pl.Series],
        masks: dict[str, pl.Series],
        tgt: pl.Series,
        row_ids: pl.Series,
        errs: _Errors,
        ext: FieldDef | None,
    ) -> None:
        tgt_list: list[int | None] | None = None
        ids_list: list[str | None] | None = None
        for name, series in values.items():
            fd = obj.field(name)
            if fd is None or not fd.unique or (ext is not None and ext.name == name):
                continue
            if tgt_list is None or ids_list is None:
                tgt_list, ids_list = tgt.to_list(), row_ids.to_list()
            err_list = errs.as_list()
            idx = self._key_index(obj, fd)
            mask = masks[name].to_list()
            ci = fd.key_case_insensitive
            seen: dict[Any, int] = {}
            for i, v in enumerate(series.to_list()):
                if v is None or err_list[i] is not None or not mask[i]:
                    continue
                key = v.lower() if ci and isinstance(v, str) else v
                found = idx.get(key)
                if found is None:
                    other = None
                elif isinstance(found, int):
                    other = found if found != tgt_list[i] else None
                else:
                    other = next((p for p in found if p != tgt_list[i]), None)
                holder: str | None = None
                if other is not None:
                    holder = table.get("Id", other)
                elif key in seen:
                    holder = ids_list[seen[key]]
                else:
                    seen[key] = i
                if holder is not None:
                    err_list[i] = _enc(
                        "DUPLICATE_VALUE",
                        f"duplicate value found: {fd.name} duplicates value on record with id: "
                        f"{holder[:15]}",
                    )

    def _check_duplicate_rules(
        self,
        obj: ObjectDef,
        values: dict[str, pl.Series],
        masks: dict[str, pl.Series],
        tgt: pl.Series,
        errors: _Errors,
    ) -> None:
        """The standard Lead/Contact/Account duplicate rules, checked on create."""
        sources: tuple[str, ...]
        if obj.name in ("Lead", "Contact"):
            field_name, sources = "Email", ("Contact", "Lead")
        elif obj.name == "Account":
            field_name, sources = "Name", ("Account",)
        else:
            return
        series = values.get(field_name)
        if series is None:
            return
        existing: set[str] = set()
        for source in sources:
            table = self._table(source)
            if field_name not in table.cols:
                continue
            stored = table.series(field_name).filter(table.live_mask())
            existing.update(str(v).lower() for v in stored.to_list() if v)
        err = _enc("DUPLICATES_DETECTED", DUPLICATES_DETECTED_MESSAGE)
        errs = errors.as_list()
        for i, (v, pos) in enumerate(zip(series.to_list(), tgt.to_list(), strict=True)):
            if pos is None and errs[i] is None and v and str(v).lower() in existing:
                errs[i] = err

    def _run_triggers(
        self,
        obj: ObjectDef,
        *,
        op: str,
        table: _Table,
        values: dict[str, pl.Series],
        masks: dict[str, pl.Series],
        tgt: pl.Series,
        errs: _Errors,
    ) -> int:
        triggers = [t for t in self._triggers if t.sobject.lower() == obj.name.lower()]
        if not triggers:
            return 0
        total = 0.0
        err_list = errs.as_list()
        tgt_list = tgt.to_list()
        for trig in triggers:
            ok_rows = [i for i in range(len(err_list)) if err_list[i] is None]
            total += trig.apex_ms_per_record * len(ok_rows)
            fd = obj.field(trig.field) if trig.field else None
            if fd is None:
                continue
            vals_s, mask_s = values.get(fd.name), masks.get(fd.name)
            vals = vals_s.to_list() if vals_s is not None else None
            mask = mask_s.to_list() if mask_s is not None else None
            for i in ok_rows:
                pos = tgt_list[i]
                if vals is not None and mask is not None and mask[i]:
                    value = vals[i]
                elif pos is not None:
                    value = table.get(fd.name, pos)
                else:
                    value = fd.default_value
                if value == trig.equals:
                    event = (
                        "BeforeDelete"
                        if op in ("delete", "hardDelete")
                        else ("BeforeInsert" if pos is None else "BeforeUpdate")
                    )
                    err_list[i] = _enc(
                        "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY",
                        f"SfaTrigger: execution of {event} caused by: {trig.message}",
                    )
        return round(total)

    def _check_locks(
        self,
        obj: ObjectDef,
        *,
        table: _Table,
        values: dict[str, pl.Series],
        tgt: pl.Series,
        row_ids: pl.Series,
        errs: _Errors,
    ) -> None:
        rules = [
            r for r in self._locks if r.sobject is None or r.sobject.lower() == obj.name.lower()
        ]
        if not rules:
            return
        err_list = errs.as_list()
        tgt_list, ids_list = tgt.to_list(), row_ids.to_list()
        ref_fields = [f.name for f in obj.fields if f.type == "reference"]
        ref_values = {f: values[f].to_list() for f in ref_fields if f in values}
        for rule in rules:
            for i in range(len(err_list)):
                if err_list[i] is not None or rule.remaining == 0:
                    continue
                locked = ids_list[i]
                if rule.parent_id15 is not None:
                    refs = [vals[i] for vals in ref_values.values() if vals[i]]
                    pos = tgt_list[i]
                    if pos is not None:
                        refs += [table.get(f, pos) for f in ref_fields if table.get(f, pos)]
                    if not any(str(r)[:15] == rule.parent_id15 for r in refs):
                        continue
                    locked = _to18(rule.parent_id15)
                if locked is None:
                    continue
                if rule.share < 1.0:
                    draw = zlib.crc32(f"{rule.seed}:{ids_list[i]}".encode()) / 2**32
                    if draw >= rule.share:
                        continue
                err_list[i] = _enc(
                    "UNABLE_TO_LOCK_ROW",
                    f"unable to obtain exclusive access to this record or 1 records: {locked}",
                )
                if rule.remaining is not None:
                    rule.remaining -= 1
        self._locks = [r for r in self._locks if r.remaining != 0]

    # ---- writes ----
    def _defaults(self, obj: ObjectDef) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for fd in obj.fields:
            if fd.default_value is not None and fd.defaulted_on_create:
                out[fd.name] = fd.default_value
        if obj.field("OwnerId") is not None:
            out["OwnerId"] = self.user_id
        out["IsDeleted"] = False
        return out

    def _append_columns(
        self, table: _Table, new: Mapping[str, pl.Series | list[Any]], k: int
    ) -> int:
        """Append ``k`` rows given column-wise (every column has ``k`` items)."""
        start = table.n
        small = k < _VECTOR_MIN
        for name, col in table.cols.items():
            if name not in new:
                if small:
                    col.extend([None] * k)
                else:
                    col.extend_series(_nulls(col.dtype, k))
        for name, added in new.items():
            col = table.column(name)
            if small:
                col.extend(added.to_list() if isinstance(added, pl.Series) else added)
            else:
                col.extend_series(
                    added if isinstance(added, pl.Series) else pl.Series(added, dtype=col.dtype)
                )
        table.n = start + k
        if not small and k * _INDEX_SHARE > start:
            # Rebuilt on first single-record use: a million dict entries per job cost more
            # than the job's own column work.
            table.id_cache = None
            for fname in [f for f in table.keys if f in new]:
                del table.keys[fname]
        else:  # few rows next to the table: adding them costs less than a rebuild
            self._index_appended(table, new, start, k)
        table.prune()
        if self._journal is not None:
            self._journal.append(("ins", table, start, k))
        return start

    def _index_appended(
        self, table: _Table, new: Mapping[str, pl.Series | list[Any]], start: int, k: int
    ) -> None:
        """Add ``k`` rows appended at ``start`` to the id cache and the dict key indexes."""

        def listed(name: str) -> list[Any] | None:
            added = new.get(name)
            return added.to_list() if isinstance(added, pl.Series) else added

        if table.id_cache is not None:
            ids = listed("Id")
            assert ids is not None
            table.id_cache.update(zip(ids, range(start, start + k), strict=True))
        if not table.keys:
            return
        obj = self.schema.get(table.name)
        deleted: list[Any] = listed("IsDeleted") or [False] * k
        for fname, idx in table.keys.items():
            fd = obj.field(fname) if obj else None
            values = listed(fname)
            if values is None:
                continue
            ci = fd is not None and fd.key_case_insensitive
            for offset, v in enumerate(values):
                if v is not None and not deleted[offset]:
                    _idx_add(idx, v.lower() if ci and isinstance(v, str) else v, start + offset)

    def _append(self, table: _Table, rows: list[dict[str, Any]]) -> int:
        names: dict[str, None] = {}
        for r in rows:
            names.update(dict.fromkeys(r))
        return self._append_columns(table, {n: [r.get(n) for r in rows] for n in names}, len(rows))

    def _write_inserts(
        self,
        obj: ObjectDef,
        *,
        table: _Table,
        ins: pl.Series,
        row_ids: pl.Series,
        values: dict[str, pl.Series],
        now: str,
    ) -> int:
        """Append the rows flagged in ``ins``; returns how many."""
        k = int(ins.sum())
        if not k:
            return 0
        every = k == ins.len()
        defaults = self._defaults(self.schema.get(obj.name) or obj)
        new: dict[str, pl.Series] = {"Id": row_ids if every else row_ids.filter(ins)}
        for name, vals in values.items():
            series = vals if every else vals.filter(ins)
            if name in defaults:
                series = series.fill_null(defaults[name])
            new[name] = series
        for name, dflt in defaults.items():
            if name not in new:
                new[name] = _const(dflt, k, table.dtype(name))
        for name in _AUDIT_CREATE:
            new[name] = _const(self.user_id if name.endswith("ById") else now, k, pl.String())
        self._append_columns(table, new, k)
        return k

    def _write_updates(
        self,
        obj: ObjectDef,
        *,
        table: _Table,
        upd: pl.Series,
        tgt: pl.Series,
        values: dict[str, pl.Series],
        masks: dict[str, pl.Series],
        now: str,
    ) -> None:
        k = int(upd.sum())
        if not k:
            return
        every = k == upd.len()
        positions_all = tgt if every else tgt.filter(upd)
        # A job that rewrites every stored record once (a full re-sync) replaces whole
        # columns: a gather in record order instead of a scatter per column.
        order: pl.Series | None = None
        identity = False
        if every and k == table.n and self._journal is None and k >= _VECTOR_MIN:
            stored_order = pl.int_range(0, k, eager=True)
            identity = bool((positions_all == stored_order).all())
            candidate = positions_all.arg_sort() if not identity else stored_order
            if identity or bool((positions_all.gather(candidate) == stored_order).all()):
                order = candidate
        for name, vals in values.items():
            mask = masks[name]
            if every and mask.all():
                if order is not None:
                    self._replace_column(table, name, vals if identity else vals.gather(order))
                else:
                    self._set_many(table, name, positions_all, vals)
                continue
            chosen = upd & mask
            self._set_many(table, name, tgt.filter(chosen), vals.filter(chosen))
        for name in _AUDIT_UPDATE:
            value = self.user_id if name.endswith("ById") else now
            if order is not None:
                self._replace_column(table, name, _const(value, k, pl.String()))
            else:
                self._set_many(table, name, positions_all, _const(value, k, pl.String()))

    @staticmethod
    def _replace_column(table: _Table, name: str, series: pl.Series) -> None:
        col = _Column(table.dtype(name))
        col.extend_series(series)
        table.cols[name] = col
        table.forget(name)  # rebuilt on next use

    def _set_many(
        self, table: _Table, name: str, positions: pl.Series, new_vals: pl.Series
    ) -> None:
        """Write one field of many records: a scatter for many, per record (keeping key
        indexes and the undo journal) for a few."""
        if positions.len() == 0:
            return
        if self._journal is None and positions.len() >= _VECTOR_MIN:
            if name in table.keys or any(
                fname == name or (live_only and name == "IsDeleted")
                for fname, live_only in table.sorted_keys
            ):
                self._set_many_indexed(table, name, positions, new_vals)
            else:
                table.column(name).scatter(positions, new_vals)
            return
        for pos, v in zip(positions.to_list(), new_vals.to_list(), strict=True):
            self._set(table, pos, {name: v})

    def _set_many_indexed(
        self, table: _Table, name: str, positions: pl.Series, new_vals: pl.Series
    ) -> None:
        """``_set_many``'s scatter for a field some key index depends on: a write that is a
        small share of the table updates the indexes at the rows whose value changes (an
        upsert rewrites its key with the same value), a larger one drops them."""
        col = table.column(name)
        k = positions.len()
        if k * _INDEX_SHARE > table.n or col.dtype is None or positions.n_unique() != k:
            col.scatter(positions, new_vals)
            table.forget(name)  # rebuilt on next use
            return
        old = table.gather(name, positions)
        new = new_vals if new_vals.dtype == old.dtype else new_vals.cast(old.dtype)
        changed = old.ne_missing(new)
        if not changed.any():
            if new.dtype.is_float():  # equal floats may still differ in sign (-0.0 == 0.0)
                col.scatter(positions, new)
            return  # an upsert rewriting its keys as stored: nothing to write or re-index
        moved = positions.filter(changed)
        col.scatter(positions, new)
        table.touch(name, moved)
        idx = table.keys.get(name)
        if idx is None:
            return
        obj = self.schema.get(table.name)
        fd = obj.field(name) if obj else None
        live = table.live_at(moved)
        for pos, before, after, alive in zip(
            moved.to_list(),
            old.filter(changed).to_list(),
            new.filter(changed).to_list(),
            live.to_list(),
            strict=True,
        ):
            self._key_remove(idx, fd, pos, before)
            if alive:
                self._key_add(idx, fd, pos, after)

    def _delete_many(self, table: _Table, positions: pl.Series, *, hard: bool, now: str) -> None:
        """Move records to the recycle bin (``hard``: purge them); column-wise when many."""
        if self._journal is not None or positions.len() < _VECTOR_MIN:
            for pos in positions.to_list():
                self._delete_at(table, pos, hard=hard, now=now)
            return
        k = positions.len()
        self._set_many(table, "IsDeleted", positions, _const(True, k, pl.Boolean()))
        self._set_many(table, "SystemModstamp", positions, _const(now, k, pl.String()))
        if hard:
            table.purged.update(positions.to_list())
            table.touch("IsDeleted", positions)
        table.keys.clear()  # deleted records leave every key index: rebuilt on next use

    def _delete_at(self, table: _Table, pos: int, *, hard: bool, now: str) -> None:
        obj = self.schema.get(table.name)
        for fname, idx in table.keys.items():
            self._key_remove(idx, obj.field(fname) if obj else None, pos, table.get(fname, pos))
        self._set(table, pos, {"IsDeleted": True, "SystemModstamp": now})
        if hard:
            table.purged.add(pos)
            table.touch("IsDeleted", (pos,))
            if self._journal is not None:
                self._journal.append(("purge", table, pos))

    def _set_list(self, table: _Table, name: str, positions: list[int], vals: list[Any]) -> None:
        dtype = table.dtype(name)
        self._set_many(
            table,
            name,
            pl.Series(positions, dtype=pl.Int64),
            pl.Series(vals, dtype=dtype, strict=True) if dtype is not None else pl.Series(vals),
        )

    def _after_write(self, obj: ObjectDef, table: _Table, positions: list[int]) -> None:
        """Values Salesforce derives on save: names, closed flags, OCR primary, EMR address."""
        name = obj.name
        if not positions:
            return
        get = table.get
        if name in ("Contact", "Lead", "User"):
            self._set_list(
                table,
                "Name",
                positions,
                [
                    " ".join(p for p in (get("FirstName", pos), get("LastName", pos)) if p) or None
                    for pos in positions
                ],
            )
        elif name == "Opportunity":
            stages = [get("StageName", p) for p in positions]
            self._set_list(
                table, "IsClosed", positions, [s in ("Closed Won", "Closed Lost") for s in stages]
            )
            self._set_list(table, "IsWon", positions, [s == "Closed Won" for s in stages])
        elif name == "Case":
            fresh = [p for p in positions if get("CaseNumber", p) is None]
            self._set_list(table, "CaseNumber", fresh, [f"{1000 + p:08d}" for p in fresh])
            self._set_list(
                table, "IsClosed", positions, [get("Status", p) == "Closed" for p in positions]
            )
        elif name == "OpportunityContactRole":
            self._one_primary(table, positions)
        elif name == "EmailMessageRelation":
            for pos in positions:
                rel = get("RelationId", pos)
                derived: dict[str, Any] = {
                    "RelationObjectType": self.sobject_of_id(rel) if rel else None
                }
                if rel and not get("RelationAddress", pos):
                    located = self._locate(rel)
                    if located is not None:
                        derived["RelationAddress"] = located[1].get("Email", located[2])
                self._set(table, pos, derived)

    def _one_primary(self, table: _Table, positions: list[int]) -> None:
        """Marking a contact role primary clears the flag on the opportunity's other roles."""
        winners: dict[str, int] = {}
        for pos in positions:
            opp = table.get("OpportunityId", pos)
            if table.get("IsPrimary", pos) and opp:
                winners[opp] = pos
        if not winners:
            return
        primary, opps = table.values("IsPrimary"), table.values("OpportunityId")
        deleted = table.values("IsDeleted")
        for pos in range(table.n):
            if (
                primary[pos]
                and opps[pos] in winners
                and winners[opps[pos]] != pos
                and not deleted[pos]
            ):
                self._set(table, pos, {"IsPrimary": False})

    # ---- single-record DML (REST) ----
    def _json_cell(self, fd: FieldDef | None, value: Any, name: str) -> str:
        """One JSON value as an internal cell; JSON type mismatches fail like Salesforce."""
        if value is None or value == "":
            return _NULL  # JSON null and "" both clear a field over REST
        ftype = fd.type if fd is not None else "string"
        label = fd.label if fd is not None else name
        bad = SalesforceError(
            "INVALID_TYPE_ON_FIELD_IN_RECORD",
            f"{label}: value not of required type: {value}",
            [fd.name] if fd is not None else [],
        )
        if isinstance(value, bool):
            if ftype != "boolean":
                raise bad
            return "true" if value else "false"
        if ftype == "boolean":
            raise bad
        if isinstance(value, int | float):
            if ftype in ("date", "datetime", "reference", "id"):
                raise bad
            if isinstance(value, float):
                # JSON has one number type: 12.0 is a fine value for an integer field.
                return str(int(value)) if ftype == "int" and value.is_integer() else repr(value)
            return str(value)
        if isinstance(value, str):
            return value
        raise bad

    def _rest_frame(
        self,
        obj: ObjectDef,
        values: Mapping[str, Any],
        *,
        skip: Sequence[str] = (),
        key_cell: tuple[str, str] | None = None,
    ) -> pl.DataFrame:
        """One-row frame of internal cells; ``key_cell`` (field, value) is added as a column, so a
        body that holds nothing else still makes one row."""
        cells: dict[str, str] = {}
        skipped = {s.lower() for s in skip} | {"attributes"}
        for key, value in values.items():
            if key.lower() in skipped:
                continue
            if isinstance(value, dict):
                ref = obj.relationship(key)
                ref = self._effective_field(obj, ref) if ref is not None else None
                if ref is None:
                    raise self._unknown_column(obj, key, key, "rest")
                inner = {k: v for k, v in value.items() if k.lower() != "attributes"}
                if len(inner) != 1:
                    msg = f"Exactly one external ID field must be given for relationship {key}"
                    raise SalesforceError("INVALID_FIELD", msg)
                ((fname, inner_value),) = inner.items()
                cells[f"{key}.{fname}"] = self._json_cell(None, inner_value, f"{key}.{fname}")
                continue
            fd = self.visible_field(obj.name, key)
            if fd is None:
                raise self._unknown_column(obj, key, key, "rest")
            cells[key] = self._json_cell(fd, value, key)
        if key_cell is not None:
            cells[key_cell[0]] = key_cell[1]
        return pl.DataFrame(
            {k: [v] for k, v in cells.items()}, schema=dict.fromkeys(cells, pl.String)
        )

    def _rest_apply(
        self, obj: ObjectDef, op: str, frame: pl.DataFrame, ext: FieldDef | None = None
    ) -> tuple[str | None, bool]:
        ids, created, errs, _ = self._process(obj, op, frame, ext, "rest", rows=1)
        if errs[0] is not None:
            error = _dec(errs[0])
            if error.code in ("NOT_FOUND", "ENTITY_IS_DELETED"):
                error.status = 404
            raise error
        return ids[0], created[0]

    def _rest_target(
        self, obj: ObjectDef, record_id: str, *, allow_deleted: bool = False
    ) -> tuple[_Table, int]:
        """Find a record addressed by a REST URL (404s as Salesforce answers them)."""
        if not is_well_formed(record_id):
            msg = f"Provided external ID field does not exist or is not accessible: {record_id}"
            raise SalesforceError("NOT_FOUND", msg, status=404)
        located = self._locate(record_id)
        if located is None or located[0].name != obj.name:
            raise SalesforceError("NOT_FOUND", "The requested resource does not exist", status=404)
        _, table, pos = located
        if table.is_deleted(pos) and not allow_deleted:
            raise SalesforceError("ENTITY_IS_DELETED", "entity is deleted", status=404)
        return table, pos

    def create(self, sobject: str, values: Mapping[str, Any]) -> str:
        """Insert one record from JSON values; returns its 18-character id."""
        with self.lock:
            obj = self.object_def(sobject)
            record_id, _ = self._rest_apply(obj, "insert", self._rest_frame(obj, values))
            assert record_id is not None
            return record_id

    def update(self, sobject: str, record_id: str, values: Mapping[str, Any]) -> None:
        """Update one record from JSON values (an ``Id`` key in the body is ignored)."""
        with self.lock:
            obj = self.object_def(sobject)
            self._rest_target(obj, record_id)
            frame = self._rest_frame(obj, values, skip=("Id",), key_cell=("Id", record_id))
            self._rest_apply(obj, "update", frame)

    def _ext_field(self, obj: ObjectDef, ext_field: str, *, lookup: bool) -> FieldDef:
        fd = self.visible_field(obj.name, ext_field)
        allowed = fd is not None and (
            fd.name == "Id" or fd.external_id or (lookup and fd.id_lookup)
        )
        if fd is None or not allowed:
            msg = f"Provided external ID field does not exist or is not accessible: {ext_field}"
            raise SalesforceError("NOT_FOUND", msg, status=404)
        return fd

    def upsert(
        self, sobject: str, ext_field: str, ext_value: str, values: Mapping[str, Any]
    ) -> tuple[str, bool]:
        """Upsert by external id; returns (id, created). MoreThanOneRecord on several matches."""
        with self.lock:
            obj = self.object_def(sobject)
            fd = self._ext_field(obj, ext_field, lookup=False)
            if fd.name == "Id":
                if not ext_value:
                    return self.create(obj.name, values), True
                self.update(obj.name, ext_value, values)
                return _to18(ext_value[:15]), False
            key = self._scalar_key(fd, ext_value)
            hits = _hits(self._key_index(obj, fd), key) if key is not None else []
            if len(hits) > 1:
                table = self._table(obj.name)
                raise MoreThanOneRecord(obj.name, [table.get("Id", p) for p in hits])
            frame = self._rest_frame(obj, values, skip=(fd.name,), key_cell=(fd.name, ext_value))
            record_id, created = self._rest_apply(obj, "upsert", frame, fd)
            assert record_id is not None
            return record_id, created

    def delete(self, sobject: str, record_id: str) -> None:
        """Move one record to the recycle bin (ENTITY_IS_DELETED if it already is there)."""
        with self.lock:
            obj = self.object_def(sobject)
            self._rest_target(obj, record_id)
            frame = pl.DataFrame({"Id": [record_id]}, schema={"Id": pl.String})
            self._rest_apply(obj, "delete", frame)

    def _record_json(
        self, obj: ObjectDef, table: _Table, pos: int, fields: Sequence[str] | None
    ) -> dict[str, Any]:
        if fields:
            chosen: list[str] = []
            for name in fields:
                fd = obj.field(name)
                if fd is None:
                    msg = f"No such column '{name}' on sobject of type {obj.name}"
                    raise SalesforceError("INVALID_FIELD", msg)
                chosen.append(fd.name)
        else:
            chosen = [f.name for f in obj.fields]
        record_id = table.get("Id", pos)
        record: dict[str, Any] = {
            "attributes": {
                "type": obj.name,
                "url": f"/services/data/v{self.api_version}/sobjects/{obj.name}/{record_id}",
            }
        }
        for name in chosen:
            record[name] = table.get(name, pos)
        return record

    def retrieve(
        self, sobject: str, record_id: str, fields: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """One record as REST returns it (with ``attributes``); 404 NOT_FOUND if absent."""
        with self.lock:
            obj = self.object_def(sobject)
            try:
                table, pos = self._rest_target(obj, record_id)
            except SalesforceError as exc:
                if exc.code == "ENTITY_IS_DELETED":
                    msg = "The requested resource does not exist"
                    raise SalesforceError("NOT_FOUND", msg, status=404) from exc
                raise
            return self._record_json(obj, table, pos, fields)

    def retrieve_by_external_id(
        self, sobject: str, ext_field: str, value: str, fields: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """One record by external id or idLookup field (MoreThanOneRecord on several)."""
        with self.lock:
            obj = self.object_def(sobject)
            fd = self._ext_field(obj, ext_field, lookup=True)
            if fd.name == "Id":
                return self.retrieve(obj.name, value, fields)
            key = self._scalar_key(fd, value)
            hits = _hits(self._key_index(obj, fd), key) if key is not None else []
            table = self._table(obj.name)
            if len(hits) > 1:
                raise MoreThanOneRecord(obj.name, [table.get("Id", p) for p in hits])
            if not hits:
                raise SalesforceError(
                    "NOT_FOUND", "The requested resource does not exist", status=404
                )
            return self._record_json(obj, table, hits[0], fields)

    # ---- Bulk API 2.0 ingest ----
    def prepare_key_index(self, sobject: str, field: str) -> None:
        """After a Bulk job that matched on ``field``, bring the field's sorted key index up to
        date (built when missing, rebuilt when the job's rows made it overdue, else a no-op),
        so that the next small job on the table does not pay for it. Called off the request
        path: the job's own thread, once the job is complete."""
        with self.lock:
            obj = self.object_def(sobject)
            fd = self.visible_field(obj.name, field)
            table = self._table(obj.name)
            if fd is None or fd.name not in table.cols or table.n == 0:
                return
            ci = fd.key_case_insensitive
            table.sorted_index(fd.name, pl.String(), ci=ci, live_only=fd.name != "Id")

    def bulk_apply(
        self,
        sobject: str,
        operation: str,
        frame: pl.DataFrame,
        external_id_field: str | None = None,
    ) -> BulkOutcome:
        """Apply one Bulk ingest job's rows and return per-row outcomes (input order).

        ``frame`` has one String column per uploaded header, named exactly as uploaded
        (relationship columns such as ``Account.External_Id__c`` included); ``""`` leaves a
        field unchanged (unset on insert) and ``"#N/A"`` sets it to null. A header that names
        no visible field raises SalesforceError("InvalidBatch", "Field name not found : X"):
        the whole job fails.
        """
        with self.lock:
            obj = self.object_def(sobject)
            if operation not in ("insert", "update", "upsert", "delete", "hardDelete"):
                raise SalesforceError("InvalidJob", f"Invalid operation: {operation}")
            ext: FieldDef | None = None
            if operation == "upsert":
                fd = self.visible_field(obj.name, external_id_field or "")
                if fd is None or not (fd.external_id or fd.name == "Id"):
                    msg = (
                        f"The field {external_id_field} is not an External ID or Id field on "
                        f"{obj.name}"
                    )
                    raise SalesforceError("InvalidJob", msg)
                ext = fd
            with _gc_paused():
                ids, created, errs, apex_ms = self._process(obj, operation, frame, ext, "bulk")
            if frame.height >= 100_000:
                _release_freed_memory()
            return BulkOutcome(ids=ids, created=created, errors=_cells(errs), apex_ms=apex_ms)

    # ---- for SOQL ----
    def rows(self, sobject: str, *, include_deleted: bool = False) -> Iterator[dict[str, Any]]:
        """Canonical record dicts (every schema field, FLS not applied) in insertion order.

        The positions and columns are snapshotted under the lock; iteration runs without it
        and turns the columns into Python values a block of rows at a time.
        """
        with self.lock:
            obj = self.schema.get(sobject)
            if obj is None:
                return iter(())
            table = self._table(obj.name)
            positions = table.live_positions(include_deleted=include_deleted)
            names = [f.name for f in obj.fields]
            cols = [(name, table.series(name) if name in table.cols else None) for name in names]
        return _iter_rows(positions, cols)

    def row(
        self, sobject: str, record_id: str, *, include_deleted: bool = True
    ) -> dict[str, Any] | None:
        """One canonical record dict, or None."""
        with self.lock:
            obj = self.schema.get(sobject)
            located = self._locate(record_id) if record_id else None
            if obj is None or located is None or located[0].name != obj.name:
                return None
            _, table, pos = located
            if table.is_deleted(pos) and not include_deleted:
                return None
            return {f.name: table.get(f.name, pos) for f in obj.fields}

    def columns(
        self, sobject: str, names: Sequence[str], *, include_deleted: bool = False
    ) -> dict[str, list[Any]]:
        """Column-wise copy of the live records (canonical field names), for fast scans."""
        with self.lock:
            obj = self.schema.get(sobject)
            if obj is None:
                return {}
            table = self._table(obj.name)
            live = table.live_mask(include_deleted=include_deleted)
            every = bool(live.all())
            count = table.n if every else int(live.sum())
            out: dict[str, list[Any]] = {}
            for name in names:
                fd = obj.field(name)
                if fd is None:
                    continue
                if fd.name not in table.cols:
                    out[fd.name] = [None] * count
                elif every:
                    out[fd.name] = table.values(fd.name)
                else:
                    out[fd.name] = table.series(fd.name).filter(live).to_list()
            return out

    def count(self, sobject: str, *, include_deleted: bool = False) -> int:
        """Number of records of ``sobject`` (hard-deleted ones never count)."""
        with self.lock:
            obj = self.schema.get(sobject)
            if obj is None:
                return 0
            table = self._table(obj.name)
            if include_deleted:
                return table.n - len(table.purged)
            if "IsDeleted" not in table.cols:
                return table.n
            return table.n - int(table.series("IsDeleted").fill_null(False).sum())

    # ---- org behaviour and faults ----
    def convert_lead(
        self,
        lead_id: str,
        *,
        account_id: str | None = None,
        contact_id: str | None = None,
        create_opportunity: bool = False,
        converted_status: str | None = None,
    ) -> dict[str, Any]:
        """Convert a lead (the test hook standing in for SOAP ``convertLead()``).

        Creates an Account and a Contact, or merges into the given ones filling only their
        empty fields; copies mapped fields (standard ones plus ``schema.lead_convert_mapping``);
        optionally creates an Opportunity; marks the lead converted. All or nothing.
        """
        with self.lock, self.atomic():
            lead_obj = self.object_def("Lead")
            lead_table, lead_pos = self._rest_target(lead_obj, lead_id)
            lead = {f.name: lead_table.get(f.name, lead_pos) for f in lead_obj.fields}
            if lead.get("IsConverted"):
                raise SalesforceError(
                    "CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead"
                )
            status = converted_status or LEAD_STATUSES[2]
            targets: dict[str, dict[str, Any]] = {"Account": {}, "Contact": {}, "Opportunity": {}}
            for src, dests in _STANDARD_LEAD_MAP.items():
                for dest in dests:
                    obj_name, _, fname = dest.partition(".")
                    targets[obj_name][fname] = lead.get(src)
            for src, dests in self.schema.lead_convert_mapping.items():
                for dest in dests:
                    obj_name, _, fname = dest.partition(".")
                    targets.setdefault(obj_name, {})[fname] = lead.get(src)
            # The lead's own Email/Company must not trip the duplicate rules on its conversion.
            rules_on, self.duplicate_rules_enabled = self.duplicate_rules_enabled, False
            try:
                account_id = self._convert_into("Account", account_id, targets["Account"])
                targets["Contact"]["AccountId"] = account_id
                contact_id = self._convert_into("Contact", contact_id, targets["Contact"])
            finally:
                self.duplicate_rules_enabled = rules_on
            opportunity_id = None
            if create_opportunity:
                opp = {k: v for k, v in targets["Opportunity"].items() if v is not None}
                opp.update(
                    {
                        "Name": lead.get("Company") or lead.get("Name"),
                        "StageName": "Prospecting",
                        "CloseDate": self._clock().date().isoformat(),
                        "AccountId": account_id,
                    }
                )
                opportunity_id = self.create("Opportunity", opp)
            now = self._now()
            self._set(
                lead_table,
                lead_pos,
                {
                    "IsConverted": True,
                    "Status": status,
                    "ConvertedAccountId": account_id,
                    "ConvertedContactId": contact_id,
                    "ConvertedOpportunityId": opportunity_id,
                    "ConvertedDate": self._clock().date().isoformat(),
                    "LastModifiedDate": now,
                    "SystemModstamp": now,
                    "LastModifiedById": self.user_id,
                },
            )
            return {
                "leadId": _to18(lead_id[:15]),
                "accountId": account_id,
                "contactId": contact_id,
                "opportunityId": opportunity_id,
                "success": True,
            }

    def _convert_into(self, sobject: str, record_id: str | None, values: dict[str, Any]) -> str:
        """Create a record from lead values, or fill only the empty fields of an existing one."""
        obj = self.object_def(sobject)
        values = {k: v for k, v in values.items() if v is not None and obj.field(k) is not None}
        if record_id is None:
            return self.create(sobject, values)
        table, pos = self._rest_target(obj, record_id)
        fill = {k: v for k, v in values.items() if table.get(obj.field(k).name, pos) in (None, "")}  # type: ignore[union-attr]
        if fill:
            self.update(sobject, record_id, fill)
        return _to18(record_id[:15])

    def add_lock_rule(
        self,
        *,
        sobject: str | None = None,
        share: float = 1.0,
        parent_id: str | None = None,
        count: int | None = None,
    ) -> None:
        """Make matching records fail with UNABLE_TO_LOCK_ROW.

        A record matches when it is of ``sobject`` (any object if None), it (or, with
        ``parent_id``, one of its lookups) is drawn in a deterministic ``share`` of ids, and
        the rule has not yet fired ``count`` times (unlimited if None).
        """
        with self.lock:
            self._locks.append(
                _LockRule(
                    sobject=sobject,
                    share=share,
                    parent_id15=parent_id[:15] if parent_id else None,
                    remaining=count,
                    seed=len(self._locks) + 1,
                )
            )

    def add_trigger(
        self,
        sobject: str,
        *,
        field: str | None = None,
        equals: object = None,
        message: str = "Record rejected by trigger",
        apex_ms_per_record: float = 0.0,
    ) -> None:
        """Add a simulated Apex trigger on ``sobject``.

        With ``field``, records whose saved value of it equals ``equals`` fail with
        CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY ("SfaTrigger: execution of BeforeInsert caused
        by: <message>"). ``apex_ms_per_record`` adds simulated Apex time per processed record
        (reported as ``BulkOutcome.apex_ms``; nothing sleeps).
        """
        with self.lock:
            self._triggers.append(_Trigger(sobject, field, equals, message, apex_ms_per_record))

    def clear_rules(self) -> None:
        """Remove all lock rules and triggers."""
        with self.lock:
            self._triggers.clear()
            self._locks.clear()


# Standard lead-conversion mapping (UNVERIFIED in detail: salesforce-api.md §5).
_STANDARD_LEAD_MAP: dict[str, tuple[str, ...]] = {
    "Company": ("Account.Name",),
    "Phone": ("Account.Phone", "Contact.Phone"),
    "Website": ("Account.Website",),
    "Industry": ("Account.Industry",),
    "AnnualRevenue": ("Account.AnnualRevenue",),
    "NumberOfEmployees": ("Account.NumberOfEmployees",),
    "Street": ("Account.BillingStreet", "Contact.MailingStreet"),
    "City": ("Account.BillingCity", "Contact.MailingCity"),
    "State": ("Account.BillingState", "Contact.MailingState"),
    "PostalCode": ("Account.BillingPostalCode", "Contact.MailingPostalCode"),
    "Country": ("Account.BillingCountry", "Contact.MailingCountry"),
    "FirstName": ("Contact.FirstName",),
    "LastName": ("Contact.LastName",),
    "Salutation": ("Contact.Salutation",),
    "Title": ("Contact.Title",),
    "Email": ("Contact.Email",),
    "MobilePhone": ("Contact.MobilePhone",),
    "LeadSource": ("Contact.LeadSource", "Opportunity.LeadSource"),
    "HasOptedOutOfEmail": ("Contact.HasOptedOutOfEmail",),
}
