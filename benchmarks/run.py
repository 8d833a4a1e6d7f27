"""The command line: pick the runs, run them with a progress bar, print and write the results.

    python -m benchmarks                # full: 3 rounds x 3 s, N = 1, 4, 16, 64, the
                                        # pgbouncer workload, 3 rounds x 5 s, and the
                                        # restart workload, 3 rounds (~60 min)
    python -m benchmarks --quick        # 1 round x 0.5 s, N = 1, 16, short cycles (~3 min)
    python -m benchmarks --workload select1 --contender 'poolkit*,asyncpg*' --n 16
    python -m benchmarks --from-json benchmarks/results/samples.json   # re-render only
    python -m benchmarks --workload pgbouncer  # K processes x a pool of M, direct vs PgBouncer
    python -m benchmarks --workload pgbouncer --quick                   # a few seconds
    python -m benchmarks --workload restart    # a server restart, crash and freeze: poolkit,
                                               # psycopg_pool and asyncpg on a private
                                               # PostgreSQL cluster, 3 rounds (~4 min)
    python -m benchmarks --workload restart --quick   # 1 round, 16 callers, 10 s cap (~1 min)

The restart workload writes restart.md and restart.json into results/ when it runs with its
full settings (``--workload restart`` alone included; its settings: ``--rounds``,
``--callers``, ``--hang-cap``, ``--scenarios``, ``--contender``), into results-quick/ otherwise.
Wrap every measuring run in ``flock /tmp/poolkit-bench.lock`` on a shared machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import importlib.util
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from . import (
    pgbouncer,
    pgbouncer_report,
    plots,
    report,
    restart,
    restart_report,
    restart_samples,
    samples,
    sysinfo,
)
from .cluster import private_cluster
from .contenders import CONTENDERS, POOLKIT_CALL, Contender, missing
from .cycles import CYCLE_CONTENDERS, CycleContender
from .dsn import Server
from .fleet import WORKLOADS as FLEET_WORKLOADS
from .runs import ALL_WORKLOADS, Run, Settings, attempt, plan
from .summary import summarise

HERE = Path(__file__).resolve().parent
FULL_OUT, SCRATCH_OUT = HERE / "results", HERE / "results-quick"
LOOPS = ("asyncio", "uvloop", "trio")
#: the many-processes case (:mod:`.pgbouncer`), a workload of the command line
FLEET = "pgbouncer"
#: a server restart, crash and freeze (:mod:`.restart`), a workload of the command line
RESTART = "restart"
WORKLOAD_NAMES = (*ALL_WORKLOADS, FLEET, RESTART)


def _csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="0.5 s x 1 round, N = 1,16, short cycles")
    p.add_argument("--seconds", type=float, help="measured seconds per run (3)")
    p.add_argument("--rounds", type=int, help="rounds, in alternating order (3)")
    p.add_argument("--warmup", type=float, help="warm-up seconds before each run (0.3)")
    p.add_argument("--cycle-seconds", type=float, help="seconds per pool-cycle run (1)")
    p.add_argument("--n", help="concurrent tasks of the query workloads (1,4,16,64)")
    p.add_argument("--workload", help=f"some of {','.join(WORKLOAD_NAMES)} (all)")
    p.add_argument("--contender", help="names to keep: comma-separated globs or substrings")
    p.add_argument("--loop", help="asyncio,trio (and uvloop, when installed)")
    p.add_argument("--backend", default="postgres,mysql", help="postgres,mysql")
    p.add_argument("--out", type=Path, help=f"results folder ({FULL_OUT.name}/ for a full run)")
    p.add_argument("--from-json", type=Path, help="re-render a samples.json; run nothing")
    p.add_argument("--require", action="store_true", help="an unreachable server is an error")
    p.add_argument("--threshold", type=float, default=0.05, help="disturbed: others' CPU share")
    g = p.add_argument_group(
        f"the {FLEET} workload",
        "K processes x a pool of M each, straight to PostgreSQL and through PgBouncer "
        "(transaction pooling); --seconds (5), --rounds (3) and --warmup (1) apply to it too",
    )
    g.add_argument("--processes", help="K, the worker processes (2,4,8; quick: 2)")
    g.add_argument("--pool-size", help="M, each process's pool, min = max (4)")
    g.add_argument("--tasks-per-process", type=int, help="C, concurrent tasks per process (M)")
    g.add_argument("--default-pool-size", type=int, default=8, help="PgBouncer's (8)")
    g.add_argument(
        "--fleet-workloads",
        help=f"some of {','.join(FLEET_WORKLOADS)} (all; quick: select1)",
    )
    g = p.add_argument_group(
        f"the {RESTART} workload",
        "poolkit, psycopg_pool and asyncpg through a server restart, crash and freeze, on a"
        " private PostgreSQL cluster; --rounds (3) and --contender apply to it too",
    )
    g.add_argument("--scenarios", help=f"some of {','.join(restart_samples.SCENARIO_NAMES)} (all)")
    g.add_argument("--callers", type=int, help="C, the callers of every scenario (32; quick: 16)")
    g.add_argument(
        "--hang-cap", type=float, help="seconds after which a scenario is hung (30; quick: 10)"
    )
    args = p.parse_args(argv)
    restart_options = (args.rounds, args.callers, args.hang_cap, args.scenarios, args.contender)
    args.restart_partial = args.quick or any(v is not None for v in restart_options)
    fleet_options = (args.processes, args.pool_size, args.tasks_per_process, args.fleet_workloads)
    partial = any(v is not None for v in (args.seconds, args.rounds, args.n, args.workload))
    partial = partial or args.contender is not None or args.loop is not None
    partial = partial or any(v is not None for v in fleet_options) or args.default_pool_size != 8
    partial = partial or any(v is not None for v in restart_options[1:])
    args.partial = args.quick or partial or args.backend != "postgres,mysql"
    quick = args.quick
    args.fleet = pgbouncer.Settings(
        seconds=args.seconds or (0.5 if quick else 5.0),
        warmup=args.warmup if args.warmup is not None else (0.2 if quick else 1.0),
        rounds=args.rounds or (1 if quick else 3),
        processes=tuple(int(x) for x in _csv(args.processes or ("2" if quick else "2,4,8"))),
        sizes=tuple(int(x) for x in _csv(args.pool_size or "4")),
        tasks=args.tasks_per_process,
        pool_size=args.default_pool_size,
        workloads=tuple(
            _csv(args.fleet_workloads or ("select1" if quick else ",".join(FLEET_WORKLOADS)))
        ),
        threshold=args.threshold,
    )
    args.restart_settings = restart_samples.Settings(
        rounds=args.rounds or (1 if quick else 3),
        callers=args.callers or (16 if quick else 32),
        cap=args.hang_cap or (10.0 if quick else 30.0),
        scenarios=tuple(_csv(args.scenarios or ",".join(restart_samples.SCENARIO_NAMES))),
        pools=tuple(name for name in restart_samples.POOL_NAMES if _wanted(name, args.contender)),
    )
    args.seconds = args.seconds or (0.5 if quick else 3.0)
    args.rounds = args.rounds or (1 if quick else 3)
    args.warmup = args.warmup if args.warmup is not None else (0.1 if quick else 0.3)
    args.cycle_seconds = args.cycle_seconds or (0.2 if quick else 1.0)
    args.n = [int(x) for x in _csv(args.n or ("1,16" if quick else "1,4,16,64"))]
    args.workload = _csv(args.workload or ",".join(WORKLOAD_NAMES))
    args.loop = _csv(args.loop or ("asyncio,trio,uvloop" if _has_uvloop() else "asyncio,trio"))
    args.backend = _csv(args.backend)
    for name, values, known in (
        ("--workload", args.workload, WORKLOAD_NAMES),
        ("--fleet-workloads", args.fleet.workloads, tuple(FLEET_WORKLOADS)),
        ("--scenarios", args.restart_settings.scenarios, restart_samples.SCENARIO_NAMES),
        ("--loop", args.loop, LOOPS),
        ("--backend", args.backend, ("postgres", "mysql")),
    ):
        wrong = set(values) - set(known)
        if wrong:
            p.error(f"{name}: unknown {', '.join(sorted(wrong))}; known: {', '.join(known)}")
    args.pgbouncer = FLEET in args.workload
    args.restart = RESTART in args.workload
    args.workload = [w for w in args.workload if w not in (FLEET, RESTART)]
    return args


def _has_uvloop() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def _wanted(name: str, patterns: str | None) -> bool:
    if not patterns:
        return True
    low = name.lower()
    return any(
        fnmatch.fnmatch(low, p.lower()) if any(c in p for c in "*?[") else p.lower() in low
        for p in _csv(patterns)
    )


def _select(
    args: argparse.Namespace, info: samples.RunInfo, console: Console
) -> tuple[list[Contender], list[CycleContender], dict[str, Server]]:
    """The contenders asked for that can run here; the others go to ``info.skipped``."""
    if "uvloop" in args.loop and not _has_uvloop():
        args.loop.remove("uvloop")
        info.skipped["uvloop"] = "not installed"
    chosen = [
        c for c in CONTENDERS if c.backend in args.backend and _wanted(c.name, args.contender)
    ]
    pools = [c for c in CYCLE_CONTENDERS if _wanted(c.name, args.contender)]
    if not {"cycles", "waiters"} & set(args.workload):
        pools = []
    if not set(args.workload) - {"cycles", "waiters"}:
        chosen = []
    needed = {c.backend for c in chosen} | {p.backend for p in pools if p.backend}
    servers: dict[str, Server] = {}
    for backend in sorted(needed):
        server = Server.from_env(backend)
        try:
            info.servers[backend] = server.probe()
            servers[backend] = server
        except Exception as exc:
            why = server.redact(f"unreachable: {type(exc).__name__}: {exc}".strip())
            if args.require:
                raise SystemExit(f"{backend} is required but {why}") from None
            console.print(f"skipping every {backend} contender: {why}", markup=False)
            info.skipped[f"{backend} (every contender)"] = why

    def keep(name: str, reason: str | None) -> bool:
        if reason is not None:
            console.print(f"skipping {name}: {reason}", markup=False)
            info.skipped[name] = reason
        return reason is None

    kept = [
        c
        for c in chosen
        if c.backend in servers and keep(c.name, c.unavailable(servers[c.backend]))
    ]
    kept_pools = [
        p
        for p in pools
        if p.backend in (None, *servers) and keep(f"{p.name} (pool cycles)", missing(p.needs))
    ]
    return kept, kept_pools, servers


def _execute(
    runs: list[Run], settings: Settings, console: Console, info: samples.RunInfo
) -> list[samples.Sample]:
    done: list[samples.Sample] = []
    failed: dict[str, str] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    started = time.perf_counter()
    with Progress(
        *columns, TimeRemainingColumn(), console=console, auto_refresh=False, transient=True
    ) as progress:
        bar = progress.add_task("starting", total=len(runs))
        for i, run in enumerate(runs, 1):
            name = run.contender.name
            progress.update(bar, description=run.label, refresh=True)
            if name not in failed:
                try:
                    sample, notes = attempt(run, settings)
                except Exception as exc:
                    failed[name] = f"failed in {run.label}: {type(exc).__name__}: {exc}"
                    console.print(f"{name}: {failed[name]} (its other runs are skipped)")
                else:
                    done.append(sample)
                    left = (time.perf_counter() - started) / i * (len(runs) - i)
                    mark = "  ⚠ DISTURBED" if sample.disturbed else ""
                    console.print(
                        f"[{i}/{len(runs)} ~{left / 60:.1f} min left] {run.label}:"
                        f" {sample.rate:,.0f}/s{mark}" + "".join(f"\n    {n}" for n in notes),
                        markup=False,
                        highlight=False,
                        soft_wrap=True,
                    )
            progress.advance(bar)
            progress.refresh()
    for name, why in failed.items():
        info.skipped[name] = why
    return done


def results_md(out: Path) -> Path:
    """Where RESULTS.md goes: ``benchmarks/RESULTS.md`` for the full run's folder (the
    committed one, beside the code), inside the folder for any other."""
    return HERE / "RESULTS.md" if out.resolve() == FULL_OUT.resolve() else out / "RESULTS.md"


def write(out: Path, info: samples.RunInfo, taken: list[samples.Sample], save: bool) -> str:
    """Write RESULTS.md and the plots (and samples.json when ``save``); returns the text."""
    out.mkdir(parents=True, exist_ok=True)
    if save:
        samples.save(out / "samples.json", info, taken)
    try:
        images = plots.write(out, summarise(taken))
    except ImportError as exc:
        images = []
        info.notes.append(f"no plots: matplotlib is not importable ({exc})")
    md = results_md(out)
    links = [os.path.relpath(out / image, md.parent) for image in images]
    text = report.document(info, taken, links)
    md.write_text(text + "\n")
    return text


def write_fleet(
    out: Path, info: samples.RunInfo, taken: list[pgbouncer.FleetSample], save: bool
) -> str:
    """Write pgbouncer.md (and pgbouncer.json when ``save``) into ``out``; returns the text."""
    out.mkdir(parents=True, exist_ok=True)
    if save:
        pgbouncer.save(out / "pgbouncer.json", info, taken)
    text = pgbouncer_report.document(info, taken)
    (out / "pgbouncer.md").write_text(text + "\n")
    return text


def write_restart(
    out: Path, info: samples.RunInfo, taken: list[restart_samples.RestartSample], save: bool
) -> str:
    """Write restart.md (and restart.json when ``save``) into ``out``; returns the text."""
    out.mkdir(parents=True, exist_ok=True)
    if save:
        restart_samples.save(out / "restart.json", info, taken)
    text = restart_report.document(info, taken)
    (out / "restart.md").write_text(text + "\n")
    return text


def _fleet_server(args: argparse.Namespace, console: Console) -> tuple[Server | None, str]:
    """The PostgreSQL server the pgbouncer workload runs on; or None and why it cannot."""
    why = pgbouncer.unavailable() if "postgres" in args.backend else "needs the postgres backend"
    server = Server.from_env("postgres")
    if why is None:
        try:
            server.probe()
        except Exception as exc:
            why = server.redact(f"postgres unreachable: {type(exc).__name__}: {exc}".strip())
    if why is None:
        return server, ""
    if args.require:
        raise SystemExit(f"the {FLEET} workload is required but {why}")
    console.print(f"skipping the {FLEET} workload: {why}", markup=False)
    return None, why


def _fleet(args: argparse.Namespace, console: Console, out: Path, server: Server) -> None:
    """The pgbouncer workload: run it, print its tables, write pgbouncer.md and .json."""
    settings: pgbouncer.Settings = args.fleet
    info = samples.RunInfo(sysinfo.machine(), sysinfo.versions(), settings=settings.describe())
    info.servers["postgres"] = server.probe()
    runs = pgbouncer.plan(settings)
    each = settings.seconds + settings.warmup + 2.0  # spawning, PgBouncer, closing
    console.print(f"{FLEET}: {len(runs)} runs planned, about {len(runs) * each / 60:.0f} min")
    started = time.perf_counter()

    def say(
        i: int, run: pgbouncer.FleetRun, sample: pgbouncer.FleetSample, notes: list[str]
    ) -> None:
        left = (time.perf_counter() - started) / i * (len(runs) - i)
        peak = max(sample.sessions.get("server") or [0])
        mark = "  ⚠ DISTURBED" if sample.disturbed else ""
        failed = f", {sample.errors:,} failed calls" if sample.errors else ""
        console.print(
            f"[{i}/{len(runs)} ~{left / 60:.1f} min left] {run.label}: {sample.rate:,.0f}"
            f" calls/s, {peak} server sessions{failed}{mark}"
            + "".join(f"\n    {n}" for n in notes),
            markup=False,
            highlight=False,
        )

    taken = pgbouncer.measure(runs, settings, server, info, say)
    write_fleet(out, info, taken, save=True)
    # a wide table folds into unreadable cells at a pipe's default of 80 columns
    wide = console if console.is_terminal else Console(highlight=False, width=200)
    for table in pgbouncer_report.tables(taken):
        wide.print(table)
    for name, why in info.skipped.items():
        console.print(f"{name}: {why}", markup=False)
    print(f"written: {out / 'pgbouncer.md'}, {out / 'pgbouncer.json'}", file=sys.stderr)


def _restart_unavailable(args: argparse.Namespace, console: Console) -> str:
    """Why the restart workload cannot run here ("" when it can)."""
    settings: restart_samples.Settings = args.restart_settings
    why = restart.unavailable() or ("" if settings.pools else "--contender leaves no pool")
    if not why:
        return ""
    if args.require:
        raise SystemExit(f"the {RESTART} workload is required but {why}")
    console.print(f"skipping the {RESTART} workload: {why}", markup=False)
    return why


def _restart(args: argparse.Namespace, console: Console, out: Path) -> None:
    """The restart workload: a private cluster, the runs, restart.md and .json."""
    settings: restart_samples.Settings = args.restart_settings
    info = samples.RunInfo(sysinfo.machine(), sysinfo.versions(), settings=settings.describe())
    pools = []
    for name in settings.pools:
        why = restart.pool_unavailable(name)
        if why is None:
            pools.append(name)
        else:
            console.print(f"skipping {name} in the {RESTART} workload: {why}", markup=False)
            info.skipped[f"{name} ({RESTART} workload)"] = why
    settings = dataclasses.replace(settings, pools=tuple(pools))
    runs = restart.plan(settings)
    console.print(f"{RESTART}: {len(runs)} runs planned on a private PostgreSQL cluster")
    started = time.perf_counter()

    def say(i: int, run: restart_samples.RestartRun, sample: restart_samples.RestartSample) -> None:
        left = (time.perf_counter() - started) / i * (len(runs) - i)
        console.print(
            f"[{i}/{len(runs)} ~{left / 60:.1f} min left] {run.label}: {restart.summary(sample)}",
            markup=False,
            highlight=False,
        )

    with private_cluster() as cluster:
        info.servers["PostgreSQL, private cluster"] = cluster.version()
        info.notes.append(f"PostgreSQL binaries: {cluster.bin_dir}")
        taken = restart.measure(runs, settings, cluster, say)
    write_restart(out, info, taken, save=True)
    wide = console if console.is_terminal else Console(highlight=False, width=200)
    wide.print(restart_report.table(taken, info))
    for name, why in info.skipped.items():
        console.print(f"{name}: {why}", markup=False)
    print(f"written: {out / 'restart.md'}, {out / 'restart.json'}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    console = Console(highlight=False, soft_wrap=True)
    if args.from_json is not None:
        out = args.out or args.from_json.parent
        if pgbouncer.is_ours(args.from_json):
            print(write_fleet(out, *pgbouncer.load(args.from_json), save=False))
        elif restart_samples.is_ours(args.from_json):
            print(write_restart(out, *restart_samples.load(args.from_json), save=False))
        else:
            info, taken = samples.load(args.from_json)
            print(write(out, info, taken, save=False))
        return 0
    out = args.out or (SCRATCH_OUT if args.partial else FULL_OUT)
    server, why = _fleet_server(args, console) if args.pgbouncer else (None, "")
    restart_why = _restart_unavailable(args, console) if args.restart else ""
    if args.workload:
        _single_process(args, console, out, {FLEET: why, RESTART: restart_why})
    if server is not None:
        _fleet(args, console, out, server)
    if args.restart and not restart_why:
        restart_out = args.out or (SCRATCH_OUT if args.restart_partial else FULL_OUT)
        _restart(args, console, restart_out)
    return 0


def _single_process(
    args: argparse.Namespace, console: Console, out: Path, skips: dict[str, str]
) -> None:
    """Every workload but pgbouncer and restart: one process, the contenders side by side;
    RESULTS.md. ``skips``: why pgbouncer or restart, asked for too, cannot run ("": it can)."""
    info = samples.RunInfo(sysinfo.machine(), sysinfo.versions())
    for name, why in skips.items():
        if why:
            info.skipped[f"{name} workload"] = why
    if args.pgbouncer and not skips[FLEET]:
        info.notes.append(f"many processes through PgBouncer: {FLEET}.md beside samples.json")
    if args.restart and not skips[RESTART]:
        info.notes.append(f"a server restart, crash and freeze: {RESTART}.md")
    contenders, pools, servers = _select(args, info, console)
    runs = plan(contenders, pools, servers, args.workload, args.n, args.loop, args.rounds)
    settings = Settings(args.seconds, args.warmup, args.rounds, args.cycle_seconds, args.threshold)
    info.settings = {
        "seconds": settings.seconds,
        "rounds": settings.rounds,
        "warm-up s": settings.warmup,
        "cycle seconds": settings.cycle_seconds,
        "N": ",".join(map(str, args.n)),
        "loops": ",".join(args.loop),
        "workloads": ",".join(args.workload),
        "disturbed above": f"{settings.threshold:.0%} of a core (up to {settings.retries} retries)",
    }
    info.notes.append(f"poolkit's per-query call: `{POOLKIT_CALL}`")
    cycle_runs = sum(isinstance(r.contender, CycleContender) for r in runs)
    guess = (len(runs) - cycle_runs) * (settings.seconds + settings.warmup + 0.3)
    guess += cycle_runs * (settings.cycle_seconds + min(settings.warmup, settings.cycle_seconds))
    console.print(f"{len(runs)} runs planned, about {guess / 60:.0f} min", markup=False)
    taken = _execute(runs, settings, console, info)
    text = write(out, info, taken, save=True)
    print(text)
    print(f"\nwritten: {results_md(out)}, {out}/samples.json and the plots", file=sys.stderr)
