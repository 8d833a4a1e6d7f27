"""The pytest plugin: ``fake_driver`` fixtures (always on) and ``--pool-conformance``.

``fake_driver`` is a fresh :class:`poolkit.fakes.FakeDriver` per test, dropped and its
database removed afterwards. Configure it with the marker, whose arguments are
``FakeDriver``'s, plus ``assert_fired=True`` to fail the test when a rule never fired::

    @pytest.mark.fake_driver(Plan(Drop(nth=1)), paramstyle="format", assert_fired=True)
    def test_retry(fake_driver): ...

``fake_driver_factory`` makes as many drivers as a test wants (same arguments), all cleaned
up at the end.

``pytest --pool-conformance`` runs the conformance suite (:mod:`poolkit.conformance.suite`)
over every backend x driver x pool case it can reach and prints the matrix at the end; see
:mod:`poolkit.conformance._conformance` for the options.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

try:
    import pytest
except ImportError:  # say what to install, not a bare ModuleNotFoundError
    from poolkit._optional import require

    require("pytest", "poolkit.conformance.plugin is a pytest plugin")
    raise

from ._options import MARKERS, add_options

if TYPE_CHECKING:
    from poolkit.fakes import FakeDriver

    from ._conformance import Case
    from ._targets import Target

__all__ = ["adapter", "fake_driver", "fake_driver_factory", "pool_case", "target"]

# Loaded in every pytest run of every project that has poolkit installed: this module imports
# only pytest and the options module until --pool-conformance (tests/conformance proves it).


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    if config.getoption("pool_conformance"):
        from ._conformance import configure

        configure(config)


class _Factory:
    def __init__(self) -> None:
        self.made: list[tuple[FakeDriver, bool]] = []

    def __call__(self, *args: Any, assert_fired: bool = False, **kwargs: Any) -> FakeDriver:
        from poolkit.fakes import FakeDriver

        driver = FakeDriver(*args, **kwargs)
        self.made.append((driver, assert_fired))
        return driver

    def finish(self) -> None:
        problems = []
        for driver, assert_fired in self.made:
            driver.close()
            if assert_fired:
                try:
                    driver.report().assert_all_fired()
                except AssertionError as exc:
                    problems.append(f"{driver!r}: {exc}")
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def fake_driver_factory() -> Iterator[Callable[..., FakeDriver]]:
    """Make fake drivers (``FakeDriver``'s arguments, plus ``assert_fired``); all closed after."""
    factory = _Factory()
    yield factory
    factory.finish()


@pytest.fixture
def fake_driver(
    request: pytest.FixtureRequest, fake_driver_factory: Callable[..., FakeDriver]
) -> FakeDriver:
    """A fresh fake driver, configured by the ``fake_driver`` marker when there is one."""
    marker = request.node.get_closest_marker("fake_driver")
    args: tuple[Any, ...] = marker.args if marker is not None else ()
    kwargs: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    return fake_driver_factory(*args, **kwargs)


# ----- the conformance suite's fixtures (their work is in _conformance, loaded on use) ------


@pytest.fixture
def pool_case(request: pytest.FixtureRequest) -> Case:
    """The case under check; skips (or fails, when required) if its target is unavailable."""
    if not hasattr(request, "param"):
        pytest.skip("conformance checks run with --pool-conformance")
    from ._conformance import resolve_case

    return resolve_case(request)


@pytest.fixture
def target(pool_case: Case, request: pytest.FixtureRequest) -> Target:
    """The case's database and driver."""
    from ._conformance import resolve_target

    return resolve_target(pool_case, request)


@pytest.fixture
def adapter(pool_case: Case) -> Any:
    """The case's pool adapter."""
    return pool_case.adapter
