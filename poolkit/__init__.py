"""poolkit: an async connection pool that runs any blocking DB-API 2.0 driver on worker threads.

Start at :class:`Pool`. Everything public is re-exported here, except what ``import
poolkit`` leaves unimported: :mod:`poolkit.fakes`, :mod:`poolkit.conformance` and
:mod:`poolkit.otel` (OpenTelemetry metrics, the ``otel`` extra).
"""

from ._backoff import Backoff
from ._connection import AsyncConnection
from ._cursor import AsyncCursor
from ._errors import (
    ConnectionBusy,
    ConnectionReturned,
    PoolClosed,
    PoolError,
    PoolTimeout,
    QueryTimeout,
    TooManyWaiters,
)
from ._pool import Pool
from ._profiles import DriverProfile, profile_for
from ._rows import Description, Row
from ._stats import PoolEvent, Stats

__version__ = "0.1.0"

__all__ = [
    "AsyncConnection",
    "AsyncCursor",
    "Backoff",
    "ConnectionBusy",
    "ConnectionReturned",
    "Description",
    "DriverProfile",
    "Pool",
    "PoolClosed",
    "PoolError",
    "PoolEvent",
    "PoolTimeout",
    "QueryTimeout",
    "Row",
    "Stats",
    "TooManyWaiters",
    "profile_for",
]
