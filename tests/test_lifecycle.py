"""Opening and closing: fast failure on configuration errors, close() deadlines, bad hooks."""

from __future__ import annotations

import logging
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import anyio.to_thread
import psycopg2
import pymysql
import pytest
from psycopg2.extensions import parse_dsn

import poolkit
from poolkit.conformance.proxy import FaultProxy
from poolkit.fakes import FakeDriver, Plan, Refuse
from tests.backends import Backend, resolve

pytestmark = pytest.mark.anyio


@pytest.fixture
def deaf() -> Iterator[socket.socket]:
    """A loopback listener that accepts TCP connections and never answers (a 'deaf' server)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    try:
        yield srv
    finally:
        srv.close()


async def test_open_raises_the_drivers_own_error_for_an_invalid_dsn() -> None:
    pool = poolkit.Pool(psycopg2, "host=127.0.0.1 dbnme=test user=postgres", timeout=30)
    started = time.monotonic()
    with pytest.raises(psycopg2.ProgrammingError, match="dbnme"):
        await pool.open()
    assert time.monotonic() - started < 10, "a configuration error must not be retried"
    assert pool.closed


async def test_open_raises_bad_connect_arguments_at_once() -> None:
    pool = poolkit.Pool(pymysql, connect_kwargs={"hots": "127.0.0.1"}, timeout=30)
    with anyio.fail_after(10), pytest.raises(TypeError, match="hots"):
        await pool.open()


async def test_transient_errors_are_still_retried_during_open() -> None:
    # A refused connection is an OperationalError: retried until the timeout.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free_port = s.getsockname()[1]
    pool = poolkit.Pool(
        psycopg2,
        f"host=127.0.0.1 port={free_port} dbname=test user=postgres",
        backoff=poolkit.Backoff(initial=0.01, maximum=0.02),
    )
    with anyio.fail_after(10), pytest.raises(poolkit.PoolTimeout) as info:
        await pool.open(timeout=0.3)
    assert pool.stats().connect_errors >= 2
    assert isinstance(info.value.connect_error, psycopg2.OperationalError)


async def test_close_keeps_its_deadline_when_a_connect_hangs(deaf: socket.socket) -> None:
    port = deaf.getsockname()[1]
    dsn = f"host=127.0.0.1 port={port} dbname=test user=postgres connect_timeout=30"
    pool = poolkit.Pool(psycopg2, dsn, min_size=0, timeout=0.3)
    await pool.open()
    with pytest.raises(poolkit.PoolTimeout):
        async with pool.connection():
            pass
    started = time.monotonic()
    forced = await pool.close(timeout=0.5)
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"close(timeout=0.5) took {elapsed:.2f} s"
    assert forced == 1, "the connect stuck in the driver is reported as forced"
    # The thread left behind ends once the deaf server goes away, and closes what it got.
    stuck = [t for t in threading.enumerate() if t.name.startswith(f"poolkit-{pool.name}-")]
    deaf.close()
    for thread in stuck:
        await anyio.to_thread.run_sync(thread.join, 10.0)
        assert not thread.is_alive()


async def test_close_forces_a_connection_held_past_the_deadline(tmp_path: Any) -> None:
    pool = poolkit.Pool(sqlite3, str(tmp_path / "x.db"), max_size=1)
    await pool.open()
    conn = await pool.acquire()
    started = time.monotonic()
    assert await pool.close(timeout=0.2) == 1
    assert time.monotonic() - started < 2.0
    with pytest.raises(poolkit.PoolClosed):
        await conn.execute("SELECT 1")


async def _async_hook(raw: Any) -> None:
    pass


@pytest.mark.parametrize("hook", ["configure", "reset", "check"])
def test_async_hooks_are_refused(hook: str) -> None:
    with pytest.raises(TypeError, match=f"{hook} must be a plain function, not async"):
        options: dict[str, Any] = {hook: _async_hook}
        poolkit.Pool(sqlite3, ":memory:", **options)


def test_async_listener_is_refused() -> None:
    pool = poolkit.Pool(sqlite3, ":memory:")

    async def listener(event: poolkit.PoolEvent) -> None:
        pass

    with pytest.raises(TypeError, match="listener must be a plain function"):
        pool.add_listener(listener)


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("timeout", "5", TypeError),
        ("timeout", 0, ValueError),
        ("query_timeout", -1, ValueError),
        ("check_idle_after", float("nan"), ValueError),
        ("max_lifetime", True, TypeError),
        ("secrets", "hunter2", TypeError),
    ],
)
def test_bad_option_values_name_the_option(option: str, value: Any, error: type) -> None:
    with pytest.raises(error, match=option):
        options: dict[str, Any] = {option: value}
        poolkit.Pool(sqlite3, ":memory:", **options)


async def test_acquire_timeout_of_the_wrong_type_is_refused() -> None:
    async with poolkit.Pool(sqlite3, ":memory:") as pool:
        with pytest.raises(TypeError, match="timeout"):
            await pool.acquire(timeout="1")  # type: ignore[arg-type]


# ----- a closed pool says so, in one wording -----------------------------------------------


async def test_resize_on_a_closed_pool_raises_pool_closed() -> None:
    pool = poolkit.Pool(sqlite3, ":memory:", name="orders")
    async with pool:
        pool.resize(1, 3)
    with pytest.raises(poolkit.PoolClosed, match=r"^pool orders is closed$"):
        pool.resize(1, 5)
    assert (pool.min_size, pool.max_size) == (1, 3)  # unchanged
    never = poolkit.Pool(sqlite3, ":memory:", name="never")
    await never.close()
    with pytest.raises(poolkit.PoolClosed, match=r"^pool never is closed$"):
        never.resize(1, 5)


async def test_pool_closed_says_which_pool_and_why() -> None:
    pool = poolkit.Pool(sqlite3, ":memory:", name="orders")
    not_yet = "pool orders is not open yet: use 'async with pool:' or 'await pool.open()'"
    with pytest.raises(poolkit.PoolClosed) as info:
        await pool.acquire()
    assert str(info.value) == not_yet
    with pytest.raises(poolkit.PoolClosed) as info:
        await pool.check()
    assert str(info.value) == "pool orders is not open yet"
    async with pool:
        pass
    attempts: list[Callable[[], Awaitable[object]]] = [
        pool.acquire,
        pool.check,
        lambda: pool.fetchone("SELECT 1"),
    ]
    for attempt in attempts:
        with pytest.raises(poolkit.PoolClosed) as info:
            await attempt()
        assert str(info.value) == "pool orders is closed"
    with pytest.raises(poolkit.PoolClosed) as info:
        await pool.open()
    assert str(info.value) == "pool orders is closed and cannot be reopened"
    never = poolkit.Pool(sqlite3, ":memory:", name="never")
    await never.close()  # closed before it was opened: closed, not "not open yet"
    with pytest.raises(poolkit.PoolClosed) as info:
        await never.acquire()
    assert str(info.value) == "pool never is closed"


async def test_one_connection_is_counted_in_the_singular(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="poolkit")
    down = FakeDriver(Plan(Refuse()))
    try:
        pool = poolkit.Pool(down, min_size=1, name="down")
        with pytest.raises(poolkit.PoolTimeout) as info:
            await pool.open(timeout=0.2)
        assert str(info.value).startswith("pool down: could not open 1 connection in 0.2 s;")
    finally:
        down.close()
    pool = poolkit.Pool(sqlite3, ":memory:", max_size=1, name="held")
    await pool.open()
    await pool.acquire()  # never returned: close() forces it
    assert await pool.close(timeout=0) == 1
    messages = [r.getMessage() for r in caplog.records]
    assert "pool held: close forced 1 connection in use" in messages
    assert "pool held: closed (1 connection forced)" in messages


# ----- close() always ends: stuck statements and connects on a frozen server ---------------

BOUND = 3.0  # generous: the design promises timeout + 0.5 s


def pool_threads(pool: poolkit.Pool, suffix: str = "") -> list[threading.Thread]:
    """The pool's live threads (workers, helpers), or those whose name ends with ``suffix``."""
    prefix = f"poolkit-{pool.name}-"
    return [
        t
        for t in threading.enumerate()
        if t.name.startswith(prefix) and t.name.endswith(suffix) and t.is_alive()
    ]


