"""``Pool(threads=...)``: how the mode is chosen, and what the shared thread group promises.

A shared group runs each connection's calls one at a time and in order, keeps one thread per
connection (so a call stuck in the driver holds up no other connection), lets threads go as
connections close, and leaves none behind after close.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import sys
import threading
import types
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import poolkit
from poolkit._bridge import Bridge
from poolkit._worker import ThreadGroup
from poolkit.fakes import FakeDriver
from tests.test_threads import pool_threads, wait_until

pytestmark = pytest.mark.anyio

HANG = 10.0


def workers(pool: poolkit.Pool) -> list[threading.Thread]:
    return [t for t in pool_threads(pool) if not t.name.endswith("-maintenance")]


def shared_pool(tag: str, size: int) -> poolkit.Pool:
    """A fake-driver pool on shared threads, named so that its threads can be found."""
    return poolkit.Pool(
        FakeDriver(threadsafety=2),
        min_size=size,
        max_size=size,
        name=f"{tag}-{uuid.uuid4().hex[:8]}",
        threads="shared",
    )


# ----- choosing the mode ---------------------------------------------------------------


class Module:
    """A stand-in driver module with a given PEP 249 threadsafety."""

    Error = Exception
    paramstyle = "qmark"

    def __init__(self, threadsafety: Any, name: str = "somedriver") -> None:
        self.threadsafety = threadsafety
        self.__name__ = name

    def connect(self) -> Any:  # pragma: no cover - never connected
        raise AssertionError("not connected in these tests")


@pytest.mark.parametrize(
    ("threadsafety", "expected"),
    [(0, "dedicated"), (1, "dedicated"), (2, "shared"), (3, "shared"), ("2", "dedicated")],
)
def test_auto_follows_the_drivers_threadsafety(threadsafety: Any, expected: str) -> None:
    assert poolkit.Pool(Module(threadsafety)).threads == expected


def test_auto_keeps_thread_bound_drivers_on_their_threads(tmp_path: Path) -> None:
    # sqlite3 says threadsafety 3 (serialized) here and there, yet check_same_thread refuses
    # a connection used from another thread: its profile is thread_bound.
    pool = poolkit.Pool(sqlite3, str(tmp_path / "x.db"))
    assert pool.threads == "dedicated"


def test_auto_with_a_factory_is_dedicated_until_the_driver_is_known() -> None:
    driver = FakeDriver(threadsafety=2)
    assert poolkit.Pool(connect=driver.connect).threads == "dedicated"
    assert poolkit.Pool(driver, threads="dedicated").threads == "dedicated"
    assert poolkit.Pool(driver).threads == "shared"
    assert poolkit.Pool(FakeDriver(threadsafety=1), threads="shared").threads == "shared"


async def test_a_factory_pool_turns_shared_once_a_connection_names_the_driver(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A driver module poolkit has no profile for, inferred from its connections' class.
    module = types.ModuleType("pk_ts2_driver")
    module.threadsafety = 2  # type: ignore[attr-defined]
    fake = FakeDriver(threadsafety=2)

    class Connection:
        def __init__(self) -> None:
            self._raw = fake.connect()

        def __getattr__(self, name: str) -> Any:
            return getattr(self._raw, name)

    Connection.__module__ = module.__name__
    monkeypatch.setitem(sys.modules, module.__name__, module)
    async with poolkit.Pool(connect=Connection, min_size=1, max_size=2) as pool:
        assert pool.threads == "shared"
        assert await pool.fetchall("SELECT 1") == [(1,)]


@pytest.mark.parametrize("bad", ["Shared", "thread", "", None, 2])
def test_threads_must_be_a_known_mode(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"threads must be one of 'auto', 'dedicated', 'shared'"):
        poolkit.Pool(FakeDriver(), threads=bad)


# ----- what shared mode promises -------------------------------------------------------


class Tracker:
    """Checks, from inside the driver, that no connection ever runs two calls at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.busy: set[int] = set()
        self.overlaps: list[int] = []
        self.seen: dict[int, list[int]] = {}  # connection -> call numbers, in run order
        self.threads: dict[int, set[int]] = {}

    def call(self, raw: Any, conn_id: int, n: int) -> int:
        with self.lock:
            if conn_id in self.busy:
                self.overlaps.append(conn_id)
            self.busy.add(conn_id)
            self.seen.setdefault(conn_id, []).append(n)
            self.threads.setdefault(conn_id, set()).add(threading.get_ident())
        try:
            raw.cursor().execute("SELECT 1")
            return n
        finally:
            with self.lock:
                self.busy.discard(conn_id)


