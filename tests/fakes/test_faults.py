"""Faults through FakeDriver: which calls a plan hits, what each fault does, and the record.

Everything runs on a :class:`VirtualClock` unless a test is about real time, so latency and
hang timeouts never really sleep; threads are joined with generous bounds that only turn a
hang into a failure.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import pytest

from poolkit.fakes import (
    Drop,
    FakeConnection,
    FakeCursor,
    FakeDriver,
    Hang,
    IntegrityError,
    Latency,
    OperationalError,
    Plan,
    PlanError,
    ProgrammingError,
    Raise,
    RealClock,
    Refuse,
    Rule,
    VirtualClock,
)

HANG = 10.0  # bound on any join: only turns a hang into a failure
MakeDriver = Callable[..., FakeDriver]


class AppError(Exception):
    """An application's own exception class."""


@pytest.fixture
def make(fake_driver_factory: MakeDriver) -> MakeDriver:
    """``make(*rules, seed=0, **FakeDriver kwargs)``: a driver on a VirtualClock, closed after."""

    def make(*rules: Rule, seed: int = 0, **kwargs: Any) -> FakeDriver:
        kwargs.setdefault("clock", VirtualClock())
        return fake_driver_factory(Plan(*rules, seed=seed), **kwargs)

    return make


class Background:
    """Run ``fn`` on a thread; :meth:`result` joins it and returns or re-raises."""

    def __init__(self, fn: Callable[[], Any], name: str = "background") -> None:
        self._outcome: list[tuple[bool, Any]] = []
        self.thread = threading.Thread(target=self._run, args=(fn,), name=name, daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self._outcome.append((True, fn()))
        except BaseException as exc:
            self._outcome.append((False, exc))

    def result(self, timeout: float = HANG) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"{self.thread.name} did not return in {timeout} s"
        ok, value = self._outcome[0]
        if not ok:
            raise value
        return value


def pattern(cur: FakeCursor, n: int, sql: str = "SELECT 1") -> str:
    """Run ``sql`` n times: ``.`` for success, ``x`` for an OperationalError."""
    out = ""
    for _ in range(n):
        try:
            cur.execute(sql)
        except OperationalError:
            out += "x"
        else:
            out += "."
    return out


def count(driver: FakeDriver, table: str) -> int:
    """Rows in ``table`` as a fresh connection sees them."""
    conn = driver.connect()
    try:
        (n,) = conn.cursor().execute(f"SELECT count(*) FROM {table}").fetchall()[0]
        return int(n)
    finally:
        conn.close()


def with_table(driver: FakeDriver) -> None:
    conn = driver.connect()
    conn.cursor().execute("CREATE TABLE t (x INTEGER)")
    conn.commit()
    conn.close()


# ----- which calls are hit ------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (Raise(), "xxxxxx"),
        (Raise(nth=2), ".x...."),
        (Raise(after=2), "..xxxx"),
        (Raise(times=2), "xx...."),
        (Raise(after=1, times=2), ".xx..."),
        (Raise(nth=4, after=1), "...x.."),
        (Raise(nth=2, after=3), "......"),
        (Raise(probability=0.0), "......"),
        (Raise(probability=1.0, times=3), "xxx..."),
        (Raise(op="commit"), "......"),
        (Raise(sql="^select 1$"), "xxxxxx"),
        (Raise(sql="select 2"), "......"),
    ],
    ids=repr,
)
def test_counters_and_filters(make: MakeDriver, rule: Rule, expected: str) -> None:
    driver = make(rule)
    assert pattern(driver.connect().cursor(), 6) == expected


def test_sql_filter_is_a_case_insensitive_search(make: MakeDriver) -> None:
    driver = make(Raise(sql="select 2"))
    cur = driver.connect().cursor()
    assert "".join(pattern(cur, 1, sql) for sql in ["SELECT 1", "SELECT 2", "select 2 + 1"]) == (
        ".xx"
    )


