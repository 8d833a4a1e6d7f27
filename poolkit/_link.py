"""The thread side of one pooled connection: the raw DB-API objects and the jobs run on them.

Everything here runs on the connection's worker thread, one job at a time (``Link.cancel``
excepted: it runs on a helper thread while the worker is blocked in the driver). Each job
returns plain data, so results cross to the event loop without further driver calls.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ._backoff import Gate
from ._profiles import DriverProfile, profile_for

__all__ = ["CursorBox", "Link", "Outcome", "Snapshot"]

Raw = Any


class Abandoned(Exception):
    """A job was dropped: the pool closed during a connect's back-off, or the caller of a
    call gave up before the call started. ``opened``: a connection was made (and closed)
    before the job was dropped, so the server saw a session come and go."""

    def __init__(self, message: str, *, opened: bool = False) -> None:
        super().__init__(message)
        self.opened = opened


#: How long a job waits for a driver cancel still in flight from an earlier, abandoned call,
#: so the cancel cannot land on this job's statement.
CANCEL_GRACE = 30.0


@dataclass(slots=True)
class Snapshot:
    """A cursor's state after a call, plus the rows fetched in the same trip."""

    description: Any
    rowcount: int
    lastrowid: Any
    rows: list[Any]
    exhausted: bool
    value: Any = None  # the driver method's own return value (nextset, callproc)


#: (ok, value-or-exception, in_transaction, disconnected)
Outcome = tuple[bool, Any, "bool | None", bool]


class CursorBox:
    """Holds a raw cursor for one ``AsyncCursor``; only the connection's worker touches ``raw``."""

    __slots__ = ("__weakref__", "args", "closed", "kwargs", "raw")

    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.raw: Raw | None = None
        self.args = args
        self.kwargs = kwargs
        self.closed = False


