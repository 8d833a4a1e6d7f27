"""A hypothesis state machine that drives a real async pool while the fake driver misbehaves.

Each example builds a pool with your factory over a :class:`~poolkit.fakes.FakeDriver` on a
:class:`~poolkit.fakes.VirtualClock`, runs it on an event loop in a background thread (an
anyio blocking portal, asyncio or trio), and takes random steps: acquire with and without a
timeout, release (in or out of a transaction), queries, inserts, commits and rollbacks, a
query that hangs in the driver and is then cancelled, released or cut off, a waiting acquire
cancelled, idle sessions killed behind the pool's back, time moved past the idle and lifetime
limits, resizes, health checks (``check()``), and fault plans from
:mod:`poolkit.fakes.strategies` switched on and off; and close, with callers still holding
connections and others waiting.

After every step it checks what must always hold:

* no connection is held by two callers, and none is used by two threads at once (the fake
  records every overlap); with ``thread_affinity``, none is ever touched by a second thread;
* the server (the fake) never sees more than ``max_size`` open connections, nor does the pool
  count more (after a shrink, once the extra connections came back);
* a connection handed out is not one the pool closed or was told is lost, not in a
  transaction, not running a call, and not older than ``max_lifetime``;
* an acquire ends with a connection, the timeout error, the closed error (while closing), or
  an error the fault plan raised on connect: a pool may pass that on, as poolkit does with
  the configuration errors of the driver's profile (a ``ProgrammingError``, say);
* after ``check()``, no idle connection the server killed is left in the pool;
* a call that is cancelled, timed out or cut off returns within seconds.

and when the example ends: with the faults off, the pool refills to ``min_size`` with live
connections (every dropped one was replaced) and serves ``max_size`` callers (those that
get a connect error of the plan, which a pool may pass on until its next attempt, try again);
it closes; the pool's totals agree with the fake's record; every connection it opened was
closed by it; every thread it started has exited; every committed row is in the table and no
rolled-back one.

Use it on your pool::

    from poolkit.conformance.stateful import pool_machine

    TestMyPool = pool_machine(MySubject, backend="trio").TestCase

where ``MySubject(spec)`` implements :class:`StatefulPool` (see :data:`CAPABILITIES`). Run it long
with ``python -m poolkit.conformance.stateful --examples 5000``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import re
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, ClassVar

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal

from poolkit._optional import require, unavailable
from poolkit._profiles import profile_for

try:
    from hypothesis import HealthCheck, settings
    from hypothesis import strategies as st
    from hypothesis.stateful import (
        RuleBasedStateMachine,
        initialize,
        invariant,
        precondition,
        rule,
        run_state_machine_as_test,
    )
except ImportError:  # say what to install, not a bare ModuleNotFoundError
    require("hypothesis", "for poolkit.conformance.stateful")
    raise

from poolkit.fakes import Drop, FakeDriver, Hang, Latency, Plan, Raise, Refuse, VirtualClock
from poolkit.fakes.strategies import plans

from ._subject import CAPABILITIES, Counts, PoolkitSubject, PoolSpec, Sizes, StatefulPool

__all__ = [
    "CAPABILITIES",
    "FIGURES",
    "Counts",
    "Figures",
    "PoolMachine",
    "PoolSpec",
    "PoolkitSubject",
    "Sizes",
    "StatefulPool",
    "ci_settings",
    "pool_machine",
    "run_machine",
]

#: A statement carrying this comment hangs in the driver until cancelled, released or dropped.
HANG_MARK = "/* poolkit:hang */"
_HANG_RULE = Hang(None, sql=re.escape(HANG_MARK))
_SCHEMA = "CREATE TABLE items (k INTEGER PRIMARY KEY, holder INTEGER)"

MAX_LIFETIME = 60.0  # virtual seconds
MAX_IDLE = 30.0
CHECK_IDLE_AFTER = 5.0
LIFETIME_SLACK = 5.0
FAULT_SECONDS = 1.0  # the longest injected latency or hang timeout (virtual)
#: real seconds a call may take to come back after it was cancelled, timed out or cut off
LIVENESS = 10.0
QUERY_TIMEOUT = 0.05  # real seconds
SETTLE = 0.25  # real seconds to let a step's background work finish

SubjectFactory = Callable[[PoolSpec], StatefulPool]

#: The faults switched on: a few rules on the calls a pool makes (connect, statements,
#: commit, and the rollback and close of its resets), bounded so every call ends.
#: Half are drawn from :func:`~poolkit.fakes.strategies.plans`; half are the classics, which
#: fire often (drawn plans often wait for an nth call or a low probability).
FAULT_PLANS = st.one_of(
    st.sampled_from(
        [
            Plan(Drop(op="execute", probability=0.3), seed=1),
            Plan(Drop(op="fetchall", phase="after", probability=0.5), seed=2),
            Plan(Raise("OperationalError", op="execute", probability=0.3), seed=3),
            Plan(Raise("OperationalError", op="commit", phase="after", probability=0.5), seed=4),
            Plan(Drop(op="commit", probability=0.5), seed=5),
            Plan(Drop(op="rollback"), Raise("OperationalError", op="close"), seed=6),
            Plan(Raise("OperationalError", op="rollback", probability=0.5), seed=7),
            Plan(Refuse(times=2), Refuse(probability=0.3), seed=8),
            Plan(Hang(FAULT_SECONDS, op="execute", then="drop", probability=0.3), seed=9),
            Plan(Latency(FAULT_SECONDS / 2, jitter=FAULT_SECONDS / 2, op="*"), seed=10),
        ]
    ),
    plans(
        min_rules=1,
        max_rules=3,
        max_seconds=FAULT_SECONDS,
        max_count=3,
        ops=("connect", "execute", "fetchall", "commit", "rollback", "close"),
    ),
)


def _is_config_error(error: BaseException, driver: Any) -> bool:
    """Whether the driver's profile calls ``error`` a configuration mistake (no retry fixes)."""
    return profile_for(driver).is_config_error(error, driver)


