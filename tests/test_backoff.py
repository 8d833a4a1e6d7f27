"""Reconnect back-off: exponential, capped, jittered, and never given up (PITFALLS:
psycopg #1315, a reconnect loop that gave up for good after the server was down a while)."""

from __future__ import annotations

import random
import threading
from typing import Any

import anyio
import pytest

from poolkit import Backoff, Pool

HANG = 10.0  # a bound only a hang reaches


def test_no_failure_no_wait() -> None:
    assert Backoff().delay(0) == 0.0


def test_delays_double_then_stop_at_the_maximum() -> None:
    backoff = Backoff(initial=0.1, maximum=2.0, jitter=0.0)
    assert [backoff.delay(n) for n in range(1, 8)] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]


@pytest.mark.parametrize("failures", [10, 64, 65, 1000, 10**9])
def test_the_cap_holds_after_any_number_of_failures(failures: int) -> None:
    """No overflow, no infinity, no "give up" value however long the outage."""
    backoff = Backoff(initial=0.1, maximum=5.0, jitter=0.0)
    assert backoff.delay(failures) == 5.0


def test_jitter_stays_within_its_band() -> None:
    backoff = Backoff(initial=1.0, maximum=8.0, jitter=0.5, rng=random.Random(7))
    delays = [backoff.delay(4) for _ in range(500)]  # base 8.0
    assert min(delays) >= 4.0 and max(delays) <= 8.0
    assert max(delays) - min(delays) > 2.0  # it does spread (so a fleet does not sync up)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial": 0}, "initial delay must be > 0"),
        ({"initial": 1.0, "maximum": 0.5}, "below the initial"),
        ({"jitter": 1.5}, "jitter must be in [0, 1]"),
    ],
)
def test_bad_settings_are_refused_by_name(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Backoff(**kwargs)


class _Recording(Backoff):
    def __init__(self) -> None:
        super().__init__(initial=0.0005, maximum=0.002, jitter=0.0)
        self.asked: list[float] = []

    def delay(self, failures: int) -> float:
        value = super().delay(failures)
        self.asked.append(value)
        return value


@pytest.mark.anyio
async def test_a_long_outage_never_ends_the_retries() -> None:
    """Hundreds of failed rounds later the pool still tries, every wait is at most the cap,
    stats() shows it failing (with the last error), and it serves once the server is back."""
    import sqlite3

    lock = threading.Lock()
    state = {"down": True, "attempts": 0}

    def connect() -> sqlite3.Connection:
        with lock:
            state["attempts"] += 1
            if state["down"]:
                raise sqlite3.OperationalError("could not connect: server is down")
        return sqlite3.connect(":memory:")

    backoff = _Recording()
    pool = Pool(connect=connect, min_size=1, max_size=2, backoff=backoff, timeout=HANG)
    await pool.open(wait=False)
    try:
        with anyio.fail_after(HANG):
            while pool.stats().consecutive_connect_errors < 300:
                await anyio.sleep(0.01)
        stats = pool.stats()
        assert stats.last_connect_error == "OperationalError: could not connect: server is down"
        assert stats.idle == 0 and stats.connections_opened == 0
        assert max(backoff.asked) <= backoff.maximum
        assert backoff.asked.count(backoff.maximum) > 200  # it stayed at the cap, retrying
        with lock:
            state["down"] = False
        with anyio.fail_after(HANG):
            async with pool.connection() as conn:
                cur = await conn.execute("SELECT 42")
                assert await cur.fetchone() == (42,)
        stats = pool.stats()
        assert stats.consecutive_connect_errors == 0 and stats.connect_errors >= 300
    finally:
        await pool.close()
