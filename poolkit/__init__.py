"""poolkit: an async connection pool that runs any blocking DB-API 2.0 driver on worker threads.

Start at :class:`Pool`. Everything public is re-exported here, except what ``import
poolkit`` leaves unimported: :mod:`poolkit.fakes`, :mod:`poolkit.conformance` and
:mod:`poolkit.otel` (OpenTelemetry metrics, the ``otel`` extra).

The names load on first use (PEP 562), so importing a submodule (the pytest plugin that every
pytest run of a project with poolkit installed loads, say) does not import the pool and anyio.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
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

#: where each public name lives
_HOMES = {
    "AsyncConnection": "_connection",
    "AsyncCursor": "_cursor",
    "Backoff": "_backoff",
    "ConnectionBusy": "_errors",
    "ConnectionReturned": "_errors",
    "Description": "_rows",
    "DriverProfile": "_profiles",
    "Pool": "_pool",
    "PoolClosed": "_errors",
    "PoolError": "_errors",
    "PoolEvent": "_stats",
    "PoolTimeout": "_errors",
    "QueryTimeout": "_errors",
    "Row": "_rows",
    "Stats": "_stats",
    "TooManyWaiters": "_errors",
    "profile_for": "_profiles",
}

if not TYPE_CHECKING:  # type checkers see the imports above, and no catch-all attribute

    def __getattr__(name: str) -> object:
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module 'poolkit' has no attribute {name!r}")
        from importlib import import_module

        value = getattr(import_module(f"poolkit.{home}"), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
