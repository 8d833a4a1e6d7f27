"""Leak detection: ``Pool(leak_timeout=...)`` warns once per checkout held too long, naming
where the caller acquired the connection; off by default and then it records nothing."""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

import poolkit
from poolkit import AsyncConnection, Pool, PoolEvent
from poolkit._pool import _maintenance_interval
from tests.test_pool import PASSWORD, FakeClock

pytestmark = pytest.mark.anyio

LEAK = 0.05  # leak_timeout of the real-time tests: the sweep then runs every 12.5 ms
SWEEPS = 0.25  # held this much longer after a warning: some 20 more sweeps, none may warn
HANG = 10.0  # only turns a hang into a failure
POOLKIT = os.path.dirname(poolkit.__file__) + os.sep


def make_pool(**options: Any) -> Pool:
    # Neither max_idle nor max_lifetime: leak_timeout alone must start the background sweep.
    options = {"max_idle": None, "max_lifetime": None, "min_size": 1, "max_size": 1, **options}
    return Pool(sqlite3, ":memory:", **options)


def leak_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "poolkit.pool" and r.levelno == logging.WARNING and "leak_timeout" in r.msg
    ]


def frames(message: str) -> list[tuple[str, int, str]]:
    """(file, line, function) of each frame in a leak warning, outermost first."""
    found = re.findall(r'^  File "(.+)", line (\d+), in (\S+)$', message, flags=re.MULTILINE)
    return [(path, int(line), name) for path, line, name in found]


async def warned(caplog: pytest.LogCaptureFixture, count: int = 1) -> None:
    with anyio.fail_after(HANG):
        while len(leak_warnings(caplog)) < count:
            await anyio.sleep(0.005)


@asynccontextmanager
async def checkout(pool: Pool, how: str) -> AsyncIterator[AsyncConnection]:
    """A connection taken the way ``how`` says; the innermost frame the warning must name."""
    if how == "connection":
        async with pool.connection() as conn:
            yield conn
    elif how == "acquire":
        conn = await pool.acquire()
        try:
            yield conn
        finally:
            pool.release(conn)
    else:
        async with pool.transaction() as conn:
            yield conn


async def test_held_connection_warns_once_naming_where_it_was_acquired(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="poolkit")
    async with make_pool(leak_timeout=LEAK, name="leaky") as pool:
        line = sys._getframe().f_lineno + 1
        async with pool.connection() as conn:
            await warned(caplog)
            await anyio.sleep(SWEEPS)
        [message] = leak_warnings(caplog)
    assert message.startswith(f"pool leaky: connection #{conn.id} has been held for ")
    assert "(leak_timeout=0.05 s)" in message
    test = "test_held_connection_warns_once_naming_where_it_was_acquired"
    assert frames(message)[-1] == (__file__, line, test)
    assert "async with pool.connection() as conn:" in message  # the source line, read lazily
    assert "came back after" in caplog.text  # INFO once it was returned


@pytest.mark.parametrize("how", ["connection", "acquire", "transaction"])
async def test_the_stack_starts_at_the_caller_not_inside_poolkit(
    how: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with make_pool(leak_timeout=LEAK) as pool, checkout(pool, how):
        await warned(caplog)
    [message] = leak_warnings(caplog)
    path, _, name = frames(message)[-1]
    assert (path, name) == (__file__, "checkout")
    assert "test_the_stack_starts_at_the_caller_not_inside_poolkit" in message
    assert not [f for f in frames(message) if f[0].startswith(POOLKIT)]


async def test_connection_returned_in_time_gives_no_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events: list[PoolEvent] = []
    async with make_pool(leak_timeout=0.2) as pool:
        pool.add_listener(events.append)
        for _ in range(3):
            async with pool.connection() as conn:
                await conn.execute("SELECT 1")
        # Held past leak_timeout many times over, but idle: idle connections never leak.
        await anyio.sleep(0.5)
    assert leak_warnings(caplog) == []
    assert "leak" not in [e.kind for e in events]


async def test_off_by_default_even_when_held_long(caplog: pytest.LogCaptureFixture) -> None:
    events: list[PoolEvent] = []
    async with make_pool(max_idle=LEAK) as pool:  # the sweep runs, as often as with LEAK
        pool.add_listener(events.append)
        async with pool.connection() as conn:
            assert conn._conn.acquired_from is None  # no stack recorded at checkout
            await anyio.sleep(0.3)
    assert leak_warnings(caplog) == []
    assert "leak" not in [e.kind for e in events]


async def test_each_checkout_can_warn_once(caplog: pytest.LogCaptureFixture) -> None:
    async with make_pool(leak_timeout=LEAK) as pool:
        async with pool.connection() as first:
            await warned(caplog)
        async with pool.connection() as second:
            await warned(caplog, 2)
            await anyio.sleep(SWEEPS)
    assert first.id == second.id
    assert len(leak_warnings(caplog)) == 2


async def test_warns_once_per_checkout_virtual_clock(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="poolkit")
    clock = FakeClock()
    async with make_pool(leak_timeout=30.0, clock=clock) as pool:
        async with pool.connection():
            clock.advance(29.0)
            pool._maintain()
            assert leak_warnings(caplog) == []
            clock.advance(1.0)
            pool._maintain()
            assert len(leak_warnings(caplog)) == 1
            clock.advance(100.0)
            pool._maintain()
            assert len(leak_warnings(caplog)) == 1
        [message] = leak_warnings(caplog)
        assert "held for 30 s (leak_timeout=30 s)" in message
        assert "came back after 130 s" in caplog.text


async def test_leak_event_carries_the_stack_and_how_long() -> None:
    events: list[PoolEvent] = []
    async with make_pool(leak_timeout=LEAK, name="ev") as pool:
        pool.add_listener(events.append)
        async with pool.connection() as conn:
            with anyio.fail_after(HANG):
                while "leak" not in [e.kind for e in events]:
                    await anyio.sleep(0.005)
            await anyio.sleep(SWEEPS)
    [leak] = [e for e in events if e.kind == "leak"]
    assert (leak.pool, leak.connection_id) == ("ev", conn.id)
    assert leak.extra["held"] >= LEAK
    assert leak.detail is not None
    assert "test_leak_event_carries_the_stack_and_how_long" in leak.detail


async def test_stack_text_is_redacted(caplog: pytest.LogCaptureFixture) -> None:
    async with make_pool(leak_timeout=LEAK, secrets=[PASSWORD]) as pool:
        async with pool.connection():  # Pw-9f3kq-Zx7-secret, as a password pasted in code
            await warned(caplog)
    [message] = leak_warnings(caplog)
    assert "as a password pasted in code" in message and PASSWORD not in message


@pytest.mark.parametrize(
    ("value", "error"),
    [(0, ValueError), (-1.0, ValueError), (float("nan"), ValueError), ("x", TypeError)],
)
def test_bad_leak_timeout_is_refused(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"leak_timeout must be"):
        Pool(sqlite3, ":memory:", leak_timeout=value)  # type: ignore[arg-type]


def test_leak_timeout_sets_the_sweep_interval() -> None:
    assert _maintenance_interval(None, None, None) is None
    assert _maintenance_interval(None, None, 2.0) == 0.5
    assert _maintenance_interval(600.0, 3600.0, 20.0) == 5.0
    assert _maintenance_interval(600.0, 3600.0, None) == 30.0
    assert _maintenance_interval(None, None, 0.001) == 0.01
