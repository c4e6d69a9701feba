"""Salesforce record ids: 15-character case-sensitive form plus the 3-character checksum."""

from __future__ import annotations

import itertools
import threading

_CHECKSUM_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ID_CHARS = frozenset(BASE62)


def checksum(id15: str) -> str:
    """The 3-character suffix that makes a 15-character id case-insensitive."""
    out = []
    for chunk in range(3):
        bits = 0
        for j, ch in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= ch <= "Z":
                bits |= 1 << j
        out.append(_CHECKSUM_ALPHABET[bits])
    return "".join(out)


def to_18(record_id: str) -> str:
    """The 18-character form of a 15- or 18-character id (raises ValueError if malformed)."""
    if not is_well_formed(record_id):
        msg = f"malformed id {record_id}"
        raise ValueError(msg)
    if len(record_id) == 18:
        # The suffix is case-insensitive: normalise it from the case-sensitive base.
        return record_id[:15] + checksum(record_id[:15])
    return record_id + checksum(record_id)


def is_well_formed(record_id: str) -> bool:
    """True for a 15-character id, or an 18-character one whose suffix matches its checksum."""
    if len(record_id) not in (15, 18) or not set(record_id) <= _ID_CHARS:
        return False
    if len(record_id) == 18:
        return record_id[15:].upper() == checksum(record_id[:15])
    return True


def make_id(head: str, n: int) -> str:
    """The id numbered ``n`` (ten base-62 digits) after ``head`` (key prefix + pod), with checksum."""
    digits = []
    for _ in range(10):
        n, r = divmod(n, 62)
        digits.append(BASE62[r])
    base = head + "".join(reversed(digits))
    return base + checksum(base)


class IdAllocator:
    """Hands out fresh 18-character ids for one key prefix (thread-safe)."""

    def __init__(self, key_prefix: str, pod: str = "5g") -> None:
        if len(key_prefix) != 3:
            msg = f"key prefix must have 3 characters, got {key_prefix!r}"
            raise ValueError(msg)
        self._head = key_prefix + pod  # 5 characters: prefix + instance/pod marker
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            n = next(self._counter)
        return self.make(n)

    def take(self, count: int) -> list[str]:
        """``count`` fresh ids at once (used by Bulk jobs)."""
        with self._lock:
            start = next(self._counter)
            self._counter = itertools.count(start + count)
        return [self.make(n) for n in range(start, start + count)]

    def make(self, n: int) -> str:
        return make_id(self._head, n)
