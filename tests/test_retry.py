"""A statement that finds its connection lost runs once more on another, when that is safe.

Safe means it cannot have had an effect: the first call of its checkout, autocommit off (what
it did belonged to a transaction the lost session took with it), no commit sent, and a
statement call (``execute``, ``executemany``, ``fetchall``, ``fetchone``). Every other case
raises the driver's error as before: each side of that line is tested here, on the fake
driver (whose lost connections roll back like a server's) and on a real PostgreSQL.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import poolkit
from poolkit.fakes import Drop, FakeDriver, Hang, Latency, Plan, Raise, Refuse
from tests.backends import need, resolve

pytestmark = pytest.mark.anyio

Statement = Callable[[poolkit.Pool, poolkit.AsyncConnection | None], Awaitable[Any]]


async def _pool_fetchone(pool: poolkit.Pool, conn: Any) -> Any:
    return await pool.fetchone("SELECT 1")


async def _pool_fetchall(pool: poolkit.Pool, conn: Any) -> Any:
    return await pool.fetchall("SELECT 1")


async def _conn_execute(pool: poolkit.Pool, conn: Any) -> Any:
    return await (await conn.execute("SELECT 1")).fetchall()


async def _conn_fetchone(pool: poolkit.Pool, conn: Any) -> Any:
    return await conn.fetchone("SELECT 1")


async def _conn_fetchall(pool: poolkit.Pool, conn: Any) -> Any:
    return await conn.fetchall("SELECT 1")


async def _cursor_made_before(pool: poolkit.Pool, conn: Any) -> Any:
    spare = conn.cursor()  # made before the retry, used after it: must follow the swap
    cur = conn.cursor()
    await cur.execute("SELECT 1")
    await spare.execute("SELECT 2")
    return await cur.fetchall() + await spare.fetchall()


async def _executemany(pool: poolkit.Pool, conn: Any) -> Any:
    await conn.executemany("INSERT INTO t (id) VALUES (?)", [(1,), (2,)])
    rows = await conn.fetchall("SELECT id FROM t ORDER BY id")
    await conn.rollback()  # the same answer next time
    return rows


STATEMENTS: dict[str, Statement] = {
    "pool.fetchone": _pool_fetchone,
    "pool.fetchall": _pool_fetchall,
    "conn.execute": _conn_execute,
    "conn.fetchone": _conn_fetchone,
    "conn.fetchall": _conn_fetchall,
    "cursor.execute": _cursor_made_before,
    "cursor.executemany": _executemany,
}


async def _run(pool: poolkit.Pool, statement: Statement) -> Any:
    if statement in (_pool_fetchone, _pool_fetchall):
        return await statement(pool, None)
    async with pool.connection() as conn:
        return await statement(pool, conn)


def _fake(plan: Plan | None = None) -> FakeDriver:
    driver = FakeDriver()
    conn = driver.connect()
    conn.cursor().execute("CREATE TABLE t (id INTEGER)")
    conn.commit()
    conn.close()
    if plan is not None:
        driver.plan = plan  # counted from here: the set-up above is not matched
    return driver


def _count(driver: FakeDriver) -> int:
    conn = driver.connect()
    try:
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM t")
        (count,) = cur.fetchall()[0]
        return int(count)
    finally:
        conn.close()


def _pool(driver: Any, **options: Any) -> poolkit.Pool:
    options = {"min_size": 2, "max_size": 2, "check_idle_after": None, **options}
    return poolkit.Pool(driver, **options)


@pytest.mark.parametrize("name", list(STATEMENTS))
async def test_a_first_statement_on_a_lost_connection_runs_again(name: str) -> None:
    """Every connection is lost while idle (a restart; the fake shows no socket, so nothing
    tells before use). The first statement of the next checkout fails on its connection and
    runs again on a fresh one: the caller sees its answer, not the error."""
    driver = _fake()
    statement = STATEMENTS[name]
    events: list[poolkit.PoolEvent] = []
    async with _pool(driver) as pool:
        pool.add_listener(events.append)
        await _run(pool, statement)  # warm
        await pool.fetchone("SELECT 1")  # a committed call before: no commit is pending
        driver.drop()
        with anyio.fail_after(10):
            result = await _run(pool, statement)
        assert result == (await _run(pool, statement))
        stats = pool.stats()
        assert stats.retried == 1 and stats.disconnects >= 1
        retries = [e for e in events if e.kind == "retry"]
        assert len(retries) == 1 and retries[0].detail


async def test_a_cursor_runs_again_on_a_cursor_of_the_fresh_connection() -> None:
    """The connection is lost during the statement (its cursor was made on it): the retry
    makes a cursor on the fresh connection, not reuse the lost one's."""
    driver = _fake(Plan(Drop(op="execute", nth=1)))
    async with _pool(driver) as pool, pool.connection() as conn:
        lost = conn.id
        cur = conn.cursor()
        await cur.execute("SELECT 5")
        assert await cur.fetchall() == [(5,)]
        assert conn.id != lost and pool.stats().retried == 1


