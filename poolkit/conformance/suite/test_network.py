"""A broken network between the pool and a real server, made by a loopback fault proxy
(:class:`poolkit.conformance.proxy.FaultProxy`): a server that accepts connections and never
answers, a result that stalls halfway, every connection reset at once, connects refused.

Each check runs against targets reached over TCP on a loopback address; others report "not
supported". Time bounds only tell "returned" from "hung"; no check measures speed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
import pytest

from poolkit.conformance._targets import Target
from poolkit.conformance.proxy import FaultProxy, ProxyError

from ._server import HANG, burst, calls, no_leak, require, scalar, serves, watched
from ._support import not_supported, rows

pytestmark = pytest.mark.anyio

#: seconds a caller is willing to wait in these checks (well below HANG)
PATIENCE = 1.0


@asynccontextmanager
async def proxied(target: Target) -> AsyncIterator[tuple[FaultProxy, Target]]:
    """A fault proxy in front of the target's server, and the target reached through it."""
    address = target.address
    if address is None:
        not_supported(f"{target.id} is not reached over TCP")
    try:
        proxy = FaultProxy(*address, lifetime=HANG * 12).start()
    except ProxyError as exc:
        not_supported(f"the fault proxy cannot stand in front of {target.id}: {exc}")
    try:
        yield proxy, target.rehosted("127.0.0.1", proxy.port)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(proxy.stop)


@pytest.mark.requires("acquire_timeout")
async def test_connect_to_a_deaf_server_times_out(target: Target, adapter: Any) -> None:
    """The server accepts TCP connections and never answers (a hung host, a black-holed
    network). An acquire ends with the pool's timeout error after its own timeout, however
    long the driver would wait; once the server answers again, the same pool serves."""
    async with proxied(target) as (proxy, via):
        proxy.deafen()
        with anyio.fail_after(HANG * 2):
            async with adapter.pool(via, min_size=0, max_size=2, timeout=HANG) as pool:
                with anyio.fail_after(HANG), pytest.raises(pool.timeout_error):
                    async with pool.connection(timeout=PATIENCE) as conn:
                        await scalar(conn, 1)
                proxy.hear()
                await serves(pool, via)


async def test_a_call_stalled_mid_result_ends_with_its_caller(target: Target, adapter: Any) -> None:
    """The network stalls halfway through a large result. The caller's timeout (a cancel
    scope) ends the call in bounded time, although the driver is blocked reading; once the
    network is back, the pool's only connection (or its replacement) answers correctly:
    nothing of the stalled result reaches the next caller."""
    require_rows(target)
    async with proxied(target) as (proxy, via):
        async with adapter.pool(via, min_size=1, max_size=1, timeout=HANG) as pool:
            await serves(pool, via)
            proxy.deafen_after(32 * 1024)
            with anyio.fail_after(HANG):
                with anyio.move_on_after(PATIENCE) as scope:
                    async with pool.connection() as conn:
                        await rows(await conn.execute(via.dialect.many_rows(100_000)))
                assert scope.cancelled_caught, "the stalled result arrived in full"
            proxy.hear()
            await serves(pool, via)
            await serves(pool, via)


@pytest.mark.requires("query_timeout")
async def test_query_timeout_ends_a_call_stalled_mid_result(target: Target, adapter: Any) -> None:
    """The network stalls halfway through a large result, and the pool's own per-call timeout
    (``query_timeout=``) ends the call with a TimeoutError; once the network is back the
    pool serves correct results."""
    require_rows(target)
    async with proxied(target) as (proxy, via):
        async with adapter.pool(
            via, min_size=1, max_size=1, timeout=HANG, query_timeout=PATIENCE * 2
        ) as pool:
            await serves(pool, via)
            proxy.deafen_after(32 * 1024)
            with anyio.fail_after(HANG), pytest.raises(TimeoutError):
                async with pool.connection() as conn:
                    await rows(await conn.execute(via.dialect.many_rows(100_000)))
            proxy.hear()
            await serves(pool, via)


@pytest.mark.requires("restart_recovery")
async def test_every_connection_reset_costs_at_most_one_call(target: Target, adapter: Any) -> None:
    """Every connection of an idle pool is reset at once (TCP RST), as a failover or a
    restart behind a load balancer does. Of the calls that follow, one after another, at most
    one fails; then all answer correctly, and the pool holds no more sessions than it may."""
    await _after_every_connection_reset(target, adapter, 3, calls, "calls")


@pytest.mark.requires("restart_burst")
async def test_a_burst_after_every_connection_reset_costs_at_most_one_call(
    target: Target, adapter: Any
) -> None:
    """Every connection of an idle pool is reset at once (a restart, as the client sees it),
    then many callers arrive together, each wanting one call: at most one of them fails (the
    pool must not hand each caller one of its dead connections), and the pool holds no more
    sessions than it may."""
    await _after_every_connection_reset(target, adapter, 4, burst, "concurrent calls")


