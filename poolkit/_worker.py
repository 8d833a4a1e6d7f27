"""A worker thread owns one DB-API connection from connect to close.

Jobs run strictly one after another, so a job queued after a cancelled call runs only once
the driver has returned from that call: the connection is never used by two threads, and
never by two jobs at once. Threads are daemons, so a pool that is never closed does not keep
the interpreter alive.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from typing import Any

from ._bridge import Bridge

__all__ = ["Worker", "run_in_helper_thread"]

#: ``done(token, result, exc)``, called on the event loop after the job ran
Done = Callable[[Any, Any, BaseException | None], None]

_Item = tuple[Callable[..., Any], tuple[Any, ...], "Done | None", Any]

_names = itertools.count(1)


class Worker:
    """One thread, one job queue. ``submit`` may be called from any thread; so may
    ``queue.put`` with a ``(fn, args, done, token)`` tuple, which is what it does."""

    __slots__ = ("_bridge", "queue", "thread")

    def __init__(self, bridge: Bridge, pool_name: str) -> None:
        self._bridge = bridge
        self.queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self.thread = threading.Thread(
            target=self._main, name=f"poolkit-{pool_name}-{next(_names)}", daemon=True
        )
        self.thread.start()

    def submit(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        done: Done | None = None,
        token: Any = None,
    ) -> None:
        """Run ``fn(*args)`` on the thread; ``done(token, result, exc)`` then runs on the loop."""
        self.queue.put((fn, args, done, token))

    def stop(self) -> None:
        """Let the thread exit once the jobs queued before this have run."""
        self.queue.put(None)

    def _main(self) -> None:
        get = self.queue.get
        post = self._bridge.post
        while True:
            item = get()
            if item is None:
                return
            fn, args, done, token = item
            del item
            try:
                result = fn(*args)
            except BaseException as exc:
                if done is not None:
                    post(done, token, None, exc)
            else:
                if done is not None:
                    post(done, token, result, None)
                del result
            del fn, args, done, token


def run_in_helper_thread(fn: Callable[[], Any], name: str) -> threading.Thread:
    """Fire and forget ``fn`` on a short-lived daemon thread (driver cancels, joins)."""
    thread = threading.Thread(target=fn, name=f"poolkit-{name}", daemon=True)
    thread.start()
    return thread