async def test_the_retry_goes_ahead_of_the_queue() -> None:
    """The caller whose connection was lost has waited its turn once: its retry is served
    before callers that queued meanwhile."""
    driver = _fake()
    order: list[str] = []
    async with _pool(driver, min_size=1, max_size=1) as pool:
        await pool.fetchone("SELECT 1")
        driver.drop()

        async def later(name: str) -> None:
            await pool.fetchone("SELECT 1")
            order.append(name)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                async with pool.connection() as conn:
                    tg.start_soon(later, "b")
                    tg.start_soon(later, "c")
                    while pool.stats().waiting < 2:
                        await anyio.sleep(0.005)
                    await conn.fetchone("SELECT 1")
                    order.append("a")
        assert order[0] == "a" and sorted(order) == ["a", "b", "c"]  # b, c: in either order
        assert pool.stats().retried == 1


async def test_what_the_lost_statement_did_happens_once() -> None:
    """The INSERT ran on the server, then the connection was lost before the commit: the
    lost session's transaction is gone, the retry inserts the row, and it is there once."""
    driver = _fake(Plan(Drop(sql="INSERT", nth=1, phase="after")))
    async with _pool(driver) as pool:
        with anyio.fail_after(10):
            await pool.fetchall("INSERT INTO t (id) VALUES (7)")
        assert pool.stats().retried == 1
    assert _count(driver) == 1


async def test_not_in_autocommit_the_statement_may_have_committed() -> None:
    """Autocommit on: the lost INSERT may have committed (here it did), so it is not run
    again; the caller gets the driver's error and the row is there once."""
    driver = _fake(Plan(Drop(sql="INSERT", nth=1, phase="after")))

    def autocommit(raw: Any) -> None:
        raw.autocommit = True

    async with _pool(driver, configure=autocommit) as pool:
        with pytest.raises(driver.OperationalError):
            await pool.fetchall("INSERT INTO t (id) VALUES (7)")
        assert pool.stats().retried == 0
    assert _count(driver) == 1


@pytest.mark.parametrize("phase", ["before", "after"])
async def test_not_when_the_commit_was_sent(phase: str) -> None:
    """pool.fetchall commits in the same trip: a connection lost at the commit leaves its
    outcome unknown (it may have committed), so the call is not run again."""
    driver = _fake(Plan(Drop(op="commit", nth=1, phase=phase)))  # type: ignore[arg-type]
    async with _pool(driver) as pool:
        with pytest.raises(driver.OperationalError):
            await pool.fetchall("INSERT INTO t (id) VALUES (7)")
        assert pool.stats().retried == 0
    assert _count(driver) == (1 if phase == "after" else 0)


