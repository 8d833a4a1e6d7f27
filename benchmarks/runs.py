"""The plan: which runs, in which order; and one run, from opening its contender to a sample.

Every group of runs that will be compared (same workload, N and loop) runs its contenders side
by side, forward in even rounds and in reverse in odd ones; the limits (no event loop) join the
first loop's group. Each async run gets a fresh event loop; the contender is opened (and its
pool filled) before the timed region. A run that other processes disturbed is repeated.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio

from . import cycles, measure
from .contenders import (
    CONTENTION_SIZE,
    CONTENTION_SQL,
    CONTENTION_TASKS,
    WORKLOADS,
    Contender,
    Session,
)
from .cycles import CycleContender
from .dsn import Server
from .samples import Sample, histogram

T = TypeVar("T")
QUERY_WORKLOADS = tuple(WORKLOADS)
ALL_WORKLOADS = (*QUERY_WORKLOADS, "contention", "cycles", "waiters")


@dataclass(frozen=True)
class Settings:
    seconds: float
    warmup: float
    rounds: int
    cycle_seconds: float
    #: share of one core other processes may use before a run counts as disturbed
    threshold: float = 0.05
    retries: int = 2


@dataclass(frozen=True)
class Run:
    workload: str
    loop: str  # "asyncio", "uvloop", "trio" or "none"
    tasks: int
    size: int
    round: int
    contender: Contender | CycleContender
    server: Server | None

    @property
    def backend(self) -> str:
        return self.server.backend if self.server is not None else "none"

    @property
    def kind(self) -> str:
        return self.contender.kind if isinstance(self.contender, Contender) else "pool"

    @property
    def label(self) -> str:
        n = f"{self.tasks}/{self.size}" if self.tasks != self.size else str(self.tasks)
        return f"{self.workload} {self.loop} N={n} {self.contender.name}"

    def execute(self, settings: Settings) -> measure.Outcome:
        """Open the contender, run the timed region, close; no retries here."""
        is_cycle = isinstance(self.contender, CycleContender)
        seconds = settings.cycle_seconds if is_cycle else settings.seconds
        warmup = min(settings.warmup, seconds / 2) if is_cycle else settings.warmup
        if isinstance(self.contender, Contender) and self.contender.open_threads is not None:
            assert self.server is not None
            sql = WORKLOADS[self.workload][self.backend]
            with self.contender.open_threads(self.server, self.tasks) as queries:
                return measure.timed_threads(queries, sql, seconds, warmup, self.backend)
        options: dict[str, Any] = {"use_uvloop": True} if self.loop == "uvloop" else {}
        backend = "trio" if self.loop == "trio" else "asyncio"
        return anyio.run(self._timed, seconds, warmup, backend=backend, backend_options=options)

    async def _timed(self, seconds: float, warmup: float) -> measure.Outcome:
        server_backend = self.server.backend if self.server is not None else None
        async with self._operation() as op:
            return await measure.timed(op, self.tasks, seconds, warmup, server_backend)

    @contextlib.asynccontextmanager
    async def _operation(self) -> Any:
        contender = self.contender
        if isinstance(contender, CycleContender):
            async with contender.open(self.server, self.size) as cycle:

                async def one_cycle(i: int) -> None:
                    await cycle()

                yield one_cycle
            return
        assert contender.open is not None and self.server is not None
        async with contender.open(self.server, self.size) as session:
            yield _query_op(session, self.workload, self.backend)

    def sample(self, outcome: measure.Outcome, disturbed: bool, attempts: int) -> Sample:
        return Sample(
            workload=self.workload,
            loop=self.loop,
            tasks=self.tasks,
            size=self.size,
            contender=self.contender.name,
            backend=self.backend,
            kind=self.kind,
            round=self.round,
            ops=outcome.ops,
            seconds=outcome.seconds,
            client_cpu=outcome.client_cpu,
            server_cpu=outcome.server_cpu,
            others_cpu=outcome.others_cpu,
            disturbed=disturbed,
            attempts=attempts,
            top_other=outcome.top_other,
            hist=histogram(outcome.latencies),
            per_task=outcome.per_task if self.workload == "contention" else [],
        )


def _query_op(session: Session, workload: str, backend: str) -> measure.Operation:
    if workload != "contention":
        query, sql = session.query, WORKLOADS[workload][backend]

        async def one_query(i: int) -> None:
            await query(sql)

        return one_query
    acquire, run = session.acquire, session.run
    assert acquire is not None and run is not None
    clock = time.perf_counter

    async def acquire_and_query(i: int) -> float:
        asked = clock()
        async with acquire() as conn:
            waited = clock() - asked
            await run(conn, CONTENTION_SQL)
        return waited

    return acquire_and_query


def attempt(run: Run, settings: Settings) -> tuple[Sample, list[str]]:
    """The run's sample, repeated up to ``settings.retries`` times while disturbed; and a note
    for each disturbed attempt."""
    notes: list[str] = []
    while True:
        outcome = run.execute(settings)
        disturbed = outcome.disturbed(settings.threshold)
        if not disturbed or len(notes) == settings.retries:
            return run.sample(outcome, disturbed, len(notes) + 1), notes
        share = outcome.others_cpu / outcome.seconds
        notes.append(f"disturbed: others used {share:.0%} of a core (most: {outcome.top_other})")


def alternating(group: Sequence[T], rounds: int) -> Iterator[tuple[int, T]]:
    """(round, item) for every round: ``group`` forward in even rounds, reversed in odd ones."""
    for r in range(rounds):
        for item in group if r % 2 == 0 else reversed(group):
            yield r, item


def plan(
    contenders: Sequence[Contender],
    cycle_contenders: Sequence[CycleContender],
    servers: dict[str, Server],
    workloads: Sequence[str],
    ns: Sequence[int],
    loops: Sequence[str],
    rounds: int,
) -> list[Run]:
    """Every run, in the order they will happen."""
    runs: list[Run] = []

    def runs_on(loop: str) -> list[Contender]:
        # uvloop runs what asyncio runs; the limits join the first loop's group
        wanted = {"asyncio" if loop == "uvloop" else loop} | (
            {"none"} if loop == loops[0] else set()
        )
        return [c for c in contenders if wanted & set(c.loops)]

    for workload in workloads:
        for loop in loops:
            group = runs_on(loop)
            if workload in QUERY_WORKLOADS:
                for n in ns:
                    fit = [c for c in group if not c.only_n or n in c.only_n]
                    for r, c in alternating(fit, rounds):
                        on = "none" if c.loops == ("none",) else loop
                        runs.append(Run(workload, on, n, n, r, c, servers[c.backend]))
            elif workload == "contention":
                pooled = [c for c in group if c.pooled]
                for r, c in alternating(pooled, rounds):
                    server = servers[c.backend]
                    runs.append(
                        Run(workload, loop, CONTENTION_TASKS, CONTENTION_SIZE, r, c, server)
                    )
            else:
                wanted = "asyncio" if loop == "uvloop" else loop
                pools = [
                    c
                    for c in cycle_contenders
                    if wanted in c.loops and (workload == "cycles" or c.waiters)
                ]
                shapes = (
                    cycles.CONFIGS if workload == "cycles" else [(w, 1) for w in cycles.WAITERS]
                )
                for tasks, size in shapes:
                    for r, p in alternating(pools, rounds):
                        held = servers[p.backend] if p.backend else None
                        runs.append(Run(workload, loop, tasks, size, r, p, held))
    return runs
