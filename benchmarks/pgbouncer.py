"""The case "K processes x a pool of M each, straight to PostgreSQL and through PgBouncer".

Services that run many processes put PgBouncer (transaction pooling) between their pools and
PostgreSQL. For each workload of :data:`.fleet.WORKLOADS`, pool size M and process count K,
every round runs both modes, in alternating order, each with fresh processes
(:func:`.fleet.run_fleet`): ``direct``, every process's pool connected to PostgreSQL, and
``pgbouncer``, every pool connected to a PgBouncer started for that run alone
(:func:`poolkit.conformance.pgbouncer.start`, ``default_pool_size`` a setting), stopped after
it, so no server session outlives its run. During the window a :class:`.sessions.Sampler`
counts server sessions and PgBouncer's clients, and ``/proc`` is read before and after it:
the worker processes' CPU, PostgreSQL's, PgBouncer's, and everybody else's, which decides
whether the run was disturbed (then it is repeated, as the other workloads' runs are).

``python -m benchmarks --workload pgbouncer`` runs it alone; it is part of every full run.
The samples go to ``pgbouncer.json``, the tables to ``pgbouncer.md`` (:mod:`.pgbouncer_report`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poolkit._optional import unavailable as unavailable_module
from poolkit.conformance.pgbouncer import INSTALL, PgBouncer, find_binary, start

from . import samples, sysinfo
from .dsn import Server
from .fleet import WORKLOADS, ProcessPlan, run_fleet
from .runs import alternating
from .samples import Histogram, RunInfo
from .sessions import Sampler, Series

MODES = ("direct", "pgbouncer")
#: the application_name of every connection of the case's worker processes
APPLICATION_NAME = "poolkit-bench-fleet"
FORMAT = "pgbouncer-1"
#: what the main process reads during a window: sessions, CPU, and the seconds the CPU spans
Reading = tuple[Series, sysinfo.Split, float]


@dataclass(frozen=True)
class Settings:
    seconds: float
    warmup: float
    rounds: int
    processes: tuple[int, ...]
    sizes: tuple[int, ...]
    #: concurrent tasks per process (None: as many as the pool's size)
    tasks: int | None
    #: PgBouncer's ``default_pool_size``: its server connections per database and user
    pool_size: int
    workloads: tuple[str, ...]
    #: share of one core other processes may use before a run counts as disturbed
    threshold: float = 0.05
    retries: int = 2

    def describe(self) -> dict[str, str]:
        """The settings as RunInfo lists them."""
        return {
            "measured s": f"{self.seconds:g}",
            "warm-up s": f"{self.warmup:g}",
            "rounds": str(self.rounds),
            "K (processes)": ",".join(map(str, self.processes)),
            "M (pool size per process)": ",".join(map(str, self.sizes)),
            "C (tasks per process)": str(self.tasks) if self.tasks else "M",
            "PgBouncer default_pool_size": str(self.pool_size),
            "workloads": ",".join(self.workloads),
            "loop": "asyncio",
            "disturbed above": f"{self.threshold:.0%} of a core (up to {self.retries} retries)",
        }


@dataclass(frozen=True)
class FleetRun:
    workload: str
    mode: str
    processes: int
    size: int
    tasks: int
    round: int

    @property
    def label(self) -> str:
        return f"pgbouncer case {self.workload} K={self.processes} M={self.size} {self.mode}"


@dataclass(frozen=True)
class FleetCase:
    """What was measured: a workload, by K processes with a pool of M and C tasks each,
    ``direct`` or through ``pgbouncer`` with its ``default_pool_size``."""

    workload: str
    mode: str
    processes: int
    size: int
    tasks: int
    #: PgBouncer's default_pool_size (0: direct)
    pool_size: int

    @property
    def key(self) -> tuple[str, str, int, int, int]:
        return (self.workload, self.mode, self.processes, self.size, self.tasks)

    def case(self) -> dict[str, Any]:
        """This case's fields alone, to build another :class:`FleetCase` from."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(FleetCase)}


@dataclass(frozen=True)
class FleetSample(FleetCase):
    """One measured run of K processes: per process the calls in the window and their
    latency histogram; the CPU of each party; the session readings (:mod:`.sessions`)."""

    round: int
    seconds: float
    ops: list[int]
    hists: list[Histogram]
    errors: int
    error: str
    client_cpu: float
    server_cpu: float
    bouncer_cpu: float
    others_cpu: float
    top_other: str = ""
    disturbed: bool = False
    attempts: int = 1
    sessions: Series = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return sum(self.ops) / self.seconds if self.seconds > 0 else 0.0


def unavailable() -> str | None:
    """Why the case cannot run here (no pgbouncer binary, no psycopg2), or None."""
    if find_binary() is None:
        return f"the pgbouncer binary is not installed ({INSTALL})"
    return unavailable_module("psycopg2")


def plan(settings: Settings) -> list[FleetRun]:
    """Every run, in order: per workload, M and K, the rounds, the modes alternating."""
    runs: list[FleetRun] = []
    for workload in settings.workloads:
        for size in settings.sizes:
            tasks = settings.tasks or size
            for k in settings.processes:
                for r, mode in alternating(MODES, settings.rounds):
                    runs.append(FleetRun(workload, mode, k, size, tasks, r))
    return runs


