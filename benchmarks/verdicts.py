"""The issue's targets, judged from a run; and where native async still wins.

Each target is MET, MISSED, or UNJUDGED (not run, or every sample of a row it needs was
disturbed). Only undisturbed samples count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .contenders import ASYNCPG, POOLKIT_PG
from .cycles import CONFIGS, POOLKIT_FAKE, PSYCOPG_POOL
from .runs import QUERY_WORKLOADS
from .summary import Key, Row, ratio, reference

MET, MISSED, UNJUDGED = "MET", "MISSED", "UNJUDGED"


@dataclass(frozen=True)
class Verdict:
    target: str
    status: str
    details: tuple[str, ...]


# A check compares poolkit's row with the anchor's: (passed, "the figures").
Check = Callable[[Row, Row], tuple[bool, str]]


def _judge(
    target: str, rows: dict[Key, Row], pairs: list[tuple[str, Key, Key]], check: Check
) -> Verdict:
    """MISSED if any pair misses; MET if every pair was judged and met; else UNJUDGED."""
    details: list[str] = []
    statuses: set[str] = set()
    for label, ours_key, theirs_key in pairs:
        ours, theirs = rows.get(ours_key), rows.get(theirs_key)
        if ours is None or theirs is None:
            statuses.add(UNJUDGED)
            details.append(f"{label}: not run")
        elif not (ours.judged and theirs.judged):
            statuses.add(UNJUDGED)
            details.append(f"{label}: every run disturbed, not judged")
        else:
            passed, figures = check(ours, theirs)
            statuses.add(MET if passed else MISSED)
            details.append(f"{label}: {figures} — {'met' if passed else 'missed'}")
    if not pairs:
        statuses.add(UNJUDGED)
        details.append("not run")
    status = MISSED if MISSED in statuses else UNJUDGED if UNJUDGED in statuses else MET
    return Verdict(target, status, tuple(details))


def _ns(rows: dict[Key, Row], workload: str) -> list[int]:
    return sorted(
        {r.tasks for r in rows.values() if r.workload == workload and r.loop == "asyncio"}
    )


def _pg(workload: str, n: int, name: str) -> Key:
    return (workload, "asyncio", n, n, name)


def sleep_target(rows: dict[Key, Row]) -> Verdict:
    def check(ours: Row, theirs: Row) -> tuple[bool, str]:
        thr, p99 = ours.rate / theirs.rate, ours.p99 / theirs.p99
        return thr >= 0.98 and p99 <= 1.1, f"throughput {thr:.2f}x, p99 {p99:.2f}x"

    pairs = [
        (f"N={n}", _pg("sleep1ms", n, POOLKIT_PG), _pg("sleep1ms", n, ASYNCPG))
        for n in _ns(rows, "sleep1ms")
    ]
    target = (
        "(1) sleep1ms: poolkit+psycopg2 ≥ 0.98x asyncpg (no-op reset) throughput at every N,"
        " and p99 ≤ 1.1x"
    )
    return _judge(target, rows, pairs, check)


def select1_target(rows: dict[Key, Row]) -> Verdict:
    def check(ours: Row, theirs: Row) -> tuple[bool, str]:
        thr = ours.rate / theirs.rate
        parity = "reaches" if thr >= 1.0 else "below"
        return thr >= 0.9, f"{thr:.2f}x ({ours.rate:,.0f} vs {theirs.rate:,.0f} q/s; {parity} 1.0x)"

    pairs = [("N=16", _pg("select1", 16, POOLKIT_PG), _pg("select1", 16, ASYNCPG))]
    return _judge(
        "(2) select1 at N=16: poolkit+psycopg2 ≥ 0.9x asyncpg (no-op reset)", rows, pairs, check
    )


def cycle_target(rows: dict[Key, Row]) -> Verdict:
    def check(ours: Row, theirs: Row) -> tuple[bool, str]:
        share = ours.us_per_op / theirs.us_per_op
        return share <= 0.5, f"{ours.us_per_op:.1f} / {theirs.us_per_op:.1f} µs = {share:.2f}"

    pairs = [
        (
            f"{t} tasks/{s} conns",
            ("cycles", "asyncio", t, s, POOLKIT_FAKE),
            ("cycles", "asyncio", t, s, PSYCOPG_POOL),
        )
        for t, s in CONFIGS
        if ("cycles", "asyncio", t, s, POOLKIT_FAKE) in rows
    ]
    target = "(3) pool cycle over the fake driver: poolkit µs/cycle ≤ 0.5x psycopg_pool's"
    return _judge(target, rows, pairs, check)


def targets(rows: dict[Key, Row]) -> list[Verdict]:
    return [sleep_target(rows), select1_target(rows), cycle_target(rows)]


def native_wins(rows: dict[Key, Row]) -> list[str]:
    """Every (workload, loop, N) where a native async contender beats the matching poolkit
    contender (same driver family), with the ratio; judged rows only, largest first."""
    wins: list[tuple[int, float, str]] = []
    workloads = (*QUERY_WORKLOADS, "contention")
    for r in rows.values():
        if r.kind != "native" or r.workload not in workloads or not r.judged:
            continue
        ref = reference(rows, r)
        if ref is None or not ref.judged or r.rate <= ref.rate:
            continue
        n = f"{r.tasks} tasks / {r.size} conns" if r.tasks != r.size else f"N={r.tasks}"
        x = ratio(rows, r)
        text = f"{r.workload}, {r.loop}, {n}: {r.contender} {x:.2f}x {ref.contender}"
        wins.append((workloads.index(r.workload), -x, text))
    return [text for _, _, text in sorted(wins)]
