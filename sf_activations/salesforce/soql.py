"""SOQL literals: values go into queries only through these escapes, never by formatting.

Salesforce's SOQL reference ("Quoted String Escape Sequences") defines the escapes
``\\' \\" \\\\ \\n \\r \\t \\b \\f``; ``\\_`` and ``\\%`` exist only inside LIKE patterns.
Other control characters have no escape, so they are refused rather than sent raw.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["soql_identifier", "soql_in", "soql_like", "soql_literal"]

_ESCAPES = str.maketrans(
    {
        "\\": "\\\\",
        "'": "\\'",
        '"': '\\"',
        "\n": "\\n",
        "\r": "\\r",
        "\t": "\\t",
        "\b": "\\b",
        "\f": "\\f",
    }
)
_LIKE_ESCAPES = str.maketrans({"%": "\\%", "_": "\\_"})
# Control characters left after the escapes above: SOQL cannot express them.
_UNESCAPABLE = re.compile(r"[\x00-\x07\x0b\x0e-\x1f\x7f]")
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*")


def _escape(value: str) -> str:
    if not isinstance(value, str):
        msg = f"a SOQL string literal needs a str, got {type(value).__name__}"
        raise TypeError(msg)
    bad = _UNESCAPABLE.search(value)
    if bad:
        msg = (
            f"control character {bad.group()!r} at position {bad.start()} cannot be written in a "
            "SOQL string literal; clean the value before querying"
        )
        raise ValueError(msg)
    return value.translate(_ESCAPES)


def soql_literal(value: str) -> str:
    """``value`` as a quoted, escaped SOQL string literal: ``O'Brien`` -> ``'O\\'Brien'``."""
    return "'" + _escape(value) + "'"


def soql_in(values: Iterable[str]) -> str:
    """A parenthesised list of literals for ``IN``: ``('a','b')``.

    Salesforce rejects an empty ``IN ()``, so an empty input is refused here with a clear
    message instead of a MALFORMED_QUERY later.
    """
    items = [soql_literal(v) for v in values]
    if not items:
        msg = "soql_in() needs at least one value (SOQL has no empty IN list)"
        raise ValueError(msg)
    return "(" + ",".join(items) + ")"


def soql_like(value: str, *, prefix: bool = False, suffix: bool = False) -> str:
    """A LIKE pattern literal matching ``value`` literally (``%``/``_`` escaped).

    ``prefix=True`` allows anything before the value, ``suffix=True`` anything after it.
    """
    body = _escape(value).translate(_LIKE_ESCAPES)
    return "'" + ("%" if prefix else "") + body + ("%" if suffix else "") + "'"


def soql_identifier(name: str) -> str:
    """``name`` if it is a well-formed object, field or relationship path name, else ValueError.

    Names cannot be escaped in SOQL, so they are validated instead (``Account.Ext_Id__c``).
    """
    if not _IDENTIFIER.fullmatch(name):
        msg = f"{name!r} is not a Salesforce API name (letters, digits and _ only)"
        raise ValueError(msg)
    return name
