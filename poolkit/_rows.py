"""The types of query results: :class:`Row` and :data:`Description`.

poolkit hands over rows and ``cursor.description`` exactly as the driver made them, never
converted, so their types say what the supported drivers' default cursors have in common.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, TypeAlias, overload

__all__ = ["Description", "Row"]


class Row(Protocol):
    """One result row, as the driver returned it: index it, slice it, unpack it, iterate it.

    PEP 249 only says "a sequence". The default cursors of sqlite3, psycopg2, psycopg 3,
    PyMySQL, mysqlclient, oracledb and :mod:`poolkit.fakes` return a ``tuple``; pyodbc
    returns a ``pyodbc.Row``, which indexes and unpacks like one but is not a tuple (no
    ``+``, ``count()`` or ``index()``). ``Row`` is what both offer; ``tuple(row)`` makes
    a tuple. Rows a driver is configured to make differently (PyMySQL's ``DictCursor``,
    psycopg's ``dict_row``, sqlite3's ``row_factory``, a ``cursor()`` with driver
    arguments) still come back as they are, typed ``Row``: ``cast`` them to that type.
    """

    @overload
    def __getitem__(self, index: int, /) -> Any: ...
    @overload
    def __getitem__(self, index: slice, /) -> Sequence[Any]: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[Any]: ...


#: ``cursor.description`` when the statement returned rows (it is None otherwise): one
#: PEP 249 7-item sequence per column, ``(name, type_code, display_size, internal_size,
#: precision, scale, null_ok)``. A tuple of tuples for most drivers; psycopg2's items are
#: ``Column`` objects and psycopg 3's a list of them, so an item is typed like a :class:`Row`.
Description: TypeAlias = Sequence[Row]