def test_connection_filter_counts_connect_attempts(make: MakeDriver) -> None:
    """Connection ids number connect attempts, refused ones included."""
    driver = make(Refuse(times=1), Raise(connection=2))
    with pytest.raises(OperationalError):
        driver.connect()
    second, third = driver.connect(), driver.connect()
    assert (second.id, third.id) == (2, 3)
    assert pattern(second.cursor(), 2) == "xx"
    assert pattern(third.cursor(), 2) == ".."


@pytest.mark.parametrize(
    ("rule", "first", "second"),
    [
        (Raise(nth=2), "..", "x."),
        (Raise(nth=2, scope="connection"), ".x", ".x"),
        (Raise(times=1), "x.", ".."),
        (Raise(times=1, scope="connection"), "x.", "x."),
        (Raise(after=3), "..", ".x"),
        (Raise(after=1, scope="connection"), ".x", ".x"),
    ],
    ids=repr,
)
def test_scope_driver_counts_across_connections_connection_counts_each(
    make: MakeDriver, rule: Rule, first: str, second: str
) -> None:
    """Two connections take turns: a, b, a, b."""
    driver = make(rule)
    a, b = driver.connect().cursor(), driver.connect().cursor()
    seen = {"a": "", "b": ""}
    for _ in range(2):
        seen["a"] += pattern(a, 1)
        seen["b"] += pattern(b, 1)
    assert seen == {"a": first, "b": second}


def test_first_firing_rule_decides_and_later_rules_still_count(make: MakeDriver) -> None:
    driver = make(Raise("IntegrityError", nth=1), Raise("DataError"))
    cur = driver.connect().cursor()
    with pytest.raises(IntegrityError):
        cur.execute("SELECT 1")
    with pytest.raises(driver.DataError):
        cur.execute("SELECT 1")
    first, second = driver.report().rules
    assert (first.matched, first.fired) == (2, 1)
    assert (second.matched, second.fired) == (2, 1)


# ----- latency --------------------------------------------------------------------------


def test_latencies_add_up_per_call_and_on_the_clock(make: MakeDriver) -> None:
    clock = VirtualClock()
    driver = make(Latency(0.5, op="execute"), Latency(0.25), Latency(1.0, op="commit"), clock=clock)
    conn = driver.connect()
    conn.cursor().execute("SELECT 1")
    conn.commit()
    latency = {call.op: call.latency for call in driver.calls}
    assert latency == {"connect": 0.25, "cursor": 0.25, "execute": 0.75, "commit": 1.25}
    assert clock.slept == pytest.approx(2.5)
    assert clock.now() == pytest.approx(2.5)
    assert all(call.duration >= call.latency for call in driver.calls)


def test_latency_applies_to_a_call_that_another_rule_fails(make: MakeDriver) -> None:
    clock = VirtualClock()
    driver = make(Raise(), Latency(2.0, op="execute"), clock=clock)
    with pytest.raises(OperationalError):
        driver.connect().cursor().execute("SELECT 1")
    (call,) = driver.calls.filter("execute")
    assert call.latency == 2.0 and call.fault is not None and call.fault.startswith("#0 Raise")
    assert clock.slept == 2.0


def test_uniform_jitter_stays_within_its_bounds(make: MakeDriver) -> None:
    driver = make(Latency(1.0, jitter=0.5, op="execute"))
    pattern(driver.connect().cursor(), 30)
    waits = [call.latency for call in driver.calls.filter("execute")]
    assert all(0.5 <= w <= 1.5 for w in waits)
    assert len(set(waits)) > 20


def test_normal_jitter_is_never_negative(make: MakeDriver) -> None:
    driver = make(Latency(0.01, jitter=1.0, distribution="normal", op="execute"))
    pattern(driver.connect().cursor(), 30)
    waits = [call.latency for call in driver.calls.filter("execute")]
    assert min(waits) == 0.0 < max(waits)


