"""The PEP 249 surface the fake driver shares with every real driver.

The exception tree is PEP 249's, exactly: ``Warning`` and ``Error`` derive from ``Exception``;
``InterfaceError`` and ``DatabaseError`` from ``Error``; the six specific database errors from
``DatabaseError``. Hand-written fakes often get this wrong (``InterfaceError`` under
``DatabaseError``, no ``Warning``), and code that catches ``DatabaseError`` then behaves
differently against the fake than against a driver.
"""

from __future__ import annotations

import datetime
import time
from typing import Any, TypeVar

__all__ = [
    "BINARY",
    "DATETIME",
    "ERROR_NAMES",
    "NUMBER",
    "ROWID",
    "STRING",
    "Binary",
    "CursorIteration",
    "DataError",
    "DatabaseError",
    "Date",
    "DateFromTicks",
    "Error",
    "Exceptions",
    "IntegrityError",
    "InterfaceError",
    "InternalError",
    "NotSupportedError",
    "OperationalError",
    "ProgrammingError",
    "Time",
    "TimeFromTicks",
    "Timestamp",
    "TimestampFromTicks",
    "TypeObject",
    "Warning",
]


class Warning(Exception):
    """An important warning, such as data truncation on insert."""


class Error(Exception):
    """Base class of every other error of the driver."""


class InterfaceError(Error):
    """An error in the driver interface rather than the database (for example, a closed cursor)."""


class DatabaseError(Error):
    """An error related to the database."""


class DataError(DatabaseError):
    """A problem with the processed data: division by zero, value out of range."""


class OperationalError(DatabaseError):
    """The database's operation failed, not necessarily by the programmer's fault.

    An unexpected disconnect, a refused connection, a timeout, a cancelled statement.
    """


class IntegrityError(DatabaseError):
    """Relational integrity is affected: a failed foreign key or unique check."""


class InternalError(DatabaseError):
    """The database hit an internal error: the cursor is not valid any more, the transaction is out
    of sync."""


class ProgrammingError(DatabaseError):
    """A programming error: table not found, syntax error, wrong number of parameters."""


class NotSupportedError(DatabaseError):
    """A method or database API was used which the database does not support."""


class Exceptions:
    """The exception classes as attributes (of the driver, and of its connections: PEP 249's
    optional extension that lets code catch ``conn.Error`` without importing the module)."""

    Warning = Warning
    Error = Error
    InterfaceError = InterfaceError
    DatabaseError = DatabaseError
    DataError = DataError
    OperationalError = OperationalError
    IntegrityError = IntegrityError
    InternalError = InternalError
    ProgrammingError = ProgrammingError
    NotSupportedError = NotSupportedError


_C = TypeVar("_C", bound="CursorIteration")


class CursorIteration:
    """What every cursor of the fakes does alike: iterate with ``fetchone()`` (PEP 249's
    optional extension) and close at the end of a ``with`` block."""

    def fetchone(self) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __iter__(self: _C) -> _C:
        return self

    def __next__(self) -> Any:
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: PEP 249's exception names, every one an attribute of a PEP 249 module.
ERROR_NAMES: tuple[str, ...] = (
    "Warning",
    "Error",
    "InterfaceError",
    "DatabaseError",
    "DataError",
    "OperationalError",
    "IntegrityError",
    "InternalError",
    "ProgrammingError",
    "NotSupportedError",
)


class TypeObject:
    """A PEP 249 type object: equal to every type code of its kind in ``cursor.description``."""

    __slots__ = ("codes", "name")

    def __init__(self, name: str, *codes: str) -> None:
        self.name = name
        self.codes = frozenset(codes)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TypeObject):
            return self is other
        return other in self.codes

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f"<TypeObject {self.name} {sorted(self.codes)}>"


# Type codes the fake puts in ``description``: the SQLite storage class of the column's value.
STRING = TypeObject("STRING", "TEXT")
BINARY = TypeObject("BINARY", "BLOB")
NUMBER = TypeObject("NUMBER", "INTEGER", "REAL", "NUMERIC")
DATETIME = TypeObject("DATETIME", "DATE", "TIME", "TIMESTAMP")
ROWID = TypeObject("ROWID", "ROWID")

Date = datetime.date
Time = datetime.time
Timestamp = datetime.datetime
Binary = bytes


def DateFromTicks(ticks: float) -> datetime.date:
    """The local date of a POSIX timestamp."""
    return Date(*time.localtime(ticks)[:3])


def TimeFromTicks(ticks: float) -> datetime.time:
    """The local time of day of a POSIX timestamp."""
    return Time(*time.localtime(ticks)[3:6])


def TimestampFromTicks(ticks: float) -> datetime.datetime:
    """The local date and time of a POSIX timestamp."""
    return Timestamp(*time.localtime(ticks)[:6])
