"""``pytest --pool-conformance``, run in an inner pytest with ``pytester``; and its parts.

The plugin comes from the ``pytest11`` entry point (the package is installed), so the inner
runs load it the way a user's test suite does. Inner runs stay on SQLite unless a test is about
another backend; those never need a server (no DSN, or a DSN to port 1, which refuses at once).
The resolver, the report and the DSN parsing are unit-tested directly below.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any, ClassVar

import pytest

from poolkit.conformance import _resolve
from poolkit.conformance._defaults import DEFAULT_DSNS
from poolkit.conformance._report import Report, Result
from poolkit.conformance._resolve import Resolved, Resolver, docker_reachable
from poolkit.conformance._targets import Target, TargetError, build_target
from tests.backends import need, no_default_servers, probe

pytest_plugins = ["pytester"]

ARGS = ("-p", "no:cacheprovider")
SQLITE = (*ARGS, "--pool-conformance", "--pool-backend", "sqlite")
OPTIONS = (
    "--pool-conformance",
    "--pool-backend",
    "--pool-dsn",
    "--pool-driver",
    "--pool-under-test",
    "--pool-require",
    "--pool-report",
    "--pool-no-containers",
)
OUTCOMES = {"pass", "fail", "skip", "not supported", "unexpected pass"}
SECRET = "S3cretPw"
# A few checks, so inner runs stay quick however large the suite grows.
FEW = (
    "-k",
    "test_select_one_round_trip or test_commit_is_seen_by_another_connection "
    "or test_reset_on_return_rolls_back",
)

# Adapters a user might point --pool-under-test at (written into the inner run's directory).
ADAPTERS = '''
from contextlib import asynccontextmanager

from poolkit.conformance.adapters import PoolkitAdapter


class _CommitOnReturnHandle:
    def __init__(self, inner):
        self._inner = inner
        self.max_size = inner.max_size
        self.timeout_error = inner.timeout_error

    @asynccontextmanager
    async def connection(self, timeout=None):
        async with self._inner.connection(timeout) as conn:
            yield conn
            await conn.commit()

    async def close(self):
        await self._inner.close()


class CommitOnReturn:
    """poolkit, but a connection's open transaction is committed when it is returned."""

    name = "commitpool"
    capabilities = PoolkitAdapter.capabilities - {"rollback_on_return"}

    def __init__(self):
        self._inner = PoolkitAdapter()

    def supports(self, backend, driver):
        return self._inner.supports(backend, driver)

    @asynccontextmanager
    async def pool(self, target, **options):
        async with self._inner.pool(target, **options) as handle:
            yield _CommitOnReturnHandle(handle)


class Modest(PoolkitAdapter):
    """poolkit (which does roll back on return) claiming that it does not."""

    name = "modestpool"
    capabilities = PoolkitAdapter.capabilities - {"rollback_on_return"}


class Fast(PoolkitAdapter):
    """poolkit, giving up on an unreachable server after half a second instead of 30."""

    @asynccontextmanager
    async def pool(self, target, **options):
        options.setdefault("timeout", 0.5)
        async with super().pool(target, **options) as handle:
            yield handle


class Bare:
    name = "bare"


def make_commit_on_return():
    return CommitOnReturn()
