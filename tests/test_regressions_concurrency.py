"""Regression tests for bugs a concurrency review found (all fixed).

Each test reproduces one bug and fails if it comes back. Every async test runs on asyncio
and trio unless it says otherwise. Thread events and barriers order the steps; the
few time bounds only turn a hang into a failure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import sqlite3
import threading
import traceback
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import poolkit
from poolkit import ConnectionReturned, Pool, PoolClosed, PoolError, PoolTimeout, QueryTimeout
from tests.backends import Backend, need, probe

pytestmark = pytest.mark.anyio

#: only turns a hang into a failure; nothing here should come near it
HANG = 10.0


# ----- helpers ---------------------------------------------------------------------------


def pool_threads(pool: Pool) -> list[threading.Thread]:
    prefix = f"poolkit-{pool.name}-"
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


async def join_threads(threads: list[threading.Thread]) -> None:
    def join_all() -> None:
        for thread in threads:
            thread.join(HANG)

    await anyio.to_thread.run_sync(join_all)


async def abandon(pool: Pool) -> None:
    """Stop a pool's threads without going through ``close()`` (for pools a bug left half
    closed): run its own finalizer, then join whatever threads it had."""
    threads = pool_threads(pool)
    pool._finalizer()
    await join_threads(threads)


async def wait_for(event: threading.Event, timeout: float = HANG) -> bool:
    """Wait for a thread-side event without blocking the event loop."""
    return await anyio.to_thread.run_sync(event.wait, timeout)


@pytest.fixture
def mysql() -> Backend:
    backend, why = probe("mysql")
    if backend is None:
        pytest.skip(why)
    return backend


# ----- close() ---------------------------------------------------------------------------


async def test_close_after_a_cancelled_close_returns(sqlite: Backend) -> None:
    pool = sqlite.pool(min_size=1, max_size=1)
    await pool.open()
    try:
        conn = await pool.acquire()
        with anyio.CancelScope() as scope:
            scope.cancel()
            await pool.close()  # waits for `conn`, is cancelled there
        assert scope.cancelled_caught
        pool.release(conn)  # the connection comes back; nothing is in use any more
        with anyio.fail_after(1.0):
            assert await pool.close() == 0
    finally:
        await abandon(pool)


async def test_close_forcing_a_connection_in_its_health_check(sqlite: Backend) -> None:
    entered = threading.Event()
    release = threading.Event()
    armed = [False]

    def check(raw: Any) -> None:
        if armed[0]:
            entered.set()
            release.wait(HANG)
            raise sqlite3.OperationalError("interrupted")  # what the driver cancel causes

    def cancel(raw: Any, cursor: Any, reconnect: Callable[[], Any]) -> None:
        release.set()  # the driver cancel interrupts the blocked ping

    profile = dataclasses.replace(poolkit.profile_for(sqlite3), cancel=cancel)
    pool = sqlite.pool(min_size=1, max_size=1, check_idle_after=0, check=check, profile=profile)
    await pool.open()
    errors: list[BaseException] = []

    async def acquirer() -> None:
        try:
            async with pool.connection(timeout=HANG):
                pass
        except Exception as exc:
            errors.append(exc)

    try:
        armed[0] = True
        with anyio.fail_after(HANG):
            async with anyio.create_task_group() as tg:
                tg.start_soon(acquirer)
                assert await wait_for(entered)
                await pool.close(timeout=0)
    finally:
        release.set()
        await abandon(pool)
    assert len(errors) == 1
    assert isinstance(errors[0], PoolClosed), repr(errors[0])


# ----- secrets ------------------------------------------------------------------------------


def exception_text(exc: BaseException) -> str:
    """Everything a traceback of ``exc`` shows: messages of the whole chain included."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


