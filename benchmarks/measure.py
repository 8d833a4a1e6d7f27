"""The timed region: N tasks (or threads) each repeat one operation until the time is up.

Async tasks run without a break through a warm-up into the measured window (what completes
inside it counts); plain threads run a warm-up phase, then a measured one, each started
together at a barrier. Around the measured part an :class:`Observer`
reads this process's CPU (``time.process_time()``, all threads) and, from ``/proc``, the
database server's and everybody else's: the latter decides whether the run was disturbed.
Opening the contender happens before, outside all of this.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import anyio

from . import sysinfo

#: One operation of task ``i``; returns the part of its time to record as latency (for
#: contention: the acquire wait), or None to record its whole duration.
Operation = Callable[[int], Awaitable[float | None]]
SyncQuery = Callable[[str], object]


@dataclass
class Outcome:
    ops: int
    seconds: float
    client_cpu: float
    server_cpu: float
    others_cpu: float
    top_other: str
    latencies: list[float]
    per_task: list[int]

    def disturbed(self, threshold: float) -> bool:
        """Whether other processes used more than ``threshold`` of one core during the run."""
        return self.others_cpu > threshold * self.seconds


class Observer:
    """CPU readings around the measured phase: this process, the server, everybody else."""

    def __init__(self, backend: str | None) -> None:
        self._backend = backend
        self._before: sysinfo.Snapshot = {}
        self._cpu0 = self._t0 = 0.0

    def start(self) -> None:
        self._before = sysinfo.snapshot(skip=os.getpid())
        self._cpu0 = time.process_time()
        self._t0 = time.perf_counter()

    def stop(self, latencies: list[float], per_task: list[int]) -> Outcome:
        elapsed = time.perf_counter() - self._t0
        cpu = time.process_time() - self._cpu0
        used = sysinfo.split(self._before, sysinfo.snapshot(skip=os.getpid()), os.getpid())
        server = used.servers.get(self._backend, 0.0) if self._backend else 0.0
        return Outcome(
            sum(per_task), elapsed, cpu, server, used.others, used.top_other, latencies, per_task
        )


async def timed(
    op: Operation, tasks: int, seconds: float, warmup: float, backend: str | None
) -> Outcome:
    """Run ``op`` in ``tasks`` concurrent tasks; count what completes in a window of
    ``seconds`` that opens ``warmup`` seconds after the start, once every task has started.

    The tasks run on without a break from warm-up to window, so the window sees the steady
    state (every waiter queued), not the start-up of thousands of tasks.
    """
    latencies: list[float] = []
    per_task = [0] * tasks
    started, record, running = 0, False, True
    observer = Observer(backend)
    outcome: Outcome | None = None
    all_started = anyio.Event()

    async def worker(i: int) -> None:
        nonlocal started
        started += 1
        if started == tasks:
            all_started.set()
        clock = time.perf_counter
        while running:
            t0 = clock()
            part = await op(i)
            if record:
                latencies.append(clock() - t0 if part is None else part)
                per_task[i] += 1

    async def window() -> None:
        nonlocal record, running, outcome
        await anyio.sleep(warmup)
        await all_started.wait()
        observer.start()
        record = True
        await anyio.sleep(seconds)
        record = False
        outcome = observer.stop(latencies, per_task)
        running = False

    async with anyio.create_task_group() as tg:
        for i in range(tasks):
            tg.start_soon(worker, i)
        tg.start_soon(window)
    assert outcome is not None
    return outcome


def timed_threads(
    queries: Sequence[SyncQuery], sql: str, seconds: float, warmup: float, backend: str | None
) -> Outcome:
    """Each query function in its own plain thread (one alone: in this thread), no event loop."""
    latencies: list[float] = []
    per_task = [0] * len(queries)

    def phase(length: float, observer: Observer | None) -> None:
        go = threading.Barrier(len(queries) + 1) if len(queries) > 1 else None
        stop = 0.0

        def worker(i: int) -> None:
            own: list[float] = []
            query, clock = queries[i], time.perf_counter
            if go is not None:
                go.wait()
            while True:
                t0 = clock()
                if t0 >= stop:
                    break
                query(sql)
                own.append(clock() - t0)
            if observer is not None:
                latencies.extend(own)  # list.extend is atomic under the GIL
                per_task[i] = len(own)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(queries))]
        if go is not None:
            for thread in threads:
                thread.start()
        if observer is not None:
            observer.start()
        stop = time.perf_counter() + length
        if go is None:
            worker(0)
        else:
            go.wait()
            for thread in threads:
                thread.join()

    if warmup > 0:
        phase(warmup, None)
    observer = Observer(backend)
    phase(seconds, observer)
    return observer.stop(latencies, per_task)
