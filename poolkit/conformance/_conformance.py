"""``--pool-conformance``: options, the case matrix, per-check reporting.

Options (each with an environment twin):

- ``--pool-conformance`` (``POOLKIT_CONFORMANCE=1``): run the suite. Without paths on the
  command line the suite runs; with paths those run, and they may import the checks.
- ``--pool-backend LIST`` (``POOLKIT_BACKENDS``): sqlite, postgres, postgres-pgbouncer, mysql,
  mssql (default: all; the unreachable ones are skipped with the reason).
- ``--pool-dsn NAME=DSN`` (``POOLKIT_POSTGRES_DSN``, ``POOLKIT_POSTGRES_PGBOUNCER_DSN``,
  ``POOLKIT_MYSQL_DSN``, ``POOLKIT_MSSQL_DSN``), repeatable. Without a DSN for
  postgres-pgbouncer, a PgBouncer is started in front of postgres when ``pgbouncer`` is
  installed.
- ``--pool-driver LIST`` (``POOLKIT_DRIVERS``): only these drivers.
- ``--pool-under-test module:factory[,...]`` (``POOLKIT_POOL_UNDER_TEST``): the adapters to run
  (default: poolkit and psycopg_pool).
- ``--pool-require LIST`` (``POOLKIT_REQUIRE``): a listed backend that cannot be reached, or a
  case of it that cannot run, fails instead of skipping.
- ``--pool-report PATH`` (``POOLKIT_REPORT``): where the check x case matrix is written, as
  Markdown and JSON (default ``poolkit-report``: ``poolkit-report.md`` and ``.json`` in the
  current directory; an empty PATH writes none).
- ``--pool-matrix`` (``POOLKIT_MATRIX=1``): print the matrix on the terminal too (it is
  printed anyway when a check failed).
- ``--pool-no-containers`` (``POOLKIT_NO_CONTAINERS=1``): never start containers, even when
  Docker answers.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ._defaults import env_dsn
from ._report import NotRun, Report, Result
from ._targets import BACKENDS, DRIVERS, Target, TargetError, build_target

__all__ = ["Case", "Conformance", "configure", "resolve_case", "resolve_target"]

SUITE = Path(__file__).parent / "suite"
STATE = pytest.StashKey["Conformance"]()


def _env_list(name: str) -> list[str]:
    return [v.strip() for v in os.environ.get(name, "").split(",") if v.strip()]


def _split(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for value in values or []:
        out += [v.strip() for v in value.split(",") if v.strip()]
    return out


@dataclass(frozen=True)
class Case:
    """One backend reached by one driver, driven by one pool adapter."""

    backend: str
    driver: str
    adapter: Any

    @property
    def id(self) -> str:
        return f"{self.backend}-{self.driver}-{self.adapter.name}"


def load_adapter(spec: str) -> Any:
    """An adapter from ``module:factory`` (a class or a function returning the adapter)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise pytest.UsageError(f"--pool-under-test wants module:factory, got {spec!r}")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise pytest.UsageError(f"--pool-under-test {spec}: {exc}") from None
    if not callable(factory):
        raise pytest.UsageError(f"--pool-under-test {spec}: {attr} is not callable")
    try:
        adapter = factory()
    except Exception as exc:
        raise pytest.UsageError(
            f"--pool-under-test {spec}: the factory raised {type(exc).__name__}: {exc}"
        ) from None
    for name in ("name", "capabilities", "supports", "pool"):
        if not hasattr(adapter, name):
            raise pytest.UsageError(
                f"--pool-under-test {spec}: the adapter has no {name!r} "
                "(see poolkit.conformance.adapters.PoolAdapter)"
            )
    return adapter


