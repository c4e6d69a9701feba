"""The emulator's SOQL engine: a parser and an evaluator over an ``Org``'s records.

It covers what REST ``query``/``queryAll`` clients send: a field list with parent relationship
paths, ``COUNT()``, one ``FROM`` object, ``WHERE`` with the comparison, set, ``LIKE`` and
``INCLUDES``/``EXCLUDES`` operators, date literals, ``ORDER BY``, ``LIMIT`` and ``OFFSET``.
Anything else is rejected with the error Salesforce would give, because a client that works only
against a lenient emulator would break against a real org.

Error messages carry Salesforce's location block: ``\\n<snippet>\\n<spaces>^\\nERROR at
Row:R:Column:C\\n<text>``. The snippet is the query line cut to about 32 characters on each side
of the error, widened to whole words; that rule reproduces the real captures we have (for
example amp-labs' ``unknown-object.json``).

The connected user's time zone is taken to be UTC for date literals such as ``TODAY``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sf_activations.emulator.errors import SalesforceError
from sf_activations.emulator.ids import is_well_formed, to_18

if TYPE_CHECKING:
    from sf_activations.emulator.org import Org
    from sf_activations.emulator.schema import FieldDef, ObjectDef

__all__ = [
    "Comparison",
    "Condition",
    "CountItem",
    "FieldPath",
    "Logical",
    "Negation",
    "OrderItem",
    "Query",
    "QueryResult",
    "Value",
    "execute_soql",
    "parse_soql",
]

# Salesforce caps OFFSET at 2,000 (NUMBER_OUTSIDE_VALID_RANGE beyond it).
MAX_OFFSET = 2000

_INVALID_FIELD_HINT = (
    "If you are attempting to use a custom field, be sure to append the '__c' after the custom "
    "field name. Please reference your WSDL or the describe call for the appropriate names."
)
_INVALID_TYPE_HINT = (
    "If you are attempting to use a custom object, be sure to append the '__c' after the entity "
    "name. Please reference your WSDL or the describe call for the appropriate names."
)
_INVALID_RELATIONSHIP_HINT = (
    "If you are attempting to use a custom relationship, be sure to append the '__r' after the "
    "custom relationship name. Please reference your WSDL or the describe call for the "
    "appropriate names."
)

# ---------------------------------------------------------------------------------------------
# Results and syntax tree
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryResult:
    """All records of one query in Salesforce's JSON shape (paging is the REST layer's job).

    For ``COUNT()`` queries ``records`` is empty and ``total_size`` is the count.
    """

    records: list[dict[str, Any]]
    total_size: int


@dataclass(frozen=True)
class FieldPath:
    """A field reference as written: ``Name``, ``Account.Owner.Username``; ``pos`` is its offset."""

    parts: tuple[str, ...]
    pos: int

    @property
    def text(self) -> str:
        """The path as written, dots included."""
        return ".".join(self.parts)


@dataclass(frozen=True)
class CountItem:
    """``COUNT()`` (``field`` None) or ``COUNT(field) [alias]`` in the SELECT list."""

    field: FieldPath | None
    alias: str | None
    pos: int


@dataclass(frozen=True)
class Value:
    """A literal in a WHERE clause.

    ``kind`` is one of ``string``, ``number``, ``boolean``, ``null``, ``date``, ``datetime`` or
    ``date_range`` (a date literal such as ``TODAY`` or ``LAST_N_DAYS:7``, as the name and n).
    ``like`` is the regular expression a string means as a LIKE pattern.
    """

    kind: str
    value: Any
    pos: int
    text: str
    like: str | None = None


@dataclass(frozen=True)
class Comparison:
    """``field op value``.

    For IN/NOT IN/INCLUDES/EXCLUDES ``value`` is a tuple of Values, or for a semi-join
    (``Id IN (SELECT AccountId FROM Contact)``) the subquery.
    """

    field: FieldPath
    op: str  # '=', '!=', '<', '<=', '>', '>=', 'LIKE', 'IN', 'NOT IN', 'INCLUDES', 'EXCLUDES'
    value: Value | tuple[Value, ...] | Query
    pos: int


@dataclass(frozen=True)
class Logical:
    """A run of conditions joined by one operator (SOQL forbids mixing AND and OR unbracketed)."""

    op: str  # 'AND' | 'OR'
    parts: tuple[Condition, ...]


@dataclass(frozen=True)
class Negation:
    """``NOT condition``."""

    inner: Condition


Condition = Comparison | Logical | Negation


@dataclass(frozen=True)
class OrderItem:
    """One ORDER BY key; ``nulls_last`` None means Salesforce's default for the direction."""

    field: FieldPath
    descending: bool
    nulls_last: bool | None


@dataclass(frozen=True)
class Query:
    """A parsed SOQL statement (names as written; resolution against the org comes later)."""

    text: str
    select: tuple[FieldPath | CountItem, ...]
    sobject: str
    sobject_pos: int
    alias: str | None
    where: Condition | None
    order_by: tuple[OrderItem, ...]
    limit: int | None
    offset: int | None


# ---------------------------------------------------------------------------------------------
# Errors with Salesforce's location block
# ---------------------------------------------------------------------------------------------

_WORD = re.compile(r"\w")


def _located(text: str, pos: int, message: str, *, column: int | None = None) -> str:
    """``message`` preceded by the snippet, caret and ``ERROR at Row:R:Column:C`` lines."""
    pos = max(0, min(pos, len(text)))
    line_start = text.rfind("\n", 0, pos) + 1
    line_end = text.find("\n", pos)
    if line_end == -1:
        line_end = len(text)
    line = text[line_start:line_end]
    rel = pos - line_start
    row = text.count("\n", 0, pos) + 1
    col = rel + 1 if column is None else column
    lo = rel - 32
    if lo <= 0:
        lo = 0
    else:
        while lo > 0 and _WORD.match(line[lo - 1]):
            lo -= 1
    hi = rel + 32
    if hi >= len(line):
        hi = len(line)
    else:
        while hi < len(line) and _WORD.match(line[hi]):
            hi += 1
    caret = " " * max(0, col - 1 - lo)
    return f"\n{line[lo:hi]}\n{caret}^\nERROR at Row:{row}:Column:{col}\n{message}"


