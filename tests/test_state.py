"""Unit and stateful tests of :mod:`poolkit._state`, the pool's pure bookkeeping.

No event loop anywhere: transitions are called directly, time is a plain float (a virtual
clock) and waiters are :class:`FakeWaiter` objects. The second half drives ``PoolState``
with hypothesis' ``RuleBasedStateMachine`` against a model that tracks which bucket every
slot is in, and checks the pool's invariants after every step.

The "regressions" section reproduces bugs found while these tests were written (each
fixed since; the commit is named in the test's docstring).
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn, SupportsIndex

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from poolkit._errors import PoolClosed, TooManyWaiters
from poolkit._state import Actions, PoolState, Slot, SlotState, Waiter

OfferHook = Callable[["FakeWaiter", Slot, bool], None]


class FakeWaiter:
    """A queued caller; ``gives_up`` makes it refuse offers (it was cancelled meanwhile)."""

    def __init__(
        self, name: str = "w", *, gives_up: bool = False, on_offer: OfferHook | None = None
    ) -> None:
        self.name = name
        self.active = False
        self.gives_up = gives_up
        self.offers: list[Slot] = []
        self.slot: Slot | None = None
        self.failed: BaseException | None = None
        self._on_offer = on_offer

    def offer(self, slot: Slot) -> bool:
        self.offers.append(slot)
        accepted = not self.gives_up
        if accepted:
            self.slot = slot
        if self._on_offer is not None:
            self._on_offer(self, slot, accepted)
        return accepted

    def fail(self, exc: BaseException) -> None:
        self.failed = exc

    def __repr__(self) -> str:
        return f"<FakeWaiter {self.name}>"


_PROTOCOL_CHECK: Waiter = FakeWaiter()  # mypy: FakeWaiter satisfies the Waiter protocol


# ----- helpers ----------------------------------------------------------------------------


def new_state(**kwargs: Any) -> PoolState:
    kwargs.setdefault("min_size", 0)
    kwargs.setdefault("max_size", 4)
    return PoolState(**kwargs)


def connect(state: PoolState, actions: Actions, now: float = 0.0) -> list[Slot]:
    """Complete every connect attempt in ``actions``; none may need a follow-up."""
    slots = list(actions.open)
    for slot in slots:
        assert not state.opened(slot, now)
    return slots


def take(state: PoolState, now: float = 0.0) -> Slot:
    """An in-use slot, got the way the pool does it: checkout, else queue and connect."""
    slot, actions = state.checkout(now)
    if slot is not None:
        connect(state, actions, now)
        return slot
    waiter = FakeWaiter()
    more = state.wait(waiter, now)
    connect(state, Actions(open=[*actions.open, *more.open]), now)
    assert waiter.slot is not None
    return waiter.slot


def idle_pool(n: int, now: float = 0.0, **kwargs: Any) -> tuple[PoolState, list[Slot]]:
    """A pool holding ``n`` idle connections (min_size=n unless given), oldest first."""
    kwargs.setdefault("min_size", n)
    kwargs.setdefault("max_size", max(n, 1))
    state = new_state(**kwargs)
    slots = connect(state, state.fill(), now)
    assert state.idle_slots() == slots
    return state, slots


def state_of(slot: Slot) -> SlotState:
    """``slot.state``, read without letting mypy narrow it across a transition."""
    return slot.state


def counts(state: PoolState) -> tuple[int, int, int, int, int, int]:
    return (
        state.opening,
        state.idle,
        state.in_use,
        state.resetting,
        state.closing,
        state.waiting,
    )


# ----- construction and validation --------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"min_size": 0, "max_size": 0}, ValueError, "max_size"),
        ({"min_size": 0, "max_size": -3}, ValueError, "max_size"),
        ({"min_size": 3, "max_size": 2}, ValueError, "min_size"),
        ({"min_size": -1, "max_size": 2}, ValueError, "min_size"),
        ({"min_size": True, "max_size": 2}, TypeError, "min_size"),
        ({"min_size": 0, "max_size": True}, TypeError, "max_size"),
        ({"min_size": 1.0, "max_size": 2}, TypeError, "min_size"),
        ({"min_size": 0, "max_size": 2.5}, TypeError, "max_size"),
        ({"min_size": 0, "max_size": "4"}, TypeError, "max_size"),
        ({"min_size": 0, "max_size": 2, "max_waiting": -1}, ValueError, "max_waiting"),
        ({"min_size": 0, "max_size": 2, "max_lifetime": 0}, ValueError, "max_lifetime"),
        ({"min_size": 0, "max_size": 2, "max_lifetime": -5.0}, ValueError, "max_lifetime"),
        ({"min_size": 0, "max_size": 2, "max_lifetime": math.nan}, ValueError, "max_lifetime"),
        ({"min_size": 0, "max_size": 2, "max_idle": 0.0}, ValueError, "max_idle"),
        ({"min_size": 0, "max_size": 2, "max_idle": -1}, ValueError, "max_idle"),
        ({"min_size": 0, "max_size": 2, "lifetime_jitter": -0.1}, ValueError, "lifetime_jitter"),
        ({"min_size": 0, "max_size": 2, "lifetime_jitter": 1.0}, ValueError, "lifetime_jitter"),
    ],
)
def test_bad_settings_raise_naming_the_argument(
    kwargs: dict[str, Any], error: type[Exception], name: str
) -> None:
    with pytest.raises(error, match=name):
        PoolState(**kwargs)


def test_good_settings_are_accepted() -> None:
    state = PoolState(
        min_size=2,
        max_size=2,
        max_waiting=0,
        max_lifetime=math.inf,
        max_idle=0.001,
        lifetime_jitter=0.999,
    )
    assert (state.min_size, state.max_size, state.size, state.waiting) == (2, 2, 0, 0)
    assert not state.closed


@pytest.mark.parametrize(
    ("sizes", "error", "name"),
    [
        ((0, 0), ValueError, "max_size"),
        ((3, 2), ValueError, "min_size"),
        ((-1, 2), ValueError, "min_size"),
        ((False, 2), TypeError, "min_size"),
        ((0, 2.0), TypeError, "max_size"),
    ],
)
def test_resize_validates_and_keeps_old_bounds(
    sizes: tuple[Any, Any], error: type[Exception], name: str
) -> None:
    state, _ = idle_pool(2, max_size=3)
    with pytest.raises(error, match=name):
        state.resize(*sizes)
    assert (state.min_size, state.max_size, state.idle) == (2, 3, 2)


def test_actions_truthiness() -> None:
    assert not Actions()
    assert Actions(open=[Slot(1)])
    assert Actions(close=[Slot(1)])


# ----- filling and checkout ---------------------------------------------------------------


def test_fill_opens_min_size() -> None:
    state = new_state(min_size=3, max_size=5)
    actions = state.fill()
    assert len(actions.open) == 3 and not actions.close
    assert len({slot.id for slot in actions.open}) == 3
    assert all(slot.state is SlotState.OPENING for slot in actions.open)
    assert counts(state) == (3, 0, 0, 0, 0, 0)
    assert not state.fill(), "attempts already under way count toward min_size"
    connect(state, actions, now=1.0)
    assert counts(state) == (0, 3, 0, 0, 0, 0)
    assert state.idle_slots() == actions.open
    assert all(slot.created_at == 1.0 and slot.idle_since == 1.0 for slot in actions.open)
    assert not state.fill()


def test_fill_with_zero_min_size_opens_nothing() -> None:
    state = new_state(min_size=0, max_size=3)
    assert not state.fill()
    assert state.size == 0


def test_checkout_on_empty_pool_without_min_size_opens_nothing() -> None:
    state = new_state(min_size=0, max_size=3)
    slot, actions = state.checkout(0.0)
    assert slot is None and not actions
    assert state.size == 0


def test_checkout_replenishes_min_size() -> None:
    state = new_state(min_size=2, max_size=3)
    slot, actions = state.checkout(0.0)
    assert slot is None
    assert len(actions.open) == 2


def test_checkout_returns_idle_lifo() -> None:
    state = new_state(max_size=3)
    a, b, c = take(state), take(state), take(state)
    assert state.in_use == 3 and state.idle == 0
    for t, slot in ((1.0, a), (2.0, c), (3.0, b)):
        assert not state.checkin(slot, t, keep=True, reset=False)
    assert state.idle_slots() == [a, c, b]
    got = [state.checkout(4.0)[0] for _ in range(3)]
    assert got == [b, c, a], "most recently returned first"
    assert [a.state, b.state, c.state] == [SlotState.IN_USE] * 3
    assert state.checkout(4.0) == (None, Actions())
    assert counts(state) == (0, 0, 3, 0, 0, 0)


def test_checkout_after_close_and_wait_after_close_raise() -> None:
    state, _ = idle_pool(1)
    state.close()
    with pytest.raises(PoolClosed):
        state.checkout(0.0)
    with pytest.raises(PoolClosed):
        state.wait(FakeWaiter(), 0.0)
    with pytest.raises(PoolClosed):
        state.wait(FakeWaiter(), 0.0, front=True)


# ----- waiters ----------------------------------------------------------------------------


def test_waiters_are_served_fifo() -> None:
    state = new_state(max_size=1)
    held = take(state)
    waiters = [FakeWaiter(f"w{i}") for i in range(3)]
    for w in waiters:
        assert not state.wait(w, 0.0), "no capacity: nothing may be opened"
    assert state.waiting == 3
    for i, w in enumerate(waiters):
        assert not state.checkin(held, float(i), keep=True, reset=False)
        assert w.slot is held and w.offers == [held] and not w.active
        assert all(later.offers == [] for later in waiters[i + 1 :])
        assert state.waiting == 2 - i
        assert held.state is SlotState.IN_USE and state.in_use == 1 and state.idle == 0
    assert not state.checkin(held, 9.0, keep=True, reset=False)
    assert state.idle_slots() == [held]


def test_new_connection_goes_to_first_waiter_whichever_finishes_first() -> None:
    state = new_state(max_size=2)
    w1, w2 = FakeWaiter("w1"), FakeWaiter("w2")
    s1 = state.wait(w1, 0.0).open
    s2 = state.wait(w2, 0.0).open
    assert len(s1) == len(s2) == 1
    assert not state.opened(s2[0], 1.0)
    assert w1.slot is s2[0] and w2.slot is None and state.waiting == 1
    assert not state.opened(s1[0], 2.0)
    assert w2.slot is s1[0] and state.waiting == 0


def test_front_waiter_is_served_first() -> None:
    state = new_state(max_size=1)
    held = take(state)
    back, front = FakeWaiter("back"), FakeWaiter("front")
    state.wait(back, 0.0)
    state.wait(front, 0.0, front=True)
    state.checkin(held, 1.0, keep=True, reset=False)
    assert front.slot is held and back.slot is None and state.waiting == 1


def test_waiter_that_gave_up_is_skipped() -> None:
    state = new_state(max_size=1)
    held = take(state)
    quitter, patient = FakeWaiter("quitter", gives_up=True), FakeWaiter("patient")
    state.wait(quitter, 0.0)
    state.wait(patient, 0.0)
    assert state.waiting == 2
    assert not state.checkin(held, 1.0, keep=True, reset=False)
    assert quitter.offers == [held] and quitter.slot is None and not quitter.active
    assert patient.slot is held and not patient.active
    assert state.waiting == 0 and state.in_use == 1 and state.idle == 0
    state.cancel_wait(quitter)  # the async layer cancels it afterwards: must not double-count
    assert state.waiting == 0


def test_slot_goes_idle_when_every_waiter_gave_up() -> None:
    state = new_state(max_size=1)
    held = take(state)
    quitters = [FakeWaiter(f"q{i}", gives_up=True) for i in range(2)]
    for w in quitters:
        state.wait(w, 0.0)
    assert not state.checkin(held, 1.0, keep=True, reset=False)
    assert [w.offers for w in quitters] == [[held], [held]]
    assert state.idle_slots() == [held] and held.state is SlotState.IDLE
    assert state.waiting == 0 and state.in_use == 0


def test_cancel_wait_keeps_waiting_exact() -> None:
    state = new_state(max_size=1)
    held = take(state)
    w1, w2, w3 = FakeWaiter("w1"), FakeWaiter("w2"), FakeWaiter("w3")
    for w in (w1, w2, w3):
        state.wait(w, 0.0)
    state.cancel_wait(w2)
    assert state.waiting == 2 and not w2.active
    state.cancel_wait(w2)
    state.cancel_wait(FakeWaiter("never queued"))
    assert state.waiting == 2
    state.checkin(held, 1.0, keep=True, reset=False)
    assert w1.slot is held and state.waiting == 1
    state.checkin(held, 2.0, keep=True, reset=False)
    assert w3.slot is held and w2.offers == [] and state.waiting == 0
    state.cancel_wait(w1)  # already served: a no-op
    assert state.waiting == 0


class _TrapDeque(deque[Waiter]):
    """A waiter queue that fails the test on any O(n) operation."""

    def _trap(self, *args: object) -> NoReturn:
        raise AssertionError("cancel_wait must not search the waiter queue")

    def remove(self, value: Waiter) -> None:
        self._trap()

    def index(self, value: Waiter, start: SupportsIndex = 0, stop: SupportsIndex = 0) -> int:
        self._trap()

    def __contains__(self, value: object) -> bool:
        self._trap()

    def __iter__(self) -> Iterator[Waiter]:
        self._trap()

    def __delitem__(self, key: SupportsIndex | slice) -> None:
        self._trap()


def test_cancel_wait_does_not_search_the_queue() -> None:
    state = new_state(max_size=1)
    take(state)
    waiters = [FakeWaiter(f"w{i}") for i in range(1000)]
    for w in waiters:
        state.wait(w, 0.0)
    state._waiters = _TrapDeque(state._waiters)  # any scan of the queue now fails
    for w in waiters[::2]:  # few abandoned entries yet: no compaction is due
        state.cancel_wait(w)
    assert state.waiting == 500
    assert [w.active for w in waiters[:4]] == [False, True, False, True]


class _CountingWaiter(FakeWaiter):
    """Counts reads of ``active``: the work cancel_wait and compaction do."""

    reads = 0

    @property
    def active(self) -> bool:
        _CountingWaiter.reads += 1
        return self._active

    @active.setter
    def active(self, value: bool) -> None:
        self._active = value


def test_cancel_wait_is_amortised_constant_time_and_bounds_the_queue() -> None:
    state = new_state(max_size=1)
    held = take(state)
    n = 5000
    waiters = [_CountingWaiter(f"w{i}") for i in range(n)]
    for w in waiters:
        state.wait(w, 0.0)
    keep = set(range(0, n, 1000))
    order = [i for i in range(n) if i not in keep]
    random.Random(3).shuffle(order)
    _CountingWaiter.reads = 0
    for i in order:
        state.cancel_wait(waiters[i])
    assert _CountingWaiter.reads <= 4 * n, "cancelling must not rescan the queue each time"
    assert state.waiting == len(keep)
    assert len(state._waiters) <= 2 * state.waiting + 65, "abandoned waiters pile up"
    for i in sorted(keep):  # compaction kept the survivors, in order
        state.checkin(held, 1.0, keep=True, reset=False)
        assert waiters[i].slot is held and state.waiting == len(keep) - 1 - sorted(keep).index(i)
    assert not any(waiters[i].offers for i in order)


def test_compaction_keeps_fifo_and_front_order() -> None:
    state = new_state(max_size=1)
    held = take(state)
    front = FakeWaiter("front")
    state.wait(front, 0.0, front=True)
    gone = [FakeWaiter(f"gone{i}") for i in range(200)]
    for w in gone[:100]:
        state.wait(w, 0.0)
    middle = FakeWaiter("middle")
    state.wait(middle, 0.0)
    for w in gone[100:]:
        state.wait(w, 0.0)
    last = FakeWaiter("last")
    state.wait(last, 0.0)
    for w in gone:
        state.cancel_wait(w)
    assert state.waiting == 3 and len(state._waiters) < 200
    for expected in (front, middle, last):
        state.checkin(held, 1.0, keep=True, reset=False)
        assert expected.slot is held and expected.offers == [held]
    assert all(w.offers == [] for w in gone)


def test_max_waiting_raises_too_many_waiters() -> None:
    state = new_state(max_size=1, max_waiting=2)
    take(state)
    w1, w2 = FakeWaiter("w1"), FakeWaiter("w2")
    state.wait(w1, 0.0)
    state.wait(w2, 0.0)
    extra = FakeWaiter("extra")
    with pytest.raises(TooManyWaiters, match="max_waiting=2"):
        state.wait(extra, 0.0)
    assert state.waiting == 2 and not extra.active
    state.wait(FakeWaiter("front"), 0.0, front=True)  # a re-queued caller keeps its place
    assert state.waiting == 3
    state.cancel_wait(w1)
    with pytest.raises(TooManyWaiters):
        state.wait(FakeWaiter(), 0.0)
    state.cancel_wait(w2)
    state.wait(FakeWaiter("fits again"), 0.0)
    assert state.waiting == 2


def test_max_waiting_zero_is_unbounded() -> None:
    state = new_state(max_size=1, max_waiting=0)
    take(state)
    for i in range(200):
        state.wait(FakeWaiter(f"w{i}"), 0.0)
    assert state.waiting == 200


# ----- growth and capacity ----------------------------------------------------------------


def test_opening_grows_for_waiters_up_to_max_size() -> None:
    state = new_state(min_size=0, max_size=3)
    opened = [len(state.wait(FakeWaiter(f"w{i}"), 0.0).open) for i in range(5)]
    assert opened == [1, 1, 1, 0, 0]
    assert state.size == state.opening == 3 and state.waiting == 5


def _occupy(state: PoolState, how: str) -> Callable[[], Actions]:
    """Fill the second of two capacity units ``how``; return the call that frees it."""
    if how == "opening":
        (slot,) = state.wait(FakeWaiter("first"), 0.0).open
        return lambda: state.open_failed(slot)
    slot = take(state)
    if how == "in_use":
        return lambda: state.checkin(slot, 5.0, keep=False, reset=False)
    if how == "resetting":
        assert not state.checkin(slot, 1.0, keep=True, reset=True)
        return lambda: state.reset_done(slot, 5.0, ok=False)
    assert how == "closing"
    assert state.discard(slot).close == [slot]
    return lambda: state.closed_done(slot)


@pytest.mark.parametrize("how", ["opening", "in_use", "resetting", "closing"])
def test_capacity_counts_every_live_or_closing_connection(how: str) -> None:
    state = new_state(min_size=0, max_size=2)
    take(state)
    free = _occupy(state, how)
    assert state.size == 2
    waiters = [FakeWaiter(f"w{i}") for i in range(3)]
    for w in waiters:
        assert not state.wait(w, 0.0).open, f"opened beyond max_size with one {how}"
    actions = free()
    if actions.close:  # the freed unit is closing now: capacity still held
        assert not actions.open
        (slot,) = actions.close
        actions = state.closed_done(slot)
    assert len(actions.open) == 1, "capacity came back: a waiter needs a connection"
    assert state.size == 2


def test_resetting_connection_counts_as_coming_for_a_waiter() -> None:
    state = new_state(max_size=3)
    a = take(state)
    assert not state.checkin(a, 1.0, keep=True, reset=True)
    w1, w2 = FakeWaiter("w1"), FakeWaiter("w2")
    assert not state.wait(w1, 0.0).open, "the reset connection will serve w1"
    assert len(state.wait(w2, 0.0).open) == 1
    assert not state.reset_done(a, 2.0, ok=True)
    assert w1.slot is a and w2.slot is None


def test_open_failed_replans_for_a_waiter() -> None:
    state = new_state(max_size=2)
    w = FakeWaiter()
    (slot,) = state.wait(w, 0.0).open
    actions = state.open_failed(slot)
    assert slot.state is SlotState.CLOSED
    (retry,) = actions.open
    assert retry is not slot and retry.id != slot.id
    assert state.opening == 1 and state.size == 1
    assert not state.opened(retry, 1.0)
    assert w.slot is retry


def test_open_failed_replans_for_min_size() -> None:
    state = new_state(min_size=2, max_size=2)
    first, _ = state.fill().open
    assert len(state.open_failed(first).open) == 1
    assert state.opening == 2


def test_open_failed_does_not_replan_when_nobody_needs_it() -> None:
    state = new_state(min_size=0, max_size=2)
    w = FakeWaiter()
    (slot,) = state.wait(w, 0.0).open
    state.cancel_wait(w)
    assert not state.open_failed(slot)
    assert state.size == 0


def test_open_failed_does_not_replan_after_close() -> None:
    state = new_state(min_size=2, max_size=2)
    slots = state.fill().open
    state.close()
    assert not state.open_failed(slots[0])
    assert state.size == 1


def test_opened_connection_that_nobody_wants_goes_idle() -> None:
    state = new_state(max_size=2)
    w = FakeWaiter()
    (slot,) = state.wait(w, 0.0).open
    state.cancel_wait(w)
    assert not state.opened(slot, 3.0)
    assert state.idle_slots() == [slot] and w.offers == []


# ----- returning connections --------------------------------------------------------------


def test_checkin_keep_false_closes_and_replaces_up_to_min_size() -> None:
    state, _ = idle_pool(1, max_size=3)
    slot = take(state)
    actions = state.checkin(slot, 1.0, keep=False, reset=False)
    assert actions.close == [slot] and slot.state is SlotState.CLOSING
    assert len(actions.open) == 1
    assert counts(state) == (1, 0, 0, 0, 1, 0)


def test_checkin_keep_false_replacement_waits_for_capacity() -> None:
    state, (a, _) = idle_pool(2)
    for _ in range(2):
        take(state)
    actions = state.checkin(a, 1.0, keep=False, reset=False)
    assert actions.close == [a] and not actions.open, "the closing one still holds capacity"
    assert len(state.closed_done(a).open) == 1
    assert a.state is SlotState.CLOSED and state.size == 2


def test_checkin_keep_false_above_min_size_does_not_replace() -> None:
    state = new_state(min_size=0, max_size=2)
    slot = take(state)
    actions = state.checkin(slot, 1.0, keep=False, reset=False)
    assert actions.close == [slot] and not actions.open
    assert not state.closed_done(slot)
    assert state.size == 0


def test_checkin_reset_goes_through_resetting() -> None:
    state = new_state(max_size=1)
    slot = take(state)
    w = FakeWaiter()
    state.wait(w, 0.0)
    assert not state.checkin(slot, 1.0, keep=True, reset=True)
    assert state_of(slot) is SlotState.RESETTING
    assert counts(state) == (0, 0, 0, 1, 0, 1)
    assert w.offers == [], "a connection being reset is not handed out"
    assert not state.reset_done(slot, 2.0, ok=True)
    assert w.slot is slot and slot.state is SlotState.IN_USE and slot.idle_since == 2.0


def test_resetting_connection_is_not_available_to_checkout() -> None:
    state = new_state(max_size=2)
    slot = take(state)
    state.checkin(slot, 1.0, keep=True, reset=True)
    got, actions = state.checkout(1.5)
    assert got is None and not actions
    assert not state.reset_done(slot, 2.0, ok=True)
    assert state.idle_slots() == [slot]
    assert state.checkout(2.5)[0] is slot


def test_reset_done_not_ok_closes_and_replans() -> None:
    state = new_state(max_size=1)
    slot = take(state)
    state.checkin(slot, 1.0, keep=True, reset=True)
    w = FakeWaiter()
    state.wait(w, 0.0)
    actions = state.reset_done(slot, 2.0, ok=False)
    assert actions.close == [slot] and not actions.open
    assert w.offers == [] and state.waiting == 1
    (fresh,) = state.closed_done(slot).open
    state.opened(fresh, 3.0)
    assert w.slot is fresh


def test_discard_closes_and_replans_for_waiters() -> None:
    state = new_state(max_size=2)
    a, b = take(state), take(state)
    w = FakeWaiter()
    state.wait(w, 0.0)
    actions = state.discard(a)
    assert actions.close == [a] and not actions.open
    assert len(state.closed_done(a).open) == 1
    assert b.state is SlotState.IN_USE


def test_discard_replaces_at_once_when_there_is_room() -> None:
    state = new_state(min_size=1, max_size=3)
    slot = take(state)
    actions = state.discard(slot)
    assert actions.close == [slot] and len(actions.open) == 1, "min_size needs a replacement"
    assert counts(state) == (1, 0, 0, 0, 1, 0)


# ----- lifetime ---------------------------------------------------------------------------


def test_expired_connections_are_never_handed_out_at_checkout() -> None:
    state = new_state(max_size=3, max_lifetime=10.0)
    a, b = take(state, now=0.0), take(state, now=5.0)
    assert (a.expires_at, b.expires_at) == (10.0, 15.0)
    state.checkin(b, 6.0, keep=True, reset=False)
    state.checkin(a, 7.0, keep=True, reset=False)
    got, actions = state.checkout(10.0)  # a is on top but expired at exactly 10
    assert got is b
    assert actions.close == [a] and a.state is SlotState.CLOSING
    state.checkin(b, 11.0, keep=True, reset=False)
    got, actions = state.checkout(15.0)
    assert got is None and actions.close == [b]
    assert state.idle == 0 and state.closing == 2


def test_expired_idle_connection_is_replaced_for_min_size() -> None:
    state, (a,) = idle_pool(1, max_size=2, max_lifetime=10.0)
    got, actions = state.checkout(12.0)
    assert got is None and actions.close == [a]
    assert len(actions.open) == 1


def test_expired_connection_is_not_given_to_a_waiter() -> None:
    state = new_state(max_size=1, max_lifetime=10.0)
    slot = take(state, now=0.0)
    w = FakeWaiter()
    state.wait(w, 0.0)
    actions = state.checkin(slot, 10.5, keep=True, reset=False)
    assert actions.close == [slot] and w.offers == []
    (fresh,) = state.closed_done(slot).open
    state.opened(fresh, 11.0)
    assert w.slot is fresh and fresh.expires_at == 21.0


def test_connection_expiring_during_reset_is_closed() -> None:
    state = new_state(max_size=1, max_lifetime=10.0)
    slot = take(state, now=0.0)
    state.checkin(slot, 9.0, keep=True, reset=True)
    actions = state.reset_done(slot, 10.0, ok=True)
    assert actions.close == [slot] and state.idle == 0


def test_lifetime_jitter_shortens_lifetimes_within_bounds() -> None:
    state = new_state(
        min_size=200, max_size=200, max_lifetime=100.0, lifetime_jitter=0.25, rng=random.Random(7)
    )
    slots = connect(state, state.fill(), now=50.0)
    lifetimes = [slot.expires_at - 50.0 for slot in slots]
    assert all(75.0 <= life <= 100.0 for life in lifetimes)
    assert min(lifetimes) < 80.0 and max(lifetimes) > 95.0, "jitter spreads lifetimes out"
    replay = random.Random(7)
    expected = [100.0 * (1.0 - 0.25 * replay.random()) for _ in slots]
    assert lifetimes == pytest.approx(expected), "one draw of the given rng per connection"


def test_lifetime_without_jitter_is_exact() -> None:
    state = new_state(min_size=3, max_size=3, max_lifetime=30.0, rng=random.Random(1))
    slots = connect(state, state.fill(), now=2.0)
    assert [slot.expires_at for slot in slots] == [32.0] * 3


def test_no_max_lifetime_never_expires() -> None:
    state, slots = idle_pool(2)
    assert all(slot.expires_at == math.inf for slot in slots)
    assert state.checkout(1e12)[0] is slots[-1]


# ----- maintenance ------------------------------------------------------------------------


def _idle_at(state: PoolState, times: Iterable[float]) -> list[Slot]:
    """Take one connection per time and return each at that time: idle oldest first."""
    slots = [take(state) for _ in times]
    for slot, t in zip(slots, times, strict=True):
        state.checkin(slot, t, keep=True, reset=False)
    return slots


def test_sweep_closes_idle_too_long_only_above_min_size() -> None:
    state = new_state(min_size=1, max_size=3, max_idle=10.0)
    a, b, c = _idle_at(state, [0.0, 1.0, 2.0])
    actions = state.sweep(11.0)  # a idle 11 s, b exactly 10 s, c 9 s
    assert actions.close == [a, b] and not actions.open
    assert state.idle_slots() == [c]
    actions = state.sweep(50.0)
    assert not actions, "the last one is needed for min_size"
    assert state.idle_slots() == [c]


def test_sweep_closes_oldest_idle_first_and_stops_at_min_size() -> None:
    state = new_state(min_size=2, max_size=4, max_idle=5.0)
    slots = _idle_at(state, [0.0, 1.0, 2.0, 3.0])
    actions = state.sweep(100.0)
    assert actions.close == slots[:2]
    assert state.idle_slots() == slots[2:]


def test_sweep_idle_clock_starts_at_return_not_at_connect() -> None:
    state = new_state(min_size=0, max_size=2, max_idle=10.0)
    slot = take(state, now=0.0)
    state.checkin(slot, 8.0, keep=True, reset=False)
    assert not state.sweep(15.0)
    assert state.sweep(18.0).close == [slot]


def test_sweep_closes_expired_connections_even_at_min_size() -> None:
    state, (a, b) = idle_pool(2, max_lifetime=10.0)
    actions = state.sweep(10.0)
    assert actions.close == [a, b] and not actions.open, "replacements wait for capacity"
    assert len(state.closed_done(a).open) == 1
    assert len(state.closed_done(b).open) == 1


def test_sweep_leaves_in_use_and_fresh_connections_alone() -> None:
    state = new_state(min_size=0, max_size=3, max_idle=5.0, max_lifetime=100.0)
    busy = take(state, now=0.0)
    (fresh,) = _idle_at(state, [20.0])
    assert not state.sweep(24.0)
    assert busy.state is SlotState.IN_USE and state.idle_slots() == [fresh]


def test_sweep_without_limits_does_nothing() -> None:
    state = new_state(min_size=0, max_size=3)
    _idle_at(state, [0.0, 1.0])
    assert not state.sweep(1e9)
    assert state.idle == 2


def test_sweep_after_close_does_nothing() -> None:
    state = new_state(min_size=0, max_size=3, max_idle=1.0)
    slot = take(state)
    state.close()
    assert not state.sweep(100.0)
    assert state.checkin(slot, 100.0, keep=True, reset=False).close == [slot]


def test_resize_shrinks_idle_immediately_oldest_first() -> None:
    state = new_state(min_size=0, max_size=4)
    busy = [take(state), take(state)]
    old, new = _idle_at(state, [1.0, 2.0])
    actions = state.resize(0, 2)
    assert actions.close == [old, new] and not actions.open
    assert all(slot.state is SlotState.IN_USE for slot in busy)
    assert (state.min_size, state.max_size, state.size) == (0, 2, 4)


def test_resize_shrinks_in_use_connections_on_checkin() -> None:
    state = new_state(min_size=0, max_size=3)
    a, b, c = take(state), take(state), take(state)
    assert not state.resize(0, 1), "in-use connections are not taken away"
    assert state.checkin(a, 1.0, keep=True, reset=False).close == [a]
    assert state.checkin(b, 1.0, keep=True, reset=False).close == [b]
    for slot in (a, b):
        assert not state.closed_done(slot).open
    state.checkin(c, 2.0, keep=True, reset=False)
    assert state.size <= 1


def test_resize_up_opens_for_waiters_and_min_size() -> None:
    state = new_state(min_size=0, max_size=1)
    take(state)
    state.wait(FakeWaiter(), 0.0)
    assert len(state.resize(0, 2).open) == 1
    assert len(state.resize(4, 5).open) == 2
    assert state.size == 4


def test_resize_down_never_opens() -> None:
    state = new_state(min_size=0, max_size=3)
    for _ in range(3):
        take(state)
    state.wait(FakeWaiter(), 0.0)
    assert not state.resize(2, 2).open
    assert state.size == 3


# ----- close and invalidate ---------------------------------------------------------------


def test_close_fails_waiters_in_order_and_closes_idle() -> None:
    state = new_state(min_size=0, max_size=2)
    a, b = take(state), take(state)
    waiters = [FakeWaiter(f"w{i}") for i in range(4)]
    for w in waiters:
        state.wait(w, 0.0)
    state.cancel_wait(waiters[1])
    waiters[2].gives_up = True  # still counted until the async layer cancels it
    returned, actions = state.close()
    assert returned == [waiters[0], waiters[2], waiters[3]]
    assert not any(w.active for w in waiters)
    assert state.closed and state.waiting == 0
    assert not actions, "nothing idle to close; in-use ones close when returned"
    assert state.checkin(a, 1.0, keep=True, reset=False).close == [a]
    assert state.checkin(b, 1.0, keep=True, reset=True).close == [b]
    assert all(w.offers == [] for w in waiters)


def test_close_closes_idle_and_later_returns() -> None:
    state = new_state(min_size=0, max_size=5)
    busy, resetting, idler = take(state), take(state), take(state)
    state.checkin(idler, 1.0, keep=True, reset=False)
    state.checkin(resetting, 1.0, keep=True, reset=True)
    (pending,) = state.resize(4, 5).open
    returned, actions = state.close()
    assert returned == []
    assert actions.close == [idler] and not actions.open
    assert state.idle == 0 and idler.state is SlotState.CLOSING
    assert state.opened(pending, 2.0).close == [pending]
    assert state.reset_done(resetting, 2.0, ok=True).close == [resetting]
    assert state.discard(busy).close == [busy]
    for slot in (idler, pending, resetting, busy):
        assert not state.closed_done(slot), "a closed pool never reopens"
    assert state.size == 0
    assert not state.fill() and not state.resize(3, 5)
    assert state.close() == ([], Actions())


def test_take_waiters_empties_the_queue_and_the_pool_stays_open() -> None:
    """What the pool does on a configuration error: the callers go, the pool goes on."""
    state = new_state(min_size=0, max_size=2)
    waiters = [FakeWaiter(f"w{i}") for i in range(3)]
    attempts = [slot for w in waiters for slot in state.wait(w, 0.0).open]
    state.cancel_wait(waiters[1])
    assert state.take_waiters() == [waiters[0], waiters[2]]
    assert not any(w.active for w in waiters)
    assert state.waiting == 0 and not state.closed
    assert state.take_waiters() == []
    # the attempts started for them go on; one that succeeds is kept for later callers
    assert len(attempts) == state.opening == 2
    assert not state.opened(attempts[0], 1.0) and state.idle == 1
    assert all(w.offers == [] for w in waiters)


def test_connected_counts_what_can_serve_a_caller() -> None:
    state = new_state(min_size=0, max_size=5)
    busy, resetting, idler, closing = take(state), take(state), take(state), take(state)
    state.checkin(idler, 1.0, keep=True, reset=False)
    state.checkin(resetting, 1.0, keep=True, reset=True)
    state.discard(closing)
    (pending,) = state.resize(4, 5).open
    assert (state.connected, state.opening, state.closing) == (3, 1, 1)
    state.discard(busy)
    state.open_failed(pending)
    assert state.connected == 2


def test_invalidate_marks_connections_created_at_or_before_now() -> None:
    state = new_state(min_size=0, max_size=4)
    a, b = take(state, now=1.0), take(state, now=5.0)
    (pending,) = state.wait(FakeWaiter(), 5.0).open
    assert not state.is_suspect(a) and not state.is_suspect(b)
    state.invalidate(5.0)
    assert state.is_suspect(a) and state.is_suspect(b), "at or before the disconnect"
    assert not state.is_suspect(pending), "not connected yet"
    state.opened(pending, 5.5)
    c = take(state, now=6.0)
    assert not state.is_suspect(pending) and not state.is_suspect(c)
    state.invalidate(3.0)  # an older report does not clear anything
    assert state.is_suspect(b) and not state.is_suspect(c)
    state.invalidate(6.0)
    assert state.is_suspect(c) and state.is_suspect(pending)


def test_verified_connection_is_no_longer_suspect() -> None:
    state = new_state(min_size=0, max_size=2)
    a, b = take(state, now=1.0), take(state, now=2.0)
    state.invalidate(3.0)
    state.verified(a, 4.0)
    assert not state.is_suspect(a) and state.is_suspect(b)
    assert a.created_at == 1.0, "a check does not make a connection younger"
    state.invalidate(4.0)  # a disconnect seen in the same instant as the check
    assert state.is_suspect(a)
    state.verified(a, 4.5)
    assert not state.is_suspect(a) and state.is_suspect(b)


# ----- regressions for bugs found while writing these tests -------------------------------


def test_resize_closes_only_the_excess_idle() -> None:
    """Fixed in 79e55a1: the loop tested ``size``, which still counts closing slots."""
    state, slots = idle_pool(4)
    actions = state.resize(0, 2)
    assert actions.close == slots[:2], "only the two oldest are over the new maximum"
    assert state.idle_slots() == slots[2:]


def test_resize_with_closes_pending_closes_only_live_excess() -> None:
    state, slots = idle_pool(4)
    first = take(state)
    assert state.discard(first).close == [first]  # closing: already on its way out
    actions = state.resize(0, 2)
    assert actions.close == slots[:1]
    assert state.live == 2 and state.size == 4


def _over_new_max(via: str) -> tuple[PoolState, Slot, Actions]:
    """Two connections, max_size lowered to 1, then one comes back ``via`` some path."""
    state = new_state(min_size=0, max_size=2)
    if via == "opened":
        first, second = FakeWaiter("w1"), FakeWaiter("w2")
        (slot,) = state.wait(first, 0.0).open
        state.wait(second, 0.0)
        state.resize(0, 1)
        return state, slot, state.opened(slot, 1.0)
    slot, _other = take(state), take(state)
    if via == "reset_done":
        state.checkin(slot, 1.0, keep=True, reset=True)
        state.resize(0, 1)
        return state, slot, state.reset_done(slot, 2.0, ok=True)
    state.resize(0, 1)
    assert via in ("checkin", "checkin_reset")
    return state, slot, state.checkin(slot, 1.0, keep=True, reset=via == "checkin_reset")


@pytest.mark.parametrize("via", ["checkin", "checkin_reset", "opened", "reset_done"])
def test_connection_back_above_new_max_size_is_closed(via: str) -> None:
    """Fixed in 79e55a1: the slot itself was not counted, so the pool kept max_size + 1.

    With reset=True it is closed at once too, rather than reset first and closed after.
    """
    state, slot, actions = _over_new_max(via)
    assert slot.state is SlotState.CLOSING and actions.close == [slot]
    assert state.live <= state.max_size


def test_pool_converges_to_new_max_size_when_closes_finish_promptly() -> None:
    state = new_state(min_size=0, max_size=3)
    slots = [take(state) for _ in range(3)]
    state.resize(0, 1)
    for slot in slots:
        for closing in state.checkin(slot, 1.0, keep=True, reset=False).close:
            assert not state.closed_done(closing)
    assert state.size == state.idle == 1


def test_requeued_waiter_is_served_from_idle_at_once() -> None:
    """Fixed in 79e55a1: wait() ignored idle connections, so a caller re-queued after a
    failed health check could wait (or make the pool connect) next to an idle connection."""
    state = new_state(min_size=0, max_size=2)
    checked, other = take(state), take(state)
    # the pool pings `checked`; meanwhile `other` comes back and nobody is waiting for it
    state.checkin(other, 1.0, keep=True, reset=False)
    assert not state.discard(checked).open  # the ping failed
    w = FakeWaiter("requeued")
    actions = state.wait(w, 2.0, front=True)
    assert w.slot is other and not w.active and not actions
    assert (state.idle, state.waiting, state.in_use) == (0, 0, 1)


def test_wait_skips_and_closes_expired_idle_connections() -> None:
    state = new_state(min_size=0, max_size=3, max_lifetime=10.0)
    old, young = take(state, now=0.0), take(state, now=5.0)
    state.checkin(young, 6.0, keep=True, reset=False)
    state.checkin(old, 7.0, keep=True, reset=False)
    w = FakeWaiter()
    actions = state.wait(w, 12.0, front=True)
    assert actions.close == [old] and w.slot is young and state.idle == 0


def test_wait_leaves_idle_connection_when_the_waiter_already_gave_up() -> None:
    state = new_state(min_size=0, max_size=2)
    slot = take(state)
    state.checkin(slot, 1.0, keep=True, reset=False)
    w = FakeWaiter(gives_up=True)
    assert not state.wait(w, 2.0, front=True)
    assert w.offers == [slot] and w.slot is None
    assert state.idle_slots() == [slot] and state.waiting == 0 and state.in_use == 0


def test_sweep_keeps_min_size_when_expired_connections_go_too() -> None:
    """Fixed in 4e00393: ``too_idle`` was decided before later expired slots were known."""
    state = new_state(min_size=1, max_size=2, max_lifetime=10.0, max_idle=5.0)
    old = take(state, now=0.0)  # created first: expires at 10
    young = take(state, now=1.0)  # created later: expires at 11
    state.checkin(young, 2.0, keep=True, reset=False)  # idle the longest
    state.checkin(old, 4.0, keep=True, reset=False)
    actions = state.sweep(10.0)  # old has expired; young has been idle 8 s > max_idle
    assert actions.close == [old], "young is the one connection min_size=1 asks for"
    assert state.idle_slots() == [young]


# ----- stateful model ---------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    min_size: int
    max_size: int
    max_waiting: int
    max_lifetime: float | None
    max_idle: float | None
    jitter: float
    seed: int
    close_after: int  # steps before close() may happen, so most runs test an open pool


@st.composite
def bounds(draw: st.DrawFn) -> tuple[int, int]:
    max_size = draw(st.integers(1, 4))
    return draw(st.integers(0, max_size)), max_size


@st.composite
def configs(draw: st.DrawFn) -> Config:
    min_size, max_size = draw(bounds())
    return Config(
        min_size=min_size,
        max_size=max_size,
        max_waiting=draw(st.sampled_from([0, 0, 1, 3])),
        max_lifetime=draw(st.sampled_from([None, 10.0, 25.0])),
        max_idle=draw(st.sampled_from([None, 4.0, 12.0])),
        jitter=draw(st.sampled_from([0.0, 0.3])),
        seed=draw(st.integers(0, 2**16)),
        close_after=draw(st.sampled_from([10, 30, 45])),
    )


INDEX = st.integers(0, 31)
USES = (
    "checkin",
    "checkin",
    "checkin_reset",
    "checkin_drop",
    "discard",
    "check_failed",
    "check_passed",
)
CALLER_EVENTS = ("give_up", "cancel", "cancel_any")


# One rule, ``step(op)``, takes one of these. Hypothesis' swarm testing switches whole rules
# off for a run; with a rule per transition, the chain acquire -> connect -> use -> reset
# rarely survived it (measured: a connect finished in few runs, a reset in almost none).


@dataclass(frozen=True)
class Acquire:
    """checkout(), then wait() if nothing was free (Pool._acquire)."""


@dataclass(frozen=True)
class WorkerDone:
    """A worker thread reports: a connect, a reset (each ok or not) or a close finished."""

    i: int
    ok: bool


@dataclass(frozen=True)
class Use:
    """The caller holding a connection returns it, discards it or health-checks it."""

    i: int
    how: str  # one of USES


@dataclass(frozen=True)
class CallerEvent:
    """A queued caller gives up (not yet cancelled), or cancels its wait."""

    i: int
    how: str  # one of CALLER_EVENTS


@dataclass(frozen=True)
class Advance:
    dt: float


@dataclass(frozen=True)
class Sweep:
    pass


@dataclass(frozen=True)
class Resize:
    min_size: int
    max_size: int


@dataclass(frozen=True)
class Invalidate:
    back: float  # how long ago the disconnect was seen


@dataclass(frozen=True)
class Close:
    pass


Op = Acquire | WorkerDone | Use | CallerEvent | Advance | Sweep | Resize | Invalidate | Close


def _weighted(*entries: tuple[int, st.SearchStrategy[Op]]) -> st.SearchStrategy[Op]:
    """Pick a branch with the given weights (``one_of`` would merge equal branches)."""
    branches = [strategy for weight, strategy in entries for _ in range(weight)]
    return st.integers(0, len(branches) - 1).flatmap(lambda k: branches[k])


OPS = _weighted(
    (2, st.just(Acquire())),
    (4, st.builds(WorkerDone, i=INDEX, ok=st.sampled_from([True, True, True, False]))),
    (5, st.builds(Use, i=INDEX, how=st.sampled_from(USES))),
    (2, st.builds(Advance, dt=st.sampled_from([0.0, 0.5, 1.0, 2.0, 4.0, 12.0]))),
    (2, st.builds(CallerEvent, i=INDEX, how=st.sampled_from(CALLER_EVENTS))),
    (1, st.just(Sweep())),
    (2, bounds().map(lambda b: Resize(*b))),
    (1, st.builds(Invalidate, back=st.sampled_from([0.0, 0.0, 1.0, 6.0]))),
    (1, st.just(Close())),
)


def pick(items: dict[int, Slot] | list[Slot], i: int) -> Slot:
    values = list(items.values()) if isinstance(items, dict) else items
    return values[i % len(values)]


Offer = tuple[FakeWaiter, Slot, SlotState, bool, bool]  # waiter, slot, state, active, accepted


class PoolMachine(RuleBasedStateMachine):
    """Random transitions against a model holding every slot in exactly one bucket.

    The model predicts where each slot goes (checkout LIFO, FIFO service, closes) and the
    invariants are checked after every step.
    """

    def __init__(self) -> None:
        super().__init__()
        self.s = PoolState(min_size=0, max_size=1)  # replaced in init_pool()
        self.cfg = Config(0, 1, 0, None, None, 0.0, 0, 0)
        self.steps = 0
        self.now = 0.0
        self.closed = False
        self.min_size = 0
        self.max_size = 1
        self.slots: dict[int, Slot] = {}
        self.opening: dict[int, Slot] = {}
        self.idle: list[Slot] = []  # the idle stack, oldest first
        self.in_use: dict[int, Slot] = {}
        self.holder: dict[int, object] = {}  # slot id -> "checkout" or the FakeWaiter
        self.resetting: dict[int, Slot] = {}
        self.closing: dict[int, Slot] = {}
        self.dead: dict[int, Slot] = {}
        self.queue: list[FakeWaiter] = []  # active waiters in service order
        self.waiters: list[FakeWaiter] = []  # every waiter ever made
        self.offers: list[Offer] = []
        self.verified_at: dict[int, tuple[float, int]] = {}  # opened, or last passed a health check
        self.ready_at: dict[int, float] = {}
        self.invalidated = -math.inf
        self.epoch = 0  # disconnect reports so far: order decides at equal clock readings
        self.prev_size = 0

    # ----- model plumbing --------------------------------------------------------------

    def _record_offer(self, waiter: FakeWaiter, slot: Slot, accepted: bool) -> None:
        self.offers.append((waiter, slot, slot.state, waiter.active, accepted))

    def _new_waiter(self) -> FakeWaiter:
        waiter = FakeWaiter(f"w{len(self.waiters)}", on_offer=self._record_offer)
        self.waiters.append(waiter)
        return waiter

    def _absorb(self, actions: Actions) -> list[Slot]:
        """Register planned connects (checking they were due); return the closes."""
        s = self.s
        if actions.open:
            assert not self.closed, "a closed pool opened a connection"
            assert s.size <= s.max_size, f"opened while at or above max_size: {s.size}"
            assert s.live <= s.min_size or s.opening + s.resetting <= s.waiting, (
                "opened connections neither min_size nor any waiter needs"
            )
        for slot in actions.open:
            assert slot.id not in self.slots, "slot ids are never reused"
            assert slot.state is SlotState.OPENING and math.isnan(slot.created_at)
            self.slots[slot.id] = slot
            self.opening[slot.id] = slot
        assert len({id(slot) for slot in actions.close}) == len(actions.close)
        for slot in actions.close:
            assert slot.state is SlotState.CLOSING
        return list(actions.close)

    def _settle_offers(self, slot: Slot | None) -> tuple[FakeWaiter | None, int]:
        """Check the offers made during the last call; return who took ``slot``."""
        offers, self.offers = self.offers, []
        winner: FakeWaiter | None = None
        for waiter, offered, state_then, active_then, accepted in offers:
            assert winner is None, "offered again after a waiter took the connection"
            assert offered is slot, "offered a connection that was not becoming ready"
            assert self.queue and self.queue[0] is waiter, "waiters must be served FIFO"
            self.queue.pop(0)
            assert state_then is SlotState.IN_USE, f"handed out a {state_then.value} slot"
            assert not active_then, "a waiter must be dequeued before the offer"
            assert offered.id not in self.holder, "one connection handed to two callers"
            assert self.now < offered.expires_at, "handed out an expired connection"
            assert accepted is not waiter.gives_up
            if accepted:
                winner = waiter
        return winner, len(offers)

    def _hand(self, slot: Slot, owner: object) -> None:
        assert slot.state is SlotState.IN_USE
        self.in_use[slot.id] = slot
        self.holder[slot.id] = owner

    def _release(self, slot: Slot) -> None:
        del self.in_use[slot.id]
        del self.holder[slot.id]

    def _to_closing(self, slot: Slot) -> None:
        assert slot.state is SlotState.CLOSING
        self.closing[slot.id] = slot

    def _became_ready(self, slot: Slot, actions: Actions, size_before: int, live: int) -> None:
        """``slot`` left its bucket and went through _make_ready: check where it went."""
        expired = self.now >= slot.expires_at
        closes = self._absorb(actions)
        winner, offered = self._settle_offers(slot)
        if slot.state is SlotState.CLOSING:
            assert closes == [slot] and offered == 0
            assert self.closed or expired or size_before > self.max_size, (
                "closed a healthy connection the pool had room for"
            )
            self._to_closing(slot)
            return
        assert not closes, "only the returning connection may be closed"
        assert not self.closed, "a closed pool kept a connection"
        assert not expired, "kept an expired connection"
        assert live <= self.max_size, f"kept a connection with {live} live > max_size"
        assert slot.idle_since == self.now, "ready-since clock not restarted"
        self.ready_at[slot.id] = self.now
        if winner is not None:
            self._hand(slot, winner)
        else:
            assert slot.state is SlotState.IDLE
            assert not self.queue, "a connection went idle while a caller was waiting"
            self.idle.append(slot)

    def _sizes(self) -> tuple[int, int]:
        return self.s.size, self.s.live

    def _first_idle(self) -> tuple[Slot | None, list[Slot]]:
        """The idle slot to hand out (newest unexpired) and the expired ones above it."""
        expired: list[Slot] = []
        if not self.queue:
            for slot in reversed(self.idle):
                if self.now < slot.expires_at:
                    return slot, expired
                expired.append(slot)
        return None, expired

    # ----- rules -----------------------------------------------------------------------

    @initialize(cfg=configs())
    def init_pool(self, cfg: Config) -> None:
        self.cfg = cfg
        self.min_size, self.max_size = cfg.min_size, cfg.max_size
        self.s = PoolState(
            min_size=cfg.min_size,
            max_size=cfg.max_size,
            max_waiting=cfg.max_waiting,
            max_lifetime=cfg.max_lifetime,
            max_idle=cfg.max_idle,
            lifetime_jitter=cfg.jitter,
            rng=random.Random(cfg.seed),
        )
        actions = self.s.fill()
        assert len(actions.open) == cfg.min_size and not actions.close
        self._absorb(actions)

    @rule(op=OPS)
    def step(self, op: Op) -> None:
        if isinstance(op, Acquire):
            self._acquire()
        elif isinstance(op, WorkerDone):
            if self.opening or self.resetting or self.closing:
                self._worker_done(op.i, op.ok)
        elif isinstance(op, Use):
            if self.in_use:
                self._use(op.i, op.how)
        elif isinstance(op, CallerEvent):
            self._caller_event(op.i, op.how)
        elif isinstance(op, Advance):
            self.now += op.dt
        elif isinstance(op, Sweep):
            self._sweep()
        elif isinstance(op, Resize):
            self._resize(op.min_size, op.max_size)
        elif isinstance(op, Invalidate):
            self.s.invalidate(self.now - op.back)
            if self.now - op.back >= self.invalidated:  # an older report adds nothing
                self.invalidated = self.now - op.back
                self.epoch += 1
        else:
            assert isinstance(op, Close)
            if self.steps >= self.cfg.close_after:
                self._close()

    def _acquire(self) -> None:
        s = self.s
        if self.closed:
            with pytest.raises(PoolClosed):
                s.checkout(self.now)
            return
        expected, expired = self._first_idle()
        got, actions = s.checkout(self.now)
        closes = self._absorb(actions)
        assert got is expected, "checkout must hand out the newest unexpired idle connection"
        assert closes == expired, "expired idle connections met on the way must be closed"
        assert not self._settle_offers(None)[1]
        for slot in expired:
            self.idle.remove(slot)
            self._to_closing(slot)
        if got is not None:
            self.idle.remove(got)
            self._hand(got, "checkout")
            return
        waiter = self._new_waiter()
        if self.cfg.max_waiting and len(self.queue) >= self.cfg.max_waiting:
            with pytest.raises(TooManyWaiters):
                s.wait(waiter, self.now)
            assert not waiter.active
            return
        actions = s.wait(waiter, self.now)
        self.queue.append(waiter)
        assert not self._absorb(actions)

    def _caller_event(self, i: int, how: str) -> None:
        if how == "cancel_any":  # also callers already served or refused: a no-op for them
            if self.waiters:
                waiter = self.waiters[i % len(self.waiters)]
                self.s.cancel_wait(waiter)
                if any(w is waiter for w in self.queue):
                    self.queue.remove(waiter)
            return
        if not self.queue:
            return
        waiter = self.queue[i % len(self.queue)]
        if how == "give_up":  # cancelled, but cancel_wait not called yet (asyncio's race)
            waiter.gives_up = True
        else:
            assert how == "cancel"
            self.s.cancel_wait(waiter)
            self.queue.remove(waiter)
            assert not waiter.active

    def _worker_done(self, i: int, ok: bool) -> None:
        pending = [*self.opening.values(), *self.resetting.values(), *self.closing.values()]
        slot = pending[i % len(pending)]
        if slot.id in self.opening and ok:
            self._opened(slot)
        elif slot.id in self.opening:
            self._open_failed(slot)
        elif slot.id in self.resetting:
            self._reset_done(slot, ok)
        else:
            self._closed_done(slot)

    def _use(self, i: int, how: str) -> None:
        slot = pick(self.in_use, i)
        if how == "checkin":
            self._checkin(slot, keep=True, reset=False)
        elif how == "checkin_reset":
            self._checkin(slot, keep=True, reset=True)
        elif how == "checkin_drop":
            self._checkin(slot, keep=False, reset=False)
        elif how == "discard":
            self._discard(slot)
        elif how == "check_failed":
            self._check_failed(slot)
        else:
            assert how == "check_passed"
            self.s.verified(slot, self.now)
            self.verified_at[slot.id] = (self.now, self.epoch)

    def _opened(self, slot: Slot) -> None:
        size_before, live_before = self._sizes()
        del self.opening[slot.id]
        actions = self.s.opened(slot, self.now)
        assert slot.created_at == self.now
        self.verified_at[slot.id] = (self.now, self.epoch)
        lifetime = self.cfg.max_lifetime
        if lifetime is None:
            assert slot.expires_at == math.inf
        else:
            life = slot.expires_at - self.now
            assert (1.0 - self.cfg.jitter) * lifetime - 1e-9 <= life <= lifetime + 1e-9
        self._became_ready(slot, actions, size_before, live_before)

    def _open_failed(self, slot: Slot) -> None:
        del self.opening[slot.id]
        assert not self._absorb(self.s.open_failed(slot))
        assert slot.state is SlotState.CLOSED
        self.dead[slot.id] = slot

    def _reset_done(self, slot: Slot, ok: bool) -> None:
        size_before, live_before = self._sizes()
        del self.resetting[slot.id]
        actions = self.s.reset_done(slot, self.now, ok=ok)
        if ok:
            self._became_ready(slot, actions, size_before, live_before)
            return
        assert self._absorb(actions) == [slot], "a failed reset must close the connection"
        assert not self._settle_offers(None)[1]
        self._to_closing(slot)

    def _closed_done(self, slot: Slot) -> None:
        del self.closing[slot.id]
        assert not self._absorb(self.s.closed_done(slot))
        assert slot.state is SlotState.CLOSED
        self.dead[slot.id] = slot

    def _checkin(self, slot: Slot, *, keep: bool, reset: bool) -> None:
        size_before, live_before = self._sizes()
        self._release(slot)
        actions = self.s.checkin(slot, self.now, keep=keep, reset=reset)
        if keep and not reset and not self.closed:
            self._became_ready(slot, actions, size_before, live_before)
            return
        closes = self._absorb(actions)
        assert not self._settle_offers(None)[1]
        if keep and not self.closed and slot.state is SlotState.RESETTING:
            assert not closes
            assert live_before <= self.max_size, "reset a connection over max_size"
            self.resetting[slot.id] = slot
            return
        assert not keep or self.closed or size_before > self.max_size, (
            f"closed a connection returned with keep=True ({slot})"
        )
        assert closes == [slot]
        self._to_closing(slot)

    def _discard(self, slot: Slot) -> None:
        self._release(slot)
        assert self._absorb(self.s.discard(slot)) == [slot]
        self._to_closing(slot)

    def _check_failed(self, slot: Slot) -> None:
        """Discard, then queue again at the front, as Pool._acquire_slow does.

        Meanwhile connections may have come back idle: the waiter is served from them.
        """
        self._discard(slot)
        waiter = self._new_waiter()
        if self.closed:
            with pytest.raises(PoolClosed):
                self.s.wait(waiter, self.now, front=True)
            return
        expected, expired = self._first_idle()
        actions = self.s.wait(waiter, self.now, front=True)  # never TooManyWaiters
        self.queue.insert(0, waiter)
        closes = self._absorb(actions)
        assert closes == expired, "expired idle connections met on the way must be closed"
        winner, _ = self._settle_offers(expected)
        assert winner is (waiter if expected is not None else None)
        for stale in expired:
            self.idle.remove(stale)
            self._to_closing(stale)
        if expected is not None:
            self.idle.remove(expected)
            self._hand(expected, waiter)

    def _sweep(self) -> None:
        s, now, max_idle = self.s, self.now, self.cfg.max_idle
        live_before = s.live
        before = list(self.idle)
        closes = self._absorb(s.sweep(now))
        if self.closed:
            assert not closes
            return

        def too_idle(slot: Slot) -> bool:
            return max_idle is not None and now - self.ready_at[slot.id] >= max_idle

        assert all(any(c is slot for slot in before) for c in closes), "swept a non-idle slot"
        expired = [slot for slot in before if now >= slot.expires_at]
        assert all(slot in closes for slot in expired), "an expired idle connection survived"
        for slot in closes:
            assert slot in expired or too_idle(slot), f"swept a fresh connection {slot}"
        for_idleness = [slot for slot in closes if slot not in expired]
        kept = [slot for slot in before if slot not in closes]
        self.idle = kept
        for slot in closes:
            self._to_closing(slot)
        room = live_before - len(expired) - self.min_size  # expired ones go regardless
        assert len(for_idleness) <= max(0, room), "closed for idleness below min_size"
        if any(too_idle(slot) for slot in kept):
            assert s.live <= self.min_size, "kept an idle-too-long connection above min_size"
        candidates = [slot for slot in before if slot not in expired and too_idle(slot)]
        flags = [slot in closes for slot in candidates]
        assert flags == sorted(flags, reverse=True), "the longest idle must go first"

    def _resize(self, new_min: int, new_max: int) -> None:
        size_before, live_before = self._sizes()
        before = list(self.idle)
        actions = self.s.resize(new_min, new_max)
        self.min_size, self.max_size = new_min, new_max
        closes = self._absorb(actions)
        assert closes == before[: len(closes)], "resize must close the oldest idle first"
        if size_before <= new_max:
            assert not closes, "resize closed connections within the new max_size"
        assert len(closes) <= max(0, live_before - new_max), "resize closed more than the excess"
        self.idle = before[len(closes) :]
        for slot in closes:
            self._to_closing(slot)
        assert self.s.live <= new_max or not self.idle, "idle connections left over max_size"

    def _close(self) -> None:
        waiters, actions = self.s.close()
        assert waiters == self.queue, "close() must return the active waiters in order"
        assert not any(w.active for w in waiters)
        closes = self._absorb(actions)
        assert sorted(slot.id for slot in closes) == sorted(slot.id for slot in self.idle)
        for slot in closes:
            self._to_closing(slot)
        self.idle = []
        self.queue = []
        self.closed = True
        for waiter in waiters:
            waiter.fail(PoolClosed("closed"))

    # ----- invariants ------------------------------------------------------------------

    @invariant()
    def buckets_match(self) -> None:
        self.steps += 1
        s = self.s
        assert not self.offers, "an offer happened that no rule accounted for"
        assert (s.min_size, s.max_size, s.closed) == (self.min_size, self.max_size, self.closed)
        assert s.idle_slots() == self.idle
        assert (s.opening, s.idle, s.in_use, s.resetting, s.closing) == (
            len(self.opening),
            len(self.idle),
            len(self.in_use),
            len(self.resetting),
            len(self.closing),
        )
        assert s.size == s.opening + s.idle + s.in_use + s.resetting + s.closing
        assert s.live == s.size - s.closing
        buckets: list[tuple[Iterable[Slot], SlotState]] = [
            (self.opening.values(), SlotState.OPENING),
            (self.idle, SlotState.IDLE),
            (self.in_use.values(), SlotState.IN_USE),
            (self.resetting.values(), SlotState.RESETTING),
            (self.closing.values(), SlotState.CLOSING),
            (self.dead.values(), SlotState.CLOSED),
        ]
        seen = 0
        for slots, state in buckets:
            for slot in slots:
                assert slot.state is state, f"{slot} is counted as {state.value}"
                seen += 1
        assert seen == len(self.slots), "every slot is in exactly one bucket"
        assert set(self.holder) == set(self.in_use)

    @invariant()
    def capacity(self) -> None:
        s = self.s
        if s.size > s.max_size:  # only after resize down; the excess may only drain
            assert s.size <= self.prev_size, "grew while above max_size"
        self.prev_size = s.size
        if self.closed:
            assert s.idle == 0 and s.waiting == 0
            return
        deficit = max(self.min_size - s.live, s.waiting - s.opening - s.resetting, 0)
        assert deficit == 0 or s.size >= s.max_size, (
            "min_size or a waiter lacks a connection while there is room to open one"
        )

    @invariant()
    def waiters_consistent(self) -> None:
        s = self.s
        assert s.waiting == len(self.queue)
        if s.idle:
            assert s.waiting == 0, "a caller waits while a connection is idle"
        for waiter in self.waiters:
            assert waiter.active == any(w is waiter for w in self.queue)
            assert len(waiter.offers) <= 1, "a waiter was offered twice"
        holders = [h for h in self.holder.values() if isinstance(h, FakeWaiter)]
        assert len({id(h) for h in holders}) == len(holders)
        for slot_id, owner in self.holder.items():
            if isinstance(owner, FakeWaiter):
                assert owner.slot is self.slots[slot_id]

    @invariant()
    def suspects(self) -> None:
        for slot_id, at in self.verified_at.items():
            assert self.s.is_suspect(self.slots[slot_id]) == (at < (self.invalidated, self.epoch))
        for slot in self.opening.values():
            assert not self.s.is_suspect(slot)


MACHINE_SETTINGS = settings(
    max_examples=200,
    stateful_step_count=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_state_machine() -> None:
    run_state_machine_as_test(PoolMachine, settings=MACHINE_SETTINGS)
