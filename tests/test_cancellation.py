"""Cancellation, timeouts and races: waiting, mid-query, health checks, busy connections.

Every test runs on asyncio and trio. Time bounds here are deliberately generous: they only
tell "returned" from "hung until the statement finished", never measure speed.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

import poolkit
from tests.backends import Backend

pytestmark = pytest.mark.anyio

#: seconds the long server-side statement would run if nothing stopped it
LONG = 5
#: an upper bound that only a hang (waiting for the whole statement) can exceed
HANG = 3.0
#: recursive-CTE rows sqlite steps through per second, roughly (it is CPU bound)
SQLITE_ROWS_PER_SECOND = 8_000_000


def new_tag() -> str:
    return f"pk-{uuid.uuid4().hex[:16]}"


def long_sql(backend: Backend, tag: str, seconds: float = LONG) -> str:
    """A statement that runs for ``seconds`` or so unless cancelled, marked with ``tag``."""
    if backend.name == "sqlite":  # a counting CTE: interruptible, no server needed
        rows = int(seconds * SQLITE_ROWS_PER_SECOND)
        body = (
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
            f"WHERE x < {rows}) SELECT count(*) FROM c"
        )
    else:
        body = backend.sleep_sql(seconds)
    return f"/* {tag} */ {body}"


def cancel_helpers_running(pool: poolkit.Pool) -> bool:
    """Whether a driver cancel of this pool is still on its way (helper threads)."""
    prefix = f"poolkit-{pool.name}-"
    return any(
        t.name.startswith(prefix) and t.name.endswith("-cancel") and t.is_alive()
        for t in threading.enumerate()
    )


def running_on_server(backend: Backend, tag: str) -> int:
    """How many other sessions are executing the statement marked ``tag`` right now."""
    if backend.name == "postgres":
        sql = (
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE state = 'active' AND pid <> pg_backend_pid() AND query LIKE %s"
        )
    elif backend.name == "mysql":
        sql = (
            "SELECT count(*) FROM information_schema.PROCESSLIST "
            "WHERE COMMAND = 'Query' AND ID <> CONNECTION_ID() AND INFO LIKE %s"
        )
    elif backend.name == "fake":
        return sum(1 for _, _, sql in backend.driver.running() if sql and tag in sql)
    else:
        raise AssertionError(f"{backend.name} has no server to inspect")
    return int(backend.run(sql, (f"%{tag}%",))[0][0])


async def wait_until(pred: Callable[[], bool], what: str, within: float = 5.0) -> None:
    with anyio.move_on_after(within):
        while not pred():
            await anyio.sleep(0.005)
        return
    pytest.fail(f"not within {within} s: {what}")


async def wait_until_async(
    pred: Callable[[], Awaitable[bool]], what: str, within: float = 5.0
) -> None:
    with anyio.move_on_after(within):
        while not await pred():
            await anyio.sleep(0.05)
        return
    pytest.fail(f"not within {within} s: {what}")


def sqlite_tracer(tag: str) -> tuple[Callable[[Any], None], threading.Event]:
    """A ``configure`` hook, and the event it sets once sqlite starts the ``tag`` statement."""
    started = threading.Event()

    def trace(sql: str) -> None:
        if tag in sql:
            started.set()

    def configure(raw: Any) -> None:
        if hasattr(raw, "set_trace_callback"):
            raw.set_trace_callback(trace)

    return configure, started


async def wait_until_started(backend: Backend, tag: str, sqlite_started: threading.Event) -> None:
    """Until the statement marked ``tag`` really runs on the server (or in sqlite)."""
    if backend.name == "sqlite":
        await wait_until(sqlite_started.is_set, f"{tag} to start in sqlite")
        return

    async def started() -> bool:
        return await anyio.to_thread.run_sync(running_on_server, backend, tag) > 0

    await wait_until_async(started, f"{tag} to start on the server")


async def wait_until_stopped_on_server(backend: Backend, tag: str) -> None:
    async def stopped() -> bool:
        return await anyio.to_thread.run_sync(running_on_server, backend, tag) == 0

    # Bounded well below LONG: a statement that was not really cancelled is still running.
    await wait_until_async(stopped, f"{tag} to stop running on the server", within=HANG)


async def scalar(conn: poolkit.AsyncConnection, backend: Backend, value: int) -> Any:
    """``SELECT value * 2`` through the placeholder style of the backend."""
    cur = await conn.execute(f"SELECT {backend.q(0)} * 2", (value,))
    rows = await cur.fetchall()
    assert len(rows) == 1
    return rows[0][0]


# ----- cancelled while waiting for a connection ----------------------------------------


async def test_cancel_while_waiting(backend: Backend) -> None:
    async with backend.pool(min_size=1, max_size=1, timeout=30) as pool:
        holder = await pool.acquire()
        held_id = holder.id
        try:
            # 1. a deadline (anyio.move_on_after) while queued behind the held connection
            start = anyio.current_time()
            with anyio.move_on_after(0.2) as scope:
                await pool.acquire()
                pytest.fail("acquired a connection while the only one was held")
            assert scope.cancelled_caught
            assert anyio.current_time() - start < HANG
            s = pool.stats()
            assert (s.waiting, s.in_use, s.size, s.timeouts) == (0, 1, 1, 0)

            # 2. CancelScope.cancel() from another task while queued
            cancel_me = anyio.CancelScope()
            outcome: list[str] = []

            async def waiter() -> None:
                try:
                    with cancel_me:
                        async with pool.connection():
                            outcome.append("acquired")
                    outcome.append("cancelled" if cancel_me.cancelled_caught else "fell through")
                except BaseException as exc:
                    outcome.append(f"raised {type(exc).__name__}")
                    raise

            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await wait_until(lambda: pool.stats().waiting == 1, "the waiter to queue")
                cancel_me.cancel()
            assert outcome == ["cancelled"]
            s = pool.stats()
            assert (s.waiting, s.in_use, s.size, s.timeouts) == (0, 1, 1, 0)

            # 3. the held connection goes to the next waiter once released
            served: list[tuple[int, Any]] = []

            async def next_waiter() -> None:
                async with pool.connection(timeout=5) as conn:
                    served.append((conn.id, await scalar(conn, backend, 21)))

            async with anyio.create_task_group() as tg:
                tg.start_soon(next_waiter)
                await wait_until(lambda: pool.stats().waiting == 1, "the next waiter to queue")
                assert served == []
                pool.release(holder)
        finally:
            if not holder.closed:
                pool.release(holder)
        assert served == [(held_id, 42)]
        await wait_until(lambda: pool.stats().idle == 1, "the connection to be idle again")
        s = pool.stats()
        assert (s.waiting, s.in_use, s.size, s.timeouts) == (0, 0, 1, 0)
        assert s.connections_opened == 1


# ----- cancelled mid-query -------------------------------------------------------------


async def test_cancel_mid_query(backend: Backend) -> None:
    tag = new_tag()
    configure, sqlite_started = sqlite_tracer(tag)
    options: dict[str, Any] = {"configure": configure, "check_idle_after": None}
    async with backend.pool(min_size=1, max_size=1, **options) as pool:
        scope = anyio.CancelScope()
        ids: list[int] = []
        finished = anyio.Event()

        async def victim() -> None:
            with scope:
                async with pool.connection() as conn:
                    ids.append(conn.id)
                    await conn.execute(long_sql(backend, tag))
                    pytest.fail("the long statement was not cancelled")
            finished.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(victim)
            await wait_until_started(backend, tag, sqlite_started)
            cancelled_at = anyio.current_time()
            scope.cancel()
            with anyio.fail_after(HANG):
                await finished.wait()
            returned_after = anyio.current_time() - cancelled_at
        assert scope.cancelled_caught
        assert returned_after < HANG
        s = pool.stats()
        assert (s.in_use, s.waiting, s.size) == (0, 0, 1)

        if backend.name != "sqlite":
            await wait_until_stopped_on_server(backend, tag)

        # max_size=1: the next caller gets the same connection, reset and usable, and soon
        # (on sqlite "soon" is what shows the statement was interrupted in the driver).
        with anyio.fail_after(HANG):
            async with pool.connection() as conn:
                assert conn.id == ids[0]
                assert await scalar(conn, backend, 21) == 42
        s = pool.stats()
        assert (s.reset_failures, s.connections_opened, s.query_timeouts) == (0, 1, 0)


async def test_interrupted_connection_is_not_reused_before_its_thread_is_done(
    backend: Backend, table: str
) -> None:
    """A call the driver cannot interrupt (plain Python on the connection's thread) holds
    the connection back until it returns; the reset then rolls back its transaction."""
    started = threading.Event()
    release = threading.Event()
    finished = threading.Event()

    def stuck(raw: Any) -> None:
        cur = raw.cursor()
        cur.execute(f"INSERT INTO {table} (id, name) VALUES (1, 'uncommitted')")
        cur.close()
        started.set()
        release.wait(10)
        finished.set()

    async with backend.pool(min_size=1, max_size=1, check_idle_after=None) as pool:
        ids: list[int] = []
        with anyio.move_on_after(5) as scope:  # a bound for the test, not the mechanism
            async with pool.connection() as conn:
                ids.append(conn.id)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(conn.run, stuck)
                    await wait_until(started.is_set, "the call to start on the worker")
                    tg.cancel_scope.cancel()
        assert not scope.cancelled_caught
        assert not finished.is_set()
        assert pool.stats().in_use == 0

        seen: list[tuple[bool, int, Any]] = []

        async def next_user() -> None:
            async with pool.connection(timeout=10) as conn:
                got_it_after_thread_done = finished.is_set()
                cur = await conn.execute(f"SELECT count(*) FROM {table}")
                row = await cur.fetchone()
                assert row is not None
                (count,) = row
                seen.append((got_it_after_thread_done, conn.id, count))

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(next_user)
                await wait_until(lambda: pool.stats().waiting == 1, "the next user to queue")
                await anyio.sleep(0.2)  # room for a wrong early hand-out to show up
                assert seen == []
                release.set()
        finally:
            release.set()
        # handed out only after the thread left the call; same connection; rolled back
        assert seen == [(True, ids[0], 0)]
        assert pool.stats().reset_failures == 0


async def test_late_driver_cancel_does_not_hit_the_next_user(server: Backend) -> None:
    base = poolkit.profile_for(server.driver)

    def slow_cancel(raw: Any, cursor: Any, reconnect: Callable[[], Any]) -> None:
        time.sleep(0.4)  # the out-of-band cancel is a network round trip (or a new session)
        base.cancel(raw, cursor, reconnect)

    profile = dataclasses.replace(base, cancel=slow_cancel)
    async with server.pool(min_size=1, max_size=1, check_idle_after=None, profile=profile) as pool:
        with anyio.move_on_after(0.05) as scope:
            async with pool.connection() as conn:
                await conn.execute(server.sleep_sql(0.2))  # done before the cancel arrives
        assert scope.cancelled_caught
        async with pool.connection(timeout=5) as conn:
            # a new checkout, a new statement: nothing may cancel it
            cur = await conn.execute(server.sleep_sql(0.6))
            assert await cur.fetchall() in ([("",)], [(0,)])


# ----- per-call timeout= ---------------------------------------------------------------


async def test_query_timeout(backend: Backend) -> None:
    tag = new_tag()
    async with backend.pool(min_size=1, max_size=1, check_idle_after=None) as pool:
        start = anyio.current_time()
        with pytest.raises(poolkit.QueryTimeout) as info:
            async with pool.connection() as conn:
                await conn.execute(long_sql(backend, tag), timeout=0.2)
        assert anyio.current_time() - start < HANG
        assert isinstance(info.value, TimeoutError)
        s = pool.stats()
        assert (s.query_timeouts, s.timeouts, s.in_use) == (1, 0, 0)

        if backend.name != "sqlite":
            await wait_until_stopped_on_server(backend, tag)
        with anyio.fail_after(HANG):
            async with pool.connection() as conn:
                assert await scalar(conn, backend, 4) == 8
                # a call within its timeout is unaffected
                cur = await conn.execute("SELECT 1", timeout=5)
                assert await cur.fetchall() == [(1,)]
        assert pool.stats().query_timeouts == 1


async def test_call_abandoned_before_it_started_never_runs(backend: Backend) -> None:
    tag = new_tag()
    started = threading.Event()
    release = threading.Event()
    executed: list[str] = []  # sqlite: every statement that began running on the connection

    def stuck(raw: Any) -> None:
        started.set()
        release.wait(10)

    def configure(raw: Any) -> None:
        if backend.name == "sqlite":
            raw.set_trace_callback(executed.append)

    options: dict[str, Any] = {"configure": configure, "check_idle_after": None}
    async with backend.pool(min_size=1, max_size=1, **options) as pool:
        try:
            async with pool.connection() as conn:
                # the thread is busy in a call the driver cannot interrupt...
                with anyio.move_on_after(0.2):
                    await conn.run(stuck)
                assert started.is_set()
                # ...so this statement is still queued when its timeout expires
                with pytest.raises(poolkit.QueryTimeout):
                    await conn.execute(long_sql(backend, tag, 0.6), timeout=0.2)
                # the driver cancel has been delivered (to the call that was running)
                await wait_until(lambda: not cancel_helpers_running(pool), "the cancel to land")
                release.set()
            if backend.name == "sqlite":
                async with pool.connection(timeout=30) as conn:  # runs after the queued job
                    assert await scalar(conn, backend, 2) == 4
                assert not [sql for sql in executed if tag in sql]
            else:
                with anyio.move_on_after(1.0):
                    while True:
                        running = await anyio.to_thread.run_sync(running_on_server, backend, tag)
                        assert running == 0, "the abandoned statement started on the server"
                        await anyio.sleep(0.05)
        finally:
            release.set()


# ----- the health check on acquire -----------------------------------------------------


async def test_cancel_during_health_check(backend: Backend) -> None:
    gate = threading.Event()
    in_check = threading.Event()
    block = [False]
    checks: list[int] = []

    def check(raw: Any) -> None:
        checks.append(threading.get_ident())
        if block[0]:
            block[0] = False
            in_check.set()
            gate.wait(10)
        cur = raw.cursor()
        cur.execute("SELECT 1")
        cur.fetchall()
        cur.close()

    created = anyio.current_time()
    async with backend.pool(min_size=1, max_size=1, check=check, check_idle_after=0) as pool:
        async with pool.connection() as conn:
            conn_id = conn.id
        assert len(checks) == 1

        # 1. the caller is cancelled while its health check runs: it leaves at once
        block[0] = True
        scope = anyio.CancelScope()
        finished = anyio.Event()

        async def acquirer() -> None:
            with scope:
                await pool.acquire()
                pytest.fail("acquired through a blocked health check")
            finished.set()

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(acquirer)
                await wait_until(in_check.is_set, "the health check to start")
                scope.cancel()
                with anyio.fail_after(HANG):
                    await finished.wait()
            assert scope.cancelled_caught
            assert not gate.is_set()  # left while the check still ran on the thread
            s = pool.stats()
            assert (s.in_use, s.waiting, s.size, s.timeouts, s.check_failures) == (0, 0, 1, 0, 0)

            # 2. nobody gets the connection until that check returned
            seen: list[tuple[bool, int, Any]] = []

            async def next_user() -> None:
                async with pool.connection(timeout=10) as conn:
                    seen.append((gate.is_set(), conn.id, await scalar(conn, backend, 5)))

            async with anyio.create_task_group() as tg:
                tg.start_soon(next_user)
                await wait_until(lambda: pool.stats().waiting == 1, "the next user to queue")
                await anyio.sleep(0.2)
                assert seen == []
                gate.set()
        finally:
            gate.set()
        assert seen == [(True, conn_id, 10)]
        s = pool.stats()
        assert (s.in_use, s.waiting, s.size, s.check_failures, s.reset_failures) == (0, 0, 1, 0, 0)
        assert s.acquired == 2  # the abandoned acquire handed nothing out
        # "total seconds connections were held by callers" cannot exceed the pool's age
        assert 0 <= s.usage_time_total <= anyio.current_time() - created


async def test_cancelled_first_health_check_does_not_count_as_usage(sqlite: Backend) -> None:
    """Regression: the abandoned check used to add ``now - 0.0`` (the connection's first
    checkout) to usage_time_total, because checked_out_at was only set on hand-out."""
    gate = threading.Event()
    in_check = threading.Event()
    block = [False]

    def check(raw: Any) -> None:
        if block[0]:
            block[0] = False
            in_check.set()
            gate.wait(10)

    created = anyio.current_time()
    async with sqlite.pool(min_size=1, max_size=1, check=check, check_idle_after=0) as pool:
        block[0] = True
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(pool.acquire)
                await wait_until(in_check.is_set, "the health check to start")
                tg.cancel_scope.cancel()
        finally:
            gate.set()
        # Nobody ever held a connection, yet:
        assert pool.stats().usage_time_total <= anyio.current_time() - created


async def test_acquire_timeout_during_health_check(sqlite: Backend) -> None:
    gate = threading.Event()
    in_check = threading.Event()
    block = [False]

    def check(raw: Any) -> None:
        if block[0]:
            block[0] = False
            in_check.set()
            gate.wait(10)

    async with sqlite.pool(min_size=1, max_size=1, check=check, check_idle_after=0) as pool:
        block[0] = True
        try:
            with pytest.raises(poolkit.PoolTimeout):
                await pool.acquire(timeout=0.2)
            assert in_check.is_set()
            s = pool.stats()
            assert (s.timeouts, s.in_use, s.waiting, s.size) == (1, 0, 0, 1)
        finally:
            gate.set()
        async with pool.connection(timeout=5) as conn:
            assert await scalar(conn, sqlite, 3) == 6


# ----- races ---------------------------------------------------------------------------


async def test_acquire_release_race(backend: Backend) -> None:
    max_size = 3
    rng = random.Random(20240501)
    held: set[int] = set()
    counts = {"acquired": 0, "timeout": 0, "cancelled": 0}
    problems: list[str] = []

    async with backend.pool(min_size=1, max_size=max_size, timeout=5) as pool:

        async def use(conn: poolkit.AsyncConnection, query: bool, hold: float) -> None:
            counts["acquired"] += 1
            if conn.id in held:
                problems.append(f"connection #{conn.id} handed to two tasks at once")
            held.add(conn.id)
            size = pool.stats().size
            if size > max_size:
                problems.append(f"size {size} > max_size {max_size}")
            try:
                await anyio.sleep(hold)
                if query:
                    cur = await conn.execute("SELECT 1")
                    if await cur.fetchall() != [(1,)]:
                        problems.append("wrong result")
            finally:
                held.discard(conn.id)

        async def impatient(timeout: float, query: bool, hold: float) -> None:
            try:
                async with pool.connection(timeout=timeout) as conn:
                    await use(conn, query, hold)
            except poolkit.PoolTimeout:
                counts["timeout"] += 1

        async def cancelled(after: float, hold: float) -> None:
            with anyio.move_on_after(after) as scope:
                async with pool.connection(timeout=5) as conn:
                    await use(conn, False, hold)
            if scope.cancelled_caught:
                counts["cancelled"] += 1

        for i in range(200):
            async with anyio.create_task_group() as tg:
                for _ in range(6):
                    tg.start_soon(
                        impatient,
                        rng.choice([0.0005, 0.001, 0.002, 0.005]),
                        rng.random() < 0.3,
                        rng.choice([0, 0, 0.001, 0.002]),
                    )
                tg.start_soon(cancelled, rng.choice([0, 0.001, 0.003]), 0.002)
            s = pool.stats()
            assert (s.in_use, s.waiting) == (0, 0), f"iteration {i}: {s}"
            assert s.size <= max_size, f"iteration {i}: {s}"

        assert problems == []
        s = pool.stats()
        assert (s.in_use, s.waiting) == (0, 0)
        assert s.size <= max_size
        # the race really happened both ways, and the counters agree with what callers saw
        assert min(counts.values()) > 0, counts
        assert s.timeouts == counts["timeout"]
        assert s.acquired == counts["acquired"]
        async with pool.connection(timeout=5) as conn:
            assert await scalar(conn, backend, 50) == 100


# ----- the caller's own cancellation wins ----------------------------------------------


async def test_outer_cancel_is_not_turned_into_pool_timeout(backend: Backend) -> None:
    async with backend.pool(min_size=1, max_size=1) as pool:
        holder = await pool.acquire()
        try:
            # cancelled from outside while the acquire timeout is still far away
            scope = anyio.CancelScope()
            errors: list[BaseException] = []

            async def waiter() -> None:
                try:
                    with scope:
                        await pool.acquire(timeout=10)
                except Exception as exc:
                    errors.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await wait_until(lambda: pool.stats().waiting == 1, "the waiter to queue")
                scope.cancel()
            assert errors == []
            assert scope.cancelled_caught

            # the outer deadline falls just before the acquire timeout: both are pending,
            # the outer one fires first, and that is what the caller must see
            for _ in range(10):
                with anyio.move_on_after(0.02) as outer:
                    try:
                        await pool.acquire(timeout=0.021)
                    except poolkit.PoolTimeout as exc:
                        errors.append(exc)
                assert outer.cancelled_caught
            assert errors == []
            s = pool.stats()
            assert (s.timeouts, s.waiting, s.in_use) == (0, 0, 1)
        finally:
            pool.release(holder)
        async with pool.connection(timeout=5) as conn:
            assert await scalar(conn, backend, 1) == 2


async def test_outer_cancel_is_not_turned_into_query_timeout(backend: Backend) -> None:
    async with backend.pool(min_size=1, max_size=1, check_idle_after=None) as pool:
        errors: list[BaseException] = []
        for _ in range(2):
            with anyio.move_on_after(0.2) as outer:
                async with pool.connection() as conn:
                    try:
                        await conn.execute(long_sql(backend, new_tag()), timeout=0.21)
                    except poolkit.QueryTimeout as exc:
                        errors.append(exc)
            assert outer.cancelled_caught
        assert errors == []
        assert pool.stats().query_timeouts == 0
        with anyio.fail_after(HANG):
            async with pool.connection() as conn:
                assert await scalar(conn, backend, 7) == 14


# ----- one connection, two tasks -------------------------------------------------------


async def test_connection_busy(backend: Backend) -> None:
    started = threading.Event()
    release = threading.Event()

    def slow_answer(raw: Any) -> Any:
        started.set()
        release.wait(10)
        cur = raw.cursor()
        cur.execute("SELECT 6 * 7")
        (value,) = cur.fetchone()
        cur.close()
        return value

    async with backend.pool(min_size=1, max_size=2) as pool:
        async with pool.connection() as conn:
            results: list[Any] = []

            async def first() -> None:
                results.append(await conn.run(slow_answer))

            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(first)
                    await wait_until(started.is_set, "the first call to start")
                    with pytest.raises(poolkit.ConnectionBusy):
                        await conn.execute("SELECT 1")
                    with pytest.raises(poolkit.ConnectionBusy):
                        await conn.commit()
                    release.set()
            finally:
                release.set()
            assert results == [42]
            # free again once the first call is done, and undisturbed by the refused ones
            assert await scalar(conn, backend, 8) == 16
        s = pool.stats()
        assert (s.in_use, s.reset_failures, s.disconnects) == (0, 0, 0)