async def test_invalid_dsn_error_from_open_does_not_show_the_password() -> None:
    psycopg2 = need("psycopg2")
    password = "S3cr%t-Pw"  # '%' not percent-encoded: libpq rejects the URL, quoting the token
    pool = Pool(psycopg2, f"postgresql://postgres:{password}@127.0.0.1:5432/test", timeout=5)
    with anyio.fail_after(HANG), pytest.raises((psycopg2.Error, PoolError)) as info:
        await pool.open()
    assert password not in exception_text(info.value)


# ----- autocommit restored after an interrupted transaction() ----------------------------


async def test_cancelled_transaction_begin_restores_autocommit(
    backend: Backend, table: str
) -> None:
    base = poolkit.profile_for(backend.driver)
    entered = threading.Event()
    release = threading.Event()
    armed = [False]

    def set_autocommit(raw: Any, on: bool) -> None:
        if armed[0] and not on:
            armed[0] = False
            entered.set()
            release.wait(HANG)  # the caller is cancelled while begin runs on the thread
        base.set_autocommit(raw, on)

    def configure(raw: Any) -> None:
        base.set_autocommit(raw, True)

    profile = dataclasses.replace(base, set_autocommit=set_autocommit)
    async with backend.pool(
        min_size=1, max_size=1, check_idle_after=None, configure=configure, profile=profile
    ) as pool:
        try:
            async with pool.connection() as conn:
                armed[0] = True

                async def begin() -> None:
                    async with conn.transaction():
                        pytest.fail("the transaction block was entered")

                async with anyio.create_task_group() as tg:
                    tg.start_soon(begin)
                    assert await wait_for(entered)
                    tg.cancel_scope.cancel()
        finally:
            release.set()

        async with pool.connection(timeout=HANG) as conn:  # the same connection, reset
            await conn.execute(f"INSERT INTO {table} (id, name) VALUES (1, 'autocommitted')")
        async with pool.connection(timeout=HANG):
            pass  # the return above has been fully processed
    assert backend.run(f"SELECT count(*) FROM {table}") == [(1,)]


# ----- PyMySQL transaction status after an error -----------------------------------------


@pytest.mark.mysql
@pytest.mark.real
async def test_pymysql_failed_statement_is_rolled_back_on_return(mysql: Backend) -> None:
    with mysql.table("id INTEGER PRIMARY KEY") as table:
        mysql.run(f"INSERT INTO {table} VALUES (1)")
        async with mysql.pool(min_size=1, max_size=1, check_idle_after=None) as pool:
            async with pool.connection() as conn:
                cur = await conn.execute("SELECT CONNECTION_ID()")
                row = await cur.fetchone()
                assert row is not None
                (session,) = row
            async with pool.connection() as conn:
                with pytest.raises(mysql.driver.IntegrityError):
                    await conn.execute(f"INSERT INTO {table} VALUES (1)")  # duplicate key
            async with pool.connection():  # back from the pool: any reset has run
                open_transactions = mysql.run(
                    "SELECT count(*) FROM information_schema.INNODB_TRX "
                    "WHERE trx_mysql_thread_id = %s",
                    (session,),
                )
        assert open_transactions == [(0,)]


# ----- a late driver cancel ---------------------------------------------------------------


