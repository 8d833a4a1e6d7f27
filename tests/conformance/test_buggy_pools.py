"""The hardening checks catch the bugs they are about: each runs, in an inner pytest, against
poolkit with that hardening taken out (``tests/conformance/buggy.py``), and must fail there.

The fake driver's SQLite backend can kill sessions, so the restart check runs with no server;
the fault-proxy checks need a TCP server (PostgreSQL here), and are skipped without one (or
fail, when ``POOLKIT_REQUIRE_BACKENDS`` names it, as in CI).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.backends import resolve

pytest_plugins = ["pytester"]

ARGS = ("-p", "no:cacheprovider", "--pool-conformance", "--pool-no-containers")
# Read before the fixture below clears them for the inner runs.
OUTER = {
    name: os.environ[name]
    for name in ("POOLKIT_POSTGRES_DSN", "POOLKIT_REQUIRE_BACKENDS")
    if name in os.environ
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The inner runs see only the settings given here."""
    for name in list(os.environ):
        if name.startswith("POOLKIT_") or name == "DOCKER_HOST":
            monkeypatch.delenv(name)


def _postgres(tmp_path: Path) -> str:
    """The outer run's PostgreSQL DSN (skip, or fail when required, if unreachable)."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in OUTER.items():
            mp.setenv(name, value)
        backend = resolve("postgres", tmp_path)
    return str(backend.args[0])


def test_restart_check_fails_without_invalidation(pytester: pytest.Pytester) -> None:
    """Without "a disconnect makes older connections suspect", each stale connection fails
    a caller after every session is killed: 3 failed calls for a pool of 3, not 1."""
    result = pytester.runpytest(
        *ARGS,
        "--pool-backend=sqlite",
        "--pool-driver=fake",
        "--pool-under-test=tests.conformance.buggy:NoInvalidation",
        "-k",
        "test_killing_every_session_costs_at_most_one_call",
    )
    result.assert_outcomes(failed=2)  # asyncio and trio
    result.stdout.fnmatch_lines(["*3 of 12 calls failed after a restart of 3 sessions*"])


def test_restart_check_passes_on_poolkit(pytester: pytest.Pytester) -> None:
    """The same check, same backend, on poolkit as it is: the failing run above is the bug."""
    result = pytester.runpytest(
        *ARGS,
        "--pool-backend=sqlite",
        "--pool-driver=fake",
        "-k",
        "test_killing_every_session_costs_at_most_one_call",
    )
    result.assert_outcomes(passed=2)


@pytest.mark.real
def test_network_checks_fail_on_the_bugs_they_name(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    """On PostgreSQL through the fault proxy: without invalidation, a reset of every
    connection costs one failed call per connection (as does killing every session); without
    a look at idle sockets or retries, so does a burst of callers after the reset or after
    every session is killed; reconnects on the back-off clock alone serve a waiting caller
    late once the server accepts again; a close() that leaves
    callers in their driver calls leaves them blocked on a frozen server; an acquire that
    waits for the driver instead of its own timeout hangs on a deaf server."""
    dsn = _postgres(tmp_path)
    common = (
        *ARGS,
        "--pool-backend=postgres",
        "--pool-driver=psycopg2",
        f"--pool-dsn=postgres={dsn}",
    )
    # (buggy adapter, the checks run, how many pass and fail, a line the failure prints)
    runs = [
        (
            "NoInvalidation",
            "asyncio and (test_every_connection_reset_costs_at_most_one_call "
            "or test_killing_every_session_costs_at_most_one_call)",
            0,
            2,
            "*3 of 12 calls failed after 3 connections were reset*",
        ),
        (  # the sequential calls still find the dead connections suspect; the burst does not
            "NoSocketLook",
            "asyncio and (test_a_burst_after_every_connection_reset_costs_at_most_one_call "
            "or test_every_connection_reset_costs_at_most_one_call)",
            1,
            1,
            "*4 of 16 concurrent calls failed after 4 connections were*",
        ),
        (
            "NoSocketLook",
            "asyncio and test_a_burst_after_every_session_is_killed_costs_at_most_one_call",
            0,
            1,
            "*3 of 12 concurrent calls failed after a restart of 3*",
        ),
        (
            "SlowRecovery",
            "asyncio and test_a_waiting_caller_is_served_once_the_server_accepts_again",
            0,
            1,
            "*the waiting caller was served * s after the server accepted*",
        ),
        (
            "CloseLeavesCallersBlocked",
            "asyncio and test_close_on_a_frozen_server_releases_every_caller",
            0,
            1,
            "*2 of 2 callers still blocked in the driver*",
        ),
        (
            "NoAcquireTimeout",
            "asyncio and test_connect_to_a_deaf_server_times_out",
            0,
            1,
            None,
        ),
    ]
    for buggy, checks, passed, failed, line in runs:
        result = pytester.runpytest(
            *common, f"--pool-under-test=tests.conformance.buggy:{buggy}", "-k", checks
        )
        result.assert_outcomes(passed=passed, failed=failed)
        if line is not None:
            result.stdout.fnmatch_lines([line])