def _malformed(text: str, pos: int, message: str, *, column: int | None = None) -> SalesforceError:
    return SalesforceError("MALFORMED_QUERY", _located(text, pos, message, column=column))


# ---------------------------------------------------------------------------------------------
# Lexer
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: str  # 'ident', 'string', 'number', 'date', 'datetime', 'op', 'punct', 'eof'
    text: str  # the source text ('<EOF>' at the end)
    pos: int
    value: Any = None
    like: str | None = None

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "ident" else ""


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,3}))?(Z|[+-]\d{2}:?\d{2})"
)
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?![\dT])")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)\w*")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_OPERATORS = ("!=", "<>", "<=", ">=", "=", "<", ">")
_PUNCT = "(),:*"
# Escapes valid anywhere in a SOQL string literal; \% and \_ are handled apart (LIKE wildcards).
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}


def _lex_string(text: str, start: int) -> tuple[_Token, int]:
    """The string literal opening at ``start``; returns the token and the offset after it."""
    i = start + 1
    chars: list[str] = []
    pattern: list[str] = []
    while True:
        if i >= len(text):
            # Salesforce's lexer reports the 0-based offset of the end of input here.
            raise _malformed(
                text,
                len(text),
                f"line 1:{len(text)} mismatched character '<EOF>' expecting '''",
                column=len(text),
            )
        ch = text[i]
        if ch == "'":
            i += 1
            break
        if ch == "\\":
            nxt = text[i + 1] if i + 1 < len(text) else ""
            if nxt in _ESCAPES:
                chars.append(_ESCAPES[nxt])
                pattern.append(re.escape(_ESCAPES[nxt]))
            elif nxt in ("%", "_"):
                chars.append("\\" + nxt)
                pattern.append(re.escape(nxt))
            elif nxt == "u" and re.fullmatch(r"[0-9A-Fa-f]{4}", text[i + 2 : i + 6]):
                decoded = chr(int(text[i + 2 : i + 6], 16))
                chars.append(decoded)
                pattern.append(re.escape(decoded))
                i += 6
                continue
            else:
                literal = text[start:i] + "\\" + nxt + "'"
                msg = (
                    f"Invalid string literal {literal}. Illegal character sequence "
                    f"'\\{nxt}' in string literal."
                )
                raise _malformed(text, start, msg)
            i += 2
            continue
        chars.append(ch)
        if ch == "%":
            pattern.append(".*")
        elif ch == "_":
            pattern.append(".")
        else:
            pattern.append(re.escape(ch))
        i += 1
    return _Token("string", text[start:i], start, "".join(chars), "".join(pattern)), i


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch == "'":
            token, i = _lex_string(text, i)
            tokens.append(token)
            continue
        if ch.isdigit() or (ch in "+-." and i + 1 < n and text[i + 1].isdigit()):
            m_dt = _DATETIME.match(text, i) if ch.isdigit() else None
            if m_dt:
                tokens.append(_Token("datetime", m_dt.group(0), i, _parse_datetime(text, m_dt, i)))
                i = m_dt.end()
                continue
            m_d = _DATE.match(text, i) if ch.isdigit() else None
            if m_d:
                tokens.append(_Token("date", m_d.group(0), i, _parse_date(text, m_d, i)))
                i = m_d.end()
                continue
            m_n = _NUMBER.match(text, i)
            if m_n:
                raw = m_n.group(0)
                if _PLAIN_NUMBER.fullmatch(raw):
                    number: float | int = float(raw) if ("." in raw) else int(raw)
                    tokens.append(_Token("number", raw, i, number))
                else:
                    # Such as 1e2: no SOQL literal, and the parser reports it as a whole.
                    tokens.append(_Token("junk", raw, i))
                i = m_n.end()
                continue
        if ch.isalpha() or ch == "_":
            m_id = _IDENT.match(text, i)
            if m_id:
                tokens.append(_Token("ident", m_id.group(0), i))
                i = m_id.end()
                continue
        op = next((o for o in _OPERATORS if text.startswith(o, i)), None)
        if op is not None:
            tokens.append(_Token("op", op, i))
            i += len(op)
            continue
        if ch in _PUNCT:
            tokens.append(_Token("punct", ch, i))
            i += 1
            continue
        # Salesforce's lexer reports the 0-based offset of the bad character.
        raise _malformed(text, i, f"line 1:{i} no viable alternative at character '{ch}'", column=i)
    tokens.append(_Token("eof", "<EOF>", n))
    return tokens


def _parse_date(text: str, m: re.Match[str], pos: int) -> str:
    try:
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3))).isoformat()
    except ValueError:
        raise _malformed(text, pos, f"value of date literal is invalid: {m.group(0)}") from None


def _parse_datetime(text: str, m: re.Match[str], pos: int) -> str:
    """The literal as the org stores datetimes: UTC, ``YYYY-MM-DDTHH:MM:SS.fff+0000``."""
    year, month, day, hour, minute, second, frac, zone = m.groups()
    try:
        value = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            int((frac or "0").ljust(3, "0")) * 1000,
            tzinfo=UTC,
        )
    except ValueError:
        raise _malformed(text, pos, f"value of dateTime literal is invalid: {m.group(0)}") from None
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        value -= sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return _format_datetime(value)


def _format_datetime(value: datetime) -> str:
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


# ---------------------------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------------------------

