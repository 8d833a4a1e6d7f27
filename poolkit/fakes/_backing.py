"""What the fake connections talk to: a shared SQLite database, or scripted answers.

:class:`SqliteServer` is the "server" every connection of one fake driver reaches: a database
file in WAL mode (on ``/dev/shm`` where it exists, so in memory), so readers see committed data
while a writer works, as on PostgreSQL or InnoDB, and a second writer waits for the first.
Transactions follow PEP 249: one begins implicitly at the first statement after a commit or
rollback, unless the connection is in autocommit mode.

:class:`Script` answers statements from registered responses instead.
"""

from __future__ import annotations

import datetime
import decimal
import os
import re
import shutil
import sqlite3
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ._dbapi import ERROR_NAMES
from ._paramstyle import ParamError, translate, translate_sql
from ._plan import PlanError

__all__ = ["Response", "Result", "Script", "Session", "SqliteServer"]

Description = tuple[tuple[Any, ...], ...]


class Hooks(Protocol):
    """What the SQL functions of a session reach: the connection's clock and its driver."""

    @property
    def id(self) -> int: ...
    def sleep_for(self, seconds: float, cancelled: threading.Event) -> None: ...
    def kill(self, connection: int) -> int: ...
    def open_connections(self) -> list[int]: ...


@dataclass
class Result:
    """One statement's outcome: rows (already fetched), description, rowcount, lastrowid."""

    description: Description | None = None
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    rowcount: int = -1
    lastrowid: int | None = None


class BackingError(Exception):
    """A backing error to re-raise as the driver's class of the same name."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


class Session(Protocol):
    """One connection's view of the backing."""

    def execute(self, sql: str, params: Any, *, many: bool = False) -> Result: ...
    def begin_if_needed(self, sql: str) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def close(self) -> None: ...
    def interrupt(self) -> None: ...
    def kill(self) -> None: ...
    @property
    def in_transaction(self) -> bool: ...


# ----- SQLite --------------------------------------------------------------------------

_ADAPT: dict[type, Callable[[Any], Any]] = {
    datetime.datetime: lambda v: v.isoformat(sep=" "),
    datetime.date: lambda v: v.isoformat(),
    datetime.time: lambda v: v.isoformat(),
    decimal.Decimal: str,
    bool: int,
    bytearray: bytes,
    memoryview: bytes,
}

# Statements that open or end the transaction themselves; before anything else (SAVEPOINT
# included, as psycopg2 does) the session begins one.
_TX_CONTROL = re.compile(r"^\s*(BEGIN|START\s+TRANSACTION|COMMIT|END|ROLLBACK(?!\s+TO))\b", re.I)


def _adapt_value(value: Any) -> Any:
    adapt = _ADAPT.get(type(value))
    return value if adapt is None else adapt(value)


def _adapt(params: Any) -> Any:
    if isinstance(params, Mapping):
        return {k: _adapt_value(v) for k, v in params.items()}
    return tuple(_adapt_value(v) for v in params)


_TYPE_CODES = {int: "INTEGER", float: "REAL", str: "TEXT", bytes: "BLOB"}


def _description(cursor: sqlite3.Cursor, rows: list[tuple[Any, ...]]) -> Description | None:
    if cursor.description is None:
        return None
    first = rows[0] if rows else ()
    out = []
    for i, col in enumerate(cursor.description):
        value = first[i] if i < len(first) else None
        code = _TYPE_CODES.get(type(value))
        out.append((col[0], code, None, None, None, None, None))
    return tuple(out)


def _backing_error(exc: sqlite3.Error) -> BackingError:
    for cls in type(exc).__mro__:
        if (cls.__module__ == "sqlite3" and cls.__name__ != "Error") or cls is sqlite3.Error:
            return BackingError(cls.__name__, str(exc))
    return BackingError("DatabaseError", str(exc))


