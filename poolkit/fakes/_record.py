"""The record of every call a fake or injected driver saw, queryable from tests."""

from __future__ import annotations

import fnmatch
import re
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, overload

__all__ = ["Call", "CallLog"]

STATEMENTS = ("execute", "executemany", "callproc")


@dataclass(frozen=True)
class Call:
    """One driver call as it happened.

    ``transaction`` numbers the connection's transactions (each commit or rollback ends one);
    it is None when the call ran in autocommit mode. ``fault`` is the rule that hit the call,
    as printed in the plan (``"#0 Drop(nth=1)"``), or None. Times come from the driver's clock.
    """

    seq: int
    connection: int | None
    cursor: int | None
    thread: str
    thread_id: int
    op: str
    sql: str | None
    params: Any
    outcome: Literal["ok", "error"]
    error: str | None
    fault: str | None
    started: float
    duration: float
    latency: float
    transaction: int | None
    autocommit: bool

    @property
    def failed(self) -> bool:
        return self.outcome == "error"


class CallLog:
    """Calls in the order they finished. Thread-safe; holds the last ``maxlen`` calls.

    ``dropped`` counts calls that fell off the front when ``maxlen`` was reached.
    """

    def __init__(self, maxlen: int | None = 100_000) -> None:
        self._lock = threading.Lock()
        self._calls: deque[Call] = deque(maxlen=maxlen)
        self._seq = 0
        self.dropped = 0

    def next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    def add(self, call: Call) -> None:
        with self._lock:
            if self._calls.maxlen is not None and len(self._calls) == self._calls.maxlen:
                self.dropped += 1
            self._calls.append(call)

    def clear(self) -> None:
        """Forget every call so far (a test's set-up calls, say)."""
        with self._lock:
            self._calls.clear()
            self.dropped = 0

    def __iter__(self) -> Iterator[Call]:
        with self._lock:
            return iter(list(self._calls))

    def __len__(self) -> int:
        return len(self._calls)

    @overload
    def __getitem__(self, index: int) -> Call: ...
    @overload
    def __getitem__(self, index: slice) -> list[Call]: ...
    def __getitem__(self, index: int | slice) -> Call | list[Call]:
        with self._lock:
            if isinstance(index, slice):
                return list(self._calls)[index]
            return self._calls[index]

    def __repr__(self) -> str:
        return f"<CallLog {len(self)} calls>"

    def filter(
        self,
        op: str | Iterable[str] | None = None,
        *,
        connection: int | None = None,
        sql: str | None = None,
        outcome: Literal["ok", "error"] | None = None,
        faulted: bool | None = None,
    ) -> list[Call]:
        """The calls that fit every given filter. ``op`` takes names or globs (``"fetch*"``), as
        rules do; ``sql`` is a regex searched case-insensitively."""
        ops = [op] if isinstance(op, str) else (list(op) if op is not None else None)
        pattern = re.compile(sql, re.IGNORECASE) if sql is not None else None
        out = []
        for call in self:
            if ops is not None and not any(fnmatch.fnmatchcase(call.op, o) for o in ops):
                continue
            if connection is not None and call.connection != connection:
                continue
            if pattern is not None and (call.sql is None or not pattern.search(call.sql)):
                continue
            if outcome is not None and call.outcome != outcome:
                continue
            if faulted is not None and (call.fault is not None) != faulted:
                continue
            out.append(call)
        return out

    def statements(self, connection: int | None = None) -> list[Call]:
        """``execute``, ``executemany`` and ``callproc`` calls."""
        return self.filter(STATEMENTS, connection=connection)

    def connects(self, outcome: Literal["ok", "error"] | None = None) -> int:
        """How many connection attempts (of the given outcome) were made."""
        return len(self.filter("connect", outcome=outcome))

    def threads(self, connection: int) -> set[str]:
        """Names of the threads that touched a connection."""
        return {c.thread for c in self.filter(connection=connection)}

    def outside_transaction(self) -> list[Call]:
        """Statements that ran in autocommit mode, outside any transaction."""
        return [c for c in self.statements() if c.transaction is None]

    def faults(self) -> list[Call]:
        """Calls a fault rule hit."""
        return self.filter(faulted=True)

    def connections(self) -> list[int]:
        """Ids of the connections that were opened, in order."""
        return [c.connection for c in self.filter("connect", outcome="ok") if c.connection]
