"""Hypothesis strategies for fault rules and plans, for users' own property tests.

Every strategy shrinks toward the plainest case: few rules, default fields, small numbers,
probability 1, seed 0, so a failing example prints as a short plan that reads as a sentence
and can be pasted back into a regression test::

    from hypothesis import given
    from poolkit.fakes import FakeDriver
    from poolkit.fakes.strategies import plans

    @given(plans(max_rules=3))
    def test_app_survives(plan):
        driver = FakeDriver(plan, clock=VirtualClock())
        ...

Hangs are always bounded here (a hang with no timeout blocks until the test releases it,
which a generated test cannot know to do) unless ``forever=True``.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._optional import require

try:
    from hypothesis import strategies as st
except ImportError:  # say what to install, not a bare ModuleNotFoundError
    require("hypothesis", "for poolkit.fakes.strategies")
    raise

from ._dbapi import ERROR_NAMES
from ._plan import OPERATIONS, Drop, Hang, Latency, Plan, Raise, Refuse, Rule

__all__ = ["KINDS", "drops", "hangs", "latencies", "plans", "raises", "refusals", "rules"]

#: The rule kinds :func:`rules` draws from, simplest first.
KINDS: tuple[str, ...] = ("latency", "raise", "drop", "hang", "refuse")

_STATEMENT_OPS = ("execute", "executemany", "fetchone", "fetchmany", "fetchall", "commit")
# Errors an application meets at run time first; the exotic ones later in the shrink order.
_ERRORS = (
    "OperationalError",
    "IntegrityError",
    "ProgrammingError",
    "DataError",
    *(
        e
        for e in ERROR_NAMES
        if e
        not in {
            "OperationalError",
            "IntegrityError",
            "ProgrammingError",
            "DataError",
            "Warning",
            "Error",
            "DatabaseError",
        }
    ),
)


def _seconds(maximum: float) -> st.SearchStrategy[float]:
    """Whole milliseconds up to ``maximum``: they print short."""
    return st.integers(0, max(0, round(maximum * 1000))).map(lambda ms: ms / 1000)


def _optional(values: st.SearchStrategy[int]) -> st.SearchStrategy[int | None]:
    return st.none() | values


@st.composite
def _common(
    draw: st.DrawFn, ops: Sequence[str], sql: Sequence[str], max_count: int
) -> dict[str, object]:
    out: dict[str, object] = {"op": draw(st.sampled_from(tuple(ops)))}
    if sql:
        pattern = draw(st.none() | st.sampled_from(tuple(sql)))
        if pattern is not None:
            out["sql"] = pattern
    probability = draw(st.sampled_from((1.0, 0.5, 0.25, 0.1)))
    if probability != 1.0:
        out["probability"] = probability
    nth = draw(_optional(st.integers(1, max_count)))
    if nth is not None:
        out["nth"] = nth
    else:
        after = draw(st.integers(0, max_count))
        if after:
            out["after"] = after
        times = draw(_optional(st.integers(1, max_count)))
        if times is not None:
            out["times"] = times
    if out["op"] != "connect" and draw(st.booleans()):
        out["scope"] = "connection"
    return out


def latencies(
    *,
    ops: Sequence[str] = OPERATIONS,
    sql: Sequence[str] = (),
    max_seconds: float = 0.05,
    max_count: int = 10,
) -> st.SearchStrategy[Latency]:
    """:class:`Latency` rules of up to ``max_seconds`` (plus as much jitter)."""

    @st.composite
    def build(draw: st.DrawFn) -> Latency:
        common = draw(_common(ops, sql, max_count))
        seconds = draw(_seconds(max_seconds))
        jitter = draw(st.sampled_from((0.0, round(seconds / 2, 4))))
        distribution = draw(st.sampled_from(("uniform", "normal")))
        return Latency(seconds, jitter=jitter, distribution=distribution, **common)  # type: ignore[arg-type]

    return build()


def raises(
    *,
    ops: Sequence[str] = _STATEMENT_OPS,
    sql: Sequence[str] = (),
    errors: Sequence[str] = _ERRORS,
    max_count: int = 10,
) -> st.SearchStrategy[Raise]:
    """:class:`Raise` rules with PEP 249 error names (raised as the driver's classes)."""

    @st.composite
    def build(draw: st.DrawFn) -> Raise:
        common = draw(_common(ops, sql, max_count))
        error = draw(st.sampled_from(tuple(errors)))
        phase = draw(st.sampled_from(("before", "after")))
        return Raise(error, phase=phase, **common)  # type: ignore[arg-type]

    return build()


def drops(
    *, ops: Sequence[str] = _STATEMENT_OPS, sql: Sequence[str] = (), max_count: int = 10
) -> st.SearchStrategy[Drop]:
    """:class:`Drop` rules: the connection is lost before or after the call."""

    @st.composite
    def build(draw: st.DrawFn) -> Drop:
        common = draw(_common(ops, sql, max_count))
        phase = draw(st.sampled_from(("before", "after")))
        return Drop(phase=phase, **common)  # type: ignore[arg-type]

    return build()


def hangs(
    *,
    ops: Sequence[str] = _STATEMENT_OPS,
    sql: Sequence[str] = (),
    max_seconds: float = 0.05,
    forever: bool = False,
    max_count: int = 10,
) -> st.SearchStrategy[Hang]:
    """:class:`Hang` rules bounded by ``max_seconds`` (unbounded ones only if ``forever``)."""

    @st.composite
    def build(draw: st.DrawFn) -> Hang:
        common = draw(_common(ops, sql, max_count))
        bounded = _seconds(max_seconds)
        timeout = draw(st.none() | bounded if forever else bounded)
        then = draw(st.sampled_from(("raise", "drop", "proceed")))
        return Hang(timeout, then=then, **common)  # type: ignore[arg-type]

    return build()


def refusals(*, max_count: int = 10) -> st.SearchStrategy[Refuse]:
    """:class:`Refuse` rules for connects."""

    @st.composite
    def build(draw: st.DrawFn) -> Refuse:
        common = draw(_common(("connect",), (), max_count))
        return Refuse(**common)  # type: ignore[arg-type]

    return build()


def rules(
    *,
    kinds: Sequence[str] = KINDS,
    ops: Sequence[str] | None = None,
    sql: Sequence[str] = (),
    max_seconds: float = 0.05,
    forever: bool = False,
    max_count: int = 10,
) -> st.SearchStrategy[Rule]:
    """Any rule of the given kinds; ``ops`` limits the operations they name."""
    unknown = set(kinds) - set(KINDS)
    if unknown or not kinds:
        raise ValueError(f"rules(): kinds must be some of {KINDS}, got {tuple(kinds)!r}")
    call_ops = tuple(ops) if ops is not None else None
    choices: list[st.SearchStrategy[Rule]] = []
    for kind in KINDS:
        if kind not in kinds:
            continue
        if kind == "latency":
            choices.append(
                latencies(
                    ops=call_ops or OPERATIONS,
                    sql=sql,
                    max_seconds=max_seconds,
                    max_count=max_count,
                )
            )
        elif kind == "raise":
            choices.append(raises(ops=call_ops or _STATEMENT_OPS, sql=sql, max_count=max_count))
        elif kind == "drop":
            drop_ops = tuple(o for o in (call_ops or _STATEMENT_OPS) if o != "connect")
            if drop_ops:  # a connection cannot be dropped while connecting
                choices.append(drops(ops=drop_ops, sql=sql, max_count=max_count))
        elif kind == "hang":
            choices.append(
                hangs(
                    ops=call_ops or _STATEMENT_OPS,
                    sql=sql,
                    max_seconds=max_seconds,
                    forever=forever,
                    max_count=max_count,
                )
            )
        elif kind == "refuse" and (call_ops is None or "connect" in call_ops):
            choices.append(refusals(max_count=max_count))
    if not choices:
        raise ValueError(f"rules(): no rule kind of {tuple(kinds)!r} applies to ops {ops!r}")
    return st.one_of(choices)


def plans(
    *,
    min_rules: int = 0,
    max_rules: int = 3,
    seeds: st.SearchStrategy[int] | None = None,
    kinds: Sequence[str] = KINDS,
    ops: Sequence[str] | None = None,
    sql: Sequence[str] = (),
    max_seconds: float = 0.05,
    forever: bool = False,
    max_count: int = 10,
) -> st.SearchStrategy[Plan]:
    """Plans of ``min_rules`` to ``max_rules`` rules (shrinking to the fewest, seed 0)."""
    rule = rules(
        kinds=kinds,
        ops=ops,
        sql=sql,
        max_seconds=max_seconds,
        forever=forever,
        max_count=max_count,
    )
    seed = seeds if seeds is not None else st.integers(0, 2**16)
    return st.builds(
        lambda rs, s: Plan(*rs, seed=s),
        st.lists(rule, min_size=min_rules, max_size=max_rules),
        seed,
    )