def test_callable_latency_draws_from_a_seeded_random(make: MakeDriver) -> None:
    def latencies(seed: int) -> list[float]:
        driver = make(Latency(lambda rng: rng.choice([0.1, 0.2, 0.3]), op="execute"), seed=seed)
        pattern(driver.connect().cursor(), 20)
        return [call.latency for call in driver.calls.filter("execute")]

    assert set(latencies(1)) == {0.1, 0.2, 0.3}
    assert latencies(1) == latencies(1)
    assert latencies(1) != latencies(2)


# ----- seeded probability ----------------------------------------------------------------


def _faults_by_connection(make: MakeDriver, seed: int) -> list[str]:
    driver = make(Raise(probability=0.4), seed=seed)
    cursors = [driver.connect().cursor() for _ in range(3)]
    return [pattern(cur, 30) for cur in cursors]


def test_seeded_probability_is_reproducible(make: MakeDriver) -> None:
    first = _faults_by_connection(make, seed=5)
    assert first == _faults_by_connection(make, seed=5)
    assert first != _faults_by_connection(make, seed=6)
    joined = "".join(first)
    assert 0.2 < joined.count("x") / len(joined) < 0.6
    assert len(set(first)) == 3  # connections do not share one sequence


N_CONNECTIONS = 4
N_CALLS = 40


def _run_interleaved(order: str) -> dict[int, list[tuple[bool, float]]]:
    """N connections do M executes each on N threads; per connection: (faulted, latency)."""
    plan = Plan(
        Raise(probability=0.3), Latency(0.1, jitter=0.1, probability=0.5, op="execute"), seed=11
    )
    driver = FakeDriver(plan, clock=VirtualClock())
    try:
        conns = [driver.connect() for _ in range(N_CONNECTIONS)]  # ids 1..N on this thread
        barrier = threading.Barrier(N_CONNECTIONS)

        def work(conn: FakeConnection, together: bool) -> None:
            cur = conn.cursor()
            if together:
                barrier.wait(HANG)
            for _ in range(N_CALLS):
                pattern(cur, 1)
                if together:
                    time.sleep(0)

        if order == "together":
            jobs = [Background(functools.partial(work, c, True)) for c in conns]
            for job in jobs:
                job.result()
        else:
            for conn in conns if order == "forward" else reversed(conns):
                Background(functools.partial(work, conn, False)).result()
        return {
            conn.id: [
                (call.fault is not None and "Raise" in call.fault, call.latency)
                for call in driver.calls.filter("execute", connection=conn.id)
            ]
            for conn in conns
        }
    finally:
        driver.close()


def test_per_connection_faults_do_not_depend_on_thread_scheduling() -> None:
    forward = _run_interleaved("forward")
    assert _run_interleaved("backward") == forward
    assert _run_interleaved("together") == forward
    assert all(len(calls) == N_CALLS for calls in forward.values())
    faults = [f for calls in forward.values() for f, _ in calls]
    assert any(faults) and not all(faults)
    assert len({tuple(calls) for calls in forward.values()}) == N_CONNECTIONS


@pytest.mark.parametrize(("scope", "total"), [("driver", 1), ("connection", N_CONNECTIONS)])
def test_times_one_fires_once_per_scope_under_threads(
    make: MakeDriver, scope: Literal["driver", "connection"], total: int
) -> None:
    driver = make(Raise(times=1, scope=scope))
    barrier = threading.Barrier(N_CONNECTIONS)
    conns = [driver.connect() for _ in range(N_CONNECTIONS)]

    def work(conn: FakeConnection) -> str:
        cur = conn.cursor()
        barrier.wait(HANG)
        return pattern(cur, N_CALLS)

    jobs = [Background(functools.partial(work, c)) for c in conns]
    results = [job.result() for job in jobs]
    assert "".join(results).count("x") == total
    assert len(driver.calls.faults()) == total
    (rule,) = driver.report().rules
    assert rule.fired == total and rule.exhausted


# ----- report -----------------------------------------------------------------------------


