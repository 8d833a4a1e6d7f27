"""The hand-off between worker threads and the event loop — the one place that knows the loop.

Measured on the target machine (wall µs per loop -> thread -> loop trip, 1 / 64 tasks): a
dedicated thread woken through ``queue.SimpleQueue`` and answered with
``call_soon_threadsafe`` costs 83 / 30, ``run_in_executor`` 121 / 30 and
``anyio.to_thread.run_sync`` 130 / 60 on asyncio (165 / 106 on trio). So connections' calls go
to poolkit's own threads through a ``SimpleQueue`` (one per thread, or one per shared group),
and answers come back through :class:`Bridge`, which
batches every completion that arrives while the loop is busy into one loop callback (one
self-pipe write instead of one per thread).

Futures: on asyncio a native ``asyncio.Future``; on trio a small event-backed equivalent.
Both are completed only from loop callbacks, and callers test ``done()`` first because an
abandoned (cancelled) waiter may already be finished.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Generic, Protocol, TypeVar

import sniffio

from ._errors import PoolError

__all__ = ["Bridge", "LoopFuture", "current_bridge", "forget"]

log = logging.getLogger("poolkit.bridge")

T = TypeVar("T")


class LoopFuture(Protocol[T]):
    """The subset of ``asyncio.Future`` poolkit relies on; awaitable once."""

    def done(self) -> bool: ...
    def set_result(self, result: T, /) -> None: ...
    def set_exception(self, exception: BaseException, /) -> None: ...
    def __await__(self) -> Generator[Any, None, T]: ...


class Bridge:
    """Runs callbacks posted from any thread on the event loop that created it."""

    backend: str

    def __init__(self, schedule: Callable[[Callable[[], None]], None]) -> None:
        self._schedule = schedule
        self._pending: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque()
        self._lock = threading.Lock()
        self._scheduled = False
        self.dead = False  # the loop is gone: posts are dropped

    def post(self, fn: Callable[..., None], *args: Any) -> None:
        """Thread-safe: run ``fn(*args)`` soon on the loop. Never blocks on the loop."""
        if self.dead:
            return
        self._pending.append((fn, args))
        with self._lock:
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self._schedule(self._drain)
        except RuntimeError:  # the loop is gone: nobody is left to tell
            self.dead = True
            log.debug("event loop closed; dropping %d callbacks", len(self._pending))
            self._pending.clear()  # they would keep the pool alive

    def _drain(self) -> None:
        with self._lock:
            self._scheduled = False
        pending = self._pending
        while pending:
            fn, args = pending.popleft()
            try:
                fn(*args)
            except BaseException:  # a loop callback must never kill the loop
                log.exception("poolkit callback %r failed", fn)

    def future(self) -> LoopFuture[Any]:  # pragma: no cover - overridden
        raise NotImplementedError

    def is_current(self) -> bool:  # pragma: no cover - overridden
        return False

    def check_current(self, owner: str) -> None:
        """Raise a clear error when called from another event loop than the bridge's."""
        if not self.is_current():
            raise PoolError(
                f"pool {owner} belongs to the event loop that opened it; "
                "use one pool per event loop"
            )

    def wait(self, fut: LoopFuture[T]) -> Awaitable[T]:
        return fut


class _AsyncioBridge(Bridge):
    backend = "asyncio"

    def __init__(self) -> None:
        import asyncio

        self.loop = asyncio.get_running_loop()
        self._running_loop = asyncio.get_running_loop
        call_soon_threadsafe = self.loop.call_soon_threadsafe

        def schedule(fn: Callable[[], None]) -> None:
            call_soon_threadsafe(fn)

        super().__init__(schedule)

    def future(self) -> LoopFuture[Any]:
        return self.loop.create_future()

    def is_current(self) -> bool:
        try:
            return self._running_loop() is self.loop
        except RuntimeError:
            return False

    def check_current(self, owner: str) -> None:
        # Every acquire runs this: one call less than is_current() inside the base class's.
        try:
            if self._running_loop() is self.loop:
                return
        except RuntimeError:
            pass
        super().check_current(owner)


class _TrioFuture(Generic[T]):
    __slots__ = ("_event", "_exc", "_result")

    def __init__(self) -> None:
        import trio

        self._event = trio.Event()
        self._result: T | None = None
        self._exc: BaseException | None = None

    def done(self) -> bool:
        return self._event.is_set()

    def set_result(self, result: T, /) -> None:
        self._result = result
        self._event.set()

    def set_exception(self, exception: BaseException, /) -> None:
        self._exc = exception
        self._event.set()

    def __await__(self) -> Generator[Any, None, T]:
        return self._get().__await__()

    async def _get(self) -> T:
        await self._event.wait()
        if self._exc is not None:
            raise self._exc
        return self._result  # type: ignore[return-value]


class _TrioBridge(Bridge):
    backend = "trio"

    def __init__(self) -> None:
        import trio

        self.token = trio.lowlevel.current_trio_token()
        super().__init__(self.token.run_sync_soon)

    def future(self) -> LoopFuture[Any]:
        return _TrioFuture()

    def is_current(self) -> bool:
        import trio

        try:
            return trio.lowlevel.current_trio_token() is self.token
        except RuntimeError:
            return False


def forget(fut: LoopFuture[Any]) -> None:
    """Mark an abandoned future's outcome as seen (asyncio logs unretrieved exceptions)."""
    exception = getattr(fut, "exception", None)
    cancelled = getattr(fut, "cancelled", None)
    if exception is not None and cancelled is not None and fut.done() and not cancelled():
        exception()


def current_bridge() -> Bridge:
    """A bridge to the running event loop (asyncio, including Tornado, or trio)."""
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        raise RuntimeError(
            "poolkit must be used from a running asyncio or trio event loop"
        ) from None
    if library == "asyncio":
        return _AsyncioBridge()
    if library == "trio":
        return _TrioBridge()
    raise RuntimeError(f"unsupported async library {library!r}: poolkit runs on asyncio and trio")