async def test_calls_of_one_connection_run_one_at_a_time_in_order() -> None:
    tracker = Tracker()
    name = f"order-{uuid.uuid4().hex[:8]}"
    pool = poolkit.Pool(FakeDriver(threadsafety=2), min_size=4, max_size=4, name=name)
    assert pool.threads == "shared"
    submitted: dict[int, list[int]] = {}

    async def task(k: int) -> None:
        async with pool.connection() as conn:
            for i in range(40):
                n = k * 1000 + i
                submitted.setdefault(conn.id, []).append(n)
                assert await conn.run(tracker.call, conn.id, n) == n

    with anyio.fail_after(HANG):
        async with pool, anyio.create_task_group() as tg:
            for k in range(12):
                tg.start_soon(task, k)
            await wait_until(lambda: len(workers(pool)) == 4, "four threads for four connections")
    assert tracker.overlaps == []
    assert tracker.seen == submitted
    # the point of the mode: connections moved between the group's threads
    assert max(len(idents) for idents in tracker.threads.values()) > 1


async def test_a_call_stuck_in_the_driver_holds_up_no_other_connection() -> None:
    gate = threading.Event()
    pool = poolkit.Pool(FakeDriver(threadsafety=2), min_size=3, max_size=3, threads="shared")
    served = 0

    async def others() -> None:
        nonlocal served
        for _ in range(30):
            async with pool.connection() as conn:
                await conn.fetchall("SELECT 1")
                served += 1

    with anyio.fail_after(HANG):
        async with pool:
            stuck = await pool.acquire()
            async with anyio.create_task_group() as tg:
                tg.start_soon(stuck.run, lambda raw: gate.wait(HANG))
                await anyio.sleep(0.05)
                async with anyio.create_task_group() as busy:
                    busy.start_soon(others)
                    busy.start_soon(others)
                assert served == 60  # all while one thread sat in the driver
                gate.set()
            pool.release(stuck)


async def test_threads_follow_the_connections_and_none_outlive_close() -> None:
    pool = shared_pool("churn", size=2)
    async with pool:
        for _ in range(25):
            async with pool.connection() as conn:
                await conn.fetchall("SELECT 1")
                conn.invalidate()  # closed on return, and replaced
        await wait_until(lambda: pool.stats().idle == 2, "two connections again")
        await wait_until(lambda: len(workers(pool)) == 2, "one thread per live connection")
        threads = workers(pool)
        assert pool.stats().connections_opened == 27
    assert [t.name for t in threads if t.is_alive()] == []
    assert pool_threads(pool) == []


async def test_shared_mode_runs_a_sqlite_connection_that_allows_it(tmp_path: Path) -> None:
    pool = poolkit.Pool(
        sqlite3,
        str(tmp_path / "shared.db"),
        connect_kwargs={"check_same_thread": False},
        min_size=1,
        max_size=1,
        threads="shared",
    )
    async with pool, pool.connection() as conn:
        await conn.execute("CREATE TABLE t (x INTEGER)")
        await conn.executemany("INSERT INTO t VALUES (?)", [(1,), (2,)])
        await conn.commit()
        assert await conn.fetchall("SELECT sum(x) FROM t") == [(3,)]


# ----- the group itself, without a pool ------------------------------------------------


class ThreadBridge(Bridge):
    """Runs posted callbacks at once, on the posting thread (no event loop needed)."""

    def __init__(self) -> None:
        super().__init__(lambda fn: fn())


def test_a_stopped_strand_drops_later_jobs_and_lets_its_thread_go() -> None:
    group = ThreadGroup(ThreadBridge(), f"unit-{uuid.uuid4().hex[:8]}")
    a, b = group.strand("a"), group.strand("b")
    assert len(group.threads()) == 2
    ran: list[str] = []
    done = threading.Event()
    record: Callable[[str], None] = ran.append
    a.submit(record, ("a1",))
    a.stop()
    a.submit(record, ("after stop",))
    b.submit(record, ("b1",))
    b.submit(lambda: done.set(), ())
    assert done.wait(HANG)
    deadline = threading.Event()
    for _ in range(200):
        if len(group.threads()) == 1:
            break
        deadline.wait(0.01)
    assert len(group.threads()) == 1
    assert sorted(ran) == ["a1", "b1"]
    b.stop()
    for thread in [t for t in threading.enumerate() if t.name.startswith("poolkit-unit-")]:
        thread.join(HANG)
    assert group.threads() == []


def test_a_job_sees_its_outcome_posted_even_when_it_raises() -> None:
    group = ThreadGroup(ThreadBridge(), f"unit-{uuid.uuid4().hex[:8]}")
    strand = group.strand("s")
    outcomes: list[tuple[Any, Any, Any]] = []
    finished = threading.Event()

    def done(token: Any, result: Any, exc: BaseException | None) -> None:
        outcomes.append((token, result, type(exc).__name__ if exc else None))
        if token == 2:
            finished.set()

    strand.submit(lambda: 1 / 0, (), done, 1)
    strand.submit(lambda: "ok", (), done, 2)
    assert finished.wait(HANG)
    assert outcomes == [(1, None, "ZeroDivisionError"), (2, "ok", None)]
    threads = group.threads()
    strand.stop()
    for thread in threads:
        thread.join(HANG)
    assert group.threads() == []


