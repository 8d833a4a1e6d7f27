"""Regression tests for bugs the stateful machine (issue 5) found in poolkit, all fixed.

Each test names the machine's report, pastes the shrunk case, and pins the bug down as a
plain, deterministic test (the machine's own replay of a thread race is not always exact,
so the tests force the interleaving with hangs the fake driver holds until released).
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from poolkit import Pool
from poolkit.fakes import FakeDriver, Hang, Plan, VirtualClock
from tests.backends import need, resolve
from tests.test_regressions_concurrency import pool_threads

pytestmark = pytest.mark.anyio

HANG = 10.0  # only turns a hang into a failure


async def test_a_connect_that_lands_as_the_pool_closes_is_counted() -> None:
    """Machine: ``pool counts Counts(opened=1, connect_errors=0, closed=1), the fake recorded
    Counts(opened=2, connect_errors=0, closed=2)``, after::

        state.open_pool(min_size=0, extra=2, plan=Plan())
        state.resize(min_size=2, extra=2)
        state.close_pool()

    A connect still running when ``close()`` began succeeded in the driver, and the pool
    closed it at once, but counted it neither as opened nor as closed: the server saw a
    session the statistics never showed.
    """
    driver = FakeDriver(Plan(Hang(None, op="connect")), clock=VirtualClock())
    try:
        pool = Pool(driver, min_size=1, max_size=1)
        await pool.open(wait=False)
        assert await anyio.to_thread.run_sync(driver.wait_for_hang, 1, HANG)
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.close)
            with anyio.fail_after(HANG):
                while not pool._stop.is_set():
                    await anyio.sleep(0.001)
            driver.release()  # the connect now succeeds, after close() began
        opened = driver.calls.filter("connect", outcome="ok")
        assert len(opened) == 1
        stats = pool.stats()
        assert stats.connections_opened == 1
        assert stats.connections_closed == 1
        assert stats.connect_errors == 0
        assert driver.calls.filter("close", connection=opened[0].connection)
    finally:
        driver.close()


@pytest.mark.parametrize("round_", range(10))
async def test_close_leaves_no_poolkit_thread_behind(round_: int) -> None:
    """Machine: ``threads still running after close: [<Thread(poolkit-fake-198-join, started
    daemon ...)>]`` (asyncio, at the end of a 25-step case with a cancelled hung query).

    ``close()`` returned as soon as its helper thread had posted "joined", while that thread
    was still alive; the driver-cancel helper of a cancelled call was never joined at all.
    Both are now joined before ``close()`` returns.
    """
    driver = FakeDriver(Plan(Hang(None, sql="hang")), clock=VirtualClock())
    try:
        pool = Pool(driver, min_size=1, max_size=2)
        await pool.open()
        async with pool.connection() as conn:
            with anyio.move_on_after(0.01):  # cancelled mid-call: the driver cancel runs
                await conn.execute("SELECT 1 /* hang */")
        await pool.close()
        assert pool_threads(pool) == []
    finally:
        driver.close()


# ----- found by the real-database soak (python -m poolkit.conformance.soak_db) ------------


async def test_psqlodbc_commit_on_a_silently_lost_connection_raises(tmp_path: Path) -> None:
    """soak_db, postgres/pyodbc: ``5 committed rows lost (e.g. [1614, 1924, ...]; written in
    a session that was killed: {1614: True, ...})`` — about one kill in five cost a commit
    that had returned.

    psqlODBC marks a connection dead without raising when closing a cursor meets the
    server's "terminating connection" message (poolkit closes the cursors of collected
    ``AsyncCursor`` objects quietly before the next call), and its SQLEndTran then returns
    success without sending COMMIT. The pyodbc profile now reads SQL_ATTR_CONNECTION_DEAD
    around every commit and after every reset, so the caller gets 08S01 instead.
    """
    postgres = resolve("postgres", tmp_path)
    need("pyodbc")
    from poolkit.conformance._targets import TargetError, build_target

    try:
        target = build_target("postgres", "pyodbc", postgres.args[0], "dsn", str(tmp_path))
    except TargetError as exc:
        pytest.skip(str(exc))
    target.run("DROP TABLE IF EXISTS pk_lost_commit")
    target.run("CREATE TABLE pk_lost_commit (id INT)")
    try:
        async with Pool(target.module, *target.args, min_size=1, max_size=1) as pool:
            async with pool.connection() as conn:
                cur = await conn.execute("SELECT pg_backend_pid()")
                row = await cur.fetchone()
                assert row is not None
                (pid,) = row
                insert = await conn.execute("INSERT INTO pk_lost_commit VALUES (?)", (1,))
                target.run(f"SELECT pg_terminate_backend({int(pid)})")
                await insert.close()  # psqlODBC notices the loss here, and says nothing
                with pytest.raises(target.module.Error) as caught:
                    await conn.commit()
                assert caught.value.args[0] in ("08S01", "57P01")
            assert pool.stats().disconnects >= 1
            async with pool.connection() as conn:  # a new session, not the dead one
                cur = await conn.execute("SELECT count(*) FROM pk_lost_commit")
                row = await cur.fetchone()
                assert row is not None and tuple(row) == (0,)
    finally:
        target.run("DROP TABLE pk_lost_commit")