class SqliteServer:
    """A SQLite database shared by every connection of one fake driver."""

    def __init__(self, path: str | None = None, busy_timeout: float = 5.0) -> None:
        self.busy_timeout = busy_timeout
        self._owned_dir: str | None = None
        if path is None:
            base = (
                "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
            )
            self._owned_dir = tempfile.mkdtemp(prefix="poolkit-fake-", dir=base)
            path = os.path.join(self._owned_dir, "fake.db")
        self.path = path
        try:
            first = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            try:
                first.execute("PRAGMA journal_mode=WAL")
            finally:
                first.close()
        except sqlite3.Error as exc:
            raise PlanError(f"FakeDriver: cannot open the database {path!r}: {exc}") from None
        if self._owned_dir is not None:
            self._finalizer = weakref.finalize(self, shutil.rmtree, self._owned_dir, True)

    def open(self, paramstyle: str, hooks: Hooks) -> SqliteSession:
        return SqliteSession(self, paramstyle, hooks)

    def remove(self) -> None:
        """Delete the database file now (the driver is done with it)."""
        if self._owned_dir is not None:
            self._finalizer()

    def __repr__(self) -> str:
        return f"<SqliteServer {self.path}>"


class SqliteSession:
    """One fake connection's own sqlite3 connection to the shared database."""

    def __init__(
        self,
        server: SqliteServer,
        paramstyle: str,
        hooks: Hooks,
    ) -> None:
        self.paramstyle = paramstyle
        self.cancelled = threading.Event()
        #: set once the connection is dropped: every later statement stops at once
        self.killed = threading.Event()
        try:
            raw = sqlite3.connect(
                server.path,
                timeout=server.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            raw.execute("PRAGMA synchronous=OFF")
        except sqlite3.Error as exc:
            raise _backing_error(exc) from None

        def fake_sleep(seconds: float) -> int:
            hooks.sleep_for(float(seconds or 0), self.cancelled)
            if self.cancelled.is_set():
                raise InterruptedError("statement cancelled")
            return 0

        # A server's session functions: sleep(s) takes s seconds on the driver's clock and
        # can be cancelled; connection_id(), kill_connection(id) (pg_terminate_backend),
        # open_connections() and connection_alive(id) (pg_stat_activity).
        raw.create_function("sleep", 1, fake_sleep)
        raw.create_function("connection_id", 0, lambda: hooks.id, deterministic=True)
        raw.create_function("kill_connection", 1, lambda c: hooks.kill(int(c)))
        raw.create_function("open_connections", 0, lambda: len(hooks.open_connections()))
        raw.create_function("connection_alive", 1, lambda c: int(c in hooks.open_connections()))
        self.raw = raw

    @property
    def in_transaction(self) -> bool:
        return self.raw.in_transaction

    def begin_if_needed(self, sql: str) -> None:
        try:
            if not self.raw.in_transaction and not _TX_CONTROL.match(sql):
                self.raw.execute("BEGIN")
        except sqlite3.Error as exc:
            raise _backing_error(exc) from None

    def execute(self, sql: str, params: Any, *, many: bool = False) -> Result:
        self.cancelled.clear()  # a cancel aims at a running statement, not the next one
        if self.killed.is_set():
            self.cancelled.set()
        try:
            if many:
                seq = list(params)
                text = translate_sql(self.paramstyle, sql)
                converted = []
                for p in seq:
                    text, q = translate(self.paramstyle, sql, p)
                    converted.append(_adapt(q))
                cur = self.raw.executemany(text, converted)
                rows: list[tuple[Any, ...]] = []
            else:
                text, q = translate(self.paramstyle, sql, params)
                cur = self.raw.execute(text, _adapt(q))
                rows = cur.fetchall() if cur.description is not None else []
        except ParamError as exc:
            raise BackingError("ProgrammingError", str(exc)) from None
        except sqlite3.Error as exc:
            if self.cancelled.is_set():
                raise BackingError(
                    "OperationalError", "canceling statement due to user request"
                ) from None
            raise _backing_error(exc) from None
        except (OverflowError, ValueError) as exc:
            raise BackingError("DataError", str(exc)) from None
        rowcount = len(rows) if cur.description is not None else cur.rowcount
        result = Result(_description(cur, rows), rows, rowcount, cur.lastrowid)
        cur.close()
        return result

    def commit(self) -> None:
        try:
            if self.raw.in_transaction:
                self.raw.execute("COMMIT")
        except sqlite3.Error as exc:
            raise _backing_error(exc) from None

    def rollback(self) -> None:
        try:
            if self.raw.in_transaction:
                self.raw.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise _backing_error(exc) from None

    def interrupt(self) -> None:
        self.cancelled.set()
        self.raw.interrupt()

    def kill(self) -> None:
        """The connection was dropped: stop the running statement and any that follows."""
        self.killed.set()
        self.interrupt()

    def close(self) -> None:
        self.raw.close()


# ----- scripted answers ------------------------------------------------------------------


@dataclass(frozen=True)
class Response:
    """A scripted answer: rows with column names, or a rowcount, or an error to raise.

    ``error`` is a PEP 249 name (``"IntegrityError"``), raised as the driver's class.
    """

    rows: Sequence[Sequence[Any]] = ()
    columns: Sequence[str] | None = None
    rowcount: int | None = None
    error: str | None = None
    message: str = ""
    lastrowid: int | None = None

    def result(self) -> Result:
        if self.error is not None:
            raise BackingError(self.error, self.message or f"scripted {self.error}")
        rows = [tuple(r) for r in self.rows]
        if self.columns is None and not rows:
            count = -1 if self.rowcount is None else self.rowcount
            return Result(None, [], count, self.lastrowid)
        columns = (
            list(self.columns)
            if self.columns is not None
            else [f"column{i + 1}" for i in range(len(rows[0]))]
        )
        first = rows[0] if rows else ()
        description = tuple(
            (
                name,
                _TYPE_CODES.get(type(first[i])) if i < len(first) else None,
                None,
                None,
                None,
                None,
                None,
            )
            for i, name in enumerate(columns)
        )
        count = len(rows) if self.rowcount is None else self.rowcount
        return Result(description, rows, count, self.lastrowid)


Responder = Callable[[str, Any], Response]


class Script:
    """Responses registered per SQL pattern (regex, searched case-insensitively).

    The most recently registered matching pattern answers. ``SELECT 1`` answers ``[(1,)]``
    unless registered otherwise, as any database would (pools ping with it). A statement no
    pattern matches raises ``ProgrammingError`` naming it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[tuple[re.Pattern[str], Response | Responder]] = []
        self.on(r"^\s*select\s+1\s*;?\s*$", rows=[(1,)], columns=["?column?"])

    def on(
        self,
        pattern: str,
        response: Response | Responder | None = None,
        *,
        rows: Iterable[Sequence[Any]] = (),
        columns: Sequence[str] | None = None,
        rowcount: int | None = None,
        error: str | None = None,
        message: str = "",
    ) -> Script:
        """Answer statements matching ``pattern``; returns the script, to chain calls."""
        try:
            compiled = re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            raise PlanError(f"script pattern {pattern!r} does not compile: {exc}") from None
        if error is not None and error not in ERROR_NAMES:
            raise PlanError(
                f"script error {error!r} is not a PEP 249 exception name: {', '.join(ERROR_NAMES)}"
            )
        if response is None:
            response = Response(tuple(tuple(r) for r in rows), columns, rowcount, error, message)
        with self._lock:
            self._entries.append((compiled, response))
        return self

    def answer(self, sql: str, params: Any) -> Result:
        with self._lock:
            entries = list(reversed(self._entries))
        for pattern, response in entries:
            if pattern.search(sql):
                if callable(response) and not isinstance(response, Response):
                    response = response(sql, params)
                    if not isinstance(response, Response):
                        raise PlanError(
                            f"the script responder for {pattern.pattern!r} returned "
                            f"{response!r}; it must return a Response"
                        )
                return response.result()
        raise BackingError("ProgrammingError", f"no scripted response for statement: {sql!r}")

    def open(self, paramstyle: str, hooks: Hooks) -> ScriptSession:
        return ScriptSession(self)

    def __repr__(self) -> str:
        return f"<Script {len(self._entries)} responses>"


class ScriptSession:
    """A connection's view of a :class:`Script`: transactions are only counted."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self._in_tx = False

    @property
    def in_transaction(self) -> bool:
        return self._in_tx

    def begin_if_needed(self, sql: str) -> None:
        self._in_tx = True

    def execute(self, sql: str, params: Any, *, many: bool = False) -> Result:
        if many:
            total = 0
            for p in params:
                total += max(self.script.answer(sql, p).rowcount, 0)
            return Result(None, [], total)
        return self.script.answer(sql, params)

    def commit(self) -> None:
        self._in_tx = False

    def rollback(self) -> None:
        self._in_tx = False

    def interrupt(self) -> None:
        return None

    def kill(self) -> None:
        return None

    def close(self) -> None:
        return None
