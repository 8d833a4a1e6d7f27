"""Applying a plan to calls: the decisions, the waits, the record.

Both the fake driver and :func:`inject` route every call through :meth:`ConnCore.run`, so the
two behave the same for the same plan. Random decisions are hashed from (seed, rule, connection
id, that connection's call number): a connection's faults do not depend on how the other
threads were scheduled. Counters in ``scope="driver"`` (the default) are shared, and are as
deterministic as the order in which the connections' calls arrive.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, TypeVar

from ._clock import Clock
from ._dbapi import ERROR_NAMES
from ._plan import Drop, Hang, Latency, Plan, Raise, Refuse, Rule
from ._record import Call, CallLog
from ._texts import Dialect, thread_misuse

__all__ = ["ConnCore", "DriverCore", "FaultReport", "RuleReport"]

log = logging.getLogger("poolkit.fakes")
T = TypeVar("T")


def _uniform(*key: object) -> float:
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass(frozen=True)
class RuleReport:
    """How one rule of the plan fared."""

    index: int
    rule: Rule
    matched: int
    fired: int
    exhausted: bool

    def __str__(self) -> str:
        state = "EXHAUSTED" if self.exhausted else ("never fired" if not self.fired else "active")
        return f"#{self.index} {self.rule!r}: matched {self.matched}, fired {self.fired} - {state}"


@dataclass(frozen=True)
class FaultReport:
    """Per rule: matched and fired counts, and whether a limited rule has run out."""

    plan: Plan
    rules: tuple[RuleReport, ...]

    @property
    def fired(self) -> int:
        return sum(r.fired for r in self.rules)

    @property
    def exhausted(self) -> list[RuleReport]:
        return [r for r in self.rules if r.exhausted]

    @property
    def unfired(self) -> list[RuleReport]:
        return [r for r in self.rules if r.fired == 0]

    def assert_all_fired(self) -> None:
        """Fail (AssertionError) when a rule never fired: the test did not test what it meant to."""
        if self.unfired:
            raise AssertionError("rules that never fired:\n" + "\n".join(map(str, self.unfired)))

    def __str__(self) -> str:
        head = f"{self.plan!r}: {self.fired} fault(s) injected"
        return "\n".join([head, *(f"  {r}" for r in self.rules)])


@dataclass(frozen=True)
class Decision:
    latency: float = 0.0
    rule: Rule | None = None
    index: int = -1

    @property
    def label(self) -> str | None:
        return None if self.rule is None else f"#{self.index} {self.rule!r}"


NO_FAULT = Decision()


class FaultState:
    """A plan and its counters. ``decide`` is the only entry; it holds the lock briefly."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self._lock = threading.Lock()
        n = len(plan.rules)
        self._matched = [0] * n
        self._fired = [0] * n
        self._per_conn: dict[tuple[int, int | None], list[int]] = {}

    def decide(self, op: str, sql: str | None, connection: int | None, counter: int) -> Decision:
        rules = self.plan.rules
        if not rules:
            return NO_FAULT
        latency = 0.0
        chosen: Rule | None = None
        chosen_index = -1
        seed = self.plan.seed
        with self._lock:
            for i, rule in enumerate(rules):
                if not rule.matches(op, sql, connection):
                    continue
                self._matched[i] += 1
                if rule.scope == "connection":
                    cell = self._per_conn.setdefault((i, connection), [0, 0])
                    cell[0] += 1
                    seen, fired = cell
                else:
                    cell = None
                    seen, fired = self._matched[i], self._fired[i]
                if isinstance(rule, Latency):
                    pass
                elif chosen is not None:
                    continue
                if seen <= rule.after or (rule.nth is not None and seen != rule.nth):
                    continue
                limit = rule.limit
                if limit is not None and fired >= limit:
                    continue
                key = (seed, i, connection, counter)
                if rule.probability < 1.0 and _uniform(*key, "p") >= rule.probability:
                    continue
                self._fired[i] += 1
                if cell is not None:
                    cell[1] += 1
                if limit is not None and fired + 1 >= limit and rule.scope == "driver":
                    log.info("fault rule #%d %r exhausted after %d firing(s)", i, rule, fired + 1)
                if isinstance(rule, Latency):
                    latency += _latency(rule, key)
                else:
                    chosen, chosen_index = rule, i
        if chosen is None and latency == 0.0:
            return NO_FAULT
        return Decision(latency, chosen, chosen_index)

    def report(self) -> FaultReport:
        with self._lock:
            out = []
            for i, rule in enumerate(self.plan.rules):
                limit = rule.limit
                if rule.scope == "connection":
                    fired_each = [c[1] for (j, _), c in self._per_conn.items() if j == i]
                    exhausted = limit is not None and any(f >= limit for f in fired_each)
                else:
                    exhausted = limit is not None and self._fired[i] >= limit
                out.append(RuleReport(i, rule, self._matched[i], self._fired[i], exhausted))
        return FaultReport(self.plan, tuple(out))