def test_jobs_queued_on_one_strand_never_overlap_and_keep_their_order() -> None:
    """Jobs queued while one runs (a reset behind a cancelled call, say) wait their turn,
    though the group has idle threads to spare."""
    group = ThreadGroup(ThreadBridge(), f"unit-{uuid.uuid4().hex[:8]}")
    strands = [group.strand(f"s{i}") for i in range(4)]  # four threads
    target = strands[0]
    lock = threading.Lock()
    busy = False
    overlaps = 0
    order: list[int] = []
    finished = threading.Event()

    def job(i: int) -> None:
        nonlocal busy, overlaps
        with lock:
            overlaps += busy
            busy = True
        threading.Event().wait(0.0005)  # long enough for another thread to barge in
        with lock:
            order.append(i)
            busy = False
        if i == 99:
            finished.set()

    for i in range(100):
        target.submit(job, (i,))
    assert finished.wait(HANG)
    assert overlaps == 0
    assert order == list(range(100))
    threads = group.threads()
    for strand in strands:
        strand.stop()
    for thread in threads:
        thread.join(HANG)
    assert group.threads() == []


def test_shared_refuses_a_thread_bound_driver_that_checks_its_thread(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"threads='shared' .* sqlite3 refuses"):
        poolkit.Pool(sqlite3, str(tmp_path / "x.db"), threads="shared")
    allowed = {"check_same_thread": False}  # the connections may move
    poolkit.Pool(sqlite3, str(tmp_path / "x.db"), connect_kwargs=allowed, threads="shared")


def test_auto_honours_a_thread_bound_profile_whatever_the_threadsafety() -> None:
    bound = dataclasses.replace(poolkit.profile_for(FakeDriver()), thread_bound=True)
    assert poolkit.Pool(FakeDriver(threadsafety=3), profile=bound).threads == "dedicated"
    assert poolkit.Pool(FakeDriver(threadsafety=3)).threads == "shared"


def test_a_failed_thread_start_leaves_no_thread_to_join(monkeypatch: pytest.MonkeyPatch) -> None:
    group = ThreadGroup(ThreadBridge(), f"unit-{uuid.uuid4().hex[:8]}")

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    with pytest.raises(RuntimeError, match="can't start"):
        group.strand("s")
    assert group.threads() == []


def test_a_job_whose_outcome_cannot_be_posted_does_not_kill_the_thread() -> None:
    posted: list[Any] = []

    class Flaky(Bridge):
        def __init__(self) -> None:
            super().__init__(lambda fn: fn())
            self.fail = True

        def post(self, fn: Callable[..., None], *args: Any) -> None:
            if self.fail:
                self.fail = False
                raise OSError("loop is wedged")
            posted.append(args[0])

    group = ThreadGroup(Flaky(), f"unit-{uuid.uuid4().hex[:8]}")
    strand = group.strand("s")
    finished = threading.Event()
    strand.submit(lambda: None, (), lambda *a: None, "lost")
    strand.submit(lambda: finished.set(), (), lambda *a: None, "seen")
    assert finished.wait(HANG)
    for _ in range(200):
        if posted:
            break
        finished.wait(0.01)
    assert posted == ["seen"]
    threads = group.threads()
    assert len(threads) == 1
    strand.stop()
    for thread in threads:
        thread.join(HANG)


def test_close_later_goes_through_the_group_queue_not_the_strand_lock() -> None:
    """The finalizer's path: it may interrupt a thread that holds the strand's lock."""
    group = ThreadGroup(ThreadBridge(), f"unit-{uuid.uuid4().hex[:8]}")
    strand = group.strand("s")
    closed = threading.Event()
    threads = group.threads()
    caller = threading.Thread(target=strand.close_later, args=((closed.set, (), None, None),))
    with strand._lock:  # as if the finalizer ran inside drain's locked block
        caller.start()
        caller.join(1.0)
        returned = not caller.is_alive()
    caller.join(HANG)
    assert returned, "close_later waited for the strand's lock"
    assert closed.wait(HANG)
    for thread in threads:
        thread.join(HANG)
    assert group.threads() == []


async def test_forced_close_leaves_a_thread_stuck_in_the_driver_behind() -> None:
    gate = threading.Event()
    pool = shared_pool("stuck", size=2)
    await pool.open()
    conn = await pool.acquire()
    try:
        with anyio.move_on_after(0.05):
            await conn.run(lambda raw: gate.wait(HANG))  # ignores the driver cancel
        with anyio.fail_after(HANG):  # returns with the call still stuck
            assert await pool.close(timeout=0.05) == 1
        assert len(workers(pool)) == 1  # the stuck one; the other connection's thread left
    finally:
        gate.set()
    await wait_until(lambda: pool_threads(pool) == [], "the stuck thread to leave")
