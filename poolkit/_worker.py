"""Where a connection's jobs run: its own thread (:class:`Worker`) or a pool-wide group of
threads (:class:`Strand` over a :class:`ThreadGroup`).

Either way a connection's jobs run strictly one after another, in the order submitted, so a
job queued after a cancelled call runs only once the driver has returned from that call: the
connection is never used by two jobs at once. A :class:`Worker` also keeps the connection on
one thread for its whole life (sqlite3's ``check_same_thread`` needs that). A
:class:`Strand` lets the connection move between the group's threads from one job to the
next: a thread that finishes a job takes the next queued job of any connection without
going to sleep, which saves most of the thread wake-ups when many connections are busy.
Threads are daemons, so a pool that is never closed does not keep the interpreter alive.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from ._bridge import Bridge

__all__ = ["Runner", "Strand", "ThreadGroup", "Worker", "run_in_helper_thread"]

#: ``done(token, result, exc)``, called on the event loop after the job ran
Done = Callable[[Any, Any, BaseException | None], None]

_Item = tuple[Callable[..., Any], tuple[Any, ...], "Done | None", Any]

_names = itertools.count(1)

log = logging.getLogger("poolkit.worker")


class _JobQueue(Protocol):
    def put(self, item: _Item | None, /) -> None: ...


class _Submit:
    """``submit`` and ``stop`` over ``queue.put``: what Worker and Strand share."""

    __slots__ = ()
    queue: _JobQueue

    def submit(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        done: Done | None = None,
        token: Any = None,
    ) -> None:
        """Run ``fn(*args)`` on a worker thread; ``done(token, result, exc)`` then runs on
        the loop."""
        self.queue.put((fn, args, done, token))

    def stop(self) -> None:
        """Let the jobs queued before this run, then drop the thread (on a Strand: one of the
        group's threads); jobs queued after it never run."""
        self.queue.put(None)

    def close_later(self, job: _Item) -> None:
        """``job`` then stop, queued from a weakref finalizer (any thread, at any bytecode):
        only ``SimpleQueue.put`` is safe there, never a lock the interrupted code may hold."""
        self.queue.put(job)
        self.queue.put(None)


class Worker(_Submit):
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

    @property
    def name(self) -> str:
        return self.thread.name

    def owned_thread(self) -> threading.Thread | None:
        """The thread to join once the connection is closed."""
        return self.thread

    def _main(self) -> None:
        get = self.queue.get
        post = self._bridge.post
        while True:
            item = get()
            if item is None:
                return
            _run(item, post)
            del item  # drop the job's references before sleeping on the queue


class ThreadGroup:
    """Threads shared by the connections of one pool, one thread per :class:`Strand`.

    A thread runs one strand's queued jobs, then takes whichever strand is queued next. As
    many threads exist as strands not yet stopped, so a job stuck in the driver holds up
    only its own connection: every other connection still finds a thread.
    """

    __slots__ = ("_bridge", "_lock", "_pool_name", "_queue", "_threads")

    def __init__(self, bridge: Bridge, pool_name: str) -> None:
        self._bridge = bridge
        self._pool_name = pool_name
        self._queue: queue.SimpleQueue[Strand | _Later] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()

    def strand(self, label: str) -> Strand:
        """A new strand, and a thread more for the group."""
        strand = Strand(self, label)
        thread = threading.Thread(
            target=self._main, name=f"poolkit-{self._pool_name}-{next(_names)}", daemon=True
        )
        thread.start()  # first: a thread that failed to start must not be joined at close
        with self._lock:
            self._threads.add(thread)
        return strand

    def threads(self) -> list[threading.Thread]:
        """The group's threads still running (each exits when a strand stops)."""
        with self._lock:
            return list(self._threads)

    def _main(self) -> None:
        get = self._queue.get
        post = self._bridge.post
        me = threading.current_thread()
        try:
            while True:
                strand = get()
                if strand.drain(me, post):
                    return
        finally:
            with self._lock:
                self._threads.discard(me)


class Strand(_Submit):
    """A connection's job queue on a :class:`ThreadGroup`: the :class:`Worker` interface,
    with jobs run in order, one at a time, on whichever of the group's threads is free."""

    __slots__ = (
        "_group_put",
        "_jobs",
        "_lock",
        "_running",
        "_stopped",
        "label",
        "queue",
        "thread",
    )

    def __init__(self, group: ThreadGroup, label: str) -> None:
        self._group_put = group._queue.put
        self._jobs: deque[_Item | None] = deque()
        self._lock = threading.Lock()
        self._running = False  # queued on the group, or a thread is draining it
        self._stopped = False
        self.label = label
        self.queue = self  # ``queue.put(item)``, as on a Worker
        self.thread: threading.Thread | None = None  # the thread running a job right now

    def put(self, item: _Item | None) -> None:
        """Queue a ``(fn, args, done, token)`` job (None: stop); any thread may call it."""
        with self._lock:
            if self._stopped:
                return
            self._jobs.append(item)
            if self._running:
                return
            self._running = True
        self._group_put(self)

    def close_later(self, job: _Item) -> None:
        # Strand.put takes the strand's lock, which the interrupted thread may hold: hand
        # the puts to a group thread through the group's queue instead.
        self._group_put(_Later(self, (job, None)))

    @property
    def name(self) -> str:
        thread = self.thread
        return f"{self.label} on {thread.name}" if thread is not None else self.label

    def owned_thread(self) -> threading.Thread | None:
        return None  # the group's threads are joined when the pool closes

    def drain(self, me: threading.Thread, post: Callable[..., None]) -> bool:
        """Group thread: run the queued jobs; True when the strand stopped (the thread
        then exits, keeping one thread per live strand)."""
        jobs = self._jobs
        lock = self._lock
        while True:
            with lock:
                if not jobs:
                    self._running = False
                    return False
                item = jobs.popleft()
                if item is None:
                    self._stopped = True
                    jobs.clear()
                    return True
            self.thread = me
            try:
                _run(item, post)
            finally:
                self.thread = None
            del item


class _Later:
    """Jobs for a strand, put on it by a group thread (see :meth:`Strand.close_later`)."""

    __slots__ = ("items", "strand")

    def __init__(self, strand: Strand, items: tuple[_Item | None, ...]) -> None:
        self.strand = strand
        self.items = items

    def drain(self, me: threading.Thread, post: Callable[..., None]) -> bool:
        for item in self.items:
            self.strand.put(item)
        return False


#: where a connection's jobs run
Runner = Worker | Strand


def _run(item: _Item, post: Callable[..., None]) -> None:
    """Run one job; its outcome goes to the loop. Nothing raises out of here: a worker
    thread that died would leave its connection (or a group short of a thread) for ever."""
    fn, args, done, token = item
    error: BaseException | None = None
    try:
        result = fn(*args)
    except BaseException as exc:
        result, error = None, exc
    if done is not None:
        try:
            post(done, token, result, error)
        except BaseException:
            log.exception("poolkit: could not report a job's outcome to the event loop")


def run_in_helper_thread(fn: Callable[[], Any], name: str) -> threading.Thread:
    """Fire and forget ``fn`` on a short-lived daemon thread (driver cancels, joins)."""
    thread = threading.Thread(target=fn, name=f"poolkit-{name}", daemon=True)
    thread.start()
    return thread
