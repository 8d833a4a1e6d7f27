"""What the restart workload (:mod:`.restart`) runs and measures, and its JSON: the settings,
a run, a sample (one run's measures), ``restart.json`` written and read back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from . import samples
from .contenders import ASYNCPG_RESET, POOLKIT_PG, PSYCOPG3
from .samples import RunInfo

FORMAT = "restart-1"
SCENARIO_NAMES = (
    "restart-burst",
    "restart-sequential",
    "crash-recovery",
    "close-frozen",
    "close-connect-hang",
)
#: the pools side by side (how each is opened: :data:`.restart_scenarios.POOLS`)
POOL_NAMES = (POOLKIT_PG, PSYCOPG3, ASYNCPG_RESET)


@dataclass(frozen=True)
class Settings:
    rounds: int = 3
    #: C, the callers (or writers) of every scenario
    callers: int = 32
    #: every pool's max_size (and min_size, but in close-connect-hang)
    size: int = 8
    #: seconds after which a scenario that has not ended is cut off and reported hung
    cap: float = 30.0
    #: seconds between the crash and starting the cluster again
    outage: float = 1.0
    #: seconds the writers run before the crash
    steady: float = 1.0
    scenarios: tuple[str, ...] = SCENARIO_NAMES
    pools: tuple[str, ...] = POOL_NAMES

    def describe(self) -> dict[str, str]:
        """The settings as RunInfo lists them."""
        return {
            "rounds": str(self.rounds),
            "callers": str(self.callers),
            "pool size": str(self.size),
            "hang cap s": f"{self.cap:g}",
            "crash outage s": f"{self.outage:g}",
            "writing before the crash s": f"{self.steady:g}",
            "scenarios": ",".join(self.scenarios),
            "loop": "asyncio",
        }

    @property
    def limit(self) -> float:
        """A run's hard time limit, its process killed after it."""
        return 2 * self.cap + 120.0


@dataclass(frozen=True)
class RestartRun:
    scenario: str
    pool: str
    round: int

    @property
    def label(self) -> str:
        return f"restart {self.scenario} {self.pool} (round {self.round + 1})"


@dataclass(frozen=True)
class RestartSample:
    """What one run measured; a measure that does not apply to its scenario is None."""

    scenario: str
    pool: str
    round: int
    #: something did not end within the cap (see ``note``)
    hung: bool = False
    #: the scenario's time in seconds: the C calls (restart-*), from "accepts again" to the
    #: first acknowledged commit (crash-recovery), close() (close-*); None when it hung
    seconds: float | None = None
    #: calls that completed (with or without an error), and those that failed
    calls: int = 0
    failed: int = 0
    #: crash-recovery: commits acknowledged, acknowledged rows missing afterwards, seconds
    #: from "accepts again" until every writer had a commit, from the crash until "accepts"
    acked: int = 0
    lost: int | None = None
    all_back: float | None = None
    outage: float | None = None
    #: close-*: callers still blocked AFTER_CLOSE s after close() returned (at the cap when
    #: it hung); Python threads then, and after the clean-up, over those before the pool
    blocked: int | None = None
    threads: int | None = None
    threads_left: int | None = None
    #: the first error a caller saw
    error: str = ""
    note: str = ""
    #: why the run measured nothing (its process failed or was killed); "" when it did
    broken: str = ""
    #: wall seconds of the run, and the CPU seconds other processes used meanwhile
    wall: float = 0.0
    others_cpu: float = 0.0


def save(path: Path, info: RunInfo, taken: list[RestartSample]) -> None:
    samples.save(path, info, taken, FORMAT)


def is_ours(path: Path) -> bool:
    """Whether ``path`` is this workload's JSON (not another workload's)."""
    return samples.tagged(path, FORMAT)


def load(path: Path) -> tuple[RunInfo, list[RestartSample]]:
    data = json.loads(path.read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: not a restart workload results file ({FORMAT})")
    return RunInfo(**data["info"]), [RestartSample(**raw) for raw in data["samples"]]
