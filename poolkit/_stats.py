"""Pool statistics (a frozen snapshot) and pool events (for listeners)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Counters", "PoolEvent", "Stats"]


@dataclass(frozen=True)
class Stats:
    """A point-in-time snapshot returned by :meth:`poolkit.Pool.stats`. Times in seconds."""

    name: str
    min_size: int
    max_size: int
    #: everything that counts toward max_size: idle + in_use + opening + resetting + closing
    size: int
    idle: int
    in_use: int
    opening: int
    resetting: int
    closing: int
    waiting: int
    #: connections handed out since the pool opened
    acquired: int
    #: of those, how many had to wait in the queue
    waited: int
    wait_time_total: float
    wait_time_max: float
    #: acquires that ended in PoolTimeout
    timeouts: int
    #: acquires refused with TooManyWaiters
    rejected: int
    #: calls on connections that outlived their timeout (QueryTimeout)
    query_timeouts: int
    connections_opened: int
    connections_closed: int
    connect_errors: int
    #: connect failures since the last success; >0 means the pool is reconnecting
    consecutive_connect_errors: int
    #: the last connect error as "Type: message", secrets masked
    last_connect_error: str | None
    #: connections found disconnected (by a call, a health check or a reset) and discarded
    disconnects: int
    #: calls run once more on another connection, theirs found lost before they could have
    #: had an effect (``Pool(retry_lost=...)``)
    retried: int
    #: connections discarded because their reset failed
    reset_failures: int
    #: connections discarded because their health check failed
    check_failures: int
    #: total seconds connections were held by callers
    usage_time_total: float


@dataclass
class Counters:
    """The mutable totals behind :class:`Stats`; touched only on the event loop thread."""

    acquired: int = 0
    waited: int = 0
    wait_time_total: float = 0.0
    wait_time_max: float = 0.0
    timeouts: int = 0
    rejected: int = 0
    query_timeouts: int = 0
    connections_opened: int = 0
    connections_closed: int = 0
    connect_errors: int = 0
    consecutive_connect_errors: int = 0
    last_connect_error: str | None = None
    disconnects: int = 0
    retried: int = 0
    reset_failures: int = 0
    check_failures: int = 0
    usage_time_total: float = 0.0


@dataclass(frozen=True)
class PoolEvent:
    """Passed to listeners added with :meth:`poolkit.Pool.add_listener`.

    ``kind`` is one of: ``connect``, ``connect_failed``, ``checkout``, ``checkin``,
    ``discard``, ``close_connection``, ``timeout``, ``open``, ``close``, ``retry`` (a call
    found its connection lost and runs again on another; ``detail`` is the error), and
    ``leak`` (a connection held past ``Pool(leak_timeout=...)``; ``detail`` is the stack
    where it was acquired).
    """

    kind: str
    pool: str
    connection_id: int | None = None
    #: secrets masked; e.g. the error of a failed connect, the reason for a discard
    detail: str | None = None
    #: durations in seconds, by the pool's clock: ``create`` on ``connect`` (connect and
    #: ``configure``, back-off excluded), ``wait`` on ``checkout`` (from the acquire call,
    #: health check included), ``use`` on ``checkin`` and ``held`` on ``leak``
    extra: dict[str, float] = field(default_factory=dict)
