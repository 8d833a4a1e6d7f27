"""The Markdown: the machine, the verdicts, and one table per workload, loop and backend.

Ratios are each contender's median over poolkit's for the same driver family
(poolkit+psycopg2 for PostgreSQL, poolkit+PyMySQL for MySQL, poolkit over the fake driver for
the pool-only cycles), on the same loop. The limits (no event loop) appear in every loop's
table, against that loop's poolkit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from .contenders import CONTENTION_SQL, WORKLOADS
from .cycles import WAITERS
from .runs import QUERY_WORKLOADS
from .samples import RunInfo, Sample
from .summary import Key, Row, fmt, order, ratio, summarise
from .verdicts import native_wins, targets


def _ms(seconds: float) -> str:
    return fmt(seconds * 1e3, ".2f")


def _runs(r: Row) -> str:
    if not r.judged:
        return f"{r.runs} ⚠ all disturbed"
    return f"{r.runs} ({r.disturbed} disturbed, left out)" if r.disturbed else str(r.runs)


def _table(header: list[str], lines: Iterable[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cells) + " |" for cells in lines]
    return out


def _loops(rows: dict[Key, Row], workloads: Iterable[str]) -> list[str]:
    present = {r.loop for r in rows.values() if r.workload in workloads and r.loop != "none"}
    return [x for x in ("asyncio", "uvloop", "trio") if x in present]


def _rows_for(rows: dict[Key, Row], workload: str, loop: str, backend: str) -> list[Row]:
    """The rows of one table: the loop's, and the no-loop limits; by N, then line-up order."""
    mine = [
        r
        for r in rows.values()
        if r.workload == workload and r.backend == backend and r.loop in (loop, "none")
    ]
    rank = {name: i for i, name in enumerate(order(r.contender for r in mine))}
    return sorted(mine, key=lambda r: (r.tasks, r.size, rank[r.contender]))


def query_tables(rows: dict[Key, Row]) -> list[str]:
    out: list[str] = []
    header = ["N", "contender", "q/s", "min-max", "p50 ms", "p99 ms", "client µs/q"]
    header += ["server µs/q", "x poolkit", "runs"]
    backends = sorted({r.backend for r in rows.values() if r.workload in QUERY_WORKLOADS})
    for workload in QUERY_WORKLOADS:
        for loop in _loops(rows, (workload,)):
            for backend in backends:
                mine = _rows_for(rows, workload, loop, backend)
                if not mine:
                    continue
                sql = WORKLOADS[workload][backend]
                out += [f"### {workload} — {loop} — {backend}: `{sql}`", ""]
                out += _table(
                    header,
                    (
                        [
                            str(r.tasks),
                            r.contender + (" (no loop)" if r.loop == "none" else ""),
                            f"{r.rate:,.0f}",
                            f"{r.lo:,.0f}-{r.hi:,.0f}",
                            _ms(r.p50),
                            _ms(r.p99),
                            fmt(r.client_us, ".0f"),
                            fmt(r.server_us, ".0f"),
                            fmt(ratio(rows, r, loop)),
                            _runs(r),
                        ]
                        for r in mine
                    ),
                )
                out.append("")
    return out


def contention_table(rows: dict[Key, Row]) -> list[str]:
    mine = [r for r in rows.values() if r.workload == "contention"]
    if not mine:
        return []
    first = mine[0]
    out = [
        f"### contention: {first.tasks} tasks on a max_size={first.size} pool, "
        f"each looping acquire → `{CONTENTION_SQL}` → release",
        "",
        "Acquire wait: from asking for a connection to holding it. Fairness: the most "
        "acquisitions of one task over the fewest (1.00 is perfectly even; ∞: a task starved).",
        "",
    ]
    header = ["backend", "loop", "contender", "q/s", "min-max", "wait p50 ms", "wait p99 ms"]
    header += ["fairness max/min", "starved tasks", "client µs/q", "server µs/q", "x poolkit"]
    rank = {name: i for i, name in enumerate(order(r.contender for r in mine))}
    mine.sort(key=lambda r: (r.backend, r.loop, rank[r.contender]))
    cells = (
        [
            *(r.backend, r.loop, r.contender),
            f"{r.rate:,.0f}",
            f"{r.lo:,.0f}-{r.hi:,.0f}",
            _ms(r.p50),
            _ms(r.p99),
            fmt(r.fairness),
            str(r.starved),
            fmt(r.client_us, ".0f"),
            fmt(r.server_us, ".0f"),
            fmt(ratio(rows, r)),
            _runs(r),
        ]
        for r in mine
    )
    return [*out, *_table([*header, "runs"], cells), ""]


