"""Regression tests for edge-case bugs a second review found (all fixed).

Every async test runs on asyncio and trio. Thread events and a spin on the bridge's queue
order the steps; the few time bounds only turn a hang into a failure. Each test fails if
its bug comes back.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import poolkit
from poolkit import Backoff, Pool
from tests.backends import Backend, need

pytestmark = pytest.mark.anyio

#: only turns a hang into a failure; nothing here should come near it
HANG = 10.0


async def wait_for(event: threading.Event, timeout: float = HANG) -> bool:
    """Wait for a thread-side event without blocking the event loop."""
    return await anyio.to_thread.run_sync(event.wait, timeout)


def database_is_locked(path: str) -> bool:
    """Whether another connection still holds a lock that stops a write from committing."""
    raw = sqlite3.connect(path, timeout=0.05)
    try:
        raw.execute("BEGIN IMMEDIATE")
        raw.execute("INSERT INTO t VALUES (-1)")
        raw.commit()
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc)
        return True
    finally:
        raw.close()
    return False


# ----- cursors ---------------------------------------------------------------------------


async def test_failed_execute_forgets_the_previous_result(sqlite: Backend) -> None:
    async with sqlite.pool(max_size=1) as pool, pool.connection() as conn:
        cur = conn.cursor()
        await cur.execute("SELECT 1 UNION ALL SELECT 2")
        assert await cur.fetchone() == (1,)
        with pytest.raises(sqlite3.OperationalError):
            await cur.execute("SELECT no_such_function()")
        # The driver's own cursor has no result now (description None, fetchone None);
        # poolkit still shows the old description and serves the old buffered row (2,).
        assert (cur.description, await cur.fetchone()) == (None, None)


# ----- cancellation in the tick the call completes ---------------------------------------


async def test_execute_cancelled_as_it_completes_still_releases_its_lock(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "tick.db")
    entered, gate = threading.Event(), threading.Event()

    def gated() -> int:  # blocks the first row of the query until the test lets it go
        if not entered.is_set():
            entered.set()
            gate.wait(HANG)
        return 1

    def configure(raw: Any) -> None:
        raw.create_function("gated", 0, gated)

    pool = Pool(
        sqlite3,
        path,
        min_size=1,
        max_size=1,
        prefetch=1,
        configure=configure,
        check_idle_after=None,
    )
    async with pool:
        async with pool.transaction() as conn:
            await conn.execute("CREATE TABLE t (x INTEGER)")
            await conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(10)])
        assert not database_is_locked(path)
        scope = anyio.CancelScope()

        async def reader(conn: poolkit.AsyncConnection) -> None:
            with scope:
                await conn.execute("SELECT gated(), x FROM t")  # 10 rows, 1 prefetched

        async with pool.connection() as conn:
            async with anyio.create_task_group() as tg:
                tg.start_soon(reader, conn)
                assert await wait_for(entered)  # the statement runs on the worker thread
                # From here the loop is blocked on purpose: the cancel is queued first, the
                # call's completion right behind it, and both run in the same loop tick.
                bridge = pool._bridge
                bridge.post(scope.cancel)
                gate.set()
                deadline = time.monotonic() + HANG
                while len(bridge._pending) < 2 and time.monotonic() < deadline:
                    time.sleep(0.001)
            assert scope.cancelled_caught
        # Returned: the statement with 9 unread rows must not keep its SHARED lock.
        assert not database_is_locked(path)


# ----- open() and configuration errors ---------------------------------------------------


async def test_invalid_dsn_from_a_factory_is_raised_at_once() -> None:
    psycopg2 = need("psycopg2")
    pool = Pool(
        connect=lambda: psycopg2.connect("not a dsn"), timeout=1.0, backoff=Backoff(0.01, 0.01)
    )
    with pytest.raises(psycopg2.ProgrammingError):
        await pool.open()


# ----- statistics ------------------------------------------------------------------------


async def test_wait_after_a_failed_health_check_is_counted(sqlite: Backend) -> None:
    failures = [sqlite3.OperationalError("server went away")]

    def check(raw: Any) -> None:
        if failures:
            raise failures.pop()
        raw.execute("SELECT 1")

    async with sqlite.pool(min_size=1, max_size=1, check_idle_after=0, check=check) as pool:
        async with pool.connection():
            pass
        stats = pool.stats()
        assert (stats.acquired, stats.check_failures) == (1, 1)
        # The only connection failed its check: the caller queued until a new one opened.
        assert stats.waited == 1


# ----- reconnecting ----------------------------------------------------------------------


class RecordingBackoff(Backoff):
    """Records the failure count each delay is asked for (no wall-clock assertions)."""

    def __init__(self) -> None:
        super().__init__(0.01, 1.0, jitter=0.0)
        self.asked: list[int] = []

    def delay(self, failures: int) -> float:
        self.asked.append(failures)
        return super().delay(failures)


async def test_one_failed_round_costs_one_back_off_step(tmp_path: Path) -> None:
    path = str(tmp_path / "outage.db")
    lock = threading.Lock()
    attempts = [0]

    def connect() -> sqlite3.Connection:
        with lock:
            attempts[0] += 1
            failing = attempts[0] <= 8  # the server is back after one failed attempt per slot
        if failing:
            raise sqlite3.OperationalError("connection refused")
        return sqlite3.connect(path)

    backoff = RecordingBackoff()
    pool = Pool(connect=connect, min_size=8, max_size=8, backoff=backoff, timeout=HANG)
    async with pool:
        stats = pool.stats()
        assert stats.idle == 8 and stats.consecutive_connect_errors == 0
        assert stats.connect_errors == 8
    # One round failed: every retry waits one back-off step, not 0.01 * 2**(k-1) for the
    # k-th failure counted across the pool (which would reach the 1 s maximum).
    assert max(backoff.asked) == 1, backoff.asked


# ----- README: "On return, ... cursors are closed" ---------------------------------------


async def test_cursors_are_closed_on_return_without_a_reset() -> None:
    from tests.backends import probe

    postgres, why = probe("postgres")
    if postgres is None:
        pytest.skip(why)
    pool = postgres.pool(
        min_size=1, max_size=1, configure=lambda raw: setattr(raw, "autocommit", True)
    )
    async with pool:
        async with pool.connection() as conn:
            kept = conn.cursor("poolkit_review_hold", withhold=True)
            await kept.execute("SELECT 1")
            assert await kept.fetchall() == [(1,)]  # read to the end: nothing unread
        async with pool.connection() as conn:  # the same connection, returned at no cost
            cur = await conn.execute("SELECT count(*) FROM pg_cursors")
            assert await cur.fetchone() == (0,)
        del kept


def test_pyodbc_profile_sees_a_terminated_postgres_session_as_a_disconnect() -> None:
    """psqlODBC reports pg_terminate_backend as SQLSTATE 57P01, and its rollback on the dead
    connection succeeds: unless 57P01 counts as a disconnect, the pool hands the connection
    out again (found by the conformance check test_session_killed_mid_query)."""
    from poolkit._profiles import PYODBC

    class OdbcError(Exception):
        pass

    killed = OdbcError("57P01", "[57P01] FATAL: terminating connection due to administrator")
    assert PYODBC.is_disconnect(killed, None, object())
    missing = OdbcError("42P01", '[42P01] ERROR: relation "nope" does not exist')
    assert not PYODBC.is_disconnect(missing, None, object())


def test_pyodbc_profile_sees_a_reset_mariadb_socket_as_a_disconnect() -> None:
    """MariaDB Connector/ODBC reports a reset socket as HY000 with the client library's code
    in the message (5014 write error): unless that counts, each stale connection fails its
    caller after a failover (found by the fault-proxy check
    test_every_connection_reset_costs_at_most_one_call: 3 failed calls of 12, not 1)."""
    from poolkit._profiles import PYODBC

    class OdbcError(Exception):
        pass

    prefix = "[HY000] [ma-3.1.15][10.11.19-MariaDB-0+deb12u1]"
    for text in (
        "Write error: Connection reset by peer (104) (5014) (SQLExecDirectW)",
        "Lost connection to server during query (2013) (SQLExecDirectW)",
        "Server has gone away (2006) (SQLExecDirectW)",
    ):
        assert PYODBC.is_disconnect(OdbcError("HY000", prefix + text), None, object()), text
    syntax = OdbcError("42000", prefix + "You have an error in your SQL syntax (1064) (SQLExec)")
    assert not PYODBC.is_disconnect(syntax, None, object())
    busy = OdbcError("HY000", prefix + "Lock wait timeout exceeded (1205) (SQLExecDirectW)")
    assert not PYODBC.is_disconnect(busy, None, object())
