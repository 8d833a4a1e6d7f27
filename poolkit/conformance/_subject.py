"""What the stateful machine drives: a pool over the fake driver, behind a small protocol.

The machine (:mod:`poolkit.conformance.stateful`) builds one pool per example with a
:class:`PoolSpec` (the fake driver, sizes, limits on the fake's virtual clock) and talks to it
only through :class:`StatefulPool`. poolkit's own pool is :class:`PoolkitSubject`; another
pool's author writes a class like it and passes its factory to
:func:`~poolkit.conformance.stateful.pool_machine`.

Optional abilities are declared in ``capabilities``; the machine skips the rules and
invariants of the ones a pool lacks, so a small pool can still be checked for what it has.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from poolkit.fakes import FakeDriver

__all__ = ["CAPABILITIES", "Counts", "PoolSpec", "PoolkitSubject", "Sizes", "StatefulPool"]

#: What a pool may declare; the machine uses only the abilities declared.
CAPABILITIES: dict[str, str] = {
    "trio": "runs under trio (not only asyncio)",
    "resize": "resize(min_size, max_size) while open",
    "sizes": "sizes() reports in use / idle / transitional / waiting counts",
    "counts": "counts() reports connections opened, failed connects and connections closed",
    "thread_affinity": "each connection is only ever touched by one thread",
    "query_timeout": "execute(..., timeout=) ends a statement that runs too long",
    "maintenance": "tick() runs the periodic sweep (lifetime, idle) now",
    "max_lifetime": "never hands out a connection older than spec.max_lifetime",
    "rollback_on_return": "a connection released in a transaction is rolled back",
    "check_on_checkout": "an idle connection older than spec.check_idle_after is pinged first",
    "health_check": "check() pings the idle connections now and replaces the dead ones",
}


@dataclass(frozen=True)
class PoolSpec:
    """How the machine wants the pool built. Times named ``virtual`` are on ``clock``."""

    driver: FakeDriver
    min_size: int
    max_size: int
    #: virtual seconds; the pool must read time from ``clock``
    max_lifetime: float
    max_idle: float
    check_idle_after: float
    #: the virtual clock's ``now``: lifetimes, idle times and health-check ages run on it
    clock: Callable[[], float]


@dataclass(frozen=True)
class Sizes:
    """Counts from the pool itself, taken on the event loop."""

    in_use: int
    idle: int
    #: opening, resetting or closing: connections that count toward max_size in flight
    transitional: int
    waiting: int


@dataclass(frozen=True)
class Counts:
    """Totals the pool keeps, to compare with the fake driver's own record."""

    opened: int
    connect_errors: int
    closed: int


@runtime_checkable
class StatefulPool(Protocol):
    """One pool under test. Every method is called on the event loop thread."""

    capabilities: frozenset[str]
    #: raised by acquire when its timeout passes
    timeout_error: type[BaseException]
    #: raised by acquire once the pool is closed
    closed_error: type[BaseException]
    #: errors a call may end in besides the driver's own (a query timeout, say)
    call_errors: tuple[type[BaseException], ...]

    async def open(self) -> None: ...
    async def acquire(self, timeout: float | None) -> Any: ...
    async def release(self, conn: Any) -> None: ...
    async def execute(
        self, conn: Any, sql: str, params: Sequence[Any] = (), timeout: float | None = None
    ) -> list[tuple[Any, ...]] | None:
        """Run ``sql``; the fetched rows, or None when it returns none."""
        ...

    async def commit(self, conn: Any) -> None: ...
    async def rollback(self, conn: Any) -> None: ...
    def raw(self, conn: Any) -> Any:
        """The fake driver's connection under ``conn`` (a ``FakeConnection``)."""
        ...

    async def close(self) -> None: ...

    # Optional: ``given_back(conn) -> bool``, whether the pool took ``conn`` back from its
    # holder after a failed call (poolkit: the call found its connection lost and no other
    # was at hand to run it again on); the holder then holds nothing.

    # Optional, by capability.
    async def resize(self, min_size: int, max_size: int) -> None: ...
    def sizes(self) -> Sizes: ...
    def counts(self) -> Counts: ...
    def tick(self) -> None: ...
    async def check(self) -> None: ...


class PoolkitSubject:
    """:class:`poolkit.Pool` as the machine's subject (the reference; declares everything).

    ``threads`` is the pool's ``threads=``: dedicated threads keep the ``thread_affinity``
    it declares; a subclass with ``threads = "shared"`` must not declare that.
    """

    capabilities = frozenset(CAPABILITIES)
    threads: Literal["dedicated", "shared"] = "dedicated"

    def __init__(self, spec: PoolSpec) -> None:
        import poolkit

        self.timeout_error: type[BaseException] = poolkit.PoolTimeout
        self.closed_error: type[BaseException] = poolkit.PoolClosed
        self.call_errors: tuple[type[BaseException], ...] = (poolkit.QueryTimeout,)
        self.pool = poolkit.Pool(
            spec.driver,
            min_size=spec.min_size,
            max_size=spec.max_size,
            timeout=None,
            max_lifetime=spec.max_lifetime,
            max_idle=spec.max_idle,
            check_idle_after=spec.check_idle_after,
            backoff=poolkit.Backoff(initial=0.001, maximum=0.01),
            clock=spec.clock,
            threads=self.threads,
        )

    async def open(self) -> None:
        await self.pool.open(wait=False)

    async def acquire(self, timeout: float | None) -> Any:
        return await self.pool.acquire(timeout=timeout)

    async def release(self, conn: Any) -> None:
        self.pool.release(conn)

    async def execute(
        self, conn: Any, sql: str, params: Sequence[Any] = (), timeout: float | None = None
    ) -> list[tuple[Any, ...]] | None:
        if timeout is None:
            cur = await conn.execute(sql, params)
        else:
            cur = await conn.execute(sql, params, timeout=timeout)
        if cur.description is None:
            return None
        rows: list[tuple[Any, ...]] = await cur.fetchall()
        return rows

    async def commit(self, conn: Any) -> None:
        await conn.commit()

    async def rollback(self, conn: Any) -> None:
        await conn.rollback()

    def raw(self, conn: Any) -> Any:
        return conn._conn.link.raw

    def given_back(self, conn: Any) -> bool:
        return bool(conn.closed)

    async def close(self) -> None:
        await self.pool.close()

    async def resize(self, min_size: int, max_size: int) -> None:
        self.pool.resize(min_size, max_size)

    def sizes(self) -> Sizes:
        s = self.pool.stats()
        return Sizes(
            in_use=s.in_use,
            idle=s.idle,
            transitional=s.opening + s.resetting + s.closing,
            waiting=s.waiting,
        )

    def counts(self) -> Counts:
        s = self.pool.stats()
        return Counts(
            opened=s.connections_opened,
            connect_errors=s.connect_errors,
            closed=s.connections_closed,
        )

    def tick(self) -> None:
        self.pool._maintain()

    async def check(self) -> None:
        await self.pool.check()