def _latency(rule: Latency, key: tuple[object, ...]) -> float:
    if callable(rule.seconds):
        rng = random.Random(int(_uniform(*key, "latency") * 2**53))
        value = float(rule.seconds(rng))
    elif rule.jitter == 0:
        value = float(rule.seconds)
    elif rule.distribution == "normal":
        u = min(max(_uniform(*key, "latency"), 1e-12), 1 - 1e-12)
        value = NormalDist(float(rule.seconds), rule.jitter).inv_cdf(u)
    else:
        value = rule.seconds + (2 * _uniform(*key, "latency") - 1) * rule.jitter
    return max(0.0, value)


class _Wait:
    __slots__ = ("connection", "event", "reason", "thread")

    def __init__(self, connection: int | None) -> None:
        self.connection = connection
        self.thread = threading.current_thread()
        self.event = threading.Event()
        self.reason: str | None = None

    def wake(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self.event.set()


class DriverCore:
    """What all connections of one fake or injected driver share."""

    def __init__(
        self,
        module: Any,
        dialect: Dialect,
        plan: Plan,
        clock: Clock,
        log: CallLog,
        threadsafety: int,
        strict_threads: bool,
    ) -> None:
        self.module = module
        self.dialect = dialect
        self.faults = FaultState(plan)
        self.clock = clock
        self.log = log
        self.strict_threads = strict_threads and threadsafety < 2
        self._lock = threading.Lock()
        self._attempts = 0
        self._hangs = threading.Condition()
        #: calls that began on a connection while another call ran on it (close and cancel,
        #: which drivers allow from another thread, are not counted)
        self.overlaps: list[str] = []
        self._waits: set[_Wait] = set()

    # ----- plan -------------------------------------------------------------------------

    def use(self, plan: Plan) -> None:
        self.faults = FaultState(plan)

    # ----- connect ----------------------------------------------------------------------

    def connect(self, make: Callable[[int], T], params: Any) -> T:
        """Number the attempt, apply connect faults, then ``make(connection_id)``."""
        with self._lock:
            self._attempts += 1
            conn_id = self._attempts
        call = _CallRecorder(self, conn_id, None, "connect", None, params, None, 0)
        decision = self.faults.decide("connect", None, conn_id, 0)
        try:
            call.decision = decision
            if decision.latency:
                self.clock.sleep(decision.latency)
            rule = decision.rule
            if isinstance(rule, Hang):
                self.hang(rule, None)
            elif isinstance(rule, Refuse):
                raise self.dialect.refused(self.module)
            elif isinstance(rule, Raise) and rule.phase == "before":
                raise self.error(rule, decision.index)
            result = make(conn_id)
            if isinstance(rule, Raise) and rule.phase == "after":
                # Connected, but the answer was lost: the caller never sees the connection,
                # so the session it opened must end here, not leak.
                try:
                    result.close()  # type: ignore[attr-defined]
                except Exception:
                    log.debug("closing a connection whose connect failed late", exc_info=True)
                raise self.error(rule, decision.index)
            return result
        except BaseException as exc:
            call.error = exc
            raise
        finally:
            call.done()

    # ----- errors -----------------------------------------------------------------------

    def error(self, rule: Raise, index: int) -> BaseException:
        spec = rule.error
        if isinstance(spec, BaseException):
            return copy.copy(spec)
        if isinstance(spec, str):
            cls = getattr(self.module, spec)
        else:
            cls = self._driver_class(spec)
        message = rule.message or f"{cls.__name__} injected by fault rule #{index} {rule!r}"
        error: BaseException = cls(message)
        return error

    def _driver_class(self, cls: type[BaseException]) -> type[BaseException]:
        """A PEP 249 class of another driver (or of the fake) becomes this driver's own."""
        base = getattr(self.module, "Error", None)
        name = cls.__name__
        if isinstance(base, type) and not issubclass(cls, base):
            own = getattr(self.module, name, None)
            if isinstance(own, type) and issubclass(own, BaseException) and name in _PEP249:
                return own
        return cls

    # ----- hangs ------------------------------------------------------------------------

    def hang(self, rule: Hang, conn: ConnCore | None) -> None:
        """Block as the rule says; return to run the call, or raise."""
        wait = _Wait(conn.id if conn is not None else None)
        with self._hangs:
            self._waits.add(wait)
            self._hangs.notify_all()
        if conn is not None:
            conn.wait = wait
            if conn.dropped:
                wait.wake("drop")
        try:
            woken = self.clock.wait(wait.event, rule.timeout)
        finally:
            if conn is not None:
                conn.wait = None
            with self._hangs:
                self._waits.discard(wait)
        reason = wait.reason if woken else "timeout"
        if reason == "release":
            return
        if reason == "cancel":
            raise self.dialect.cancelled(self.module)
        if reason in ("drop", "close"):
            raise self.dialect.disconnect(self.module)
        # timed out
        if rule.then == "proceed":
            return
        if rule.then == "drop" and conn is not None:
            conn.drop()
            raise self.dialect.disconnect(self.module)
        raise self.dialect.timeout(self.module)

    @property
    def hanging(self) -> int:
        """How many calls are blocked in a :class:`Hang` right now."""
        with self._hangs:
            return len(self._waits)

    def hanging_on(self, connection: int) -> bool:
        """Whether a call of ``connection`` is blocked in a :class:`Hang` right now."""
        with self._hangs:
            return any(w.connection == connection for w in self._waits)

    def wait_for_hang(self, count: int, timeout: float) -> bool:
        with self._hangs:
            return self._hangs.wait_for(lambda: len(self._waits) >= count, timeout)

    def release(self, connection: int | None) -> int:
        with self._hangs:
            waits = [w for w in self._waits if connection in (None, w.connection)]
        for wait in waits:
            wait.wake("release")
        return len(waits)


_PEP249 = frozenset(ERROR_NAMES)


class _CallRecorder:
    __slots__ = (
        "autocommit",
        "conn_id",
        "core",
        "cursor",
        "decision",
        "error",
        "op",
        "params",
        "sql",
        "started",
        "transaction",
    )

    def __init__(
        self,
        core: DriverCore,
        conn_id: int | None,
        cursor: int | None,
        op: str,
        sql: str | None,
        params: Any,
        transaction: int | None,
        autocommit: bool | int,
    ) -> None:
        self.core = core
        self.conn_id = conn_id
        self.cursor = cursor
        self.op = op
        self.sql = sql
        self.params = params
        self.transaction = transaction
        self.autocommit = bool(autocommit)
        self.decision = NO_FAULT
        self.error: BaseException | None = None
        self.started = core.clock.now()

    def done(self) -> None:
        core = self.core
        thread = threading.current_thread()
        error = self.error
        core.log.add(
            Call(
                seq=core.log.next_seq(),
                connection=self.conn_id,
                cursor=self.cursor,
                thread=thread.name,
                thread_id=thread.ident or 0,
                op=self.op,
                sql=self.sql,
                params=self.params,
                outcome="ok" if error is None else "error",
                error=None if error is None else f"{type(error).__name__}: {error}".strip(),
                fault=self.decision.label,
                started=self.started,
                duration=core.clock.now() - self.started,
                latency=self.decision.latency,
                transaction=self.transaction,
                autocommit=self.autocommit,
            )
        )


class ConnCore:
    """Per-connection state for fault injection: id, counters, drop, owner thread."""

    def __init__(
        self,
        driver: DriverCore,
        conn_id: int,
        autocommit: Callable[[], bool],
        on_drop: Callable[[], None],
        on_interrupt: Callable[[], None] = lambda: None,
    ) -> None:
        self.driver = driver
        self.id = conn_id
        self.autocommit = autocommit
        #: frees the backing (closes the real connection); runs on a thread not in a call
        self.on_drop = on_drop
        #: stops a call running on another thread (a statement inside the backing)
        self.on_interrupt = on_interrupt
        self.owner = threading.current_thread()
        self.calls = 0
        self.transaction = 1
        self.dropped = False
        #: a call raised the driver's disconnect error: its caller was told the link is gone
        self.lost_reported = False
        self.wait: _Wait | None = None
        self._lock = threading.Lock()
        self._active = 0
        self._close_pending = False
        #: (op, sql) of the call in progress, like a server's view of its sessions
        self.current: tuple[str, str | None] | None = None

    def check_thread(self) -> None:
        if self.driver.strict_threads:
            current = threading.current_thread()
            if current is not self.owner:
                raise self.driver.module.ProgrammingError(
                    thread_misuse(self.id, self.owner.name, current.name)
                )

    def run(
        self, op: str, sql: str | None, params: Any, cursor: int | None, fn: Callable[[], T]
    ) -> T:
        """Run one driver call with the plan's faults applied, and record it."""
        driver = self.driver
        autocommit = self.autocommit() if not self.dropped else False
        call = _CallRecorder(
            driver,
            self.id,
            cursor,
            op,
            sql,
            params,
            None if autocommit else self.transaction,
            autocommit,
        )
        with self._lock:
            other = self.current
            if other is not None and "close" not in (op, other[0]) and op != "cancel":
                driver.overlaps.append(
                    f"connection {self.id}: {op} began on {threading.current_thread().name}"
                    f" while {other[0]} was running"
                )
            self._active += 1
            mine = self.current = (op, sql)
        try:
            self.check_thread()
            if self.dropped:
                if op == "close":  # the drop freed the backing already
                    return None  # type: ignore[return-value]
                raise driver.dialect.disconnect(driver.module)
            self.calls += 1
            decision = driver.faults.decide(op, sql, self.id, self.calls)
            call.decision = decision
            if decision.latency:
                driver.clock.sleep(decision.latency)
            rule = decision.rule
            if isinstance(rule, Hang):
                driver.hang(rule, self)
            elif isinstance(rule, Raise) and rule.phase == "before":
                raise driver.error(rule, decision.index)
            elif isinstance(rule, Drop) and rule.phase == "before":
                self.drop()
                if op != "close":
                    raise driver.dialect.disconnect(driver.module)
            try:
                result = fn()
            except Exception:
                if self.dropped and op != "close":
                    # Lost mid-call (the test dropped it, or a kill): whatever the interrupted
                    # backing said, the caller sees the driver's disconnect error.
                    raise driver.dialect.disconnect(driver.module) from None
                raise
            if op in ("commit", "rollback"):
                self.transaction += 1
            if isinstance(rule, Raise) and rule.phase == "after":
                raise driver.error(rule, decision.index)
            if isinstance(rule, Drop) and rule.phase == "after":
                self.drop()
                if op != "close":
                    raise driver.dialect.disconnect(driver.module)
            return result
        except BaseException as exc:
            call.error = exc
            if self.dropped and op != "close":
                self.lost_reported = True
            raise
        finally:
            with self._lock:
                if self.current is mine:
                    self.current = None
                self._active -= 1
                free = self._close_pending and self._active == 0
                if free:
                    self._close_pending = False
            if free:
                self._free()
            call.done()

    def drop(self) -> None:
        """Lose the connection: wake a hung call, free the backing, fail every later call.

        The backing is freed at once when no call is running; otherwise the running call is
        interrupted and its own thread frees the backing as it leaves.
        """
        with self._lock:
            if self.dropped:
                return
            self.dropped = True
            busy = self._active > 0
            self._close_pending = busy
        wait = self.wait
        if wait is not None:
            wait.wake("drop")
        if busy:
            try:
                self.on_interrupt()
            except Exception:
                log.debug("interrupting dropped connection %d failed", self.id, exc_info=True)
        else:
            self._free()

    def _free(self) -> None:
        try:
            self.on_drop()
        except Exception:  # the backing is being thrown away; its close may fail
            log.debug("closing dropped connection %d failed", self.id, exc_info=True)

    def cancel(self) -> None:
        """Another thread cancels the running call (a hang ends with the cancel error)."""
        wait = self.wait
        if wait is not None:
            wait.wake("cancel")

    def closing(self) -> None:
        """The connection is being closed from another thread: a hung call ends."""
        wait = self.wait
        if wait is not None and threading.current_thread() is not wait.thread:
            wait.wake("close")
