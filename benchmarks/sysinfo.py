"""The machine: CPU time of every process from ``/proc``, and a description for RESULTS.md.

A run reads :func:`snapshot` before and after its timed region; :func:`split` turns the two
into the CPU the database servers used and the CPU everybody else used (the disturbance),
leaving out this process, whose own CPU ``time.process_time()`` measures, threads included.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: The executable names (``comm``) of each backend's server processes.
SERVER_COMMS: dict[str, tuple[str, ...]] = {
    "postgres": ("postgres", "postmaster"),
    "mysql": ("mariadbd", "mysqld"),
}
#: Distributions whose versions RESULTS.md lists: every contender's library and the tools.
PACKAGES = (
    "poolkit",
    "anyio",
    "trio",
    "uvloop",
    "psycopg2-binary",
    "psycopg2",
    "PyMySQL",
    "pyodbc",
    "psycopg",
    "psycopg-pool",
    "asyncpg",
    "aiomysql",
    "SQLAlchemy",
    "greenlet",
    "matplotlib",
    "rich",
)

_SERVER = {comm: backend for backend, comms in SERVER_COMMS.items() for comm in comms}

#: pid -> (comm, start time in ticks, CPU seconds so far)
Snapshot = dict[int, tuple[str, int, float]]


def _cpu(pid: str) -> float:
    """The CPU seconds of all threads of ``pid``: ``/proc/<pid>/task/*/schedstat`` counts
    nanoseconds (``stat``'s utime and stime round each process down to a 10 ms tick, which
    loses all of a database backend that did 5 ms of work)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as f:
                total += int(f.read().split(maxsplit=1)[0])
        except (OSError, ValueError):
            continue  # the thread ended meanwhile
    return total / 1e9


def snapshot(skip: int | None = None) -> Snapshot:
    """The CPU time of every process now but ``skip`` (those that vanish while read are left
    out)."""
    seen: Snapshot = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == skip:
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                raw = f.read()
            cpu = _cpu(entry.name)
        except OSError:
            continue
        close = raw.rfind(b")")
        comm = raw[raw.find(b"(") + 1 : close].decode(errors="replace")
        # the fields after the comm start at field 3 of proc(5); starttime is field 22
        seen[int(entry.name)] = (comm, int(raw[close + 2 :].split()[19]), cpu)
    return seen


@dataclass(frozen=True)
class Split:
    """CPU seconds used between two snapshots, by whom."""

    servers: dict[str, float]
    others: float
    #: the process of the others that used the most, as "comm (pid) 0.12 s", or ""
    top_other: str
    #: the CPU of the processes given roles (role -> seconds), not counted in ``others``
    roles: dict[str, float] = field(default_factory=dict)


def split(
    before: Snapshot,
    after: Snapshot,
    own_pid: int | None = None,
    roles: Mapping[int, str] | None = None,
) -> Split:
    """Who used the CPU between ``before`` and ``after``; this process is left out.

    ``roles`` names processes that are part of the run (pid -> role, say the worker
    processes and a PgBouncer it started): their CPU goes to :attr:`Split.roles`, not to the
    others. A process that appeared in between counts with all its time; one that exited is
    lost (its time cannot be read any more). A pid is the same process while its start time
    is (a kernel worker's name changes with the work it does).
    """
    own = os.getpid() if own_pid is None else own_pid
    roles = roles or {}
    servers = dict.fromkeys(SERVER_COMMS, 0.0)
    mine = dict.fromkeys(roles.values(), 0.0)
    others = 0.0
    top, top_used = "", 0.0
    for pid, (comm, start, cpu) in after.items():
        if pid == own:
            continue
        was = before.get(pid)
        used = cpu - was[2] if was is not None and was[1] == start else cpu
        if used <= 0:
            continue
        role = roles.get(pid)
        if role is not None:
            mine[role] += used
            continue
        backend = _SERVER.get(comm)
        if backend is not None:
            servers[backend] += used
            continue
        others += used
        if used > top_used:
            top, top_used = f"{comm} ({pid}) {used:.2f} s", used
    return Split(servers, others, top, mine)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory() -> str:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _commit() -> str:
    """The poolkit commit measured (``+`` when the work tree differs from it)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "poolkit", "benchmarks"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git checkout)"
    return head + ("+ (poolkit/ or benchmarks/ modified)" if dirty else "")


def machine() -> dict[str, str]:
    """CPU model, cores, RAM, kernel, Python, the date and the commit, for the header."""
    return {
        "commit": _commit(),
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "ram": _memory(),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def versions() -> dict[str, str]:
    """The installed version of each package in :data:`PACKAGES` ("not installed" if absent)."""
    found: dict[str, str] = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            if name != "psycopg2":  # psycopg2-binary is the usual spelling; list the one there
                found[name] = "not installed"
    return found