class CancelHelpers:
    """Samples the pool's ``-cancel`` helper threads in the background; ``most`` is the peak."""

    def __init__(self, pool: poolkit.Pool) -> None:
        self.pool = pool
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="test-cancel-sampler")

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.most = max(self.most, len(pool_threads(self.pool, "-cancel")))

    def __enter__(self) -> CancelHelpers:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def gone(what: str, predicate: Callable[[], bool], within: float = 20.0) -> None:
    with anyio.move_on_after(within):
        while not predicate():
            await anyio.sleep(0.05)
        return
    pytest.fail(f"not within {within} s: {what}")


@pytest.mark.parametrize("threads", ["dedicated", "shared"])
async def test_default_close_releases_callers_stuck_in_an_uninterruptible_call(
    threads: Any,
) -> None:
    """close() with no argument ends within its documented bound (timeout=5 s + 0.5 s) while
    every connection is stuck in a call no driver cancel reaches; each blocked caller gets
    PoolClosed at the force, and the threads close their connections and exit by themselves
    once the calls return."""
    driver = FakeDriver(threadsafety=2)
    gate = threading.Event()
    pool = poolkit.Pool(driver, min_size=3, max_size=3, threads=threads)
    released: list[float] = []
    try:
        await pool.open()

        async def caller(ready: anyio.Event) -> None:
            async with pool.connection() as conn:
                ready.set()
                with pytest.raises(poolkit.PoolClosed, match="was running"):
                    await conn.run(lambda raw: gate.wait(60))  # ignores the driver cancel
                released.append(time.monotonic())

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                ready = anyio.Event()
                tg.start_soon(caller, ready)
                await ready.wait()
            await anyio.sleep(0.05)
            started = time.monotonic()
            with anyio.fail_after(5.0 + BOUND):
                assert await pool.close() == 3
            took = time.monotonic() - started
        assert 4.5 < took < 5.0 + BOUND, f"close() took {took:.2f} s"
        assert len(released) == 3
        assert all(at - started < 5.0 + BOUND for at in released)
        assert len(pool_threads(pool)) == 3  # the stuck ones, left to finish by themselves
    finally:
        gate.set()
    await gone("the abandoned threads to end", lambda: not pool_threads(pool))
    assert driver.connections == {}, "each abandoned thread closed its connection"
    driver.close()