def test_report_counts_matched_fired_exhausted_and_unfired(make: MakeDriver) -> None:
    driver = make(Raise(times=2), Latency(0.1, op="commit"), Raise(sql="^never"))
    conn = driver.connect()
    assert pattern(conn.cursor(), 3) == "xx."
    report = driver.report()
    limited, latency, never = report.rules
    assert (limited.matched, limited.fired, limited.exhausted) == (3, 2, True)
    assert (latency.matched, latency.fired, latency.exhausted) == (0, 0, False)
    assert (never.matched, never.fired) == (0, 0)
    assert report.fired == 2
    assert report.exhausted == [limited]
    assert report.unfired == [latency, never]
    assert report.plan == driver.plan
    text = str(report)
    assert "EXHAUSTED" in text and "never fired" in text and "2 fault(s) injected" in text

    with pytest.raises(AssertionError) as info:
        report.assert_all_fired()
    assert "Latency(0.1, op='commit')" in str(info.value)
    assert "Raise(sql='^never')" in str(info.value)
    assert "Raise(times=2)" not in str(info.value)

    conn.commit()
    assert driver.report().unfired == [driver.report().rules[2]]


def test_assert_all_fired_passes_when_every_rule_fired(make: MakeDriver) -> None:
    driver = make(Raise(nth=1), Latency(0.1, op="commit"))
    conn = driver.connect()
    pattern(conn.cursor(), 1)
    conn.commit()
    driver.report().assert_all_fired()


def test_swapping_the_plan_resets_the_counters(make: MakeDriver) -> None:
    driver = make(Raise(nth=1))
    cur = driver.connect().cursor()
    assert pattern(cur, 2) == "x."
    driver.plan = Plan(Raise(nth=1))
    assert driver.report().rules[0].matched == 0
    assert pattern(cur, 2) == "x."
    driver.plan = Plan()
    assert pattern(cur, 2) == ".."
    with pytest.raises(PlanError):
        driver.plan = Raise()  # type: ignore[assignment]


# ----- Raise ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("IntegrityError", IntegrityError),
        ("Warning", FakeDriver.Warning),
        (sqlite3.IntegrityError, IntegrityError),  # another driver's class: the fake's own
        (sqlite3.OperationalError, OperationalError),
        (IntegrityError, IntegrityError),
        (ValueError, ValueError),
        (AppError, AppError),
    ],
    ids=repr,
)
def test_raise_by_name_or_class(make: MakeDriver, error: Any, expected: type[Exception]) -> None:
    driver = make(Raise(error))
    with pytest.raises(Exception) as info:
        driver.connect().cursor().execute("SELECT 1")
    assert type(info.value) is expected
    assert "injected by fault rule #0" in str(info.value)


def test_raise_message_replaces_the_default(make: MakeDriver) -> None:
    driver = make(Raise("IntegrityError", message="duplicate key value"))
    with pytest.raises(IntegrityError, match=r"^duplicate key value$"):
        driver.connect().cursor().execute("SELECT 1")


@pytest.mark.parametrize("error", [ValueError("boom", 3), IntegrityError("dup", 23505)])
def test_raise_an_instance_raises_a_copy(make: MakeDriver, error: Exception) -> None:
    driver = make(Raise(error, times=2))
    cur = driver.connect().cursor()
    raised = []
    for _ in range(2):
        with pytest.raises(type(error)) as info:
            cur.execute("SELECT 1")
        raised.append(info.value)
    assert all(e.args == error.args and e is not error for e in raised)
    assert raised[0] is not raised[1]


def test_raise_before_the_statement_does_not_run_it(make: MakeDriver) -> None:
    driver = make(Raise(sql="insert"))
    with_table(driver)
    conn = driver.connect()
    with pytest.raises(OperationalError):
        conn.cursor().execute("INSERT INTO t VALUES (1)")
    conn.commit()
    assert count(driver, "t") == 0


