"""poolkit with one hardening taken out, for showing that the checks catch the bug.

Point ``--pool-under-test tests.conformance.buggy:NoInvalidation`` (or another class here) at
them; each claims every capability poolkit has, so its checks run and should fail.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import poolkit
from poolkit.conformance._targets import Target
from poolkit.conformance.adapters import PoolHandle, PoolkitAdapter


def _blind(target: Target, options: dict[str, Any]) -> dict[str, Any]:
    """Pool options under which poolkit does not look at idle connections' sockets, nor runs
    a first statement again when it finds its connection lost: nothing then stands between
    a caller and a connection the server closed while it was idle."""
    profile = dataclasses.replace(poolkit.profile_for(target.module), socket_fd=None)
    return {**options, "profile": profile, "retry_lost": False}


class NoSocketLook(PoolkitAdapter):
    """The pool does not notice that the server closed or reset an idle connection (it does
    not look at the socket) and does not run a statement that found its connection lost
    again: after a restart, callers that arrive together each get one of the dead
    connections, before any of them reports the disconnect."""

    name = "poolkit-no-socket-look"

    @asynccontextmanager
    async def pool(self, target: Target, **options: Any) -> AsyncIterator[PoolHandle]:
        async with super().pool(target, **_blind(target, options)) as handle:
            yield handle


class NoInvalidation(PoolkitAdapter):
    """A disconnect seen on one connection makes no other connection suspect (nor does the
    pool look at idle sockets or retry lost first statements, which would hide the bug):
    after a restart, each stale idle connection is handed out and fails its caller."""

    name = "poolkit-no-invalidation"

    @asynccontextmanager
    async def pool(self, target: Target, **options: Any) -> AsyncIterator[PoolHandle]:
        async with super().pool(target, **_blind(target, options)) as handle:
            handle.native._state.invalidate = lambda now: None  # type: ignore[attr-defined]
            yield handle


class SlowRecovery(PoolkitAdapter):
    """Reconnects follow the back-off clock alone (no attempt goes early for a waiting
    caller), and the back-off is a steady 6 s: a caller waiting when the server accepts
    again waits for the next scheduled attempt."""

    name = "poolkit-slow-recovery"

    @asynccontextmanager
    async def pool(self, target: Target, **options: Any) -> AsyncIterator[PoolHandle]:
        backoff = poolkit.Backoff(6.0, 6.0, jitter=0.0, demand_interval=None)
        async with super().pool(target, **options, backoff=backoff) as handle:
            yield handle


class _NoTimeoutHandle:
    def __init__(self, inner: PoolHandle) -> None:
        self._inner = inner
        self.max_size = inner.max_size
        self.timeout_error = inner.timeout_error

    def connection(self, timeout: float | None = None) -> AbstractAsyncContextManager[Any]:
        return self._inner.connection(None)  # waits as long as the driver does

    async def close(self) -> None:
        await self._inner.close()


class NoAcquireTimeout(PoolkitAdapter):
    """An acquire waits for the driver's connect, however long, instead of its own timeout."""

    name = "poolkit-no-acquire-timeout"

    @asynccontextmanager
    async def pool(self, target: Target, **options: Any) -> AsyncIterator[PoolHandle]:
        async with super().pool(target, **options) as handle:
            yield _NoTimeoutHandle(handle)


class _CloseLeavesCallersHandle(_NoTimeoutHandle):
    def connection(self, timeout: float | None = None) -> AbstractAsyncContextManager[Any]:
        return self._inner.connection(timeout)

    async def close(self) -> None:
        """Returns at once; the pool closes for real when the adapter's block ends."""


class CloseLeavesCallersBlocked(PoolkitAdapter):
    """close() returns at once but leaves callers blocked in their driver calls (as a pool
    that only stops handing out connections does)."""

    name = "poolkit-close-leaves-callers"

    @asynccontextmanager
    async def pool(self, target: Target, **options: Any) -> AsyncIterator[PoolHandle]:
        async with super().pool(target, **options) as handle:
            yield _CloseLeavesCallersHandle(handle)
