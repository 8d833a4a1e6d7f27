"""A server restart seen by an idle pool: the burst of callers that follows fails no call.

Every connection of an idle pool is reset (a restart or failover, as the client sees it),
then many callers arrive at once, within ``check_idle_after``. Each idle connection whose
socket heard from the server is pinged before hand-out and replaced when dead, so no caller
gets a dead connection (before this, one caller per pooled connection failed).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import poolkit
from poolkit._profiles import has_news
from poolkit.conformance.proxy import FaultProxy
from tests.backends import Backend, need, resolve

pytestmark = pytest.mark.anyio


@pytest.fixture(
    params=[
        pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.real]),
        pytest.param("mysql", marks=[pytest.mark.mysql, pytest.mark.real]),
    ]
)
def proxied(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Backend, Any]]:
    """A real server behind a fault proxy: (backend, how to build a pool through the proxy)."""
    backend = resolve(str(request.param), tmp_path)
    if backend.name == "postgres":
        psycopg2 = need("psycopg2")
        parts = psycopg2.extensions.parse_dsn(str(backend.args[0]))
        host, port = parts.get("host") or "127.0.0.1", int(parts.get("port") or 5432)
    else:
        host, port = backend.kwargs["host"], int(backend.kwargs["port"])
    with FaultProxy(host, port, lifetime=60) as proxy:

        def pool(**options: Any) -> poolkit.Pool:
            if backend.name == "postgres":
                kw = {**parts, "host": "127.0.0.1", "port": str(proxy.port)}
                return poolkit.Pool(backend.driver, connect_kwargs=kw, **options)
            kw = {**backend.kwargs, "host": "127.0.0.1", "port": proxy.port}
            return poolkit.Pool(backend.driver, connect_kwargs=kw, **options)

        yield backend, (proxy, pool)


async def _warm(pool: poolkit.Pool, n: int) -> None:
    """Every connection of the pool used once (and idle again)."""
    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(pool.fetchone, "SELECT 1")


async def _burst(pool: poolkit.Pool, callers: int) -> list[BaseException]:
    failed: list[BaseException] = []

    async def one() -> None:
        try:
            await pool.fetchone("SELECT 1")
        except Exception as exc:
            failed.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(callers):
            tg.start_soon(one)
    return failed


async def test_a_burst_after_every_connection_was_reset_fails_no_call(
    proxied: tuple[Backend, Any],
) -> None:
    _, (proxy, make) = proxied
    async with make(min_size=4, max_size=4, check_idle_after=60.0) as pool:
        await _warm(pool, 4)
        opened = pool.stats().connections_opened
        proxy.reset_all()  # every connection dies at once; nobody uses the pool meanwhile
        with anyio.fail_after(10):
            failed = await _burst(pool, 16)
        assert failed == []
        assert pool.stats().check_failures == 4  # each dead one was pinged, not handed out
        with anyio.fail_after(10):
            while pool.stats().idle < 4:  # and replaced (back to min_size), no more
                await anyio.sleep(0.01)
        assert pool.stats().connections_opened == opened + 4


async def test_a_connection_that_hears_a_notice_is_pinged_and_kept(tmp_path: Path) -> None:
    """Something to read on an idle socket is not always death: a NOTIFY for a LISTENing
    session costs a ping, and the connection stays in the pool."""
    backend = resolve("postgres", tmp_path)
    channel = "poolkit_restart_test"
    pings: list[int] = []

    def ping(raw: Any) -> None:
        pings.append(1)
        cur = raw.cursor()
        cur.execute("SELECT 1")  # reads the notice too
        cur.close()

    options = {"min_size": 1, "max_size": 1, "check_idle_after": 60.0, "check": ping}
    async with backend.pool(**options) as pool:
        async with pool.connection() as conn:
            await conn.set_autocommit(True)
            await conn.execute(f"LISTEN {channel}")
        assert await pool.fetchone("SELECT 1") is not None
        assert pings == []  # nothing to read: no ping
        backend.run(f"NOTIFY {channel}")
        await anyio.sleep(0.3)  # the notice reaches the idle connection's socket
        assert await pool.fetchone("SELECT 2") is not None
        assert pings == [1]
        assert await pool.fetchone("SELECT 3") is not None
        assert pings == [1]  # the ping read it: quiet again
        stats = pool.stats()
        assert stats.connections_opened == 1 and stats.check_failures == 0


def test_has_news_sees_data_end_of_file_and_a_reset() -> None:
    ours, theirs = socket.socketpair()
    try:
        assert not has_news(ours.fileno())
        theirs.send(b"x")
        assert has_news(ours.fileno())
        ours.recv(1)
        assert not has_news(ours.fileno())
        theirs.close()
        assert has_news(ours.fileno())  # end of file
    finally:
        ours.close()
        theirs.close()