async def test_default_close_does_not_wait_for_connects_that_hang(deaf: socket.socket) -> None:
    port = deaf.getsockname()[1]
    dsn = f"host=127.0.0.1 port={port} dbname=test user=postgres connect_timeout=30"
    pool = poolkit.Pool(psycopg2, dsn, min_size=2, max_size=2)
    await pool.open(wait=False)
    await anyio.sleep(0.1)  # both connects are inside the driver
    started = time.monotonic()
    with anyio.fail_after(BOUND):
        assert await pool.close() == 2
    assert time.monotonic() - started < 1.5, "a connect in progress holds close() up"
    stuck = pool_threads(pool)
    assert len(stuck) == 2
    deaf.close()  # the connects fail: each thread ends by itself
    await gone("the connecting threads to end", lambda: not pool_threads(pool))


def _through(proxy: FaultProxy, backend: Backend, tag: str) -> poolkit.Pool:
    """A pool of 4 connections to ``backend`` through ``proxy``; PostgreSQL sessions carry
    ``tag`` as their application_name."""
    if backend.name == "postgres":
        parts = parse_dsn(backend.args[0])
        parts.update(host="127.0.0.1", port=str(proxy.port), application_name=tag)
        return poolkit.Pool(
            psycopg2, connect_kwargs=parts, min_size=4, max_size=4, check_idle_after=None
        )
    kwargs = {**backend.kwargs, "host": "127.0.0.1", "port": proxy.port}
    return poolkit.Pool(
        pymysql, connect_kwargs=kwargs, min_size=4, max_size=4, check_idle_after=None
    )