def _sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def execute(run: FleetRun, settings: Settings, server: Server) -> tuple[FleetSample, str]:
    """One run, no retries; and the PgBouncer version ("" direct)."""
    bouncer: PgBouncer | None = None
    if run.mode == "pgbouncer":
        clients = max(200, run.processes * run.size + 20)
        bouncer = start(server.dsn, pool_size=settings.pool_size, max_client_conn=clients)
    with bouncer or contextlib.nullcontext():
        admin = bouncer.admin_dsn if bouncer is not None else None
        with Sampler(server.dsn, server.database, APPLICATION_NAME, admin) as sampler:
            sampler.wait_idle()
            dsn = bouncer.dsn if bouncer is not None else server.dsn
            job = ProcessPlan(
                dsn, run.size, run.tasks, WORKLOADS[run.workload], settings.seconds,
                APPLICATION_NAME,
            )  # fmt: skip

            def during(pids: list[int], opens: float, closes: float) -> Reading:
                roles = dict.fromkeys(pids, "clients")
                if bouncer is not None:
                    roles[bouncer.pid] = "pgbouncer"
                _sleep_until(opens)
                before, t0 = sysinfo.snapshot(skip=os.getpid()), time.monotonic()
                series = sampler.sample(closes)
                after, t1 = sysinfo.snapshot(skip=os.getpid()), time.monotonic()
                return series, sysinfo.split(before, after, os.getpid(), roles), t1 - t0

            results, (series, used, span) = run_fleet(job, run.processes, settings.warmup, during)
    # per second of the window: the readings span a little more than the window
    scale = settings.seconds / span if span > 0 else 1.0
    sample = FleetSample(
        workload=run.workload,
        mode=run.mode,
        processes=run.processes,
        size=run.size,
        tasks=run.tasks,
        pool_size=settings.pool_size if bouncer is not None else 0,
        round=run.round,
        seconds=settings.seconds,
        ops=[r.ops for r in results],
        hists=[r.hist for r in results],
        errors=sum(r.errors for r in results),
        error=next((r.error for r in results if r.error), ""),
        client_cpu=used.roles.get("clients", 0.0) * scale,
        server_cpu=used.servers.get("postgres", 0.0) * scale,
        bouncer_cpu=used.roles.get("pgbouncer", 0.0) * scale,
        others_cpu=used.others * scale,
        top_other=used.top_other,
        sessions=series,
    )
    return sample, bouncer.version if bouncer is not None else ""


def attempt(
    run: FleetRun, settings: Settings, server: Server
) -> tuple[FleetSample, list[str], str]:
    """The run's sample, repeated up to ``settings.retries`` times while disturbed; a note
    for each disturbed attempt; the PgBouncer version."""
    notes: list[str] = []
    while True:
        sample, version = execute(run, settings, server)
        trouble = disturbance(sample, settings.threshold)
        if trouble is None or len(notes) == settings.retries:
            disturbed = trouble is not None
            final = dataclasses.replace(sample, disturbed=disturbed, attempts=len(notes) + 1)
            return final, notes, version
        notes.append(f"disturbed: {trouble}")


def disturbance(sample: FleetSample, threshold: float, cores: int | None = None) -> str | None:
    """Why the run cannot be judged: other processes used more than ``threshold`` of one
    core, or the CPU readings add up to more than the machine's cores could give in the
    window (a reading gone wrong); None when it can."""
    share = sample.others_cpu / sample.seconds
    if share > threshold:
        return f"others used {share:.0%} of a core (most: {sample.top_other})"
    cores = cores or os.cpu_count() or 1
    total = sample.client_cpu + sample.server_cpu + sample.bouncer_cpu + sample.others_cpu
    if total > 1.1 * cores * sample.seconds:
        return f"the CPU readings add up to {total / sample.seconds:.1f} of {cores} cores"
    return None


def measure(
    runs: Sequence[FleetRun],
    settings: Settings,
    server: Server,
    info: RunInfo,
    say: Callable[[int, FleetRun, FleetSample, list[str]], None],
) -> list[FleetSample]:
    """Every run in order; ``say(i, run, sample, notes)`` after each. A run that fails ends
    the case (recorded in ``info.skipped``), keeping what was measured."""
    taken: list[FleetSample] = []
    for i, run in enumerate(runs, 1):
        try:
            sample, notes, version = attempt(run, settings, server)
        except Exception as exc:
            why = server.redact(f"failed in {run.label}: {type(exc).__name__}: {exc}")
            info.skipped["pgbouncer case (the rest of it)"] = why
            break
        if version:
            info.servers.setdefault("pgbouncer", version)
        taken.append(sample)
        say(i, run, sample, notes)
    return taken


def save(path: Path, info: RunInfo, taken: list[FleetSample]) -> None:
    samples.save(path, info, taken, FORMAT)


def is_ours(path: Path) -> bool:
    """Whether ``path`` is this case's JSON (not the other workloads' samples.json)."""
    return samples.tagged(path, FORMAT)


def load(path: Path) -> tuple[RunInfo, list[FleetSample]]:
    data = json.loads(path.read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: not a pgbouncer case results file ({FORMAT})")
    taken = []
    for raw in data["samples"]:
        raw["hists"] = [{int(i): int(n) for i, n in h.items()} for h in raw["hists"]]
        taken.append(FleetSample(**raw))
    return RunInfo(**data["info"]), taken
