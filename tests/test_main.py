"""``python -m poolkit``: its arguments, and what a run of any size proves about its faults."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from poolkit.__main__ import _check_faults
from poolkit.fakes import Drop, FaultReport, Plan, Raise, RuleReport

ROOT = Path(__file__).resolve().parent.parent


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "poolkit", *argv],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_the_smallest_run_passes_and_injects_each_kind_of_fault(loop: str) -> None:
    result = _run("--tasks", "1", "--rounds", "1", "--loop", loop)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "FAILED" not in out
    assert out.count("OK: every committed row is there, nothing leaked") == 2
    assert out.count("1 task x 1 transaction over max_size=4") == 2
    for rule in (
        "#0 Refuse(times=1)",
        "#1 Drop(sql='INSERT', nth=1)",
        "#2 Raise(op='commit', nth=2",
    ):
        (line,) = [line for line in out.splitlines() if line.strip().startswith(rule)]
        assert line.endswith("fired 1 - EXHAUSTED"), line
    # the random rules had too few calls to be expected to fire: said so, not a failure
    notes = re.findall(
        r"note: fault rule #(\d) fires at random on 3% of matching calls and did not in \d+ "
        r"calls \(0\.\d+ expected\): too few to expect it, not a failure",
        out,
    )
    assert set(notes) <= {"3", "4"} and notes, out


def test_a_default_run_passes_with_every_fault_rule_fired() -> None:
    result = _run("--tasks", "8", "--rounds", "60")  # ~14 expected firings of each random rule
    assert result.returncode == 0, result.stdout + result.stderr
    assert "never fired" not in result.stdout and "note:" not in result.stdout


def test_a_fault_rule_that_should_have_fired_fails_the_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    drop = Drop(op="execute", sql="INSERT", probability=0.03)
    first = Raise("OperationalError", op="commit", nth=2)
    long_run = FaultReport(Plan(drop), (RuleReport(0, drop, 400, 0, False),))  # 12 expected
    assert _check_faults(long_run) == 1
    assert "FAILED: fault rule #0 never fired in 400 calls" in capsys.readouterr().out
    short_run = FaultReport(Plan(drop), (RuleReport(0, drop, 300, 0, False),))  # 9 expected
    assert _check_faults(short_run) == 0
    assert "too few to expect it, not a failure" in capsys.readouterr().out
    deterministic = FaultReport(Plan(first), (RuleReport(0, first, 1, 0, False),))
    assert _check_faults(deterministic) == 1
    assert "FAILED: fault rule #0 never fired in 1 call\n" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--tasks", "0"], "argument --tasks: must be >= 1, got 0"),
        (["--rounds", "-1"], "argument --rounds: must be >= 1, got -1"),
        (["--max-size", "0"], "argument --max-size: must be >= 1, got 0"),
        (["--tasks", "many"], "argument --tasks: must be a whole number >= 1, got 'many'"),
        (["--loop", "curio"], "argument --loop: invalid choice: 'curio'"),
    ],
)
def test_bad_arguments_are_usage_errors_naming_the_option(argv: list[str], error: str) -> None:
    result = _run(*argv)
    assert result.returncode == 2
    assert result.stdout == ""
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"python -m poolkit: error: {error}"), last


def test_every_option_has_help() -> None:
    result = _run("--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for option, words in [
        ("--loop {asyncio,trio}", "the event loop to run on"),
        ("--tasks TASKS", "tasks sharing the pool"),
        ("--rounds ROUNDS", "transactions each task runs"),
        ("--max-size MAX_SIZE", "the pool's max_size"),
    ]:
        assert f"{option} {words}" in text, text
