"""OpenTelemetry metrics for a pool: ``instrument(pool)``. Needs ``pip install 'poolkit[otel]'``.

The metrics are the semantic conventions' database client connection pool metrics
(https://opentelemetry.io/docs/specs/semconv/database/database-metrics/), spelled as since
semantic conventions v1.26 (``db.client.connection.*``, attributes
``db.client.connection.pool.name`` and ``db.client.connection.state``; before that they were
``db.client.connections.*`` with ``pool.name`` and ``state``). The conventions still mark
them as in development.

- ``db.client.connection.count`` ({connection}), by ``db.client.connection.state``:
  ``idle`` is ``stats().idle``, ``used`` is ``stats().in_use + stats().resetting``;
- ``db.client.connection.idle.max`` and ``db.client.connection.max`` ({connection}): the
  pool's ``max_size``; ``db.client.connection.idle.min`` ({connection}): its ``min_size``;
- ``db.client.connection.pending_requests`` ({request}): ``stats().waiting``;
- ``db.client.connection.timeouts`` ({timeout}, a counter): ``stats().timeouts``;
- ``db.client.connection.create_time``, ``.wait_time`` and ``.use_time`` (histograms, s):
  the ``create``, ``wait`` and ``use`` seconds of ``connect``, ``checkout`` and ``checkin``
  events.

The counts are observable up-down counters and the timeouts an observable counter: they
read :meth:`Pool.stats` when the SDK collects, maybe on its exporter's thread, so they are
a best-effort snapshot. The histograms are recorded from the pool's events
(:class:`~poolkit.PoolEvent` ``extra``) on the event loop, bucketed at 1 ms to 10 s.

Every point carries ``db.client.connection.pool.name`` (the pool's ``name``). A connection
being reset after its return counts as ``used`` (it is not available yet); connections
still opening or being closed are in neither state, so ``idle + used`` is
``stats().size - opening - closing``.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

try:
    from opentelemetry import metrics
except ImportError as exc:
    raise ImportError(
        "poolkit.otel needs the OpenTelemetry API (opentelemetry-api): pip install 'poolkit[otel]'"
    ) from exc

from . import __version__
from ._stats import PoolEvent, Stats

if TYPE_CHECKING:
    from ._pool import Pool

__all__ = ["PoolMetrics", "instrument"]

POOL_NAME = "db.client.connection.pool.name"
STATE = "db.client.connection.state"
#: seconds; the conventions' boundaries for database client durations
BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)

#: values of one observable instrument for one pool, each with its state (None: no state)
Reading = Callable[[Stats], Iterable[tuple[int, str | None]]]

_UP_DOWN: tuple[tuple[str, str, str, Reading], ...] = (
    (
        "db.client.connection.count",
        "{connection}",
        "The number of connections that are currently in state described by the state attribute.",
        lambda s: ((s.idle, "idle"), (s.in_use + s.resetting, "used")),
    ),
    (
        "db.client.connection.idle.max",
        "{connection}",
        "The maximum number of idle open connections allowed.",
        lambda s: ((s.max_size, None),),
    ),
    (
        "db.client.connection.idle.min",
        "{connection}",
        "The minimum number of idle open connections allowed.",
        lambda s: ((s.min_size, None),),
    ),
    (
        "db.client.connection.max",
        "{connection}",
        "The maximum number of open connections allowed.",
        lambda s: ((s.max_size, None),),
    ),
    (
        "db.client.connection.pending_requests",
        "{request}",
        "The number of current pending requests for an open connection.",
        lambda s: ((s.waiting, None),),
    ),
)
_TIMEOUTS: tuple[str, str, str, Reading] = (
    "db.client.connection.timeouts",
    "{timeout}",
    "The number of connection timeouts that have occurred trying to obtain a connection "
    "from the pool.",
    lambda s: ((s.timeouts, None),),
)
#: event kind: (its ``extra`` key, histogram name, description)
_HISTOGRAMS = {
    "connect": (
        "create",
        "db.client.connection.create_time",
        "The time it took to create a new connection.",
    ),
    "checkout": (
        "wait",
        "db.client.connection.wait_time",
        "The time it took to obtain an open connection from the pool.",
    ),
    "checkin": (
        "use",
        "db.client.connection.use_time",
        "The time between borrowing a connection and returning it to the pool.",
    ),
}


def instrument(pool: Pool, meter_provider: metrics.MeterProvider | None = None) -> PoolMetrics:
    """Report ``pool``'s metrics through ``meter_provider`` (default: the global one) until
    :meth:`PoolMetrics.uninstrument`. Any number of pools may share a provider; instrumenting
    one pool twice with the same provider raises ``ValueError``."""
    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    with _instruments_lock:
        instruments = _instruments.get(provider)
        if instruments is None:
            instruments = _instruments[provider] = _Instruments(provider)
    return instruments.add(pool)


class PoolMetrics:
    """One pool's metrics, from :func:`instrument`. It holds the pool weakly: a pool dropped
    without :meth:`uninstrument` simply stops being reported."""

    def __init__(self, pool: Pool, instruments: _Instruments) -> None:
        self._pool = weakref.ref(pool)
        self._instruments = instruments

    def __repr__(self) -> str:
        pool = self._pool()
        name = pool.name if pool is not None else "(gone)"
        state = "on" if self in self._instruments.handles() else "off"
        return f"<PoolMetrics {name} {state}>"

    def uninstrument(self) -> None:
        """Stop reporting this pool (its observations end; histograms keep what they hold)."""
        self._instruments.remove(self)
        pool = self._pool()
        if pool is not None:
            with contextlib.suppress(ValueError):  # uninstrumented already
                pool.remove_listener(self._record)

    def _record(self, event: PoolEvent) -> None:
        entry = self._instruments.histograms.get(event.kind)
        if entry is not None:
            key, histogram = entry
            histogram.record(event.extra[key], {POOL_NAME: event.pool})


class _Instruments:
    """The instruments of one meter provider, shared by all the pools reported through it.

    The SDK keeps the callbacks of an instrument name's first registration only, so one
    callback per instrument reports every pool.
    """

    def __init__(self, provider: metrics.MeterProvider) -> None:
        meter = provider.get_meter("poolkit", __version__)
        self._lock = threading.Lock()
        self._handles: list[PoolMetrics] = []
        for name, unit, description, read in _UP_DOWN:
            meter.create_observable_up_down_counter(
                name, [self._callback(read)], unit=unit, description=description
            )
        name, unit, description, read = _TIMEOUTS
        meter.create_observable_counter(
            name, [self._callback(read)], unit=unit, description=description
        )
        self.histograms = {
            kind: (
                key,
                meter.create_histogram(
                    name, unit="s", description=text, explicit_bucket_boundaries_advisory=BUCKETS
                ),
            )
            for kind, (key, name, text) in _HISTOGRAMS.items()
        }

    def add(self, pool: Pool) -> PoolMetrics:
        with self._lock:
            if any(handle._pool() is pool for handle in self._handles):
                raise ValueError(f"pool {pool.name} is already instrumented with this provider")
            handle = PoolMetrics(pool, self)
            self._handles.append(handle)
        pool.add_listener(handle._record)
        return handle

    def remove(self, handle: PoolMetrics) -> None:
        with self._lock:
            if handle in self._handles:
                self._handles.remove(handle)

    def handles(self) -> list[PoolMetrics]:
        with self._lock:
            return list(self._handles)

    def _callback(
        self, read: Reading
    ) -> Callable[[metrics.CallbackOptions], Iterable[metrics.Observation]]:
        def observe(options: metrics.CallbackOptions) -> list[metrics.Observation]:
            found = []
            for handle in self.handles():
                pool = handle._pool()
                if pool is None:  # dropped without uninstrument()
                    self.remove(handle)
                    continue
                stats = pool.stats()
                for value, state in read(stats):
                    attributes = {POOL_NAME: stats.name}
                    if state is not None:
                        attributes[STATE] = state
                    found.append(metrics.Observation(value, attributes))
            return found

        return observe


# One set of instruments per meter provider; weak, so a provider can be dropped.
_instruments: weakref.WeakKeyDictionary[metrics.MeterProvider, _Instruments] = (
    weakref.WeakKeyDictionary()
)
_instruments_lock = threading.Lock()