def test_raise_after_the_statement_ran_it(make: MakeDriver) -> None:
    driver = make(Raise(sql="insert", phase="after"))
    with_table(driver)
    conn = driver.connect()
    cur = conn.cursor()
    with pytest.raises(OperationalError):
        cur.execute("INSERT INTO t VALUES (1)")
    assert cur.execute("SELECT count(*) FROM t").fetchall() == [(1,)]
    assert count(driver, "t") == 0  # not committed yet
    conn.commit()
    assert count(driver, "t") == 1


@pytest.mark.parametrize(("phase", "committed"), [("before", 0), ("after", 1)])
def test_raise_on_commit(
    make: MakeDriver, phase: Literal["before", "after"], committed: int
) -> None:
    """After: the commit reached the server and only its answer was lost."""
    driver = make()
    with_table(driver)
    driver.plan = Plan(Raise(op="commit", phase=phase))
    conn = driver.connect()
    conn.cursor().execute("INSERT INTO t VALUES (1)")
    with pytest.raises(OperationalError):
        conn.commit()
    assert count(driver, "t") == committed
    assert conn.in_transaction is (phase == "before")


def test_a_commit_that_raised_after_committing_ends_the_transaction_in_the_record(
    make: MakeDriver,
) -> None:
    """The record numbers transactions; a commit that really committed ends one."""
    driver = make(Raise(op="commit", phase="after"))
    conn = driver.connect()
    cur = conn.cursor()
    cur.execute("SELECT 1")
    with pytest.raises(OperationalError):
        conn.commit()
    assert not conn.in_transaction
    cur.execute("SELECT 2")
    first, second = driver.calls.filter("execute")
    assert second.transaction != first.transaction


# ----- Drop -------------------------------------------------------------------------------


def test_drop_fails_the_call_and_every_later_one(make: MakeDriver) -> None:
    driver = make(Drop(nth=2))
    conn = driver.connect()
    cur = conn.cursor()
    cur.execute("SELECT 1")
    with pytest.raises(OperationalError, match="server closed the connection unexpectedly"):
        cur.execute("SELECT 1")
    assert conn.closed
    assert "dropped" in repr(conn)
    later: list[Callable[[], object]] = [
        lambda: cur.execute("SELECT 1"),
        lambda: cur.fetchall(),
        conn.cursor,
        conn.commit,
        conn.rollback,
    ]
    for call in later:
        with pytest.raises(OperationalError):
            call()
    conn.close()
    conn.close()
    assert conn.id not in driver.connections
    assert driver.calls.filter("close")[-1].outcome == "ok"


def test_drop_after_commit_keeps_the_commit(make: MakeDriver) -> None:
    driver = make()
    with_table(driver)
    driver.plan = Plan(Drop(op="commit", phase="after"))
    conn = driver.connect()
    conn.cursor().execute("INSERT INTO t VALUES (1)")
    with pytest.raises(OperationalError):
        conn.commit()
    assert conn.closed
    driver.plan = Plan()
    assert count(driver, "t") == 1


def test_drop_glob_with_connect_does_not_fire_silently_on_connect(make: MakeDriver) -> None:
    """A rule the report says fired must have done something to the call it hit."""
    driver = make(Drop(op="*", nth=1))
    conn = driver.connect()
    fired = driver.report().rules[0].fired
    assert fired == 0 or conn.closed, f"Drop fired on {driver.calls.faults()} and dropped nothing"


@pytest.mark.parametrize("how", ["rule", "driver.drop", "kill_connection"])
def test_dropped_connection_rolls_back_and_frees_its_locks(make: MakeDriver, how: str) -> None:
    """Another connection writes at once (a held lock would fail it after busy_timeout)."""
    driver = make(busy_timeout=0.2)
    with_table(driver)
    victim = driver.connect()
    victim.cursor().execute("INSERT INTO t VALUES (1)")  # holds the write lock
    other = driver.connect()
    if how == "rule":
        driver.plan = Plan(Drop(connection=victim.id))
        with pytest.raises(OperationalError):
            victim.cursor().execute("SELECT 1")
    elif how == "driver.drop":
        assert driver.drop(victim.id) == 1
    else:
        killed = other.cursor().execute(f"SELECT kill_connection({victim.id})").fetchall()
        assert killed == [(1,)]
    assert victim.closed
    other.cursor().execute("INSERT INTO t VALUES (2)")
    other.commit()
    assert other.cursor().execute("SELECT x FROM t").fetchall() == [(2,)]
    with pytest.raises(OperationalError):
        victim.cursor()


