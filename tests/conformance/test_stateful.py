"""Issue 5, the async layer: the state machine of :mod:`poolkit.conformance.stateful` run on
``poolkit.Pool`` over the fake driver, on asyncio and trio, under the fixed CI profile.

The machine must also be able to fail: each mutant below breaks one promise of a pool
(rollback on return, never reusing a lost connection, one caller per connection, closing
what it opened, staying within max_size) on top of the real pool, and the machine must catch
it with the message naming that promise. ``--pool-soak`` runs are in ``nox -s soak``.
"""

from __future__ import annotations

import os
import re
import traceback
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from poolkit.conformance.stateful import (
    FIGURES,
    PoolkitSubject,
    PoolSpec,
    ci_settings,
    pool_machine,
)

# CI: bounded and derandomized. POOLKIT_STATEFUL_EXAMPLES raises the count for a local run.
EXAMPLES = int(os.environ.get("POOLKIT_STATEFUL_EXAMPLES", "150"))


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.timeout(300)
def test_poolkit_keeps_every_invariant(backend: str) -> None:
    before = FIGURES.examples
    faults = sum(FIGURES.faults.values())
    run_state_machine_as_test(pool_machine(backend=backend), settings=ci_settings(EXAMPLES, 30))
    assert FIGURES.examples - before >= EXAMPLES // 2
    # The run is only worth something if the fault plans really fired.
    assert sum(FIGURES.faults.values()) - faults > EXAMPLES // 10


class SharedThreads(PoolkitSubject):
    """The pool on its shared thread group: connections move between threads."""

    capabilities = PoolkitSubject.capabilities - {"thread_affinity"}
    threads = "shared"


@pytest.mark.timeout(300)
def test_poolkit_on_shared_threads_keeps_every_invariant() -> None:
    before = FIGURES.examples
    settings_ = ci_settings(EXAMPLES // 2, 30)
    run_state_machine_as_test(pool_machine(SharedThreads, backend="asyncio"), settings=settings_)
    assert FIGURES.examples - before >= EXAMPLES // 4


def test_pool_machine_rejects_an_unknown_backend() -> None:
    with pytest.raises(ValueError, match="backend must be 'asyncio' or 'trio'"):
        pool_machine(backend="curio")


# ----- mutants: the machine must catch each broken promise --------------------------------


class NoRollbackOnReturn(PoolkitSubject):
    """Tells the pool a returned connection is not in a transaction, so it skips the reset."""

    async def release(self, conn: Any) -> None:
        conn._conn.in_tx = False
        self.pool.release(conn)


class ReusesLostConnections(PoolkitSubject):
    """Keeps returned connections in a cache of its own after a rollback, even when the
    rollback said the connection is lost, and hands them out again before the pool's.
    (It declares neither sizes nor max_lifetime: the cache keeps neither.)"""

    capabilities = PoolkitSubject.capabilities - {"sizes", "max_lifetime"}

    def __init__(self, spec: PoolSpec) -> None:
        super().__init__(spec)
        self.cache: list[Any] = []

    async def acquire(self, timeout: float | None) -> Any:
        if self.cache:
            return self.cache.pop()
        return await self.pool.acquire(timeout=timeout)

    async def release(self, conn: Any) -> None:
        try:
            await conn.rollback()
        except Exception:
            pass
        if self.pool.closed:
            self.pool.release(conn)
        else:
            self.cache.append(conn)

    async def close(self) -> None:
        for conn in self.cache:
            self.pool.release(conn)
        self.cache.clear()
        await self.pool.close()


class SharesConnections(PoolkitSubject):
    """Hands the previous caller's connection to every third caller as well."""

    def __init__(self, spec: PoolSpec) -> None:
        super().__init__(spec)
        self.count = 0
        self.last: Any = None

    async def acquire(self, timeout: float | None) -> Any:
        self.count += 1
        if self.count % 3 == 0 and self.last is not None and not self.last._returned:
            return self.last
        self.last = await self.pool.acquire(timeout=timeout)
        return self.last

    async def release(self, conn: Any) -> None:
        if not conn._returned:
            self.pool.release(conn)


class OpensTooMany(PoolkitSubject):
    """Opens one connection more than max_size allows, behind the pool's back."""

    def __init__(self, spec: PoolSpec) -> None:
        super().__init__(spec)
        self.extra = [spec.driver.connect() for _ in range(spec.max_size + 1)]

    async def close(self) -> None:
        await super().close()
        for conn in self.extra:
            conn.close()


class LeavesConnectionsOpen(PoolkitSubject):
    """Closes the pool but "forgets" one raw connection it opened itself."""

    def __init__(self, spec: PoolSpec) -> None:
        super().__init__(spec)
        self.stray = spec.driver.connect()


class CheckPingsNothing(PoolkitSubject):
    """Declares a health check that does nothing."""

    async def check(self) -> None:
        pass


MUTANTS = [
    (NoRollbackOnReturn, "inside a transaction|rolled-back transactions are present"),
    (ReusesLostConnections, "a call already reported lost"),
    (SharesConnections, "handed out to two callers|used by two calls at once|while it runs"),
    (OpensTooMany, "fake connections open, max_size"),
    (LeavesConnectionsOpen, "were never closed by the pool"),
    (CheckPingsNothing, "check\\(\\) left killed idle connections"),
]


@pytest.mark.parametrize(("mutant", "expected"), MUTANTS, ids=[m.__name__ for m, _ in MUTANTS])
@pytest.mark.timeout(300)
def test_the_machine_catches(mutant: type[PoolkitSubject], expected: str) -> None:
    quick = settings(
        max_examples=300,
        stateful_step_count=30,
        derandomize=True,
        deadline=None,
        phases=[Phase.generate],  # the first failure is enough; no need to shrink it
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
    )
    with pytest.raises(BaseException) as caught:
        run_state_machine_as_test(pool_machine(mutant), settings=quick)
    text = "".join(traceback.format_exception(caught.value))
    assert re.search(expected, text), text[-3000:]
