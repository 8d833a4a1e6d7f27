"""The server's side of a check: a plain session that watches and acts on a pool's sessions.

Load and fault checks judge a pool by what the database sees, not by what the pool reports:
how many sessions it holds (marked with a tag, see :meth:`Target.tagged`), whether a
statement still runs, and they kill sessions as an administrator would. :class:`Watch` does
that from one plain driver connection of its own; its blocking calls run on a worker thread.
Every wait here is bounded, so a hang fails the check instead of stalling the run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread

from poolkit.conformance._targets import SessionCounter, Target

from ._support import not_supported, rows

__all__ = [
    "HANG",
    "LONG",
    "Watch",
    "calls",
    "no_leak",
    "require",
    "scalar",
    "serves",
    "session_of",
    "until",
    "watched",
]

#: seconds a server-side sleep would run if nothing stopped it
LONG = 30
#: a bound only a hang can exceed (well below LONG: it tells "stopped" from "ran to its end")
HANG = 10.0


def require(target: Target, *needs: str) -> None:
    """End the check as "not supported" when the target cannot do all of ``needs``."""
    d = target.dialect
    have = {
        "session_id": bool(d.session_id),
        "kill": bool(d.kill(1)),
        "alive": bool(d.alive(1)),
        "running": bool(d.running(1)) or d.running_view is not None,
        "statement_timeout": bool(d.statement_timeout(1)),
        "deadlock_codes": bool(d.deadlock_codes),
        "sessions": target.tagger is not None,
    }
    names = {"sessions": "a server-side session count (Target.tagger)"}
    missing = [
        names.get(n, f"dialect.{n}") + (f" ({d.why_not[n]})" if n in d.why_not else "")
        for n in needs
        if not have[n]
    ]
    if missing:
        not_supported(f"{target.id} lacks {', '.join(missing)}")


async def until(check: Callable[[], Awaitable[bool]], what: str, within: float = HANG) -> None:
    """Poll ``check`` until it holds; fail the check if it does not within ``within`` s."""
    with anyio.move_on_after(within):
        while True:  # the server's state, polled: nothing here could set an event
            if await check():
                return
            await anyio.sleep(0.02)
    # AssertionError, not pytest.fail(): inside a task group an Exception keeps its report
    raise AssertionError(f"not within {within:g} s: {what}")


async def no_leak(watch: Watch, max_size: int) -> None:
    """The pool's sessions on the server come back to at most ``max_size``."""

    async def within_bound() -> bool:
        return await watch.sessions() <= max_size

    await until(within_bound, f"the pool's sessions to come back to <= {max_size}")


async def scalar(conn: Any, value: int) -> Any:
    """``SELECT value * 2`` on a pooled connection: a wrong or stale answer shows."""
    found = await rows(await conn.execute(f"SELECT {int(value)} * 2"))
    assert found == [(value * 2,)], f"SELECT {value} * 2 answered {found!r}"
    return found[0][0]


async def session_of(conn: Any, target: Target) -> int:
    """The server's id of a pooled connection's session."""
    found = await rows(await conn.execute(target.dialect.session_id))
    assert len(found) == 1, found
    return int(found[0][0])


async def serves(pool: Any, target: Target) -> list[int]:
    """All ``max_size`` connections at once, each answering correctly; their session ids."""
    ids: list[int] = []
    with anyio.fail_after(HANG):
        async with AsyncExitStack() as stack:
            for i in range(pool.max_size):
                conn = await stack.enter_async_context(pool.connection(timeout=HANG))
                await scalar(conn, 100 + i)
                if target.dialect.session_id:
                    ids.append(await session_of(conn, target))
    if ids:
        assert len(set(ids)) == len(ids), f"one session handed out twice at once: {ids}"
    return ids