@dataclass
class Figures:
    """Totals over every example run in this process (the soak prints them)."""

    examples: int = 0
    steps: int = 0
    acquired: int = 0
    acquire_timeouts: int = 0
    cancels: int = 0
    kills: int = 0
    call_errors: int = 0
    #: statements run again on a fresh connection after theirs was lost (see _follow)
    retries: int = 0
    faults: Counter[str] = field(default_factory=Counter)

    def reset(self) -> None:
        """Back to zero (the soak counts each backend on its own)."""
        fresh = Figures()
        self.__dict__.update(fresh.__dict__)

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.faults.items())) or "none"
        return (
            f"{self.examples} examples, {self.steps} steps; {self.acquired} connections handed"
            f" out, {self.acquire_timeouts} acquire timeouts, {self.cancels} cancels,"
            f" {self.kills} sessions killed, {self.call_errors} calls failed"
            f" ({self.retries} more retried on a fresh connection);"
            f" {sum(self.faults.values())} faults injected ({kinds})"
        )


#: What every machine in this process has done so far.
FIGURES = Figures()


class _Op:
    """A call running in the background on the loop: an acquire or a query that may block."""

    def __init__(self, kind: str, holder: _Holder | None = None) -> None:
        self.kind = kind
        self.holder = holder
        self.scope: anyio.CancelScope | None = None  # made on the loop, where it runs
        self.cancel_requested = False
        self.done = False
        self.cancelled = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.future: Future[None] | None = None
        self.started_at = 0.0  # virtual time when the op began

    def cancel(self) -> None:
        """Cancel the op's task (call on the loop)."""
        self.cancel_requested = True
        if self.scope is not None:
            self.scope.cancel()


@dataclass
class _Holder:
    """A caller holding a connection, and what its open transaction wrote."""

    name: int
    conn: Any
    raw: Any
    #: keys inserted in the open transaction
    pending: set[int] = field(default_factory=set)
    #: keys that may be in the open transaction (the insert raised; a rollback raised)
    unsure: set[int] = field(default_factory=set)
    busy: _Op | None = None


