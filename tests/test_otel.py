"""``poolkit.otel``: the semantic conventions' connection pool metrics, read back through the
OpenTelemetry SDK's in-memory reader."""

from __future__ import annotations

import gc
import importlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    Metric,
    NumberDataPoint,
)

from poolkit import Pool, PoolTimeout
from poolkit.otel import BUCKETS, instrument
from tests.test_pool import FakeClock, FakeServer, eventually, queue_one, settled

pytestmark = pytest.mark.anyio

HANG = 10.0  # only turns a hang into a failure
COUNT = "db.client.connection.count"
NAME = "db.client.connection.pool.name"
STATE = "db.client.connection.state"


class Metrics:
    """A meter provider whose metrics a test reads back."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader], shutdown_on_exit=False)

    def collect(self) -> dict[str, Metric]:
        data = self.reader.get_metrics_data()
        if data is None:  # nothing to report
            return {}
        return {
            metric.name: metric
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
        }


def points(metric: Metric) -> dict[tuple[tuple[str, Any], ...], Any]:
    """Each data point by its sorted attributes: the value, or the histogram point."""
    found = {}
    for point in metric.data.data_points:
        key = tuple(sorted((point.attributes or {}).items()))
        assert isinstance(point, (HistogramDataPoint, NumberDataPoint))
        found[key] = point if isinstance(point, HistogramDataPoint) else point.value
    return found


def value(collected: dict[str, Metric], name: str, pool: str, state: str | None = None) -> Any:
    key = [(NAME, pool)] + ([(STATE, state)] if state else [])
    return points(collected[name])[tuple(sorted(key))]


@pytest.fixture
def meters() -> Iterator[Metrics]:
    found = Metrics()
    yield found
    found.provider.shutdown()


async def test_counts_by_state_carry_the_pool_name(meters: Metrics) -> None:
    pool = FakeServer().pool(min_size=2, max_size=3, name="otel", timeout=HANG)
    instrument(pool, meters.provider)
    async with pool:
        async with pool.connection():
            got = meters.collect()
            stats = pool.stats()
        await settled(pool)
        after = meters.collect()
    assert (stats.idle, stats.in_use) == (1, 1)
    assert points(got[COUNT]) == {
        ((NAME, "otel"), (STATE, "idle")): 1,
        ((NAME, "otel"), (STATE, "used")): 1,
    }
    assert [value(after, COUNT, "otel", state) for state in ("idle", "used")] == [2, 0]
    assert value(got, "db.client.connection.idle.max", "otel") == 3
    assert value(got, "db.client.connection.idle.min", "otel") == 2
    assert value(got, "db.client.connection.max", "otel") == 3
    assert value(got, "db.client.connection.pending_requests", "otel") == 0
    assert value(got, "db.client.connection.timeouts", "otel") == 0
    units = {name: metric.unit for name, metric in got.items()}
    assert units == {
        COUNT: "{connection}",
        "db.client.connection.idle.max": "{connection}",
        "db.client.connection.idle.min": "{connection}",
        "db.client.connection.max": "{connection}",
        "db.client.connection.pending_requests": "{request}",
        "db.client.connection.timeouts": "{timeout}",
        "db.client.connection.create_time": "s",
        "db.client.connection.wait_time": "s",  # the checkout; use_time comes at checkin
    }


async def test_pending_requests_show_a_waiter(meters: Metrics) -> None:
    pool = FakeServer().pool(min_size=1, max_size=1, name="queue", timeout=HANG)
    instrument(pool, meters.provider)
    pending = "db.client.connection.pending_requests"
    async with pool:
        holder = await pool.acquire()
        async with anyio.create_task_group() as tg:
            await queue_one(pool, tg)
            assert value(meters.collect(), pending, "queue") == 1
            tg.start_soon(pool.fetchall, "SELECT 1")
            await eventually(lambda: pool.stats().waiting == 2)
            assert value(meters.collect(), pending, "queue") == 2
            pool.release(holder)
        assert value(meters.collect(), pending, "queue") == 0


async def test_a_timed_out_acquire_counts_a_timeout(meters: Metrics) -> None:
    pool = FakeServer().pool(min_size=1, max_size=1, name="late")
    instrument(pool, meters.provider)
    async with pool, pool.connection():
        with anyio.fail_after(HANG), pytest.raises(PoolTimeout):
            await pool.acquire(timeout=0.05)
        assert value(meters.collect(), "db.client.connection.timeouts", "late") == 1


async def test_histograms_get_a_point_per_event(meters: Metrics) -> None:
    clock = FakeClock()
    pool = FakeServer().pool(min_size=2, max_size=2, name="timed", clock=clock, timeout=HANG)
    instrument(pool, meters.provider)
    async with pool:
        for seconds in (0.5, 2.0, 30.0):
            async with pool.connection():
                clock.advance(seconds)
        holder = await pool.acquire()
        other = await pool.acquire()
        async with anyio.create_task_group() as tg:
            await queue_one(pool, tg)
            clock.advance(0.25)
            pool.release(holder)
        pool.release(other)
        got = meters.collect()
    create = value(got, "db.client.connection.create_time", "timed")
    wait = value(got, "db.client.connection.wait_time", "timed")
    use = value(got, "db.client.connection.use_time", "timed")
    assert create.count == 2 and create.sum == 0.0  # the fake clock stood still meanwhile
    assert wait.count == 6 and wait.sum == 0.25  # only the queued caller waited
    assert use.count == 6 and use.sum == 0.5 + 2.0 + 30.0 + 0.25 + 0.25
    assert use.max == 30.0 and tuple(use.explicit_bounds) == BUCKETS
    assert pool.stats().usage_time_total == use.sum  # the same numbers as stats()


async def test_uninstrument_stops_recording(meters: Metrics) -> None:
    pool = FakeServer().pool(min_size=1, max_size=1, name="off", timeout=HANG)
    handle = instrument(pool, meters.provider)
    assert repr(handle) == "<PoolMetrics off on>"
    async with pool:
        async with pool.connection():
            pass
        handle.uninstrument()
        handle.uninstrument()  # twice is harmless
        assert repr(handle) == "<PoolMetrics off off>"
        async with pool.connection():
            got = meters.collect()
        assert COUNT not in got  # no more observations
        assert value(got, "db.client.connection.wait_time", "off").count == 1  # as it was
        assert value(got, "db.client.connection.use_time", "off").count == 1
        instrument(pool, meters.provider)  # and it can be instrumented again
        assert value(meters.collect(), COUNT, "off", "idle") == 1


async def test_pools_share_a_provider_and_each_is_instrumented_once(meters: Metrics) -> None:
    one = FakeServer().pool(min_size=1, name="one")
    two = FakeServer().pool(min_size=2, name="two")
    instrument(one, meters.provider)
    instrument(two, meters.provider)
    with pytest.raises(ValueError, match="pool one is already instrumented"):
        instrument(one, meters.provider)
    async with one, two:
        got = meters.collect()
    assert value(got, COUNT, "one", "idle") == 1
    assert value(got, COUNT, "two", "idle") == 2
    assert value(got, "db.client.connection.create_time", "two").count == 2


def test_a_dropped_pool_is_no_longer_reported(meters: Metrics) -> None:
    pool = Pool(sqlite3, ":memory:", name="dropped")
    instrument(pool, meters.provider)
    assert value(meters.collect(), COUNT, "dropped", "idle") == 0
    del pool
    gc.collect()
    assert COUNT not in meters.collect()


async def test_collecting_on_another_thread_while_the_pool_works(meters: Metrics) -> None:
    pool = FakeServer().pool(min_size=1, max_size=4, name="busy", timeout=HANG)
    instrument(pool, meters.provider)
    seen: list[dict[str, Metric]] = []

    def collect_often() -> None:
        seen.extend(meters.collect() for _ in range(100))

    async def churn() -> None:
        for _ in range(200):
            async with pool.connection() as conn:
                await conn.execute("SELECT 1")

    async with pool:
        with anyio.fail_after(HANG):
            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(churn)
                await anyio.to_thread.run_sync(collect_often)
    # A callback that raised would have been logged by the SDK and its metric left out.
    assert all(len(points(got[COUNT])) == 2 for got in seen)
    assert sum(value(seen[-1], COUNT, "busy", state) for state in ("idle", "used")) <= 4


def test_without_opentelemetry_the_import_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [m for m in sys.modules if m == "opentelemetry" or m.startswith("opentelemetry.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    monkeypatch.delitem(sys.modules, "poolkit.otel")
    with pytest.raises(ImportError, match=r"pip install 'poolkit\[otel\]'"):
        importlib.import_module("poolkit.otel")


def test_poolkit_itself_does_not_import_opentelemetry() -> None:
    code = (
        "import sys, sqlite3, poolkit\n"
        "poolkit.Pool(sqlite3, ':memory:')\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root))
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
