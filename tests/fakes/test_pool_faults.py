"""``poolkit.Pool`` over ``FakeDriver`` with injected faults: the pool keeps its promises.

A realistic workload (tasks writing rows in transactions, retrying on driver errors and
timeouts, some transactions rolled back on purpose) runs through a pool whose driver follows
a fault plan drawn from :func:`poolkit.fakes.strategies.plans` under a fixed seed
(``derandomize=True``), on asyncio and on trio. Faults are kept bounded: latencies of a few
ms on the real clock, hangs with small timeouts, and every rule but latency limited by a
count or a probability, so every run ends.

After each run: the pool closes without forcing anything and joins its threads; every fake
connection it opened was closed by it; the rows a fresh connection sees hold every row whose
commit returned and no row of a transaction that never reached its commit (a row whose
commit raised may or may not be there); the pool's statistics agree with the fake's call
record; no more than ``max_size`` fake connections were ever open at once. Across the runs,
faults of every kind must have fired, so the test cannot pass without testing anything.

The explicit tests pin single behaviours: a dropped connection is replaced and the retried
transaction succeeds; refused connects are retried with back-off; a hang past the
``query_timeout`` ends in ``QueryTimeout`` through the driver cancel and the pool stays
usable; a server restart costs at most one failed call.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import anyio
import pytest
from hypothesis import HealthCheck, Phase, example, given, note, settings
from hypothesis import strategies as st

import poolkit
from poolkit import Backoff, Pool, PoolTimeout, QueryTimeout, fakes
from poolkit.fakes import (
    Drop,
    FakeDriver,
    Hang,
    Latency,
    Plan,
    Raise,
    RealClock,
    Refuse,
    Rule,
)
from poolkit.fakes.strategies import plans, refusals

SCHEMA = "CREATE TABLE items (k TEXT PRIMARY KEY, task INTEGER)"
INSERT = "INSERT INTO items (k, task) VALUES (?, ?) ON CONFLICT (k) DO NOTHING"
COUNT = "SELECT count(*) FROM items WHERE k = ?"

TASKS = 4
ROWS = 3  # per task; row 1 of each task is rolled back on purpose
MAX_SIZE = 2
MAX_ATTEMPTS = 40
QUERY_TIMEOUT = 0.02
HANG = 10.0  # a bound only a hang reaches
FAST = Backoff(initial=0.002, maximum=0.02)
RETRYABLE = (fakes.Error, QueryTimeout, PoolTimeout)


class Abort(Exception):
    """The application rolls this transaction back on purpose."""


def _driver(plan: Plan | None = None) -> FakeDriver:
    """A fake driver on the real clock, its schema created before the plan applies."""
    driver = FakeDriver(clock=RealClock())
    conn = driver.connect()
    conn.cursor().execute(SCHEMA)
    conn.commit()
    conn.close()
    driver.calls.clear()
    if plan is not None:
        driver.plan = plan
    return driver


@contextmanager
def _closing(driver: FakeDriver) -> Iterator[FakeDriver]:
    try:
        yield driver
    finally:
        driver.close()


def _committed(driver: FakeDriver) -> set[str]:
    """The keys a fresh plain connection sees (the plan is off by then)."""
    conn = driver.connect()
    try:
        cur = conn.cursor()
        cur.execute("SELECT k FROM items")
        return {row[0] for row in cur.fetchall()}
    finally:
        conn.close()


def _open_now(driver: FakeDriver) -> int:
    return len([c for c in driver.connections.values() if not c.closed])


def _peak_from_record(driver: FakeDriver) -> int:
    """Most fake connections open at once, each counted from the start of its connect to the
    end of its close (a little longer than it really lived; a missing close counts forever)."""
    edges: list[tuple[float, int]] = []
    for call in driver.calls.filter("connect", outcome="ok"):
        edges.append((call.started, 1))
        closes = driver.calls.filter("close", connection=call.connection)
        if closes:
            edges.append((closes[0].started + closes[0].duration, -1))
    peak = live = 0
    for _, step in sorted(edges, key=lambda e: (e[0], -e[1])):
        live += step
        peak = max(peak, live)
    return peak


def _pool_threads(pool: Pool) -> list[str]:
    prefix = f"poolkit-{pool.name}-"
    return [
        t.name
        for t in threading.enumerate()
        if t.name.startswith(prefix) and t.is_alive() and not t.name.endswith(("-cancel", "-join"))
    ]


# ----- the workload ------------------------------------------------------------------------


@dataclass
class Ledger:
    """What the application believes happened."""

    committed: set[str] = field(default_factory=set)  # commit returned
    maybe: set[str] = field(default_factory=set)  # commit raised: landed or not
    doomed: set[str] = field(default_factory=set)  # rolled back before commit, on purpose
    gave_up: set[str] = field(default_factory=set)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)


async def _write(pool: Pool, task: int, row: int, ledger: Ledger) -> None:
    key = f"{task}-{row}"
    doom = row == 1
    for _ in range(MAX_ATTEMPTS):
        reached_commit = False
        try:
            async with pool.transaction() as conn:
                await conn.execute(INSERT, (key, task))
                cur = await conn.execute(COUNT, (key,))
                seen = await cur.fetchone()
                assert seen == (1,), f"{key}: own insert not visible in its transaction: {seen}"
                if doom:
                    raise Abort(key)
                reached_commit = True  # anything raised from here on came from the commit
        except Abort:
            ledger.doomed.add(key)
            return
        except RETRYABLE as exc:
            ledger.errors[type(exc).__name__] += 1
            if reached_commit:  # the commit may have landed: retrying could write twice
                ledger.maybe.add(key)
                return
            await anyio.sleep(0.001)
            continue
        ledger.committed.add(key)
        return
    ledger.gave_up.add(key)


@dataclass
class Run:
    ledger: Ledger
    stats: poolkit.Stats
    forced: int
    peak_sampled: int
    threads_left: list[str]


async def run_workload(driver: FakeDriver, name: str) -> Run:
    ledger = Ledger()
    peak = 0
    pool = Pool(
        driver,
        min_size=1,
        max_size=MAX_SIZE,
        timeout=2.0,
        query_timeout=QUERY_TIMEOUT,
        backoff=FAST,
        name=name,
    )
    try:
        await pool.open()
        done = anyio.Event()

        async def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, _open_now(driver))
                await anyio.sleep(0.001)

        async def worker(task: int) -> None:
            for row in range(ROWS):
                await _write(pool, task, row, ledger)

        async with anyio.create_task_group() as tg:
            tg.start_soon(sample)
            async with anyio.create_task_group() as workers:
                for task in range(TASKS):
                    workers.start_soon(worker, task)
            done.set()
        # Let replacement connects and resets finish, so the counts below are final.
        with anyio.move_on_after(2.0):
            while (s := pool.stats()).opening or s.resetting or s.closing:
                await anyio.sleep(0.002)
    finally:
        with anyio.CancelScope(shield=True):
            forced = await pool.close()
    peak = max(peak, _open_now(driver))
    return Run(ledger, pool.stats(), forced, peak, _pool_threads(pool))


def check_invariants(driver: FakeDriver, run: Run) -> set[str]:
    """Assert what every run must leave behind; returns the rows a fresh connection sees."""
    ledger, stats = run.ledger, run.stats
    assert run.forced == 0, f"close() had to force {run.forced} connection(s)"
    assert not run.threads_left, f"threads outlived pool.close(): {run.threads_left}"

    # Every fake connection the pool opened is closed now, and the pool closed each itself.
    assert all(c.closed for c in driver.connections.values()), driver.connections
    opened = driver.calls.connections()
    not_closed = [c for c in opened if not driver.calls.filter("close", connection=c)]
    assert not not_closed, f"connections the pool never closed: {not_closed}"

    # The statistics agree with the fake's own record.
    assert stats.connections_opened == driver.calls.connects(outcome="ok") == len(opened)
    assert stats.connect_errors == driver.calls.connects(outcome="error")
    assert stats.connections_closed == stats.connections_opened
    assert stats.size == stats.in_use == stats.idle == stats.waiting == 0

    # Never more connections than max_size, seen live and from the record.
    assert run.peak_sampled <= MAX_SIZE, f"{run.peak_sampled} connections open at once"
    assert _peak_from_record(driver) <= MAX_SIZE
    assert driver.peak_connections <= MAX_SIZE

    # Durability: what a fresh connection sees.
    rows = _committed(driver)
    assert ledger.committed <= rows, f"commit returned but row lost: {ledger.committed - rows}"
    assert not (ledger.doomed & rows), f"rolled-back rows were committed: {ledger.doomed & rows}"
    unexplained = rows - ledger.committed - ledger.maybe
    assert not unexplained, f"rows no commit can explain: {unexplained}"
    assert ledger.committed | ledger.maybe | ledger.doomed | ledger.gave_up == {
        f"{t}-{r}" for t in range(TASKS) for r in range(ROWS)
    }
    return rows


# ----- the property ------------------------------------------------------------------------


def _bounded(rule: Rule) -> bool:
    """The rule cannot stop every transaction for ever, nor slow every call down."""
    if isinstance(rule, Latency):
        return rule.limit is not None or rule.probability <= 0.25
    if rule.scope == "connection":  # a limit per connection repeats on each new one
        return rule.probability <= 0.5
    return rule.limit is not None or rule.probability <= 0.5


#: the driver calls the workload makes (the pool prefetches with fetchmany; its health
#: check, "SELECT 1", ends in fetchall). Connect faults come from ``refusals()`` below.
WORKLOAD_OPS = ("execute", "fetchmany", "fetchall", "commit", "rollback", "close")

bounded_plans = st.builds(
    lambda plan, refuse: plan + Plan(*refuse),
    plans(
        max_rules=3,
        ops=WORKLOAD_OPS,
        max_seconds=0.03,
        max_count=4,
        sql=("INSERT", "count", "SELECT 1"),  # SELECT 1 is the pool's health check
    ),
    st.lists(refusals(max_count=4), max_size=1),
).filter(lambda plan: len(plan.rules) > 0 and all(_bounded(r) for r in plan.rules))

#: one of each kind, so that every kind is exercised whatever the generated plans are
EXPLICIT = (
    Plan(Drop(nth=2, sql="INSERT"), Refuse(times=2), seed=1),
    Plan(Raise("OperationalError", op="commit", phase="after", nth=3), seed=2),
    Plan(Hang(0.2, sql="count", nth=2), Latency(0.003, op="*", probability=0.25), seed=3),
    Plan(Hang(0.01, op="commit", then="proceed", probability=0.3), seed=4),
    Plan(Drop(op="commit", phase="after", probability=0.2), seed=5),
    Plan(Raise("IntegrityError", sql="INSERT", probability=0.3, scope="connection"), seed=6),
    # commits that fail before reaching the database: the rows must be absent
    Plan(Raise("OperationalError", op="commit", nth=2), Drop(op="commit", nth=5), seed=7),
)


def test_pool_survives_generated_fault_plans(anyio_backend: str) -> None:
    fired_kinds: set[str] = set()
    fired_total = 0
    runs = 0
    maybe_landed = maybe_lost = 0  # commits that raised: both outcomes must be seen

    @settings(
        max_examples=50,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # a shrink would re-run real-time workloads
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(plan=bounded_plans)
    @example(plan=EXPLICIT[0])
    @example(plan=EXPLICIT[1])
    @example(plan=EXPLICIT[2])
    @example(plan=EXPLICIT[3])
    @example(plan=EXPLICIT[4])
    @example(plan=EXPLICIT[5])
    @example(plan=EXPLICIT[6])
    def check(plan: Plan) -> None:
        nonlocal fired_total, runs, maybe_landed, maybe_lost
        with _closing(_driver(plan)) as driver:
            runs += 1
            name = f"faults-{anyio_backend}-{runs}"
            run = anyio.run(run_workload, driver, name, backend=anyio_backend)
            report = driver.report()
            note(str(report))
            note(f"application errors: {dict(run.ledger.errors)}; stats: {run.stats}")
            driver.plan = Plan()  # the checks below must not meet the faults
            rows = check_invariants(driver, run)
            maybe_landed += len(run.ledger.maybe & rows)
            maybe_lost += len(run.ledger.maybe - rows)
            fired_total += report.fired
            fired_kinds.update(r.rule.kind for r in report.rules if r.fired)

    check()
    assert runs >= len(EXPLICIT)
    assert fired_total > 0, "no fault fired in any run"
    assert fired_kinds == {"latency", "raise", "drop", "hang", "refuse"}, fired_kinds
    assert maybe_landed > 0 and maybe_lost > 0, (maybe_landed, maybe_lost)


@settings(max_examples=200, derandomize=True, database=None, deadline=None)
@given(plan=plans())
def test_default_plans_strategy_draws_valid_plans(plan: Plan) -> None:
    """``plans()`` with its defaults must only draw plans that can be built. (The property
    above names its operations, which keeps it clear of this.)"""
    assert Plan.from_json(plan.to_json()) == plan  # and it goes to JSON and back


# ----- explicit behaviours -----------------------------------------------------------------


@pytest.mark.anyio
async def test_drop_on_first_execute_replaces_the_connection() -> None:
    with _closing(_driver(Plan(Drop(nth=1, sql="INSERT")))) as driver:
        errors: list[Exception] = []
        async with Pool(driver, min_size=1, max_size=2, backoff=FAST) as pool:
            for _ in range(3):
                try:
                    async with pool.transaction() as conn:
                        await conn.execute(INSERT, ("a", 0))
                    break
                except fakes.OperationalError as exc:
                    errors.append(exc)
            stats = pool.stats()
        # the pool ran the lost first statement again itself (retry_lost): the caller saw
        # no error, and the row is there once
        assert errors == []
        assert stats.disconnects == 1 and stats.retried == 1
        assert stats.connections_opened == 2
        inserts = driver.calls.filter("execute", sql="INSERT")
        assert [c.outcome for c in inserts] == ["error", "ok"]
        assert inserts[0].connection != inserts[1].connection, "retried on the lost connection"
        assert driver.report().fired == 1
        assert not driver.connections
        assert _committed(driver) == {"a"}


@pytest.mark.anyio
async def test_refused_connects_are_retried_with_backoff() -> None:
    backoff = Backoff(initial=0.02, maximum=0.2, jitter=0.0)
    with _closing(_driver(Plan(Refuse(times=2)))) as driver:
        start = time.monotonic()
        async with Pool(driver, min_size=1, max_size=2, backoff=backoff, timeout=5.0) as pool:
            opened_after = time.monotonic() - start
            stats = pool.stats()
            async with pool.connection() as conn:
                assert await (await conn.execute("SELECT 1")).fetchone() == (1,)
        # open() waited through two refusals: back-off 0.02 s, then 0.04 s
        assert 0.055 <= opened_after < 3.0, opened_after
        assert driver.calls.connects(outcome="error") == 2
        assert driver.calls.connects(outcome="ok") == 1
        assert stats.connect_errors == 2
        assert stats.connections_opened == 1
        assert stats.consecutive_connect_errors == 0
        assert stats.last_connect_error is not None
        assert "Connection refused" in stats.last_connect_error
        assert driver.report().rules[0].exhausted


@pytest.mark.anyio
async def test_hang_past_query_timeout_is_cancelled_and_pool_stays_usable() -> None:
    hang = 10.0
    with _closing(_driver(Plan(Hang(hang, sql="SELECT 42", nth=1)))) as driver:
        async with Pool(driver, min_size=1, max_size=1, query_timeout=0.1) as pool:
            async with pool.connection() as conn:
                start = time.monotonic()
                with pytest.raises(QueryTimeout):
                    await conn.execute("SELECT 42")
                assert time.monotonic() - start < 2.0
            # The same (only) connection comes back, cancelled, rolled back and pinged.
            async with pool.connection() as conn:
                assert await (await conn.execute("SELECT 42")).fetchone() == (42,)
            stats = pool.stats()
        assert stats.query_timeouts == 1
        assert stats.disconnects == 0
        assert driver.calls.connects(outcome="ok") == 1, "a cancel must not cost the connection"
        hung, again = driver.calls.filter("execute", sql="SELECT 42")
        assert hung.fault is not None and hung.outcome == "error"
        assert hung.error is not None and "canceling statement due to user request" in hung.error
        assert hung.duration < hang / 2, "the hang ran out its own timeout: no cancel reached it"
        assert again.outcome == "ok" and again.connection == hung.connection
        assert driver.hanging == 0


@pytest.mark.anyio
async def test_server_restart_costs_at_most_one_failed_call() -> None:
    """README "Health, recycling and reconnecting": after a restart only a call that had just
    taken a connection fails; the other idle connections are checked and replaced."""
    with _closing(_driver()) as driver:
        async with Pool(driver, min_size=3, max_size=3, backoff=FAST) as pool:
            assert pool.stats().idle == 3
            assert driver.drop() == 3  # the server restarts under three idle connections
            failed: list[Exception] = []
            for i in range(8):
                try:
                    async with pool.transaction() as conn:
                        await conn.execute(INSERT, (f"k{i}", i))
                except fakes.Error as exc:
                    failed.append(exc)
            stats = pool.stats()
        assert len(failed) <= 1, failed
        assert all("server closed the connection" in str(e) for e in failed)
        assert stats.disconnects >= 1  # it noticed, by a failed call or by its health checks
        lost = {f"k{i}" for i in range(8)} - _committed(driver)
        assert len(lost) == len(failed)
        assert not driver.connections


@pytest.mark.anyio
async def test_nested_transaction_is_undone_with_its_outer_block() -> None:
    """README: a ``conn.transaction()`` inside another is a savepoint. When the outer block
    fails after the inner one succeeded, both are rolled back (as on sqlite3, psycopg2,
    PyMySQL). No fault plan: this is the fake's own transaction semantics."""
    with _closing(_driver()) as driver:
        async with Pool(driver, max_size=1) as pool, pool.connection() as conn:
            with pytest.raises(Abort):
                async with conn.transaction():
                    async with conn.transaction():
                        await conn.execute(INSERT, ("inner", 1))
                    await conn.execute(INSERT, ("outer", 2))
                    raise Abort("outer block fails")
        assert _committed(driver) == set()