# Words that end the FROM clause, so they cannot be read as an alias.
_CLAUSE_WORDS = frozenset(
    [
        "WHERE",
        "WITH",
        "GROUP",
        "HAVING",
        "ORDER",
        "LIMIT",
        "OFFSET",
        "FOR",
        "USING",
        "ALL",
        "UPDATE",
    ]
)
_DATE_LITERALS = frozenset(
    [
        "TODAY",
        "YESTERDAY",
        "TOMORROW",
        "LAST_WEEK",
        "THIS_WEEK",
        "NEXT_WEEK",
        "LAST_MONTH",
        "THIS_MONTH",
        "NEXT_MONTH",
        "LAST_YEAR",
        "THIS_YEAR",
        "NEXT_YEAR",
        "LAST_90_DAYS",
        "NEXT_90_DAYS",
    ]
)
_DATE_N_LITERALS = frozenset(
    [
        "LAST_N_DAYS",
        "NEXT_N_DAYS",
        "N_DAYS_AGO",
        "N_DAYS_FROM_NOW",
        "LAST_N_WEEKS",
        "NEXT_N_WEEKS",
        "LAST_N_MONTHS",
        "NEXT_N_MONTHS",
    ]
)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.in_subquery = False

    # -- token helpers --
    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def advance(self) -> _Token:
        token = self.tokens[self.i]
        if token.kind != "eof":
            self.i += 1
        return token

    def is_word(self, *words: str) -> bool:
        return self.tok.kind == "ident" and self.tok.upper in words

    def unexpected(self, token: _Token | None = None) -> SalesforceError:
        token = token or self.tok
        shown = "<EOF>" if token.kind == "eof" else f"'{token.text}'"
        return _malformed(self.text, token.pos, f"unexpected token: {shown}")

    def expect_word(self, word: str) -> _Token:
        if not self.is_word(word):
            raise self.unexpected()
        return self.advance()

    def expect_punct(self, ch: str) -> _Token:
        if not (self.tok.kind == "punct" and self.tok.text == ch):
            raise self.unexpected()
        return self.advance()

    def is_punct(self, ch: str) -> bool:
        return self.tok.kind == "punct" and self.tok.text == ch

    def field_path(self) -> FieldPath:
        token = self.tok
        if token.kind != "ident":
            raise self.unexpected()
        self.advance()
        return FieldPath(tuple(token.text.split(".")), token.pos)

    def integer(self) -> int:
        token = self.tok
        if token.kind != "number" or not isinstance(token.value, int) or token.value < 0:
            raise self.unexpected()
        self.advance()
        return int(token.value)

    # -- grammar --
    def query(self) -> Query:
        self.expect_word("SELECT")
        select = self.select_list()
        self.expect_word("FROM")
        obj = self.tok
        if obj.kind != "ident" or "." in obj.text:
            raise self.unexpected()
        self.advance()
        alias: str | None = None
        if (
            self.tok.kind == "ident"
            and self.tok.upper not in _CLAUSE_WORDS
            and "." not in self.tok.text
        ):
            alias = self.advance().text
        where: Condition | None = None
        if self.is_word("WHERE"):
            self.advance()
            where = self.condition()
        if self.is_word("WITH"):
            self.advance()
            # Field-level security is always enforced here, so these modes change nothing.
            if not self.is_word("SECURITY_ENFORCED", "USER_MODE", "SYSTEM_MODE"):
                raise self.unexpected()
            self.advance()
        order_by: tuple[OrderItem, ...] = ()
        if self.is_word("ORDER"):
            self.advance()
            self.expect_word("BY")
            order_by = self.order_list()
        limit: int | None = None
        if self.is_word("LIMIT"):
            self.advance()
            limit = self.integer()
        offset: int | None = None
        if self.is_word("OFFSET"):
            self.advance()
            offset_token = self.tok
            offset = self.integer()
            if offset > MAX_OFFSET:
                raise SalesforceError(
                    "NUMBER_OUTSIDE_VALID_RANGE",
                    _located(
                        self.text,
                        offset_token.pos,
                        f"Maximum SOQL offset allowed is {MAX_OFFSET}",
                    ),
                )
        if self.is_word("FOR"):
            self.for_clause()
        if self.is_word("ALL"):
            # ALL ROWS is Apex-only syntax; the API's way to see deleted rows is queryAll.
            raise _malformed(
                self.text,
                self.tok.pos,
                "ALL ROWS is not allowed in this context: it is Apex-only syntax; "
                "use queryAll to include deleted records",
            )
        if self.tok.kind != "eof":
            raise self.unexpected()
        return Query(
            text=self.text,
            select=select,
            sobject=obj.text,
            sobject_pos=obj.pos,
            alias=alias,
            where=where,
            order_by=order_by,
            limit=limit,
            offset=offset,
        )

    def for_clause(self) -> None:
        for_token = self.advance()
        if self.is_word("VIEW", "REFERENCE"):
            # These only update "recently viewed" data, which the emulator does not keep.
            self.advance()
            return
        if self.is_word("UPDATE"):
            # UNVERIFIED wording: the API has no transaction to hold a row lock for.
            raise _malformed(
                self.text,
                for_token.pos,
                "FOR UPDATE is not allowed in this context: row locks exist only inside an Apex "
                "transaction",
            )
        raise self.unexpected()

    def select_list(self) -> tuple[FieldPath | CountItem, ...]:
        items: list[FieldPath | CountItem] = []
        while True:
            if self.is_word("COUNT") and self.tokens[self.i + 1].text == "(":
                count_token = self.advance()
                self.expect_punct("(")
                if self.is_punct(")"):
                    self.advance()
                    if items:
                        # COUNT() must stand alone: Salesforce's grammar has no list around it.
                        raise self.unexpected(count_token)
                    return (CountItem(None, None, count_token.pos),)
                counted = self.field_path()
                self.expect_punct(")")
                alias = None
                if self.tok.kind == "ident" and not self.is_word("FROM"):
                    alias = self.advance().text
                items.append(CountItem(counted, alias, count_token.pos))
            elif self.tok.kind == "ident" and self.tokens[self.i + 1].text == "(":
                # Functions (toLabel, FORMAT, aggregates other than COUNT) are not emulated.
                raise self.unexpected(self.tokens[self.i + 1])
            else:
                items.append(self.field_path())
            if self.is_punct(","):
                self.advance()
                continue
            return tuple(items)

    def order_list(self) -> tuple[OrderItem, ...]:
        items: list[OrderItem] = []
        while True:
            path = self.field_path()
            descending = False
            if self.is_word("ASC", "DESC"):
                descending = self.advance().upper == "DESC"
            nulls_last: bool | None = None
            if self.is_word("NULLS"):
                self.advance()
                if not self.is_word("FIRST", "LAST"):
                    raise self.unexpected()
                nulls_last = self.advance().upper == "LAST"
            items.append(OrderItem(path, descending, nulls_last))
            if self.is_punct(","):
                self.advance()
                continue
            return tuple(items)

    def condition(self) -> Condition:
        first = self.unary()
        if not self.is_word("AND", "OR"):
            return first
        op = self.tok.upper
        parts = [first]
        while self.is_word("AND", "OR"):
            if self.tok.upper != op:
                # Salesforce requires parentheses to mix AND and OR.
                raise self.unexpected()
            self.advance()
            parts.append(self.unary())
        return Logical(op, tuple(parts))

    def unary(self) -> Condition:
        if self.is_word("NOT"):
            self.advance()
            return Negation(self.unary())
        if self.is_punct("("):
            self.advance()
            inner = self.condition()
            self.expect_punct(")")
            return inner
        return self.comparison()

    def comparison(self) -> Comparison:
        path = self.field_path()
        token = self.tok
        if token.kind == "op":
            self.advance()
            op = "!=" if token.text == "<>" else token.text
            return Comparison(path, op, self.value(), token.pos)
        if self.is_word("LIKE"):
            self.advance()
            return Comparison(path, "LIKE", self.value(), token.pos)
        if self.is_word("IN"):
            self.advance()
            return Comparison(path, "IN", self.value_list(allow_subquery=True), token.pos)
        if self.is_word("INCLUDES", "EXCLUDES"):
            self.advance()
            return Comparison(path, token.upper, self.value_list(), token.pos)
        if self.is_word("NOT"):
            self.advance()
            self.expect_word("IN")
            return Comparison(path, "NOT IN", self.value_list(allow_subquery=True), token.pos)
        raise self.unexpected()

    def value_list(self, *, allow_subquery: bool = False) -> tuple[Value, ...] | Query:
        self.expect_punct("(")
        if self.is_word("SELECT") and allow_subquery:
            if self.in_subquery:
                raise _malformed(
                    self.text, self.tok.pos, "Nesting of semi join sub-selects is not supported"
                )
            sub = self.subquery()
            self.expect_punct(")")
            return sub
        values = [self.value()]
        while self.is_punct(","):
            self.advance()
            values.append(self.value())
        self.expect_punct(")")
        return tuple(values)

    def subquery(self) -> Query:
        """``SELECT field FROM object [WHERE ...]`` inside a semi-join's parentheses."""
        self.in_subquery = True
        self.expect_word("SELECT")
        selected = self.field_path()
        self.expect_word("FROM")
        obj = self.tok
        if obj.kind != "ident" or "." in obj.text:
            raise self.unexpected()
        self.advance()
        where: Condition | None = None
        if self.is_word("WHERE"):
            self.advance()
            where = self.condition()
        self.in_subquery = False
        return Query(self.text, (selected,), obj.text, obj.pos, None, where, (), None, None)

    def value(self) -> Value:
        token = self.tok
        if token.kind == "string":
            self.advance()
            return Value("string", token.value, token.pos, token.text, token.like)
        if token.kind == "number":
            self.advance()
            return Value("number", token.value, token.pos, token.text)
        if token.kind in ("date", "datetime"):
            self.advance()
            return Value(token.kind, token.value, token.pos, token.text)
        if token.kind == "punct" and token.text == ":":
            raise _malformed(self.text, token.pos, "Bind variables only allowed in Apex code")
        if token.kind == "ident":
            word = token.upper
            if word in ("TRUE", "FALSE"):
                self.advance()
                return Value("boolean", word == "TRUE", token.pos, token.text)
            if word == "NULL":
                self.advance()
                return Value("null", None, token.pos, token.text)
            if word in _DATE_LITERALS:
                self.advance()
                return Value("date_range", (word, 0), token.pos, token.text)
            if word in _DATE_N_LITERALS:
                self.advance()
                self.expect_punct(":")
                n = self.integer()
                return Value("date_range", (word, n), token.pos, f"{token.text}:{n}")
            if word not in _CLAUSE_WORDS and word not in ("AND", "OR", "NOT"):
                # A bare name here is a field-to-field comparison, which only Apex binds allow.
                raise _malformed(self.text, token.pos, "Bind variables only allowed in Apex code")
        raise self.unexpected()