async def test_late_cancel_of_a_first_timeout_never_hits_a_later_call(sqlite: Backend) -> None:
    running: list[str | None] = [None]  # what the connection's thread runs right now
    hits: list[str | None] = []  # what A's driver cancel would have interrupted
    cancel_entered = threading.Event()
    cancel_go = threading.Event()
    cancel_done = threading.Event()
    a_release = threading.Event()
    c_started = threading.Event()
    cancels = [0]

    def cancel(raw: Any, cursor: Any, reconnect: Callable[[], Any]) -> None:
        cancels[0] += 1
        if cancels[0] == 1:  # A's cancel is slow (a network round trip, a new session)
            cancel_entered.set()
            cancel_go.wait(HANG)
            hits.append(running[0])
            cancel_done.set()

    def call_a(raw: Any) -> None:
        running[0] = "A"
        a_release.wait(HANG)
        running[0] = None

    def call_b(raw: Any) -> None:
        running[0] = "B"
        running[0] = None

    def call_c(raw: Any) -> None:
        running[0] = "C"
        c_started.set()
        cancel_done.wait(HANG)  # still running when the in-flight cancel arrives
        running[0] = None

    profile = dataclasses.replace(poolkit.profile_for(sqlite3), cancel=cancel)
    async with sqlite.pool(min_size=1, max_size=1, check_idle_after=None, profile=profile) as pool:
        try:
            async with pool.connection() as conn:
                with pytest.raises(QueryTimeout):
                    await conn.run(call_a, timeout=0.05)  # A ignores the cancel for now
                assert await wait_for(cancel_entered)
                with pytest.raises(QueryTimeout):
                    await conn.run(call_b, timeout=0.05)  # queued behind A, abandoned
                a_release.set()  # A finishes by itself; B is skipped

                async with anyio.create_task_group() as tg:
                    tg.start_soon(conn.run, call_c)
                    # A correct pool holds C back until the first cancel is done, so C
                    # cannot start: give up waiting after a moment and let the cancel go.
                    await wait_for(c_started, 1.0)
                    cancel_go.set()
        finally:
            a_release.set()
            cancel_go.set()
    assert "C" not in hits, hits


# ----- exceptions that cannot cross into an asyncio future --------------------------------


def stop_iteration(raw: Any) -> Any:
    return next(iter(()))  # an exhausted iterator inside the call, e.g. next(cursor)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_stop_iteration_raised_by_a_call_reaches_the_caller(sqlite: Backend) -> None:
    async with sqlite.pool(min_size=1, max_size=1) as pool, pool.connection() as conn:
        with anyio.fail_after(1.0), pytest.raises((StopIteration, RuntimeError)):
            await conn.run(stop_iteration)


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_stop_iteration_raised_by_a_call_reaches_the_caller_on_trio(
    sqlite: Backend,
) -> None:
    """Control for the test above: trio's event-backed future has no such restriction."""
    async with sqlite.pool(min_size=1, max_size=1) as pool, pool.connection() as conn:
        with anyio.fail_after(1.0), pytest.raises((StopIteration, RuntimeError)):
            await conn.run(stop_iteration)


# ----- using a returned AsyncConnection --------------------------------------------------


async def test_invalidate_after_return_leaves_the_next_checkout_alone(sqlite: Backend) -> None:
    async with sqlite.pool(min_size=1, max_size=1, check_idle_after=None) as pool:
        old = await pool.acquire()
        pool.release(old)
        with contextlib.suppress(ConnectionReturned):
            old.invalidate()
        async with pool.connection() as conn:
            assert conn.id == old.id
            await conn.execute("SELECT 1")
        s = pool.stats()
        assert (s.idle, s.closing) == (1, 0), s


# ----- nested transaction() on sqlite3 ---------------------------------------------------


class Boom(Exception):
    pass


async def test_nested_transaction_on_sqlite_does_not_commit_early(sqlite: Backend) -> None:
    sqlite.run("CREATE TABLE t (id INTEGER)")
    async with sqlite.pool(min_size=1, max_size=1) as pool:
        with pytest.raises(Boom):
            async with pool.transaction() as conn:
                async with conn.transaction():
                    await conn.execute("INSERT INTO t VALUES (1)")
                raise Boom  # the whole outer block fails: nothing may stay
    assert sqlite.run("SELECT count(*) FROM t") == [(0,)]


# ----- a cursor dropped with unread rows ---------------------------------------------------


