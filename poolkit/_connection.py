"""``AsyncConnection``: one checkout of a pooled connection, and the loop-side record behind it."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from ._bridge import forget
from ._errors import ConnectionBusy, ConnectionReturned, PoolClosed, PoolError, QueryTimeout
from ._link import CursorBox, Link, Outcome
from ._rows import Row
from ._worker import Runner, run_in_helper_thread

if TYPE_CHECKING:
    from ._cursor import AsyncCursor
    from ._leaks import Site
    from ._pool import Pool
    from ._state import Slot

__all__ = ["AsyncConnection", "PooledConn", "call"]

T = TypeVar("T")


class _Default:
    """ "Use the pool's default" for ``timeout=`` arguments (None means "no timeout")."""

    def __repr__(self) -> str:
        return "<pool default>"


DEFAULT: Any = _Default()


def _cursor_class() -> type[AsyncCursor]:
    global _AsyncCursor
    if _AsyncCursor is None:
        from ._cursor import AsyncCursor

        _AsyncCursor = AsyncCursor
    return _AsyncCursor


_AsyncCursor: type[AsyncCursor] | None = None  # imported late: _cursor imports this module


class PooledConn:
    """Loop-side facts about one pooled connection. Touched only on the event loop thread."""

    __slots__ = (
        "_deliver",
        "_job",
        "_put",
        "acquired_from",
        "base_autocommit",
        "broken",
        "cancel_done",
        "cancel_seq",
        "checked_out_at",
        "completed",
        "fd",
        "forced",
        "in_tx",
        "interrupted",
        "invalidate_requested",
        "last_autocommit",
        "leaked",
        "link",
        "pending",
        "pool",
        "retry_seq",
        "round",
        "slot",
        "submitted",
        "unread",
        "worker",
    )

    def __init__(self, pool: Pool, slot: Slot, worker: Runner, link: Link) -> None:
        self.pool = pool
        self.slot = slot
        self.worker = worker
        self.link = link
        self.in_tx: bool | None = None
        self.base_autocommit: bool | None = None  # as configured; restored on return
        self.last_autocommit: bool | None = None  # as last set through poolkit
        self.broken = False  # the driver reported a disconnect: never reuse
        self.interrupted = False  # a call was abandoned while running on the thread
        self.invalidate_requested = False
        self.forced = False  # taken away by close(timeout=...)
        self.submitted = 0
        self.completed = 0
        self.fd: int | None = None  # the socket, where the driver shows it (see has_news)
        # The future the holder awaits now (a call, or the health check before hand-out):
        # a forced close fails it, so the holder is not left waiting on a stuck driver.
        self.pending: Any = None
        # The last call a driver cancel was requested for, and the end of that cancel: at
        # most one cancel is in flight per connection (see interrupt()).
        self.cancel_seq = 0
        self.cancel_done: threading.Event | None = None
        self.checked_out_at = 0.0
        # Set at checkout only with Pool(leak_timeout=...): where the caller took it.
        self.acquired_from: Site | None = None
        self.leaked = False  # this checkout was reported held past leak_timeout
        self.unread = 0  # cursors of this checkout whose results still wait in the driver
        self.round = 0  # the pool's connect-failure round when this connect was attempted
        self.retry_seq = 0  # the call this checkout may retry if it finds the connection lost
        # Bound once: start() is the hot path of every query.
        self._put = worker.queue.put
        self._job = link.run
        self._deliver = self.deliver

    @property
    def id(self) -> int:
        return self.slot.id

    def start(self, fn: Callable[..., Any], args: tuple[Any, ...], fut: Any) -> int:
        """Queue call ``fn`` on the thread, its outcome for ``fut``; returns its sequence
        number (the call has finished once ``completed`` reaches it)."""
        seq = self.submitted = self.submitted + 1
        self._put((self._job, (fn, args, seq), self._deliver, fut))
        return seq

    def deliver(self, fut: Any, outcome: Outcome | None, exc: BaseException | None) -> None:
        """Loop callback: a job finished on the worker thread."""
        self.completed += 1
        if outcome is None:  # the job wrapper itself failed; cannot happen short of a bug
            self.broken = True
            if not fut.done():
                fut.set_exception(exc or RuntimeError("poolkit job failed"))
            return
        ok, value, in_tx, disconnected = outcome
        self.in_tx = in_tx
        if isinstance(value, StopIteration):  # asyncio futures refuse it (and it is a trap)
            wrapped = RuntimeError(f"the call raised StopIteration: {value!r}")
            wrapped.__cause__ = value
            value = wrapped
        if disconnected and not self.broken:
            self.broken = True
            self.pool._on_disconnect(self)
        if not fut.done():
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

    def lost_before_effect(self, exc: BaseException) -> bool:
        """Whether the call that just failed with ``exc`` may run again on another connection
        (``Pool(retry_lost=True)``): the driver reported this connection lost, the call was
        the first of its checkout, made with autocommit off (so what it did belonged to a
        transaction that the lost session took with it), it ended by itself (not cancelled,
        not timed out, not taken by close) and it had sent no commit."""
        return (
            self.broken
            and self.retry_seq != 0
            and self.retry_seq == self.submitted == self.completed
            and not self.forced
            and not self.link.committing
            and isinstance(exc, Exception)
            and not isinstance(exc, PoolError)
        )

    def interrupt(self, seq: int) -> None:
        """The caller of call ``seq`` left before it finished: skip it if it has not started,
        cancel it in the driver if it is running, and reset the connection before reuse.

        At most one driver cancel is in flight per connection: a second request for the same
        call is dropped, and while a cancel is in flight the call is only marked abandoned
        (every later job waits for that cancel to end, then skips the abandoned call), so
        cancel helper threads never pile up on a server that does not answer."""
        self.interrupted = True
        self.in_tx = None
        if seq == self.cancel_seq:  # a cancel was requested for this very call already
            return
        self.cancel_seq = seq
        link = self.link
        # Marked before the check below: a job that starts once the cancel in flight ends
        # then finds it abandoned (see Link.run and Link.abandon for the ordering).
        link.abandoned.add(seq)
        pending = self.cancel_done
        if pending is not None and not pending.is_set():
            return
        done = self.cancel_done = threading.Event()
        link.abandon(seq, done)

        pool = self.pool
        reconnect = pool._connect

        def cancel() -> None:
            try:
                link.cancel(seq, reconnect)
            except Exception as exc:
                pool._log_cancel_failure(self, exc)
            finally:
                done.set()

        # close() joins it (briefly: it may wait on a server that does not answer).
        pool._helpers.append(run_in_helper_thread(cancel, f"{pool.name}-cancel"))

    def force(self, error: BaseException) -> None:
        """close() takes the connection from its holder: cancel the running call, if any, and
        fail what the holder awaits with ``error`` now, whether or not the driver returns."""
        self.forced = True
        if self.submitted > self.completed:
            self.interrupt(self.submitted)
        fut, self.pending = self.pending, None
        if fut is not None and not fut.done():
            fut.set_exception(error)


async def call(
    pool: Pool,
    conn: PooledConn,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    timeout: float | None,
    owner: AsyncConnection | None = None,
) -> Any:
    """Run ``fn(link, *args)`` on ``conn``'s thread and wait for it, within ``timeout``.

    If the caller leaves first (cancelled, or the timeout), the call is skipped if it has
    not started, cancelled in the driver if it is running, and the connection is reset (or
    discarded) before anyone else gets it. ``owner``, the checkout the call is made through,
    runs one call at a time.
    """
    if owner is not None:
        if owner._busy:
            raise ConnectionBusy(
                f"connection #{conn.id} is already running a call for another task; "
                "use one connection per task (acquire another from the pool)"
            )
        owner._busy = True
    fut = pool._bridge.future()
    seq = conn.start(fn, args, fut)
    conn.pending = fut
    try:
        if timeout is None:
            return await fut
        with anyio.move_on_after(timeout):
            return await fut
        pool._counters.query_timeouts += 1
        raise QueryTimeout(
            f"call on connection #{conn.id} exceeded its {timeout:g} s timeout; "
            "a driver-level cancel was requested"
        )
    except BaseException as exc:
        forget(fut)
        if conn.completed < seq:
            conn.interrupt(seq)
        elif not isinstance(exc, Exception) or isinstance(exc, QueryTimeout):
            # The call finished as its caller was cancelled: its result (maybe an open
            # result set holding locks) was dropped, so reset before the next user.
            conn.interrupted = True
        raise
    finally:
        if conn.pending is fut:
            conn.pending = None
        if owner is not None:
            owner._busy = False
        del fut


class AsyncConnection:
    """A pooled DB-API connection, usable from async code for the length of one checkout.

    Every call runs on the connection's worker thread, one call at a time. One task at a
    time: a second task calling in while a call runs gets :class:`~poolkit.ConnectionBusy`.
    """

    __slots__ = ("__weakref__", "_busy", "_conn", "_depth", "_dropped", "_pool", "_returned")

    def __init__(self, pool: Pool, conn: PooledConn) -> None:
        self._pool = pool
        self._conn = conn
        self._busy = False
        self._returned = False
        # The pool holds the connection back: it was lost and its call is being run again on
        # another, or no other was at hand (see _fresh_after). The owner's release then only
        # ends the checkout.
        self._dropped = False
        self._depth = 0  # nesting of transaction() blocks

    def __repr__(self) -> str:
        state = "returned" if self._returned else "busy" if self._busy else "ready"
        return f"<AsyncConnection {self._pool._driver_name} #{self._conn.id} {state}>"

    @property
    def id(self) -> int:
        """The pool's id for the underlying connection (stable across checkouts)."""
        return self._conn.id

    @property
    def closed(self) -> bool:
        """True once this checkout ended (the connection went back to the pool)."""
        return self._returned

    @property
    def in_transaction(self) -> bool | None:
        """Whether a transaction is open, as of the last call (None: the driver cannot tell)."""
        return self._conn.in_tx

    # ----- the call path ---------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._returned and self._dropped:
            raise ConnectionReturned(
                f"connection #{self._conn.id} was lost and no other could be had to run the "
                "call again; acquire a new one"
            )
        if self._returned:
            raise ConnectionReturned(
                f"connection #{self._conn.id} was already returned to the pool; acquire a new one"
            )
        if self._conn.forced:
            raise PoolClosed(
                f"pool {self._conn.pool.name} was closed while connection #{self._conn.id} was "
                "in use: close(timeout=...) reached its deadline and closed it"
            )

    def _call(
        self, fn: Callable[..., Any], args: tuple[Any, ...], timeout: float | None
    ) -> Coroutine[Any, Any, Any]:
        """The awaitable of one call on the connection's thread (see :func:`call`)."""
        if self._returned or self._conn.forced:
            self._check_usable()
        if timeout is DEFAULT:
            timeout = self._pool._query_timeout
        return call(self._pool, self._conn, fn, args, timeout, self)

    def _give_back(self) -> None:
        """End the checkout: the connection goes back to the pool (unless the pool holds it
        back already, see ``_dropped``)."""
        self._returned = True
        if not self._dropped:
            self._pool._release(self._conn)

    async def _fresh_after(self, exc: BaseException) -> bool:
        """After a call failed with ``exc``: if it may run again on another connection (see
        :meth:`PooledConn.lost_before_effect`), give this one back, hold a fresh one instead
        and return True; the caller then runs the call once more. Raises ``exc`` if no
        other connection is at hand."""
        lost = self._conn
        if not lost.lost_before_effect(exc):
            return False
        self._busy = True  # no other task's call reaches either connection meanwhile
        self._dropped = True  # given back below; a release meanwhile only ends the checkout
        try:
            fresh = await self._pool._fresh_for_retry(lost, exc, DEFAULT)
        except BaseException:
            self._returned = True
            raise
        finally:
            self._busy = False
        self._conn, self._dropped = fresh, False
        if self._returned:  # released by its owner meanwhile (from another task)
            self._pool._release(fresh)
            raise ConnectionReturned(
                f"connection #{lost.id} was released while its call was to run again"
            )
        return True

    # ----- PEP 249 surface -------------------------------------------------------------

    def cursor(self, *args: Any, **kwargs: Any) -> AsyncCursor:
        """A new cursor; ``args``/``kwargs`` go to the driver's ``cursor()`` on its thread."""
        self._check_usable()
        return _cursor_class()(self, CursorBox(args, kwargs))

    async def execute(
        self, sql: Any, params: Any = None, *, timeout: float | None = DEFAULT
    ) -> AsyncCursor:
        """Run one statement on a new cursor and return it, first rows already fetched."""
        cursor = self.cursor()
        await cursor.execute(sql, params, timeout=timeout)
        return cursor

    async def fetchall(
        self, sql: Any, params: Any = None, *, timeout: float | None = DEFAULT
    ) -> list[Row]:
        """Run one statement and return all its rows, in one thread trip and no cursor
        object ([] when it returns no result set). Transactions are yours, as with
        :meth:`execute`."""
        rows: list[Row] = await self._query((sql, params, False, False), timeout)
        return rows

    async def fetchone(
        self, sql: Any, params: Any = None, *, timeout: float | None = DEFAULT
    ) -> Row | None:
        """Run one statement and return its first row (None if there is none), in one
        thread trip; the rest of the result is discarded."""
        row: Row | None = await self._query((sql, params, True, False), timeout)
        return row

    async def _query(self, args: tuple[Any, ...], timeout: float | None) -> Any:
        try:
            return await self._call(Link.query, args, timeout)
        except Exception as exc:
            if not await self._fresh_after(exc):
                raise
        return await self._call(Link.query, args, timeout)

    async def executemany(
        self, sql: Any, seq_of_params: Sequence[Any], *, timeout: float | None = DEFAULT
    ) -> AsyncCursor:
        cursor = self.cursor()
        await cursor.executemany(sql, seq_of_params, timeout=timeout)
        return cursor

    async def commit(self, *, timeout: float | None = DEFAULT) -> None:
        await self._call(Link.method, ("commit",), timeout)

    async def rollback(self, *, timeout: float | None = DEFAULT) -> None:
        await self._call(Link.method, ("rollback",), timeout)

    async def run(self, fn: Callable[..., T], *args: Any, timeout: float | None = DEFAULT) -> T:
        """Escape hatch: ``fn(raw_connection, *args)`` on the connection's worker thread.

        Keep ``raw_connection`` inside ``fn``: using it from any other thread breaks the
        driver's thread-affinity guarantees.
        """
        result: T = await self._call(Link.call, (fn, args), timeout)
        return result

    async def set_autocommit(self, on: bool) -> None:
        """Switch autocommit; the pool restores the configured mode when the connection returns."""
        self._conn.last_autocommit = None  # unknown until the call is known to have run
        await self._call(Link.set_autocommit, (bool(on),), DEFAULT)
        self._conn.last_autocommit = bool(on)

    def invalidate(self) -> None:
        """Close this connection when it is returned instead of pooling it again."""
        self._check_usable()
        self._conn.invalidate_requested = True

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """Commit when the block succeeds, roll back when it raises.

        An autocommit connection is switched to manual commit for the block. Nested blocks
        are savepoints: an inner block that raises rolls back only its own work. If a block
        is cancelled, its rollback is queued on the connection's thread without waiting, so
        the cancellation is not delayed and no later call runs inside the failed transaction.

        As with any DB-API driver, statements run on this connection before the outermost
        block (outside autocommit) are part of its transaction and are committed with it.
        """
        self._check_usable()
        if self._depth:
            async with self._savepoint():
                yield self
            return
        conn = self._conn
        restore = False
        if conn.last_autocommit is not False:
            before, conn.last_autocommit = conn.last_autocommit, None  # unknown meanwhile
            restore = await self._call(Link.begin, (), DEFAULT)
            conn.last_autocommit = False if restore else before
        self._depth = 1
        try:
            yield self
        except Exception:
            if not self._returned:
                try:
                    await self._call(Link.end, (False, restore), DEFAULT)
                except Exception:  # the block's own error matters more; reset cleans up
                    conn.in_tx = None
            raise
        except BaseException:
            if not self._returned:
                conn.in_tx = None
                conn.worker.submit(conn.link.run, (Link.end, (False, restore)))
            raise
        else:
            await self._call(Link.end, (True, restore), DEFAULT)
            if restore:
                conn.last_autocommit = True
        finally:
            self._depth = 0

    @asynccontextmanager
    async def _savepoint(self) -> AsyncIterator[None]:
        conn = self._conn
        self._depth += 1
        name = f"poolkit_sp_{self._depth}"
        try:
            await self._call(Link.statement, (f"SAVEPOINT {name}",), DEFAULT)
            try:
                yield
            except Exception:
                if not self._returned:
                    undo = f"ROLLBACK TO SAVEPOINT {name}"
                    await self._call(Link.statement, (undo,), DEFAULT)
                raise
            except BaseException:
                if not self._returned:
                    conn.in_tx = None
                    undo = f"ROLLBACK TO SAVEPOINT {name}"
                    conn.worker.submit(conn.link.run, (Link.statement, (undo,)))
                raise
            else:
                await self._call(Link.statement, (f"RELEASE SAVEPOINT {name}",), DEFAULT)
        finally:
            self._depth -= 1