def test_driver_drop_counts_and_sql_sees_who_is_alive(make: MakeDriver) -> None:
    driver = make()
    a, b, c = driver.connect(), driver.connect(), driver.connect()
    assert driver.drop(99) == 0
    cur = a.cursor()
    assert cur.execute("SELECT connection_id(), open_connections()").fetchall() == [(1, 3)]
    assert cur.execute(f"SELECT kill_connection({b.id})").fetchall() == [(1,)]
    assert cur.execute(f"SELECT connection_alive({b.id})").fetchall() == [(0,)]
    assert cur.execute(f"SELECT connection_alive({c.id})").fetchall() == [(1,)]
    assert b.closed and not c.closed
    driver.drop()
    assert a.closed and c.closed


def test_peak_connections_counts_what_a_server_would_see(make: MakeDriver) -> None:
    """Closed and dropped connections leave the count; the peak keeps the highest."""
    driver = make()
    a, b = driver.connect(), driver.connect()
    a.close()
    c = driver.connect()
    assert driver.peak_connections == 2
    driver.drop(b.id)
    d, e = driver.connect(), driver.connect()  # c, d, e open now
    assert driver.peak_connections == 3
    for conn in (b, c, d, e):
        conn.close()
    assert driver.peak_connections == 3


# ----- Hang -------------------------------------------------------------------------------


def _hang(driver: FakeDriver, conn: FakeConnection | None = None) -> Background:
    """Start a statement on a thread and wait until it hangs."""
    cur = (conn or driver.connect()).cursor()
    job = Background(lambda: cur.execute("SELECT 42").fetchall(), name="hung")
    assert driver.wait_for_hang(1, timeout=HANG), "the call never hung"
    return job


def test_hang_is_released_by_the_test(make: MakeDriver) -> None:
    driver = make(Hang())
    conn = driver.connect()
    job = _hang(driver, conn)
    assert driver.hanging == 1
    assert driver.running() == [(conn.id, "execute", "SELECT 42")]
    assert driver.release(connection=conn.id + 1) == 0
    assert driver.release() == 1
    assert job.result() == [(42,)]
    assert driver.hanging == 0


def test_hang_ended_by_cancel_from_another_thread(make: MakeDriver) -> None:
    driver = make(Hang(nth=1))
    conn = driver.connect()
    job = _hang(driver, conn)
    conn.cancel()
    with pytest.raises(OperationalError, match="canceling statement due to user request"):
        job.result()
    assert not conn.closed
    assert conn.cursor().execute("SELECT 1").fetchall() == [(1,)]


@pytest.mark.parametrize("how", ["drop", "close"])
def test_hang_ended_by_drop_or_close(make: MakeDriver, how: str) -> None:
    driver = make(Hang())
    conn = driver.connect()
    job = _hang(driver, conn)
    if how == "drop":
        driver.drop(conn.id)
    else:
        conn.close()
    with pytest.raises(OperationalError, match="server closed the connection"):
        job.result()
    assert conn.closed


