"""Reconnect delays: exponential, capped, jittered, and never given up."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

__all__ = ["Backoff", "Gate"]


class Backoff:
    """Delay before connect attempt number ``failures + 1``.

    ``initial * 2**(failures-1)``, capped at ``maximum``, then scaled by a random factor in
    ``[1 - jitter, 1]`` so that many pools (or processes) do not reconnect in lockstep.
    No attempt is ever the last: a pool keeps trying at the capped rate until the server returns.

    While callers wait for a connection, recovery follows demand: one attempt of the pool at
    a time skips the rest of its back-off, at most one every ``demand_interval`` seconds
    (jittered by the same factor), so a caller is served soon after the server is ready
    again, without a stampede of connects. ``demand_interval=None`` leaves it to the back-off.
    """

    def __init__(
        self,
        initial: float = 0.1,
        maximum: float = 10.0,
        jitter: float = 0.5,
        rng: random.Random | None = None,
        demand_interval: float | None = 0.1,
    ) -> None:
        if not initial > 0:
            raise ValueError(f"reconnect initial delay must be > 0, got {initial!r}")
        if maximum < initial:
            raise ValueError(
                f"reconnect maximum delay {maximum!r} is below the initial {initial!r}"
            )
        if not 0.0 <= jitter <= 1.0:
            raise ValueError(f"reconnect jitter must be in [0, 1], got {jitter!r}")
        if demand_interval is not None and not demand_interval > 0:
            raise ValueError(
                f"reconnect demand_interval must be > 0 or None, got {demand_interval!r}"
            )
        self.demand_interval = demand_interval
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self._rng = rng if rng is not None else random.Random()

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failed attempts (0 -> no wait)."""
        if failures <= 0:
            return 0.0
        base = min(self.maximum, self.initial * 2.0 ** min(failures - 1, 64))
        return base * (1.0 - self.jitter * self._rng.random())

    def jittered(self, seconds: float) -> float:
        return seconds * (1.0 - self.jitter * self._rng.random())

    def __repr__(self) -> str:
        return (
            f"Backoff(initial={self.initial}, maximum={self.maximum}, jitter={self.jitter}, "
            f"demand_interval={self.demand_interval})"
        )


class Gate:
    """Where a pool's connect attempts sleep their back-off; shared by all of them.

    A sleep ends at its deadline; at once for every sleeper when :meth:`open` is called (an
    attempt connected); at once, now and later, after :meth:`close` (the pool closes); or,
    while ``waiting()`` says callers wait for a connection, for one sleeper at a time when
    its turn comes: at most one every ``backoff.demand_interval`` (jittered). :meth:`poke`
    tells sleepers that callers started waiting. Sleepers run on worker threads; ``waiting``
    is read there (a stale answer hurries or delays one attempt by one interval at most).
    """

    def __init__(self, backoff: Backoff, waiting: Callable[[], bool]) -> None:
        self._backoff = backoff
        self._waiting = waiting
        self._cond = threading.Condition()
        self._epoch = 0  # bumped by open(): every sleep that began before it ends
        self._next_turn = 0.0  # when the next sleeper may go early for waiting callers
        self._closed = False  # close(): every sleep ends, now and later

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less (see the class)."""
        interval = self._backoff.demand_interval
        with self._cond:
            epoch = self._epoch
            end = time.monotonic() + seconds
            while True:
                now = time.monotonic()
                if self._closed or self._epoch != epoch or now >= end:
                    return
                timeout = end - now
                if interval is not None and self._waiting():
                    if now >= self._next_turn:
                        self._next_turn = now + self._backoff.jittered(interval)
                        return
                    timeout = min(timeout, self._next_turn - now)
                self._cond.wait(timeout)

    def open(self) -> None:
        """Every sleeper goes now."""
        with self._cond:
            self._epoch += 1
            self._cond.notify_all()

    def close(self) -> None:
        """The pool closes: every sleep ends now, and any that starts later at once."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def poke(self) -> None:
        """Callers started waiting: sleepers look again whether one may go early."""
        with self._cond:
            self._cond.notify_all()
