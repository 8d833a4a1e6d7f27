"""Where injected latency and hangs get their time.

The default :class:`RealClock` really sleeps. :class:`VirtualClock` only moves a counter, so a
property test can run thousands of "slow" calls inside hypothesis' deadline; a hang with a
timeout returns at once with the virtual time advanced, and a hang without one still blocks
until the test releases it (nothing else could end it).
"""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "RealClock", "VirtualClock"]


@runtime_checkable
class Clock(Protocol):
    """Time for the fakes: ``now``, ``sleep``, and waiting on an event with a timeout."""

    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass."""
        ...

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        """Wait until ``event`` is set (True) or ``timeout`` passes (False)."""
        ...


class RealClock:
    """Wall time: ``time.monotonic`` and real sleeps."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        return event.wait(timeout)

    def __repr__(self) -> str:
        return "RealClock()"


class VirtualClock:
    """Virtual time: ``sleep`` advances :meth:`now` and returns at once. Thread-safe.

    ``slept`` is the total virtual time spent in sleeps and timed-out waits.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._now = float(start)
        self.slept = 0.0

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (for the test to age things)."""
        if seconds < 0:
            raise ValueError(f"time cannot go backwards ({seconds!r} s)")
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                self._now += seconds
                self.slept += seconds

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        if event.is_set():
            return True
        if timeout is None:
            return event.wait()
        self.sleep(timeout)
        return event.is_set()

    def __repr__(self) -> str:
        return f"VirtualClock(now={self.now():g})"