@pytest.mark.parametrize(
    ("then", "error", "closed"),
    [
        ("raise", "timeout expired", False),
        ("drop", "server closed", True),
        ("proceed", None, False),
    ],
)
def test_hang_timeout_on_a_virtual_clock(
    make: MakeDriver, then: Literal["raise", "drop", "proceed"], error: str | None, closed: bool
) -> None:
    """The timeout passes in virtual time: the call returns at once, the clock moved."""
    clock = VirtualClock()
    driver = make(Hang(30.0, then=then), clock=clock)
    conn = driver.connect()
    cur = conn.cursor()
    if error is None:
        assert cur.execute("SELECT 7").fetchall() == [(7,)]
    else:
        with pytest.raises(OperationalError, match=error):
            cur.execute("SELECT 7")
    assert clock.now() == 30.0
    assert conn.closed is closed


def test_hang_timeout_on_the_real_clock(make: MakeDriver) -> None:
    driver = make(Hang(0.05), clock=RealClock())
    job = Background(lambda: driver.connect().cursor().execute("SELECT 1"))
    with pytest.raises(OperationalError, match="timeout expired"):
        job.result()


def test_sql_sleep_is_cancelled_from_another_thread(make: MakeDriver) -> None:
    driver = make(clock=RealClock())
    conn = driver.connect()
    cur = conn.cursor()
    job = Background(lambda: cur.execute("SELECT sleep(60)"))
    deadline = time.monotonic() + HANG
    while not driver.running() and time.monotonic() < deadline:
        time.sleep(0.01)
    while job.thread.is_alive() and time.monotonic() < deadline:
        job.thread.join(0.05)
        conn.cancel()  # again and again: a cancel before the statement starts is lost
    with pytest.raises(OperationalError, match="canceling statement"):
        job.result(timeout=0)
    assert cur.execute("SELECT 1").fetchall() == [(1,)]


def test_sql_sleep_on_a_virtual_clock_advances_it(make: MakeDriver) -> None:
    clock = VirtualClock()
    driver = make(clock=clock)
    assert driver.connect().cursor().execute("SELECT sleep(5)").fetchall() == [(0,)]
    assert clock.now() == 5.0


# ----- Refuse -----------------------------------------------------------------------------


def _connects(driver: FakeDriver, n: int) -> str:
    out = ""
    for _ in range(n):
        try:
            driver.connect()
        except OperationalError as exc:
            assert "Connection refused" in str(exc)
            out += "x"
        else:
            out += "."
    return out


@pytest.mark.parametrize(
    ("rule", "expected"),
    [(Refuse(), "xxxx"), (Refuse(times=2), "xx.."), (Refuse(after=1, times=1), ".x..")],
    ids=repr,
)
def test_refuse(make: MakeDriver, rule: Rule, expected: str) -> None:
    driver = make(rule)
    assert _connects(driver, 4) == expected
    assert driver.calls.connects("error") == expected.count("x")
    assert driver.calls.connects("ok") == expected.count(".")
    assert driver.calls.connections() == [i + 1 for i, c in enumerate(expected) if c == "."]


def test_refuse_with_probability_is_seeded(make: MakeDriver) -> None:
    def run(seed: int) -> str:
        return _connects(make(Refuse(probability=0.5), seed=seed), 30)

    first = run(3)
    assert "x" in first and "." in first
    assert run(3) == first
    assert run(4) != first


# ----- threads ----------------------------------------------------------------------------


def test_strict_threads_refuses_another_thread_and_records_it(make: MakeDriver) -> None:
    driver = make(strict_threads=True)
    conn = driver.connect()
    cur = conn.cursor()
    job = Background(lambda: cur.execute("SELECT 1"), name="intruder")
    with pytest.raises(ProgrammingError, match=r"'MainThread'.*'intruder'"):
        job.result()
    cur.execute("SELECT 1")
    assert driver.calls.threads(conn.id) == {"MainThread", "intruder"}
    (misuse,) = driver.calls.filter(outcome="error")
    assert misuse.thread == "intruder" and misuse.op == "execute"


def test_threadsafety_two_allows_sharing_connections(make: MakeDriver) -> None:
    driver = make(strict_threads=True, threadsafety=2)
    cur = driver.connect().cursor()
    assert Background(lambda: cur.execute("SELECT 1").fetchall()).result() == [(1,)]