@pytest.mark.anyio
@pytest.mark.parametrize("ending", ["commit", "rollback"])
async def test_cancelled_while_the_transaction_ends_sees_its_own_cancellation(
    ending: str,
) -> None:
    """PITFALLS "pool swallows the caller's cancellation": a caller cancelled while its
    ``transaction()`` block commits (or rolls back after an error) on a slow server sees its
    own cancellation (asyncio CancelledError, trio Cancelled, caught by its cancel scope), no
    PoolTimeout, no silent return; the transaction is all or nothing, and the pool's only
    connection serves the next caller."""
    plan = Plan(Hang(HANG * 3, op=ending, nth=1))  # until the driver cancel ends it
    with _closing(_driver(plan)) as driver:
        async with Pool(driver, min_size=1, max_size=1, backoff=FAST) as pool:
            surfaced: list[BaseException] = []
            with anyio.fail_after(HANG), anyio.move_on_after(0.2) as scope:
                try:
                    async with pool.transaction() as conn:
                        await conn.execute(INSERT, ("cancelled", 1))
                        if ending == "rollback":
                            raise Abort("roll this back")
                except BaseException as exc:
                    surfaced.append(exc)
                    raise
            assert scope.cancelled_caught, f"the cancellation was swallowed: {surfaced!r}"
            assert len(surfaced) == 1
            assert isinstance(surfaced[0], anyio.get_cancelled_exc_class()), surfaced
            with anyio.fail_after(HANG):
                async with pool.transaction() as conn:
                    await conn.execute(INSERT, ("next", 2))
            stats = pool.stats()
        assert stats.size <= 1 and stats.timeouts == 0
        assert _committed(driver) == {"next"}  # the cancelled commit never took effect
