"""``Pool``: the async connection pool over any blocking DB-API 2.0 driver.

The event-loop side holds no I/O at all: it is the pure :class:`~poolkit._state.PoolState`
plus callbacks. Every driver call runs on a worker thread of the connection and reports
back through the :mod:`~poolkit._bridge`. So the pool needs no background tasks and no task
group: ``open()`` and ``close()`` are plain awaitables and ``async with pool`` is optional.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import logging
import math
import sys
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Literal, NoReturn

import anyio

from ._backoff import Backoff, Gate
from ._bridge import Bridge, LoopFuture, current_bridge, forget
from ._connection import DEFAULT as _DEFAULT
from ._connection import AsyncConnection, PooledConn, call
from ._dsn import is_url
from ._errors import PoolClosed, PoolError, PoolTimeout, TooManyWaiters
from ._leaks import acquire_site, format_site, overdue
from ._link import Abandoned, Link, Outcome
from ._profiles import DriverProfile, driver_name, has_news, profile_for
from ._redact import Redactor
from ._rows import Row
from ._state import NOTHING, Actions, PoolState, Slot, SlotState, validate_sizes
from ._stats import Counters, PoolEvent, Stats
from ._worker import Runner, ThreadGroup, Worker, run_in_helper_thread

__all__ = ["Pool"]

log = logging.getLogger("poolkit.pool")

Raw = Any
Listener = Callable[[PoolEvent], object]

_names = iter(range(1, 1 << 62))
_THREAD_MODES = ("auto", "dedicated", "shared")


class _Waiter:
    """A task queued for a connection (see :class:`poolkit._state.Waiter`)."""

    __slots__ = ("active", "fut", "slot")

    def __init__(self, fut: LoopFuture[Slot]) -> None:
        self.fut = fut
        self.slot: Slot | None = None
        self.active = False

    def offer(self, slot: Slot) -> bool:
        if self.fut.done():  # asyncio: cancelled already
            return False
        self.slot = slot
        self.fut.set_result(slot)
        return True

    def fail(self, exc: BaseException) -> None:
        if not self.fut.done():
            self.fut.set_exception(exc)


class Pool:
    """An async pool of DB-API connections whose driver calls run on worker threads.

    ``Pool(driver, *args, connect_kwargs={...})`` connects with
    ``driver.connect(*args, **connect_kwargs)``; ``Pool(connect=factory)`` calls a factory
    instead (the driver is then inferred from the connection it returns, or given as
    ``driver``). Use it as ``async with pool:`` or call :meth:`open` and :meth:`close`.
    A keyword that is no pool option is refused with a ``TypeError`` saying where it goes.
    A URL as the one connect argument, for a driver that takes none (PyMySQL, MySQLdb:
    ``Pool(pymysql, "mysql://user:password@host/db?charset=utf8mb4")``), is read into its
    connect() keywords by the driver profile's ``parse_url`` (``connect_kwargs`` win); a URL
    of another database's kind (``postgresql://`` to PyMySQL) is refused with a ValueError.

    Sizing: ``min_size`` connections are kept open; at most ``max_size`` exist at once
    (counting those still opening, resetting or closing). ``max_waiting`` bounds the queue
    of callers (0: unbounded); beyond it :class:`~poolkit.TooManyWaiters` is raised at once.

    Times are seconds. ``timeout`` is the default acquire timeout (None: wait forever);
    ``query_timeout`` the default per-call timeout on connections (None: none).
    ``max_lifetime`` and ``max_idle`` recycle connections (None: never); lifetimes get up to
    ``lifetime_jitter`` (a fraction) shaved off so a fleet does not reconnect in lockstep.
    A connection idle for ``check_idle_after`` or more is pinged before it is handed out
    (0: always, None: never); connections created before a disconnect was seen are always
    pinged, and so is an idle one whose socket the server wrote to (closing it, say, as it
    restarted), where the driver profile shows the socket. ``check(raw)`` replaces the driver
    profile's ping.

    ``retry_lost`` (default True): a statement that finds its connection lost is run once
    more, on a fresh connection, when it cannot have had an effect: it was the first call of
    its checkout (or of :meth:`fetchall`/:meth:`fetchone`), autocommit was off (so what it did
    belonged to a transaction the lost session took with it), it failed before any commit
    was sent, and it was ``execute``, ``executemany``, ``fetchall`` or ``fetchone`` (not
    ``callproc`` or ``run``). Statements whose effects a lost transaction does not undo are
    yours to keep out of it: SQL that commits by itself (``COMMIT`` inside the text, MySQL DDL),
    MySQL tables without transactions (MyISAM), calls that act outside the database.

    Leak detection: with ``leak_timeout``, a connection held by a caller that long logs one
    warning (logger ``poolkit.pool``) naming the pool, the connection, how long it has been
    held and the stack where it was acquired, and emits a ``leak`` event; if it comes back
    later, that is logged at INFO. Off (None) by default; when on, each checkout records
    the caller's stack (source lines are read only for a warning). The check runs in the
    background every ``leak_timeout / 4`` seconds or so (at most 30 s).

    Hooks run on a worker thread with the raw connection: ``configure(raw)`` once
    after connect, ``reset(raw)`` on each return after the rollback.

    ``threads`` says where a connection's calls run; they run one at a time and in order
    either way. ``"dedicated"``: on a thread of the connection's own, from connect to close.
    ``"shared"``: on a pool-wide group of threads (one per connection), so a connection may
    run one call on one thread and its next on another; a thread that finishes a call takes
    the next queued call of any connection without sleeping, which is much faster when many
    connections are busy. ``"auto"`` (default): shared when the driver declares PEP 249
    ``threadsafety >= 2`` (connections may be shared between threads: psycopg2, oracledb)
    and its profile is not ``thread_bound`` (sqlite3), dedicated otherwise; with a
    ``connect=`` factory and no ``driver``, dedicated until a first connection tells the
    driver.

    Passwords in the connect arguments (``password=`` keys, libpq/ODBC ``password=``/``PWD=``
    pairs, ``user:password@`` URLs) never appear in poolkit's reprs, logs, stats or errors;
    pass any other secret (say, one a ``connect=`` factory uses) in ``secrets`` to mask it too.
    """

    def __init__(
        self,
        driver: Any = None,
        /,
        *args: Any,
        connect: Callable[[], Raw] | None = None,
        connect_kwargs: Mapping[str, Any] | None = None,
        min_size: int = 1,
        max_size: int = 10,
        max_waiting: int = 0,
        timeout: float | None = 30.0,
        query_timeout: float | None = None,
        max_lifetime: float | None = 3600.0,
        max_idle: float | None = 600.0,
        leak_timeout: float | None = None,
        lifetime_jitter: float = 0.1,
        check_idle_after: float | None = 5.0,
        retry_lost: bool = True,
        check: Callable[[Raw], None] | None = None,
        configure: Callable[[Raw], object] | None = None,
        reset: Callable[[Raw], object] | None = None,
        backoff: Backoff | None = None,
        prefetch: int = 1000,
        name: str | None = None,
        secrets: Iterable[str] = (),
        profile: DriverProfile | None = None,
        threads: Literal["auto", "dedicated", "shared"] = "auto",
        clock: Callable[[], float] = time.monotonic,
        # Catches keywords meant for driver.connect(); NoReturn keeps type checkers refusing them.
        **driver_keywords: NoReturn,
    ) -> None:
        if driver_keywords:
            raise TypeError(_unexpected_keywords(list(driver_keywords), driver, connect))
        kwargs = dict(connect_kwargs or {})
        if connect is None:
            if driver is None:
                raise TypeError("Pool() needs a DB-API driver module, or connect=<factory>")
            _check_driver(driver)
            args, kwargs = _url_arguments(profile or profile_for(driver), args, kwargs)
            self._connect: Callable[[], Raw] = functools.partial(driver.connect, *args, **kwargs)
        else:
            if not callable(connect):
                raise TypeError(
                    f"connect must be a callable returning a connection, got {connect!r}"
                )
            if args or kwargs:
                raise TypeError(
                    "connect arguments cannot be combined with connect=<factory>: "
                    "let the factory pass them"
                )
            if driver is not None:
                _check_driver(driver, needs_connect=False)
            self._connect = connect
        _check_seconds("timeout", timeout, positive=True)
        _check_seconds("query_timeout", query_timeout, positive=True)
        _check_seconds("check_idle_after", check_idle_after, positive=False)
        _check_seconds("max_lifetime", max_lifetime, positive=True)
        _check_seconds("max_idle", max_idle, positive=True)
        _check_seconds("leak_timeout", leak_timeout, positive=True)
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
            raise ValueError(f"prefetch must be an int >= 0, got {prefetch!r}")
        for label, hook in (("check", check), ("configure", configure), ("reset", reset)):
            if hook is not None:
                _check_sync_callable(label, hook, "it runs on the connection's worker thread")
        if isinstance(secrets, str):
            raise TypeError("secrets must be an iterable of strings, not one string")
        if threads not in _THREAD_MODES:
            raise ValueError(
                f"threads must be one of {', '.join(map(repr, _THREAD_MODES))}, got {threads!r}"
            )
        self._threads_mode = threads
        self._group: ThreadGroup | None = None
        self._state = PoolState(
            min_size=min_size,
            max_size=max_size,
            max_waiting=max_waiting,
            max_lifetime=max_lifetime,
            max_idle=max_idle,
            lifetime_jitter=lifetime_jitter,
        )
        self._driver = driver
        self._profile = (
            profile
            if profile is not None
            else (profile_for(driver) if driver is not None else None)
        )
        self._driver_name = driver_name(driver) if driver is not None else "dbapi"
        if (
            threads == "shared"
            and self._profile is not None
            and connect is None
            and self._profile.thread_bound
            and kwargs.get("check_same_thread", True) is not False
        ):
            raise ValueError(
                f"threads='shared' moves connections between threads, which "
                f"{self._profile.name} refuses: connect with check_same_thread=False, or use "
                "threads='dedicated'"
            )
        self.name = name if name is not None else f"{self._driver_name}-{next(_names)}"
        self._redact = Redactor(args, kwargs, secrets)  # after a URL was read: its password too
        self._timeout = timeout
        self._query_timeout = query_timeout
        self._leak_timeout = leak_timeout
        self._check_idle_after = check_idle_after
        self._retry_lost = bool(retry_lost)
        self._ping: Callable[[Raw], None] | None = check
        self._configure = configure
        self._reset_hook = reset
        self._backoff = backoff if backoff is not None else Backoff()
        self._prefetch = prefetch
        self._clock = clock
        self._counters = Counters()
        self._listeners: list[Listener] = []
        self._bridge: Bridge = _NOT_OPEN
        self._closed = False
        self._close_result: int | None = None
        self._stop = threading.Event()
        # Connect attempts sleep their back-off here: all wake when one connects (or the pool
        # closes), and one at a time goes early while callers wait (recovery follows demand).
        self._gate = Gate(self._backoff, lambda: self._state.waiting > 0)
        self._failure_round = 0
        self._closer_running = False
        self._last_connect_exc: BaseException | None = None
        # The last connect attempt failed with a configuration error (the profile's
        # is_config_error: a bad password, an unknown database, a DSN the driver rejects) and
        # none has succeeded since. open() raises it; so does a caller for whom the pool has
        # no connection (see _connect_failed and _wait). The pool keeps retrying meanwhile.
        self._config_error: BaseException | None = None
        self._conns: dict[int, PooledConn] = {}
        # The thread side of each connection, for the finalizer (it must not reach the pool).
        self._threads: dict[int, tuple[Runner, Link]] = {}
        self._retired: list[threading.Thread] = []
        self._helpers: list[threading.Thread] = []  # driver cancels (PooledConn.interrupt)
        self._retrying: set[anyio.CancelScope] = set()  # retries waiting for a connection
        self._watchers: list[LoopFuture[None]] = []
        self._finalizer = weakref.finalize(
            self, _abandon_pool, self.name, self._threads, self._stop
        )

    # ----- presentation ----------------------------------------------------------------

    def __repr__(self) -> str:
        s = self._state
        status = "closed" if self._closed else "open" if self._bridge is not _NOT_OPEN else "new"
        return (
            f"<Pool {self.name} {status} [{s.in_use} in use, {s.idle} idle, {s.opening} opening"
            f" | {s.waiting} waiting] max={s.max_size}>"
        )

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def threads(self) -> Literal["dedicated", "shared"]:
        """Where the next connection's calls will run: ``threads=`` with "auto" resolved."""
        return "shared" if self._shared_threads() else "dedicated"

    @property
    def min_size(self) -> int:
        return self._state.min_size

    @property
    def max_size(self) -> int:
        return self._state.max_size

    def stats(self) -> Stats:
        """A snapshot of sizes and totals since the pool was created.

        Safe to call from any thread (metrics exporters do); from another thread than the
        loop's it is best-effort: the numbers are read one by one while the pool runs.
        """
        s, c = self._state, self._counters
        return Stats(
            name=self.name,
            min_size=s.min_size,
            max_size=s.max_size,
            size=s.size,
            idle=s.idle,
            in_use=s.in_use,
            opening=s.opening,
            resetting=s.resetting,
            closing=s.closing,
            waiting=s.waiting,
            acquired=c.acquired,
            waited=c.waited,
            wait_time_total=c.wait_time_total,
            wait_time_max=c.wait_time_max,
            timeouts=c.timeouts,
            rejected=c.rejected,
            query_timeouts=c.query_timeouts,
            connections_opened=c.connections_opened,
            connections_closed=c.connections_closed,
            connect_errors=c.connect_errors,
            consecutive_connect_errors=c.consecutive_connect_errors,
            last_connect_error=c.last_connect_error,
            disconnects=c.disconnects,
            retried=c.retried,
            reset_failures=c.reset_failures,
            check_failures=c.check_failures,
            usage_time_total=c.usage_time_total,
        )

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event)`` on the event loop for each :class:`~poolkit.PoolEvent`.

        Listeners are plain functions called synchronously on the loop: keep them quick.
        """
        _check_sync_callable("listener", listener, "it is called synchronously on the loop")
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def _emit(
        self,
        kind: str,
        conn_id: int | None = None,
        detail: str | None = None,
        extra: dict[str, float] | None = None,
    ) -> None:
        event = PoolEvent(
            kind=kind, pool=self.name, connection_id=conn_id, detail=detail, extra=extra or {}
        )
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("pool %s: listener %r failed on %s", self.name, listener, kind)

    # ----- open and close --------------------------------------------------------------

    async def open(self, *, wait: bool = True, timeout: float | None = _DEFAULT) -> None:
        """Start the pool on the running event loop and open ``min_size`` connections.

        With ``wait``, return once they are open. A connect error that is a configuration
        mistake (the driver profile's ``is_config_error``: a bad password, an unknown
        database, a DSN the driver rejects) closes the pool and is raised at once, as the
        driver's own exception with secrets masked. Other errors are retried with back-off;
        if that takes longer than ``timeout`` (default: the pool's acquire timeout), the pool
        closes and :class:`~poolkit.PoolTimeout` names the last connect error.
        """
        if self._closed:
            raise PoolClosed(f"pool {self.name} is closed and cannot be reopened")
        if self._bridge is _NOT_OPEN:
            self._start()
        else:
            self._bridge.check_current(self.name)
        if not wait:
            return
        if timeout is _DEFAULT:
            timeout = self._timeout
        _check_seconds("timeout", timeout, positive=False)
        state = self._state
        with anyio.move_on_after(math.inf if timeout is None else timeout):
            while (
                state.idle + state.in_use < state.min_size
                and not state.closed
                and self._config_error is None
            ):
                await self._changed()
        if state.closed:
            raise PoolClosed(f"pool {self.name} was closed while opening")
        if state.idle + state.in_use >= state.min_size:
            return
        config, error = self._config_error, self._counters.last_connect_error
        with anyio.CancelScope(shield=True):
            await self.close(timeout=0)
        if config is not None:  # a configuration error no retry can fix: the driver's own
            raise self._masked(config) from None
        exc = PoolTimeout(
            f"pool {self.name}: could not open {_connections(state.min_size)} in "
            f"{timeout:g} s" + (f"; last connect error: {error}" if error else "")
        )
        exc.connect_error = self._masked_connect_error()
        raise exc

    def _start(self) -> None:
        self._bridge = current_bridge()
        s = self._state
        interval = _maintenance_interval(s.max_idle, s.max_lifetime, self._leak_timeout)
        if interval is not None:
            maintenance = threading.Thread(
                target=_maintenance_main,
                args=(weakref.ref(self), self._bridge, self._stop, interval),
                name=f"poolkit-{self.name}-maintenance",
                daemon=True,
            )
            maintenance.start()
            self._retired.append(maintenance)
        log.info(
            "pool %s: opening (min_size=%d, max_size=%d)", self.name, self.min_size, self.max_size
        )
        self._apply(self._state.fill())
        self._emit("open")

    async def close(self, timeout: float | None = 5.0) -> int:
        """Close the pool; returns how many connections it had to force or abandon.

        Waiters get :class:`~poolkit.PoolClosed` at once and idle connections are closed.
        Connections still in use are closed when returned, for up to ``timeout`` seconds
        (None: wait for ever). At that deadline each one still in use is forced: its running
        call is cancelled in the driver (one cancel request per connection), its holder gets
        ``PoolClosed`` at once, whether or not the driver returns (so do its later calls),
        and it is closed on its worker thread. Connects in progress are not waited for.
        After a short grace (0.25 s) ``close`` returns: it never takes more than
        ``timeout`` + 0.5 s once it has to force anything, even on a server that stopped
        answering. A connection whose thread is still inside the driver then (a statement
        the cancel did not reach, a connect to a server that does not answer) is abandoned
        to that thread, counted and logged: the thread closes it and exits as soon as the
        driver returns. Worker threads that finished are joined before this returns.
        """
        if self._close_result is not None:
            return self._close_result
        self._closed = True
        if self._bridge is _NOT_OPEN:
            self._close_result = 0
            self._finalizer.detach()
            return 0
        self._bridge.check_current(self.name)
        while self._closer_running:  # another task is closing: wait for it (or take over)
            await self._changed()
        if self._close_result is not None:
            return self._close_result
        self._closer_running = True
        try:
            return await self._close(timeout)
        finally:
            self._closer_running = False
            self._notify()

    async def _close(self, timeout: float | None) -> int:
        state = self._state
        if not state.closed:
            waiters, actions = state.close()
            self._stop.set()
            self._gate.close()
            for waiter in waiters:
                waiter.fail(
                    PoolClosed(f"pool {self.name} was closed while waiting for a connection")
                )
            self._apply(actions)
        # The graceful window is for work under way (callers, resets, closes); a connect in
        # progress is abandoned at once (Link.connect closes what it gets after the stop).
        with anyio.move_on_after(math.inf if timeout is None else max(0.0, timeout)):
            while state.size - state.opening:
                await self._changed()
        forced_ids: set[int] = set()
        if state.size:
            forced_ids = self._force_close()
            with anyio.move_on_after(_FORCE_GRACE):
                while state.size:
                    await self._changed()
        stuck = list(self._conns.values())
        forced = len(forced_ids | set(self._conns))
        if stuck:
            log.warning(
                "pool %s: %s still inside the driver, left to their threads: %s",
                self.name,
                _connections(len(stuck)),
                ", ".join(c.worker.name for c in stuck),
            )
        busy: set[threading.Thread | None] = set()
        for conn in stuck:  # each thread closes its connection and exits once the driver returns
            busy.add(conn.worker.thread)
            conn.worker.submit(conn.link.run, (Link.close, ()))
            conn.worker.stop()
        threads, self._retired = self._retired, []
        if self._group is not None:  # less the threads still stuck in a call, as above
            threads += [t for t in self._group.threads() if t not in busy]
        threads = [t for t in threads if t not in busy]
        helpers, self._helpers = self._helpers, []
        await self._join(threads, _FORCE_GRACE if forced else 5.0, helpers)
        self._close_result = forced
        self._finalizer.detach()
        self._notify()
        log.info("pool %s: closed (%s forced)", self.name, _connections(forced))
        self._emit("close", detail=f"forced={forced}")
        return forced

    def _force_close(self) -> set[int]:
        forced: set[int] = set()
        for conn in list(self._conns.values()):
            if conn.slot.state is not SlotState.IN_USE:
                continue
            forced.add(conn.id)
            conn.force(
                PoolClosed(
                    f"pool {self.name} was closed while a call on connection #{conn.id} was "
                    "running: close(timeout=...) reached its deadline, cancelled the call and "
                    "took the connection"
                )
            )
            self._apply(self._state.discard(conn.slot))
        if forced:
            log.warning("pool %s: close forced %s in use", self.name, _connections(len(forced)))
        return forced

    async def _join(
        self, threads: list[threading.Thread], timeout: float, helpers: list[threading.Thread]
    ) -> None:
        """Join ``threads`` within ``timeout`` and the cancel ``helpers`` within the grace
        (a cancel may wait on a server that does not answer; it ends by itself)."""
        bridge = self._bridge
        fut: LoopFuture[None] = bridge.future()

        def join_all() -> None:
            start = time.monotonic()
            for group, limit in ((helpers, min(timeout, _FORCE_GRACE)), (threads, timeout)):
                end = start + limit
                for thread in group:
                    thread.join(max(0.0, end - time.monotonic()))
            bridge.post(_set_done, fut)

        helper = run_in_helper_thread(join_all, f"{self.name}-join")
        await bridge.wait(fut)
        helper.join()  # it has only to return: close() leaves no poolkit thread behind

    async def __aenter__(self) -> Pool:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with anyio.CancelScope(shield=True):
            await self.close()

    async def _changed(self) -> None:
        """Wait for the next change of pool state (a loop callback ran)."""
        fut: LoopFuture[None] = self._bridge.future()
        self._watchers.append(fut)
        await self._bridge.wait(fut)

    def _notify(self) -> None:
        if self._watchers:
            watchers, self._watchers = self._watchers, []
            for fut in watchers:
                _set_done(fut)

    def resize(self, min_size: int, max_size: int) -> None:
        """Change the bounds; extra idle connections close now, extra in-use ones on return.

        Raises :class:`~poolkit.PoolClosed` on a closed pool."""
        if self._closed:
            raise PoolClosed(f"pool {self.name} is closed")
        if self._bridge is _NOT_OPEN:  # nothing runs yet: open() will fill to the new size
            validate_sizes(min_size, max_size)
            self._state.min_size, self._state.max_size = min_size, max_size
            return
        self._apply(self._state.resize(min_size, max_size))
        self._notify()

    async def check(self) -> int:
        """Ping every connection that is idle now, all at once on worker threads; those that
        fail are discarded (and replaced, down to ``min_size``). Returns how many failed.

        Connections in use are left alone (they are checked when they come back, if a
        disconnect was seen meanwhile). Callers arriving during the check wait for a
        checked connection or get a new one, like callers of a busy pool.
        """
        if self._closed:
            raise PoolClosed(f"pool {self.name} is closed")
        if self._bridge is _NOT_OPEN:
            raise PoolClosed(f"pool {self.name} is not open yet")
        self._bridge.check_current(self.name)
        taken: list[PooledConn] = []
        for _ in range(self._state.idle):
            slot, actions = self._state.checkout(self._clock())
            if actions:
                self._apply(actions)
            if slot is None:
                break
            taken.append(slot.payload)
        results: list[bool] = []

        async def check_one(conn: PooledConn) -> None:
            try:
                ok = await self._check(conn)
            except PoolClosed:  # close(timeout=...) took it meanwhile
                return
            results.append(ok)
            if ok:
                self._release(conn, handed_out=False)

        async with anyio.create_task_group() as tg:
            for conn in taken:
                tg.start_soon(check_one, conn)
        return results.count(False)

    # ----- acquire and release ---------------------------------------------------------

    def connection(self, timeout: float | None = _DEFAULT) -> _ConnectionContext:
        """``async with pool.connection() as conn:`` — a connection for the block's length."""
        return _ConnectionContext(self, timeout)

    @asynccontextmanager
    async def transaction(self, timeout: float | None = _DEFAULT) -> AsyncIterator[AsyncConnection]:
        """A connection inside a transaction: committed on success, rolled back on error."""
        async with self.connection(timeout) as conn, conn.transaction():
            yield conn

    async def fetchall(
        self,
        sql: Any,
        params: Any = None,
        *,
        timeout: float | None = _DEFAULT,
        query_timeout: float | None = _DEFAULT,
    ) -> list[Row]:
        """Run one statement on a pooled connection and return all its rows.

        The statement runs in a transaction of its own, committed on success (nothing to
        commit in autocommit mode), and execute, fetch and commit take one thread trip.
        ``timeout`` bounds the wait for a connection, ``query_timeout`` the call.
        """
        rows: list[Row] = await self._query(sql, params, False, timeout, query_timeout)
        return rows

    async def fetchone(
        self,
        sql: Any,
        params: Any = None,
        *,
        timeout: float | None = _DEFAULT,
        query_timeout: float | None = _DEFAULT,
    ) -> Row | None:
        """As :meth:`fetchall`, returning the first row only (None if there is none)."""
        row: Row | None = await self._query(sql, params, True, timeout, query_timeout)
        return row

    async def _query(
        self,
        sql: Any,
        params: Any,
        first: bool,
        timeout: float | None,
        query_timeout: float | None,
    ) -> Any:
        if query_timeout is _DEFAULT:
            query_timeout = self._query_timeout
        else:
            _check_seconds("query_timeout", query_timeout, positive=True)
        args = (sql, params, first, True)
        conn = await self._acquire(timeout)
        try:
            result = await call(self, conn, Link.query, args, query_timeout)
        except Exception as exc:
            if not conn.lost_before_effect(exc):
                self._release(conn)
                raise
            conn = await self._fresh_for_retry(conn, exc, timeout)  # gives the lost one back
        except BaseException:
            self._release(conn)
            raise
        else:
            self._release(conn)
            return result
        try:
            return await call(self, conn, Link.query, args, query_timeout)
        finally:
            self._release(conn)

    async def acquire(self, timeout: float | None = _DEFAULT) -> AsyncConnection:
        """Take a connection; hand it back with :meth:`release`. Prefer :meth:`connection`."""
        return AsyncConnection(self, await self._acquire(timeout))

    def release(self, connection: AsyncConnection) -> None:
        """Give back a connection from :meth:`acquire`. Releasing twice is an error."""
        if connection._pool is not self:
            raise ValueError(f"{connection!r} does not belong to {self!r}")
        if connection._returned:
            if connection._dropped:  # given back by the pool when a retry found no other
                return
            raise ValueError(f"{connection!r} was already released")
        connection._give_back()

    async def _fresh_for_retry(
        self, lost: PooledConn, exc: BaseException, timeout: float | None
    ) -> PooledConn:
        """Give back ``lost``, found lost by the first call of its checkout, and take a fresh
        connection for that call's one retry (see ``retry_lost``), ahead of the queue: the
        caller has waited its turn once already.

        Raises ``exc``, the call's own error, when no connection is at hand: connects were
        failing already or one fails meanwhile (the server is not back: waiting would only
        delay the error), every connection is taken by other callers with none on its way
        (the pool was shrunk below them: the retry would wait on their releases), or
        ``timeout`` passes."""
        site = lost.acquired_from
        self._release(lost)
        s = self._state
        if self._counters.consecutive_connect_errors or not (
            s.idle or s.opening or s.resetting or s.live < s.max_size
        ):
            raise exc
        with anyio.CancelScope() as scope:
            self._retrying.add(scope)  # cancelled by a failed connect (_connect_failed)
            try:
                conn = await self._acquire(timeout, front=True)
            except PoolTimeout:
                raise exc from None
            finally:
                self._retrying.discard(scope)
        if scope.cancelled_caught:
            raise exc
        self._counters.retried += 1
        log.info(
            "pool %s: connection #%d was lost before its first call could have had an effect "
            "(%s); running the call again on connection #%d",
            self.name,
            lost.id,
            self._redact.exception(exc),
            conn.id,
        )
        if self._listeners:
            self._emit("retry", lost.id, self._redact.exception(exc))
        if site is not None:
            conn.acquired_from = site  # the caller's own acquire, for leak reports
        return conn

    async def _acquire(self, timeout: float | None, *, front: bool = False) -> PooledConn:
        if self._closed:
            raise PoolClosed(f"pool {self.name} is closed")
        if self._bridge is _NOT_OPEN:
            raise PoolClosed(
                f"pool {self.name} is not open yet: use 'async with pool:' or 'await pool.open()'"
            )
        self._bridge.check_current(self.name)
        if timeout is _DEFAULT:
            timeout = self._timeout
        else:
            _check_seconds("timeout", timeout, positive=False)
        now = self._clock()
        slot, actions = self._state.checkout(now)
        if actions is not NOTHING:
            self._apply(actions)
        if slot is not None and not self._needs_check(slot.payload, now):
            # No await on this path (like psycopg_pool): a free connection costs ~5 µs.
            return self._handout(slot.payload, now, now, False)
        if timeout is None:
            return await self._acquire_slow(slot, now, front)
        with anyio.move_on_after(timeout):
            return await self._acquire_slow(slot, now, front)
        self._counters.timeouts += 1
        self._emit("timeout")
        error = self._counters.last_connect_error
        s = self._state
        exc = PoolTimeout(
            f"no connection from pool {self.name} within {timeout:g} s "
            f"({s.in_use} in use, {s.opening} opening, {s.waiting} waiting, max_size={s.max_size})"
            + (
                f"; last connect error: {error}"
                if error and self._counters.consecutive_connect_errors
                else ""
            )
        )
        if self._counters.consecutive_connect_errors:
            exc.connect_error = self._masked_connect_error()
        raise exc

    async def _acquire_slow(self, slot: Slot | None, start: float, front: bool) -> PooledConn:
        waited = slot is None
        while True:
            if slot is None:
                waited = True
                slot = await self._wait(front)
            conn: PooledConn = slot.payload
            if not self._needs_check(conn, self._clock()) or await self._check(conn):
                return self._handout(conn, start, self._clock(), waited)
            slot, front = None, True  # lost it to a failed check: keep our place in line

    async def _wait(self, front: bool) -> Slot:
        if self._closed:  # say, closed while the connection taken for this caller was checked
            raise PoolClosed(f"pool {self.name} is closed")
        waiter = _Waiter(self._bridge.future())
        try:
            actions = self._state.wait(waiter, self._clock(), front=front)
        except TooManyWaiters:
            self._counters.rejected += 1
            raise
        self._apply(actions)
        if self._counters.consecutive_connect_errors:  # attempts sleep in back-off: one may go
            self._gate.poke()
        if self._config_error is not None and not self._state.connected:
            # Connecting fails with a configuration error and no connection could come back
            # to this caller: fail now, not at the timeout. The attempt `wait` may just have
            # started (after its back-off) still finds out when the mistake is fixed.
            self._state.cancel_wait(waiter)
            raise self._masked(self._config_error) from None
        try:
            slot: Slot = await self._bridge.wait(waiter.fut)
            return slot
        except BaseException:
            self._state.cancel_wait(waiter)
            if waiter.slot is not None:  # served just as we gave up: pass it on untouched
                self._apply(self._state.checkin(waiter.slot, self._clock(), keep=True, reset=False))
                self._notify()
            raise

    def _needs_check(self, conn: PooledConn, now: float) -> bool:
        slot = conn.slot
        if self._state.is_suspect(slot):  # created before a disconnect and not checked since
            return True
        after = self._check_idle_after
        if after is not None and now - slot.idle_since >= after:
            return True
        # The server spoke to an idle connection (closed it after a restart, reset it, sent a
        # termination notice): ping it rather than hand a caller a dead connection.
        return conn.fd is not None and has_news(conn.fd)

    async def _check(self, conn: PooledConn) -> bool:
        """Ping a connection the caller holds; on failure it is discarded (False)."""
        fut = self._bridge.future()
        seq = conn.start(Link.ping, (self._ping_for(conn),), fut)
        conn.pending = fut  # a forced close fails it: PoolClosed below
        try:
            await self._bridge.wait(fut)
        except Exception as exc:  # the ping itself failed (cancellation is a BaseException)
            if conn.forced:  # close(timeout=...) took it meanwhile
                raise PoolClosed(self._closed_during_check()) from None
            self._counters.check_failures += 1
            log.info(
                "pool %s: connection #%d failed its health check (%s); replacing it",
                self.name,
                conn.id,
                self._redact.exception(exc),
            )
            self._emit("discard", conn.id, "health check failed")
            self._apply(self._state.discard(conn.slot))
            return False
        except BaseException:
            forget(fut)
            if conn.completed < seq:
                conn.interrupt(seq)
            self._release(conn, handed_out=False)
            raise
        finally:
            if conn.pending is fut:
                conn.pending = None
        if conn.forced:
            raise PoolClosed(self._closed_during_check())
        self._state.verified(conn.slot, self._clock())
        return True

    def _closed_during_check(self) -> str:
        return f"pool {self.name} was closed while a connection was checked for this caller"

    def _ping_for(self, conn: PooledConn) -> Callable[[Raw], None]:
        """The pool's ``check`` if given, else the driver profile's ping."""
        return self._ping or conn.link.profile.ping  # type: ignore[union-attr]

    def _handout(self, conn: PooledConn, start: float, now: float, waited: bool) -> PooledConn:
        """Count a checkout asked for at ``start`` and served ``now``."""
        c = self._counters
        c.acquired += 1
        if waited:
            wait = now - start
            c.waited += 1
            c.wait_time_total += wait
            if wait > c.wait_time_max:
                c.wait_time_max = wait
        conn.checked_out_at = now
        # The call this checkout makes first may be retried once if it finds the connection
        # lost (see retry_lost and PooledConn.lost_before_effect).
        conn.retry_seq = (
            conn.submitted + 1 if self._retry_lost and conn.last_autocommit is False else 0
        )
        if self._leak_timeout is not None:
            conn.acquired_from = acquire_site()
        if self._listeners:
            self._emit("checkout", conn.id, extra={"wait": now - start})
        return conn

    def _release(self, conn: PooledConn, *, handed_out: bool = True) -> None:
        """A caller is done with ``conn``. Never waits: any reset runs on a worker thread.

        ``handed_out=False``: the acquire was abandoned during the health check, so this is
        no checkin in the statistics or events.
        """
        if conn.forced:
            return
        now = self._clock()
        used = now - conn.checked_out_at
        if handed_out:
            self._counters.usage_time_total += used
        if conn.acquired_from is not None:  # only with leak_timeout
            self._leak_ended(conn, used)
        keep = not (conn.broken or conn.invalidate_requested)
        reset = keep and (
            conn.interrupted
            or conn.submitted != conn.completed
            or conn.in_tx is not False
            or conn.last_autocommit != conn.base_autocommit
            or conn.unread > 0
            or self._reset_hook is not None
        )
        conn.unread = 0
        if self._listeners and handed_out:
            self._emit("checkin", conn.id, extra={"use": used})
        slot = conn.slot
        actions = self._state.checkin(slot, now, keep=keep, reset=reset)
        if slot.state is SlotState.RESETTING:
            if conn.in_tx and not conn.interrupted:
                log.debug(
                    "pool %s: connection #%d returned inside a transaction; rolling it back",
                    self.name,
                    conn.id,
                )
            changed = conn.interrupted or conn.last_autocommit != conn.base_autocommit
            restore = conn.base_autocommit if changed else None
            ping = None
            if conn.interrupted:
                ping = self._ping_for(conn)
            conn.submitted += 1
            conn.worker.submit(
                conn.link.run,
                (Link.reset, (True, restore, self._reset_hook, ping)),
                self._on_reset,
                conn,
            )
        if actions is not NOTHING:
            self._apply(actions)
        if self._watchers:
            self._notify()

    # ----- loop callbacks from worker threads ------------------------------------------

    def _apply(self, actions: Actions) -> None:
        for slot in actions.close:
            self._close_slot(slot)
        for slot in actions.open:
            self._open_slot(slot)

    def _shared_threads(self) -> bool:
        """Whether the next connection runs on the shared group (``threads=``)."""
        if self._threads_mode != "auto":
            return self._threads_mode == "shared"
        profile, driver = self._profile, self._driver
        if driver is None or profile is None or profile.thread_bound:
            return False
        level = getattr(driver, "threadsafety", 0)
        return isinstance(level, int) and not isinstance(level, bool) and level >= 2

    def _open_slot(self, slot: Slot) -> None:
        worker: Runner
        if self._shared_threads():
            if self._group is None:
                self._group = ThreadGroup(self._bridge, self.name)
            worker = self._group.strand(f"connection #{slot.id}")
        else:
            worker = Worker(self._bridge, self.name)
        link = Link(self._driver, self._profile)
        conn = PooledConn(self, slot, worker, link)
        slot.payload = conn
        self._conns[slot.id] = conn
        self._threads[slot.id] = (worker, link)
        # The back-off grows per round of failures, not per failed attempt: N connects that
        # fail together (say min_size=8 on a down server) step the delay once, not N times.
        conn.round = self._failure_round
        delay = self._backoff.delay(self._failure_round)
        args = (self._connect, self._configure, delay, self._stop, self._gate, self._clock)
        worker.submit(link.run, (Link.connect, args), self._on_connected, conn)

    def _on_connected(
        self, conn: PooledConn, outcome: Outcome | None, exc: BaseException | None
    ) -> None:
        slot = conn.slot
        if outcome is None or not outcome[0]:
            error = outcome[1] if outcome is not None else exc
            conn.worker.stop()
            self._retire(conn)
            if not isinstance(error, Abandoned):
                self._connect_failed(conn, error)
            elif error.opened:  # connected as the pool closed, and closed again at once
                self._counters.connections_opened += 1
                self._counters.connections_closed += 1
            self._apply(self._state.open_failed(slot))
            self._notify()
            return
        in_tx, autocommit, took = outcome[1]
        conn.in_tx = in_tx
        socket_fd = conn.link.profile.socket_fd if conn.link.profile is not None else None
        conn.fd = socket_fd(conn.link.raw) if socket_fd is not None else None
        conn.base_autocommit = conn.last_autocommit = autocommit
        if self._driver is None:
            self._driver = conn.link.driver
            self._driver_name = driver_name(self._driver) if self._driver is not None else "dbapi"
        if self._profile is None:
            self._profile = conn.link.profile
        c = self._counters
        c.connections_opened += 1
        if c.consecutive_connect_errors:
            log.info(
                "pool %s: connected again after %d failed attempts",
                self.name,
                c.consecutive_connect_errors,
            )
        c.consecutive_connect_errors = 0
        self._failure_round = 0
        self._config_error = None
        self._gate.open()  # attempts sleeping in back-off try again now
        log.debug("pool %s: connection #%d opened", self.name, conn.id)
        if self._listeners:
            self._emit("connect", conn.id, extra={"create": took})
        self._apply(self._state.opened(slot, self._clock()))
        self._notify()

    def _connect_failed(self, conn: PooledConn, error: BaseException | None) -> None:
        c = self._counters
        c.connect_errors += 1
        c.consecutive_connect_errors += 1
        for scope in self._retrying:  # the server is not back: those retries give up
            scope.cancel()
        text = self._redact.exception(error) if error is not None else "unknown error"
        c.last_connect_error = text
        self._last_connect_exc = error
        if conn.round == self._failure_round:  # the first failure of this round
            self._failure_round += 1
        config = error if error is not None and self._is_config_error(error) else None
        self._config_error = config
        # A configuration error fails the callers waiting now, unless connections in use
        # (or being reset) may come back to them: then they wait for those, as usual.
        failed = [] if config is None or self._state.connected else self._state.take_waiters()
        n = c.consecutive_connect_errors
        level = logging.WARNING if n & (n - 1) == 0 or failed else logging.DEBUG  # 1, 2, 4 ...
        kind = "" if config is None else " with a configuration error"
        if failed:
            kind += f", raised to {len(failed)} waiting caller{'s' if len(failed) > 1 else ''}"
        log.log(
            level,
            "pool %s: connect attempt failed%s (%d in a row; retrying with back-off): %s",
            self.name,
            kind,
            n,
            text,
        )
        if config is not None:
            for waiter in failed:
                waiter.fail(self._masked(config))
        self._emit("connect_failed", conn.id, text)

    def _masked(self, exc: BaseException) -> BaseException:
        """A fresh copy of a connect error for one caller to raise (see
        :meth:`Redactor.masked`): never an object another caller raises too, nor one that
        shows a secret; a :class:`~poolkit.PoolError` with the masked text when no such copy
        can be made."""
        return self._redact.masked(exc) or PoolError(self._redact.exception(exc))

    def _masked_connect_error(self) -> BaseException | None:
        """The last connect error, as :attr:`PoolTimeout.connect_error` carries it (masked)."""
        error = self._last_connect_exc
        return None if error is None else self._masked(error)

    def _is_config_error(self, error: BaseException) -> bool:
        """Whether retrying cannot fix a connect error: the driver profile's
        ``is_config_error`` (for a ``connect=`` factory that has not connected yet, the
        profile of the error's own module)."""
        driver = self._driver
        if driver is None:
            driver = sys.modules.get(type(error).__module__.split(".")[0])
        profile = self._profile if self._profile is not None else profile_for(driver)
        try:
            return bool(profile.is_config_error(error, driver))
        except Exception as exc:
            log.warning(
                "pool %s: is_config_error of profile %s failed (%s); retrying as usual",
                self.name,
                profile.name,
                self._redact.exception(exc),
            )
            return False

    def _on_reset(
        self, conn: PooledConn, outcome: Outcome | None, exc: BaseException | None
    ) -> None:
        conn.completed += 1
        ok = outcome is not None and outcome[0]
        if outcome is not None:
            conn.in_tx = outcome[2]
            if outcome[3] and not conn.broken:
                conn.broken = True
                self._on_disconnect(conn)
        if not ok:
            self._counters.reset_failures += 1
            error = outcome[1] if outcome is not None else exc
            log.info(
                "pool %s: reset of connection #%d failed (%s); replacing it",
                self.name,
                conn.id,
                self._redact.exception(error) if error else "unknown",
            )
            if self._listeners:
                self._emit("discard", conn.id, "reset failed")
        conn.interrupted = False
        conn.last_autocommit = conn.base_autocommit
        self._apply(self._state.reset_done(conn.slot, self._clock(), ok=ok))
        self._notify()

    def _close_slot(self, slot: Slot) -> None:
        conn: PooledConn = slot.payload
        conn.worker.submit(conn.link.run, (Link.close, ()), self._on_closed, conn)
        conn.worker.stop()

    def _on_closed(
        self, conn: PooledConn, outcome: Outcome | None, exc: BaseException | None
    ) -> None:
        self._counters.connections_closed += 1
        self._retire(conn)
        log.debug("pool %s: connection #%d closed", self.name, conn.id)
        if self._listeners:
            self._emit("close_connection", conn.id)
        self._apply(self._state.closed_done(conn.slot))
        self._notify()

    def _retire(self, conn: PooledConn) -> None:
        self._conns.pop(conn.id, None)
        self._threads.pop(conn.id, None)
        thread = conn.worker.owned_thread()
        if thread is not None:
            self._retired.append(thread)
        if len(self._retired) > 64:
            self._retired = [t for t in self._retired if t.is_alive()]

    def _on_disconnect(self, conn: PooledConn) -> None:
        """The driver reported a lost connection: older connections become suspect."""
        self._counters.disconnects += 1
        self._state.invalidate(self._clock())
        log.info(
            "pool %s: connection #%d lost its server; checking older connections before reuse",
            self.name,
            conn.id,
        )

    def _maintain(self) -> None:
        if not self._closed:
            now = self._clock()
            if self._leak_timeout is not None:
                for conn, held in overdue(self._conns.values(), now, self._leak_timeout):
                    self._report_leak(conn, held)
            self._apply(self._state.sweep(now))
            self._notify()

    def _report_leak(self, conn: PooledConn, held: float) -> None:
        assert conn.acquired_from is not None
        site = self._redact(format_site(conn.acquired_from))
        log.warning(
            "pool %s: connection #%d has been held for %.3g s (leak_timeout=%g s); "
            "acquired at (most recent call last):\n%s",
            self.name,
            conn.id,
            held,
            self._leak_timeout,
            site,
        )
        self._emit("leak", conn.id, site, {"held": held})

    def _leak_ended(self, conn: PooledConn, held: float) -> None:
        """A checkout watched for leaks ended."""
        conn.acquired_from = None
        if conn.leaked:
            conn.leaked = False
            log.info(
                "pool %s: connection #%d, reported as leaked, came back after %.3g s",
                self.name,
                conn.id,
                held,
            )

    def _log_cancel_failure(self, conn: PooledConn, exc: BaseException) -> None:
        log.info(
            "pool %s: driver cancel on connection #%d failed: %s",
            self.name,
            conn.id,
            self._redact.exception(exc),
        )


class _ConnectionContext:
    """``async with pool.connection():`` without a generator frame on the hot path."""

    __slots__ = ("_conn", "_pool", "_timeout")

    def __init__(self, pool: Pool, timeout: float | None) -> None:
        self._pool = pool
        self._timeout = timeout
        self._conn: AsyncConnection | None = None

    async def __aenter__(self) -> AsyncConnection:
        pool = self._pool
        self._conn = AsyncConnection(pool, await pool._acquire(self._timeout))
        return self._conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn = self._conn
        if conn is not None and not conn._returned:
            conn._give_back()


class _NotOpen(Bridge):
    def __init__(self) -> None:
        super().__init__(_refuse)


def _refuse(fn: Callable[[], None]) -> None:
    raise RuntimeError("pool is not open")


_NOT_OPEN = _NotOpen()
_FORCE_GRACE = 0.25  # seconds close() gives forced connections before it returns


def _set_done(fut: LoopFuture[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _check_seconds(label: str, value: object, *, positive: bool) -> None:
    """``value`` must be None or a number of seconds (> 0, or >= 0 if not ``positive``)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{label} must be a number of seconds or None, got {value!r}")
    if not (value > 0 if positive else value >= 0):  # also rejects NaN
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{label} must be {bound} seconds or None, got {value!r}")


def _check_sync_callable(label: str, fn: object, why: str) -> None:
    if not callable(fn):
        raise TypeError(f"{label} must be callable, got {fn!r}")
    if inspect.iscoroutinefunction(fn):
        raise TypeError(f"{label} must be a plain function, not async: {why}")


def _check_driver(driver: Any, *, needs_connect: bool = True) -> None:
    missing = [name for name in ("Error", "paramstyle") if not hasattr(driver, name)]
    if needs_connect and not callable(getattr(driver, "connect", None)):
        missing.insert(0, "connect()")
    if missing:
        raise TypeError(
            f"{driver!r} is not a DB-API 2.0 (PEP 249) driver: it has no {', '.join(missing)}"
        )
    error = driver.Error
    if not (isinstance(error, type) and issubclass(error, Exception)):
        raise TypeError(
            f"{driver!r} is not a DB-API 2.0 (PEP 249) driver: Error is not an exception class"
        )


def _connections(n: int) -> str:
    return f"{n} connection" if n == 1 else f"{n} connections"


def _unexpected_keywords(names: list[str], driver: Any, connect: object) -> str:
    """Why ``Pool()`` refuses keywords it has no option for, and where each one goes: a pool
    option it is a typo of (unless the driver's connect() names it), else ``connect_kwargs``."""
    options = [
        p.name
        for p in inspect.signature(Pool).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    try:  # the driver's connect() keywords, where it declares them (PyMySQL; not psycopg2)
        params = inspect.signature(driver.connect).parameters.values()
        known: set[str] | None = {p.name for p in params if p.kind is not p.VAR_KEYWORD}
        if any(p.kind is p.VAR_KEYWORD for p in params):
            known = None
    except (TypeError, ValueError, AttributeError):
        known = None
    typos: list[str] = []
    for_driver: list[str] = []
    for name in names:
        close = [] if known and name in known else difflib.get_close_matches(name, options, 1)
        if close:
            typos.append(close[0] if len(names) == 1 else f"{close[0]} (not {name})")
        if not close or known is None:  # maybe meant for the driver too
            for_driver.append(name)
    listed = ", ".join(names)
    head = (
        f"Pool() got an unexpected keyword argument {listed}"
        if len(names) == 1
        else f"Pool() got unexpected keyword arguments {listed}"
    )
    text = f"did you mean {', '.join(typos)}?" if typos else ""
    if for_driver:
        shown = ", ".join(f"{name!r}: ..." for name in for_driver)
        where = (
            "belong in the connect= factory"
            if connect is not None
            else f"go in connect_kwargs={{{shown}}}"
        )
        text = f"{text} Keywords" if text else "keywords"
        text += f" for the driver's connect() {where}"
    return f"{head}: {text}"


def _url_arguments(
    profile: DriverProfile, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A URL as the one connect argument, read by the profile (explicit keywords win)."""
    if profile.parse_url is None or len(args) != 1 or not is_url(args[0]):
        return args, kwargs
    url_args, url_kwargs = profile.parse_url(args[0])
    return url_args, {**url_kwargs, **kwargs}


def _maintenance_interval(*limits: float | None) -> float | None:
    """How often the background sweep runs: a quarter of the shortest limit it enforces
    (``max_idle``, ``max_lifetime``, ``leak_timeout``), within [0.01, 30] s; None if none."""
    given = [x for x in limits if x is not None]
    if not given:
        return None
    return min(30.0, max(0.01, min(given) / 4))


def _maintenance_main(
    ref: weakref.ReferenceType[Pool], bridge: Bridge, stop: threading.Event, interval: float
) -> None:
    while not stop.wait(interval):
        pool = ref()
        if pool is None or bridge.dead:
            return
        bridge.post(pool._maintain)
        del pool


def _abandon_pool(
    name: str, threads: dict[int, tuple[Runner, Link]], stop: threading.Event
) -> None:
    """Finalizer of a pool dropped without close(): let its threads close and exit."""
    stop.set()
    if threads:
        log.warning(
            "pool %s was garbage-collected without close(); closing %s",
            name,
            _connections(len(threads)),
        )
    for worker, link in list(threads.values()):
        worker.close_later((link.run, (Link.close, ()), None, None))