async def test_not_after_an_earlier_statement_of_the_checkout() -> None:
    """The second statement of a checkout: the first one's work would be lost with the
    session, so running the second again elsewhere would be wrong."""
    driver = _fake()
    async with _pool(driver, min_size=1, max_size=1) as pool:
        async with pool.connection() as conn:
            await conn.execute("INSERT INTO t (id) VALUES (1)")
            driver.drop()
            with pytest.raises(driver.OperationalError):
                await conn.execute("INSERT INTO t (id) VALUES (2)")
        assert pool.stats().retried == 0
    assert _count(driver) == 0


async def test_not_when_switched_off() -> None:
    driver = _fake()
    async with _pool(driver, retry_lost=False) as pool:
        await pool.fetchone("SELECT 1")
        driver.drop()
        with pytest.raises(driver.OperationalError):
            await pool.fetchone("SELECT 1")
        assert pool.stats().retried == 0


@pytest.mark.parametrize("how", ["callproc", "run"])
async def test_not_for_calls_that_may_commit_by_themselves(how: str) -> None:
    """A stored procedure may commit (MySQL's can), and ``run`` is arbitrary code."""
    driver = _fake()
    async with _pool(driver) as pool:
        await pool.fetchone("SELECT 1")
        driver.drop()
        with pytest.raises(driver.OperationalError):
            async with pool.connection() as conn:
                if how == "callproc":
                    await conn.cursor().callproc("p")
                else:
                    await conn.run(lambda raw: raw.cursor().execute("SELECT 1"))
        assert pool.stats().retried == 0


async def test_not_for_an_error_that_is_no_disconnect() -> None:
    driver = _fake(Plan(Raise("IntegrityError", sql="INSERT", nth=1)))
    async with _pool(driver) as pool:
        with pytest.raises(driver.IntegrityError):
            await pool.fetchall("INSERT INTO t (id) VALUES (7)")
        assert pool.stats().retried == 0


async def test_not_for_a_call_its_caller_left() -> None:
    """The call outlived its query_timeout (and its connection is lost if the cancel does not
    end it first): the caller has its QueryTimeout and nothing is run again behind its back."""
    driver = _fake(Plan(Hang(0.5, then="drop", sql="INSERT", nth=1)))
    async with _pool(driver, query_timeout=0.1) as pool:
        with pytest.raises(poolkit.QueryTimeout):
            await pool.fetchall("INSERT INTO t (id) VALUES (7)")
        await anyio.sleep(0.6)  # the hang is over (cancelled, or dropped at its end)
        await pool.fetchone("SELECT 1")
        assert pool.stats().retried == 0
    assert _count(driver) == 0


async def test_once_only() -> None:
    """The retry finds its fresh connection lost too: the caller gets that error; there is no
    third attempt."""
    driver = _fake(Plan(Drop(sql="INSERT", times=2)))
    async with _pool(driver) as pool:
        with pytest.raises(driver.OperationalError):
            await pool.fetchall("INSERT INTO t (id) VALUES (7)")
        assert pool.stats().retried == 1
        inserts = [c for c in driver.calls if c.op == "execute" and "INSERT" in (c.sql or "")]
        assert len(inserts) == 2
        await pool.fetchall("INSERT INTO t (id) VALUES (8)")
    assert _count(driver) == 1


async def test_a_burst_on_lost_connections_fails_no_call() -> None:
    """Every connection lost, then 4 callers per connection at once: those that got a lost
    connection run again on fresh ones (ahead of the queue); none fails."""
    driver = _fake()
    async with _pool(driver, min_size=4, max_size=4) as pool:
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(pool.fetchone, "SELECT 1")
        driver.drop()
        failed: list[BaseException] = []

        async def one(i: int) -> None:
            try:
                assert await pool.fetchone(f"SELECT {i}") == (i,)
            except Exception as exc:
                failed.append(exc)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for i in range(16):
                    tg.start_soon(one, i)
        assert failed == []
        assert 1 <= pool.stats().retried <= 4