@dataclass
class Conformance:
    """The run's configuration, resolved backends and collected results."""

    backends: list[str]
    drivers: list[str]
    adapters: list[Any]
    required: set[str]
    report_path: str | None
    resolver: Any
    show_matrix: bool = False
    report: Report = field(default_factory=Report)
    tmp: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="poolkit-conformance-"))
    _targets: dict[tuple[str, str], Target | str] = field(default_factory=dict)
    _not_run: dict[tuple[str, str], NotRun] = field(default_factory=dict)

    def cases(self) -> list[Case]:
        out = []
        for backend in self.backends:
            for driver in DRIVERS[backend]:
                if self.drivers and driver not in self.drivers:
                    continue
                for adapter in self.adapters:
                    if adapter.supports(backend, driver) is None:
                        out.append(Case(backend, driver, adapter))
        return out

    def runnable(self, case: Case) -> bool:
        """Whether the case's target can be had, or its backend is required (and then fails).

        Cases that cannot run are left out of the run (not skipped one check at a time) and
        listed once, with what would enable them, under the summary and in the report.
        """
        target = self.target(case.backend, case.driver)
        if isinstance(target, Target) or case.backend in self.required:
            return True
        key = (case.backend, case.driver)
        if key not in self._not_run:
            pools = tuple(c.adapter.name for c in self.cases() if (c.backend, c.driver) == key)
            self._not_run[key] = NotRun(case.backend, case.driver, pools, target)
            self.report.add_not_run(self._not_run[key])
        return False

    def target(self, backend: str, driver: str) -> Target | str:
        """The target, or why it cannot be had (built once per run)."""
        key = (backend, driver)
        if key not in self._targets:
            resolved = self.resolver.resolve(backend)
            if not resolved.available:
                self._targets[key] = resolved.why
            else:
                try:
                    target = build_target(backend, driver, resolved.dsn, resolved.source, self.tmp)
                    target.connect().close()  # reachable? (once, not a timeout per check)
                    self._targets[key] = target
                except TargetError as exc:
                    self._targets[key] = f"{backend} via {driver}: {exc}"
                except Exception as exc:
                    why = f"{type(exc).__name__}: {exc}".strip()
                    hint = ""
                    if resolved.source == "default":
                        hint = (
                            f"; that is the default address: set {env_dsn(backend)} or pass "
                            f"--pool-dsn {backend}=DSN"
                        )
                    self._targets[key] = f"{backend} via {driver} is unreachable ({why}){hint}"
        return self._targets[key]


def configure(config: pytest.Config) -> None:
    """Set up a ``--pool-conformance`` run (the plugin calls this only then)."""
    from ._resolve import Resolver
    from .adapters import DEFAULT_ADAPTERS

    backends = _split(config.getoption("pool_backend")) or _env_list("POOLKIT_BACKENDS")
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        raise pytest.UsageError(
            f"--pool-backend: unknown {sorted(unknown)}; known: {', '.join(BACKENDS)}"
        )
    drivers = _split(config.getoption("pool_driver")) or _env_list("POOLKIT_DRIVERS")
    known_drivers = {d for ds in DRIVERS.values() for d in ds}
    if set(drivers) - known_drivers:
        raise pytest.UsageError(
            f"--pool-driver: unknown {sorted(set(drivers) - known_drivers)}; "
            f"known: {', '.join(sorted(known_drivers))}"
        )
    required = set(
        _split(config.getoption("pool_require"))
        or _env_list("POOLKIT_REQUIRE")
        or _env_list("POOLKIT_REQUIRE_BACKENDS")  # the name the test suite uses
    )
    if required - set(BACKENDS):
        raise pytest.UsageError(f"--pool-require: unknown {sorted(required - set(BACKENDS))}")
    selected = backends or list(BACKENDS)
    for name in sorted(required):
        if name not in selected:
            raise pytest.UsageError(
                f"--pool-require {name}, but --pool-backend leaves it out: it would never run"
            )
        if drivers and not set(drivers) & set(DRIVERS[name]):
            raise pytest.UsageError(
                f"--pool-require {name}, but --pool-driver names none of its drivers "
                f"({', '.join(DRIVERS[name])}): it would never run"
            )
    dsns: dict[str, str] = {}
    for item in config.getoption("pool_dsn") or []:
        name, sep, dsn = item.partition("=")
        if not sep or name not in BACKENDS:
            raise pytest.UsageError(
                f"--pool-dsn wants NAME=DSN with NAME one of {', '.join(BACKENDS)}"
            )
        dsns[name] = dsn
    specs = _split(config.getoption("pool_under_test")) or _env_list("POOLKIT_POOL_UNDER_TEST")
    adapters = [load_adapter(s) for s in specs] if specs else list(DEFAULT_ADAPTERS)
    report_path = config.getoption("pool_report") or None
    if report_path:
        _check_writable(report_path)
    reporter = config.pluginmanager.get_plugin("terminalreporter")

    def say(text: str) -> None:
        if reporter is not None:
            reporter.write_line(text)
        else:
            print(text)

    state = Conformance(
        backends=backends or list(BACKENDS),
        drivers=drivers,
        adapters=adapters,
        required=required,
        report_path=report_path,
        show_matrix=bool(config.getoption("pool_matrix")),
        resolver=Resolver(
            dsns=dsns, say=say, use_containers=not config.getoption("pool_no_containers")
        ),
    )
    if not state.cases():
        raise pytest.UsageError(
            "no case to run: the drivers "
            f"{', '.join(drivers)} reach none of the backends {', '.join(state.backends)}, "
            "or no adapter supports them"
        )
    config.stash[STATE] = state
    config.pluginmanager.register(_ConformancePlugin(state), "poolkit-conformance")
    # Without paths on the command line, the suite is what runs; with paths, they run (and
    # may import the checks: ``from poolkit.conformance.suite.test_pep249 import *``).
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        config.args[:] = [str(SUITE)]


