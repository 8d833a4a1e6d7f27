"""The PgBouncer case's output: one row per (workload, mode, K, M), as Markdown for
``pgbouncer.md`` and as rich tables for the terminal, both from the same cells.

A row's throughput is the median over its rounds of the calls/s of all K processes together,
from undisturbed runs (all of them, marked, when every run was disturbed); its latency
percentiles come from the merged histograms of those runs. Session counts: peak is the highest
reading of any of its runs, steady the median of each run's median reading.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rich import box
from rich.table import Table

from .fleet import WORKLOADS
from .pgbouncer import MODES, FleetCase, FleetSample
from .report import machine_lines, skipped_lines, versions_lines
from .samples import RunInfo, percentile
from .sessions import peak, steady
from .summary import Judged, fmt, judged

RowKey = tuple[str, str, int, int, int]  # workload, mode, processes, size, tasks
#: (Markdown heading, terminal heading) of each column
COLUMNS = (
    ("K x M", "K x M"),
    ("mode", "mode"),
    ("calls/s", "calls/s"),
    ("min-max", "min-max"),
    ("PgBouncer / direct", "/direct"),
    ("p50 ms", "p50 ms"),
    ("p99 ms", "p99 ms"),
    ("per process calls/s", "per process"),
    ("per process p99 ms", "proc p99"),
    ("server sessions peak / steady", "sessions"),
    ("readings", "readings"),
    ("PgBouncer clients / waiting, peak", "clients/wait"),
    ("CPU µs/call: clients / postgres / PgBouncer", "µs/call cl/pg/pgb"),
    ("runs", "runs"),
)


@dataclass(frozen=True)
class FleetRow(Judged, FleetCase):
    """The summary of one case's samples (:class:`~.summary.Judged` says what of its runs)."""

    #: lowest and highest calls/s (and p99 latency) of one process in any used run
    process_rate: tuple[float, float]
    process_p99: tuple[float, float]
    sessions_peak: int
    sessions_steady: float
    #: how many readings of the server sessions those come from (over every used run)
    readings: int
    #: the most sessions other clients had open on the database at once (0: none)
    others_peak: int
    clients_peak: int
    waiting_peak: int
    client_us: float
    server_us: float
    bouncer_us: float
    errors: int
    error: str


def _median(values: Iterable[float]) -> float:
    """The median of the numbers that are not NaN (a run with no reading); NaN if none."""
    known = [v for v in values if not math.isnan(v)]
    return statistics.median(known) if known else math.nan


def _others(sample: FleetSample) -> int:
    every, ours = sample.sessions.get("server_all", []), sample.sessions.get("server", [])
    return max((a - b for a, b in zip(every, ours, strict=False)), default=0)


def row(samples: Sequence[FleetSample]) -> FleetRow:
    """The row of one key's samples."""
    fields, used = judged(samples, lambda s: s.hists)
    ops = max(1, sum(sum(s.ops) for s in used))
    per_rate = [n / s.seconds for s in used for n in s.ops]
    per_p99 = [percentile(h, 0.99) for s in used for h in s.hists if h]
    return FleetRow(
        **samples[0].case(),
        **fields,
        process_rate=(min(per_rate, default=math.nan), max(per_rate, default=math.nan)),
        process_p99=(min(per_p99, default=math.nan), max(per_p99, default=math.nan)),
        sessions_peak=max(peak(s.sessions, "server") for s in used),
        sessions_steady=_median(steady(s.sessions, "server") for s in used),
        readings=sum(len(s.sessions.get("server", [])) for s in used),
        others_peak=max(_others(s) for s in used),
        clients_peak=max(peak(s.sessions, "clients") for s in used),
        waiting_peak=max(peak(s.sessions, "cl_waiting") for s in used),
        client_us=sum(s.client_cpu for s in used) / ops * 1e6,
        server_us=sum(s.server_cpu for s in used) / ops * 1e6,
        bouncer_us=sum(s.bouncer_cpu for s in used) / ops * 1e6,
        errors=sum(s.errors for s in samples),
        error=next((s.error for s in samples if s.error), ""),
    )


def summarise(samples: Iterable[FleetSample]) -> dict[RowKey, FleetRow]:
    groups: dict[RowKey, list[FleetSample]] = {}
    for sample in samples:
        groups.setdefault(sample.key, []).append(sample)
    return {key: row(group) for key, group in groups.items()}


def ratio(rows: dict[RowKey, FleetRow], r: FleetRow) -> float:
    """Through PgBouncer over direct, for the same workload, K and M (NaN: no pair)."""
    w, _, k, m, c = r.key
    direct, bounced = rows.get((w, "direct", k, m, c)), rows.get((w, "pgbouncer", k, m, c))
    if direct is None or bounced is None or not direct.rate:
        return math.nan
    return bounced.rate / direct.rate


def _ms(seconds: float) -> str:
    return fmt(seconds * 1e3, ".2f")


def _range(pair: tuple[float, float], spec: str, scale: float = 1.0) -> str:
    lo, hi = pair
    return f"{fmt(lo * scale, spec)}-{fmt(hi * scale, spec)}"


def _runs(r: FleetRow) -> str:
    text = str(r.runs)
    if not r.judged:
        text += " ⚠ all disturbed"
    elif r.disturbed:
        text += f" ({r.disturbed} disturbed, left out)"
    return text + (f"; {r.errors:,} failed calls" if r.errors else "")