async def test_no_retry_while_the_server_refuses() -> None:
    """The fresh connect for the retry is refused (the server is not back): the caller gets
    its own error at once, not a wait; the lost connection went back to the pool, so leaving
    the block, or releasing it, does nothing more, and using it says what happened."""
    driver = _fake()
    async with _pool(driver, min_size=1, max_size=1, timeout=20) as pool:
        await pool.fetchone("SELECT 1")
        driver.plan = Plan(Refuse())
        driver.drop()
        with anyio.fail_after(5):  # not the 20 s acquire timeout
            async with pool.connection() as conn:
                with pytest.raises(driver.OperationalError, match="closed the connection"):
                    await conn.fetchone("SELECT 1")
                with pytest.raises(poolkit.ConnectionReturned, match="was lost"):
                    await conn.fetchone("SELECT 1")
        with anyio.fail_after(5):  # connects are failing already: no wait at all
            taken = await _acquire_then_lose(pool, driver)
            with pytest.raises(driver.OperationalError):
                await taken.fetchall("SELECT 1")
        pool.release(taken)  # given back already: a no-op, no error
        pool.release(taken)
        assert pool.stats().retried == 0


async def _acquire_then_lose(pool: poolkit.Pool, driver: FakeDriver) -> poolkit.AsyncConnection:
    """A connection from a server that accepts, lost once it was handed out, the server then
    refusing connects again."""
    driver.plan = Plan()
    conn = await pool.acquire()
    driver.plan = Plan(Refuse())
    driver.drop()
    return conn


async def test_a_retry_waits_no_longer_than_the_acquire_timeout() -> None:
    """Every other connection is held, and the lost one's replacement cannot connect in
    time (a slow connect): the caller gets its own error after the pool's timeout."""
    driver = _fake()
    async with _pool(driver, min_size=1, max_size=1, timeout=0.3) as pool:
        await pool.fetchone("SELECT 1")
        driver.plan = Plan(Latency(1.0, op="connect"))
        driver.drop()
        with anyio.fail_after(0.9), pytest.raises(driver.OperationalError):
            await pool.fetchone("SELECT 1")
        assert pool.stats().retried == 0
        with anyio.fail_after(5):  # the slow connect ends (close() would not wait for it)
            while pool.stats().opening:
                await anyio.sleep(0.01)


async def test_no_retry_that_would_wait_on_other_callers() -> None:
    """The pool was shrunk while two callers hold connections: when the first statement of
    one finds its connection lost, no connection can come without the other caller's
    release, so the call fails at once instead of waiting on it."""
    driver = _fake()
    async with _pool(driver, min_size=2, max_size=2, timeout=None) as pool:
        first = await pool.acquire()
        second = await pool.acquire()
        pool.resize(1, 1)
        driver.drop(first._conn.link.raw.id)
        with anyio.fail_after(5), pytest.raises(driver.OperationalError):
            await first.fetchone("SELECT 1")
        assert pool.stats().retried == 0
        pool.release(first)
        pool.release(second)


async def test_released_by_another_task_during_the_retry() -> None:
    """The owner releases the connection from another task while its lost call waits for a
    fresh one: the fresh one goes back to the pool, the call says the connection was
    released, and nothing leaks."""
    driver = _fake()
    async with _pool(driver, min_size=1, max_size=1) as pool:
        await pool.fetchone("SELECT 1")
        driver.plan = Plan(Latency(0.3, op="connect"))
        driver.drop()
        conn = await pool.acquire()
        outcome: list[BaseException] = []

        async def call() -> None:
            try:
                await conn.fetchone("SELECT 1")
            except Exception as exc:
                outcome.append(exc)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                while pool.stats().opening == 0:  # the retry waits for its connection
                    await anyio.sleep(0.005)
                pool.release(conn)
        assert len(outcome) == 1 and isinstance(outcome[0], poolkit.ConnectionReturned)
        with anyio.fail_after(5):
            while pool.stats().in_use or pool.stats().opening:
                await anyio.sleep(0.01)
        assert pool.stats().idle == 1
        assert await pool.fetchone("SELECT 2") == (2,)


