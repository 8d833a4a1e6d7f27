"""Pool-only cost, no I/O: acquire + release cycles with no statement in between.

poolkit runs over its fake driver at zero latency (a virtual clock), so what is left is the
pool's own bookkeeping and hand-off. Beside it: psycopg_pool holding real psycopg 3
connections (with no ``check`` and no ``reset`` configured and the connection idle, a cycle does
no I/O — the table's server-CPU column shows it), asyncpg's pool with a no-op reset (likewise),
and SQLAlchemy's ``AsyncAdaptedQueuePool`` over a no-op connection (``creator=``,
``reset_on_return=None``), checked out inside ``greenlet_spawn`` as its async engine does. Each
cycle holds the connection across one checkpoint, so other tasks get to queue.

The waiters workload: ``max_size=1`` and 10 / 1,000 / 10,000 callers queued behind it; a
release serves one waiter, so the cost of a cycle must stay flat.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from anyio.lowlevel import checkpoint

from .contenders import no_reset
from .dsn import Server

Cycle = Callable[[], Awaitable[None]]
CycleOpener = Callable[[Server | None, int], contextlib.AbstractAsyncContextManager[Cycle]]

POOLKIT_FAKE = "poolkit (fake driver)"
PSYCOPG_POOL = "psycopg_pool (idle psycopg 3 conns)"
#: (tasks, pool size) of the cycles workload
CONFIGS = ((1, 1), (16, 16), (64, 16))
#: callers queued behind a max_size=1 pool in the waiters workload
WAITERS = (10, 1_000, 10_000)


@dataclass(frozen=True)
class CycleContender:
    name: str
    #: the server it holds connections to (None: no server)
    backend: str | None
    loops: tuple[str, ...]
    needs: tuple[str, ...]
    open: CycleOpener
    #: whether it also runs the waiters workload
    waiters: bool = False


@contextlib.asynccontextmanager
async def _poolkit(server: Server | None, size: int) -> AsyncIterator[Cycle]:
    from poolkit import Pool
    from poolkit.fakes import FakeDriver, VirtualClock

    driver = FakeDriver(backing="script", clock=VirtualClock())
    try:
        async with Pool(driver, min_size=size, max_size=size, timeout=None) as pool:

            async def cycle() -> None:
                async with pool.connection():
                    await checkpoint()

            yield cycle
    finally:
        driver.close()


@contextlib.asynccontextmanager
async def _psycopg_pool(server: Server | None, size: int) -> AsyncIterator[Cycle]:
    from psycopg_pool import AsyncConnectionPool

    assert server is not None
    async with AsyncConnectionPool(
        server.dsn,
        min_size=size,
        max_size=size,
        kwargs={"autocommit": True},
        timeout=600.0,
        open=False,
    ) as pool:
        await pool.wait()

        async def cycle() -> None:
            async with pool.connection():
                await checkpoint()

        yield cycle


@contextlib.asynccontextmanager
async def _asyncpg(server: Server | None, size: int) -> AsyncIterator[Cycle]:
    import asyncpg

    assert server is not None
    async with asyncpg.create_pool(
        server.url(), min_size=size, max_size=size, reset=no_reset
    ) as pool:

        async def cycle() -> None:
            async with pool.acquire():
                await checkpoint()

        yield cycle


class _NoopConnection:
    """A DB-API connection that does nothing: the SQLAlchemy pool's ``creator``."""

    def close(self) -> None:
        pass

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass


@contextlib.asynccontextmanager
async def _sqlalchemy(server: Server | None, size: int) -> AsyncIterator[Cycle]:
    from sqlalchemy.pool import AsyncAdaptedQueuePool
    from sqlalchemy.util import greenlet_spawn

    try:
        from sqlalchemy.util import await_  # type: ignore[attr-defined,unused-ignore]
    except ImportError:  # SQLAlchemy 2.0
        from sqlalchemy.util import await_only as await_

    def creator() -> Any:
        return _NoopConnection()

    pool = AsyncAdaptedQueuePool(
        creator, pool_size=size, max_overflow=0, reset_on_return=None, timeout=600.0
    )

    def checkout() -> None:
        fairy = pool.connect()
        await_(checkpoint())
        fairy.close()

    async def cycle() -> None:
        await greenlet_spawn(checkout)

    try:
        yield cycle
    finally:
        pool.dispose()


_ASYNCIO = ("asyncio",)

CYCLE_CONTENDERS: tuple[CycleContender, ...] = (
    CycleContender(POOLKIT_FAKE, None, ("asyncio", "trio"), (), _poolkit, waiters=True),
    CycleContender(
        PSYCOPG_POOL, "postgres", _ASYNCIO, ("psycopg", "psycopg_pool"), _psycopg_pool, True
    ),
    CycleContender(
        "asyncpg Pool (no-op reset, idle conns)", "postgres", _ASYNCIO, ("asyncpg",), _asyncpg
    ),
    CycleContender(
        "SQLAlchemy AsyncAdaptedQueuePool (no-op conn)",
        None,
        _ASYNCIO,
        ("sqlalchemy", "greenlet"),
        _sqlalchemy,
    ),
)
