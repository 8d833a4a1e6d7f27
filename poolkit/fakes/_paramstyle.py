"""Translating the five PEP 249 paramstyles into SQLite's own placeholders.

A small scanner walks the statement and rewrites the markers of the chosen style: ``?``
(qmark), ``:1`` (numeric), ``:name`` (named), ``%s`` (format), ``%(name)s`` (pyformat, which
also takes ``%s``). For the first three it leaves string literals, quoted identifiers and
comments alone. The ``%`` styles read the whole statement, literals included, as psycopg2 and
PyMySQL do (``'100%%'`` is ``'100%'``); a statement run without parameters is not scanned
for ``%`` at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, Literal

__all__ = ["PARAMSTYLES", "Paramstyle", "translate", "translate_sql"]

Paramstyle = Literal["qmark", "numeric", "named", "format", "pyformat"]
PARAMSTYLES: tuple[str, ...] = ("qmark", "numeric", "named", "format", "pyformat")


class ParamError(Exception):
    """The statement or its parameters do not fit the paramstyle (raised as ProgrammingError)."""


def _skip_quoted(sql: str, i: int) -> int:
    """Index just past the literal, identifier or comment starting at ``i`` (or ``i``)."""
    c = sql[i]
    if c in "'\"`":
        j = i + 1
        while j < len(sql):
            if sql[j] == c:
                if j + 1 < len(sql) and sql[j + 1] == c:  # doubled quote escapes itself
                    j += 2
                    continue
                return j + 1
            j += 1
        return len(sql)
    if sql.startswith("--", i):
        end = sql.find("\n", i)
        return len(sql) if end < 0 else end + 1
    if sql.startswith("/*", i):
        end = sql.find("*/", i + 2)
        return len(sql) if end < 0 else end + 2
    return i


@lru_cache(maxsize=512)
def _scan(style: str, sql: str) -> tuple[str, Literal["positional", "named", "none"]]:
    out: list[str] = []
    kind: Literal["positional", "named", "none"] = "none"
    i = 0
    n = len(sql)

    def use(k: Literal["positional", "named"]) -> None:
        nonlocal kind
        if kind not in ("none", k):
            raise ParamError(f"{style} statement mixes positional and named parameters")
        kind = k

    # psycopg2 and PyMySQL %-format the whole statement, literals and comments included.
    percent = style in ("format", "pyformat")
    while i < n:
        j = i if percent else _skip_quoted(sql, i)
        if j != i:
            out.append(sql[i:j])
            i = j
            continue
        c = sql[i]
        if style in ("format", "pyformat") and c == "%":
            nxt = sql[i + 1 : i + 2]
            if nxt == "%":
                out.append("%")
                i += 2
                continue
            if nxt == "s":
                use("positional")
                out.append("?")
                i += 2
                continue
            if nxt == "(" and style == "pyformat":
                close = sql.find(")", i)
                if close > 0 and sql[close + 1 : close + 2] == "s":
                    name = sql[i + 2 : close]
                    if not name.isidentifier():
                        raise ParamError(f"bad parameter name {name!r} in %({name})s")
                    use("named")
                    out.append(f":{name}")
                    i = close + 2
                    continue
            raise ParamError(
                f"unsupported format marker {sql[i : i + 3]!r} at offset {i}: "
                f"{style} takes %s{', %(name)s' if style == 'pyformat' else ''} and %%"
            )
        if c == "?" and style == "qmark":
            use("positional")
        elif c == ":" and style in ("named", "numeric") and sql[i + 1 : i + 2] != ":":
            j = i + 1
            while j < n and (sql[j].isalnum() or sql[j] == "_"):
                j += 1
            token = sql[i + 1 : j]
            if style == "numeric" and token.isdigit():
                use("positional")
                out.append(f"?{token}")
                i = j
                continue
            if style == "named" and token and (token[0].isalpha() or token[0] == "_"):
                use("named")
                out.append(f":{token}")
                i = j
                continue
        out.append(c)
        i += 1
    return "".join(out), kind


def translate_sql(style: str, sql: str) -> str:
    """The statement with SQLite's placeholders (for ``executemany`` of no rows)."""
    return _scan(style, sql)[0]


def translate(style: str, sql: str, params: Any) -> tuple[str, Any]:
    """``(sqlite_sql, sqlite_params)`` for a statement written in ``style``."""
    if params is None:
        if style in ("format", "pyformat"):
            return sql, ()
        params = ()
    text, kind = _scan(style, sql)
    if isinstance(params, Mapping):
        if kind == "positional":
            raise ParamError(f"{style} statement has positional markers but got a mapping")
        return text, params
    if isinstance(params, (str, bytes)) or not isinstance(params, Sequence):
        raise ParamError(f"parameters must be a sequence or a mapping, got {type(params).__name__}")
    if kind == "named":
        raise ParamError(f"{style} statement has named markers but got a sequence")
    return text, params
