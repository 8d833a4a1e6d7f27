"""``Pool.check()``: ping the idle connections now, replace the dead ones."""

from __future__ import annotations

import anyio
import pytest

from poolkit import Pool, PoolClosed
from poolkit.fakes import FakeDriver, Latency, Plan, VirtualClock
from tests.test_threads import wait_until

pytestmark = pytest.mark.anyio


def _live(driver: FakeDriver) -> list[int]:
    return sorted(k for k, c in driver.connections.items() if not c.closed)


async def test_check_replaces_sessions_killed_behind_the_pools_back() -> None:
    driver = FakeDriver(clock=VirtualClock())
    try:
        async with Pool(driver, min_size=3, max_size=3, check_idle_after=None) as pool:
            await wait_until(lambda: pool.stats().idle == 3, "3 idle connections")
            first, second, third = _live(driver)
            driver.drop(first)
            driver.drop(third)
            assert await pool.check() == 2
            stats = pool.stats()
            assert stats.check_failures == 2
            await wait_until(lambda: pool.stats().idle == 3, "3 idle connections")
            assert second in _live(driver) and len(_live(driver)) == 3
            # Every connection the pool now hands out works (no killed one is left).
            async with pool.connection() as a, pool.connection() as b, pool.connection() as c:
                for conn in (a, b, c):
                    cur = await conn.execute("SELECT 1")
                    assert await cur.fetchall() == [(1,)]
    finally:
        driver.close()


async def test_check_leaves_connections_in_use_alone() -> None:
    driver = FakeDriver(clock=VirtualClock())
    try:
        async with Pool(driver, min_size=2, max_size=2, check_idle_after=None) as pool:
            await wait_until(lambda: pool.stats().idle == 2, "2 idle connections")
            async with pool.connection() as held:
                (held_id,) = [c for c in _live(driver) if c == held._conn.link.raw.id]
                driver.drop(held_id)
                pings_before = len(driver.calls.filter("execute", connection=held_id))
                assert await pool.check() == 0  # only the idle one was pinged, and it is fine
                assert len(driver.calls.filter("execute", connection=held_id)) == pings_before
    finally:
        driver.close()


async def test_callers_arriving_during_a_check_are_served() -> None:
    driver = FakeDriver(Plan(Latency(0.05, op="execute")))  # real-time pings: a slow check
    try:
        async with Pool(driver, min_size=2, max_size=2, check_idle_after=None) as pool:
            await wait_until(lambda: pool.stats().idle == 2, "2 idle connections")
            got: list[int] = []

            async def use() -> None:
                async with pool.connection(timeout=5.0) as conn:
                    got.append(conn.id)

            async with anyio.create_task_group() as tg:
                tg.start_soon(pool.check)
                await anyio.sleep(0.01)  # the check holds both connections now
                assert pool.stats().idle == 0
                tg.start_soon(use)
            assert len(got) == 1
            assert pool.stats().idle == 2
    finally:
        driver.close()


async def test_check_on_a_pool_not_open_raises() -> None:
    driver = FakeDriver(clock=VirtualClock())
    try:
        pool = Pool(driver, min_size=1, max_size=1)
        with pytest.raises(PoolClosed, match="not open"):
            await pool.check()
        await pool.open()
        await pool.close()
        with pytest.raises(PoolClosed):
            await pool.check()
    finally:
        driver.close()
