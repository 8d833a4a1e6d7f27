"""The restart workload: how three pools live through a server restart, a crash and a freeze.

Side by side, on a private throwaway PostgreSQL cluster (:mod:`.cluster`; the shared servers
are never touched), with each library's defaults (:data:`.restart_scenarios.POOLS`): poolkit
over psycopg2, psycopg_pool over psycopg 3 and asyncpg's pool, each ``min_size = max_size =
8``, through the scenarios of :mod:`.restart_scenarios` (a restart with a burst of callers or
one caller after another, a crash under writers, a close on a frozen server, a close while
connects hang).

Each run (a scenario with one pool) happens in a fresh process (multiprocessing ``spawn``,
asyncio) with a hard time limit; the pools take turns in alternating order, round after
round. One cluster serves the whole workload: after each run it is thawed, started again if
it is down, and every session left is ended.

``python -m benchmarks --workload restart`` runs it alone; it is part of every full run. The
samples go to ``restart.json`` (:mod:`.restart_samples`), the table to ``restart.md``
(:mod:`.restart_report`).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from . import sysinfo
from .cluster import Cluster
from .cluster import unavailable as cluster_unavailable
from .contenders import missing
from .restart_samples import RestartRun, RestartSample, Settings
from .restart_scenarios import AFTER_CLOSE, POOLS, Job, child
from .runs import alternating

clock = time.monotonic


def summary(sample: RestartSample) -> str:
    """One line for the console."""
    if sample.broken:
        return f"measured nothing: {sample.broken}"

    def ms(x: float | None) -> str:
        return "hung" if x is None else f"{x * 1e3:,.0f} ms"

    if sample.scenario.startswith("restart"):
        parts = [f"{sample.failed} of {sample.calls} calls failed, {ms(sample.seconds)}"]
    elif sample.scenario == "crash-recovery":
        parts = [
            f"first commit {ms(sample.seconds)} after the server accepted,"
            f" every writer {ms(sample.all_back)}; {sample.failed} errors,"
            f" {sample.lost} acknowledged rows lost"
        ]
    else:
        took = "hung" if sample.seconds is None else f"{sample.seconds:.2f} s"
        parts = [
            f"close() {took}, {sample.blocked} callers blocked {AFTER_CLOSE:g} s after,"
            f" threads +{sample.threads} (+{sample.threads_left} after the clean-up)"
        ]
    if sample.note:
        parts.append(sample.note)
    return "; ".join(parts)


def unavailable() -> str | None:
    """Why the workload cannot run here (no PostgreSQL binaries, no psycopg2), or None."""
    return cluster_unavailable()


def pool_unavailable(name: str) -> str | None:
    """Why one pool cannot run here (its library missing), or None."""
    return missing(next(p for p in POOLS if p.name == name).needs)


def plan(settings: Settings) -> list[RestartRun]:
    """Every run, in order: per scenario, the rounds, the pools alternating."""
    return [
        RestartRun(scenario, pool, r)
        for scenario in settings.scenarios
        for r, pool in alternating(settings.pools, settings.rounds)
    ]


def execute(run: RestartRun, settings: Settings, cluster: Cluster) -> RestartSample:
    """One run in a fresh process, killed at ``settings.limit``; the cluster as it left it."""
    ctx = multiprocessing.get_context("spawn")
    here, there = ctx.Pipe(duplex=False)
    job = Job(run, settings, cluster)
    process = ctx.Process(target=child, args=(job, there), daemon=True)
    before, started = sysinfo.snapshot(skip=os.getpid()), clock()
    process.start()
    there.close()
    what, extra = "error", ""
    payload: Any = ""
    try:
        if here.poll(settings.limit):
            what, payload = here.recv()
        else:
            what, payload = "killed", f"no result within {settings.limit:g} s: process killed"
    except EOFError:
        payload = f"the run's process exited ({process.exitcode}) without a result"
    finally:
        process.join(10.0)
        if process.is_alive():
            process.kill()
            process.join()
            extra = "its process did not exit within 10 s after the run (killed)"
        here.close()
    wall = clock() - started
    after = sysinfo.snapshot(skip=os.getpid())
    used = sysinfo.split(before, after, os.getpid(), {process.pid: "run"} if process.pid else {})
    if what == "done":
        sample: RestartSample = payload
        note = "; ".join(n for n in (sample.note, extra) if n)
        return dataclasses.replace(sample, note=note, wall=wall, others_cpu=used.others)
    return RestartSample(
        run.scenario, run.pool, run.round, hung=what == "killed", broken=payload,
        wall=wall, others_cpu=used.others,
    )  # fmt: skip


def measure(
    runs: Sequence[RestartRun],
    settings: Settings,
    cluster: Cluster,
    say: Callable[[int, RestartRun, RestartSample], None],
) -> list[RestartSample]:
    """Every run in order, the cluster brought back (thawed, up, no session left) after
    each; ``say(i, run, sample)`` after each."""
    taken: list[RestartSample] = []
    for i, run in enumerate(runs, 1):
        sample = execute(run, settings, cluster)
        cluster.ensure_up()
        cluster.end_sessions()
        taken.append(sample)
        say(i, run, sample)
    return taken