# ----- the record ---------------------------------------------------------------------------


def test_call_log_queries(make: MakeDriver) -> None:
    driver = make(Refuse(nth=1), Raise(sql="boom"))
    with pytest.raises(OperationalError):
        driver.connect()
    a, b = driver.connect(), driver.connect()
    ca, cb = a.cursor(), b.cursor()
    ca.execute("SELECT 1")
    with pytest.raises(OperationalError):
        ca.execute("SELECT 'boom'")
    a.commit()
    b.autocommit = True
    cb.execute("SELECT 2")
    cb.execute("SELECT 3")
    calls = driver.calls

    assert calls.connects() == 3 and calls.connects("error") == 1
    assert calls.connections() == [2, 3]
    assert [c.sql for c in calls.statements()] == [
        "SELECT 1",
        "SELECT 'boom'",
        "SELECT 2",
        "SELECT 3",
    ]
    assert [c.sql for c in calls.statements(connection=3)] == ["SELECT 2", "SELECT 3"]
    assert [c.sql for c in calls.outside_transaction()] == ["SELECT 2", "SELECT 3"]
    assert [(c.op, c.fault) for c in calls.faults()] == [
        ("connect", "#0 Refuse(nth=1)"),
        ("execute", "#1 Raise(sql='boom')"),
    ]
    assert [c.op for c in calls.filter(connection=2)] == [
        "connect",
        "cursor",
        "execute",
        "execute",
        "commit",
    ]
    assert [c.sql for c in calls.filter("execute", sql="^select [12]$")] == ["SELECT 1", "SELECT 2"]
    assert [c.op for c in calls.filter(outcome="error")] == ["connect", "execute"]
    assert len(calls.filter(("cursor", "commit"))) == 3
    assert len(calls.filter(faulted=False)) == len(calls) - 2
    statements = calls.filter("execute", connection=2)
    assert [c.transaction for c in statements] == [1, 1]
    assert all(c.thread == "MainThread" for c in calls)
    assert [c.seq for c in calls] == sorted(c.seq for c in calls)

    calls.clear()
    assert len(calls) == 0


def test_call_log_keeps_the_last_max_calls(make: MakeDriver) -> None:
    driver = make(max_calls=3)
    pattern(driver.connect().cursor(), 4)
    assert len(driver.calls) == 3
    assert driver.calls.dropped == 3  # connect, cursor and the first execute
    assert [c.seq for c in driver.calls] == [4, 5, 6]


SECRETS = [
    pytest.param(("host=db user=app password=Dsn-S3cret-1",), {}, "Dsn-S3cret-1", id="dsn"),
    pytest.param(("postgresql://app:Url-S3cret-2@db/x",), {}, "Url-S3cret-2", id="url"),
    pytest.param((), {"password": "Kw-S3cret-3"}, "Kw-S3cret-3", id="password"),
    pytest.param((), {"passwd": "Kw-S3cret-4"}, "Kw-S3cret-4", id="passwd"),
    pytest.param((), {"dsn": "user=a password='Quoted S3cret 5'"}, "Quoted S3cret 5", id="quoted"),
    pytest.param((), {"password": b"Bytes-S3cret-6"}, "Bytes-S3cret-6", id="bytes"),
]


@pytest.mark.parametrize(("args", "kwargs", "secret"), SECRETS)
def test_secrets_never_reach_the_record_repr_or_report(
    make: MakeDriver, args: tuple[Any, ...], kwargs: dict[str, Any], secret: str
) -> None:
    driver = make(Raise(nth=1), Refuse(nth=2))
    conn = driver.connect(*args, **kwargs)
    with pytest.raises(OperationalError):
        driver.connect(*args, **kwargs)
    pattern(conn.cursor(), 1)
    recorded = driver.calls.filter("connect")[0].params
    assert recorded is not None and "***" in repr(recorded)
    for text in (repr(list(driver.calls)), repr(driver), str(driver.report()), repr(conn)):
        assert secret not in text
