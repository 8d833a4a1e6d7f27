"""From samples to one row per (workload, loop, tasks, size, contender): medians and ratios.

A row is computed from its undisturbed samples; when every sample of a row was disturbed it
is computed from those, but marked unjudged: verdicts leave it out.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from .contenders import CONTENDERS, REFERENCE
from .cycles import CYCLE_CONTENDERS, POOLKIT_FAKE
from .samples import Case, Histogram, Sample, merged, percentile

Key = tuple[str, str, int, int, str]  # workload, loop, tasks, size, contender


class Measured(Protocol):
    """A sample as :func:`judged` reads it."""

    @property
    def disturbed(self) -> bool: ...
    @property
    def rate(self) -> float: ...


M = TypeVar("M", bound=Measured)


@dataclass(frozen=True)
class Judged:
    """What every summary row says of its runs: how many, how many disturbed, the median
    throughput with its spread, and latency percentiles."""

    runs: int
    disturbed: int
    #: whether any sample was undisturbed (only those are used then)
    judged: bool
    rate: float
    lo: float
    hi: float
    p50: float
    p99: float


def judged(
    samples: Sequence[M], hists: Callable[[M], Iterable[Histogram]]
) -> tuple[dict[str, Any], list[M]]:
    """The :class:`Judged` fields of a row of ``samples``, and the samples they come from:
    the undisturbed ones, or all of them when every one was disturbed."""
    clean = [s for s in samples if not s.disturbed]
    used = clean or list(samples)
    rates = [s.rate for s in used]
    hist = merged(h for s in used for h in hists(s))
    fields = {
        "runs": len(samples),
        "disturbed": len(samples) - len(clean),
        "judged": bool(clean),
        "rate": statistics.median(rates),
        "lo": min(rates),
        "hi": max(rates),
        "p50": percentile(hist, 0.50),
        "p99": percentile(hist, 0.99),
    }
    return fields, used


@dataclass(frozen=True)
class Row(Judged, Case):
    """The summary of one case's samples."""

    client_us: float
    server_us: float
    #: max / min operations per task over the worst run (inf when a task starved)
    fairness: float
    starved: int

    @property
    def us_per_op(self) -> float:
        return 1e6 / self.rate if self.rate else math.inf


def _fairness(per_task: list[int]) -> float:
    if not per_task:
        return math.nan
    low = min(per_task)
    return max(per_task) / low if low else math.inf


def row(samples: Sequence[Sample]) -> Row:
    """The row of one key's samples."""
    fields, used = judged(samples, lambda s: [s.hist])
    ops = max(1, sum(s.ops for s in used))
    contention = [s.per_task for s in used if s.per_task]
    return Row(
        **samples[0].case(),
        **fields,
        client_us=sum(s.client_cpu for s in used) / ops * 1e6,
        server_us=sum(s.server_cpu for s in used) / ops * 1e6,
        fairness=max((_fairness(p) for p in contention), default=math.nan),
        starved=max((p.count(0) for p in contention), default=0),
    )


def summarise(samples: Iterable[Sample]) -> dict[Key, Row]:
    groups: dict[Key, list[Sample]] = {}
    for sample in samples:
        groups.setdefault(sample.key, []).append(sample)
    return {key: row(group) for key, group in groups.items()}


def reference_name(r: Row) -> str:
    """The contender a row's ratio is taken against: poolkit for the same driver family."""
    if r.workload in ("cycles", "waiters"):
        return POOLKIT_FAKE
    return REFERENCE.get(r.backend, "")


def reference(rows: dict[Key, Row], r: Row, loop: str | None = None) -> Row | None:
    """The reference row for ``r`` on ``loop`` (default: ``r``'s own; a no-loop row needs one)."""
    on = loop or r.loop
    return rows.get((r.workload, on, r.tasks, r.size, reference_name(r)))


def ratio(rows: dict[Key, Row], r: Row, loop: str | None = None) -> float:
    """``r``'s median throughput over its reference's (NaN when there is none)."""
    ref = reference(rows, r, loop)
    return r.rate / ref.rate if ref is not None and ref.rate else math.nan


def order(names: Iterable[str]) -> list[str]:
    """Contender names in the line-up's order (unknown ones, say from an old JSON, last)."""
    known = [c.name for c in CONTENDERS] + [c.name for c in CYCLE_CONTENDERS]
    rank: dict[str, int] = {}
    for name in known:
        rank.setdefault(name, len(rank))
    return sorted(set(names), key=lambda n: (rank.get(n, len(rank)), n))


def fmt(x: float, spec: str = ".2f") -> str:
    """A number for a table: "—" for NaN (nothing to show), "∞" for infinity."""
    return "—" if math.isnan(x) else "∞" if math.isinf(x) else format(x, spec)
