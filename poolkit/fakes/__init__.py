"""Fakes for testing database code without a server: a PEP 249 driver and fault injection.

``FakeDriver(plan)`` is a PEP 249 module backed by a shared SQLite database (or by scripted
answers); ``inject(real_module, plan)`` puts the same faults around a real driver. A
:class:`Plan` of rules (:class:`Latency`, :class:`Raise`, :class:`Drop`, :class:`Hang`,
:class:`Refuse`) says which calls fail and how; every call is recorded in ``driver.calls``.
Hypothesis strategies for plans are in :mod:`poolkit.fakes.strategies`.

This package does not import the pool: an application that never uses ``poolkit.Pool`` can
still use the fake driver.
"""

from ._backing import Response, Script
from ._clock import Clock, RealClock, VirtualClock
from ._dbapi import (
    DatabaseError,
    DataError,
    Error,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    Warning,
)
from ._driver import FakeConnection, FakeCursor, FakeDriver
from ._engine import FaultReport, RuleReport
from ._inject import InjectedConnection, InjectedCursor, InjectedDriver, inject
from ._plan import OPERATIONS, Drop, Hang, Latency, Plan, PlanError, Raise, Refuse, Rule
from ._record import Call, CallLog

__all__ = [
    "OPERATIONS",
    "Call",
    "CallLog",
    "Clock",
    "DataError",
    "DatabaseError",
    "Drop",
    "Error",
    "FakeConnection",
    "FakeCursor",
    "FakeDriver",
    "FaultReport",
    "Hang",
    "InjectedConnection",
    "InjectedCursor",
    "InjectedDriver",
    "IntegrityError",
    "InterfaceError",
    "InternalError",
    "Latency",
    "NotSupportedError",
    "OperationalError",
    "Plan",
    "PlanError",
    "ProgrammingError",
    "Raise",
    "RealClock",
    "Refuse",
    "Response",
    "Rule",
    "RuleReport",
    "Script",
    "VirtualClock",
    "Warning",
    "inject",
]