def cycle_tables(rows: dict[Key, Row]) -> list[str]:
    out: list[str] = []
    mine = [r for r in rows.values() if r.workload == "cycles"]
    if mine:
        rank = {name: i for i, name in enumerate(order(r.contender for r in mine))}
        mine.sort(key=lambda r: (r.tasks, r.size, r.loop, rank[r.contender]))
        out += [
            "### pool-only cycles: acquire → one checkpoint → release, no statement",
            "",
            "x poolkit: cycles/s over poolkit's on the same loop (below 1: slower than poolkit)."
            " Server µs/cycle near 0 shows a cycle did no I/O.",
            "",
        ]
        out += _table(
            [
                *("tasks/conns", "loop", "contender", "cycles/s", "µs/cycle", "x poolkit"),
                *("server µs/cycle", "client µs/cycle", "runs"),
            ],
            (
                [
                    f"{r.tasks}/{r.size}",
                    r.loop,
                    r.contender,
                    f"{r.rate:,.0f}",
                    fmt(r.us_per_op),
                    fmt(ratio(rows, r)),
                    fmt(r.server_us, ".1f") if r.backend != "none" else "—",
                    fmt(r.client_us, ".1f"),
                    _runs(r),
                ]
                for r in mine
            ),
        )
        out.append("")
    waiting = [r for r in rows.values() if r.workload == "waiters"]
    if waiting:
        out += [
            "### queued waiters: cost of a cycle with callers queued behind a max_size=1 pool",
            "",
            f"Must stay flat: x {WAITERS[0]} is the µs/cycle over that with {WAITERS[0]} waiters.",
            "",
        ]
        lines = []
        for name in order(r.contender for r in waiting):
            for loop in _loops(rows, ("waiters",)):
                cost = {r.tasks: r for r in waiting if r.contender == name and r.loop == loop}
                base = cost.get(WAITERS[0])
                for w in sorted(cost):
                    r = cost[w]
                    growth = r.us_per_op / base.us_per_op if base is not None else math.nan
                    lines.append([name, loop, f"{w:,}", fmt(r.us_per_op), fmt(growth), _runs(r)])
        header = ["contender", "loop", "waiters", "µs/cycle", f"x {WAITERS[0]} waiters", "runs"]
        out += [*_table(header, lines), ""]
    return out


def _verdict_lines(rows: dict[Key, Row]) -> list[str]:
    out = ["## Verdicts", "", "From undisturbed runs only.", ""]
    for v in targets(rows):
        out.append(f"- **{v.status}** {v.target}")
        out += [f"  - {d}" for d in v.details]
    out += ["", "## Where native async still wins, by how much", ""]
    wins = native_wins(rows)
    out += [f"- {w}" for w in wins] or ["- nowhere in this run"]
    return [*out, ""]


def machine_lines(info: RunInfo) -> list[str]:
    """The machine, the commit measured, the servers and the settings, as list items."""
    m, s = info.machine, info.settings
    return [
        f"- Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('ram', '?')} RAM,"
        f" {m.get('kernel', '?')}; {m.get('python', '?')}; {m.get('date', '?')}",
        f"- poolkit commit: {m.get('commit', 'not recorded')}",
        *(f"- Server ({name}): {version}" for name, version in sorted(info.servers.items())),
        "- Settings: " + ", ".join(f"{k} {v}" for k, v in s.items()),
    ]


def versions_lines(info: RunInfo) -> list[str]:
    """The installed versions, and what is not installed."""
    out = [
        "Versions: "
        + ", ".join(f"{k} {v}" for k, v in info.versions.items() if v != "not installed"),
        "",
    ]
    absent = [k for k, v in info.versions.items() if v == "not installed"]
    if absent:
        out += [f"Not installed: {', '.join(absent)}.", ""]
    return out


def skipped_lines(info: RunInfo) -> list[str]:
    """A "Skipped" section naming what did not run and why (nothing when all ran)."""
    if not info.skipped:
        return []
    return [
        "## Skipped",
        "",
        *(f"- {name}: {why}" for name, why in sorted(info.skipped.items())),
        "",
    ]


def _header(info: RunInfo, samples: list[Sample]) -> list[str]:
    retried = sum(x.attempts - 1 for x in samples)
    disturbed = sum(x.disturbed for x in samples)
    return [
        "# poolkit benchmarks",
        "",
        *machine_lines(info),
        f"- Runs: {len(samples)} measured; {retried} repeated because other processes used the"
        f" CPU; {disturbed} still disturbed after the retries (kept, marked ⚠ or 'left out',"
        " and excluded from the verdicts)",
        *(f"- {note}" for note in info.notes),
        "",
        *versions_lines(info),
    ]


def document(info: RunInfo, samples: list[Sample], plots: Iterable[str] = ()) -> str:
    """RESULTS.md (also what is printed at the end of a run)."""
    rows = summarise(samples)
    out = _header(info, samples) + _verdict_lines(rows)
    out += ["## Query workloads", "", *query_tables(rows)]
    out += ["## Pools under contention", "", *contention_table(rows)]
    out += ["## Pool-only cost, no I/O", "", *cycle_tables(rows)]
    images = list(plots)
    if images:
        out += ["## Plots", "", *(f"![{p}]({p})" for p in images), ""]
    out += skipped_lines(info)
    return "\n".join(out)