def cells(rows: dict[RowKey, FleetRow], r: FleetRow) -> list[str]:
    """One table line: a cell per column of :data:`COLUMNS` for ``r``."""
    bounced = r.mode == "pgbouncer"
    return [
        f"{r.processes} x {r.size}" + (f" ({r.tasks} tasks)" if r.tasks != r.size else ""),
        f"PgBouncer ({r.pool_size})" if bounced else "direct",
        f"{r.rate:,.0f}",
        f"{r.lo:,.0f}-{r.hi:,.0f}",
        fmt(ratio(rows, r)) + "x" if bounced else "",
        _ms(r.p50),
        _ms(r.p99),
        _range(r.process_rate, ",.0f"),
        _range(r.process_p99, ".2f", 1e3),
        f"{r.sessions_peak} / {fmt(r.sessions_steady, 'g')}",
        str(r.readings),
        f"{r.clients_peak} / {r.waiting_peak}" if bounced else "—",
        f"{fmt(r.client_us, '.0f')} / {fmt(r.server_us, '.0f')}"
        + (f" / {fmt(r.bouncer_us, '.0f')}" if bounced else ""),
        _runs(r),
    ]


def ordered(rows: dict[RowKey, FleetRow], workload: str) -> list[FleetRow]:
    """A workload's rows: by M, K, then direct before PgBouncer."""
    mine = [r for r in rows.values() if r.workload == workload]
    return sorted(mine, key=lambda r: (r.size, r.tasks, r.processes, MODES.index(r.mode)))


def _workloads(rows: dict[RowKey, FleetRow]) -> list[str]:
    present = {r.workload for r in rows.values()}
    return [w for w in (*WORKLOADS, *sorted(present - set(WORKLOADS))) if w in present]


def _title(workload: str) -> str:
    known = WORKLOADS.get(workload)
    return f"`{workload}`: {known.description}" if known else f"`{workload}`"


def document(info: RunInfo, samples: list[FleetSample]) -> str:
    """pgbouncer.md."""
    rows = summarise(samples)
    retried = sum(s.attempts - 1 for s in samples)
    disturbed = sum(s.disturbed for s in samples)
    readings = [len(s.sessions.get("server", [])) for s in samples] or [0]
    out = [
        "# poolkit benchmarks: K processes x a pool of M each, direct vs through PgBouncer",
        "",
        *machine_lines(info),
        f"- Runs: {len(samples)} measured; {retried} repeated because other processes used the"
        f" CPU; {disturbed} still disturbed after the retries (kept, marked ⚠ or 'left out')",
        f"- Server session readings per run: {min(readings)}-{max(readings)} (a reading that"
        " completed after the window is dropped)",
        *(f"- {note}" for note in info.notes),
        "",
        *versions_lines(info),
        "K fresh processes (multiprocessing spawn), each with `poolkit.Pool(psycopg2, dsn,"
        " min_size=M, max_size=M)` in autocommit and C tasks repeating one call (asyncio),"
        " started together and measured in the same window; `direct` connects every pool to"
        " PostgreSQL, `PgBouncer (n)` to a PgBouncer in transaction pooling mode with"
        " `default_pool_size = n`, started for that run alone. Both modes in each round,"
        " alternating which goes first, each with fresh processes.",
        "",
        "calls/s: all K processes together, the median of the rounds (min-max beside it);"
        " PgBouncer / direct: the ratio of those medians. p50/p99: the latency of one call,"
        " acquire included, over every process. Per process: the slowest and fastest process's"
        " calls/s and p99 over the rounds. Server sessions: client backends of the database"
        " opened by the run (`pg_stat_activity`, by application_name), read every 50 ms over"
        " two connections during the window by a separate sampler in this process (peak: the"
        " most at once; steady: the median reading); readings: how many, over the rounds (on a"
        " busy small machine the sampler's backend can wait on the run queue for seconds, and"
        " a reading that completes after the window is dropped). PgBouncer clients: its client"
        " connections (`SHOW CLIENTS`); waiting: clients queued for a server connection"
        " (`SHOW POOLS` cl_waiting). CPU: per call, of the K processes, of every PostgreSQL"
        " process, and of PgBouncer. A run is repeated when other processes used the CPU (or"
        " its CPU readings add up to more than the machine has); one still disturbed after the"
        " retries is kept, marked, and left out of its row.",
        "",
    ]
    for workload in _workloads(rows):
        mine = ordered(rows, workload)
        out += [f"## {_title(workload)}", "", "| " + " | ".join(c[0] for c in COLUMNS) + " |"]
        out += ["|" + "---|" * len(COLUMNS)]
        out += ["| " + " | ".join(cells(rows, r)) + " |" for r in mine]
        out.append("")
        for r in mine:
            if r.others_peak:
                out.append(
                    f"- {r.processes} x {r.size} {r.mode}: other clients held up to"
                    f" {r.others_peak} session(s) on the database meanwhile (not counted)"
                )
            if r.error:
                out.append(f"- {r.processes} x {r.size} {r.mode}: first failed call: {r.error}")
        if out[-1] != "":
            out.append("")
    out += skipped_lines(info)
    return "\n".join(out)


def tables(samples: list[FleetSample]) -> list[Table]:
    """The same tables for the terminal."""
    rows = summarise(samples)
    out = []
    for workload in _workloads(rows):
        table = Table(title=_title(workload).replace("`", ""), box=box.SIMPLE_HEAD)
        for i, (_, name) in enumerate(COLUMNS):
            table.add_column(name, justify="left" if i < 2 else "right")
        for r in ordered(rows, workload):
            table.add_row(*cells(rows, r))
        out.append(table)
    return out
