"""The benchmark runner without a server: the pool-cycle part for real (briefly), and the
tables and verdicts on synthetic samples; the PgBouncer case's pieces on synthetic samples,
and for real (briefly) where PostgreSQL and pgbouncer are there; the restart workload's report
on synthetic samples, and for real (briefly) on a private cluster where the PostgreSQL server
binaries are there. Nothing here asserts a timing."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from benchmarks import (
    cluster,
    measure,
    pgbouncer,
    pgbouncer_report,
    report,
    restart,
    restart_report,
    restart_samples,
    run,
    samples,
    sessions,
    sysinfo,
)
from benchmarks.contenders import (
    ASYNCPG,
    ASYNCPG_RESET,
    CONTENDERS,
    POOLKIT_MY,
    POOLKIT_PG,
    PSYCOPG3,
)
from benchmarks.cycles import CYCLE_CONTENDERS, POOLKIT_FAKE, PSYCOPG_POOL
from benchmarks.samples import Sample, histogram
from benchmarks.summary import summarise
from benchmarks.verdicts import MET, MISSED, UNJUDGED, native_wins, targets
from tests.backends import need, probe, required_backends


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


# ----- K processes x a pool of M each, direct and through PgBouncer -----------------------


def fleet_sample(
    mode: str,
    rate: float,
    k: int = 4,
    m: int = 4,
    *,
    round: int = 0,
    server: list[int] | None = None,
    disturbed: bool = False,
    workload: str = "select1",
) -> pgbouncer.FleetSample:
    """K processes sharing ``rate`` calls/s over one second, p99 4 ms in every process."""
    bounced = mode == "pgbouncer"
    sessions: dict[str, list[int]] = {"server": server or [k * m] * 5}
    sessions["server_all"] = [n + 1 for n in sessions["server"]]  # one other client's session
    if bounced:
        sessions |= {"clients": [k * m] * 5, "cl_waiting": [0, 3, 5, 2, 0]}
    return pgbouncer.FleetSample(
        workload=workload,
        mode=mode,
        processes=k,
        size=m,
        tasks=m,
        pool_size=8 if bounced else 0,
        round=round,
        seconds=1.0,
        ops=[int(rate / k)] * k,
        hists=[histogram([0.001] * 90 + [0.004] * 10)] * k,
        errors=0,
        error="",
        client_cpu=0.5,
        server_cpu=0.25,
        bouncer_cpu=0.1 if bounced else 0.0,
        others_cpu=0.5 if disturbed else 0.0,
        disturbed=disturbed,
        sessions=sessions,
    )


def fleet_rounds() -> list[pgbouncer.FleetSample]:
    taken = [fleet_sample("direct", r, round=i) for i, r in enumerate((1000, 1200, 800))]
    taken += [
        fleet_sample("pgbouncer", r, round=i, server=[8, 8, 7, 8, 8])
        for i, r in enumerate((700, 800, 900))
    ]
    taken.append(fleet_sample("pgbouncer", 5000, round=3, disturbed=True))
    return taken


def test_the_fleet_plan_alternates_the_modes_with_fresh_runs() -> None:
    settings = pgbouncer.Settings(
        seconds=1, warmup=0.1, rounds=3, processes=(2, 8), sizes=(4,), tasks=None,
        pool_size=8, workloads=("select1", "txn"),
    )  # fmt: skip
    runs = pgbouncer.plan(settings)
    assert len(runs) == 2 * 2 * 3 * 2
    first = [(r.round, r.mode) for r in runs if r.workload == "select1" and r.processes == 2]
    assert first == [
        (0, "direct"), (0, "pgbouncer"), (1, "pgbouncer"), (1, "direct"),
        (2, "direct"), (2, "pgbouncer"),
    ]  # fmt: skip
    assert {r.tasks for r in runs} == {4}  # C defaults to M
    assert settings.describe()["PgBouncer default_pool_size"] == "8"


def test_the_session_counts_come_from_show_pools_and_show_clients() -> None:
    pools = [
        {"database": "pgbouncer", "user": "pgbouncer", "cl_active": 1, "cl_waiting": 0,
         "sv_active": 0, "sv_idle": 0},
        {"database": "test", "user": "postgres", "cl_active": 30, "cl_waiting": 2,
         "sv_active": 8, "sv_idle": 0},
        {"database": "test", "user": "app", "cl_active": 1, "cl_waiting": 0,
         "sv_active": 1, "sv_idle": 1},
    ]  # fmt: skip
    assert sessions.pool_counts(pools, "test") == {
        "cl_active": 31, "cl_waiting": 2, "sv_active": 9, "sv_idle": 1,
    }  # fmt: skip
    clients = [
        {"database": "test", "application_name": "bench"},
        {"database": "test", "application_name": "bench"},
        {"database": "test", "application_name": "other"},
        {"database": "pgbouncer", "application_name": "bench"},
    ]
    assert sessions.client_count(clients, "test", "bench") == 2
    series = {"server": [3, 8, 8, 8, 2]}
    assert (sessions.peak(series, "server"), sessions.steady(series, "server")) == (8, 8.0)
    assert sessions.peak(series, "clients") == 0  # not sampled (direct)


def test_the_fleet_rows_take_medians_and_leave_disturbed_runs_out() -> None:
    rows = pgbouncer_report.summarise(fleet_rounds())
    direct = rows[("select1", "direct", 4, 4, 4)]
    bounced = rows[("select1", "pgbouncer", 4, 4, 4)]
    assert (direct.rate, direct.lo, direct.hi) == (1000, 800, 1200)
    assert (bounced.rate, bounced.runs, bounced.disturbed) == (800, 4, 1)
    assert pgbouncer_report.ratio(rows, bounced) == pytest.approx(0.8)
    assert (direct.sessions_peak, direct.sessions_steady) == (16, 16)
    unread = dataclasses.replace(fleet_rounds()[0], sessions={})  # no reading in its window
    assert pgbouncer_report.row([unread, *fleet_rounds()[:2]]).sessions_steady == 16
    assert (bounced.sessions_peak, bounced.sessions_steady) == (8, 8)
    assert (bounced.clients_peak, bounced.waiting_peak, direct.others_peak) == (16, 5, 1)
    assert bounced.p99 == pytest.approx(0.004, rel=0.01)
    assert bounced.process_rate == (175, 225)  # 700/4 .. 900/4
    assert bounced.bouncer_us == pytest.approx(0.3 / 2400 * 1e6)


def test_a_fleet_run_is_disturbed_by_others_or_by_impossible_cpu_readings() -> None:
    assert pgbouncer.disturbance(fleet_sample("direct", 1000), 0.05, cores=2) is None
    busy = pgbouncer.disturbance(fleet_sample("direct", 1000, disturbed=True), 0.05, cores=2)
    assert busy is not None and busy.startswith("others used 50% of a core")
    glitch = dataclasses.replace(fleet_sample("direct", 1000), client_cpu=22.8)
    assert pgbouncer.disturbance(glitch, 0.05, cores=2) == (
        "the CPU readings add up to 23.1 of 2 cores"
    )


def test_the_fleet_report_shows_the_table_with_sessions_and_ratio() -> None:
    taken = fleet_rounds()
    info = samples.RunInfo({**sysinfo.machine(), "commit": "abc1234"}, {"poolkit": "0.1.0"})
    info.skipped["pgbouncer case (the rest of it)"] = "failed in ..."
    text = pgbouncer_report.document(info, taken)
    assert "- poolkit commit: abc1234" in text
    assert "- Server session readings per run: 5-5 " in text
    assert "## `select1`: `SELECT 1` in autocommit" in text
    assert "| 4 x 4 | direct | 1,000 | 800-1,200 |  | 1.00 | 3.98 | 200-300 |" in text
    bounced = next(line for line in text.splitlines() if "| PgBouncer (8) |" in line)
    assert "| 800 | 700-900 | 0.80x |" in bounced
    assert "| 8 / 8 | 15 | 16 / 5 |" in bounced  # 3 undisturbed runs of 5 readings
    assert "| 4 (1 disturbed, left out) |" in bounced
    assert "4 x 4 direct: other clients held up to 1 session(s) on the database" in text
    assert "## Skipped" in text
    console = Console(file=io.StringIO(), width=200)
    for table in pgbouncer_report.tables(taken):
        console.print(table)
    printed = console.file.getvalue()  # type: ignore[attr-defined]
    assert "PgBouncer (8)" in printed and "0.80x" in printed


def test_fleet_samples_survive_the_json_and_rerender(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = fleet_rounds()
    info = samples.RunInfo(settings={"measured s": "5"}, servers={"pgbouncer": "PgBouncer 1.18"})
    pgbouncer.save(tmp_path / "pgbouncer.json", info, taken)
    assert pgbouncer.is_ours(tmp_path / "pgbouncer.json")
    assert (info, taken) == pgbouncer.load(tmp_path / "pgbouncer.json")
    samples.save(tmp_path / "samples.json", info, [])
    assert not pgbouncer.is_ours(tmp_path / "samples.json")
    with pytest.raises(ValueError, match="not a pgbouncer case"):
        pgbouncer.load(tmp_path / "samples.json")
    assert run.main(["--from-json", str(tmp_path / "pgbouncer.json")]) == 0
    written = (tmp_path / "pgbouncer.md").read_text()
    assert capsys.readouterr().out.strip() == written.strip()
    assert written.strip() == pgbouncer_report.document(info, taken).strip()
    assert not (tmp_path / "RESULTS.md").exists()


def test_the_pgbouncer_workload_options() -> None:
    args = run.parse(["--workload", "pgbouncer", "--quick"])
    assert (args.pgbouncer, args.workload, args.partial) == (True, [], True)
    fleet = args.fleet
    assert (fleet.seconds, fleet.rounds, fleet.processes, fleet.workloads) == (
        0.5, 1, (2,), ("select1",),
    )  # fmt: skip
    args = run.parse(["--processes", "2,4", "--pool-size", "8", "--default-pool-size", "10"])
    assert args.pgbouncer and "select1" in args.workload  # a full run includes it
    fleet = args.fleet
    assert (fleet.seconds, fleet.rounds, fleet.processes, fleet.sizes) == (5.0, 3, (2, 4), (8,))
    assert (fleet.pool_size, fleet.workloads) == (10, ("select1", "txn", "sleep1ms"))
    assert not run.parse([]).partial
    with pytest.raises(SystemExit):
        run.parse(["--fleet-workloads", "nope"])


def test_the_pgbouncer_workload_is_skipped_without_pgbouncer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(pgbouncer, "find_binary", lambda: None)
    argv = ["--workload", "pgbouncer", "--quick", "--out", str(tmp_path)]
    assert run.main(argv) == 0
    said = capsys.readouterr().out
    assert "skipping the pgbouncer workload: the pgbouncer binary is not installed" in said
    assert "apt-get install pgbouncer" in said
    assert not list(tmp_path.iterdir())
    with pytest.raises(SystemExit, match="required but the pgbouncer binary is not installed"):
        run.main([*argv, "--require"])
    # beside other workloads, RESULTS.md says why it did not run
    argv = ["--workload", "cycles,pgbouncer", "--contender", "poolkit (fake", "--rounds", "1"]
    argv += ["--loop", "asyncio", "--cycle-seconds", "0.02", "--out", str(tmp_path)]
    assert run.main(argv) == 0
    assert "- pgbouncer workload: the pgbouncer binary" in (tmp_path / "RESULTS.md").read_text()
    assert not (tmp_path / "pgbouncer.md").exists()


def test_the_pgbouncer_workload_for_real_briefly(tmp_path: Path) -> None:
    """Two processes x a pool of 2, direct and through a PgBouncer with two server
    connections: the session counts, not the speed."""
    if pgbouncer.unavailable():
        pytest.skip(str(pgbouncer.unavailable()))
    backend, why = probe("postgres")
    if backend is None:
        if "postgres" in required_backends():
            pytest.fail(why)
        pytest.skip(why)
    argv = ["--workload", "pgbouncer", "--quick", "--processes", "2", "--pool-size", "2"]
    argv += ["--default-pool-size", "2", "--seconds", "0.3", "--warmup", "0.2"]
    assert run.main([*argv, "--threshold", "100", "--out", str(tmp_path)]) == 0
    info, taken = pgbouncer.load(tmp_path / "pgbouncer.json")
    assert info.servers["pgbouncer"].startswith("PgBouncer ")
    by_mode = {s.mode: s for s in taken}
    assert set(by_mode) == {"direct", "pgbouncer"}
    for s in taken:
        assert s.errors == 0 and len(s.ops) == 2 and min(s.ops) > 0, s.error
    direct, bounced = by_mode["direct"].sessions, by_mode["pgbouncer"].sessions
    assert sessions.steady(direct, "server") == 4  # K x M
    assert 1 <= sessions.peak(bounced, "server") <= 2  # default_pool_size
    assert sessions.peak(bounced, "clients") == 4
    assert "| 2 x 2 | PgBouncer (2) |" in (tmp_path / "pgbouncer.md").read_text()


# ----- a server restart, crash and freeze (the restart workload) ---------------------------


def restart_sample(
    scenario: str, pool: str, round: int = 0, **measured: Any
) -> restart_samples.RestartSample:
    return restart_samples.RestartSample(scenario, pool, round, wall=10.0, **measured)


def restart_rounds() -> list[restart_samples.RestartSample]:
    """Three rounds of three scenarios, by hand: a hung close, a lost row, a broken run."""
    taken = []
    for r in range(3):
        taken += [
            restart_sample("restart-burst", POOLKIT_PG, r, seconds=(0.010, 0.012, 0.020)[r],
                           calls=32),
            restart_sample("restart-burst", PSYCOPG3, r, seconds=0.015, calls=32,
                           failed=(8, 7, 8)[r], error="AdminShutdown: terminating connection"),
            restart_sample("restart-burst", ASYNCPG_RESET, r, seconds=0.014, calls=32),
            restart_sample("crash-recovery", POOLKIT_PG, r, seconds=(0.05, 0.07, 0.09)[r],
                           all_back=0.1, failed=3, acked=3000, lost=0, outage=1.2),
            restart_sample("crash-recovery", PSYCOPG3, r, seconds=(1.6, 1.7, 1.8)[r],
                           all_back=1.8, failed=8, acked=4000, lost=0, outage=1.2),
            restart_sample("crash-recovery", ASYNCPG_RESET, r, seconds=0.03, all_back=0.06,
                           failed=176, acked=3000, lost=(0, 1, 0)[r], outage=1.2),
            restart_sample("close-frozen", POOLKIT_PG, r, seconds=(5.5, 5.51, 5.52)[r],
                           blocked=0, threads=16, threads_left=0),
            restart_sample("close-frozen", PSYCOPG3, r, seconds=0.0003, blocked=8, threads=0,
                           threads_left=0),
        ]  # fmt: skip
    taken += [
        restart_sample("close-frozen", ASYNCPG_RESET, 0, hung=True, blocked=32, threads=0,
                       threads_left=0, note="close() cut off at 30 s"),
        restart_sample("close-frozen", ASYNCPG_RESET, 1, seconds=12.0, blocked=32, threads=0,
                       threads_left=0),
        restart_sample("close-frozen", ASYNCPG_RESET, 2, hung=True, blocked=32, threads=0,
                       threads_left=0),
        restart_sample("close-frozen", POOLKIT_PG, 3, seconds=99.0, blocked=99,
                       broken="the run's process exited (1) without a result"),
    ]  # fmt: skip
    return taken


def restart_info() -> samples.RunInfo:
    settings = restart_samples.Settings().describe()
    server = {"PostgreSQL, private cluster": "PostgreSQL 15.20"}
    machine = {**sysinfo.machine(), "commit": "abc1234"}
    return samples.RunInfo(machine, {"asyncpg": "0.32.0"}, server, settings)


def test_the_restart_report_shows_medians_ranges_and_the_best_pool() -> None:
    text = restart_report.document(restart_info(), restart_rounds())
    assert "- poolkit commit: abc1234" in text
    assert "- Server (PostgreSQL, private cluster): PostgreSQL 15.20" in text
    assert "`poolkit.Pool(psycopg2, dsn, min_size=8, max_size=8)`" in text
    assert (
        "| restart-burst | failed calls (of 32) | 0 (0 to 0) | 8 (7 to 8) | 0 (0 to 0)"
        f" | {POOLKIT_PG}, {ASYNCPG_RESET} |"
    ) in text
    # 12 ms beside 15 and 14: the fastest median, but its runs (10 to 20) overlap 14's
    assert (
        "| restart-burst | time for the 32 calls | 12 ms (10 to 20) | 15 ms (15 to 15)"
        f" | 14 ms (14 to 14) | {POOLKIT_PG}; range overlaps {PSYCOPG3}, {ASYNCPG_RESET} |"
    ) in text
    assert (
        "| crash-recovery | server accepts → first commit | 70 ms (50 to 90)"
        f" | 1,700 ms (1,600 to 1,800) | 30 ms (30 to 30) | {ASYNCPG_RESET} |"
    ) in text
    # one lost row in one run is not best, even with a median of 0
    lost = f"| 0 (0 to 0) | 0 (0 to 0) | 0 (0 to 1) | {POOLKIT_PG}, {PSYCOPG3} |"
    assert f"| acknowledged rows lost {lost}" in text
    assert "| commits acknowledged in the run | 3,000 (3,000 to 3,000) |" in text
    # two of three closes hung: the median hung; the broken run is left out of the cells
    assert (
        "| close-frozen | close() took | 5.51 s (5.50 to 5.52) | 0.00 s (0.00 to 0.00)"
        f" | >30 s, hung in 2/3 | {PSYCOPG3} |"
    ) in text
    assert f"| 0 (0 to 0) | 8 (8 to 8) | 32 (32 to 32) ⚠ hung 2/3 | {POOLKIT_PG} |" in text
    reading = text.split("## Reading")[1]
    assert (
        f"- close-frozen, close() took: best {PSYCOPG3} (0.00 s with 8 callers still blocked);"
        f" then {POOLKIT_PG} 5.51 s with 0 callers still blocked," in reading
    )
    assert f"- **{ASYNCPG_RESET} hung** in close-frozen: 2 of 3 runs." in reading
    assert (
        f"- crash-recovery, server accepts → first commit: best {ASYNCPG_RESET} (30 ms); then"
        in reading
    )  # 30 ms below every run of the others: no overlap to name
    assert f"best {POOLKIT_PG} (12 ms), but the runs overlap those of {PSYCOPG3}," in reading
    assert f"- **{ASYNCPG_RESET} lost 1 acknowledged rows** in crash-recovery." in reading
    assert (
        f"- crash-recovery, acknowledged rows lost: best {POOLKIT_PG} (at most 0), {PSYCOPG3}"
        f" (at most 0); then {ASYNCPG_RESET} at most 1." in reading
    )
    assert (
        f"- close-frozen, {POOLKIT_PG}, round 4: the run's process exited (1) without a result"
    ) in text
    assert f"- restart-burst, {PSYCOPG3}: first error of a run: `AdminShutdown:" in text
    console = Console(file=io.StringIO(), width=250)
    console.print(restart_report.table(restart_rounds(), restart_info()))
    printed = console.file.getvalue()  # type: ignore[attr-defined]
    assert "close() took" in printed and ">30 s, hung in 2/3" in printed


def test_a_hung_run_counts_as_the_longest_time_and_is_never_best() -> None:
    hung = restart_sample("close-frozen", POOLKIT_PG, hung=True, blocked=3)
    ok = restart_sample("close-frozen", PSYCOPG3, seconds=29.0, blocked=0)
    rows = restart_report.rows([hung, ok])
    close = next(cells for _, m, cells in rows if m.field == "seconds")
    took = restart_report.MEASURES["close-frozen"][0]
    assert restart_report.best(close, took) == [PSYCOPG3]
    assert restart_report.show(close[POOLKIT_PG], "s", 30.0) == ">30 s, hung"
    # what is not measured (a count of a hung run) is no value, not the longest
    unmeasured = restart_sample("close-frozen", POOLKIT_PG, hung=True)
    blocked = restart_report.cell([hung, unmeasured], restart_report.MEASURES["close-frozen"][1])
    assert blocked.known == [3.0] and blocked.hung == 2
    # equal as shown is a tie, not a win by a microsecond
    a = restart_sample("restart-burst", POOLKIT_PG, seconds=0.0141, calls=32)
    b = restart_sample("restart-burst", ASYNCPG_RESET, seconds=0.0138, calls=32)
    times = next(c for _, m, c in restart_report.rows([a, b]) if m.field == "seconds")
    took = restart_report.MEASURES["restart-burst"][1]
    assert restart_report.best(times, took) == [POOLKIT_PG, ASYNCPG_RESET]


def test_restart_samples_survive_the_json_and_rerender(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken, info = restart_rounds(), restart_info()
    path = tmp_path / "restart.json"
    restart_samples.save(path, info, taken)
    assert restart_samples.is_ours(path) and not pgbouncer.is_ours(path)
    assert (info, taken) == restart_samples.load(path)
    pgbouncer.save(tmp_path / "pgbouncer.json", info, [])
    assert not restart_samples.is_ours(tmp_path / "pgbouncer.json")
    with pytest.raises(ValueError, match="not a restart workload results file"):
        restart_samples.load(tmp_path / "pgbouncer.json")
    assert run.main(["--from-json", str(path)]) == 0
    written = (tmp_path / "restart.md").read_text()
    assert capsys.readouterr().out.strip() == written.strip()
    assert written.strip() == restart_report.document(info, taken).strip()
    assert not (tmp_path / "RESULTS.md").exists() and not (tmp_path / "pgbouncer.md").exists()


def test_the_restart_workload_options() -> None:
    args = run.parse(["--workload", "restart", "--quick"])
    assert (args.restart, args.pgbouncer, args.workload) == (True, False, [])
    assert args.restart_partial
    assert args.restart_settings == restart_samples.Settings(rounds=1, callers=16, cap=10.0)
    # alone with its full settings it is a full run of it (restart.md goes to results/)
    args = run.parse(["--workload", "restart"])
    assert not args.restart_partial
    assert args.restart_settings == restart_samples.Settings()
    assert (
        args.restart_settings.scenarios == restart_samples.SCENARIO_NAMES
        and len(args.restart_settings.pools) == 3
    )
    full = run.parse([])
    assert full.restart and not full.partial and not full.restart_partial
    args = run.parse(["--workload", "restart", "--contender", "poolkit*", "--rounds", "5",
                      "--scenarios", "close-frozen,crash-recovery", "--callers", "4",
                      "--hang-cap", "5"])  # fmt: skip
    assert args.restart_settings == restart_samples.Settings(
        rounds=5, callers=4, cap=5.0, scenarios=("close-frozen", "crash-recovery"),
        pools=(POOLKIT_PG,),
    )  # fmt: skip
    assert args.restart_partial
    with pytest.raises(SystemExit):
        run.parse(["--scenarios", "nope"])


def test_the_restart_plan_alternates_the_pools_round_after_round() -> None:
    settings = restart_samples.Settings(rounds=2, scenarios=("restart-burst", "close-frozen"))
    runs = restart.plan(settings)
    assert len(runs) == 2 * 2 * 3
    burst = [(r.round, r.pool) for r in runs if r.scenario == "restart-burst"]
    assert burst == [
        (0, POOLKIT_PG), (0, PSYCOPG3), (0, ASYNCPG_RESET),
        (1, ASYNCPG_RESET), (1, PSYCOPG3), (1, POOLKIT_PG),
    ]  # fmt: skip
    assert [r.scenario for r in runs][:6] == ["restart-burst"] * 6


def test_the_restart_workload_is_skipped_without_the_server_binaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cluster, "PG_BIN", tmp_path / "no-bin")
    argv = ["--workload", "restart", "--quick", "--out", str(tmp_path)]
    assert run.main(argv) == 0
    said = capsys.readouterr().out
    assert "skipping the restart workload: no PostgreSQL server binaries" in said
    assert "POOLKIT_PG_BIN" in said
    assert not (tmp_path / "restart.md").exists()
    with pytest.raises(SystemExit, match="required but no PostgreSQL server binaries"):
        run.main([*argv, "--require"])
    # beside other workloads, RESULTS.md says why it did not run
    argv = ["--workload", "cycles,restart", "--contender", "poolkit (fake", "--rounds", "1"]
    argv += ["--loop", "asyncio", "--cycle-seconds", "0.02", "--out", str(tmp_path)]
    assert run.main(argv) == 0
    assert (
        "- restart workload: no PostgreSQL server binaries" in (tmp_path / "RESULTS.md").read_text()
    )


def test_the_cluster_signals_only_its_own_processes(tmp_path: Path) -> None:
    """A process counts as the cluster's only when it works in the cluster's data directory:
    another process, even a child of the same parent, is never signalled."""
    data = tmp_path / "data"
    data.mkdir()
    mine = cluster.Cluster("/nonexistent", str(tmp_path), 1)
    inside = subprocess.Popen(["sleep", "30"], cwd=data)
    outside = subprocess.Popen(["sleep", "30"], cwd=tmp_path)
    try:
        assert {inside.pid, outside.pid} <= set(cluster.children(os.getpid()))
        assert mine.every_process() == [inside.pid]
        mine._signal([inside.pid, outside.pid], signal.SIGKILL)
        assert inside.wait(5) == -signal.SIGKILL
        assert outside.poll() is None
        assert mine.postmaster() is None and mine.processes() == []
    finally:
        for p in (inside, outside):
            p.kill()
            p.wait()


def test_the_restart_workload_for_real_briefly() -> None:
    """A private cluster, a restart burst and a crash with poolkit and four callers (a few
    seconds): the cluster comes back after each, and nothing of it is left after."""
    need("psycopg2")
    why = restart.unavailable()
    if why is not None:
        pytest.skip(why)
    settings = restart_samples.Settings(
        rounds=1, callers=4, cap=10.0, outage=0.2, steady=0.3,
        scenarios=("restart-burst", "crash-recovery"), pools=(POOLKIT_PG,),
    )  # fmt: skip
    said: list[str] = []
    with cluster.private_cluster() as pg:
        directory = Path(pg.directory)
        taken = restart.measure(
            restart.plan(settings), settings, pg, lambda i, r, s: said.append(s.scenario)
        )
        assert pg.accepting()
    assert not directory.exists() and pg.every_process() == []
    assert said == ["restart-burst", "crash-recovery"]
    burst, crash = taken
    assert (burst.broken, crash.broken) == ("", "")
    assert burst.calls == 4 and not burst.hung and burst.seconds is not None
    assert crash.acked > 0 and crash.lost == 0 and not crash.hung
    assert crash.outage is not None and crash.outage >= 0.2
