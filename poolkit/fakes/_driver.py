"""The fake PEP 249 driver: a module-like object, its connections and cursors."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Literal

from . import _dbapi
from ._backing import BackingError, Result, Script, SqliteServer
from ._clock import Clock, RealClock
from ._controls import Controls, mask_connect
from ._engine import ConnCore, DriverCore
from ._paramstyle import PARAMSTYLES
from ._plan import Plan, PlanError
from ._record import CallLog
from ._texts import GENERIC

__all__ = ["FakeConnection", "FakeCursor", "FakeDriver"]


class FakeDriver(_dbapi.Exceptions, Controls):
    """A fake PEP 249 driver module with injectable faults.

    Use it wherever a driver module goes: ``poolkit.Pool(FakeDriver(plan))``, or in place of
    ``psycopg2`` in an application's own code. Every connection of one driver reaches the same
    database. ``backing="sqlite"`` (default) runs real SQL on a shared SQLite database, with
    statements written in ``paramstyle``; ``backing="script"`` answers from
    :attr:`script`. ``plan`` says which calls get which faults (see :class:`Plan`); ``clock``
    says how their latency passes. Every call is recorded in :attr:`calls`.

    With ``strict_threads=True`` (and ``threadsafety`` below 2) a connection used from any
    thread but the one that opened it raises ``ProgrammingError``, as sqlite3 does.
    """

    apilevel = "2.0"
    __poolkit_profile__ = "fake"

    Date = staticmethod(_dbapi.Date)
    Time = staticmethod(_dbapi.Time)
    Timestamp = staticmethod(_dbapi.Timestamp)
    DateFromTicks = staticmethod(_dbapi.DateFromTicks)
    TimeFromTicks = staticmethod(_dbapi.TimeFromTicks)
    TimestampFromTicks = staticmethod(_dbapi.TimestampFromTicks)
    Binary = staticmethod(_dbapi.Binary)
    STRING = _dbapi.STRING
    BINARY = _dbapi.BINARY
    NUMBER = _dbapi.NUMBER
    DATETIME = _dbapi.DATETIME
    ROWID = _dbapi.ROWID

    def __init__(
        self,
        plan: Plan | None = None,
        *,
        paramstyle: str = "qmark",
        threadsafety: int = 1,
        backing: Literal["sqlite", "script"] | Script = "sqlite",
        database: str | None = None,
        clock: Clock | None = None,
        strict_threads: bool = False,
        max_calls: int | None = 100_000,
        busy_timeout: float = 5.0,
        name: str = "fake",
    ) -> None:
        if paramstyle not in PARAMSTYLES:
            raise PlanError(
                f"FakeDriver: paramstyle {paramstyle!r} is not one of {', '.join(PARAMSTYLES)}"
            )
        if threadsafety not in (0, 1, 2, 3):
            raise PlanError(f"FakeDriver: threadsafety must be 0..3, got {threadsafety!r}")
        if plan is None:
            plan = Plan()
        elif not isinstance(plan, Plan):
            raise PlanError(f"FakeDriver: plan must be a Plan, got {plan!r}")
        self.paramstyle = paramstyle
        self.threadsafety = threadsafety
        self.__name__ = name
        self._clock: Clock = clock if clock is not None else RealClock()
        self.script: Script | None
        self._server: SqliteServer | Script
        if isinstance(backing, Script):
            self.script = backing
            self._server = backing
        elif backing == "script":
            self.script = Script()
            self._server = self.script
        elif backing == "sqlite":
            self.script = None
            self._server = SqliteServer(database, busy_timeout)
        else:
            raise PlanError(
                f"FakeDriver: backing must be 'sqlite', 'script' or a Script: {backing!r}"
            )
        self._core: DriverCore = DriverCore(
            self, GENERIC, plan, self._clock, CallLog(max_calls), threadsafety, strict_threads
        )
        Controls.__init__(self)
        self._shut = False

    # ----- PEP 249 ----------------------------------------------------------------------

    def connect(self, *args: Any, **kwargs: Any) -> FakeConnection:
        """A new connection. Arguments are accepted (and recorded, secrets masked) but unused."""
        return self._core.connect(self._open, mask_connect(args, kwargs))

    def _open(self, conn_id: int) -> FakeConnection:
        if self._shut:
            raise self.OperationalError("the fake database was closed (FakeDriver.close())")
        conn = FakeConnection(self, conn_id)
        self._remember(conn_id, conn, conn._core)
        return conn

    def close(self) -> None:
        """Drop every connection and remove the database (when the driver made it); later
        connects fail with ``OperationalError``."""
        self._shut = True
        self.drop()
        if isinstance(self._server, SqliteServer):
            self._server.remove()

    def __repr__(self) -> str:
        backing = "script" if self.script is not None else "sqlite"
        return (
            f"<FakeDriver {self.__name__} {backing} paramstyle={self.paramstyle} "
            f"{len(self.connections)} open, {len(self.calls)} calls, plan={self.plan!r}>"
        )


def _raise_as(module: Any, exc: BackingError) -> BaseException:
    cls = getattr(module, exc.name, None)
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        cls = module.DatabaseError
    error: BaseException = cls(str(exc))
    return error


class FakeConnection(_dbapi.Exceptions):
    """A connection of :class:`FakeDriver`. ``closed`` is true once closed or dropped."""

    def __init__(self, driver: FakeDriver, conn_id: int) -> None:
        self._driver = driver
        self._id = conn_id
        try:
            self._session = driver._server.open(driver.paramstyle, self)
        except BackingError as exc:
            raise _raise_as(driver, exc) from None
        self._autocommit = False
        self._closed = False
        self._cursors = 0
        self._core = ConnCore(
            driver._core,
            conn_id,
            lambda: self._autocommit,
            on_drop=self._session.close,
            on_interrupt=self._session.kill,
        )

    def sleep_for(self, seconds: float, cancelled: threading.Event) -> None:
        """``sleep(n)`` in SQL: wait on the driver's clock, ending early when cancelled."""
        self._driver.clock.wait(cancelled, seconds)

    def kill(self, connection: int) -> int:
        """``kill_connection(id)`` in SQL: drop another connection; 1 if it was open."""
        return self._driver.drop(connection)

    def open_connections(self) -> list[int]:
        """Ids of the driver's connections that are neither closed nor dropped."""
        return [k for k, c in self._driver.connections.items() if not c.closed]

    @property
    def id(self) -> int:
        """The connection's id: its connect attempt's number, from 1."""
        return self._id

    @property
    def closed(self) -> bool:
        return self._closed or self._core.dropped

    @property
    def dropped(self) -> bool:
        """The connection was lost (a :class:`Drop` rule, ``driver.drop()``, a kill)."""
        return self._core.dropped

    @property
    def lost_reported(self) -> bool:
        """A call on this connection raised the driver's disconnect error, so whoever made it
        was told the connection is gone (a pool must never hand it out again)."""
        return self._core.lost_reported

    @property
    def in_transaction(self) -> bool:
        """A transaction is open (a statement ran since the last commit or rollback)."""
        return not self.closed and self._session.in_transaction

    @property
    def autocommit(self) -> bool:
        return self._autocommit

    @autocommit.setter
    def autocommit(self, on: bool) -> None:
        self._check_open()
        if on and not self._autocommit and self._session.in_transaction:
            self.commit()
        self._autocommit = bool(on)

    def _check_open(self) -> None:
        if self._closed:
            raise self._driver.InterfaceError("connection already closed")

    def _backing(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BackingError as exc:
            raise _raise_as(self._driver, exc) from None

    def cursor(self) -> FakeCursor:
        self._check_open()
        self._cursors += 1
        number = self._cursors
        return self._core.run("cursor", None, None, number, lambda: FakeCursor(self, number))

    def commit(self) -> None:
        self._check_open()
        self._core.run("commit", None, None, None, lambda: self._backing(self._session.commit))

    def rollback(self) -> None:
        self._check_open()
        self._core.run("rollback", None, None, None, lambda: self._backing(self._session.rollback))

    def close(self) -> None:
        """Close the connection (rolling back an open transaction). Closing twice is fine."""
        if self._closed:
            return
        self._core.check_thread()  # misuse raises with the connection left open, as in sqlite3
        self._core.closing()
        try:
            self._core.run("close", None, None, None, self._session.close)
        finally:
            # Even when the close itself failed (an injected fault), the session goes: a
            # connection the caller believes closed must not keep the database locked.
            self._session.close()
            self._closed = True
            self._driver._forget(self.id)

    def cancel(self) -> None:
        """Cancel the running statement from another thread (a hung call, ``sleep(n)``)."""
        self._core.cancel()
        if not self.closed:
            self._session.interrupt()

    def __enter__(self) -> FakeConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Commit on success, roll back on error; the connection stays open (as in sqlite3)."""
        if self.closed:
            return
        if exc_type is None:
            self.commit()
        else:
            self.rollback()

    def __repr__(self) -> str:
        state = "dropped" if self._core.dropped else ("closed" if self._closed else "open")
        return f"<FakeConnection {self.id} {state}>"

    def _statement(self, op: str, sql: str, params: Any, cursor: int, many: bool) -> Result:
        self._check_open()
        if not isinstance(sql, str):
            raise self._driver.ProgrammingError(
                f"operation must be a string, got {type(sql).__name__}"
            )

        def call() -> Result:
            if not self._autocommit:
                self._backing(self._session.begin_if_needed, sql)
            result: Result = self._backing(self._session.execute, sql, params, many=many)
            return result

        return self._core.run(op, sql, params, cursor, call)


class FakeCursor(_dbapi.CursorIteration):
    """A cursor of :class:`FakeConnection`; results are read in full at execute."""

    def __init__(self, connection: FakeConnection, number: int) -> None:
        self.connection = connection
        self._number = number
        self.arraysize = 1
        self._closed = False
        self._result: Result | None = None
        self._pos = 0

    @property
    def description(self) -> tuple[tuple[Any, ...], ...] | None:
        return None if self._result is None else self._result.description

    @property
    def rowcount(self) -> int:
        return -1 if self._result is None else self._result.rowcount

    @property
    def lastrowid(self) -> int | None:
        return None if self._result is None else self._result.lastrowid

    @property
    def rownumber(self) -> int | None:
        return None if self._result is None or self._result.description is None else self._pos

    def _check(self) -> None:
        if self._closed:
            raise self.connection._driver.InterfaceError("cursor already closed")
        self.connection._check_open()

    def execute(self, operation: str, parameters: Any = None) -> FakeCursor:
        self._check()
        self._result = None
        self._result = self.connection._statement(
            "execute", operation, parameters, self._number, many=False
        )
        self._pos = 0
        return self

    def executemany(self, operation: str, seq_of_parameters: Any) -> FakeCursor:
        self._check()
        self._result = None
        self._result = self.connection._statement(
            "executemany", operation, seq_of_parameters, self._number, many=True
        )
        self._pos = 0
        return self

    def callproc(self, procname: str, parameters: Sequence[Any] = ()) -> Sequence[Any]:
        self._check()

        def call() -> Sequence[Any]:
            raise self.connection._driver.NotSupportedError(
                "the fake driver has no stored procedures"
            )

        return self.connection._core.run("callproc", procname, parameters, self._number, call)

    def _rows(self, op: str, take: int | None) -> list[tuple[Any, ...]]:
        self._check()

        def call() -> list[tuple[Any, ...]]:
            result = self._result
            if result is None or result.description is None:
                raise self.connection._driver.ProgrammingError("no results to fetch")
            end = len(result.rows) if take is None else min(len(result.rows), self._pos + take)
            rows = result.rows[self._pos : end]
            self._pos = end
            return rows

        return self.connection._core.run(op, None, None, self._number, call)

    def fetchone(self) -> tuple[Any, ...] | None:
        rows = self._rows("fetchone", 1)
        return rows[0] if rows else None

    def fetchmany(self, size: int | None = None) -> list[tuple[Any, ...]]:
        n = self.arraysize if size is None else size
        if n < 0:
            raise self.connection._driver.ProgrammingError(f"fetchmany size must be >= 0: {n}")
        return self._rows("fetchmany", n)

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._rows("fetchall", None)

    def nextset(self) -> bool | None:
        """There is only ever one result set: None."""
        self._check()
        return self.connection._core.run("nextset", None, None, self._number, lambda: None)

    def setinputsizes(self, sizes: Any) -> None:
        return None

    def setoutputsize(self, size: int, column: int | None = None) -> None:
        return None

    def close(self) -> None:
        self._closed = True
        self._result = None

    def __repr__(self) -> str:
        return (
            f"<FakeCursor {self.connection.id}.{self._number}{' closed' if self._closed else ''}>"
        )
