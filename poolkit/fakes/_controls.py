"""What a test can do to a fake or injected driver: swap the plan, read the record and the
fault report, drop connections, release hangs."""

from __future__ import annotations

import threading
from typing import Any

from .._redact import MASK, SECRET_KEY, Redactor
from ._clock import Clock
from ._engine import ConnCore, DriverCore, FaultReport
from ._plan import Plan, PlanError
from ._record import CallLog

__all__ = ["Controls", "mask_connect"]


def mask_connect(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """Connect arguments as recorded: every password masked."""
    if not args and not kwargs:
        return None
    redact = Redactor(args, kwargs)

    def value(key: str, v: Any) -> Any:
        if SECRET_KEY.search(key):
            return MASK  # whatever its type: PyMySQL takes a bytes password
        return redact(v) if isinstance(v, str) else v

    return {
        "args": [redact(a) if isinstance(a, str) else a for a in args],
        "kwargs": {k: value(k, v) for k, v in kwargs.items()},
    }


class Controls:
    """The test-facing half of :class:`FakeDriver` and of :func:`inject`'s wrapper."""

    _core: DriverCore

    def __init__(self) -> None:
        self._conn_lock = threading.Lock()
        self._live: dict[int, tuple[Any, ConnCore]] = {}
        self._peak = 0

    def _remember(self, conn_id: int, conn: Any, core: ConnCore) -> None:
        with self._conn_lock:
            self._live[conn_id] = (conn, core)
            alive = sum(1 for _, c in self._live.values() if not c.dropped)
            self._peak = max(self._peak, alive)

    @property
    def peak_connections(self) -> int:
        """The most connections that were open at once (neither closed nor dropped): what a
        server would have seen; check a pool's ``max_size`` with it."""
        with self._conn_lock:
            return self._peak

    @property
    def concurrent_use(self) -> list[str]:
        """Each time a call began on a connection while another call was still running on it
        (a pool sharing one connection between two tasks, say); ``close`` and ``cancel``, which
        drivers allow from another thread, are not counted. Empty in a correct program."""
        return list(self._core.overlaps)

    def _forget(self, conn_id: int) -> None:
        with self._conn_lock:
            self._live.pop(conn_id, None)

    @property
    def plan(self) -> Plan:
        """The plan in force. Setting it starts the new plan's counters from zero."""
        return self._core.faults.plan

    @plan.setter
    def plan(self, plan: Plan) -> None:
        if not isinstance(plan, Plan):
            raise PlanError(f"plan must be a Plan, got {plan!r}")
        self._core.use(plan)

    @property
    def calls(self) -> CallLog:
        """Every call so far (see :class:`CallLog`)."""
        return self._core.log

    @property
    def clock(self) -> Clock:
        return self._core.clock

    def report(self) -> FaultReport:
        """How each rule of the current plan fared: matched, fired, exhausted."""
        return self._core.faults.report()

    @property
    def connections(self) -> dict[int, Any]:
        """Connections not closed yet, by id (dropped ones stay until they are closed)."""
        with self._conn_lock:
            return {k: conn for k, (conn, _) in self._live.items()}

    def running(self) -> list[tuple[int, str, str | None]]:
        """``(connection, op, sql)`` of every call in progress now (a server's activity view)."""
        with self._conn_lock:
            cores = [core for _, core in self._live.values()]
        out = []
        for core in cores:
            current = core.current
            if current is not None:
                out.append((core.id, *current))
        return out

    def drop(self, connection: int | None = None) -> int:
        """Lose one connection (by id) or all, as a server restart would; returns how many.

        A call running on it fails with the driver's disconnect error; later calls fail too.
        """
        with self._conn_lock:
            targets = [c for k, (_, c) in self._live.items() if connection in (None, k)]
        for core in targets:
            core.drop()
        return len(targets)

    def release(self, connection: int | None = None) -> int:
        """Let hung calls (of one connection, or all) go on; returns how many were released."""
        return self._core.release(connection)

    @property
    def hanging(self) -> int:
        """How many calls are blocked in a :class:`Hang` now."""
        return self._core.hanging

    def hanging_on(self, connection: int) -> bool:
        """Whether a call of connection ``connection`` is blocked in a :class:`Hang` now
        (so that :meth:`release` or :meth:`drop` will reach it)."""
        return self._core.hanging_on(connection)

    def wait_for_hang(self, count: int = 1, timeout: float = 5.0) -> bool:
        """Block until ``count`` calls hang (True) or ``timeout`` real seconds pass (False)."""
        return self._core.wait_for_hang(count, timeout)
