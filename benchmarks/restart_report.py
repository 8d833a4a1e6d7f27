"""The restart workload's output: one row per (scenario, measure), a column per pool, as
Markdown for ``restart.md`` and as a rich table for the terminal, both from the same cells.

A cell is the median over the rounds with the range beside it, ``median (min to max)``. A time
that hung (nothing within the cap) counts as longer than any other, so a median that hung
reads ``>30 s, hung``; a cell with any hung run says in how many. Runs whose process failed
(``broken``) are left out of the cells and listed. The "best" column names the pool(s) with
the lowest median of the row (ties all named); rows that only give context have none.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from rich import box
from rich.table import Table

from .report import machine_lines, skipped_lines, versions_lines
from .restart_samples import RestartSample
from .restart_scenarios import AFTER_CLOSE, PAUSE, POOLS, SCENARIOS
from .samples import RunInfo


@dataclass(frozen=True)
class Measure:
    """One row of a scenario: a field of :class:`RestartSample` and how to show it."""

    label: str
    field: str
    #: "ms", "s" (times) or "n" (counts)
    unit: str
    #: whether lower is better (False: context only, no "best")
    judged: bool = True
    #: judged by the worst run, not the median (where any run above 0 is a failure)
    by_worst: bool = False


_CLOSE = [
    Measure("close() took", "seconds", "s"),
    Measure(f"callers still blocked {AFTER_CLOSE:g} s after close() returned", "blocked", "n"),
    Measure(
        f"Python threads {AFTER_CLOSE:g} s after close(), over before the pool", "threads", "n"
    ),
    Measure("Python threads left after the clean-up", "threads_left", "n"),
]
MEASURES: dict[str, list[Measure]] = {
    "restart-burst": [
        Measure("failed calls (of {callers})", "failed", "n"),
        Measure("time for the {callers} calls", "seconds", "ms"),
    ],
    "restart-sequential": [
        Measure("failed calls (of {callers})", "failed", "n"),
        Measure("time for the {callers} calls", "seconds", "ms"),
    ],
    "crash-recovery": [
        Measure("server accepts → first commit", "seconds", "ms"),
        Measure("server accepts → every writer committed", "all_back", "ms"),
        Measure("errors seen by writers", "failed", "n"),
        Measure("acknowledged rows lost", "lost", "n", by_worst=True),
        Measure("commits acknowledged in the run", "acked", "n", judged=False),
        Measure("crash → server accepts", "outage", "ms", judged=False),
    ],
    "close-frozen": _CLOSE,
    "close-connect-hang": _CLOSE,
}
HUNG = math.inf


@dataclass(frozen=True)
class Cell:
    """A measure's values over one pool's runs of a scenario (inf: hung; NaN: not measured)."""

    values: tuple[float, ...]
    #: how many of those runs hung (the whole run, not only this measure)
    hung: int

    @property
    def known(self) -> list[float]:
        return [v for v in self.values if not math.isnan(v)]

    @property
    def median(self) -> float:
        known = self.known
        return statistics.median(known) if known else math.nan

    @property
    def worst(self) -> float:
        known = self.known
        return max(known) if known else math.nan


def _value(sample: RestartSample, m: Measure) -> float:
    raw = getattr(sample, m.field)
    if raw is None:
        # a time that did not happen because the run hung counts as the longest
        return HUNG if sample.hung and m.unit != "n" else math.nan
    return float(raw)


def cell(runs: Sequence[RestartSample], m: Measure) -> Cell:
    used = [s for s in runs if not s.broken]
    return Cell(tuple(_value(s, m) for s in used), sum(s.hung for s in used))


def shown(x: float, unit: str) -> float:
    """``x`` as precise as the table shows it (ms: whole above 10 ms, else 0.1; s: 0.01;
    counts: 0.5), so "best" never tells apart what reads the same."""
    if math.isinf(x) or math.isnan(x):
        return x
    if unit == "ms":
        return round(x * 1e3) if abs(x) >= 0.01 else round(x * 1e3, 1)
    return round(x, 2) if unit == "s" else round(x, 1)


def _number(x: float, unit: str) -> str:
    value = shown(x, unit)
    if unit == "ms":
        return f"{value:,.0f}" if abs(x) >= 0.01 else f"{value:.1f}"
    if unit == "s":
        return f"{value:.2f}"
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def show(c: Cell, unit: str, cap: float) -> str:
    """``median (min to max)`` with the unit; ``>cap s, hung`` for a median that hung."""
    known = c.known
    if not known:
        return "—"
    median = statistics.median(known)
    suffix = {"ms": " ms", "s": " s", "n": ""}[unit]
    if math.isinf(median):
        text = f">{cap:g} s, hung"
        if len(c.values) > 1:
            text += f" in {c.hung}/{len(c.values)}"
    else:
        text = _number(median, unit) + suffix
        lo, hi = min(known), max(known)
        if len(known) > 1:
            high = "hung" if math.isinf(hi) else _number(hi, unit)
            text += f" ({_number(lo, unit)} to {high})"
        if c.hung and len(c.values) > 1:
            text += f" ⚠ hung {c.hung}/{len(c.values)}"
    return text


def best(cells: dict[str, Cell], m: Measure) -> list[str]:
    """The pools with the lowest median (or worst run: ``m.by_worst``) as the table shows it
    (ties: all of them); [] when none has a value or every one hung."""
    key = {name: c.worst if m.by_worst else c.median for name, c in cells.items()}
    medians = {name: shown(v, m.unit) for name, v in key.items() if not math.isnan(v)}
    if not medians:
        return []
    low = min(medians.values())
    if math.isinf(low):
        return []
    return [name for name, v in medians.items() if v == low]


def overlapping(cells: dict[str, Cell], winners: list[str], m: Measure) -> list[str]:
    """The other pools whose range (min to max, as shown) meets a winner's: the medians
    differ, the runs do not tell the pools apart. [] for a row judged by its worst run."""
    if m.by_worst:
        return []

    def span(c: Cell) -> tuple[float, float]:
        return shown(min(c.known), m.unit), shown(max(c.known), m.unit)

    found = []
    for name, c in cells.items():
        if name in winners or not c.known:
            continue
        lo, hi = span(c)
        if any(lo <= span(cells[w])[1] and span(cells[w])[0] <= hi for w in winners):
            found.append(name)
    return found


def _cap(info: RunInfo) -> float:
    try:
        return float(info.settings.get("hang cap s", 30))
    except ValueError:
        return 30.0


def _fill(text: str, info: RunInfo) -> str:
    s = info.settings
    return text.format(
        callers=s.get("callers", "C"),
        size=s.get("pool size", "M"),
        outage=float(s.get("crash outage s", 1)),
        steady=float(s.get("writing before the crash s", 1)),
        min=s.get("pool size", "M"),
        max=s.get("pool size", "M"),
    )


def _pools(samples: Sequence[RestartSample]) -> list[str]:
    present = {s.pool for s in samples}
    known = [p.name for p in POOLS if p.name in present]
    return known + sorted(present - set(known))


def _scenarios(samples: Sequence[RestartSample]) -> list[str]:
    present = {s.scenario for s in samples}
    return [name for name in SCENARIOS if name in present] + sorted(present - set(SCENARIOS))


Row = tuple[str, Measure, dict[str, Cell]]


def rows(samples: Sequence[RestartSample]) -> list[Row]:
    """(scenario, measure, pool → cell) for every row of the table, in order."""
    pools = _pools(samples)
    out: list[Row] = []
    for scenario in _scenarios(samples):
        mine = [s for s in samples if s.scenario == scenario]
        for m in MEASURES.get(scenario, []):
            cells = {p: cell([s for s in mine if s.pool == p], m) for p in pools}
            if any(c.values for c in cells.values()):
                out.append((scenario, m, cells))
    return out


def cells(row: Row, pools: list[str], info: RunInfo) -> list[str]:
    """One table line: scenario, measure, a cell per pool, the best."""
    scenario, m, by_pool = row
    cap = _cap(info)
    winners = best(by_pool, m) if m.judged else []
    if m.judged and not winners:
        verdict = "none (all hung)" if any(c.known for c in by_pool.values()) else "—"
    elif m.judged and len(winners) == len([c for c in by_pool.values() if c.known]) > 1:
        verdict = "tie"
    else:
        verdict = ", ".join(winners)
        near = overlapping(by_pool, winners, m) if m.judged else []
        if near:
            verdict += f"; range overlaps {', '.join(near)}"
    return [
        scenario,
        _fill(m.label, info),
        *(show(by_pool[p], m.unit, cap) for p in pools),
        verdict,
    ]


def reading(samples: Sequence[RestartSample], info: RunInfo) -> list[str]:
    """The table in sentences: per judged row, the best pool(s) and the others' medians;
    then every hang and every lost row."""
    pools, cap = _pools(samples), _cap(info)
    table = rows(samples)
    out = []
    for scenario, m, by_pool in table:
        if not m.judged:
            continue
        winners = best(by_pool, m)
        said = {
            p: ("at most " if m.by_worst else "")
            + show(Cell((c.worst if m.by_worst else c.median,), 0), m.unit, cap)
            for p, c in by_pool.items()
            if c.known
        }
        if m.field == "seconds" and scenario.startswith("close"):
            # a close() that returns at once is no win if it leaves its callers blocked
            blocked = next(c for s, x, c in table if s == scenario and x.field == "blocked")
            for p in said:
                left = blocked[p].median
                if not math.isnan(left):
                    said[p] += f" with {_number(left, 'n')} callers still blocked"
        label = _fill(m.label, info)
        if not winners:
            out.append(f"- {scenario}, {label}: every pool hung.")
            continue
        others = [f"{p} {said[p]}" for p in pools if p in said and p not in winners]
        if not others and len(winners) > 1:
            out.append(f"- {scenario}, {label}: the same for all, {said[winners[0]]}.")
            continue
        head = ", ".join(f"{p} ({said[p]})" for p in winners)
        near = overlapping(by_pool, winners, m)
        if near:
            head += f", but the runs overlap those of {', '.join(near)}"
        then = f"; then {', '.join(others)}" if others else ""
        out.append(f"- {scenario}, {label}: best {head}{then}.")
    for scenario in _scenarios(samples):
        for p in pools:
            mine = [s for s in samples if s.scenario == scenario and s.pool == p]
            hung = sum(s.hung for s in mine)
            if hung:
                out.append(f"- **{p} hung** in {scenario}: {hung} of {len(mine)} runs.")
            lost = sum(s.lost or 0 for s in mine)
            if lost:
                out.append(f"- **{p} lost {lost} acknowledged rows** in {scenario}.")
    return out


def _details(samples: Sequence[RestartSample]) -> list[str]:
    """Per scenario and pool: the first error its callers saw in each run (the distinct
    ones, at most two), and every run's note."""
    out = []
    for scenario in _scenarios(samples):
        for p in _pools(samples):
            mine = [s for s in samples if s.scenario == scenario and s.pool == p]
            errors = list(dict.fromkeys(s.error for s in mine if s.error))
            notes = [
                f"round {s.round + 1}: {s.broken or s.note}" for s in mine if s.broken or s.note
            ]
            if errors:
                out.append(f"- {scenario}, {p}: first error of a run: `{errors[0]}`")
                out += [f"  (in another run: `{e}`)" for e in errors[1:2]]
            out += [f"- {scenario}, {p}, {n}" for n in notes]
    return out


