"""The pool's bookkeeping: a pure, synchronous, I/O-free state machine.

Nothing here imports anyio or threading, and nothing here waits. Each transition mutates
counters and queues and returns :class:`Actions` — which connections to start opening and
which to close — for the async layer to carry out on the connections' worker threads. Time is
always passed in (``now``), so the machine can be driven by a virtual clock in tests.
"""

from __future__ import annotations

import enum
import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from ._errors import PoolClosed, TooManyWaiters

__all__ = ["NOTHING", "Actions", "PoolState", "Slot", "SlotState", "Waiter"]


class SlotState(enum.Enum):
    """Where one pooled connection is in its life."""

    OPENING = "opening"  # a connect attempt is scheduled or running
    IDLE = "idle"  # ready, in the idle stack
    IN_USE = "in_use"  # handed to a caller
    RESETTING = "resetting"  # returned; its reset runs on a worker thread
    CLOSING = "closing"  # its close runs on a worker thread; still counts toward max_size
    CLOSED = "closed"


@dataclass(eq=False)
class Slot:
    """Bookkeeping for one pooled connection; ``payload`` belongs to the async layer."""

    id: int
    state: SlotState = SlotState.OPENING
    created_at: float = math.nan
    #: last time the connection was known good (opened, or passed a health check)
    verified_at: float = math.nan
    #: the pool's disconnect epoch when the slot was opened or last passed a check
    verified_epoch: int = 0
    expires_at: float = math.inf
    idle_since: float = math.nan
    payload: Any = None

    def __repr__(self) -> str:
        return f"<Slot {self.id} {self.state.value}>"


class Waiter(Protocol):
    """A caller queued for a connection, as the state machine sees it."""

    active: bool

    def offer(self, slot: Slot) -> bool:
        """Hand ``slot`` over; return False if the caller already gave up."""

    def fail(self, exc: BaseException) -> None:
        """Wake the caller with ``exc`` (the pool was closed, or connecting failed for good)."""


@dataclass
class Actions:
    """What the async layer must do after a transition."""

    open: list[Slot] = field(default_factory=list)
    close: list[Slot] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.open or self.close)


