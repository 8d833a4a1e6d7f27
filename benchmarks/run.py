"""The command line: pick the runs, run them with a progress bar, print and write the results.

    python -m benchmarks                # full: 3 rounds x 3 s, N = 1, 4, 16, 64 (~45 min)
    python -m benchmarks --quick        # 1 round x 0.5 s, N = 1, 16, short cycles (~2 min)
    python -m benchmarks --workload select1 --contender 'poolkit*,asyncpg*' --n 16
    python -m benchmarks --from-json benchmarks/results/samples.json   # re-render only

Wrap every measuring run in ``flock /tmp/poolkit-bench.lock`` on a shared machine.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.util
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from . import plots, report, samples, sysinfo
from .contenders import CONTENDERS, POOLKIT_CALL, Contender, missing
from .cycles import CYCLE_CONTENDERS, CycleContender
from .dsn import Server
from .runs import ALL_WORKLOADS, Run, Settings, attempt, plan
from .summary import summarise

HERE = Path(__file__).resolve().parent
FULL_OUT, SCRATCH_OUT = HERE / "results", HERE / "results-quick"
LOOPS = ("asyncio", "uvloop", "trio")


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
    p.add_argument("--workload", help=f"some of {','.join(ALL_WORKLOADS)} (all)")
    p.add_argument("--contender", help="names to keep: comma-separated globs or substrings")
    p.add_argument("--loop", help="asyncio,trio (and uvloop, when installed)")
    p.add_argument("--backend", default="postgres,mysql", help="postgres,mysql")
    p.add_argument("--out", type=Path, help=f"results folder ({FULL_OUT.name}/ for a full run)")
    p.add_argument("--from-json", type=Path, help="re-render a samples.json; run nothing")
    p.add_argument("--require", action="store_true", help="an unreachable server is an error")
    p.add_argument("--threshold", type=float, default=0.05, help="disturbed: others' CPU share")
    args = p.parse_args(argv)
    partial = any(v is not None for v in (args.seconds, args.rounds, args.n, args.workload))
    partial = partial or args.contender is not None or args.loop is not None
    args.partial = args.quick or partial or args.backend != "postgres,mysql"
    quick = args.quick
    args.seconds = args.seconds or (0.5 if quick else 3.0)
    args.rounds = args.rounds or (1 if quick else 3)
    args.warmup = args.warmup if args.warmup is not None else (0.1 if quick else 0.3)
    args.cycle_seconds = args.cycle_seconds or (0.2 if quick else 1.0)
    args.n = [int(x) for x in _csv(args.n or ("1,16" if quick else "1,4,16,64"))]
    args.workload = _csv(args.workload or ",".join(ALL_WORKLOADS))
    args.loop = _csv(args.loop or ("asyncio,trio,uvloop" if _has_uvloop() else "asyncio,trio"))
    args.backend = _csv(args.backend)
    for name, values, known in (
        ("--workload", args.workload, ALL_WORKLOADS),
        ("--loop", args.loop, LOOPS),
        ("--backend", args.backend, ("postgres", "mysql")),
    ):
        wrong = set(values) - set(known)
        if wrong:
            p.error(f"{name}: unknown {', '.join(sorted(wrong))}; known: {', '.join(known)}")
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


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    console = Console(highlight=False, soft_wrap=True)
    if args.from_json is not None:
        info, taken = samples.load(args.from_json)
        print(write(args.out or args.from_json.parent, info, taken, save=False))
        return 0
    info = samples.RunInfo(sysinfo.machine(), sysinfo.versions())
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
    out = args.out or (SCRATCH_OUT if args.partial else FULL_OUT)
    text = write(out, info, taken, save=True)
    print(text)
    print(f"\nwritten: {results_md(out)}, {out}/samples.json and the plots", file=sys.stderr)
    return 0