def _quiet_skips(config: pytest.Config) -> None:
    """No SKIPPED/XFAIL line per check in the short summary (``-ra`` in a project's addopts):
    the suite's own summary says which cases ran, which checks are not supported and why
    cases were skipped. An ``-r`` given on the command line is kept as given."""
    given = config.invocation_params.args
    if any(str(a).startswith(("-r", "--report-chars")) for a in given):
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:  # it holds -r's letters expanded (a, A and the aliases)
        reporter.reportchars = "".join(c for c in reporter.reportchars if c not in "sx")


def _check_writable(path: str) -> None:
    """Fail at once (not after the whole run) when the report cannot be written."""
    parent = Path(path).expanduser().resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=parent, prefix=".poolkit-", delete=True)
        probe.close()
    except OSError as exc:
        raise pytest.UsageError(f"--pool-report {path}: cannot write there ({exc})") from None


class _ConformancePlugin:
    def __init__(self, state: Conformance) -> None:
        self.state = state

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "pool_case" in metafunc.fixturenames:
            cases = self.state.cases()
            metafunc.parametrize("pool_case", cases, ids=[c.id for c in cases], indirect=True)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        rep = yield
        case = getattr(item, "callspec", None)
        params = case.params if case is not None else {}
        pool_case = params.get("pool_case")
        if not isinstance(pool_case, Case):
            return rep
        outcome, why = _outcome(rep)
        if outcome is None:
            return rep
        target = self.state._targets.get((pool_case.backend, pool_case.driver))
        source = target.source if isinstance(target, Target) else "unavailable"
        check = getattr(item, "originalname", item.name)
        loop = _loop_of(item)
        if loop:
            check = f"{check}[{loop}]"
        self.state.report.add(
            Result(
                pool_case.backend,
                pool_case.driver,
                pool_case.adapter.name,
                source,
                check,
                outcome,
                why,
            )
        )
        return rep

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        _quiet_skips(session.config)  # the terminal reporter has read its options by now

    @pytest.hookimpl(trylast=True)  # after -k/-m: only selected cases reach a server
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[Any]) -> None:
        """Leave out the cases whose backend or driver cannot be had here (listed in the
        summary with what would enable them), unless their backend is required."""
        keep = []
        for item in items:
            spec = getattr(item, "callspec", None)
            case = spec.params.get("pool_case") if spec is not None else None
            if not isinstance(case, Case) or self.state.runnable(case):
                keep.append(item)
        items[:] = keep

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        report = self.state.report
        width = min(100, int(terminalreporter._tw.fullwidth or 100))
        if report.failed or self.state.show_matrix:
            terminalreporter.write_sep("=", "poolkit conformance matrix")
            terminalreporter.write(report.table(width))
        if report.failed:
            terminalreporter.write_sep("=", "poolkit conformance failures")
            terminalreporter.write(report.failures(width))
        terminalreporter.write_sep("=", "poolkit conformance")
        if not report.results:
            terminalreporter.write_line("poolkit conformance: no case ran")
        terminalreporter.write(report.summary(width))
        if self.state.report_path and (report.results or report.not_run):
            paths = report.write(self.state.report_path)
            where = ", ".join(str(p) for p in paths)
            more = "" if report.failed or self.state.show_matrix else " (--pool-matrix prints it)"
            terminalreporter.write_line(f"poolkit conformance report: {where}")
            terminalreporter.write_line(f"  the full check x case matrix is there{more}")

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.state.resolver.close()
        for target in self.state._targets.values():
            close = getattr(getattr(target, "module", None), "close", None)
            if isinstance(target, Target) and target.driver == "fake" and callable(close):
                close()  # the fake driver's database
        shutil.rmtree(self.state.tmp, ignore_errors=True)


