"""One-trip queries: ``conn.fetchall/fetchone`` and ``pool.fetchall/fetchone``, on every backend."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import poolkit
from poolkit.fakes import FakeDriver
from tests.backends import Backend
from tests.test_cancellation import (
    HANG,
    long_sql,
    new_tag,
    sqlite_tracer,
    wait_until_started,
    wait_until_stopped_on_server,
)
from tests.test_transactions import rows as ids

pytestmark = pytest.mark.anyio


async def test_connection_fetchall_and_fetchone(backend: Backend, table: str) -> None:
    q = backend.q
    async with backend.pool(max_size=1) as pool, pool.connection() as conn:
        insert = f"INSERT INTO {table} (id, name) VALUES ({q(0)}, {q(1)})"
        assert await conn.fetchall(insert, (1, "one")) == []  # no result set: no rows
        await conn.fetchall(insert, (2, "two"))
        rows = await conn.fetchall(f"SELECT id, name FROM {table} ORDER BY id")
        assert [tuple(r) for r in rows] == [(1, "one"), (2, "two")]
        assert isinstance(rows, list)
        first = await conn.fetchone(f"SELECT name FROM {table} WHERE id > {q(0)}", (1,))
        assert first is not None and tuple(first) == ("two",)
        assert await conn.fetchone(f"SELECT name FROM {table} WHERE id > {q(0)}", (9,)) is None
        assert await conn.fetchone(insert, (3, "three")) is None
        await conn.rollback()  # the connection's transaction is the caller's, as ever
    assert await ids(backend, table) == []


def _autocommit(raw: Any) -> None:
    raw.autocommit = True


async def test_connection_fetchall_leaves_no_cursor_open(backend: Backend) -> None:
    """A one-trip query leaves nothing to clean up: outside a transaction, returning the
    connection starts no reset (even when fetchone dropped the rest of the result)."""
    configure = _autocommit if backend.name in {"postgres", "mysql", "fake"} else None
    async with backend.pool(max_size=1, configure=configure) as pool:
        async with pool.connection() as conn:
            await conn.fetchone("SELECT 1 UNION ALL SELECT 2")
            assert conn.in_transaction is False
            conn_id = conn.id
        assert pool.stats().resetting == 0
        async with pool.connection() as conn:
            assert conn.id == conn_id
            assert [tuple(r) for r in await conn.fetchall("SELECT 3")] == [(3,)]


async def test_pool_fetchall_commits_its_statement(backend: Backend, table: str) -> None:
    q = backend.q
    async with backend.pool(max_size=2) as pool:
        insert = f"INSERT INTO {table} (id) VALUES ({q(0)})"
        assert await pool.fetchall(insert, (1,)) == []
        assert await pool.fetchone(insert, (2,)) is None
        # committed: a plain connection outside the pool sees both rows
        assert await ids(backend, table) == [1, 2]
        count = await pool.fetchone(f"SELECT count(*) FROM {table}")
        assert count is not None and count[0] == 2
        rows = await pool.fetchall(f"SELECT id FROM {table} ORDER BY id")
        assert [r[0] for r in rows] == [1, 2]
        s = pool.stats()
        assert (s.acquired, s.in_use, s.idle) == (4, 0, s.size)


async def test_pool_fetchall_error_passes_through_and_rolls_back(
    backend: Backend, table: str
) -> None:
    q = backend.q
    async with backend.pool(max_size=1) as pool:
        with pytest.raises(backend.driver.Error):
            await pool.fetchall(f"SELECT nope FROM {table}")
        s = pool.stats()
        assert (s.in_use, s.size) == (0, 1)
        # the failed statement's transaction did not leak into the next one
        await pool.fetchall(f"INSERT INTO {table} (id) VALUES ({q(0)})", (7,))
        assert await ids(backend, table) == [7]
        assert pool.stats().connections_opened == 1


async def test_pool_fetchall_cancelled_mid_query(backend: Backend) -> None:
    tag = new_tag()
    configure, sqlite_started = sqlite_tracer(tag)
    async with backend.pool(
        min_size=1, max_size=1, configure=configure, check_idle_after=None
    ) as pool:
        scope = anyio.CancelScope()
        finished = anyio.Event()

        async def victim() -> None:
            with scope:
                await pool.fetchall(long_sql(backend, tag))
                pytest.fail("the long statement was not cancelled")
            finished.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(victim)
            await wait_until_started(backend, tag, sqlite_started)
            scope.cancel()
            with anyio.fail_after(HANG):
                await finished.wait()
        assert scope.cancelled_caught  # the caller saw its own cancellation
        s = pool.stats()
        assert (s.in_use, s.waiting, s.size) == (0, 0, 1)
        if backend.name != "sqlite":
            await wait_until_stopped_on_server(backend, tag)
        with anyio.fail_after(HANG):
            row = await pool.fetchone("SELECT 6 * 7")
        assert row is not None and row[0] == 42
        assert (pool.stats().reset_failures, pool.stats().connections_opened) == (0, 1)


async def test_pool_fetchall_query_timeout(backend: Backend) -> None:
    tag = new_tag()
    async with backend.pool(min_size=1, max_size=1, check_idle_after=None) as pool:
        with pytest.raises(poolkit.QueryTimeout):
            await pool.fetchall(long_sql(backend, tag), query_timeout=0.2)
        s = pool.stats()
        assert (s.query_timeouts, s.timeouts, s.in_use) == (1, 0, 0)
        if backend.name != "sqlite":
            await wait_until_stopped_on_server(backend, tag)
        with anyio.fail_after(HANG):
            assert [tuple(r) for r in await pool.fetchall("SELECT 1")] == [(1,)]


async def test_pool_fetchall_acquire_timeout_and_bad_timeouts() -> None:
    driver = FakeDriver()
    try:
        async with poolkit.Pool(driver, max_size=1) as pool, pool.connection():
            with pytest.raises(poolkit.PoolTimeout):
                await pool.fetchall("SELECT 1", timeout=0.05)
            with pytest.raises(ValueError, match="query_timeout"):
                await pool.fetchall("SELECT 1", query_timeout=-1)
            assert pool.stats().in_use == 1
    finally:
        driver.close()


async def test_pool_fetchall_on_a_closed_pool() -> None:
    driver = FakeDriver()
    try:
        pool = poolkit.Pool(driver)
        with pytest.raises(poolkit.PoolClosed):
            await pool.fetchall("SELECT 1")
        async with pool:
            pass
        with pytest.raises(poolkit.PoolClosed):
            await pool.fetchone("SELECT 1")
    finally:
        driver.close()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_busy_belongs_to_the_checkout_not_the_connection(anyio_backend: str) -> None:
    """A call of an ended checkout whose caller has not resumed yet (its result is in, the
    awaiting task not yet scheduled) must not make the next checkout's calls busy."""
    driver = FakeDriver()
    try:
        async with poolkit.Pool(driver, max_size=1) as pool:
            async with pool.connection() as first:
                pending = first.fetchall("SELECT 1")
                pending.send(None)  # suspended on the call's future, never resumed
                await anyio.wait_all_tasks_blocked()
            with anyio.fail_after(HANG):
                while pool.stats().idle != 1:  # the call came back; any reset ran
                    await anyio.sleep(0.01)
            async with pool.connection() as second:
                assert second.id == first.id
                assert [tuple(r) for r in await second.fetchall("SELECT 2")] == [(2,)]
            pending.close()
    finally:
        driver.close()
