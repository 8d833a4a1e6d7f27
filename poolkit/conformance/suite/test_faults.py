"""Real faults on real servers: a session killed mid-query, every session killed at once, a
statement timeout, a deadlock, a long query cancelled by its caller. After each the pool
serves correct results and holds no more sessions than it may.

Time bounds only tell "returned" from "hung"; no check measures speed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

from poolkit.conformance._targets import Target, error_codes

from ._server import (
    HANG,
    LONG,
    Watch,
    burst,
    calls,
    no_leak,
    require,
    scalar,
    serves,
    session_of,
    until,
    watched,
)
from ._support import rows

pytestmark = pytest.mark.anyio


async def stopped(watch: Watch, pid: int) -> None:
    """Session ``pid`` runs no statement any more (bounded well below the LONG sleep)."""

    async def idle() -> bool:
        return await watch.running(pid) == 0

    await until(idle, f"session {pid} to stop running its statement")


async def test_session_killed_mid_query(target: Target, adapter: Any) -> None:
    """An administrator kills a pooled session while it runs a long statement: the caller
    gets a driver error at once, the pool replaces the session and leaks none."""
    require(target, "session_id", "kill", "running", "sessions")
    d = target.dialect
    max_size = 2
    async with watched(target) as watch:
        async with adapter.pool(
            target, min_size=1, max_size=max_size, timeout=HANG, **watch.connect
        ) as pool:
            pids: list[int] = []
            outcome: list[BaseException | str] = []
            started = anyio.Event()

            async def victim() -> None:
                try:
                    async with pool.connection() as conn:
                        pids.append(await session_of(conn, target))
                        started.set()
                        await rows(await conn.execute(d.sleep(LONG)))
                    outcome.append("the statement ran to its end")
                except Exception as exc:
                    outcome.append(exc)

            with anyio.fail_after(HANG * 2):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(victim)
                    await started.wait()

                    async def sleeping() -> bool:
                        return await watch.running(pids[0]) > 0

                    await until(sleeping, "the statement to run on the server")
                    await watch.kill(pids[0])
            assert len(outcome) == 1
            assert isinstance(outcome[0], target.module.Error), repr(outcome[0])
            await stopped(watch, pids[0])
            ids = await serves(pool, target)
            assert pids[0] not in ids, "the killed session was handed out again"
            await no_leak(watch, max_size)


@pytest.mark.requires("restart_recovery")
async def test_killing_every_session_costs_at_most_one_call(target: Target, adapter: Any) -> None:
    """An administrator ends every session of an idle pool at once, as a server restart or a
    failover does. Of the calls that follow, one after another, at most one fails: the first
    disconnect makes the pool check the other connections before it hands them out. Then
    every call answers correctly, none of the killed sessions is handed out, none leaks."""
    await _after_every_session_is_killed(target, adapter, calls, "calls")


@pytest.mark.requires("restart_burst")
async def test_a_burst_after_every_session_is_killed_costs_at_most_one_call(
    target: Target, adapter: Any
) -> None:
    """An administrator ends every session of an idle pool at once (a restart, for real),
    then many callers arrive together, each wanting one call: at most one of them fails
    (the pool must not hand each caller one of its dead connections). Then every call
    answers correctly, none of the killed sessions is handed out, none leaks."""
    await _after_every_session_is_killed(target, adapter, burst, "concurrent calls")


async def _after_every_session_is_killed(
    target: Target,
    adapter: Any,
    run: Callable[[Any, Target, int], Awaitable[list[BaseException]]],
    what: str,
) -> None:
    """A pool of 3 idle connections whose sessions are all killed; then ``run`` makes 12
    calls: at most one may fail, and the pool serves, with new sessions, and leaks none."""
    require(target, "session_id", "kill", "alive", "sessions")
    size = 3
    async with watched(target) as watch:
        async with adapter.pool(
            target, min_size=size, max_size=size, timeout=HANG, **watch.connect
        ) as pool:
            pids = await serves(pool, target)
            for pid in pids:
                await watch.kill(pid)

            async def all_gone() -> bool:
                return not any([await watch.alive(pid) for pid in pids])

            await until(all_gone, "the killed sessions to leave the server")
            failed = await run(pool, target, 4 * size)
            assert len(failed) <= 1, (
                f"{len(failed)} of {4 * size} {what} failed after a restart of "
                f"{size} sessions: {failed[:2]!r}"
            )
            ids = await serves(pool, target)
            assert not set(ids) & set(pids), "a killed session was handed out again"
            await no_leak(watch, size)


async def test_statement_timeout(target: Target, adapter: Any) -> None:
    """A server-side statement timeout stops a long statement with the database's error; the
    same connection and then the pool serve correct results."""
    require(target, "statement_timeout")
    d = target.dialect
    async with adapter.pool(target, min_size=1, max_size=1, timeout=HANG) as pool:
        with anyio.fail_after(HANG):
            async with pool.connection() as conn:
                await conn.execute(d.statement_timeout(200))
                await conn.commit()
                with pytest.raises(target.module.Error) as info:
                    await rows(await conn.execute(d.sleep(LONG)))
                if d.timeout_codes:
                    codes = error_codes(info.value)
                    assert codes & set(d.timeout_codes), f"{info.value!r} (codes {codes})"
                await conn.rollback()
                await scalar(conn, 21)
                await conn.execute(d.statement_timeout(0))  # 0: no timeout, as before
                await conn.commit()
        for i in range(2):
            with anyio.fail_after(HANG):
                async with pool.connection() as conn:
                    await scalar(conn, 30 + i)
                    await rows(await conn.execute(d.sleep(0.3)))  # no timeout left behind
        await serves(pool, target)


async def test_deadlock_has_one_victim(target: Target, adapter: Any) -> None:
    """Two pooled connections lock two rows in opposite order: the database picks one victim
    (PostgreSQL 40P01, MySQL 1213, SQL Server 1205), the other commits, and both connections
    serve on. SQLite locks the whole database, not rows: there both read, then both try to
    write, and SQLite refuses the second upgrade at once (SQLITE_BUSY) rather than let the
    two wait on each other; the first commits."""
    require(target, "deadlock_codes")
    d = target.dialect
    with target.table(f"id {d.int_pk}, n INTEGER") as table:
        for key in (1, 2):
            target.run(f"INSERT INTO {table} (id, n) VALUES ({key}, 0)")
        async with adapter.pool(target, min_size=2, max_size=2, timeout=HANG) as pool:
            read = {1: anyio.Event(), 2: anyio.Event()}
            locked = {1: anyio.Event(), 2: anyio.Event()}
            outcome: dict[int, BaseException | str] = {}

            async def side(mine: int, other: int) -> None:
                try:
                    async with pool.connection() as conn:
                        if d.begin:
                            await conn.execute(d.begin)
                        await rows(await conn.execute(f"SELECT n FROM {table} WHERE id = {mine}"))
                        read[mine].set()
                        await read[other].wait()
                        try:
                            await conn.execute(d.lock_row.format(table=table, id=mine))
                        finally:
                            locked[mine].set()
                        await locked[other].wait()
                        await conn.execute(d.lock_row.format(table=table, id=other))
                        await conn.commit()
                    outcome[mine] = "committed"
                except target.module.Error as exc:
                    outcome[mine] = exc
                finally:  # never leave the other side waiting
                    read[mine].set()
                    locked[mine].set()

            with anyio.fail_after(HANG * 2):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(side, 1, 2)
                    tg.start_soon(side, 2, 1)
            errors = [v for v in outcome.values() if isinstance(v, BaseException)]
            assert len(errors) == 1 and "committed" in outcome.values(), outcome
            codes = error_codes(errors[0])
            assert codes & set(d.deadlock_codes), f"{errors[0]!r} (codes {codes})"
            await serves(pool, target)
            # the victim's work is undone, the survivor's committed: each row moved once
            async with pool.connection(timeout=HANG) as conn:
                found = await rows(await conn.execute(f"SELECT id, n FROM {table} ORDER BY id"))
                assert found == [(1, 1), (2, 1)]
                await conn.rollback()
        assert target.run(f"SELECT id, n FROM {table} ORDER BY id") == [(1, 1), (2, 1)]


@pytest.mark.requires("cancel_on_caller_cancel")
async def test_caller_cancel_stops_the_statement_on_the_server(
    target: Target, adapter: Any
) -> None:
    """A caller cancelled (cancel scope) during a long statement sees its cancellation, and
    the statement stops on the server: the session goes idle well before the statement
    would have ended. On sqlite3, with no session view, the pool's only connection must
    answer the next caller well before the statement would have ended."""
    if target.driver == "sqlite3":
        await _cancel_in_process(target, adapter)
        return
    require(target, "session_id", "running", "sessions")
    d = target.dialect
    max_size = 1
    async with watched(target) as watch:
        async with adapter.pool(
            target, min_size=1, max_size=max_size, timeout=HANG, **watch.connect
        ) as pool:
            pids: list[int] = []
            started = anyio.Event()
            scope = anyio.CancelScope()
            ran_out: list[str] = []

            async def caller() -> None:
                with scope:
                    async with pool.connection() as conn:
                        pids.append(await session_of(conn, target))
                        started.set()
                        await rows(await conn.execute(d.sleep(LONG)))
                        ran_out.append("the statement ran to its end")

            with anyio.fail_after(HANG * 2):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(caller)
                    await started.wait()

                    async def sleeping() -> bool:
                        return await watch.running(pids[0]) > 0

                    await until(sleeping, "the statement to run on the server")
                    scope.cancel()
            assert scope.cancelled_caught and not ran_out
            await stopped(watch, pids[0])
            await serves(pool, target)
            await no_leak(watch, max_size)


async def _cancel_in_process(target: Target, adapter: Any) -> None:
    """sqlite3 runs the statement in the process, on the connection's thread: with one
    connection, the next caller is served only once that statement has stopped."""
    async with adapter.pool(target, min_size=1, max_size=1, timeout=HANG * 2) as pool:
        started = anyio.Event()
        scope = anyio.CancelScope()
        ran_out: list[str] = []

        async def caller() -> None:
            with scope:
                async with pool.connection() as conn:
                    started.set()
                    await rows(await conn.execute(target.dialect.sleep(LONG)))
                    ran_out.append("the statement ran to its end")

        with anyio.fail_after(HANG):
            async with anyio.create_task_group() as tg:
                tg.start_soon(caller)
                await started.wait()
                await anyio.sleep(0.2)  # into the statement: nothing to observe it by here
                scope.cancel()
        assert scope.cancelled_caught and not ran_out
        with anyio.fail_after(HANG):  # the statement alone would run for LONG s or more
            async with pool.connection(timeout=HANG) as conn:
                await scalar(conn, 21)