class PoolMachine(RuleBasedStateMachine):
    """The machine; make one for a pool with :func:`pool_machine`."""

    subject_factory: ClassVar[SubjectFactory] = PoolkitSubject
    backend: ClassVar[str] = "asyncio"

    def __init__(self) -> None:
        super().__init__()
        self.clock = VirtualClock()
        self.driver = FakeDriver(clock=self.clock, name="fake", busy_timeout=0.02)
        conn = self.driver.connect()
        conn.cursor().execute(_SCHEMA)
        conn.commit()
        conn.close()
        self.driver.calls.clear()
        self.threads_before = set(threading.enumerate())
        self.stack = ExitStack()
        self.portal: BlockingPortal = self.stack.enter_context(start_blocking_portal(self.backend))
        self.subject: StatefulPool | None = None
        self.caps: frozenset[str] = frozenset()
        self.closed = False
        self.closing = False  # close() has begun
        self.min_size = self.max_size = self.bound = self.peak_bound = 0
        self.holders: dict[int, _Holder] = {}
        self.ops: list[_Op] = []  # acquires still waiting, queries still running
        self.names = iter(range(1, 1_000_000))
        self.keys = iter(range(1, 1_000_000))
        self.committed: set[int] = set()
        self.aborted: set[int] = set()
        self.maybe: set[int] = set()
        self.fault_plan = Plan()
        self.raised_on_connect: set[str] = set()  # names of the errors plans raise on connect
        self.connect_errors_passed_on = 0  # acquires that ended with one of those
        self.threads_seen: dict[int, int] = {}
        self.record_seen = 0
        FIGURES.examples += 1

    # ----- running things on the loop ---------------------------------------------------

    def _start(self, op: _Op, fn: Callable[..., Awaitable[Any]], *args: Any) -> _Op:
        async def run() -> None:
            try:
                with anyio.CancelScope() as op.scope:
                    if op.cancel_requested:
                        op.scope.cancel()
                    try:
                        op.result = await fn(*args)
                    except Exception as exc:
                        op.error = exc
                op.cancelled = op.scope.cancelled_caught
            finally:
                op.done = True

        op.started_at = self.clock.now()
        op.future = self.portal.start_task_soon(run)
        return op

    def _finish(self, op: _Op, what: str, limit: float = LIVENESS) -> _Op:
        """Wait for ``op`` to end; failing to end within ``limit`` real seconds is a bug."""
        assert op.future is not None
        try:
            op.future.result(timeout=limit)
        except TimeoutError:
            sizes = self._on_loop(self._subject.sizes) if "sizes" in self.caps else None
            raise AssertionError(
                f"{what} did not return within {limit:g} s (pool: {sizes}; driver calls "
                f"running: {self.driver.running()}, {self.driver.hanging} hanging)"
            ) from None
        return op

    def _call(self, fn: Callable[..., Awaitable[Any]], *args: Any, what: str) -> _Op:
        return self._finish(self._start(_Op("call"), fn, *args), what)

    def _on_loop(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.portal.call(fn, *args)

    def _settle(self) -> None:
        """Let the pool's background work catch up: until every background op is done or
        (with ``sizes``) the pool has nothing in flight and counts our waiting acquires."""
        deadline = time.monotonic() + SETTLE
        while time.monotonic() < deadline:
            waiting = [op for op in self.ops if not op.done]
            if not waiting:
                break
            running = {r[0] for r in self.driver.running()}
            acquires = [op for op in waiting if op.kind == "acquire"]
            hung = [op for op in waiting if op.holder is not None and op.holder.raw.id in running]
            if len(acquires) + len(hung) == len(waiting):
                if not acquires:
                    break
                if "sizes" in self.caps:
                    sizes: Sizes = self._on_loop(self._subject.sizes)
                    if sizes.transitional == 0 and sizes.waiting >= len(acquires):
                        break
            time.sleep(0.001)
        self._collect()

    def _quiet(self, limit: float) -> None:
        """With ``sizes``: wait up to ``limit`` s for nothing to be opening or closing."""
        if "sizes" in self.caps:
            deadline = time.monotonic() + limit
            while time.monotonic() < deadline:
                if self._on_loop(self._subject.sizes).transitional == 0:
                    break
                time.sleep(0.001)

    def _collect(self) -> None:
        """Take the results of background ops that ended."""
        failure: BaseException | None = None
        for op in [op for op in self.ops if op.done]:
            self.ops.remove(op)
            try:
                if op.kind == "acquire":
                    self._acquired(op)
                else:
                    holder = op.holder
                    assert holder is not None
                    holder.busy = None
                    self._after_call(holder, op, "query")
            except BaseException as exc:  # take in every op's outcome, then fail
                failure = failure or exc
        if failure is not None:
            raise failure

    @property
    def _subject(self) -> StatefulPool:
        assert self.subject is not None
        return self.subject

    # ----- what each outcome means ------------------------------------------------------

    def _acquired(self, op: _Op) -> None:
        if op.cancelled:
            return
        if op.error is not None:
            if isinstance(op.error, self._subject.timeout_error):
                FIGURES.acquire_timeouts += 1
                return
            if self.closing and isinstance(op.error, self._subject.closed_error):
                return
            if type(op.error).__name__ in self.raised_on_connect and _is_config_error(
                op.error, self.driver
            ):
                # A plan raised a configuration mistake on connect (say, ProgrammingError):
                # a pool may fail its callers at once with it. A transient error (refused,
                # OperationalError) must still be retried, never passed on.
                self.connect_errors_passed_on += 1
                return
            raise op.error
        conn = op.result
        raw = self._subject.raw(conn)
        shared = any(h.raw is raw for h in self.holders.values())
        name = next(self.names)  # held from here on, so a failed check still releases it
        self.holders[name] = _Holder(name, conn, raw)
        FIGURES.acquired += 1
        if raw is None or (raw.closed and not raw.dropped):
            # (a session killed behind the pool's back cannot be known until it is used or
            # checked; lost_reported below is what the pool was told)
            raise AssertionError(f"handed out a connection the pool closed ({raw!r})")
        if raw.lost_reported:
            raise AssertionError(
                f"handed out fake connection {raw.id}, which a call already reported lost"
            )
        if raw.in_transaction:
            raise AssertionError(f"handed out fake connection {raw.id} inside a transaction")
        running = [r for r in self.driver.running() if r[0] == raw.id]
        if running:
            raise AssertionError(f"handed out fake connection {raw.id} while it runs {running}")
        if shared:
            raise AssertionError(f"fake connection {raw.id} handed out to two callers")
        if "max_lifetime" in self.caps:
            born = self.driver.calls.filter("connect", connection=raw.id, outcome="ok")
            if born:
                # Counted from the end of the driver's connect; the pool starts counting a
                # little later, when it hears of it, and injected latencies on other threads
                # move the virtual clock meanwhile: LIFETIME_SLACK allows for that.
                age = op.started_at - (born[0].started + born[0].duration)
                if age > MAX_LIFETIME + LIFETIME_SLACK:
                    raise AssertionError(
                        f"handed out fake connection {raw.id} aged {age:g} s past "
                        f"max_lifetime={MAX_LIFETIME:g}"
                    )

    def _follow(self, holder: _Holder) -> None:
        """A pool may run a statement that found its connection lost once more on a fresh
        one (poolkit's ``retry_lost``): the holder holds that one from then on. Only safe
        when the lost one was lost and no work of the holder's open transaction goes with
        it, and the new one must be nobody else's."""
        raw = self._subject.raw(holder.conn)
        if raw is None or raw is holder.raw:
            return
        old = holder.raw
        if not old.lost_reported:
            raise AssertionError(
                f"fake connection {old.id} was swapped for {raw.id} though no call found it lost"
            )
        if holder.pending or holder.unsure:
            raise AssertionError(
                f"a call was run again on fake connection {raw.id} after its connection "
                f"{old.id} was lost with earlier work of the same transaction: "
                f"{sorted(holder.pending | holder.unsure)}"
            )
        if any(h.raw is raw for h in self.holders.values() if h is not holder):
            raise AssertionError(f"fake connection {raw.id} handed out to two callers")
        holder.raw = raw
        FIGURES.retries += 1

    def _after_call(self, holder: _Holder, op: _Op, kind: str, key: int | None = None) -> None:
        """Account for a call's outcome in the model of what the table must hold."""
        self._follow(holder)
        if op.cancelled:
            FIGURES.cancels += 1
        error = op.error
        driver_error = isinstance(error, (self.driver.Error, *self._subject.call_errors))
        if error is not None and not driver_error:
            raise error
        lost = holder.raw.lost_reported
        if error is None and not op.cancelled:
            if kind == "select" and op.result != [(1,)]:
                raise AssertionError(f"SELECT 1 returned {op.result!r}")
            if kind == "bad":
                raise AssertionError("a query of a missing table succeeded")
            if kind == "insert" and key is not None:
                holder.pending.add(key)
            elif kind == "commit":
                self.committed |= holder.pending
                self.maybe |= holder.unsure
                holder.pending, holder.unsure = set(), set()
            elif kind == "rollback":
                self.aborted |= holder.pending | holder.unsure
                holder.pending, holder.unsure = set(), set()
            return
        if error is not None:
            FIGURES.call_errors += 1
        if kind == "commit":  # it may have committed before it failed
            self.maybe |= holder.pending | holder.unsure
            holder.pending, holder.unsure = set(), set()
        elif lost:  # the session is gone, and its transaction with it
            self.aborted |= holder.pending | holder.unsure
            holder.pending, holder.unsure = set(), set()
        else:
            if key is not None:
                holder.unsure.add(key)
            if kind == "rollback" or op.cancelled:
                holder.unsure |= holder.pending
                holder.pending = set()
        given_back = getattr(self._subject, "given_back", None)
        if given_back is not None and given_back(holder.conn):
            # The pool took the connection back (lost, and no other at hand to run the
            # call again on): the caller holds nothing now, and its transaction is gone.
            if not lost:
                raise AssertionError(
                    f"the pool took fake connection {holder.raw.id} from its caller, "
                    "though no call found it lost"
                )
            del self.holders[holder.name]

    def _holder(self, which: int) -> _Holder | None:
        """A caller with a connection and no call running: one that holds one already, or
        a new one (None when none comes within a moment: every connection is busy)."""
        names = sorted(n for n, h in self.holders.items() if not h.busy)
        if names and which % (len(names) + 1) < len(names):
            return self.holders[names[which % (len(names) + 1)]]
        if len(self.ops) >= self.max_size + 2:
            return None
        op = self._start(_Op("acquire"), self._subject.acquire, 0.01)
        self.ops.append(op)
        self._finish(op, "an acquire with a timeout")
        before = set(self.holders)
        self._collect()
        new = set(self.holders) - before
        return self.holders[new.pop()] if new else None

    # ----- rules ------------------------------------------------------------------------

    @initialize(
        min_size=st.integers(0, 2),
        extra=st.integers(0, 2),
        plan=st.one_of(st.just(Plan()), FAULT_PLANS),
    )
    def open_pool(self, min_size: int, extra: int, plan: Plan) -> None:
        self.min_size, self.max_size = min_size, max(1, min_size + extra)
        self.bound = self.peak_bound = self.max_size
        spec = PoolSpec(
            driver=self.driver,
            min_size=self.min_size,
            max_size=self.max_size,
            max_lifetime=MAX_LIFETIME,
            max_idle=MAX_IDLE,
            check_idle_after=CHECK_IDLE_AFTER,
            clock=self.clock.now,
        )
        self.subject = self._on_loop(type(self).subject_factory, spec)
        self.caps = frozenset(self._subject.capabilities)
        self._driver_plan(plan)
        self._call(self._subject.open, what="open()")

    def _driver_plan(self, plan: Plan) -> None:
        self.fault_plan = plan
        self.driver.plan = Plan(_HANG_RULE, *plan.rules, seed=plan.seed)
        for fault in plan.rules:
            if isinstance(fault, Raise) and "connect" in fault.operations:
                error = fault.error
                name = error if isinstance(error, str) else getattr(error, "__name__", "")
                self.raised_on_connect.add(name or type(error).__name__)

    def _is_open(self) -> bool:
        return self.subject is not None and not self.closed

    @precondition(lambda self: self._is_open())
    @rule(timeout=st.sampled_from([None, 0.0, 0.02]))
    def acquire(self, timeout: float | None) -> None:
        if len(self.ops) >= self.max_size + 2:
            return
        self.ops.append(self._start(_Op("acquire"), self._subject.acquire, timeout))
        self._settle()

    @precondition(lambda self: self._is_open())
    @rule(which=st.integers(0, 7), kind=st.sampled_from(["select", "insert", "bad"]))
    def query(self, which: int, kind: str) -> None:
        holder = self._holder(which)
        if holder is None:
            return
        key = None
        if kind == "select":
            args: tuple[Any, ...] = ("SELECT 1",)
        elif kind == "insert":
            key = next(self.keys)
            args = ("INSERT INTO items (k, holder) VALUES (?, ?)", (key, holder.name))
        else:
            args = ("SELECT * FROM no_such_table",)
        op = self._call(self._subject.execute, holder.conn, *args, what=f"a {kind} query")
        self._after_call(holder, op, kind, key)

    @precondition(lambda self: self._is_open())
    @rule(which=st.integers(0, 7), rows=st.integers(1, 3), commit=st.booleans())
    def unit_of_work(self, which: int, rows: int, commit: bool) -> None:
        """Insert a few rows and commit (or roll back), stopping at the first error."""
        holder = self._holder(which)
        if holder is None:
            return
        for _ in range(rows):
            key = next(self.keys)
            sql = "INSERT INTO items (k, holder) VALUES (?, ?)"
            op = self._call(
                self._subject.execute, holder.conn, sql, (key, holder.name), what="an insert"
            )
            self._after_call(holder, op, "insert", key)
            if op.error is not None:
                return
        self._end(holder, commit)

    @precondition(lambda self: self._is_open())
    @rule(which=st.integers(0, 7), commit=st.booleans())
    def end_transaction(self, which: int, commit: bool) -> None:
        holder = self._holder(which)
        if holder is None:
            return
        self._end(holder, commit)

    def _end(self, holder: _Holder, commit: bool) -> None:
        fn = self._subject.commit if commit else self._subject.rollback
        op = self._call(fn, holder.conn, what="commit()" if commit else "rollback()")
        self._after_call(holder, op, "commit" if commit else "rollback")

    @precondition(lambda self: self._is_open())
    @rule(which=st.integers(0, 7))
    def release(self, which: int) -> None:
        holder = self._holder(which)
        if holder is None:
            return
        self._release(holder)
        self._settle()

    def _release(self, holder: _Holder) -> None:
        del self.holders[holder.name]
        op = self._call(self._subject.release, holder.conn, what="release()")
        if op.error is not None:
            raise op.error
        gone = holder.pending | holder.unsure
        if "rollback_on_return" in self.caps:
            self.aborted |= gone
        else:
            self.maybe |= gone

    @precondition(lambda self: self._is_open())
    @rule(which=st.integers(0, 7), timeout=st.booleans())
    def hang_query(self, which: int, timeout: bool) -> None:
        """A statement that blocks in the driver until something ends it."""
        holder = self._holder(which)
        if holder is None:
            return
        limit = QUERY_TIMEOUT if timeout and "query_timeout" in self.caps else None
        op = _Op("query", holder)
        holder.busy = op
        self.ops.append(
            self._start(op, self._subject.execute, holder.conn, f"SELECT 1 {HANG_MARK}", (), limit)
        )
        deadline = time.monotonic() + LIVENESS
        while not op.done and time.monotonic() < deadline:
            # (the raw connection may change: a statement that finds its connection lost
            # may run again on a fresh one, see _follow)
            raw = self._subject.raw(holder.conn)  # None while it is being swapped
            if raw is not None and self.driver.hanging_on(raw.id):
                break  # release() and drop() reach it now
            time.sleep(0.001)
        else:
            if not op.done:
                raise AssertionError(f"a query did not reach the driver within {LIVENESS:g} s")
        if not op.done:
            self._follow(holder)
        self._settle()

    @precondition(lambda self: self._is_open())
    @rule(which=st.integers(0, 7), how=st.sampled_from(["cancel", "release", "drop"]))
    def end_hang(self, which: int, how: str) -> None:
        """Cancel the caller, let the driver go on, or cut the connection."""
        queries = [op for op in self.ops if op.kind == "query"]
        if not queries:
            return
        op = queries[which % len(queries)]
        assert op.holder is not None
        self._follow(op.holder)  # a fault (a timed Hang that drops) may have moved it already
        if how == "cancel":
            self._on_loop(op.cancel)
        elif how == "release":
            self.driver.release(op.holder.raw.id)
        else:
            self.driver.drop(op.holder.raw.id)
            FIGURES.kills += 1
            if self._hangs_again(op):
                # The pool ran the statement once more on a fresh connection (retry_lost: the
                # first statement of a checkout, its transaction gone with the session), and
                # it hangs there too. Cut that one as well: a second retry would be a bug.
                self.driver.drop(op.holder.raw.id)
                FIGURES.kills += 1
        self._finish(op, f"a hung query ended by {how}")
        self._collect()

    def _hangs_again(self, op: _Op) -> bool:
        """Whether ``op``, a hung statement whose connection was cut, now hangs on another
        connection of its holder (the holder follows it there)."""
        holder = op.holder
        assert holder is not None
        deadline = time.monotonic() + LIVENESS
        while not op.done and time.monotonic() < deadline:
            raw = self._subject.raw(holder.conn)
            if raw is not None and raw is not holder.raw and self.driver.hanging_on(raw.id):
                self._follow(holder)
                return True
            time.sleep(0.001)
        return False

    @precondition(lambda self: self._is_open())
    @rule(which=st.integers(0, 7))
    def cancel_acquire(self, which: int) -> None:
        acquires = [op for op in self.ops if op.kind == "acquire"]
        if not acquires:
            return
        op = acquires[which % len(acquires)]
        self._on_loop(op.cancel)
        self._finish(op, "a cancelled acquire")
        if op.cancelled:
            FIGURES.cancels += 1
        self._collect()
        self._settle()

    @precondition(lambda self: self._is_open())
    @rule(which=st.integers(0, 7))
    def kill_idle_session(self, which: int) -> None:
        """Kill a session the pool holds idle, as an administrator (or a failover) would."""
        self._quiet(0.2)  # a connection still opening is not idle yet
        held = {h.raw.id for h in self.holders.values()}
        idle = sorted(
            k for k, c in self.driver.connections.items() if not c.closed and k not in held
        )
        if idle:
            self.driver.drop(idle[which % len(idle)])
            FIGURES.kills += 1

    @precondition(lambda self: self._is_open())
    @rule(seconds=st.sampled_from([1.0, CHECK_IDLE_AFTER + 1, MAX_IDLE + 1, MAX_LIFETIME + 1]))
    def advance_time(self, seconds: float) -> None:
        self._quiet(0.2)  # no connect in flight: its age is then known exactly
        self.clock.advance(seconds)
        if "maintenance" in self.caps:
            self._on_loop(self._subject.tick)
        self._settle()

    @precondition(lambda self: self._is_open() and "health_check" in self.caps)
    @rule()
    def health_check(self) -> None:
        """After check(), no idle connection the server has killed is left in the pool."""
        op = self._call(self._subject.check, what="check()")
        if op.error is not None and not isinstance(op.error, self.driver.Error):
            raise op.error
        self._settle()
        deadline = time.monotonic() + 2.0  # the discarded ones close on their threads
        while True:
            self._collect()
            held = {h.raw.id for h in self.holders.values()}
            closes = {c.connection for c in self.driver.calls.filter("close")}
            left = [
                k
                for k, c in self.driver.connections.items()
                if c.dropped and k not in held and k not in closes
            ]
            if not left:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"check() left killed idle connections {left} in the pool")
            time.sleep(0.001)

    @precondition(lambda self: self._is_open() and "resize" in self.caps)
    @rule(min_size=st.integers(0, 2), extra=st.integers(0, 2))
    def resize(self, min_size: int, extra: int) -> None:
        max_size = max(1, min_size + extra)
        op = self._call(self._subject.resize, min_size, max_size, what="resize()")
        if op.error is not None:
            raise op.error
        # A shrink takes effect as the extra connections come back (within_max_size lowers
        # the bound then); a growth at once.
        self.bound = max(self.bound, max_size)
        self.min_size, self.max_size = min_size, max_size
        self.peak_bound = max(self.peak_bound, max_size)
        self._settle()

    @precondition(lambda self: self._is_open())
    @rule(plan=FAULT_PLANS)
    def faults_on(self, plan: Plan) -> None:
        self._driver_plan(plan)

    @precondition(lambda self: self._is_open() and bool(self.fault_plan.rules))
    @rule()
    def faults_off(self) -> None:
        self._driver_plan(Plan())
        self._settle()

    @precondition(lambda self: self._is_open())
    @rule()
    def close_pool(self) -> None:
        """Close while callers still hold connections and others wait: close must finish
        once they are returned, and the waiters must get the closed error."""
        closing = self._start(_Op("close"), self._subject.close)
        self.closing = True
        time.sleep(0.002)
        self._drain()
        self._finish(closing, "close()")
        if closing.error is not None:
            raise closing.error
        self.closed = True
        self._after_close()

    @precondition(lambda self: self.closed)
    @rule()
    def acquire_after_close(self) -> None:
        op = self._call(self._subject.acquire, 0.0, what="acquire() after close")
        if not isinstance(op.error, self._subject.closed_error):
            raise AssertionError(f"acquire() after close gave {op.result or op.error!r}")

    def _drain(self) -> None:
        """Hangs released, waiting acquires cancelled, every holder released (the faults
        stay on: returns and resets meet them too)."""
        self.driver.release()
        for op in self.ops:
            if op.kind == "acquire":
                self._on_loop(op.cancel)
        for op in list(self.ops):
            deadline = time.monotonic() + LIVENESS
            grace = time.monotonic() + 0.2  # for the cancelled acquires to leave the queue
            while not op.done and time.monotonic() < deadline:
                time.sleep(0.005)
                # A statement whose connection a fault dropped may run again on a fresh one
                # (retry_lost) and hang there anew: release that one too. Or it waits for
                # that connection, maybe on a connect the virtual clock holds: then its
                # caller gives up, as the acquires above did.
                self.driver.release()
                if (
                    op.kind != "acquire"
                    and not op.cancel_requested
                    and "sizes" in self.caps
                    and time.monotonic() > grace
                    and self._on_loop(self._subject.sizes).waiting
                ):
                    self._on_loop(op.cancel)
            self._finish(op, f"a {op.kind} while draining")
        self._collect()
        for holder in list(self.holders.values()):
            self._release(holder)

    # ----- invariants -------------------------------------------------------------------

    @invariant()
    def step_counted(self) -> None:
        FIGURES.steps += 1

    @precondition(lambda self: self.subject is not None)
    @invariant()
    def connections_are_not_shared(self) -> None:
        overlaps = self.driver.concurrent_use
        if overlaps:
            raise AssertionError(f"a connection was used by two calls at once: {overlaps}")
        if "thread_affinity" in self.caps:
            calls = list(self.driver.calls)
            for call in calls[self.record_seen :]:
                if call.connection is None or call.op in ("cancel",):
                    continue
                first = self.threads_seen.setdefault(call.connection, call.thread_id)
                if first != call.thread_id:
                    raise AssertionError(
                        f"fake connection {call.connection} used from a second thread "
                        f"({call.op} on {call.thread})"
                    )
            self.record_seen = len(calls)

    @precondition(lambda self: self._is_open())
    @invariant()
    def within_max_size(self) -> None:
        live = sum(1 for c in self.driver.connections.values() if not c.closed)
        if live > self.bound:
            raise AssertionError(
                f"{live} fake connections open, max_size={self.max_size} (bound {self.bound})"
            )
        if self.driver.peak_connections > self.peak_bound:
            raise AssertionError(
                f"{self.driver.peak_connections} connections were open at once, "
                f"max_size was never above {self.peak_bound}"
            )
        total = 0
        if "sizes" in self.caps:
            sizes, unseen = self._on_loop(self._sizes_and_unseen)
            total = sizes.in_use + sizes.idle + sizes.transitional
            if total > self.bound:
                raise AssertionError(f"pool counts {sizes} > max_size bound {self.bound}")
            if sizes.in_use != len(self.holders) + unseen:
                raise AssertionError(
                    f"pool says {sizes.in_use} in use, callers hold {len(self.holders) + unseen}"
                )
        if live <= self.max_size and total <= self.max_size:  # a shrink has taken effect
            self.bound = self.max_size

    def _sizes_and_unseen(self) -> tuple[Sizes, int]:
        """On the loop, in one go: the pool's sizes and the acquires that ended with a
        connection the machine has not collected yet."""
        unseen = sum(
            1
            for op in self.ops
            if op.kind == "acquire" and op.done and op.error is None and not op.cancelled
        )
        return self._subject.sizes(), unseen

    # ----- the end ----------------------------------------------------------------------

    def _quiesce(self) -> None:
        """Faults off and time passing: the pool must again serve max_size live callers."""
        self._drain()
        self._driver_plan(Plan())
        self.clock.advance(CHECK_IDLE_AFTER + 1)
        if "maintenance" in self.caps:
            self._on_loop(self._subject.tick)
        if "sizes" in self.caps and self.min_size:
            deadline = time.monotonic() + LIVENESS
            while time.monotonic() < deadline:
                sizes: Sizes = self._on_loop(self._subject.sizes)
                if sizes.idle >= self.min_size and sizes.transitional == 0:
                    break
                time.sleep(0.002)
            else:
                raise AssertionError(
                    f"the pool did not refill to min_size={self.min_size}: {sizes}"
                )
        deadline = time.monotonic() + LIVENESS
        while True:
            passed_on = self.connect_errors_passed_on
            for _ in range(self.max_size - len(self.holders)):
                self.ops.append(self._start(_Op("acquire"), self._subject.acquire, LIVENESS))
            for op in list(self.ops):
                self._finish(op, "an acquire after the faults stopped", LIVENESS + 1)
            self._collect()
            # A pool that passes the plan's connect errors on (see _acquired) may pass one
            # more on after the faults stop, until its next attempt connects: try again.
            if self.connect_errors_passed_on == passed_on or time.monotonic() > deadline:
                break
            time.sleep(0.005)
        if len(self.holders) != self.max_size:
            raise AssertionError(
                f"with no faults, {len(self.holders)} of max_size={self.max_size} acquires "
                "succeeded"
            )
        for holder in list(self.holders.values()):
            op = self._call(self._subject.execute, holder.conn, "SELECT 1", what="SELECT 1")
            if op.error is not None and "check_on_checkout" in self.caps:
                raise AssertionError(
                    f"a connection handed out after a health check failed: {op.error!r}"
                )
            self._after_call(holder, op, "select")
        for holder in list(self.holders.values()):
            self._release(holder)

    def _after_close(self) -> None:
        subject = self._subject
        connects = self.driver.calls.filter("connect")
        opened = [c.connection for c in connects if not c.failed]
        closes = {c.connection for c in self.driver.calls.filter("close")}
        unclosed = [c for c in opened if c not in closes]
        if unclosed:
            raise AssertionError(f"fake connections {unclosed} were never closed by the pool")
        if "counts" in self.caps:
            counts: Counts = self._on_loop(subject.counts)
            record = Counts(
                opened=len(opened),
                connect_errors=len(connects) - len(opened),
                closed=len(opened),
            )
            if counts != record:
                raise AssertionError(f"pool counts {counts}, the fake recorded {record}")

    def teardown(self) -> None:
        try:
            if self.subject is not None and not self.closed:
                self._quiesce()
                self._finish(self._start(_Op("close"), self._subject.close), "close()")
                self.closed = True
                self._after_close()
            for call in self.driver.calls:
                if HANG_MARK in (call.sql or ""):
                    continue  # the machine's own hangs are not injected faults
                if call.fault is not None:
                    FIGURES.faults[call.fault.split(" ", 1)[-1].split("(", 1)[0]] += 1
                elif call.latency > 0:
                    FIGURES.faults["Latency"] += 1
        finally:
            if self.subject is not None and not self.closed:  # a step failed: clean up
                self.driver.plan = Plan()
                self.driver.release()
                with contextlib.suppress(Exception):
                    self._drain()
                with contextlib.suppress(Exception):
                    self.portal.call(self._subject.close)
            self.stack.close()
            self._check_data()
            self.driver.close()
        leaked = [t for t in set(threading.enumerate()) - self.threads_before if t.is_alive()]
        if leaked:
            raise AssertionError(f"threads still running after close: {leaked}")

    def _check_data(self) -> None:
        self.driver.plan = Plan()
        conn = self.driver.connect()
        try:
            cur = conn.cursor()
            cur.execute("SELECT k FROM items")
            present = {row[0] for row in cur.fetchall()}
        finally:
            conn.close()
        lost = self.committed - present
        if lost:
            raise AssertionError(f"committed rows lost: {sorted(lost)}")
        ghosts = (self.aborted - self.maybe) & present
        if ghosts:
            raise AssertionError(f"rows of rolled-back transactions are present: {sorted(ghosts)}")