# ----- a real server ------------------------------------------------------------------------


class _Blind:
    """A pool over psycopg2 on the test PostgreSQL without the socket look (like pyodbc:
    nothing tells that an idle connection was closed by the server until a statement finds
    out), its sessions tagged so that the test can terminate them all."""

    def __init__(self, tmp_path: Path, name: str) -> None:
        self.backend = resolve("postgres", tmp_path)
        self.psycopg2 = need("psycopg2")
        self.name = name

    def pool(self, size: int, **options: Any) -> poolkit.Pool:
        psycopg2, backend = self.psycopg2, self.backend
        return poolkit.Pool(
            psycopg2,
            *backend.args,
            connect_kwargs={**backend.kwargs, "application_name": self.name},
            profile=dataclasses.replace(poolkit.profile_for(psycopg2), socket_fd=None),
            min_size=size,
            max_size=size,
            check_idle_after=None,
            **options,
        )

    async def kill_all(self) -> int:
        """Terminate every session of the pool; then give the server a moment to close them."""
        killed = self.backend.run(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            f"WHERE application_name = '{self.name}'"
        )
        await anyio.sleep(0.2)
        return int(killed[0][0])


@pytest.mark.real
@pytest.mark.postgres
@pytest.mark.parametrize("retry", [True, False])
async def test_killed_sessions_then_a_burst_on_postgres(tmp_path: Path, retry: bool) -> None:
    """Every session of an idle pool is terminated on the server (pg_terminate_backend),
    then 32 callers arrive at once. With retries no call fails; without, calls fail (one
    per pooled connection the burst reached first)."""
    blind = _Blind(tmp_path, f"poolkit_retry_{retry}")
    async with blind.pool(8, retry_lost=retry) as pool:
        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(pool.fetchone, "SELECT pg_sleep(0.05)")
        assert await blind.kill_all() == 8
        failed: list[BaseException] = []

        async def one(i: int) -> None:
            try:
                assert await pool.fetchone(f"SELECT {i}") == (i,)
            except blind.psycopg2.Error as exc:
                failed.append(exc)

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for i in range(32):
                    tg.start_soon(one, i)
        if retry:
            assert failed == []
            assert pool.stats().retried >= 1
        else:
            assert len(failed) >= 1
            assert pool.stats().retried == 0


@pytest.mark.real
@pytest.mark.postgres
async def test_a_cursor_on_a_killed_session_runs_again_on_postgres(tmp_path: Path) -> None:
    """psycopg2 makes a cursor on a connection the server closed (it finds out at execute):
    the retry must use a cursor of the fresh connection."""
    blind = _Blind(tmp_path, "poolkit_retry_cursor")
    async with blind.pool(1) as pool:
        await pool.fetchone("SELECT 1")
        assert await blind.kill_all() == 1
        async with pool.connection() as conn:
            cur = conn.cursor()
            await cur.execute("SELECT 6")
            assert await cur.fetchall() == [(6,)]
        assert pool.stats().retried == 1


@pytest.mark.real
@pytest.mark.postgres
async def test_a_lost_insert_is_written_once_on_postgres(tmp_path: Path) -> None:
    """The pool's one session is terminated while idle; an INSERT then finds it lost and is
    run again: the row is there once."""
    blind = _Blind(tmp_path, "poolkit_retry_insert")
    with blind.backend.table("id INTEGER") as table:
        async with blind.pool(1) as pool:
            await pool.fetchone("SELECT 1")
            assert await blind.kill_all() == 1
            await pool.fetchall(f"INSERT INTO {table} (id) VALUES (1)")
            assert pool.stats().retried == 1
        assert blind.backend.run(f"SELECT count(*) FROM {table}") == [(1,)]