def parse_soql(text: str) -> Query:
    """Parse one SOQL statement (raises SalesforceError MALFORMED_QUERY on a syntax error)."""
    return _Parser(text).query()


# ---------------------------------------------------------------------------------------------
# Resolution against the org
# ---------------------------------------------------------------------------------------------

_TEXT_TYPES = frozenset(
    ["string", "textarea", "email", "phone", "url", "picklist", "combobox", "encryptedstring"]
)
_NUMBER_TYPES = frozenset({"double", "currency", "percent", "int", "long"})
_ID_TYPES = frozenset({"id", "reference"})
# The type names Salesforce uses in "value of filter criterion ... must be of type X".
_FILTER_TYPE_NAMES = {
    "double": "double",
    "currency": "double",
    "percent": "double",
    "int": "integer",
    "long": "long",
    "boolean": "boolean",
    "date": "date",
    "datetime": "dateTime",
    "id": "id",
    "reference": "id",
}


@dataclass(frozen=True)
class _Hop:
    """One parent relationship step: the reference field and the objects it may point at."""

    field: FieldDef
    targets: tuple[ObjectDef, ...]


@dataclass(frozen=True)
class _Resolved:
    hops: tuple[_Hop, ...]
    leaf: FieldDef  # the field on the last object (or, for polymorphic hops, the first that has it)
    leaf_name: str  # the leaf name in describe case