def lacks(adapter: Any, backend: str, driver: str) -> frozenset[str]:
    """The capabilities ``adapter`` declares but lacks on this backend and driver: an adapter
    may define ``lacks(backend, driver)`` (optional) for what only some drivers allow."""
    method = getattr(adapter, "lacks", None)
    return frozenset(method(backend, driver)) if callable(method) else frozenset()


def _loop_of(item: pytest.Item) -> str | None:
    """The anyio backend a check ran on (its fixture parameter), if any."""
    spec = getattr(item, "callspec", None)
    if spec is None:
        return None
    loop = spec.params.get("anyio_backend")
    if loop is None:
        first = str(spec.id).split("-")[0]
        loop = first if first in ("asyncio", "trio") else None
    return str(loop) if loop else None


def _outcome(rep: pytest.TestReport) -> tuple[Any, str]:
    """The matrix outcome of a report phase, or (None, "") when the phase says nothing new."""
    xfail = getattr(rep, "wasxfail", None)
    if rep.when == "call":
        if rep.passed and xfail is None:
            return "pass", ""
        if rep.skipped and xfail is not None:
            return "not supported", str(xfail).removeprefix("not supported: ")
        text = str(rep.longrepr)
        if rep.failed and text.startswith("[XPASS(strict)]"):
            declared = text.removeprefix("[XPASS(strict)]").strip().removeprefix("not supported: ")
            return "unexpected pass", f"declared not supported ({declared}), but it passed"
        if rep.failed:
            return "fail", _short(rep)
    if rep.skipped and rep.when == "setup":
        return "skip", _skip_reason(rep)
    if rep.failed and rep.when == "setup":
        return "fail", _short(rep)
    return None, ""


def _skip_reason(rep: pytest.TestReport) -> str:
    longrepr = rep.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _short(rep: pytest.TestReport) -> str:
    text = getattr(rep, "longreprtext", "") or ""
    lines = [ln for ln in text.splitlines() if ln.startswith("E ")]
    return (lines[0][1:].strip() if lines else text.splitlines()[-1:][0] if text else "")[:300]


# ----- what the suite's fixtures (in the plugin) return -----------------------------------


def resolve_case(request: pytest.FixtureRequest) -> Case:
    """The case under check (``request.param``); skips (or fails, when required) if its
    target is unavailable, and marks the check "not supported" when the adapter lacks what
    it requires."""
    case: Case = request.param
    state: Conformance = request.config.stash[STATE]
    target = state.target(case.backend, case.driver)
    if isinstance(target, str):
        if case.backend in state.required:
            pytest.fail(f"required backend unavailable: {target}", pytrace=False)
        pytest.skip(target)
    marker = request.node.get_closest_marker("requires")
    needs = set(marker.args) if marker is not None else set()
    if _loop_of(request.node) == "trio":
        needs.add("trio")
    have = set(case.adapter.capabilities) - lacks(case.adapter, case.backend, case.driver)
    missing = sorted(needs - have)
    if missing:
        request.applymarker(
            pytest.mark.xfail(strict=True, reason=f"not supported: {', '.join(missing)}")
        )
    return case


def resolve_target(case: Case, request: pytest.FixtureRequest) -> Target:
    """The case's database and driver."""
    state: Conformance = request.config.stash[STATE]
    resolved = state.target(case.backend, case.driver)
    assert isinstance(resolved, Target)
    return resolved
