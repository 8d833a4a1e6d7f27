"""Every exception poolkit raises of its own. Driver exceptions pass through unchanged."""

from __future__ import annotations

__all__ = [
    "ConnectionBusy",
    "ConnectionReturned",
    "PoolClosed",
    "PoolError",
    "PoolTimeout",
    "QueryTimeout",
    "TooManyWaiters",
]


class PoolError(Exception):
    """Root of every error raised by poolkit itself (never of a driver's errors)."""


class PoolTimeout(PoolError, TimeoutError):
    """No connection could be handed out within the acquire timeout.

    When connecting was failing, ``connect_error`` holds the driver's last exception (the
    message carries it only in masked form, so tracebacks never show a password).
    """

    connect_error: BaseException | None = None


class PoolClosed(PoolError):
    """The pool is closed, or was closed while the caller waited for a connection."""


class TooManyWaiters(PoolError):
    """The pool is saturated: ``max_waiting`` callers already wait for a connection."""


class QueryTimeout(PoolError, TimeoutError):
    """A call on a connection outlived its ``timeout``; a driver-level cancel was requested."""


class ConnectionBusy(PoolError):
    """An ``AsyncConnection`` was used by a second task while a call of the first was running."""


class ConnectionReturned(PoolError):
    """An ``AsyncConnection`` (or one of its cursors) was used after it went back to the pool."""