async def _after_every_connection_reset(
    target: Target,
    adapter: Any,
    size: int,
    run: Callable[[Any, Target, int], Awaitable[list[BaseException]]],
    what: str,
) -> None:
    """A pool of ``size`` idle connections, all reset at once; then ``run`` makes 4 x size
    calls: at most one may fail, and the pool serves and holds at most ``size`` sessions."""
    require(target, "sessions")
    async with proxied(target) as (proxy, via), watched(target, via) as watch:
        async with adapter.pool(
            via, min_size=size, max_size=size, timeout=HANG, **watch.connect
        ) as pool:
            await serves(pool, via)
            await quiet(proxy)  # the returned connections' resets are done: all idle
            assert proxy.reset_all() >= size
            failed = await run(pool, via, 4 * size)
            assert len(failed) <= 1, (
                f"{len(failed)} of {4 * size} {what} failed after {size} connections were "
                f"reset: {failed[:2]!r}"
            )
            await serves(pool, via)
            await no_leak(watch, size)


@pytest.mark.requires("bounded_close")
async def test_close_on_a_frozen_server_releases_every_caller(target: Target, adapter: Any) -> None:
    """The server stops answering (frozen: no reset, no refusal) while two callers' statements
    run. The pool's default ``close()`` returns in bounded time, and both callers are released
    (with an error) soon after it, not left blocked in the driver; once the server answers
    again, none of the pool's sessions is left on it."""
    require(target, "sessions")
    released: list[float] = []
    both = anyio.Event()
    async with proxied(target) as (proxy, via), watched(target, via) as watch:
        async with adapter.pool(via, min_size=2, max_size=2, timeout=HANG, **watch.connect) as pool:
            await serves(pool, via)

            async def caller() -> None:
                try:
                    async with pool.connection(timeout=HANG) as conn:
                        await conn.execute(via.dialect.sleep(HANG))
                except Exception:
                    pass
                finally:
                    released.append(anyio.current_time())
                    if len(released) == 2:
                        both.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(caller)
                tg.start_soon(caller)
                await anyio.sleep(0.5)  # both statements run on the server
                proxy.deafen()
                try:
                    with anyio.fail_after(HANG):
                        await pool.close()
                    closed = anyio.current_time()
                    with anyio.move_on_after(PATIENCE * 2):
                        await both.wait()
                    late = [t - closed for t in released]
                    assert len(released) == 2, (
                        f"{2 - len(released)} of 2 callers still blocked in the driver "
                        f"{PATIENCE * 2:g} s after close() returned"
                    )
                    assert max(late) <= PATIENCE * 2, late
                finally:
                    proxy.hear()
                    tg.cancel_scope.cancel()
        await no_leak(watch, 0)


#: how long connects are refused before the server accepts again: the back-off grows past
#: PROMPT meanwhile (poolkit's default to ~1.5-3 s; psycopg_pool's attempts come at about
#: 1, 3 and 7 s, so its next one is ~3 s after the server is back)
OUTAGE = 4.0
#: how soon after the server accepts again a waiting caller must be served
PROMPT = 1.0


@pytest.mark.requires("prompt_recovery")
async def test_a_waiting_caller_is_served_once_the_server_accepts_again(
    target: Target, adapter: Any
) -> None:
    """The server goes away (connections reset, connects refused) long enough for the
    pool's reconnect back-off to grow; a caller waits for a connection meanwhile (trying
    again after an error: a pool may hand out a connection it cannot know is dead). Once
    connects are accepted again, the caller is served within a second: recovery follows
    demand, not the back-off clock (which still spaces attempts while nobody waits)."""
    async with proxied(target) as (proxy, via):
        async with adapter.pool(via, min_size=1, max_size=2, timeout=HANG) as pool:
            await serves(pool, via)
            proxy.refuse()
            proxy.reset_all()
            served: list[float] = []

            async def caller() -> None:
                while True:
                    try:
                        async with pool.connection(timeout=HANG) as conn:
                            await scalar(conn, 1)
                    except via.module.Error:  # handed a connection that died
                        await anyio.sleep(0.01)
                        continue
                    served.append(anyio.current_time())
                    return

            with anyio.fail_after(HANG * 2):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(caller)
                    await anyio.sleep(OUTAGE)
                    assert not served, "served while the server refused every connect"
                    proxy.accept()
                    back = anyio.current_time()
            late = served[0] - back
            assert late <= PROMPT, (
                f"the waiting caller was served {late:.2f} s after the server accepted "
                f"connections again (at most {PROMPT:g} s)"
            )
            await serves(pool, via)


@pytest.mark.requires("acquire_timeout")
async def test_pool_heals_once_the_server_accepts_again(target: Target, adapter: Any) -> None:
    """The server goes away (connections reset, new connects refused) for a few seconds of
    failed reconnects. Callers meanwhile get an error, not a hang; once connects are accepted
    again, the same pool serves without being reopened."""
    async with proxied(target) as (proxy, via):
        async with adapter.pool(via, min_size=1, max_size=2, timeout=HANG) as pool:
            await serves(pool, via)
            proxy.refuse()
            proxy.reset_all()
            for i in range(3):
                with (
                    anyio.fail_after(HANG),
                    pytest.raises((pool.timeout_error, via.module.Error)),
                ):
                    async with pool.connection(timeout=PATIENCE) as conn:
                        await scalar(conn, i)
            proxy.accept()
            await serves(pool, via)


async def quiet(proxy: FaultProxy, still: float = 0.2) -> None:
    """Until no byte crossed the proxy for ``still`` seconds (bounded by HANG)."""
    with anyio.fail_after(HANG):
        seen = -1
        while seen != proxy.forwarded:
            seen = proxy.forwarded
            await anyio.sleep(still)


def require_rows(target: Target) -> None:
    if not target.dialect.many_rows(1):
        not_supported(f"{target.id} lacks dialect.many_rows")
