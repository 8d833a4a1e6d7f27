"""The benchmark runner without a server: the pool-cycle part for real (briefly), and the
tables and verdicts on synthetic samples. Nothing here asserts a timing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import measure, report, run, samples, sysinfo
from benchmarks.contenders import ASYNCPG, CONTENDERS, POOLKIT_MY, POOLKIT_PG
from benchmarks.cycles import CYCLE_CONTENDERS, POOLKIT_FAKE, PSYCOPG_POOL
from benchmarks.samples import Sample, histogram
from benchmarks.summary import summarise
from benchmarks.verdicts import MET, MISSED, UNJUDGED, native_wins, targets


@pytest.mark.anyio
async def test_pool_cycles_over_the_fake_driver(anyio_backend: str) -> None:
    contender = next(c for c in CYCLE_CONTENDERS if c.name == POOLKIT_FAKE)
    async with contender.open(None, 2) as cycle:

        async def op(i: int) -> None:
            await cycle()

        outcome = await measure.timed(op, tasks=4, seconds=0.05, warmup=0.01, backend=None)
    assert outcome.ops == sum(outcome.per_task) == len(outcome.latencies) > 0
    assert min(outcome.per_task) > 0  # 4 tasks on 2 connections: every one got its turns
    assert outcome.server_cpu == 0.0


def test_the_runner_writes_results_and_rerenders_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--workload", "cycles,waiters", "--contender", "poolkit (fake", "--rounds", "1"]
    argv += ["--loop", "asyncio", "--cycle-seconds", "0.05", "--out", str(tmp_path)]
    assert run.main(argv) == 0
    text = (tmp_path / "RESULTS.md").read_text()
    for shape in ("| 1/1 | asyncio | poolkit (fake driver) |", "| 64/16 | asyncio | poolkit"):
        assert shape in text
    assert "| poolkit (fake driver) | asyncio | 10,000 |" in text
    assert f"**{UNJUDGED}** (3)" in text  # psycopg_pool was filtered out
    info, taken = samples.load(tmp_path / "samples.json")
    assert {(s.workload, s.tasks, s.size) for s in taken} == {
        ("cycles", 1, 1),
        ("cycles", 16, 16),
        ("cycles", 64, 16),
        ("waiters", 10, 1),
        ("waiters", 1000, 1),
        ("waiters", 10000, 1),
    }
    assert all(s.ops > 0 for s in taken)
    assert "poolkit" in info.versions
    capsys.readouterr()
    assert run.main(["--from-json", str(tmp_path / "samples.json"), "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == (tmp_path / "RESULTS.md").read_text().strip()


def test_the_full_run_writes_the_committed_results_md_beside_the_code(tmp_path: Path) -> None:
    assert run.results_md(run.FULL_OUT) == run.HERE / "RESULTS.md"
    assert run.results_md(tmp_path) == tmp_path / "RESULTS.md"
    assert run.results_md(run.SCRATCH_OUT) == run.SCRATCH_OUT / "RESULTS.md"


def test_the_header_names_the_commit_measured() -> None:
    info = samples.RunInfo({**sysinfo.machine(), "commit": "abc1234"}, {})
    assert "- poolkit commit: abc1234" in report.document(info, [])
    assert sysinfo.machine()["commit"]  # a hash here (a git checkout), never empty


# ----- synthetic samples ------------------------------------------------------------------


def fake(
    contender: str,
    rate: float,
    workload: str = "sleep1ms",
    n: int = 16,
    *,
    p99: float = 0.004,
    disturbed: bool = False,
    loop: str = "asyncio",
    backend: str = "postgres",
    kind: str = "poolkit",
    size: int | None = None,
) -> Sample:
    """A sample of ``rate`` ops/s over one second whose 99th latency percentile is ``p99``."""
    return Sample(
        workload=workload,
        loop=loop,
        tasks=n,
        size=n if size is None else size,
        contender=contender,
        backend=backend,
        kind=kind,
        round=0,
        ops=int(rate),
        seconds=1.0,
        client_cpu=0.1,
        server_cpu=0.05,
        others_cpu=0.5 if disturbed else 0.0,
        disturbed=disturbed,
        hist=histogram([0.002] * 90 + [p99] * 10),
    )


def sleep_pair(ours: float, p99_ratio: float = 1.0, n: int = 16) -> list[Sample]:
    return [
        fake(POOLKIT_PG, 1000 * ours, n=n, p99=0.004 * p99_ratio),
        fake(ASYNCPG, 1000, n=n, kind="native"),
    ]


@pytest.mark.parametrize(
    ("ours", "p99_ratio", "status"),
    [(1.0, 1.0, MET), (0.99, 1.05, MET), (0.97, 1.0, MISSED), (1.0, 1.2, MISSED)],
)
def test_the_sleep_target(ours: float, p99_ratio: float, status: str) -> None:
    rows = summarise([*sleep_pair(1.0, n=1), *sleep_pair(ours, p99_ratio, n=16)])
    verdict = targets(rows)[0]
    assert verdict.status == status
    assert any(d.startswith("N=16: throughput") for d in verdict.details)


@pytest.mark.parametrize(("ours", "status"), [(0.85, MISSED), (0.95, MET), (1.2, MET)])
def test_the_select1_target(ours: float, status: str) -> None:
    rows = summarise(
        [fake(POOLKIT_PG, 900 * ours, "select1"), fake(ASYNCPG, 900, "select1", kind="native")]
    )
    verdict = targets(rows)[1]
    assert verdict.status == status
    assert ("reaches 1.0x" in verdict.details[0]) == (ours >= 1.0)


@pytest.mark.parametrize(("ours_us", "status"), [(5.0, MET), (7.0, MISSED)])
def test_the_cycle_target(ours_us: float, status: str) -> None:
    taken = []
    for tasks, size in ((1, 1), (16, 16), (64, 16)):
        taken.append(fake(POOLKIT_FAKE, 1e6 / ours_us, "cycles", tasks, size=size, kind="pool"))
        taken.append(fake(PSYCOPG_POOL, 1e6 / 12.0, "cycles", tasks, size=size, kind="pool"))
    assert targets(summarise(taken))[2].status == status


def test_disturbed_runs_are_left_out_of_the_verdicts() -> None:
    # a fast but disturbed poolkit run must not turn a miss into a pass
    taken = [*sleep_pair(0.9), fake(POOLKIT_PG, 5000, disturbed=True)]
    rows = summarise(taken)
    assert targets(rows)[0].status == MISSED
    assert "(1 disturbed, left out)" in report.document(samples.RunInfo(), taken)
    # with every poolkit run disturbed there is nothing to judge
    taken = [fake(POOLKIT_PG, 5000, disturbed=True), fake(ASYNCPG, 1000, kind="native")]
    assert targets(summarise(taken))[0].status == UNJUDGED
    assert "⚠ all disturbed" in report.document(samples.RunInfo(), taken)


def test_the_tables_show_every_contender_and_where_native_wins() -> None:
    taken = [
        fake(c.name, 1000.0 + i, "select1", 1, backend=c.backend, kind=c.kind, loop=loop)
        for i, c in enumerate(CONTENDERS)
        for loop in (c.loops if c.loops != ("none",) else ("none",))
    ]
    taken.append(fake("aiomysql Pool", 3000.0, "select1", 16, backend="mysql", kind="native"))
    taken.append(fake(POOLKIT_MY, 2000.0, "select1", 16, backend="mysql"))
    text = report.document(samples.RunInfo(), taken)
    for c in CONTENDERS:
        assert f"| {c.name}" in text, c.name
    # the limits (no loop) appear in the trio table too, against trio's poolkit
    trio_pg = text.split("### select1 — trio — postgres")[1].split("###")[0]
    assert "psycopg2 plain loop (no loop)" in trio_pg
    wins = native_wins(summarise(taken))
    assert "select1, asyncio, N=16: aiomysql Pool 1.50x poolkit+PyMySQL" in wins


def test_samples_survive_the_json(tmp_path: Path) -> None:
    taken = [*sleep_pair(0.95), fake(POOLKIT_PG, 800, disturbed=True)]
    info = samples.RunInfo(settings={"seconds": 3.0}, skipped={"x": "not installed"})
    samples.save(tmp_path / "s.json", info, taken)
    assert json.loads((tmp_path / "s.json").read_text())["format"] == 1
    info2, taken2 = samples.load(tmp_path / "s.json")
    assert (info2, taken2) == (info, taken)
    assert report.document(info2, taken2) == report.document(info, taken)
