"""Reconnect delays: exponential, capped, jittered, and never given up."""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """Delay before connect attempt number ``failures + 1``.

    ``initial * 2**(failures-1)``, capped at ``maximum``, then scaled by a random factor in
    ``[1 - jitter, 1]`` so that many pools (or processes) do not reconnect in lockstep.
    No attempt is ever the last: a pool keeps trying at the capped rate until the server returns.
    """

    def __init__(
        self,
        initial: float = 0.1,
        maximum: float = 10.0,
        jitter: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        if not initial > 0:
            raise ValueError(f"reconnect initial delay must be > 0, got {initial!r}")
        if maximum < initial:
            raise ValueError(
                f"reconnect maximum delay {maximum!r} is below the initial {initial!r}"
            )
        if not 0.0 <= jitter <= 1.0:
            raise ValueError(f"reconnect jitter must be in [0, 1], got {jitter!r}")
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

    def __repr__(self) -> str:
        return f"Backoff(initial={self.initial}, maximum={self.maximum}, jitter={self.jitter})"