class Link:
    """A raw connection and its open cursors; its jobs run one at a time on a worker thread."""

    __slots__ = (
        "abandoned",
        "active_cursor",
        "cancels",
        "committing",
        "current",
        "cursors",
        "dead",
        "driver",
        "profile",
        "raw",
        "tx_unknown",
    )

    def __init__(self, driver: Any, profile: DriverProfile | None) -> None:
        self.raw: Raw = None
        self.driver = driver
        self.profile = profile
        # The driver's transaction status may be stale after an error (PyMySQL reads it
        # from OK packets only): then it is unknown until the next call that succeeds.
        self.tx_unknown = False
        self.cursors: set[CursorBox] = set()
        self.dead: deque[CursorBox] = deque()  # cursors garbage-collected on the loop side
        self.active_cursor: Raw | None = None
        # True while query() commits, and after its commit failed: the call may have
        # committed, so it is never run again (see Pool(retry_lost=)).
        self.committing = False
        # Cancellation bookkeeping, shared with the loop and with cancel helper threads.
        # Plain attribute reads/writes and set.add/discard are atomic under the GIL; the
        # worker writes `current` before reading `abandoned`, the loop adds to `abandoned`
        # before its helper reads `current`, so one of the two always sees the other.
        self.current = 0  # sequence number of the call running now (0: none)
        self.abandoned: set[int] = set()  # calls whose callers gave up
        self.cancels: deque[threading.Event] = deque()  # one per driver cancel in flight

    # ----- generic job wrapper ---------------------------------------------------------

    def run(self, fn: Callable[..., Any], args: tuple[Any, ...], seq: int = 0) -> Outcome:
        """Run ``fn(self, *args)``; report the outcome with the transaction status after it.

        ``seq`` numbers a call a caller may abandon: if it was abandoned before it started,
        it is skipped. Every job first waits for a driver cancel still in flight, so that a
        late cancel meant for an abandoned call never hits this one (for up to
        ``CANCEL_GRACE`` seconds; a close for as long as the cancel takes).
        """
        if self.dead:
            self._close_dead()
        cancels = self.cancels
        while cancels:
            # Close waits for as long as it takes: it must not free the connection under the
            # cancel, and nobody waits for it (the pool closed, or abandoned it to this thread).
            if not cancels[0].wait(None if fn is Link.close else CANCEL_GRACE):
                exc = RuntimeError("a driver cancel of an abandoned call did not finish")
                return False, exc, None, True  # treat as lost: the connection is discarded
            cancels.popleft()
        if seq:
            self.current = seq
            if seq in self.abandoned:
                self.abandoned.discard(seq)
                self.current = 0
                skipped = Abandoned("the caller gave up before this call started")
                return False, skipped, self.in_transaction(), False
        try:
            value = fn(self, *args)
        except BaseException as exc:
            if self.profile is not None and not self.profile.tx_status_after_error:
                self.tx_unknown = True
            return False, exc, self.in_transaction(), self.is_disconnect(exc)
        finally:
            self.current = 0
        self.tx_unknown = False
        return True, value, self.in_transaction(), False

    def in_transaction(self) -> bool | None:
        raw = self.raw
        if raw is None or self.profile is None or self.tx_unknown:
            return None
        try:
            return self.profile.in_transaction(raw)
        except Exception:
            return None

    def autocommit(self) -> bool | None:
        if self.raw is None or self.profile is None:
            return None
        try:
            return self.profile.get_autocommit(self.raw)
        except Exception:
            return None

    def is_disconnect(self, exc: BaseException) -> bool:
        if self.profile is None:
            return False
        try:
            return bool(self.profile.is_disconnect(exc, self.raw, self.driver))
        except Exception:
            return False

    def abandon(self, seq: int, done: threading.Event) -> None:
        """Loop thread: the caller of call ``seq`` left. Skip it if not started yet; the
        caller then runs :meth:`cancel` on a helper thread and sets ``done`` after. Every
        later job waits for all such cancels to finish."""
        self.cancels.append(done)
        self.abandoned.add(seq)

    def cancel(self, seq: int, reconnect: Callable[[], Raw]) -> bool:
        """Helper thread: cancel call ``seq`` in the driver if it is running right now."""
        raw = self.raw
        if raw is None or self.profile is None or self.current != seq:
            return False
        self.profile.cancel(raw, self.active_cursor, reconnect)
        return True

    # ----- connection life -------------------------------------------------------------

    def connect(
        self,
        connect: Callable[[], Raw],
        configure: Callable[[Raw], object] | None,
        delay: float,
        stop: threading.Event,
        gate: Gate,
        clock: Callable[[], float],
    ) -> tuple[bool | None, bool | None, float]:
        """Connect and configure; returns the transaction and autocommit states and the
        seconds that took by ``clock`` (the pool's), the back-off before it excluded."""
        # The gate ends the back-off early: another attempt got through, the pool closes, or
        # callers wait and it is this attempt's turn.
        if delay > 0:
            gate.sleep(delay)
        if stop.is_set():
            raise Abandoned("pool closed during reconnect back-off")
        start = clock()
        raw = connect()
        if stop.is_set():  # the pool closed while the driver was connecting
            _quiet_close(raw)
            raise Abandoned("pool closed while connecting", opened=True)
        self.raw = raw
        if self.driver is None:
            self.driver = _infer_driver(raw)
        if self.profile is None:
            self.profile = profile_for(self.driver)
        try:
            if configure is not None:
                configure(raw)
                # Keep what configure did (SET ... is transactional on PostgreSQL).
                if self.in_transaction() is not False:
                    raw.commit()
        except BaseException:
            self.raw = None
            _quiet_close(raw)
            raise
        return self.in_transaction(), self.autocommit(), clock() - start

    def close(self) -> None:
        self.close_cursors()
        raw, self.raw = self.raw, None
        if raw is not None:
            _quiet_close(raw)

    def close_cursors(self) -> None:
        for box in self.cursors:
            box.closed = True
            if box.raw is not None:
                _quiet_close(box.raw)
        self.cursors.clear()

    def reset(
        self,
        rollback: bool,
        autocommit: bool | None,
        hook: Callable[[Raw], object] | None,
        ping: Callable[[Raw], None] | None,
    ) -> None:
        """Make a returned connection fit for the next caller, or raise."""
        raw = self.raw
        self.committing = False
        self.close_cursors()
        if rollback and self.in_transaction() is not False:
            raw.rollback()
            self.tx_unknown = False
        if autocommit is not None and self.autocommit() is not autocommit:
            self.profile.set_autocommit(raw, autocommit)  # type: ignore[union-attr]
        if hook is not None:
            hook(raw)
        if ping is not None:
            self.ping(ping)
        if self.in_transaction():
            raw.rollback()
        self.check_alive()  # a rollback "succeeds" on some lost connections (psqlODBC)

    def ping(self, ping: Callable[[Raw], None]) -> None:
        raw = self.raw
        before = self.in_transaction()
        ping(raw)
        if before is False and self.in_transaction():
            raw.rollback()  # the ping opened a transaction (non-autocommit drivers)

    # ----- connection-level calls ------------------------------------------------------

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        return fn(self.raw, *args)

    def method(self, name: str) -> Any:
        if name == "commit":
            return self.commit()
        return getattr(self.raw, name)()

    def commit(self) -> None:
        """Commit, refusing to report success on a connection the driver knows is lost."""
        self.check_alive()  # lost already: the server has rolled the transaction back
        self.raw.commit()
        self.check_alive()  # lost during the commit: its outcome is unknown

    def check_alive(self) -> None:
        check = self.profile.check_alive if self.profile is not None else None
        if check is not None and self.raw is not None:
            check(self.raw, self.driver)

    def begin(self) -> bool:
        """Turn autocommit off for an explicit transaction; return whether it was on."""
        if self.autocommit():
            self.profile.set_autocommit(self.raw, False)  # type: ignore[union-attr]
            return True
        return False

    def end(self, commit: bool, restore_autocommit: bool) -> None:
        try:
            if commit:
                self.commit()
            else:
                self.raw.rollback()
        finally:
            if restore_autocommit and self.raw is not None:
                self.profile.set_autocommit(self.raw, True)  # type: ignore[union-attr]

    def statement(self, sql: str) -> None:
        """Run one statement of poolkit's own (savepoints) on a throwaway cursor."""
        cur = self.raw.cursor()
        try:
            if (
                sql.startswith("SAVEPOINT")
                and self.profile is not None
                and self.profile.explicit_begin
                and self.in_transaction() is False
            ):
                cur.execute("BEGIN")  # else the savepoint would be the transaction itself
            cur.execute(sql)
        finally:
            cur.close()

    def set_autocommit(self, on: bool) -> None:
        self.profile.set_autocommit(self.raw, on)  # type: ignore[union-attr]

    # ----- cursor calls ----------------------------------------------------------------

    def _cursor(self, box: CursorBox) -> Raw:
        raw = box.raw
        if raw is None:
            raw = self.raw.cursor(*box.args, **box.kwargs)
            box.raw = raw
            if box.closed:  # closed before first use: let the driver raise its own error
                raw.close()
            else:
                self.cursors.add(box)
        return raw

    def execute(
        self, box: CursorBox, sql: Any, params: Any, prefetch: int, arraysize: int | None
    ) -> Snapshot:
        cur = self._cursor(box)
        if arraysize is not None:
            cur.arraysize = arraysize
        self.active_cursor = cur
        try:
            _execute(cur, sql, params)
        finally:
            self.active_cursor = None
        return _snapshot(cur, prefetch)

    def executemany(self, box: CursorBox, sql: Any, seq: Sequence[Any]) -> Snapshot:
        cur = self._cursor(box)
        self.active_cursor = cur
        try:
            cur.executemany(sql, seq)
        finally:
            self.active_cursor = None
        return _snapshot(cur, 0)

    def callproc(self, box: CursorBox, name: str, params: Any, prefetch: int) -> Snapshot:
        cur = self._cursor(box)
        self.active_cursor = cur
        try:
            value = cur.callproc(name) if params is None else cur.callproc(name, params)
        finally:
            self.active_cursor = None
        snap = _snapshot(cur, prefetch)
        snap.value = value
        return snap

    def nextset(self, box: CursorBox, prefetch: int) -> Snapshot:
        cur = self._cursor(box)
        self.active_cursor = cur
        try:
            value = cur.nextset()
        finally:
            self.active_cursor = None
        snap = _snapshot(cur, prefetch if value else 0)
        snap.value = value
        return snap

    def fetch(self, box: CursorBox, size: int | None) -> list[Any]:
        """``size`` None means fetchall."""
        cur = self._cursor(box)
        self.active_cursor = cur
        try:
            rows = cur.fetchall() if size is None else cur.fetchmany(size)
        finally:
            self.active_cursor = None
        return _as_list(rows)

    def query(self, sql: Any, params: Any, first: bool, commit: bool) -> Any:
        """Execute and fetch on a throwaway cursor in one job: all rows (a list, empty when
        the statement has no result set) or, with ``first``, the first row or None.
        ``commit``: end the transaction the statement opened, in the same job."""
        self.committing = False
        cur = self.raw.cursor()
        self.active_cursor = cur
        try:
            _execute(cur, sql, params)
            if cur.description is None:
                result: Any = None if first else []
            elif first:
                result = cur.fetchone()
            else:
                result = _as_list(cur.fetchall())
        finally:
            self.active_cursor = None
            _quiet_close(cur)
        if commit and self.in_transaction() is not False:
            self.committing = True
            self.commit()
            self.committing = False
        return result

    def fetchone(self, box: CursorBox) -> Any:
        return self._cursor(box).fetchone()

    def close_cursor(self, box: CursorBox) -> None:
        # The closed raw cursor stays in the box: later calls reach it and the driver
        # raises its own "cursor closed" error.
        box.closed = True
        self.cursors.discard(box)
        if box.raw is not None:
            box.raw.close()

    def _close_dead(self) -> None:
        """Close the raw cursors of ``AsyncCursor`` objects that were garbage-collected."""
        dead = self.dead
        while dead:
            box = dead.popleft()
            self.cursors.discard(box)
            if box.raw is not None and not box.closed:
                box.closed = True
                _quiet_close(box.raw)