class PoolState:
    """Counts, the idle stack and the FIFO of waiters; decides who gets what.

    Capacity is counted over every connection that may hold a server session, including
    those still opening, resetting or closing, so the server never sees more than
    ``max_size`` sessions from one pool.
    """

    def __init__(
        self,
        *,
        min_size: int,
        max_size: int,
        max_waiting: int = 0,
        max_lifetime: float | None = None,
        max_idle: float | None = None,
        lifetime_jitter: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        validate_sizes(min_size, max_size)
        if isinstance(max_waiting, bool) or not isinstance(max_waiting, int):
            raise TypeError(f"max_waiting must be an int, got {max_waiting!r}")
        if max_waiting < 0:
            raise ValueError(f"max_waiting must be >= 0 (0 means unbounded), got {max_waiting}")
        for name, value in (("max_lifetime", max_lifetime), ("max_idle", max_idle)):
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0 seconds or None, got {value!r}")
        if not 0.0 <= lifetime_jitter < 1.0:
            raise ValueError(f"lifetime_jitter must be in [0, 1), got {lifetime_jitter!r}")
        self.min_size = min_size
        self.max_size = max_size
        self.max_waiting = max_waiting
        self.max_lifetime = max_lifetime
        self.max_idle = max_idle
        self.lifetime_jitter = lifetime_jitter
        self._rng = rng if rng is not None else random.Random()
        self.closed = False
        self._next_id = 0
        self._idle: deque[Slot] = deque()  # LIFO at the right end: hot connections reused
        self._waiters: deque[Waiter] = deque()
        self.waiting = 0  # active waiters in _waiters (abandoned ones are skipped lazily)
        self.opening = 0
        self.in_use = 0
        self.resetting = 0
        self.closing = 0
        # Connections created at or before this instant are suspect (a disconnect was seen).
        self.invalidated_at = -math.inf
        # Counts disconnect reports. Suspicion is decided by order, not by clock readings:
        # a connection opened or checked after a report, at the same clock tick, is fine.
        self.epoch = 0

    # ----- queries ---------------------------------------------------------------------

    @property
    def idle(self) -> int:
        return len(self._idle)

    @property
    def live(self) -> int:
        """Connections that exist or are being made, excluding those being closed."""
        return self.opening + len(self._idle) + self.in_use + self.resetting

    @property
    def connected(self) -> int:
        """Connections that exist and can serve a caller now or on return: idle, in use or
        being reset (not those opening or closing)."""
        return len(self._idle) + self.in_use + self.resetting

    @property
    def size(self) -> int:
        """Everything that counts toward ``max_size``."""
        return self.live + self.closing

    def idle_slots(self) -> list[Slot]:
        """The idle stack, oldest first (for inspection and tests)."""
        return list(self._idle)

    def is_suspect(self, slot: Slot) -> bool:
        """Not verified since the last disconnect was seen (see :meth:`invalidate`).

        Time decides, and at the same clock reading the order of the calls does: a connection
        opened or checked after the report, within one clock tick, is not suspect.
        """
        if not self.epoch or math.isnan(slot.verified_at):  # no report yet; not connected
            return False
        return (slot.verified_at, slot.verified_epoch) < (self.invalidated_at, self.epoch)

    def verified(self, slot: Slot, now: float) -> None:
        """``slot`` passed a health check at ``now``: no longer suspect."""
        slot.verified_at = now
        slot.verified_epoch = self.epoch

    # ----- acquiring -------------------------------------------------------------------

    def checkout(self, now: float) -> tuple[Slot | None, Actions]:
        """Take an idle connection at once if one is free and nobody queues ahead."""
        if self.closed:
            raise PoolClosed("the pool is closed")
        idle = self._idle
        if idle and not self.waiting and now < idle[-1].expires_at:  # the hot path
            slot = idle.pop()
            slot.state = SlotState.IN_USE
            self.in_use += 1
            return slot, NOTHING
        actions = Actions()
        found: Slot | None = None
        if not self.waiting:
            while idle:
                candidate = idle.pop()
                if now >= candidate.expires_at:
                    self._begin_close(candidate, actions)
                    continue
                candidate.state = SlotState.IN_USE
                self.in_use += 1
                found = candidate
                break
        self._grow(actions)
        return found, actions

    def wait(self, waiter: Waiter, now: float, *, front: bool = False) -> Actions:
        """Queue a caller; ``front`` puts it first (it lost a connection to a failed check).

        If connections are idle (possible only for ``front`` waiters), the queue is served
        from them at once.
        """
        if self.closed:
            raise PoolClosed("the pool is closed")
        if self.max_waiting and self.waiting >= self.max_waiting and not front:
            raise TooManyWaiters(
                f"pool saturated: {self.waiting} callers already wait "
                f"(max_waiting={self.max_waiting}, max_size={self.max_size})"
            )
        waiter.active = True
        if front:
            self._waiters.appendleft(waiter)
        else:
            self._waiters.append(waiter)
        self.waiting += 1
        actions = Actions()
        while self._idle and self.waiting:
            slot = self._idle.pop()
            if now >= slot.expires_at:
                self._begin_close(slot, actions)
                continue
            if not self._serve(slot):
                break
        self._grow(actions)
        return actions

    def cancel_wait(self, waiter: Waiter) -> None:
        """The caller gave up (timeout or cancellation) before being served. O(1)."""
        if waiter.active:
            waiter.active = False
            self.waiting -= 1
            if len(self._waiters) > 2 * self.waiting + 64:  # amortised O(1): drop the gone
                self._waiters = deque(w for w in self._waiters if w.active)

    # ----- connections coming and going ------------------------------------------------

    def opened(self, slot: Slot, now: float) -> Actions:
        """A connect attempt succeeded."""
        assert slot.state is SlotState.OPENING
        self.opening -= 1
        slot.created_at = slot.verified_at = now
        slot.verified_epoch = self.epoch
        if self.max_lifetime is not None:
            jitter = 1.0 - self.lifetime_jitter * self._rng.random()
            slot.expires_at = now + self.max_lifetime * jitter
        return self._make_ready(slot, now, Actions())

    def open_failed(self, slot: Slot) -> Actions:
        """A connect attempt failed; a new attempt is planned if still needed."""
        assert slot.state is SlotState.OPENING
        self.opening -= 1
        slot.state = SlotState.CLOSED
        actions = Actions()
        self._grow(actions)
        return actions

    def checkin(self, slot: Slot, now: float, *, keep: bool, reset: bool) -> Actions:
        """A caller is done. ``keep=False`` discards; ``reset=True`` waits for a reset."""
        assert slot.state is SlotState.IN_USE, slot
        self.in_use -= 1
        if (  # the hot path: straight back onto the idle stack, nobody to serve
            keep
            and not reset
            and not self.waiting
            and not self.closed
            and now < slot.expires_at
            and self.size < self.max_size  # the slot is out of every bucket here
        ):
            slot.idle_since = now
            slot.state = SlotState.IDLE
            self._idle.append(slot)
            return NOTHING
        actions = Actions()
        # The slot is out of every bucket here, so it fits only if size < max_size.
        if not keep or self.closed or self.size >= self.max_size:
            self._begin_close(slot, actions)
            self._grow(actions)
            return actions
        if reset:
            slot.state = SlotState.RESETTING
            self.resetting += 1
            return actions
        return self._make_ready(slot, now, actions)

    def reset_done(self, slot: Slot, now: float, *, ok: bool) -> Actions:
        """The reset started by :meth:`checkin` finished."""
        assert slot.state is SlotState.RESETTING, slot
        self.resetting -= 1
        actions = Actions()
        if not ok or self.closed:
            self._begin_close(slot, actions)
            self._grow(actions)
            return actions
        return self._make_ready(slot, now, actions)

    def discard(self, slot: Slot) -> Actions:
        """Close a connection the caller holds (failed health check) without handing it back."""
        assert slot.state is SlotState.IN_USE, slot
        self.in_use -= 1
        actions = Actions()
        self._begin_close(slot, actions)
        self._grow(actions)
        return actions

    def closed_done(self, slot: Slot) -> Actions:
        """A close finished: the capacity it held is free again."""
        assert slot.state is SlotState.CLOSING, slot
        self.closing -= 1
        slot.state = SlotState.CLOSED
        actions = Actions()
        self._grow(actions)
        return actions

    def fill(self) -> Actions:
        """Start the connect attempts needed to reach min_size (at open)."""
        actions = Actions()
        self._grow(actions)
        return actions

    def invalidate(self, now: float) -> None:
        """A disconnect was seen: every connection opened or checked before this becomes
        suspect (until it passes a check)."""
        if now >= self.invalidated_at:  # an older report adds nothing
            self.invalidated_at = now
            self.epoch += 1

    # ----- maintenance -----------------------------------------------------------------

    def sweep(self, now: float) -> Actions:
        """Close idle connections past their lifetime, or idle too long above min_size."""
        actions = Actions()
        if self.closed:
            return actions
        keep: deque[Slot] = deque()
        # Expired connections go whatever min_size says; count them out first, so that
        # idleness closes only what min_size can spare after them.
        remaining = self.live - sum(1 for slot in self._idle if now >= slot.expires_at)
        # The left end holds the connections idle the longest.
        for slot in self._idle:
            if now >= slot.expires_at:
                actions.close.append(slot)
            elif (
                self.max_idle is not None
                and now - slot.idle_since >= self.max_idle
                and remaining > self.min_size
            ):
                actions.close.append(slot)
                remaining -= 1
            else:
                keep.append(slot)
        if actions.close:
            self._idle = keep
            for slot in actions.close:
                slot.state = SlotState.CLOSING
                self.closing += 1
        self._grow(actions)
        return actions

    def resize(self, min_size: int, max_size: int) -> Actions:
        """Change the bounds; idle connections above the new maximum are closed now."""
        validate_sizes(min_size, max_size)
        self.min_size, self.max_size = min_size, max_size
        actions = Actions()
        while self._idle and self.live > max_size:  # closing ones have left `live`
            self._begin_close(self._idle.popleft(), actions)
        self._grow(actions)
        return actions

    def take_waiters(self) -> list[Waiter]:
        """Empty the queue; returns the callers that were waiting, for the caller to fail
        (the pool closed, or connecting failed in a way no retry can fix)."""
        waiters = [w for w in self._waiters if w.active]
        for w in waiters:
            w.active = False
        self._waiters.clear()
        self.waiting = 0
        return waiters

    def close(self) -> tuple[list[Waiter], Actions]:
        """Refuse new work; returns the waiters to fail and the idle connections to close."""
        self.closed = True
        waiters = self.take_waiters()
        actions = Actions()
        while self._idle:
            self._begin_close(self._idle.pop(), actions)
        return waiters, actions

    # ----- internals -------------------------------------------------------------------

    def _make_ready(self, slot: Slot, now: float, actions: Actions) -> Actions:
        slot.idle_since = now  # "ready since": the clock for health checks and max_idle
        # The slot is out of every bucket here, so it fits only if size < max_size.
        if self.closed or now >= slot.expires_at or self.size >= self.max_size:
            self._begin_close(slot, actions)
            self._grow(actions)
            return actions
        self._serve(slot)
        return actions

    def _serve(self, slot: Slot) -> bool:
        """Hand an available slot to the first waiter (True), or put it on the idle stack."""
        slot.state = SlotState.IN_USE
        self.in_use += 1
        if self._hand_to_waiter(slot):
            return True
        self.in_use -= 1
        slot.state = SlotState.IDLE
        self._idle.append(slot)
        return False

    def _hand_to_waiter(self, slot: Slot) -> bool:
        """Give an IN_USE-counted slot to the first waiter still waiting."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.active:
                continue
            waiter.active = False
            self.waiting -= 1
            if waiter.offer(slot):
                return True
        return False

    def _begin_close(self, slot: Slot, actions: Actions) -> None:
        slot.state = SlotState.CLOSING
        self.closing += 1
        actions.close.append(slot)

    def _grow(self, actions: Actions) -> None:
        """Start connect attempts for min_size and for waiters nobody is coming for."""
        if self.closed:
            return
        live = self.live
        wanted = max(self.min_size - live, self.waiting - self.opening - self.resetting)
        if wanted <= 0:
            return
        wanted = min(wanted, self.max_size - live - self.closing)
        for _ in range(wanted):
            self._next_id += 1
            self.opening += 1
            actions.open.append(Slot(self._next_id))


#: The empty Actions the checkout and checkin hot paths share (callers compare by identity).
#: Tuples, so that a mutation fails loudly instead of leaking into every later call.
NOTHING = Actions(open=cast("list[Slot]", ()), close=cast("list[Slot]", ()))


def validate_sizes(min_size: int, max_size: int) -> None:
    """Raise a clear error for impossible pool bounds."""
    for name, value in (("min_size", min_size), ("max_size", max_size)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if max_size < 1:
        raise ValueError(f"max_size must be >= 1, got {max_size}")
    if min_size < 0:
        raise ValueError(f"min_size must be >= 0, got {min_size}")
    if min_size > max_size:
        raise ValueError(f"min_size ({min_size}) must not exceed max_size ({max_size})")