class _Resolver:
    def __init__(self, org: Org, query: Query) -> None:
        self.org = org
        self.query = query
        self.root = _object_def(org, query.sobject, query.text, query.sobject_pos)
        self.prefixes = {self.root.name.lower()}
        # The root object's fields the query touches: only these columns are read.
        self.used: dict[str, None] = {"Id": None}
        if query.alias:
            self.prefixes.add(query.alias.lower())

    def invalid_field(self, path: FieldPath, message: str) -> SalesforceError:
        return SalesforceError("INVALID_FIELD", _located(self.query.text, path.pos, message))

    def resolve(self, path: FieldPath) -> _Resolved:
        parts = list(path.parts)
        if len(parts) > 1 and parts[0].lower() in self.prefixes:
            parts = parts[1:]
        objects: tuple[ObjectDef, ...] = (self.root,)
        hops: list[_Hop] = []
        for rel in parts[:-1]:
            ref = self._relationship(objects, rel)
            if ref is None:
                msg = f"Didn't understand relationship '{rel}' in field path. {_INVALID_RELATIONSHIP_HINT}"
                raise self.invalid_field(path, msg)
            targets = tuple(
                t for t in (self._target(name) for name in ref.reference_to) if t is not None
            )
            if not targets:
                msg = f"Didn't understand relationship '{rel}' in field path. {_INVALID_RELATIONSHIP_HINT}"
                raise self.invalid_field(path, msg)
            hops.append(_Hop(ref, targets))
            objects = targets
        leaf_name = parts[-1]
        for obj in objects:
            leaf = self.org.visible_field(obj.name, leaf_name)
            if leaf is not None:
                self.used[hops[0].field.name if hops else leaf.name] = None
                return _Resolved(tuple(hops), leaf, leaf.name)
        msg = f"No such column '{leaf_name}' on entity '{objects[0].name}'. {_INVALID_FIELD_HINT}"
        raise self.invalid_field(path, msg)

    def _relationship(self, objects: tuple[ObjectDef, ...], rel: str) -> FieldDef | None:
        for obj in objects:
            ref = obj.relationship(rel)
            # A reference hidden by field-level security hides its relationship too.
            if ref is not None and self.org.visible_field(obj.name, ref.name) is not None:
                return ref
        return None

    def _target(self, name: str) -> ObjectDef | None:
        try:
            return self.org.object_def(name)
        except SalesforceError:
            return None


def _object_def(org: Org, name: str, text: str, pos: int) -> ObjectDef:
    """The FROM object, or INVALID_TYPE if it is unknown, not queryable or not readable."""
    message = _located(text, pos, f"sObject type '{name}' is not supported. {_INVALID_TYPE_HINT}")
    try:
        obj = org.object_def(name)
    except SalesforceError:
        raise SalesforceError("INVALID_TYPE", message) from None
    if not obj.queryable or not org.permissions.object_access(obj.name).read:
        raise SalesforceError("INVALID_TYPE", message)
    return obj


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------

_Row = dict[str, Any]
_Getter = Callable[[_Row], Any]
_Predicate = Callable[[_Row], bool]