async def test_dropped_cursor_with_unread_rows_holds_no_lock_after_return(
    sqlite: Backend,
) -> None:
    pool = Pool(sqlite3, sqlite.args[0], max_size=2, prefetch=2, connect_kwargs={"timeout": 0.3})
    async with pool:
        async with pool.transaction() as conn:
            await conn.execute("CREATE TABLE big (x INTEGER)")
            await conn.executemany("INSERT INTO big VALUES (?)", [(i,) for i in range(50)])
        reader, writer = await pool.acquire(), await pool.acquire()
        try:
            # the everyday one-liner: the cursor is dropped as soon as the first row is read
            assert await (await reader.execute("SELECT x FROM big")).fetchone() == (0,)
            pool.release(reader)
            async with writer.transaction():
                await writer.execute("INSERT INTO big VALUES (99)")  # "database is locked"
        finally:
            pool.release(writer)
            if not reader.closed:
                pool.release(reader)


# ----- abandoned waiters ------------------------------------------------------------------


async def test_timed_out_acquires_are_not_kept(sqlite: Backend) -> None:
    async with sqlite.pool(min_size=1, max_size=1, max_waiting=5) as pool:
        async with pool.connection():
            for _ in range(500):
                with pytest.raises(PoolTimeout):
                    await pool.acquire(timeout=0)
            assert pool.stats().waiting == 0
            assert len(pool._state._waiters) < 100


# ----- pools kept alive ------------------------------------------------------------------


async def collected(ref: weakref.ReferenceType[Any], within: float = 1.0) -> bool:
    """Whether ``ref`` dies within ``within`` s of garbage collection. A worker thread may hold
    a job's callback (and so the pool) for a moment after posting it; polling covers that."""
    with anyio.move_on_after(within):
        while True:
            gc.collect()
            if ref() is None:
                return True
            await anyio.sleep(0.01)
    return False


class Database:
    """A common shape: an object that owns a pool and is its connect factory."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.pool = Pool(connect=self.connect, min_size=1, max_size=1)

    def connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path)


async def test_dropped_pool_whose_factory_owns_it_is_collected(tmp_path: Path) -> None:
    db = Database(str(tmp_path / "owned.db"))
    await db.pool.open()
    ref = weakref.ref(db.pool)
    threads = pool_threads(db.pool)
    del db
    try:
        assert await collected(ref)
    finally:
        pool = ref()
        if pool is not None:
            await pool.close()
        del pool
        await join_threads(threads)


async def test_dropped_pool_with_a_plain_driver_is_collected(tmp_path: Path) -> None:
    """Control for the test above: with ``Pool(driver, ...)`` the dropped pool is collected
    and its finalizer stops the threads."""
    pool = Pool(sqlite3, str(tmp_path / "plain.db"), min_size=1, max_size=1)
    await pool.open()
    ref = weakref.ref(pool)
    threads = pool_threads(pool)
    del pool
    assert await collected(ref)
    await join_threads(threads)
    assert not any(t.is_alive() for t in threads)


async def test_pool_left_open_when_its_loop_ended_is_collected(
    tmp_path: Path, anyio_backend: str
) -> None:
    box: dict[str, Any] = {}

    async def forget_to_close() -> None:
        pool = Pool(sqlite3, str(tmp_path / "left.db"), min_size=1, max_size=1, max_idle=0.04)
        await pool.open()  # maintenance every 0.01 s
        box["ref"] = weakref.ref(pool)
        box["bridge"] = pool._bridge
        box["threads"] = pool_threads(pool)

    # A whole event loop, run and ended in another thread (asyncio.run() and trio.run()
    # finishing without pool.close()).
    await anyio.to_thread.run_sync(lambda: anyio.run(forget_to_close, backend=anyio_backend))
    ref: weakref.ReferenceType[Pool] = box["ref"]
    bridge = box["bridge"]
    threads: list[threading.Thread] = box["threads"]
    maintenance = next(t for t in threads if t.name.endswith("-maintenance"))
    with anyio.move_on_after(1.0):  # until the maintenance thread has run once (or exited)
        while maintenance.is_alive() and not bridge._pending:
            await anyio.sleep(0.005)
    try:
        assert await collected(ref)
    finally:
        pool = ref()
        if pool is not None:
            await abandon(pool)
        del pool
        await join_threads(threads)
