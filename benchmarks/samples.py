"""What one measured run leaves behind, and the raw JSON all tables and plots are made from.

Latencies are kept as a histogram with logarithmic bins 1 % wide: histograms of several runs
add up exactly, percentiles are read to 1 %, and a run of a million queries stays a few hundred
numbers in the JSON.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_FLOOR = 1e-7  # seconds: the lowest bin's lower edge
_STEP = math.log(1.01)

Histogram = dict[int, int]


def histogram(values: Iterable[float]) -> Histogram:
    """The 1 %-wide logarithmic histogram of ``values`` (seconds)."""
    hist: Histogram = {}
    for value in values:
        i = int(math.log(value / _FLOOR) / _STEP) if value > _FLOOR else 0
        hist[i] = hist.get(i, 0) + 1
    return hist


def merged(hists: Iterable[Histogram]) -> Histogram:
    total: Histogram = {}
    for hist in hists:
        for i, count in hist.items():
            total[i] = total.get(i, 0) + count
    return total


def percentile(hist: Histogram, q: float) -> float:
    """The ``q`` quantile (0..1) in seconds, from the middle of its bin; NaN if empty."""
    total = sum(hist.values())
    if not total:
        return math.nan
    rank = max(1, math.ceil(q * total))
    seen = 0
    for i in sorted(hist):
        seen += hist[i]
        if seen >= rank:
            return _FLOOR * math.exp((i + 0.5) * _STEP)
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True)
class Case:
    """What was measured: a workload at ``tasks`` concurrent tasks on a pool of ``size``, on
    an event loop, by a contender of a kind (``poolkit``, ``native``, ``baseline``, ``limit``
    or ``pool``), reaching a backend (``postgres``, ``mysql``, or ``none``)."""

    workload: str
    loop: str
    tasks: int
    size: int
    contender: str
    backend: str
    kind: str

    @property
    def key(self) -> tuple[str, str, int, int, str]:
        return (self.workload, self.loop, self.tasks, self.size, self.contender)

    def case(self) -> dict[str, Any]:
        """This case's fields alone, to build another :class:`Case` from."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(Case)}


@dataclass(frozen=True)
class Sample(Case):
    """One measured run of one contender.

    ``workload`` is ``select1``, ``rows100``, ``sleep1ms``, ``contention``, ``cycles`` or
    ``waiters``. ``ops`` counts queries (or acquire/release cycles) in ``seconds`` of wall
    time. ``hist`` holds query latencies, or acquire waits for ``contention``; ``per_task``
    how many operations each task did.
    """

    round: int
    ops: int
    seconds: float
    client_cpu: float
    server_cpu: float
    others_cpu: float
    disturbed: bool = False
    attempts: int = 1
    top_other: str = ""
    hist: Histogram = field(default_factory=dict)
    per_task: list[int] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0


@dataclass
class RunInfo:
    """Everything about a run that is not a sample: machine, versions, settings, skips."""

    machine: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    servers: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    #: contender (or backend) -> why it did not run
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def save(path: Path, info: RunInfo, samples: Sequence[Any], tag: int | str = 1) -> None:
    """Write the JSON: the info indented, then one sample (a dataclass) per line (diffs stay
    readable). ``tag`` (its ``"format"``) tells one kind of samples from another."""
    rows = ",\n".join(json.dumps(dataclasses.asdict(s), separators=(",", ":")) for s in samples)
    info_text = json.dumps(dataclasses.asdict(info), indent=1)
    head = f'{{"format": {json.dumps(tag)},\n"info": {info_text},\n'
    path.write_text(f'{head}"samples": [\n{rows}\n]}}\n')


def tagged(path: Path, tag: int | str) -> bool:
    """Whether ``path`` is a JSON :func:`save` wrote with ``tag`` (read from its head only)."""
    try:
        head = path.read_text()[:64]
    except OSError:
        return False
    return f'"format": {json.dumps(tag)}' in head


def load(path: Path) -> tuple[RunInfo, list[Sample]]:
    data = json.loads(path.read_text())
    if data.get("format") != 1:
        raise ValueError(f"{path}: not a benchmark results file (format 1)")
    samples = []
    for raw in data["samples"]:
        raw["hist"] = {int(i): int(n) for i, n in raw["hist"].items()}
        samples.append(Sample(**raw))
    return RunInfo(**data["info"]), samples