def _others(samples: Sequence[RestartSample]) -> str:
    shares = [s.others_cpu / s.wall for s in samples if s.wall > 0]
    if not shares:
        return "not recorded"
    return (
        f"median {statistics.median(shares):.0%} of a core, at most {max(shares):.0%} (recorded,"
        " not judged: a run is not repeated for it)"
    )


def document(info: RunInfo, samples: list[RestartSample]) -> str:
    """restart.md."""
    pools = _pools(samples)
    header = ["scenario", "measure", *pools, "best"]
    out = [
        "# poolkit benchmarks: a server restart, crash and freeze, three pools side by side",
        "",
        *machine_lines(info),
        f"- Runs: {len(samples)}, {sum(1 for s in samples if s.broken)} of them failed to"
        f" measure; other processes' CPU during a run: {_others(samples)}",
        *(f"- {note}" for note in info.notes),
        "",
        *versions_lines(info),
        "Each pool with its library's defaults but the sizes, on asyncio:",
        "",
        *(f"- {p.name}: {_fill(p.built, info)}" for p in POOLS if p.name in pools),
        "",
        "The server is a private PostgreSQL cluster started for the workload (initdb into a"
        " temporary directory, trust auth, its own port on 127.0.0.1), stopped and removed"
        " after it. Each run (a scenario with one pool) happens in a fresh process; the pools"
        " take turns in alternating order, round after round. After each run the cluster is"
        " thawed, started again if it is down, and every session left is ended.",
        "",
        *(f"- `{name}`: {_fill(s.description, info)}" for name, s in SCENARIOS.items()),
        "",
        "A call is acquire, the statement, release (`async with` the pool's connection"
        " context). Restart: the burst starts once a fresh connection succeeds. Crash: a"
        " write is `INSERT ... RETURNING id` then a commit where the driver is not in"
        f" autocommit; writers run {_fill('{steady:g}', info)} s before the crash and pause"
        f" {PAUSE:g} s after"
        " a failed write; 'server accepts' is the first plain psycopg2 connect that succeeds,"
        " polled every 10 ms from when the cluster is started again; a commit counts after"
        " the restart when it was acknowledged after the cluster was started again; lost ="
        " acknowledged ids missing from the table afterwards. Close: blocked = callers that"
        f" had not returned {AFTER_CLOSE:g} s after close() returned (at the cap when it"
        " hung); Python threads exclude the event loop's default executor (which the"
        " benchmark itself uses to act on the cluster); the clean-up thaws the server, cuts"
        " close() off if it hung, ends every session and gives the callers 10 s.",
        "",
        "Each cell: median over the rounds (min to max). ⚠ hung k/n: k of the n runs did not"
        f" end within the cap ({_cap(info):g} s); a time that hung counts as the longest."
        " Best: the lowest median of the row, as shown (equal ones all named; 'range overlaps'"
        " names a pool whose min-to-max meets the best one's); for rows lost, the lowest"
        " worst run.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(cells(r, pools, info)) + " |" for r in rows(samples)),
        "",
        "## Reading",
        "",
        *reading(samples, info),
        "",
    ]
    details = _details(samples)
    if details:
        out += ["## Errors and notes, per scenario and pool", "", *details, ""]
    out += skipped_lines(info)
    return "\n".join(out)


def table(samples: list[RestartSample], info: RunInfo) -> Table:
    """The same table for the terminal."""
    pools = _pools(samples)
    out = Table(
        title="restart, crash, freeze: median (min to max) over rounds", box=box.SIMPLE_HEAD
    )
    for i, name in enumerate(["scenario", "measure", *pools, "best"]):
        out.add_column(name, justify="right" if 2 <= i < 2 + len(pools) else "left")
    for r in rows(samples):
        out.add_row(*cells(r, pools, info))
    return out