class _Evaluator:
    def __init__(
        self, org: Org, resolver: _Resolver, *, include_deleted: bool, today: date
    ) -> None:
        self.org = org
        self.resolver = resolver
        self.text = resolver.query.text
        self.include_deleted = include_deleted
        self.today = today
        # Parent rows are fetched once per query: many children share a parent.
        self.parents: dict[str, tuple[str, _Row] | None] = {}

    # -- parents --
    def parent(self, row: _Row, hop: _Hop) -> tuple[str, _Row] | None:
        ref = row.get(hop.field.name)
        if not ref:
            return None
        if ref in self.parents:
            return self.parents[ref]
        found: tuple[str, _Row] | None = None
        if len(hop.targets) == 1:
            target: str | None = hop.targets[0].name
        else:
            target = self.org.sobject_of_id(ref)
        if target is not None:
            parent_row = self.org.row(target, ref, include_deleted=self.include_deleted)
            if parent_row is not None:
                found = (target, parent_row)
        self.parents[ref] = found
        return found

    def getter(self, resolved: _Resolved) -> _Getter:
        name = resolved.leaf_name
        if not resolved.hops:
            return lambda row: row.get(name)
        hops = resolved.hops

        def get(row: _Row) -> Any:
            current = row
            for hop in hops:
                found = self.parent(current, hop)
                if found is None:
                    return None
                current = found[1]
            return current.get(name)

        return get

    # -- WHERE --
    def predicate(self, cond: Condition) -> _Predicate:
        if isinstance(cond, Negation):
            inner = self.predicate(cond.inner)
            return lambda row: not inner(row)
        if isinstance(cond, Logical):
            parts = [self.predicate(p) for p in cond.parts]
            if cond.op == "AND":
                return lambda row: all(p(row) for p in parts)
            return lambda row: any(p(row) for p in parts)
        return self.comparison(cond)

    def filter_error(self, value: Value, message: str) -> SalesforceError:
        return SalesforceError(
            "INVALID_QUERY_FILTER_OPERATOR", _located(self.text, value.pos, message)
        )

    def comparison(self, cmp: Comparison) -> _Predicate:
        resolved = self.resolver.resolve(cmp.field)
        field = resolved.leaf
        if _is_long_text(field):
            msg = f"field '{field.name}' can not be filtered in a query call"
            raise self.resolver.invalid_field(cmp.field, msg)
        get = self.getter(resolved)
        ftype = field.type
        if isinstance(cmp.value, Query):
            return self.semi_join(cmp, field, get, cmp.value)
        values = cmp.value if isinstance(cmp.value, tuple) else (cmp.value,)
        for v in values:
            self.check_type(field, v, cmp)
        if ftype == "multipicklist":
            return self.multipicklist(cmp, get, values)
        if cmp.op == "LIKE":
            like = values[0]
            if ftype not in _TEXT_TYPES and ftype not in _ID_TYPES:
                msg = f"invalid operator on {_FILTER_TYPE_NAMES.get(ftype, ftype)} field: {field.name}"
                raise self.filter_error(like, msg)
            if like.kind == "null":
                return lambda row: False
            flags = re.DOTALL if field.case_sensitive else re.DOTALL | re.IGNORECASE
            regex = re.compile(like.like or "", flags)
            return lambda row: (v := get(row)) not in (None, "") and regex.fullmatch(v) is not None
        if cmp.op in ("INCLUDES", "EXCLUDES"):
            msg = f"INCLUDES/EXCLUDES operator only valid on multipicklist field: {field.name}"
            raise self.filter_error(values[0], msg)
        norm = _normaliser(field)
        if cmp.op in ("IN", "NOT IN"):
            keys = {self.literal(field, v) for v in values if v.kind != "null"}
            has_null = any(v.kind == "null" for v in values)
            negate = cmp.op == "NOT IN"

            def in_set(row: _Row) -> bool:
                v = norm(get(row))
                hit = has_null if v is None else v in keys
                return hit != negate

            return in_set
        value = values[0]
        if value.kind == "date_range":
            return self.date_range(cmp, field, get, value)
        lit = None if value.kind == "null" else self.literal(field, value)
        op = cmp.op
        if op == "=":
            return lambda row: norm(get(row)) == lit
        if op == "!=":
            return lambda row: norm(get(row)) != lit
        if lit is None:
            # Ordering against null matches nothing.
            return lambda row: False
        compare = _ORDERINGS[op]
        return lambda row: (v := norm(get(row))) is not None and compare(v, lit)

    def semi_join(self, cmp: Comparison, field: FieldDef, get: _Getter, sub: Query) -> _Predicate:
        """``field [NOT] IN (SELECT idField FROM Object WHERE ...)``: a set of ids, computed once."""
        # UNVERIFIED wording for both errors; Salesforce only joins on Id and reference fields.
        if field.type not in _ID_TYPES:
            msg = f"Invalid field for semi join: {field.name}. It must be an Id or reference field"
            raise _malformed(self.text, cmp.field.pos, msg)
        resolver = _Resolver(self.org, sub)
        [selected] = sub.select
        assert isinstance(selected, FieldPath)
        resolved = resolver.resolve(selected)
        if resolved.leaf.type not in _ID_TYPES:
            msg = (
                f"Invalid field for semi join: {selected.text}. It must be an Id or reference field"
            )
            raise _malformed(self.text, selected.pos, msg)
        inner = _Evaluator(
            self.org, resolver, include_deleted=self.include_deleted, today=self.today
        )
        inner_get = inner.getter(resolved)
        keep = inner.predicate(sub.where) if sub.where is not None else None
        ids = {inner_get(r) for r in _matching(self.org, resolver, self.include_deleted, keep)}
        ids.discard(None)
        if cmp.op == "IN":
            return lambda row: get(row) in ids
        return lambda row: get(row) not in ids

    def check_type(self, field: FieldDef, value: Value, cmp: Comparison) -> None:
        """Reject a literal of the wrong kind, as Salesforce does before running the query."""
        ftype = field.type
        kind = value.kind
        if kind == "null":
            return
        name = field.name
        if ftype in _TEXT_TYPES or ftype == "multipicklist":
            if kind != "string":
                msg = f"value of filter criterion for field '{name}' must be of type string and should be enclosed in quotes"
                raise self.filter_error(value, msg)
            return
        type_name = _FILTER_TYPE_NAMES.get(ftype, ftype)
        if ftype in _ID_TYPES:
            if kind != "string":
                msg = f"value of filter criterion for field '{name}' must be of type id and should be enclosed in quotes"
                raise self.filter_error(value, msg)
            if cmp.op != "LIKE" and value.value != "" and not is_well_formed(value.value):
                raise self.filter_error(value, f"invalid ID field: {value.value}")
            return
        allowed = {
            "boolean": ("boolean",),
            "date": ("date", "date_range"),
            "datetime": ("datetime", "date_range"),
        }.get(ftype, ("number",) if ftype in _NUMBER_TYPES else ("string",))
        if kind not in allowed:
            msg = f"value of filter criterion for field '{name}' must be of type {type_name} and should not be enclosed in quotes"
            raise self.filter_error(value, msg)
        if ftype == "boolean" and cmp.op not in ("=", "!=", "IN", "NOT IN"):
            raise self.filter_error(value, f"invalid operator on boolean field: {name}")

    def literal(self, field: FieldDef, value: Value) -> Any:
        """The literal normalised the way ``_normaliser(field)`` normalises stored values."""
        ftype = field.type
        if ftype in _ID_TYPES:
            return to_18(value.value) if value.value else None
        if ftype in _NUMBER_TYPES:
            return float(value.value)
        if ftype in _TEXT_TYPES:
            text = str(value.value).replace("\\%", "%").replace("\\_", "_")
            if text == "":
                # Salesforce stores no empty strings: '' means null in a filter.
                return None
            return text if field.case_sensitive else text.lower()
        return value.value

    def date_range(
        self, cmp: Comparison, field: FieldDef, get: _Getter, value: Value
    ) -> _Predicate:
        start_day, end_day = _date_range(value.value[0], value.value[1], self.today)
        if field.type == "date":
            start, end = start_day.isoformat(), end_day.isoformat()
        else:
            start = _format_datetime(datetime.combine(start_day, datetime.min.time(), UTC))
            end = _format_datetime(datetime.combine(end_day, datetime.min.time(), UTC))
        inside: Callable[[str], bool] = lambda v: start <= v < end  # noqa: E731
        tests: dict[str, Callable[[str], bool]] = {
            "=": inside,
            "!=": lambda v: not inside(v),
            "<": lambda v: v < start,
            "<=": lambda v: v < end,
            ">": lambda v: v >= end,
            ">=": lambda v: v >= start,
        }
        test = tests[cmp.op]
        if cmp.op == "!=":
            return lambda row: (v := get(row)) is None or test(v)
        return lambda row: (v := get(row)) is not None and test(v)

    def multipicklist(self, cmp: Comparison, get: _Getter, values: tuple[Value, ...]) -> _Predicate:
        def as_set(v: Any) -> frozenset[str]:
            return frozenset(p.strip().lower() for p in str(v).split(";") if p.strip())

        if cmp.op in ("=", "!="):
            target = (
                None
                if values[0].kind == "null" or values[0].value == ""
                else as_set(values[0].value)
            )
            negate = cmp.op == "!="

            def equals(row: _Row) -> bool:
                v = get(row)
                hit = (None if v in (None, "") else as_set(v)) == target
                return hit != negate

            return equals
        if cmp.op in ("INCLUDES", "EXCLUDES"):
            # Each listed value may itself be 'a;b', meaning "has both a and b".
            wanted = [as_set(v.value) for v in values if v.kind == "string"]
            negate = cmp.op == "EXCLUDES"

            def includes(row: _Row) -> bool:
                v = get(row)
                have = frozenset() if v in (None, "") else as_set(v)
                hit = any(w <= have for w in wanted if w)
                return hit != negate

            return includes
        msg = f"invalid operator on multipicklist field: {cmp.field.text}"
        raise self.filter_error(values[0], msg)

    # -- ORDER BY --
    def sort(self, rows: list[_Row], items: Sequence[OrderItem]) -> list[_Row]:
        # Stable sorts from the last key to the first give the multi-key order.
        for item in reversed(items):
            resolved = self.resolver.resolve(item.field)
            get = self.getter(resolved)
            norm = _sort_normaliser(resolved.leaf)
            nulls_last = item.nulls_last if item.nulls_last is not None else item.descending
            present = [(norm(v), r) for r in rows if (v := get(r)) not in (None, "")]
            missing = [r for r in rows if get(r) in (None, "")]
            present.sort(key=lambda pair: pair[0], reverse=item.descending)
            ordered = [r for _, r in present]
            rows = ordered + missing if nulls_last else missing + ordered
        return rows

    # -- output --
    def project(self, row: _Row, sobject: str, tree: _Tree, api_version: str) -> dict[str, Any]:
        record: dict[str, Any] = {
            "attributes": {
                "type": sobject,
                "url": f"/services/data/v{api_version}/sobjects/{sobject}/{row.get('Id')}",
            }
        }
        for key, node in tree.items():
            if isinstance(node, _Branch):
                found = self.parent(row, node.hop)
                record[key] = (
                    None
                    if found is None
                    else self.project(found[1], found[0], node.children, api_version)
                )
            else:
                record[key] = row.get(key)
        return record