def _upstream(backend: Backend) -> tuple[str, int]:
    if backend.name == "postgres":
        parts = parse_dsn(backend.args[0])
        return parts.get("host") or "127.0.0.1", int(parts.get("port") or 5432)
    return str(backend.kwargs["host"]), int(backend.kwargs["port"])


def _sessions(backend: Backend, tag: str, ids: list[int]) -> int:
    """The pool's sessions still on the server (by application_name, or by session id)."""
    if backend.name == "postgres":
        sql = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
        return int(backend.run(sql, (tag,))[0][0])
    listed = ", ".join(str(int(i)) for i in ids)
    sql = f"SELECT count(*) FROM information_schema.PROCESSLIST WHERE ID IN ({listed})"
    return int(backend.run(sql)[0][0])


@pytest.mark.parametrize("name", ["postgres", "mysql"])
async def test_close_on_a_frozen_server_releases_every_caller_and_leaves_nothing(
    name: str, tmp_path: Any
) -> None:
    """4 callers on a server that stopped answering (FaultProxy.deafen): two have a statement
    stuck in the driver, two had one time out (its driver cancel hangs too, and the statement
    is still inside the driver). close() returns within its bound, each stuck caller gets
    PoolClosed at the force, at most one cancel helper per connection ever runs (the force
    sends none for a call whose cancel is in flight), and once the network answers again the
    abandoned threads close their connections and exit: no thread and no server session of
    the pool remains."""
    backend = resolve(name, tmp_path)
    tag = f"pk_close_{uuid.uuid4().hex[:10]}"
    ids: list[int] = []
    released: list[float] = []
    with FaultProxy(*_upstream(backend), lifetime=120) as proxy:
        pool = _through(proxy, backend, tag)
        await pool.open()
        try:
            with CancelHelpers(pool) as helpers:
                go, closed = anyio.Event(), anyio.Event()

                async def caller(ready: anyio.Event, timing_out: bool) -> None:
                    async with pool.connection() as conn:
                        row = await conn.fetchone(backend.session_id_sql)
                        assert row is not None
                        ids.append(int(row[0]))
                        ready.set()
                        await go.wait()
                        if timing_out:  # its cancel hangs; close() must not send another
                            with pytest.raises(poolkit.QueryTimeout):
                                await conn.fetchone("SELECT 1", timeout=0.2)
                            await closed.wait()
                        with pytest.raises(poolkit.PoolClosed):
                            await conn.fetchone("SELECT 2")
                        if not timing_out:
                            released.append(time.monotonic())

                async with anyio.create_task_group() as tg:
                    for i in range(4):
                        ready = anyio.Event()
                        tg.start_soon(caller, ready, i % 2 == 0)
                        await ready.wait()
                    proxy.deafen()
                    go.set()
                    await anyio.sleep(0.6)  # each first call timed out; its cancel hangs
                    started = time.monotonic()
                    with anyio.fail_after(BOUND):
                        assert await pool.close(timeout=0.2) == 4
                    took = time.monotonic() - started
                    closed.set()
                assert took < BOUND, f"close() took {took:.2f} s"
                assert len(released) == 2
                assert all(at - started < BOUND for at in released)
                assert helpers.most <= 4, f"{helpers.most} cancel helpers for 4 connections"
        finally:
            proxy.hear()
        await gone("the pool's threads to end", lambda: not pool_threads(pool))
        await gone(
            "the pool's sessions to end",
            lambda: _sessions(backend, tag, ids) == 0,
        )