'''


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The inner runs see no POOLKIT_* settings (nor a Docker host) of the outer one, and no
    server at the default addresses (tests that want one put it back)."""
    for name in list(os.environ):
        if name.startswith("POOLKIT_") or name == "DOCKER_HOST":
            monkeypatch.delenv(name)
    no_default_servers(monkeypatch)


@pytest.fixture
def adapters(pytester: pytest.Pytester) -> str:
    """The module name of the user adapters above, importable by the inner run."""
    pytester.makepyfile(useradapters=ADAPTERS)
    pytester.syspathinsert()
    return "useradapters"


def _load(path: Path) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = json.loads(path.read_text())["results"]
    return results


def _executed(result: pytest.RunResult) -> int:
    counts = result.parseoutcomes()
    return sum(counts.get(k, 0) for k in ("passed", "failed", "skipped", "xfailed", "errors"))


def _assert_full_matrix(results: list[dict[str, Any]], executed: int) -> None:
    """One result per check per case, every case with every check, known outcomes only."""
    pairs = [(r["backend"], r["driver"], r["pool"], r["check"]) for r in results]
    assert len(pairs) == len(set(pairs)) == executed
    cases = {p[:3] for p in pairs}
    checks = {p[3] for p in pairs}
    assert len(pairs) == len(cases) * len(checks)
    assert {r["outcome"] for r in results} <= OUTCOMES


# ----- the plugin, off and on -------------------------------------------------------------


def test_without_the_option_a_plain_run_is_unchanged(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user="def test_mine():\n    pass\n")
    collected = pytester.runpytest(*ARGS, "--collect-only", "-q")
    collected.stdout.fnmatch_lines(["test_user.py::test_mine"])
    collected.stdout.no_fnmatch_line("*test_pep249*")
    result = pytester.runpytest(*ARGS, "--pool-backend", "sqlite")
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*poolkit conformance*")


def test_a_plain_run_imports_only_pytest_and_the_plugin(pytester: pytest.Pytester) -> None:
    """The plugin is loaded in every pytest run of every project with poolkit installed;
    without --pool-conformance it imports pytest and its own options module, not the pool,
    anyio, the fakes or any driver (anyio's and hypothesis' own plugins are off here: they
    would import their packages themselves)."""
    pytester.makepyfile(
        test_user="""
        import sys

        LIGHT = {"poolkit", "poolkit.conformance", "poolkit.conformance._options",
                 "poolkit.conformance.plugin"}
        HEAVY = ("anyio", "sniffio", "hypothesis", "rich", "testcontainers", "docker",
                 "psycopg_pool", "psycopg", "psycopg2", "pymysql", "pyodbc")

        def test_light():
            loaded = {m for m in sys.modules if m == "poolkit" or m.startswith("poolkit.")}
            assert loaded == LIGHT
            assert [m for m in HEAVY if m in sys.modules] == []
        """
    )
    result = pytester.runpytest_subprocess(*ARGS, "-p", "no:anyio", "-p", "no:hypothesispytest")
    result.assert_outcomes(passed=1)


def test_help_lists_the_poolkit_group_and_every_option(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(*ARGS, "--help")
    assert result.ret == pytest.ExitCode.OK
    text = result.stdout.str()
    assert "poolkit conformance suite:" in text
    group = text.split("poolkit conformance suite:", 1)[1]
    for option in OPTIONS:
        assert f"  {option}" in group, option
    for env in (
        "POOLKIT_CONFORMANCE=1",
        "POOLKIT_BACKENDS",
        "POOLKIT_POSTGRES_DSN",
        "POOLKIT_DRIVERS",
        "POOLKIT_POOL_UNDER_TEST",
        "POOLKIT_REQUIRE",
        "POOLKIT_REPORT",
    ):
        assert env in group, env


def test_sqlite_run_passes_on_sqlite3_and_the_fake(pytester: pytest.Pytester) -> None:
    report = pytester.path / "report"
    result = pytester.runpytest(*SQLITE, "-v", "--pool-report", str(report))
    assert result.ret == pytest.ExitCode.OK
    counts = result.parseoutcomes()
    assert counts["passed"] > 0 and set(counts) <= {"passed", "xfailed"}
    result.stdout.fnmatch_lines(
        [
            "*test_pep249.py::*-sqlite-sqlite3-poolkit* PASSED*",
            "*test_pep249.py::*-sqlite-fake-poolkit* PASSED*",
        ],
        consecutive=False,
    )
    result.stdout.fnmatch_lines(
        [
            "*= poolkit conformance =*",
            "case (backend/driver/pool)*source*pass*fail*n/s*skip",
            "sqlite/sqlite3/poolkit*embedded*",
            "sqlite/fake/poolkit*embedded*",
            f"poolkit conformance report: {report}.md, {report}.json",
            "*the full check x case matrix is there (--pool-matrix prints it)",
        ]
    )
    result.stdout.no_fnmatch_line("*poolkit conformance matrix*")  # only on request
    result.stdout.no_fnmatch_line("*psycopg_pool*")
    results = _load(report.with_suffix(".json"))
    assert {(r["backend"], r["driver"], r["pool"]) for r in results} == {
        ("sqlite", "sqlite3", "poolkit"),
        ("sqlite", "fake", "poolkit"),
    }
    outcomes = {r["outcome"] for r in results}
    assert "pass" in outcomes and outcomes <= {"pass", "not supported"}
    assert {r["source"] for r in results} == {"embedded"}
    _assert_full_matrix(results, _executed(result))


def test_with_paths_those_run_not_the_suite(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user="def test_mine():\n    pass\n")
    result = pytester.runpytest(*SQLITE, "-v", "test_user.py")
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["*test_user.py::test_mine PASSED*", "poolkit conformance: no case ran"]
    )
    result.stdout.no_fnmatch_line("*test_pep249*")


@pytest.mark.parametrize("on", [True, False], ids=["on", "off"])
def test_checks_imported_into_a_user_module(pytester: pytest.Pytester, on: bool) -> None:
    """A user's module may import the checks: they run on the cases, or skip without the option."""
    pytester.makepyfile(
        test_mine="from poolkit.conformance.suite.test_pep249 import *  # noqa: F403\n"
    )
    args = [*SQLITE] if on else [*ARGS, "-rs"]
    result = pytester.runpytest(*args, "-v", "-k", "test_select_one_round_trip", "test_mine.py")
    assert result.ret == pytest.ExitCode.OK
    counts = result.parseoutcomes()
    if on:
        assert counts["passed"] > 0 and "skipped" not in counts
        result.stdout.fnmatch_lines(
            [
                "test_mine.py::test_select_one_round_trip?*-sqlite-fake-poolkit? PASSED*",
                "*= poolkit conformance =*",
            ]
        )
    else:
        assert counts["skipped"] > 0 and "passed" not in counts
        result.stdout.fnmatch_lines(["SKIPPED *conformance checks run with --pool-conformance"])
        result.stdout.no_fnmatch_line("*poolkit conformance*matrix*")


def test_env_twins(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    report = pytester.path / "out" / "env-report"
    monkeypatch.setenv("POOLKIT_CONFORMANCE", "1")
    monkeypatch.setenv("POOLKIT_BACKENDS", "sqlite")
    monkeypatch.setenv("POOLKIT_DRIVERS", "fake")
    monkeypatch.setenv("POOLKIT_REPORT", str(report))
    result = pytester.runpytest(*ARGS, *FEW, "-v")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*-sqlite-fake-poolkit* PASSED*", "*= poolkit conformance =*"])
    result.stdout.no_fnmatch_line("*sqlite3-poolkit*")
    result.stdout.fnmatch_lines([f"poolkit conformance report: {report}.md, {report}.json"])
    results = _load(report.with_suffix(".json"))
    assert results and {r["driver"] for r in results} == {"fake"}
    assert "sqlite/fake/poolkit" in report.with_suffix(".md").read_text()


def test_options_win_over_their_env_twins(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POOLKIT_CONFORMANCE", "1")
    monkeypatch.setenv("POOLKIT_BACKENDS", "postgres")
    monkeypatch.setenv("POOLKIT_DRIVERS", "fake")
    result = pytester.runpytest(
        *ARGS, *FEW, "-v", "--pool-backend", "sqlite", "--pool-driver", "sqlite3"
    )
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*-sqlite-sqlite3-poolkit* PASSED*"])
    result.stdout.no_fnmatch_line("*-fake-*")
    result.stdout.no_fnmatch_line("*postgres*")


def test_conformance_env_zero_is_off(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POOLKIT_CONFORMANCE", "0")
    pytester.makepyfile(test_user="def test_mine():\n    pass\n")
    result = pytester.runpytest(*ARGS)
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*poolkit conformance*")


def test_report_writes_markdown_and_json(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(*SQLITE, *FEW, "--pool-report", "reports/run")
    assert result.ret == pytest.ExitCode.OK
    md, js = pytester.path / "reports" / "run.md", pytester.path / "reports" / "run.json"
    result.stdout.fnmatch_lines(["poolkit conformance report: reports/run.md, reports/run.json"])
    data = json.loads(js.read_text())
    assert data["python"] == sys.version.split()[0] and data["platform"]
    results = data["results"]
    assert set(results[0]) == {"backend", "driver", "pool", "source", "check", "outcome", "why"}
    _assert_full_matrix(results, _executed(result))
    text = md.read_text()
    assert text.startswith("# poolkit conformance report\n")
    assert "| case | source | pass | fail | skip | not supported |" in text
    assert "| check | sqlite/sqlite3/poolkit | sqlite/fake/poolkit |" in text
    for check in {r["check"] for r in results}:
        assert f"| {check} | pass | pass |" in text


# ----- unreachable backends ---------------------------------------------------------------


@pytest.mark.parametrize("how", ["no-containers", "no-docker"])
def test_unreachable_backend_is_left_out_naming_the_env_var(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """No server at the default address, no DSN: the backend's cases do not run (nothing is
    collected for them, so no wall of skips), and one line says what to set."""
    args = [*ARGS, "--pool-conformance", "--pool-backend", "postgres"]
    if how == "no-containers":
        args.append("--pool-no-containers")
    else:  # containers allowed, but no Docker engine answers; warnings are errors (as here)
        monkeypatch.setenv("DOCKER_HOST", f"unix://{pytester.path}/no-docker.sock")
        pytester.makeini("[pytest]\nfilterwarnings = error\n")
    result = pytester.runpytest(*args, *FEW, "--pool-report", "rep")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED  # nothing could be checked
    assert set(result.parseoutcomes()) <= {"deselected"}
    result.stdout.fnmatch_lines(
        [
            "poolkit conformance: no case ran",
            "not run (set what each line says to include it):",
            "  postgres (psycopg2, pyodbc, psycopg): no DSN for postgres (set*",
        ]
    )
    said = " ".join(result.stdout.str().split())  # the summary wraps its lines
    assert "nothing answers at the default 127.0.0.1:1" in said
    result.stdout.no_fnmatch_line("SKIPPED*")
    if how == "no-docker":  # (or no docker SDK at all, where the containers extra is absent)
        assert re.search(
            r"and (no Docker engine is reachable|the docker SDK is not installed)", said
        ), said
    data = json.loads((pytester.path / "rep.json").read_text())
    assert data["results"] == []
    not_run = data["not_run"]
    assert {(n["backend"], n["driver"]) for n in not_run} >= {("postgres", "psycopg2")}
    assert all("POOLKIT_POSTGRES_DSN" in n["why"] or "pyodbc" in n["why"] for n in not_run)
    assert "## Not run" in (pytester.path / "rep.md").read_text()


def test_a_server_at_the_default_address_is_used(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like the test suite, the main job finds the local server without a DSN."""
    backend, why = probe("postgres")  # the test suite's server (cached from the outer run)
    if backend is None:
        pytest.skip(why)
    # the default address, or where the outer run was told the server is
    monkeypatch.setitem(DEFAULT_DSNS, "postgres", str(backend.args[0]))
    args = [*ARGS, *FEW, "--pool-conformance", "--pool-backend", "postgres"]
    result = pytester.runpytest(*args, "--pool-driver", "psycopg2", "--pool-report", "rep")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["postgres/psycopg2/poolkit*default*"])
    results = _load(pytester.path / "rep.json")
    assert results and {r["source"] for r in results} == {"default"}
    assert {r["outcome"] for r in results} == {"pass"}
    # an explicit DSN wins over the default, even one where nothing answers
    refused = pytester.runpytest(
        *args, "--pool-driver", "psycopg2", "--pool-dsn", "postgres=host=127.0.0.1 port=1"
    )
    assert refused.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    refused.stdout.fnmatch_lines(["*postgres (psycopg2): postgres via psycopg2 is unreachable*"])


def test_deselected_cases_reach_no_server(pytester: pytest.Pytester) -> None:
    """-k/-m run first: backends of deselected cases are not even looked for."""
    result = pytester.runpytest(
        *ARGS, "--pool-conformance", "-k", "sqlite3 and test_select_one_round_trip"
    )
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["sqlite/sqlite3/poolkit*embedded*"])
    result.stdout.no_fnmatch_line("*not run*")  # postgres, mysql, mssql were never resolved


def test_the_matrix_is_printed_on_request_and_fits_100_columns(
    pytester: pytest.Pytester,
) -> None:
    result = pytester.runpytest(*SQLITE, *FEW, "--pool-matrix", "--pool-report", "")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*= poolkit conformance matrix =*", "*check*", "*pass*"])
    result.stdout.no_fnmatch_line("poolkit conformance report:*")  # none asked for
    assert not (pytester.path / "poolkit-report.md").exists()
    summary = result.stdout.str().split("poolkit conformance matrix", 1)[1]
    assert max(len(line) for line in summary.splitlines()) <= 100


def test_no_per_check_skip_or_xfail_lines_unless_asked(pytester: pytest.Pytester) -> None:
    """The project's -ra (addopts) would list every not-supported check; the summary says it."""
    pytester.makeini("[pytest]\naddopts = -ra\n")
    quiet = pytester.runpytest(*SQLITE, "-k", "test_statement_timeout")
    assert quiet.ret == pytest.ExitCode.OK
    assert quiet.parseoutcomes()["xfailed"] > 0
    quiet.stdout.no_fnmatch_line("XFAIL *")
    quiet.stdout.fnmatch_lines(["sqlite/sqlite3/poolkit*embedded*0*0*2*0"])
    asked = pytester.runpytest(*SQLITE, "-k", "test_statement_timeout", "-rx")
    asked.stdout.fnmatch_lines(["XFAIL *not supported*"])


@pytest.mark.parametrize("how", ["option", "env"])
def test_a_required_unreachable_backend_fails(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    args = [*ARGS, "--pool-conformance", "--pool-backend", "postgres", "--pool-no-containers"]
    if how == "option":
        args += ["--pool-require", "postgres"]
    else:
        monkeypatch.setenv("POOLKIT_REQUIRE", "postgres")
    result = pytester.runpytest(*args, *FEW, "--pool-report", "rep")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    counts = result.parseoutcomes()
    assert counts["errors"] > 0 and "passed" not in counts and "skipped" not in counts
    result.stdout.fnmatch_lines(
        ["*required backend unavailable: no DSN for postgres (set POOLKIT_POSTGRES_DSN*"]
    )
    results = _load(pytester.path / "rep.json")
    assert {r["outcome"] for r in results} == {"fail"}
    _assert_full_matrix(results, _executed(result))


@pytest.mark.parametrize("required", [False, True], ids=["skipped", "required"])
def test_a_target_that_cannot_be_built_skips_or_fails_when_required(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, required: bool
) -> None:
    """A DSN for SQL Server, but no SQL Server ODBC driver: each case says so."""
    pyodbc = need("pyodbc")
    monkeypatch.setattr(pyodbc, "drivers", lambda: ["PostgreSQL Unicode"])  # in-process run
    args = [*ARGS, *FEW, "-rs", "--pool-conformance", "--pool-backend", "mssql"]
    args += ["--pool-dsn", f"mssql=mssql://sa:{SECRET}@127.0.0.1:1/master"]
    if required:
        args += ["--pool-require", "mssql"]
    result = pytester.runpytest(*args)
    expected = "*mssql via pyodbc: no ODBC driver for SQL Server is installed*"
    if required:
        assert result.ret == pytest.ExitCode.TESTS_FAILED
        assert result.parseoutcomes()["errors"] > 0
        result.stdout.fnmatch_lines(["*required backend unavailable: " + expected[1:]])
    else:
        assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
        assert set(result.parseoutcomes()) <= {"deselected"}
        result.stdout.fnmatch_lines(
            ["  mssql (pyodbc): no ODBC driver for SQL Server is installed*"]
        )
    assert SECRET not in result.stdout.str() + result.stderr.str()


# ----- secrets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "driver", "dsn"),
    [
        ("postgres", "psycopg2", f"postgresql://user:{SECRET}@127.0.0.1:1/test"),
        ("mysql", "pymysql", f"mysql://root:{SECRET}@127.0.0.1:1/test"),
    ],
    ids=["postgres-psycopg2", "mysql-pymysql"],
)
@pytest.mark.parametrize("required", [False, True], ids=["skipped", "required"])
def test_a_dsn_password_never_shows(
    pytester: pytest.Pytester,
    adapters: str,
    backend: str,
    driver: str,
    dsn: str,
    required: bool,
) -> None:
    """Port 1 refuses at once: the backend is unreachable (skipped, or failed when required),
    and no output or report shows the password."""
    result = pytester.runpytest(
        *ARGS,
        "-rA",
        "-k",
        "test_select_one_round_trip or test_commit_is_seen_by_another_connection",
        "--pool-conformance",
        f"--pool-backend={backend}",
        f"--pool-driver={driver}",
        f"--pool-dsn={backend}={dsn}",
        f"--pool-under-test={adapters}:Fast",
        "--pool-report=rep",
        *([f"--pool-require={backend}"] if required else []),
    )
    expected = pytest.ExitCode.TESTS_FAILED if required else pytest.ExitCode.NO_TESTS_COLLECTED
    assert result.ret == expected
    output = result.stdout.str() + result.stderr.str()
    assert "127.0.0.1" in output  # the DSN was used: the reasons name the host
    md, js = (pytester.path / "rep.md").read_text(), (pytester.path / "rep.json").read_text()
    results = _load(pytester.path / "rep.json")
    if required:
        assert results and {r["outcome"] for r in results} == {"fail"}
        assert {r["source"] for r in results} == {"unavailable"}
    else:  # left out of the run, and said so once
        assert results == []
        not_run = json.loads(js)["not_run"]
        assert [(n["backend"], n["driver"]) for n in not_run] == [(backend, driver)]
        assert "127.0.0.1" in not_run[0]["why"]
    leaks = [ln for ln in output.splitlines() if SECRET in ln]
    assert leaks == [], f"the password is in the terminal output: {leaks[:3]}"
    assert SECRET not in md
    assert SECRET not in js


# ----- usage errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pool-backend", "oracle"], "*--pool-backend: unknown ?'oracle'?; known: sqlite*"),
        (["--pool-driver", "cx_oracle"], "*--pool-driver: unknown ?'cx_oracle'?; known: *"),
        (["--pool-require", "oracle"], "*--pool-require: unknown ?'oracle'?*"),
        (
            ["--pool-dsn", f"postgres:postgresql://u:{SECRET}@h/db"],
            "*--pool-dsn wants NAME=DSN with NAME one of sqlite, postgres, postgres-pgbouncer, "
            "mysql, mssql*",
        ),
        (["--pool-dsn", f"oracle=oracle://u:{SECRET}@h/db"], "*--pool-dsn wants NAME=DSN*"),
        (["--pool-under-test", "nomodule:x"], "*--pool-under-test nomodule:x*nomodule*"),
        (["--pool-under-test", "nocolon"], "*--pool-under-test wants module:factory*nocolon*"),
        (
            ["--pool-under-test", "useradapters:Missing"],
            "*--pool-under-test useradapters:Missing*has no attribute 'Missing'*",
        ),
        (
            ["--pool-under-test", "useradapters:Bare"],
            "*--pool-under-test useradapters:Bare: the adapter has no 'capabilities'*",
        ),
        (["--pool-under-test", "os:sep"], "*--pool-under-test os:sep: sep is not callable*"),
        (["--pool-require", "postgres"], "*--pool-require postgres, but --pool-backend leaves*"),
        (
            ["--pool-require", "sqlite", "--pool-driver", "pymysql"],
            "*--pool-require sqlite, but --pool-driver names none of its drivers*",
        ),
        (["--pool-driver", "pymysql"], "*no case to run*pymysql*"),
        (["--pool-report", "/proc/no/such/report"], "*--pool-report /proc/no/such/report*"),
    ],
    ids=[
        "backend",
        "driver",
        "require",
        "dsn-without-equals",
        "dsn-unknown-name",
        "adapter-no-module",
        "adapter-no-colon",
        "adapter-no-factory",
        "adapter-lacks-attributes",
        "adapter-not-callable",
        "require-filtered-out-backend",
        "require-filtered-out-drivers",
        "no-case",
        "report-not-writable",
    ],
)
def test_bad_options_are_usage_errors(
    pytester: pytest.Pytester, adapters: str, args: list[str], message: str
) -> None:
    result = pytester.runpytest(*SQLITE, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert SECRET not in result.stdout.str() + result.stderr.str()


# ----- pool adapters under test -------------------------------------------------------------


@pytest.mark.parametrize("how", ["option", "env"])
def test_missing_capability_is_reported_not_supported(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, adapters: str, how: str
) -> None:
    args = [*SQLITE, "-rA", "--pool-report", "rep"]
    if how == "option":
        args += ["--pool-under-test", f"{adapters}:CommitOnReturn"]
    else:
        monkeypatch.setenv("POOLKIT_POOL_UNDER_TEST", f"{adapters}:make_commit_on_return")
    result = pytester.runpytest(*args, *FEW)
    assert result.ret == pytest.ExitCode.OK
    counts = result.parseoutcomes()
    assert counts["xfailed"] == 4 and counts["passed"] > 0
    result.stdout.fnmatch_lines(["*commitpool*"])
    result.stdout.fnmatch_lines(
        ["XFAIL *test_reset_on_return_rolls_back*commitpool* - not supported: rollback_on_return"]
    )
    results = _load(pytester.path / "rep.json")
    assert {r["pool"] for r in results} == {"commitpool"}
    for r in results:
        if r["check"].startswith("test_reset_on_return_rolls_back"):
            assert (r["outcome"], r["why"]) == ("not supported", "rollback_on_return")
        else:
            assert r["outcome"] == "pass", r
    _assert_full_matrix(results, _executed(result))
    md = (pytester.path / "rep.md").read_text()
    assert "| sqlite/sqlite3/commitpool | embedded | 4 | 0 | 0 | 2 |" in md
    assert "| test_reset_on_return_rolls_back[asyncio] | n/s | n/s |" in md


def test_a_capability_declared_missing_that_works_fails_the_run(
    pytester: pytest.Pytester, adapters: str
) -> None:
    """Strict: an adapter that under-declares passes a "not supported" check; the run fails."""
    result = pytester.runpytest(
        *SQLITE, *FEW, "--pool-under-test", f"{adapters}:Modest", "--pool-report", "rep"
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    counts = result.parseoutcomes()
    assert counts["failed"] == 4 and counts["passed"] > 0  # reset: 2 loops x 2 drivers
    result.stdout.fnmatch_lines(["*?XPASS(strict)? not supported: rollback_on_return*"])
    matrix = result.stdout.str().split("poolkit conformance matrix", 1)[1]
    assert "modestpool" in matrix
    results = _load(pytester.path / "rep.json")
    assert {r["pool"] for r in results} == {"modestpool"}
    _assert_full_matrix(results, _executed(result))
    resets = [r for r in results if r["check"].startswith("test_reset_on_return_rolls_back")]
    assert len(resets) == 4
    assert {r["outcome"] for r in results if r not in resets} == {"pass"}
    assert {r["outcome"] for r in resets} == {"unexpected pass"}, resets
    md = (pytester.path / "rep.md").read_text()
    assert "| test_reset_on_return_rolls_back[asyncio] | XPASS | XPASS |" in md
    rows = [
        ln
        for ln in matrix.splitlines()
        if ln.startswith("│ test_reset_on_return_rolls_back[")  # the terminal matrix
    ]
    assert len(rows) == 2 and all(ln.count("XPASS") == 2 for ln in rows), rows


# ----- the resolver -------------------------------------------------------------------------


def _quiet(text: str) -> None:
    pass


class _Docker:
    """A stand-in for docker_reachable that counts its calls."""

    def __init__(self, answer: tuple[bool, str]) -> None:
        self.answer = answer
        self.calls = 0

    def __call__(self, timeout: float = 3.0) -> tuple[bool, str]:
        self.calls += 1
        return self.answer


class _FakeContainer:
    started: ClassVar[list[_FakeContainer]] = []  # reset by the docker fixture

    def __init__(self, image: str) -> None:
        self.image = image
        self.stopped = False

    def start(self) -> _FakeContainer:
        _FakeContainer.started.append(self)
        return self

    def get_connection_url(self) -> str:
        return "postgresql+psycopg2://test:CtrPw99@localhost:49153/test"

    def stop(self) -> None:
        self.stopped = True


class _BrokenContainer(_FakeContainer):
    def start(self) -> _FakeContainer:
        raise RuntimeError("pull access denied for postgres")


def _postgres_module() -> Any:
    """``testcontainers.postgres``, imported quietly (it is deprecated in testcontainers 4.9+)."""
    need("testcontainers")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return importlib.import_module("testcontainers.postgres")


@pytest.fixture
def docker(monkeypatch: pytest.MonkeyPatch) -> _Docker:
    fake = _Docker((True, ""))
    monkeypatch.setattr(_resolve, "docker_reachable", fake)
    _FakeContainer.started = []
    return fake


def test_resolver_explicit_dsn_wins_over_env(
    monkeypatch: pytest.MonkeyPatch, docker: _Docker
) -> None:
    monkeypatch.setenv("POOLKIT_POSTGRES_DSN", "postgresql://env/db")
    resolver = Resolver(dsns={"postgres": "postgresql://option/db"}, say=_quiet)
    assert resolver.resolve("postgres") == Resolved("postgres", "postgresql://option/db", "dsn")
    assert docker.calls == 0


@pytest.mark.parametrize("backend", ["postgres", "mysql", "mssql"])
def test_resolver_env_wins_over_containers(
    monkeypatch: pytest.MonkeyPatch, docker: _Docker, backend: str
) -> None:
    monkeypatch.setenv(f"POOLKIT_{backend.upper()}_DSN", f"{backend}://env/db")
    monkeypatch.setattr(_postgres_module(), "PostgresContainer", _FakeContainer)
    resolver = Resolver(say=_quiet)
    assert resolver.resolve(backend) == Resolved(backend, f"{backend}://env/db", "dsn")
    assert docker.calls == 0 and _FakeContainer.started == []


def test_resolver_sqlite_is_embedded(docker: _Docker) -> None:
    assert Resolver(use_containers=True).resolve("sqlite") == Resolved("sqlite", None, "embedded")
    assert docker.calls == 0


@pytest.mark.parametrize("backend", ["postgres", "mysql", "mssql"])
def test_resolver_without_containers_is_unavailable_naming_the_env_var(
    docker: _Docker, backend: str
) -> None:
    resolved = Resolver(use_containers=False, say=_quiet).resolve(backend)
    assert not resolved.available and resolved.dsn is None
    assert resolved.source == "unavailable"
    assert f"POOLKIT_{backend.upper()}_DSN" in resolved.why
    assert f"--pool-dsn {backend}=DSN" in resolved.why
    assert docker.calls == 0


def test_resolver_without_docker_is_unavailable_with_the_reason(docker: _Docker) -> None:
    docker.answer = (False, "no Docker engine is reachable (here)")
    resolver = Resolver(say=_quiet)
    for backend in ("postgres", "mysql"):
        resolved = resolver.resolve(backend)
        assert resolved.source == "unavailable"
        assert f"POOLKIT_{backend.upper()}_DSN" in resolved.why
        assert "no Docker engine is reachable (here)" in resolved.why
    assert docker.calls == 1  # asked once per run


@pytest.mark.parametrize("container", [_BrokenContainer, None], ids=["start-raises", "real"])
def test_resolver_container_that_does_not_start_is_unavailable(
    monkeypatch: pytest.MonkeyPatch, docker: _Docker, container: type[_FakeContainer] | None
) -> None:
    """Docker answers, but the container fails: unavailable with the error, never a pass."""
    module = _postgres_module()
    if container is not None:
        monkeypatch.setattr(module, "PostgresContainer", container)
    else:  # the real class, talking to an engine that is not there
        monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/poolkit-docker.sock")
    said: list[str] = []
    resolver = Resolver(say=said.append)
    with warnings.catch_warnings():
        # the docker SDK leaves a socket behind when its client cannot be made; not ours here
        warnings.simplefilter("ignore", ResourceWarning)
        resolved = resolver.resolve("postgres")
        gc.collect()
    assert resolved.source == "unavailable" and not resolved.available
    assert resolved.dsn is None
    assert "postgres container did not start" in resolved.why
    assert "POOLKIT_POSTGRES_DSN" in resolved.why
    if container is not None:
        assert "RuntimeError: pull access denied for postgres" in resolved.why
    assert any("starting PostgresContainer(postgres:16-alpine)" in s for s in said)
    assert any("did not start" in s for s in said)
    assert resolver.resolve("postgres") is resolved  # not retried per check
    resolver.close()


def test_resolver_started_container_gives_a_dsn_and_is_stopped(
    monkeypatch: pytest.MonkeyPatch, docker: _Docker
) -> None:
    monkeypatch.setattr(_postgres_module(), "PostgresContainer", _FakeContainer)
    said: list[str] = []
    resolver = Resolver(say=said.append)
    resolved = resolver.resolve("postgres")
    assert resolved == Resolved(
        "postgres", "postgresql://test:CtrPw99@localhost:49153/test", "container"
    )
    assert resolver.resolve("postgres") is resolved
    assert len(_FakeContainer.started) == 1
    assert _FakeContainer.started[0].image == "postgres:16-alpine"
    assert any("postgres container ready at" in s for s in said)
    assert not any("CtrPw99" in s for s in said)
    resolver.close()
    assert _FakeContainer.started[0].stopped


def test_resolver_starts_a_container_when_warnings_are_errors(
    monkeypatch: pytest.MonkeyPatch, docker: _Docker
) -> None:
    """As in this project's pytest configuration (``filterwarnings = error``), in which the
    resolver runs: importing the container class must not turn into "did not start"."""
    community = need("testcontainers.community.postgres")
    monkeypatch.setattr(community, "PostgresContainer", _FakeContainer)
    monkeypatch.delitem(sys.modules, "testcontainers.postgres", raising=False)
    resolver = Resolver(say=_quiet)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolved = resolver.resolve("postgres")
    assert (resolved.source, resolved.why) == ("container", "")
    resolver.close()


def test_docker_reachable_without_an_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """(False, why), and nothing left open (a leaked socket fails runs with warnings as errors)."""
    need("docker")
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/poolkit-docker.sock")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ok, why = docker_reachable(timeout=1)
        gc.collect()
    assert ok is False
    assert why.startswith("no Docker engine is reachable (")
    leaked = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaked == []


def test_docker_reachable_without_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "docker", None)
    ok, why = docker_reachable()
    assert ok is False
    assert "pip install 'poolkit[containers]'" in why


# ----- the report -------------------------------------------------------------------------


def _sample() -> Report:
    report = Report()
    for result in (
        Result("sqlite", "sqlite3", "poolkit", "embedded", "test_a[asyncio]", "pass"),
        Result("sqlite", "sqlite3", "poolkit", "embedded", "test_b[asyncio]", "not supported", "x"),
        Result("sqlite", "fake", "poolkit", "embedded", "test_a[asyncio]", "unexpected pass", "y"),
        Result("sqlite", "fake", "poolkit", "embedded", "test_b[asyncio]", "fail", "boom"),
        Result("postgres", "psycopg2", "poolkit", "unavailable", "test_a[asyncio]", "skip", "z"),
    ):
        report.add(result)
    return report


def test_report_markdown() -> None:
    lines = _sample().markdown().splitlines()
    assert lines[0] == "# poolkit conformance report"
    assert "| sqlite/sqlite3/poolkit | embedded | 1 | 0 | 0 | 1 |" in lines
    assert "| sqlite/fake/poolkit | embedded | 0 | 2 | 0 | 0 |" in lines
    assert "| postgres/psycopg2/poolkit | unavailable | 0 | 0 | 1 | 0 |" in lines
    header = "| check | sqlite/sqlite3/poolkit | sqlite/fake/poolkit | postgres/psycopg2/poolkit |"
    assert lines[lines.index(header) + 1] == "|---|---|---|---|"
    assert lines[lines.index(header) + 2] == "| test_a[asyncio] | pass | XPASS | skip |"
    assert lines[lines.index(header) + 3] == "| test_b[asyncio] | n/s | FAIL |  |"
    assert "## Why not passed" in lines
    assert "- **sqlite/fake/poolkit** fail: boom (`test_b[asyncio]`)" in lines
    assert "- **sqlite/fake/poolkit** unexpected pass: y (`test_a[asyncio]`)" in lines
    # one line for a reason shared by every check of a case
    assert any(ln.startswith("- **postgres/psycopg2/poolkit** skip:") for ln in lines)
    assert any(ln.endswith("(all 1 checks)") for ln in lines)


def test_report_json_and_failed() -> None:
    report = _sample()
    data = json.loads(report.json())
    assert data["python"] == sys.version.split()[0]
    assert [Result(**r) for r in data["results"]] == report.results
    assert report.failed
    calm = Report()
    for r in report.results:
        if r.outcome in ("pass", "skip", "not supported"):
            calm.add(r)
    assert not calm.failed
    calm.add(Result("sqlite", "fake", "poolkit", "embedded", "t", "unexpected pass"))
    assert calm.failed


def test_report_table_shows_the_matrix() -> None:
    table = _sample().table()
    for text in ("poolkit conformance", "test_a[asyncio]", "XPASS", "FAIL", "n/s", "psycopg2"):
        assert text in table


@pytest.mark.parametrize(
    ("given", "md", "js"),
    [
        ("out/rep", "out/rep.md", "out/rep.json"),
        ("out/rep.md", "out/rep.md", "out/rep.json"),
        ("out/conformance-py3.11", "out/conformance-py3.11.md", "out/conformance-py3.11.json"),
    ],
    ids=["plain", "md-suffix", "dotted"],
)
def test_report_write(tmp_path: Path, given: str, md: str, js: str) -> None:
    """PATH.md and PATH.json; ``.md`` is added when missing (not swapped for another suffix)."""
    report = _sample()
    paths = report.write(str(tmp_path / given))
    assert paths == [tmp_path / md, tmp_path / js]
    assert (tmp_path / md).read_text().startswith("# poolkit conformance report")
    assert json.loads((tmp_path / js).read_text())["results"][0]["check"] == "test_a[asyncio]"


# ----- targets: DSNs ------------------------------------------------------------------------


def _odbc_driver_installed(name: str) -> bool:
    pyodbc = need("pyodbc")
    return name in pyodbc.drivers()


PG_DSNS = pytest.mark.parametrize(
    "dsn",
    [
        f"host=db.example port=5433 dbname=app user=alice password={SECRET}",
        f"postgresql://alice:{SECRET}@db.example:5433/app",
    ],
    ids=["libpq", "url"],
)


@PG_DSNS
def test_postgres_dsn_for_psycopg2(tmp_path: Path, dsn: str) -> None:
    target = build_target("postgres", "psycopg2", dsn, "dsn", str(tmp_path))
    assert (target.args, target.kwargs) == ((dsn,), {})
    assert (target.paramstyle, target.source, target.secrets) == ("pyformat", "dsn", (SECRET,))
    assert target.q(0) == "%s"
    assert SECRET not in repr(target)
    assert SECRET not in target.redact(f"could not connect with {dsn}")


@PG_DSNS
def test_postgres_dsn_for_pyodbc(tmp_path: Path, dsn: str) -> None:
    if not _odbc_driver_installed("PostgreSQL Unicode"):
        pytest.skip("the PostgreSQL ODBC driver is not installed")
    target = build_target("postgres", "pyodbc", dsn, "dsn", str(tmp_path))
    assert target.args == (
        f"DRIVER={{PostgreSQL Unicode}};SERVER=db.example;PORT=5433;DATABASE=app;UID=alice;"
        f"PWD={SECRET}",
    )
    assert (target.paramstyle, target.secrets) == ("qmark", (SECRET,))
    assert SECRET not in target.redact(str(target.args))


def test_postgres_url_defaults_for_pyodbc(tmp_path: Path) -> None:
    if not _odbc_driver_installed("PostgreSQL Unicode"):
        pytest.skip("the PostgreSQL ODBC driver is not installed")
    target = build_target("postgres", "pyodbc", "postgresql://bob@db/app", "dsn", str(tmp_path))
    assert target.args == (
        "DRIVER={PostgreSQL Unicode};SERVER=db;PORT=5432;DATABASE=app;UID=bob;PWD=",
    )
    assert target.secrets == ()


@pytest.mark.parametrize(
    ("backend", "dsn", "odbc"),
    [
        ("postgres", "postgresql://alice:pa%3Bss%7D@db/app", "PostgreSQL Unicode"),
        ("mysql", "mysql://root:pa%3Bss%7D@db/app", "MariaDB Unicode"),
    ],
    ids=["postgres", "mysql"],
)
def test_odbc_connection_string_quotes_a_password_with_separators(
    tmp_path: Path, backend: str, dsn: str, odbc: str
) -> None:
    """``;`` ends an ODBC attribute: such a value must be braced (``}`` doubled)."""
    if not _odbc_driver_installed(odbc):
        pytest.skip(f"the {odbc} ODBC driver is not installed")
    target = build_target(backend, "pyodbc", dsn, "dsn", str(tmp_path))
    (conn_str,) = target.args
    assert "PWD={pa;ss}}}" in conn_str, conn_str
    assert "pa;ss" not in target.redact(conn_str)


def test_postgres_unreadable_dsn(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="cannot read the PostgreSQL DSN") as info:
        build_target("postgres", "psycopg2", f"nonsense {SECRET}", "dsn", str(tmp_path))
    assert SECRET not in str(info.value)


def test_mysql_url_for_pymysql(tmp_path: Path) -> None:
    target = build_target("mysql", "pymysql", "mysql://root:p%40ss@db/app", "dsn", str(tmp_path))
    assert target.args == ()
    assert target.kwargs == {
        "host": "db",
        "port": 3306,
        "user": "root",
        "password": "p@ss",
        "database": "app",
        "connect_timeout": 5,
    }
    assert (target.paramstyle, target.secrets) == ("pyformat", ("p@ss",))
    assert "p@ss" not in repr(target)


def test_mysql_url_for_pyodbc(tmp_path: Path) -> None:
    if not _odbc_driver_installed("MariaDB Unicode"):
        pytest.skip("the MariaDB ODBC driver is not installed")
    target = build_target(
        "mysql", "pyodbc", f"mysql://u:{SECRET}@db:3307/app", "dsn", str(tmp_path)
    )
    assert target.args == (
        f"DRIVER={{MariaDB Unicode}};SERVER=db;PORT=3307;UID=u;PWD={SECRET};DATABASE=app",
    )
    assert target.paramstyle == "qmark"


def test_mysql_dsn_must_be_a_url(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match=r"MySQL DSN must look like mysql://") as info:
        build_target("mysql", "pymysql", f"host=db password={SECRET}", "dsn", str(tmp_path))
    assert SECRET not in str(info.value)


def test_mssql_url_without_a_sql_server_odbc_driver_names_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pyodbc = need("pyodbc")
    installed = [d for d in pyodbc.drivers() if "SQL Server" not in d]
    monkeypatch.setattr(pyodbc, "drivers", lambda: installed)
    with pytest.raises(TargetError) as info:
        build_target("mssql", "pyodbc", f"mssql://sa:{SECRET}@db/master", "dsn", str(tmp_path))
    message = str(info.value)
    assert "no ODBC driver for SQL Server is installed" in message
    assert SECRET not in message
    # what to install for SQL Server: Microsoft's driver package (or FreeTDS)
    assert any(pkg in message for pkg in ("msodbcsql", "tdsodbc", "for SQL Server from")), message


def test_mssql_url_with_a_sql_server_odbc_driver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pyodbc = need("pyodbc")
    monkeypatch.setattr(pyodbc, "drivers", lambda: ["ODBC Driver 18 for SQL Server"])
    target = build_target("mssql", "pyodbc", f"mssql://sa:{SECRET}@db/app", "dsn", str(tmp_path))
    assert target.args == (
        f"DRIVER={{ODBC Driver 18 for SQL Server}};SERVER=db,1433;UID=sa;PWD={SECRET};"
        "TrustServerCertificate=yes;DATABASE=app",
    )
    assert target.secrets == (SECRET,)


@pytest.mark.parametrize(
    ("backend", "driver", "dsn", "message"),
    [
        ("postgres", "psycopg2", None, "postgres needs a DSN"),
        ("postgres", "pymysql", "postgresql://u@h/db", "postgres is reached by psycopg2"),
        ("mysql", "psycopg2", "mysql://u@h/db", "mysql is reached by pymysql, pyodbc"),
        ("mssql", "pymysql", "mssql://u@h/db", "mssql is reached by pyodbc"),
        ("sqlite", "psycopg2", None, "sqlite is reached by sqlite3 or fake"),
    ],
)
def test_build_target_refuses_what_it_cannot_build(
    tmp_path: Path, backend: str, driver: str, dsn: str | None, message: str
) -> None:
    with pytest.raises(TargetError, match=message):
        build_target(backend, driver, dsn, "dsn", str(tmp_path))


def test_sqlite_targets(tmp_path: Path) -> None:
    plain = build_target("sqlite", "sqlite3", None, "embedded", str(tmp_path))
    assert isinstance(plain, Target) and plain.module.__name__ == "sqlite3"
    assert Path(plain.args[0]).parent == tmp_path
    fake = build_target("sqlite", "fake", None, "embedded", str(tmp_path))
    assert type(fake.module).__name__ == "FakeDriver"
    assert (plain.source, fake.source, fake.paramstyle) == ("embedded", "embedded", "qmark")
    fake.module.close()


@pytest.mark.parametrize("name", ["out", "out.md", "out.json"])
def test_report_write_takes_any_of_the_two_suffixes(tmp_path: Path, name: str) -> None:
    """``--pool-report out.json`` writes out.md and out.json, not out.json.md."""
    paths = _sample().write(str(tmp_path / name))
    assert sorted(p.name for p in paths) == ["out.json", "out.md"]
    assert all(p.exists() for p in paths)