def pool_machine(
    factory: SubjectFactory = PoolkitSubject, *, backend: str = "asyncio"
) -> type[PoolMachine]:
    """A :class:`PoolMachine` over the pools ``factory(spec)`` builds, on ``backend``."""
    if backend not in ("asyncio", "trio"):
        raise ValueError(f"backend must be 'asyncio' or 'trio', got {backend!r}")
    if backend == "trio":
        require("trio", "pool_machine(backend='trio')")
    name = getattr(factory, "__name__", type(factory).__name__)
    return type(
        f"PoolMachine_{name}_{backend}",
        (PoolMachine,),
        {"subject_factory": staticmethod(factory), "backend": backend},
    )


def run_machine(
    factory: SubjectFactory = PoolkitSubject,
    *,
    backend: str = "asyncio",
    settings: settings | None = None,
) -> None:
    """Run the machine over the pools ``factory`` builds, as pytest runs ``.TestCase``: an
    AssertionError (with the failing steps printed) when a case breaks the pool. Typed,
    unlike hypothesis' ``run_state_machine_as_test`` in some releases."""
    machine = pool_machine(factory, backend=backend)
    run_state_machine_as_test(machine, settings=settings)


def ci_settings(examples: int = 60, steps: int = 30) -> settings:
    """The fixed profile CI runs: bounded, derandomized, no deadline (steps wait on threads)."""
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        derandomize=True,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        print_blob=True,
    )


