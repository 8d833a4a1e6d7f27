"""The errors a driver raises for the faults the plans inject, with the real drivers' texts.

Pools and applications tell a lost connection from a bad statement by the driver's error class,
code and text (poolkit's own driver profiles do). An injected fault must therefore look exactly
like the real one: ``pymysql`` gets error 2013, ``pyodbc`` SQLSTATE 08S01, ``psycopg2`` the libpq
message. This module is the one place those texts live.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Dialect", "dialect_for"]

Make = Callable[[Any], BaseException]


def _op(*args: Any) -> Make:
    return lambda module: module.OperationalError(*args)


def _pg_cancelled(module: Any) -> BaseException:
    extensions = getattr(module, "extensions", None)
    cls = getattr(extensions, "QueryCanceledError", None) or module.OperationalError
    error: BaseException = cls("canceling statement due to user request\n")
    return error


@dataclass(frozen=True)
class Dialect:
    """How one driver reports the injected faults."""

    name: str
    #: the connection is gone (the pool must see a disconnect)
    disconnect: Make
    #: a connect was refused
    refused: Make
    #: a hang ran out of time
    timeout: Make
    #: the running statement was cancelled from another thread
    cancelled: Make


_PG_LOST = (
    "server closed the connection unexpectedly\n"
    "\tThis probably means the server terminated abnormally\n"
    "\tbefore or while processing the request.\n"
)
_PG_REFUSED = (
    'connection to server at "127.0.0.1", port 5432 failed: Connection refused\n'
    "\tIs the server running on that host and accepting TCP/IP connections?\n"
)

PSYCOPG2 = Dialect(
    name="psycopg2",
    disconnect=_op(_PG_LOST),
    refused=_op(_PG_REFUSED),
    timeout=_op("timeout expired\n"),
    cancelled=_pg_cancelled,
)

MYSQL = Dialect(
    name="mysql",
    disconnect=_op(2013, "Lost connection to MySQL server during query"),
    refused=_op(
        2003, "Can't connect to MySQL server on '127.0.0.1' ([Errno 111] Connection refused)"
    ),
    timeout=_op(2013, "Lost connection to MySQL server during query (timed out)"),
    cancelled=_op(1317, "Query execution was interrupted"),
)

SQLITE3 = Dialect(
    name="sqlite3",
    disconnect=lambda module: module.ProgrammingError("Cannot operate on a closed database."),
    # sqlite3 has no server to refuse; its transient connect failure is a busy database
    # ("unable to open database file" is a wrong path: a mistake poolkit does not retry)
    refused=_op("database is locked"),
    timeout=_op("database is locked"),
    cancelled=_op("interrupted"),
)

PYODBC = Dialect(
    name="pyodbc",
    disconnect=_op("08S01", "[08S01] Communication link failure (0) (SQLExecDirectW)"),
    refused=_op("08001", "[08001] Unable to connect to the server: Connection refused (0)"),
    timeout=_op("HYT00", "[HYT00] Query timeout expired (0) (SQLExecDirectW)"),
    cancelled=_op("HY008", "[HY008] Operation canceled (0) (SQLExecDirectW)"),
)

GENERIC = Dialect(
    name="generic",
    disconnect=_op("server closed the connection unexpectedly"),
    refused=_op("could not connect to server: Connection refused"),
    timeout=_op("timeout expired"),
    cancelled=_op("canceling statement due to user request"),
)

_BY_MODULE = {
    "psycopg2": PSYCOPG2,
    "pymysql": MYSQL,
    "MySQLdb": MYSQL,
    "sqlite3": SQLITE3,
    "pyodbc": PYODBC,
}


def dialect_for(module: Any) -> Dialect:
    """The dialect of a driver module, by its top-level name (generic when unknown)."""
    name = str(getattr(module, "__name__", "") or "").split(".")[0]
    return _BY_MODULE.get(name, GENERIC)


def thread_misuse(connection: int, owner: str, thread: str) -> str:
    return (
        f"connection {connection} was created in thread {owner!r} and used from thread "
        f"{thread!r}; with threadsafety=1 threads may share the module but not connections"
    )