def _as_list(rows: Any) -> list[Any]:
    """The driver's rows as a list the loop side may own (most drivers return a new list)."""
    return rows if type(rows) is list else list(rows)


def _execute(cur: Raw, sql: Any, params: Any) -> None:
    if params is None:  # no parameters: the driver leaves % and ? in the SQL alone
        cur.execute(sql)
    else:
        cur.execute(sql, params)


def _snapshot(cur: Raw, prefetch: int) -> Snapshot:
    description = cur.description
    rows: list[Any] = []
    exhausted = True
    if description is not None and prefetch > 0:
        rows = _as_list(cur.fetchmany(prefetch))
        exhausted = len(rows) < prefetch
    elif description is not None:
        exhausted = False
    return Snapshot(
        description=description,
        rowcount=getattr(cur, "rowcount", -1),
        lastrowid=getattr(cur, "lastrowid", None),
        rows=rows,
        exhausted=exhausted,
    )


def _quiet_close(obj: Raw) -> None:
    try:
        obj.close()
    except Exception:
        pass


def _infer_driver(raw: Raw) -> Any:
    """The DB-API module a connection object came from (``connect=`` factories)."""
    module = type(raw).__module__.split(".")[0]
    candidate = sys.modules.get(module)
    if module in {"_sqlite3", "sqlite3"}:
        return sys.modules.get("sqlite3", candidate)
    if module == "_mysql":  # mysqlclient's C connection
        return sys.modules.get("MySQLdb", candidate)
    return candidate
