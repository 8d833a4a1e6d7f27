"""A server restart, as the pool lives it: the burst of callers that follows fails no call,
and when the server comes back, waiting callers are served at once, not at the back-off.

Every connection of an idle pool is reset (a restart or failover, as the client sees it),
then many callers arrive at once, within ``check_idle_after``. Each idle connection whose
socket heard from the server is pinged before hand-out and replaced when dead, so no caller
gets a dead connection (before this, one caller per pooled connection failed).
"""

from __future__ import annotations

import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
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


class _Server:
    """A "server" that refuses connects until told to accept: a ``connect=`` factory over a
    SQLite file that raises sqlite3's transient "database is locked" meanwhile, and records
    when each attempt was made."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.refusing = True
        self.attempts: list[float] = []

    def connect(self) -> sqlite3.Connection:
        self.attempts.append(time.monotonic())
        if self.refusing:
            raise sqlite3.OperationalError("database is locked")
        return sqlite3.connect(self.path, check_same_thread=False)


def _pool(server: _Server, backoff: poolkit.Backoff) -> poolkit.Pool:
    return poolkit.Pool(connect=server.connect, min_size=0, max_size=4, backoff=backoff)


async def _until(check: Callable[[], bool]) -> None:
    with anyio.fail_after(5):
        while not check():
            await anyio.sleep(0.005)


async def test_waiting_callers_are_served_at_once_when_the_server_is_back(
    tmp_path: Path,
) -> None:
    """The back-off is 2 s; a caller waits; the server accepts again: the caller is served
    within a demand interval or so, not at the next back-off attempt. Meanwhile the waiting
    caller makes attempts at most one per demand interval: no stampede."""
    server = _Server(tmp_path / "db.sqlite")
    backoff = poolkit.Backoff(2.0, 2.0, jitter=0.0, demand_interval=0.1)
    async with _pool(server, backoff) as pool:
        served: list[float] = []

        async def caller() -> None:
            async with pool.connection(timeout=10):
                served.append(time.monotonic())

        async with anyio.create_task_group() as tg:
            tg.start_soon(caller)
            await _until(lambda: len(server.attempts) >= 1)
            start = time.monotonic()
            await anyio.sleep(1.0)
            during = [t for t in server.attempts if t >= start]
            assert 4 <= len(during) <= 12, during  # about one per 0.1 s, not max_size at once
            server.refusing = False
            back = time.monotonic()
        assert served and served[0] - back < 1.0  # the back-off alone would take ~1-2 s


async def test_without_waiting_callers_the_back_off_spaces_the_attempts(
    tmp_path: Path,
) -> None:
    server = _Server(tmp_path / "db.sqlite")
    backoff = poolkit.Backoff(2.0, 2.0, jitter=0.0, demand_interval=0.1)
    pool = poolkit.Pool(connect=server.connect, min_size=1, max_size=4, backoff=backoff)
    await pool.open(wait=False)  # it keeps trying for min_size, with nobody waiting
    try:
        await _until(lambda: len(server.attempts) >= 1)
        count = len(server.attempts)
        await anyio.sleep(1.0)  # nobody waits: the next attempt is 2 s after the first
        assert len(server.attempts) == count
    finally:
        await pool.close()


async def test_demand_interval_none_leaves_recovery_to_the_back_off(tmp_path: Path) -> None:
    server = _Server(tmp_path / "db.sqlite")
    backoff = poolkit.Backoff(2.0, 2.0, jitter=0.0, demand_interval=None)
    async with _pool(server, backoff) as pool:
        with anyio.move_on_after(1.0):
            async with pool.connection(timeout=10):
                pass
        assert len(server.attempts) == 1  # the caller waited; no attempt went early


async def test_a_caller_arriving_during_the_back_off_hurries_a_sleeping_attempt(
    tmp_path: Path,
) -> None:
    """Attempts already sleeping a 2 s back-off when the first caller comes: one of them
    goes at once for it (the server is back by then), instead of at its deadline."""
    server = _Server(tmp_path / "db.sqlite")
    backoff = poolkit.Backoff(2.0, 2.0, jitter=0.0, demand_interval=0.1)
    pool = poolkit.Pool(connect=server.connect, min_size=1, max_size=4, backoff=backoff)
    await pool.open(wait=False)
    try:
        await _until(lambda: len(server.attempts) >= 1)
        await anyio.sleep(0.2)  # the next attempt sleeps until 2 s after the first
        server.refusing = False
        arrived = time.monotonic()
        async with pool.connection(timeout=10):
            served = time.monotonic()
        assert served - arrived < 1.0  # the back-off alone: ~1.8 s
    finally:
        await pool.close()
