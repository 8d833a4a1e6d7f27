"""PNG plots (matplotlib, Agg): throughput against N per workload, loop and backend; bars for
the contention and pool-cycle workloads. matplotlib is imported only here, when plotting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .runs import QUERY_WORKLOADS
from .summary import Key, Row, order


def _figure() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    return fig, ax


def _save(fig: Any, path: Path) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path.name


def _throughput(out: Path, rows: list[Row], workload: str, loop: str, backend: str) -> str:
    fig, ax = _figure()
    for name in order(r.contender for r in rows):
        mine = sorted((r for r in rows if r.contender == name), key=lambda r: r.tasks)
        limit = mine[0].loop == "none"
        ax.plot(
            [r.tasks for r in mine],
            [r.rate for r in mine],
            marker="o",
            linestyle="--" if limit else "-",
            label=name + (" (no loop)" if limit else ""),
        )
    ax.set_xscale("log", base=2)
    ns = sorted({r.tasks for r in rows})
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set_xlabel("concurrent tasks (N)")
    ax.set_ylabel("queries/s (median)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"{workload} — {loop} — {backend}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, out / f"throughput-{workload}-{loop}-{backend}.png")


def _bars(out: Path, rows: list[Row], name: str, title: str, ylabel: str) -> str:
    fig, ax = _figure()
    labels = [f"{r.contender}\n{r.loop} {r.tasks}/{r.size}" for r in rows]
    values = [r.rate if name == "contention" else r.us_per_op for r in rows]
    ax.barh(range(len(rows)), values)
    ax.set_yticks(range(len(rows)), labels, fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel(ylabel)
    ax.set_title(title)
    ax.grid(True, axis="x", alpha=0.3)
    return _save(fig, out / f"{name}.png")


def write(out: Path, rows: dict[Key, Row]) -> list[str]:
    """Write every plot into ``out``; returns their file names."""
    written: list[str] = []
    every = list(rows.values())
    for workload in QUERY_WORKLOADS:
        mine = [r for r in every if r.workload == workload]
        loops = sorted({r.loop for r in mine} - {"none"})
        for loop in loops:
            for backend in sorted({r.backend for r in mine}):
                shown = [r for r in mine if r.backend == backend and r.loop in (loop, "none")]
                if shown:
                    written.append(_throughput(out, shown, workload, loop, backend))
    rank = {n: i for i, n in enumerate(order(r.contender for r in every))}
    for name, title, unit in (
        ("contention", "contention: 256 tasks on a 16-connection pool", "queries/s (median)"),
        ("cycles", "pool-only acquire/release cycle (no I/O)", "µs per cycle (median)"),
    ):
        by_backend = name == "contention"
        mine = sorted(
            (r for r in every if r.workload == name),
            key=lambda r: (r.backend * by_backend, r.tasks, r.size, r.loop, rank[r.contender]),
        )
        if mine:
            written.append(_bars(out, mine, name, title, unit))
    return written
