"""Which tables a model's SQL reads: the model's upstream assets in the lineage graph."""

from __future__ import annotations

import re

import duckdb

# Fallback for SQL that DuckDB's parser refuses (another dialect, or a JOIN ... USING that its
# table-name extractor tries to bind): comments and literals removed, FROM/JOIN <name> kept,
# names defined by WITH excluded.
_COMMENTS_AND_STRINGS = re.compile(r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'", re.DOTALL)
_FROM_JOIN = re.compile(r"\b(?:from|join)\s+([A-Za-z_\"][\w.\"]*)", re.IGNORECASE)
_CTE = re.compile(r"(?:\bwith|,)\s*(?:recursive\s+)?([A-Za-z_]\w*)\s+as\s*\(", re.IGNORECASE)


def referenced_tables(sql: str) -> set[str]:
    """Lower-cased, unqualified names of the tables ``sql`` reads (CTE names excluded).

    Uses DuckDB's own parser when it can, so names in comments or string literals do not count.
    """
    try:
        names = set(duckdb.get_table_names(sql, qualified=False))
    except duckdb.Error:
        text = _COMMENTS_AND_STRINGS.sub(" ", sql)
        ctes = {m.group(1).lower() for m in _CTE.finditer(text)}
        names = {m.group(1) for m in _FROM_JOIN.finditer(text)}
        names = {n for n in names if n.replace('"', "").lower() not in ctes}
    return {n.replace('"', "").rsplit(".", maxsplit=1)[-1].lower() for n in names}