@dataclass(frozen=True)
class _Branch:
    hop: _Hop
    children: _Tree


_Tree = dict[str, "_Branch | None"]


def _is_long_text(field: FieldDef) -> bool:
    """Long and rich text areas: neither filterable nor sortable (as describe() reports)."""
    return field.type == "textarea" and field.length > 255


def _normaliser(field: FieldDef) -> Callable[[Any], Any]:
    """Stored value -> comparable value; None for null (and for '', which Salesforce never stores)."""
    ftype = field.type
    if ftype in _TEXT_TYPES and not field.case_sensitive:
        return lambda v: v.lower() if v else None
    if ftype in _NUMBER_TYPES:
        return lambda v: None if v is None or v == "" else float(v)
    return lambda v: None if v is None or v == "" else v


def _sort_normaliser(field: FieldDef) -> Callable[[Any], Any]:
    if field.type in _TEXT_TYPES or field.type == "multipicklist":
        return lambda v: str(v).lower()
    if field.type in _NUMBER_TYPES:
        return float
    return lambda v: v


_ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _month_start(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _date_range(word: str, n: int, today: date) -> tuple[date, date]:
    """A date literal as the half-open range of days [start, end) it covers."""
    one = timedelta(days=1)
    # Weeks start on Sunday, as in the default (en_US) locale.
    week = today - timedelta(days=(today.weekday() + 1) % 7)
    month = _month_start(today, 0)
    year = date(today.year, 1, 1)
    fixed = {
        "TODAY": (today, today + one),
        "YESTERDAY": (today - one, today),
        "TOMORROW": (today + one, today + 2 * one),
        "THIS_WEEK": (week, week + 7 * one),
        "LAST_WEEK": (week - 7 * one, week),
        "NEXT_WEEK": (week + 7 * one, week + 14 * one),
        "THIS_MONTH": (month, _month_start(today, 1)),
        "LAST_MONTH": (_month_start(today, -1), month),
        "NEXT_MONTH": (_month_start(today, 1), _month_start(today, 2)),
        "THIS_YEAR": (year, date(today.year + 1, 1, 1)),
        "LAST_YEAR": (date(today.year - 1, 1, 1), year),
        "NEXT_YEAR": (date(today.year + 1, 1, 1), date(today.year + 2, 1, 1)),
        # LAST_N_DAYS includes today; NEXT_N_DAYS starts tomorrow (Salesforce's definitions).
        "LAST_90_DAYS": (today - 90 * one, today + one),
        "NEXT_90_DAYS": (today + one, today + 91 * one),
        "LAST_N_DAYS": (today - n * one, today + one),
        "NEXT_N_DAYS": (today + one, today + (n + 1) * one),
        "N_DAYS_AGO": (today - n * one, today - (n - 1) * one),
        "N_DAYS_FROM_NOW": (today + n * one, today + (n + 1) * one),
        "LAST_N_WEEKS": (week - 7 * n * one, week),
        "NEXT_N_WEEKS": (week + 7 * one, week + 7 * (n + 1) * one),
        "LAST_N_MONTHS": (_month_start(today, -n), month),
        "NEXT_N_MONTHS": (_month_start(today, 1), _month_start(today, n + 1)),
    }
    return fixed[word]


def _build_tree(resolver: _Resolver, paths: Sequence[FieldPath]) -> _Tree:
    """The SELECT list as a tree of fields and parent relationships, in SELECT order."""
    tree: _Tree = {}
    seen: set[tuple[str, ...]] = set()
    for path in paths:
        resolved = resolver.resolve(path)
        key = (*(h.field.name.lower() for h in resolved.hops), resolved.leaf_name.lower())
        if key in seen:
            # UNVERIFIED code; the message is the one Salesforce is widely reported to give.
            raise _malformed(
                resolver.query.text, path.pos, f"duplicate field selected: {path.text}"
            )
        seen.add(key)
        node = tree
        for hop in resolved.hops:
            rel = hop.field.relationship_name or hop.field.name
            branch = node.get(rel)
            if branch is None:
                branch = _Branch(hop, {})
                node[rel] = branch
            node = branch.children
        node[resolved.leaf_name] = None
    return tree


def _today(org: Org, now: datetime | None) -> date:
    if now is None:
        # TODAY must agree with the CreatedDate stamps the same org writes: ask the org's clock
        # (``Org.now()``; older orgs only had the private ``_clock``).
        for name in ("now", "_clock"):
            clock = getattr(org, name, None)
            value = clock() if callable(clock) else None
            if isinstance(value, datetime):
                now = value
                break
        else:
            now = datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now.astimezone(UTC).date()


def execute_soql(
    org: Org,
    soql: str,
    *,
    include_deleted: bool = False,
    api_version: str = "59.0",
    now: datetime | None = None,
) -> QueryResult:
    """Run one SOQL statement against ``org`` (``include_deleted`` is queryAll).

    Raises SalesforceError (status 400) with MALFORMED_QUERY, INVALID_TYPE, INVALID_FIELD,
    INVALID_QUERY_FILTER_OPERATOR or NUMBER_OUTSIDE_VALID_RANGE, as Salesforce does. ``now``
    overrides the org's clock for date literals such as ``TODAY``.
    """
    query = parse_soql(soql)
    with org.lock:
        resolver = _Resolver(org, query)
        evaluator = _Evaluator(
            org, resolver, include_deleted=include_deleted, today=_today(org, now)
        )
        counts = [item for item in query.select if isinstance(item, CountItem)]
        paths = [item for item in query.select if isinstance(item, FieldPath)]
        if counts and paths:
            # Aggregates without GROUP BY cannot sit beside plain fields.
            raise _malformed(
                query.text, paths[0].pos, f"Field must be grouped or aggregated: {paths[0].text}"
            )
        tree = _build_tree(resolver, paths)
        count_getters = [
            (item, evaluator.getter(resolver.resolve(item.field)) if item.field else None)
            for item in counts
        ]
        keep = evaluator.predicate(query.where) if query.where is not None else None
        for order_item in query.order_by:
            # Checked before any work so that a bad ORDER BY field fails like Salesforce's.
            leaf = resolver.resolve(order_item.field).leaf
            if leaf.type == "multipicklist" or _is_long_text(leaf):
                msg = f"field '{leaf.name}' can not be sorted in a query call"
                raise resolver.invalid_field(order_item.field, msg)
        rows = _matching(org, resolver, include_deleted, keep)
        if query.order_by:
            rows = evaluator.sort(rows, query.order_by)
        start = query.offset or 0
        stop = None if query.limit is None else start + query.limit
        rows = rows[start:stop]
        if counts and counts[0].field is None:
            return QueryResult(records=[], total_size=len(rows))
        if counts:
            aggregate: dict[str, Any] = {"attributes": {"type": "AggregateResult"}}
            for index, (item, get) in enumerate(count_getters):
                assert get is not None
                name = item.alias or f"expr{index}"
                aggregate[name] = sum(1 for r in rows if get(r) not in (None, ""))
            return QueryResult(records=[aggregate], total_size=1)
        records = [evaluator.project(r, resolver.root.name, tree, api_version) for r in rows]
        return QueryResult(records=records, total_size=len(records))


def _matching(
    org: Org, resolver: _Resolver, include_deleted: bool, keep: _Predicate | None
) -> list[_Row]:
    """The root object's rows that pass ``keep``, holding only the fields the query uses."""
    # A column-wise read of the used fields is far cheaper than whole-record dicts.
    names = list(resolver.used)
    columns = org.columns(resolver.root.name, names, include_deleted=include_deleted)
    present = [name for name in names if name in columns]
    rows: Iterator[_Row] = (
        dict(zip(present, values, strict=True))
        for values in zip(*(columns[name] for name in present), strict=True)
    )
    if keep is None:
        return list(rows)
    return [r for r in rows if keep(r)]
