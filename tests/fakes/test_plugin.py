"""The pytest plugin's ``fake_driver`` fixtures, run in an inner pytest with ``pytester``.

The plugin comes from the ``pytest11`` entry point (the package is installed), so the inner
runs load it the way a user's test suite does.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

ARGS = ("-p", "no:cacheprovider", "--strict-markers")


def test_fake_driver_works_without_options(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from poolkit.fakes import FakeDriver, Plan

        def test_first(fake_driver):
            assert isinstance(fake_driver, FakeDriver)
            assert fake_driver.paramstyle == "qmark"
            assert fake_driver.plan == Plan()
            conn = fake_driver.connect()
            conn.cursor().execute("CREATE TABLE t (x INTEGER)")
            conn.commit()

        def test_second_gets_a_fresh_database(fake_driver):
            cur = fake_driver.connect().cursor()
            cur.execute("SELECT count(*) FROM sqlite_master WHERE name = 't'")
            assert cur.fetchall() == [(0,)]
        """
    )
    pytester.runpytest(*ARGS).assert_outcomes(passed=2)


def test_fake_driver_is_closed_after_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        kept = []

        def test_use(fake_driver):
            kept.append(fake_driver.connect())

        def test_closed_afterwards():
            assert kept and kept[0].closed
        """
    )
    pytester.runpytest(*ARGS).assert_outcomes(passed=2)


def test_marker_passes_plan_and_paramstyle(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from poolkit.fakes import OperationalError, Plan, Raise

        @pytest.mark.fake_driver(Plan(Raise(nth=1)), paramstyle="format")
        def test_configured(fake_driver):
            assert fake_driver.paramstyle == "format"
            assert fake_driver.plan == Plan(Raise(nth=1))
            cur = fake_driver.connect().cursor()
            with pytest.raises(OperationalError):
                cur.execute("SELECT %s", (1,))
            assert cur.execute("SELECT %s", (2,)).fetchall() == [(2,)]

        @pytest.mark.fake_driver(backing="script")
        def test_keyword_only(fake_driver):
            assert fake_driver.script is not None
        """
    )
    pytester.runpytest(*ARGS).assert_outcomes(passed=2)


def test_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("-p", "no:cacheprovider", "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.fake_driver(*"])


@pytest.mark.parametrize(
    ("body", "errors"),
    [("pass", 1), ("fake_driver.connect().cursor().execute('SELECT 1')", 0)],
    ids=["unfired", "fired"],
)
def test_assert_fired(pytester: pytest.Pytester, body: str, errors: int) -> None:
    """A rule that never fired fails the test (in teardown); one that fired does not."""
    pytester.makepyfile(
        f"""
        import pytest
        from poolkit.fakes import Latency, Plan

        @pytest.mark.fake_driver(Plan(Latency(0.01, op="execute")), assert_fired=True)
        def test_it(fake_driver):
            {body}
        """
    )
    result = pytester.runpytest(*ARGS)
    result.assert_outcomes(passed=1, errors=errors)
    if errors:
        result.stdout.fnmatch_lines(["*rules that never fired*", "*Latency(0.01, op='execute')*"])


def test_assert_fired_off_by_default(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from poolkit.fakes import Drop, Plan

        @pytest.mark.fake_driver(Plan(Drop(nth=1)))
        def test_it(fake_driver):
            pass
        """
    )
    pytester.runpytest(*ARGS).assert_outcomes(passed=1)


def test_factory_makes_several_independent_drivers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from poolkit.fakes import Plan, Raise

        made = []

        def test_make(fake_driver_factory):
            a = fake_driver_factory()
            b = fake_driver_factory(Plan(Raise(op="commit")), paramstyle="named")
            assert a is not b and b.paramstyle == "named"
            ca, cb = a.connect(), b.connect()
            ca.cursor().execute("CREATE TABLE only_in_a (x INTEGER)")
            ca.commit()
            cur = cb.cursor()
            cur.execute("SELECT count(*) FROM sqlite_master WHERE name = :n", {"n": "only_in_a"})
            assert cur.fetchall() == [(0,)]
            made.extend([ca, cb])

        def test_all_closed_afterwards():
            assert len(made) == 2 and all(c.closed for c in made)
        """
    )
    pytester.runpytest(*ARGS).assert_outcomes(passed=2)


def test_factory_assert_fired_names_the_driver_and_rule(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from poolkit.fakes import Plan, Raise

        def test_it(fake_driver_factory):
            fake_driver_factory(Plan(Raise(op="commit")), assert_fired=True, name="orders")
            fake_driver_factory(Plan(Raise(op="rollback")))
        """
    )
    result = pytester.runpytest(*ARGS)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*<FakeDriver orders*", "*Raise(op='commit')*"])
    result.stdout.no_fnmatch_line("*Raise(op='rollback')*never fired*")
