"""One emulated Salesforce org: records, DML semantics, validation and vectorised Bulk ingest.

Storage: per object a ``_Table`` of Python lists, one per field that was ever written (a missing
list means "all null"), plus an id index (15-character id -> row position) and lazily built key
indexes for external-id / unique / idLookup fields. Lists keep single-record REST writes O(1)
and shared objects (audit timestamps, owner ids, booleans) cost one pointer per row, which is
what keeps 1M records x 20 fields under 2 GB; validation of a Bulk upload is done column-wise
with polars expressions and only dict lookups and the final writes touch rows one by one.

Every DML surface (REST dicts and Bulk frames) goes through the same pipeline, ``_process``,
so a rule is implemented once and both surfaces answer alike; only the wording of type errors
differs per surface, as it does in Salesforce.
"""

from __future__ import annotations

import ctypes
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
from sf_activations.emulator.ids import checksum, is_well_formed
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


_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


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
        with self._lock:
            start = self._next
            self._next += count
        if count <= 256:
            return [self._make(n) for n in range(start, start + count)]
        n = pl.col("n")
        values = [(n // 62 ** (9 - j)) % 62 for j in range(10)]
        mapping = dict(enumerate(_BASE62))
        # Base-62 digits 10..35 are the upper-case letters: the checksum follows arithmetically.
        head_bits = sum(1 << j for j, ch in enumerate(self._head) if "A" <= ch <= "Z")
        chunks: list[pl.Expr] = [pl.lit(_CHECKSUM_ALPHABET[head_bits])]
        for first in (0, 5):
            bits: pl.Expr = pl.lit(0, dtype=pl.Int64)
            for j in range(5):
                d = values[first + j]
                bits = bits + ((d >= 10) & (d <= 35)).cast(pl.Int64) * (1 << j)
            chunks.append(
                bits.replace_strict(dict(enumerate(_CHECKSUM_ALPHABET)), return_dtype=pl.String)
            )
        digits = [v.replace_strict(mapping, return_dtype=pl.String) for v in values]
        frame = pl.DataFrame({"n": pl.int_range(start, start + count, eager=True, dtype=pl.Int64)})
        return (
            frame.lazy()
            .select(pl.concat_str([pl.lit(self._head), *digits, *chunks]))
            .collect()
            .to_series()
            .to_list()
        )

    def next(self) -> str:
        return self.take(1)[0]

    def _make(self, n: int) -> str:
        digits = []
        for _ in range(10):
            n, r = divmod(n, 62)
            digits.append(_BASE62[r])
        base = self._head + "".join(reversed(digits))
        return base + checksum(base)


def _shared_values(series: pl.Series) -> list[Any]:
    """The column as Python values, repeated values sharing one object.

    Picklists, cities, countries and the like repeat a lot; one object per distinct value
    instead of one per row is what keeps a million stored records within memory. The
    distinct values are built first and rows point at them, so no per-row duplicate is ever
    allocated (freeing such duplicates would leave Python's memory arenas fragmented).
    """
    n = series.len()
    if n <= 1000 or series.dtype == pl.Boolean or series.n_unique() * 2 > n:
        return series.to_list()
    distinct = series.unique(maintain_order=True)
    uniques = distinct.to_list()
    codes = series.replace_strict(
        distinct, pl.int_range(0, len(uniques), eager=True), return_dtype=pl.Int32
    )
    return [uniques[c] if c is not None else None for c in codes.to_list()]


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


@dataclass
class BulkOutcome:
    """Per-row results of one Bulk ingest, in input row order."""

    ids: list[str | None]
    created: list[bool]
    errors: list[str | None]  # sf__Error cells "CODE:message:fields --"; None = success
    apex_ms: int = 0


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


class _Table:
    """The records of one object (see the module docstring)."""

    __slots__ = ("cols", "index", "keys", "n", "name", "purged")

    def __init__(self, name: str) -> None:
        self.name = name
        self.cols: dict[str, list[Any]] = {}
        self.n = 0
        self.index: dict[str, int] = {}  # canonical 18-character id -> position
        self.purged: set[int] = set()
        self.keys: dict[str, KeyIndex] = {}

    def get(self, name: str, pos: int) -> Any:
        col = self.cols.get(name)
        return None if col is None else col[pos]

    def column(self, name: str) -> list[Any]:
        col = self.cols.get(name)
        if col is None:
            col = [None] * self.n
            self.cols[name] = col
        return col

    def is_deleted(self, pos: int) -> bool:
        return bool(self.get("IsDeleted", pos))

    def live_positions(self, *, include_deleted: bool) -> list[int]:
        deleted = self.cols.get("IsDeleted")
        return [
            p
            for p in range(self.n)
            if p not in self.purged and (include_deleted or deleted is None or not deleted[p])
        ]


# ---------------------------------------------------------------------------------------------
# vectorised cell validation (one polars expression per column)
# ---------------------------------------------------------------------------------------------


def _lit_err(code: str, fields: Sequence[str], message: str) -> pl.Expr:
    return pl.lit(_enc(code, message, fields))


def _err_with_value(
    code: str, fd: FieldDef, before: str, value: pl.Expr, after: str = ""
) -> pl.Expr:
    return pl.concat_str([pl.lit(f"{code}{_SEP}{fd.name}{_SEP}{before}"), value, pl.lit(after)])


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


def _value_exprs(c: _Col, src: pl.Expr, surface: Surface) -> tuple[pl.Expr, pl.Expr | None]:
    """(canonical value, encoded error or null) for one uploaded column."""
    fd = c.field
    has = src.is_not_null() & (src != _NULL)
    if c.parent is not None:
        return pl.when(has).then(src), (
            pl.when(src.is_not_null()).then(pl.lit(c.lookup_error)) if c.lookup_error else None
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
    return pl.when(has).then(canon), _chain(checks, has)


def _chain(checks: list[tuple[pl.Expr, pl.Expr]], has: pl.Expr) -> pl.Expr | None:
    """The first failing check's error, only where the cell has a value."""
    if not checks:
        return None
    cond, err = checks[0]
    expr: Any = pl.when(has & cond.fill_null(True)).then(err)
    for cond, err in checks[1:]:
        expr = expr.when(has & cond.fill_null(True)).then(err)
    return expr


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
            table = self._tables[key] = _Table(obj.name if obj is not None else sobject)
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
            col = table.cols.get(fd.name)
            deleted = table.cols.get("IsDeleted")
            if col is not None:
                ci = fd.key_case_insensitive
                for pos, value in enumerate(col):
                    if (
                        value is None
                        or pos in table.purged
                        or (deleted is not None and deleted[pos])
                    ):
                        continue
                    key = value.lower() if ci and isinstance(value, str) else value
                    _idx_add(idx, key, pos)
            table.keys[fd.name] = idx
        return idx

    def _set(self, table: _Table, pos: int, values: Mapping[str, Any]) -> None:
        """Write canonical values into one existing record, keeping key indexes right."""
        for name, value in values.items():
            col = table.column(name)
            old = col[pos]
            if self._journal is not None:
                self._journal.append(("set", table, pos, name, old))
            idx = table.keys.get(name)
            if idx is not None and old != value:
                obj = self.schema.get(table.name)
                fd = obj.field(name) if obj else None
                self._key_remove(idx, fd, pos, old)
                col[pos] = value
                if not table.is_deleted(pos):
                    self._key_add(idx, fd, pos, value)
            else:
                col[pos] = value

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
        pos = table.index.get(_to18(record_id[:15]))
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
                for rid in table.cols["Id"][start:]:
                    table.index.pop(rid, None)
                for col in table.cols.values():
                    del col[start:]
                table.n = start
            elif kind == "set":
                table.column(entry[3])[entry[2]] = entry[4]
            elif kind == "purge":
                table.purged.discard(entry[2])
        for table in touched:
            table.keys.clear()  # rebuilt lazily: undo is rare, correctness first

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
    ) -> tuple[list[str | None], list[bool], list[str | None], int]:
        """Validate and apply rows; returns (ids, created, encoded errors, apex ms)."""
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
        self._permission_errors(obj, op, access, tgt, key_err)
        if obj.name == "Lead" and not self.allow_update_converted_leads and not is_delete:
            converted = table.cols.get("IsConverted")
            if converted is not None:
                for i, pos in enumerate(tgt):
                    if pos is not None and key_err[i] is None and converted[pos]:
                        key_err[i] = _enc(
                            "CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead"
                        )

        work = work.with_columns(
            pl.Series("__tgt", tgt, dtype=pl.Int64), pl.Series("__kerr", key_err, dtype=pl.String)
        )
        data_cols = [] if is_delete else [c for c in cols if c is not key_col or not by_id]
        exprs, value_keys = self._row_exprs(obj, op, data_cols, surface)
        # Lazy so that polars eliminates common subexpressions (id checksums are costly).
        out = work.lazy().select(exprs).collect()
        errs: list[str | None] = out["__err"].to_list()
        values: dict[str, list[Any]] = {}
        masks: dict[str, list[bool]] = {}
        for c in data_cols:
            vals = _shared_values(out[f"v_{c.key}"])
            mask = out[f"s_{c.key}"].to_list()
            if c.parent is not None:
                vals = self._resolve_relationship(c, vals, mask, errs)
            elif c.field.type == "reference":
                self._check_references(c, vals, errs)
            if c.field.name in values:  # two columns for one field: the later one wins
                old_v, old_m = values[c.field.name], masks[c.field.name]
                for i in range(n):
                    if mask[i]:
                        old_v[i], old_m[i] = vals[i], True
            else:
                values[c.field.name], masks[c.field.name] = vals, mask
        del value_keys
        ins_rows = [i for i in range(n) if errs[i] is None and tgt[i] is None]
        upd_rows = [i for i in range(n) if errs[i] is None and tgt[i] is not None]
        new_ids = self._allocator(obj.key_prefix).take(len(ins_rows)) if ins_rows else []
        row_ids: list[str | None] = [None] * n
        for i, rid in zip(ins_rows, new_ids, strict=True):
            row_ids[i] = rid
        id_col = table.cols.get("Id")
        for i in upd_rows:
            row_ids[i] = id_col[tgt[i]] if id_col is not None else None  # type: ignore[index]

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

        ins_rows = [i for i in ins_rows if errs[i] is None]
        upd_rows = [i for i in upd_rows if errs[i] is None]
        now = self._now()
        if is_delete:
            for i in upd_rows:
                self._delete_at(table, tgt[i], hard=op == "hardDelete", now=now)  # type: ignore[arg-type]
        else:
            self._write_inserts(
                obj, table=table, ins_rows=ins_rows, row_ids=row_ids, values=values, now=now
            )
            self._write_updates(
                obj, table=table, upd_rows=upd_rows, tgt=tgt, values=values, masks=masks, now=now
            )
            self._after_write(obj, table, [tgt[i] for i in upd_rows], ins_rows, row_ids)
        ids_out: list[str | None] = [row_ids[i] if errs[i] is None else None for i in range(n)]
        created = [errs[i] is None and tgt[i] is None and not is_delete for i in range(n)]
        return ids_out, created, errs, apex_ms

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
    ) -> tuple[list[int | None], list[str | None]]:
        """Row positions each input row updates (None = insert) and key errors."""
        tgt: list[int | None] = [None] * n
        key_err: list[str | None] = [None] * n
        if op == "insert":
            return tgt, key_err
        if op == "update":
            missing = _enc("MISSING_ARGUMENT", "Id not specified in an update call")
        elif op in ("delete", "hardDelete"):
            missing = _enc("MISSING_ARGUMENT", "Id not specified in a delete call")
        else:
            missing = _enc("MISSING_ARGUMENT", f"{ext.name if ext else 'Id'} not specified")
        if key_col is None:
            if not (op == "upsert" and by_id):
                key_err = [missing] * n
            return tgt, key_err
        src = pl.col(key_col.key)
        if by_id:
            ok, id18 = id_exprs(src)
            frame = work.lazy().select(src.alias("raw"), ok.alias("ok"), id18.alias("id")).collect()
            deleted = table.cols.get("IsDeleted")
            prefix = obj.key_prefix
            index = table.index
            for i, (raw, good, rid) in enumerate(frame.iter_rows()):
                if raw is None or raw == _NULL:
                    if op != "upsert":
                        key_err[i] = missing
                    continue
                if not good:
                    key_err[i] = _enc("MALFORMED_ID", f"malformed id {raw}")
                    continue
                pos = index.get(rid) if rid[:3] == prefix else None
                if pos is None:
                    key_err[i] = _enc("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
                elif pos in table.purged or (
                    deleted is not None and deleted[pos] and op != "hardDelete"
                ):
                    key_err[i] = _enc("ENTITY_IS_DELETED", "entity is deleted")
                else:
                    tgt[i] = pos
            return tgt, key_err
        assert ext is not None
        canon_expr, _ = _value_exprs(key_col, src, surface)
        frame = work.lazy().select(src.alias("raw"), canon_expr.alias("key")).collect()
        key_series = frame["key"]
        if ext.key_case_insensitive:
            key_series = key_series.str.to_lowercase()
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
                    "A user-specified external ID matches more than one record during an upsert.",
                )
        return tgt, key_err

    @staticmethod
    def _permission_errors(
        obj: ObjectDef,
        op: str,
        access: ObjectAccess,
        tgt: list[int | None],
        key_err: list[str | None],
    ) -> None:
        # UNVERIFIED codes/wording: Salesforce answers INSUFFICIENT_ACCESS_OR_READONLY when the
        # profile lacks the object permission; the messages below are the plausible ones.
        can_create = obj.createable and access.create
        can_edit = obj.updateable and access.edit
        can_delete = obj.deletable and access.delete
        if can_create and can_edit and can_delete:
            return
        no_create = _enc(
            "INSUFFICIENT_ACCESS_OR_READONLY", f"entity type cannot be inserted: {obj.name}"
        )
        no_edit = _enc(
            "INSUFFICIENT_ACCESS_OR_READONLY", f"entity type cannot be updated: {obj.name}"
        )
        no_delete = _enc(
            "INSUFFICIENT_ACCESS_OR_READONLY", "insufficient access rights on object id"
        )
        for i, pos in enumerate(tgt):
            if key_err[i] is not None:
                continue
            if op in ("delete", "hardDelete"):
                if not can_delete:
                    key_err[i] = no_delete
            elif pos is None and not can_create:
                key_err[i] = no_create
            elif pos is not None and not can_edit:
                key_err[i] = no_edit

    def _row_exprs(
        self, obj: ObjectDef, op: str, data_cols: list[_Col], surface: Surface
    ) -> tuple[list[pl.Expr], list[str]]:
        """The select that validates every row: ``__err`` plus ``v_*`` values and ``s_*`` masks."""
        ins = pl.col("__tgt").is_null()
        errs: list[pl.Expr] = [pl.col("__kerr")]
        readonly: list[pl.Expr] = []
        value_errs: list[pl.Expr] = []
        outputs: list[pl.Expr] = []
        keys: list[str] = []
        for c in data_cols:
            src = pl.col(c.key)
            setc = src.is_not_null()
            fd = c.field
            if c.parent is None and fd.name == "Id":
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
            canon, err = _value_exprs(c, src, surface)
            if err is not None:
                value_errs.append(err)
            outputs += [canon.alias(f"v_{c.key}"), setc.alias(f"s_{c.key}")]
            keys.append(c.key)
        if readonly:
            names = pl.concat_str(readonly, separator=", ", ignore_nulls=True)
            flds = pl.concat_str(readonly, separator=",", ignore_nulls=True)
            errs.append(
                pl.when(names != "").then(
                    pl.concat_str(
                        [
                            pl.lit(f"INVALID_FIELD_FOR_INSERT_UPDATE{_SEP}"),
                            flds,
                            pl.lit(f"{_SEP}Unable to create/update fields: "),
                            names,
                            pl.lit(_READONLY_TAIL),
                        ]
                    )
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
        for c in data_cols:
            fd = c.field
            if not fd.nillable and fd.type != "boolean" and fd.name != "Id":
                required.append(pl.when(~ins & (pl.col(c.key) == _NULL)).then(pl.lit(fd.name)))
        if required:
            names = pl.concat_str(required, separator=", ", ignore_nulls=True)
            flds = pl.concat_str(required, separator=",", ignore_nulls=True)
            errs.append(
                pl.when(names != "").then(
                    pl.concat_str(
                        [
                            pl.lit(f"REQUIRED_FIELD_MISSING{_SEP}"),
                            flds,
                            pl.lit(f"{_SEP}Required fields are missing: ["),
                            names,
                            pl.lit("]"),
                        ]
                    )
                )
            )
        return [pl.coalesce(errs).alias("__err"), *outputs], keys

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
        self, c: _Col, raws: list[Any], mask: list[bool], errs: list[str | None]
    ) -> list[Any]:
        """Parent ids for a ``Rel.Field`` column (errors for parents not found)."""
        assert c.parent is not None and c.parent_field is not None
        parent, pfd = c.parent, c.parent_field
        out: list[Any] = [None] * len(raws)
        ptable = self._table(parent.name)
        pid = ptable.cols.get("Id") or []
        deleted = ptable.cols.get("IsDeleted")
        idx = None if pfd.name == "Id" else self._key_index(parent, pfd)
        for i, raw in enumerate(raws):
            if raw is None or errs[i] is not None or not mask[i]:
                continue
            key = self._scalar_key(pfd, raw)
            if idx is None:
                pos = ptable.index.get(key) if key and key[:3] == parent.key_prefix else None
                hits = (
                    [pos]
                    if pos is not None
                    and pos not in ptable.purged
                    and not (deleted and deleted[pos])
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
                out[i] = pid[hits[0]]
        return out

    def _check_references(self, c: _Col, vals: list[Any], errs: list[str | None]) -> None:
        """A reference must name an existing, live record of one of the referenced objects."""
        targets: dict[str, _Table] = {}
        for name in c.field.reference_to:
            target = self.schema.get(name)
            if target is not None:
                targets[target.key_prefix] = self._table(target.name)
        for i, v in enumerate(vals):
            if v is None or errs[i] is not None:
                continue
            table = targets.get(v[:3])
            pos = table.index.get(v) if table is not None else None
            if table is None or pos is None or pos in table.purged:
                errs[i] = _enc("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
            elif table.is_deleted(pos):
                errs[i] = _enc("ENTITY_IS_DELETED", "entity is deleted")

    def _check_unique(
        self,
        obj: ObjectDef,
        *,
        table: _Table,
        values: dict[str, list[Any]],
        masks: dict[str, list[bool]],
        tgt: list[int | None],
        row_ids: list[str | None],
        errs: list[str | None],
        ext: FieldDef | None,
    ) -> None:
        id_col = table.cols.get("Id") or []
        for name, vals in values.items():
            fd = obj.field(name)
            if fd is None or not fd.unique or (ext is not None and ext.name == name):
                continue
            idx = self._key_index(obj, fd)
            mask = masks[name]
            ci = fd.key_case_insensitive
            seen: dict[Any, int] = {}
            for i, v in enumerate(vals):
                if v is None or errs[i] is not None or not mask[i]:
                    continue
                key = v.lower() if ci and isinstance(v, str) else v
                found = idx.get(key)
                if found is None:
                    other = None
                elif isinstance(found, int):
                    other = found if found != tgt[i] else None
                else:
                    other = next((p for p in found if p != tgt[i]), None)
                holder: str | None = None
                if other is not None:
                    holder = id_col[other]
                elif key in seen:
                    holder = row_ids[seen[key]]
                else:
                    seen[key] = i
                if holder is not None:
                    errs[i] = _enc(
                        "DUPLICATE_VALUE",
                        f"duplicate value found: {fd.name} duplicates value on record with id: "
                        f"{holder[:15]}",
                    )

    def _check_duplicate_rules(
        self,
        obj: ObjectDef,
        values: dict[str, list[Any]],
        masks: dict[str, list[bool]],
        tgt: list[int | None],
        errs: list[str | None],
    ) -> None:
        """The standard Lead/Contact/Account duplicate rules, checked on create."""
        sources: tuple[str, ...]
        if obj.name in ("Lead", "Contact"):
            field_name, sources = "Email", ("Contact", "Lead")
        elif obj.name == "Account":
            field_name, sources = "Name", ("Account",)
        else:
            return
        vals = values.get(field_name)
        if vals is None:
            return
        existing: set[str] = set()
        for source in sources:
            table = self._table(source)
            col = table.cols.get(field_name)
            deleted = table.cols.get("IsDeleted")
            if col is None:
                continue
            for pos, v in enumerate(col):
                if v and pos not in table.purged and not (deleted and deleted[pos]):
                    existing.add(str(v).lower())
        err = _enc("DUPLICATES_DETECTED", DUPLICATES_DETECTED_MESSAGE)
        for i, v in enumerate(vals):
            if tgt[i] is None and errs[i] is None and v and str(v).lower() in existing:
                errs[i] = err

    def _run_triggers(
        self,
        obj: ObjectDef,
        *,
        op: str,
        table: _Table,
        values: dict[str, list[Any]],
        masks: dict[str, list[bool]],
        tgt: list[int | None],
        errs: list[str | None],
    ) -> int:
        triggers = [t for t in self._triggers if t.sobject.lower() == obj.name.lower()]
        total = 0.0
        for trig in triggers:
            ok_rows = [i for i in range(len(errs)) if errs[i] is None]
            total += trig.apex_ms_per_record * len(ok_rows)
            fd = obj.field(trig.field) if trig.field else None
            if fd is None:
                continue
            vals, mask = values.get(fd.name), masks.get(fd.name)
            for i in ok_rows:
                pos = tgt[i]
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
                    errs[i] = _enc(
                        "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY",
                        f"SfaTrigger: execution of {event} caused by: {trig.message}",
                    )
        return round(total)

    def _check_locks(
        self,
        obj: ObjectDef,
        *,
        table: _Table,
        values: dict[str, list[Any]],
        tgt: list[int | None],
        row_ids: list[str | None],
        errs: list[str | None],
    ) -> None:
        rules = [
            r for r in self._locks if r.sobject is None or r.sobject.lower() == obj.name.lower()
        ]
        if not rules:
            return
        ref_fields = [f.name for f in obj.fields if f.type == "reference"]
        for rule in rules:
            for i in range(len(errs)):
                if errs[i] is not None or rule.remaining == 0:
                    continue
                locked = row_ids[i]
                if rule.parent_id15 is not None:
                    refs = [values[f][i] for f in ref_fields if f in values and values[f][i]]
                    pos = tgt[i]
                    if pos is not None:
                        refs += [table.get(f, pos) for f in ref_fields if table.get(f, pos)]
                    if not any(str(r)[:15] == rule.parent_id15 for r in refs):
                        continue
                    locked = _to18(rule.parent_id15)
                if locked is None:
                    continue
                if rule.share < 1.0:
                    draw = zlib.crc32(f"{rule.seed}:{row_ids[i]}".encode()) / 2**32
                    if draw >= rule.share:
                        continue
                errs[i] = _enc(
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

    def _append_columns(self, table: _Table, new: dict[str, list[Any]], k: int) -> int:
        """Append ``k`` rows given column-wise (every list has ``k`` items)."""
        start = table.n
        for name, col in table.cols.items():
            col.extend(new[name] if name in new else [None] * k)
        for name, lst in new.items():
            if name not in table.cols:
                table.cols[name] = [None] * start + lst
        table.n = start + k
        table.index.update(zip(new["Id"], range(start, start + k), strict=True))
        obj = self.schema.get(table.name)
        deleted: list[Any] = new.get("IsDeleted") or [False] * k
        for fname, idx in table.keys.items():
            fd = obj.field(fname) if obj else None
            added = new.get(fname)
            if added is None:
                continue
            ci = fd is not None and fd.key_case_insensitive
            pairs = [
                (v.lower() if ci and isinstance(v, str) else v, start + offset)
                for offset, v in enumerate(added)
                if v is not None and not deleted[offset]
            ]
            fresh = dict(pairs)
            if len(fresh) == len(pairs) and idx.keys().isdisjoint(fresh):
                idx.update(fresh)  # the common case: new, distinct keys
            else:
                for key, pos in pairs:
                    _idx_add(idx, key, pos)
        if self._journal is not None:
            self._journal.append(("ins", table, start, k))
        return start

    def _append(self, table: _Table, rows: list[dict[str, Any]]) -> int:
        names: set[str] = set()
        for r in rows:
            names.update(r)
        return self._append_columns(table, {n: [r.get(n) for r in rows] for n in names}, len(rows))

    def _write_inserts(
        self,
        obj: ObjectDef,
        *,
        table: _Table,
        ins_rows: list[int],
        row_ids: list[str | None],
        values: dict[str, list[Any]],
        now: str,
    ) -> None:
        if not ins_rows:
            return
        k = len(ins_rows)
        defaults = self._defaults(self.schema.get(obj.name) or obj)
        new: dict[str, list[Any]] = {"Id": [row_ids[i] for i in ins_rows]}
        for name, vals in values.items():
            lst = vals if k == len(vals) else [vals[i] for i in ins_rows]
            if name in defaults:
                dflt = defaults[name]
                lst = [dflt if v is None else v for v in lst]
            new[name] = lst if lst is not vals else list(lst)
        for name, dflt in defaults.items():
            if name not in new:
                new[name] = [dflt] * k
        for name in _AUDIT_CREATE:
            new[name] = [self.user_id if name.endswith("ById") else now] * k
        self._append_columns(table, new, k)

    def _write_updates(
        self,
        obj: ObjectDef,
        *,
        table: _Table,
        upd_rows: list[int],
        tgt: list[int | None],
        values: dict[str, list[Any]],
        masks: dict[str, list[bool]],
        now: str,
    ) -> None:
        if not upd_rows:
            return
        every_row = len(upd_rows) == len(tgt)
        positions_all: list[int] = tgt if every_row else [tgt[i] for i in upd_rows]  # type: ignore[assignment,misc]
        for name, vals in values.items():
            mask = masks[name]
            if every_row and all(mask):
                self._set_many(table, name, positions_all, vals)
                continue
            positions = [tgt[i] for i in upd_rows if mask[i]]
            new_vals = [vals[i] for i in upd_rows if mask[i]]
            self._set_many(table, name, positions, new_vals)  # type: ignore[arg-type]
        for name in _AUDIT_UPDATE:
            value = self.user_id if name.endswith("ById") else now
            self._set_many(table, name, positions_all, [value] * len(positions_all))

    def _set_many(
        self, table: _Table, name: str, positions: list[int], new_vals: list[Any]
    ) -> None:
        """Write one field of many records (fast path when no index or journal is involved)."""
        col = table.column(name)
        idx = table.keys.get(name)
        if self._journal is not None:
            for pos, v in zip(positions, new_vals, strict=True):
                self._set(table, pos, {name: v})
            return
        if idx is None:
            for pos, v in zip(positions, new_vals, strict=True):
                col[pos] = v
            return
        obj = self.schema.get(table.name)
        fd = obj.field(name) if obj is not None else None
        ci = fd is not None and fd.key_case_insensitive
        deleted = table.cols.get("IsDeleted")
        for pos, v in zip(positions, new_vals, strict=True):
            old = col[pos]
            if old == v:
                continue
            if old is not None:
                _idx_remove(idx, old.lower() if ci and isinstance(old, str) else old, pos)
            col[pos] = v
            if v is not None and not (deleted is not None and deleted[pos]):
                _idx_add(idx, v.lower() if ci and isinstance(v, str) else v, pos)

    def _delete_at(self, table: _Table, pos: int, *, hard: bool, now: str) -> None:
        obj = self.schema.get(table.name)
        for fname, idx in table.keys.items():
            self._key_remove(idx, obj.field(fname) if obj else None, pos, table.get(fname, pos))
        self._set(table, pos, {"IsDeleted": True, "SystemModstamp": now})
        if hard:
            table.purged.add(pos)
            if self._journal is not None:
                self._journal.append(("purge", table, pos))

    def _after_write(
        self,
        obj: ObjectDef,
        table: _Table,
        upd_positions: list[int | None],
        ins_rows: list[int],
        row_ids: list[str | None],
    ) -> None:
        """Values Salesforce derives on save: names, closed flags, OCR primary, EMR address."""
        name = obj.name
        if name not in _DERIVING_OBJECTS:
            return
        positions = [p for p in upd_positions if p is not None]
        positions += [table.index[rid] for rid in (row_ids[i] for i in ins_rows) if rid]
        if not positions:
            return
        if name in ("Contact", "Lead", "User"):
            first, last = table.column("FirstName"), table.column("LastName")
            self._set_many(
                table,
                "Name",
                positions,
                [" ".join(p for p in (first[pos], last[pos]) if p) or None for pos in positions],
            )
        elif name == "Opportunity":
            stage = table.column("StageName")
            self._set_many(
                table,
                "IsClosed",
                positions,
                [stage[p] in ("Closed Won", "Closed Lost") for p in positions],
            )
            self._set_many(table, "IsWon", positions, [stage[p] == "Closed Won" for p in positions])
        elif name == "Case":
            numbers = table.column("CaseNumber")
            fresh = [p for p in positions if numbers[p] is None]
            self._set_many(table, "CaseNumber", fresh, [f"{1000 + p:08d}" for p in fresh])
            status = table.column("Status")
            self._set_many(table, "IsClosed", positions, [status[p] == "Closed" for p in positions])
        elif name == "OpportunityContactRole":
            self._one_primary(table, positions)
        elif name == "EmailMessageRelation":
            for pos in positions:
                rel = table.get("RelationId", pos)
                derived: dict[str, Any] = {
                    "RelationObjectType": self.sobject_of_id(rel) if rel else None
                }
                if rel and not table.get("RelationAddress", pos):
                    located = self._locate(rel)
                    if located is not None:
                        derived["RelationAddress"] = located[1].get("Email", located[2])
                self._set(table, pos, derived)

    def _one_primary(self, table: _Table, positions: list[int]) -> None:
        """Marking a contact role primary clears the flag on the opportunity's other roles."""
        primary = table.column("IsPrimary")
        opp = table.column("OpportunityId")
        winners: dict[str, int] = {}
        for pos in positions:
            if primary[pos] and opp[pos]:
                winners[opp[pos]] = pos
        if not winners:
            return
        deleted = table.column("IsDeleted")
        for pos in range(table.n):
            if (
                primary[pos]
                and opp[pos] in winners
                and winners[opp[pos]] != pos
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
        self, obj: ObjectDef, values: Mapping[str, Any], *, skip: Sequence[str] = ()
    ) -> pl.DataFrame:
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
            frame = self._rest_frame(obj, values, skip=("Id",)).with_columns(
                pl.lit(record_id, dtype=pl.String).alias("Id")
            )
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
                id_col = self._table(obj.name).column("Id")
                raise MoreThanOneRecord(obj.name, [id_col[p] for p in hits])
            frame = self._rest_frame(obj, values, skip=(fd.name,)).with_columns(
                pl.lit(ext_value, dtype=pl.String).alias(fd.name)
            )
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
            cells = [None if e is None else _cell(e) for e in errs]
            if frame.height >= 100_000:
                _release_freed_memory()
            return BulkOutcome(ids=ids, created=created, errors=cells, apex_ms=apex_ms)

    # ---- for SOQL ----
    def rows(self, sobject: str, *, include_deleted: bool = False) -> Iterator[dict[str, Any]]:
        """Canonical record dicts (every schema field, FLS not applied) in insertion order.

        The positions and columns are snapshotted under the lock; iteration runs without it.
        """
        with self.lock:
            obj = self.schema.get(sobject)
            if obj is None:
                return iter(())
            table = self._table(obj.name)
            positions = table.live_positions(include_deleted=include_deleted)
            names = [f.name for f in obj.fields]
            cols = [(name, table.cols.get(name)) for name in names]
        return (
            {name: (col[p] if col is not None else None) for name, col in cols} for p in positions
        )

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
            positions = table.live_positions(include_deleted=include_deleted)
            out: dict[str, list[Any]] = {}
            for name in names:
                fd = obj.field(name)
                if fd is None:
                    continue
                col = table.cols.get(fd.name)
                out[fd.name] = (
                    [None] * len(positions) if col is None else [col[p] for p in positions]
                )
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
            deleted = table.cols.get("IsDeleted")
            return table.n - (deleted.count(True) if deleted is not None else 0)

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