# ----- the soak: python -m poolkit.conformance.stateful ---------------------------------


def _load(spec: str) -> SubjectFactory:
    """``module:attribute`` -> the factory it names."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise SystemExit(f"--subject wants module:factory, got {spec!r}")
    module = importlib.import_module(module_name)
    factory: SubjectFactory = getattr(module, attr)
    return factory


def main(argv: list[str] | None = None) -> int:
    """Run the machine long: ``--examples`` random cases per backend; print the figures."""
    parser = argparse.ArgumentParser(
        prog="python -m poolkit.conformance.stateful",
        description="Drive a pool with random steps while the fake driver injects faults.",
    )
    parser.add_argument("--examples", type=int, default=2000, help="cases per backend")
    parser.add_argument("--steps", type=int, default=50, help="most steps per case")
    parser.add_argument("--backend", default="asyncio,trio", help="comma-separated")
    parser.add_argument(
        "--subject",
        default="poolkit.conformance.stateful:PoolkitSubject",
        help="module:factory building the pool under test from a PoolSpec",
    )
    parser.add_argument(
        "--derandomize", action="store_true", help="the fixed sequence CI runs, not a new one"
    )
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backend.split(",") if b.strip()]
    if "trio" in backends and (why := unavailable("trio")) is not None:
        parser.error(f"--backend trio: {why} (or pass --backend asyncio)")
    logging.getLogger("poolkit").setLevel(logging.ERROR)  # reconnect warnings are expected
    factory = _load(args.subject)
    failed = False
    for backend in backends:
        FIGURES.reset()
        profile = settings(
            ci_settings(args.examples, args.steps),
            derandomize=args.derandomize,
            database=None,
        )
        started = time.monotonic()
        outcome = "passed"
        try:
            run_machine(factory, backend=backend, settings=profile)
        except BaseException as exc:  # report it and go on to the next backend
            if isinstance(exc, KeyboardInterrupt):
                raise
            failed = True
            outcome = f"FAILED: {type(exc).__name__}"
            traceback.print_exc()
        elapsed = time.monotonic() - started
        name = pool_machine(factory, backend=backend).__name__
        print(f"{name}: {outcome} in {elapsed:.0f} s; {FIGURES.summary()}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