class Watch:
    """One plain session on the target, counting a pool's tagged sessions and acting on them.

    Where the count cannot run on a plain session (PgBouncer: its admin console), the
    target's ``counter`` gives a second connection that counts.
    """

    def __init__(
        self,
        target: Target,
        raw: Any,
        count_sql: str,
        connect: dict[str, Any],
        counter: SessionCounter | None = None,
    ) -> None:
        self.target = target
        self._raw = raw
        self._count_sql = count_sql
        self._counter = counter
        #: ``args`` and ``kwargs`` for ``adapter.pool(...)``: its sessions carry the tag
        self.connect = connect

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        cur = self._raw.cursor()
        try:
            cur.execute(sql)
            found = [tuple(r) for r in cur.fetchall()] if cur.description is not None else []
        finally:
            cur.close()
        # PostgreSQL snapshots pg_stat_activity per transaction: end it to see the present
        self._raw.commit()
        return found

    async def query(self, sql: str) -> list[tuple[Any, ...]]:
        return await anyio.to_thread.run_sync(self._query, sql)

    async def sessions(self) -> int:
        """How many of the pool's (tagged) sessions the server has now."""
        if self._counter is not None:
            return await anyio.to_thread.run_sync(self._counter.count, self._count_sql)
        return int((await self.query(self._count_sql))[0][0])

    async def running(self, pid: int) -> int:
        """How many statements session ``pid`` is executing now."""
        d = self.target.dialect
        if d.running_view is not None:
            return d.running_view(self.target.module, pid)
        return int((await self.query(d.running(pid)))[0][0])

    async def alive(self, pid: int) -> bool:
        """Whether session ``pid`` is still on the server."""
        return int((await self.query(self.target.dialect.alive(pid)))[0][0]) > 0

    async def kill(self, pid: int) -> None:
        """End session ``pid`` as an administrator would."""
        await self.query(self.target.dialect.kill(pid))

    async def close(self) -> None:
        if self._counter is not None:
            await anyio.to_thread.run_sync(self._counter.close)
        await anyio.to_thread.run_sync(self._raw.close)


async def calls(pool: Any, target: Target, count: int) -> list[BaseException]:
    """``count`` calls one after another, each on a connection of its own; the driver errors
    they raised (a wrong answer or any other error fails the check)."""
    failed: list[BaseException] = []
    with anyio.fail_after(HANG * 2):
        for i in range(count):
            try:
                async with pool.connection(timeout=HANG) as conn:
                    await scalar(conn, 200 + i)
            except target.module.Error as exc:
                failed.append(exc)
    return failed


async def burst(pool: Any, target: Target, count: int) -> list[BaseException]:
    """``count`` callers at once, each with a connection of its own for one call; the driver
    errors they raised (a wrong answer or any other error fails the check)."""
    failed: list[BaseException] = []

    async def one(i: int) -> None:
        try:
            async with pool.connection(timeout=HANG) as conn:
                await scalar(conn, 300 + i)
        except target.module.Error as exc:
            failed.append(exc)

    with anyio.fail_after(HANG * 2):
        async with anyio.create_task_group() as tg:
            for i in range(count):
                tg.start_soon(one, i)
    return failed


@asynccontextmanager
async def watched(target: Target, pool_target: Target | None = None) -> AsyncIterator[Watch]:
    """A :class:`Watch` over sessions opened with its ``connect`` arguments.

    The watch connects to ``target`` directly; the pool's connect arguments are those of
    ``pool_target`` (default: the same), say the target reached through a fault proxy.
    """
    with (pool_target or target).tagged() as (args, kwargs, count_sql):
        raw = await anyio.to_thread.run_sync(target.connect)
        counter = None
        try:
            if target.counter is not None:
                counter = await anyio.to_thread.run_sync(target.counter)
        except BaseException:
            raw.close()
            raise
        watch = Watch(target, raw, count_sql, {"args": args, "kwargs": kwargs}, counter)
        try:
            yield watch
        finally:
            with anyio.CancelScope(shield=True):
                await watch.close()
