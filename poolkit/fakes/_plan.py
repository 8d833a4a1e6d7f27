"""Fault plans: plain, frozen data saying which calls get which fault.

A :class:`Plan` is a seed and an ordered tuple of rules. Rules are values: they print as the
Python that builds them, compare equal field by field, and go to and from JSON, so the plan of a
failing property test can be pasted back into a regression test. Every check on a rule runs when
it is built, so a typo fails at the line that made it, not at the first query.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, Literal

from ._dbapi import ERROR_NAMES

__all__ = [
    "OPERATIONS",
    "Drop",
    "Hang",
    "Latency",
    "Plan",
    "PlanError",
    "Raise",
    "Refuse",
    "Rule",
]

#: Every operation a rule can name. ``op`` also takes globs: ``"fetch*"``, ``"*"``.
OPERATIONS: tuple[str, ...] = (
    "connect",
    "cursor",
    "execute",
    "executemany",
    "callproc",
    "fetchone",
    "fetchmany",
    "fetchall",
    "nextset",
    "commit",
    "rollback",
    "close",
)

Scope = Literal["driver", "connection"]
Phase = Literal["before", "after"]


class PlanError(ValueError):
    """A fault rule or plan cannot be built as given; the message names the field."""


def _ops(op: str | tuple[str, ...], rule: str) -> tuple[str, ...]:
    names = (op,) if isinstance(op, str) else tuple(op)
    if not names:
        raise PlanError(f"{rule}: op names no operation")
    matched: list[str] = []
    for name in names:
        if not isinstance(name, str):
            raise PlanError(f"{rule}: op must be a string or a tuple of strings, got {name!r}")
        hits = [o for o in OPERATIONS if fnmatch.fnmatchcase(o, name)]
        if not hits:
            raise PlanError(
                f"{rule}: unknown operation {name!r}; known: {', '.join(OPERATIONS)} "
                "(globs such as 'fetch*' work)"
            )
        matched += [h for h in hits if h not in matched]
    return tuple(o for o in OPERATIONS if o in matched)


def _check_number(rule: str, name: str, value: object, *, low: float, integer: bool) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        what = "an integer" if integer else "a number"
        raise PlanError(f"{rule}: {name} must be {what}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise PlanError(f"{rule}: {name} must be finite, got {value!r}")
    if value < low:
        raise PlanError(f"{rule}: {name} must be >= {low:g}, got {value!r}")


@dataclass(frozen=True, kw_only=True, repr=False)
class Rule:
    """What every rule filters on. A call is *matched* when op, sql and connection fit.

    Counting is per ``scope``: ``"driver"`` (default) counts matched calls across every
    connection, so ``nth=1`` is the first matching call anywhere; ``"connection"`` counts on
    each connection separately, which does not depend on how threads are scheduled.
    """

    kind: ClassVar[str] = "rule"
    default_op: ClassVar[str | tuple[str, ...]] = "*"
    #: the rule means nothing for connect attempts (globs such as "*" skip them)
    never_on_connect: ClassVar[bool] = False

    #: operation name(s) or glob(s), see :data:`OPERATIONS`
    op: str | tuple[str, ...] | None = None
    #: a regular expression searched (case-insensitively) in the statement's SQL
    sql: str | None = None
    #: chance that a matched call which passes the counters is hit, drawn from the plan's seed
    probability: float = 1.0
    #: hit only the nth matched call (1-based)
    nth: int | None = None
    #: skip the first ``after`` matched calls
    after: int = 0
    #: hit at most this many times; then the rule is exhausted (and the report says so)
    times: int | None = None
    #: only calls on this connection (connection ids count connect attempts from 1)
    connection: int | None = None
    scope: Scope = "driver"

    def __post_init__(self) -> None:
        name = type(self).__name__
        if self.op is None:
            object.__setattr__(self, "op", self.default_op)
        elif isinstance(self.op, list):
            object.__setattr__(self, "op", tuple(self.op))
        ops = _ops(self.op, name)  # type: ignore[arg-type]
        if self.never_on_connect and "connect" in ops:
            ops = tuple(o for o in ops if o != "connect")
            if not ops:
                raise PlanError(f"{name}: a connection cannot be lost while connecting; use Refuse")
        object.__setattr__(self, "_ops", ops)
        if self.sql is not None:
            if not isinstance(self.sql, str):
                raise PlanError(f"{name}: sql must be a regular expression string")
            try:
                pattern = re.compile(self.sql, re.IGNORECASE)
            except re.error as exc:
                raise PlanError(f"{name}: sql {self.sql!r} does not compile: {exc}") from None
            object.__setattr__(self, "_pattern", pattern)
        else:
            object.__setattr__(self, "_pattern", None)
        _check_number(name, "probability", self.probability, low=0.0, integer=False)
        if self.probability > 1:
            raise PlanError(f"{name}: probability must be within 0..1, got {self.probability!r}")
        if self.nth is not None:
            _check_number(name, "nth", self.nth, low=1, integer=True)
        _check_number(name, "after", self.after, low=0, integer=True)
        if self.times is not None:
            _check_number(name, "times", self.times, low=1, integer=True)
        if self.connection is not None:
            _check_number(name, "connection", self.connection, low=1, integer=True)
        if self.scope not in ("driver", "connection"):
            raise PlanError(f"{name}: scope must be 'driver' or 'connection', got {self.scope!r}")
        if self.scope == "connection" and self.operations == ("connect",):
            raise PlanError(
                f"{name}: connect attempts are counted per driver (each attempt is a new "
                "connection); drop scope='connection'"
            )

    @property
    def operations(self) -> tuple[str, ...]:
        """The operation names this rule applies to, globs expanded."""
        ops: tuple[str, ...] = object.__getattribute__(self, "_ops")
        return ops

    def matches(self, op: str, sql: str | None, connection: int | None) -> bool:
        """Whether a call is matched (before counters and probability)."""
        if op not in self.operations:
            return False
        if self.connection is not None and connection != self.connection:
            return False
        pattern: re.Pattern[str] | None = object.__getattribute__(self, "_pattern")
        return pattern is None or (sql is not None and pattern.search(sql) is not None)

    @property
    def limit(self) -> int | None:
        """How many times the rule can fire at most in its scope (None: no limit)."""
        if self.nth is not None:
            return 1 if self.times is None else min(1, self.times)
        return self.times

    def __repr__(self) -> str:
        positional, keywords = [], []
        for f in fields(self):
            value = getattr(self, f.name)
            default = self.default_op if f.name == "op" else f.default
            if default is MISSING or value != default:
                if f.kw_only:
                    keywords.append(f"{f.name}={_show(value)}")
                else:
                    positional.append(_show(value))
        return f"{type(self).__name__}({', '.join(positional + keywords)})"

    def to_dict(self) -> dict[str, Any]:
        """The rule as JSON-ready data (only the fields that differ from the defaults)."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in fields(self):
            value = getattr(self, f.name)
            default = self.default_op if f.name == "op" else f.default
            if value == default:
                continue
            out[f.name] = self._encode(f.name, value)
        return out

    def _encode(self, name: str, value: Any) -> Any:
        return list(value) if isinstance(value, tuple) else value


def _show(value: object) -> str:
    if isinstance(value, type):
        # Builtins and poolkit.fakes' own classes print as the names users import.
        if value.__module__ == "builtins" or (
            value.__module__ == "poolkit.fakes._dbapi" and value.__name__ in ERROR_NAMES
        ):
            return value.__qualname__
        return f"{value.__module__}.{value.__qualname__}"
    if callable(value) and not isinstance(value, type):
        return getattr(value, "__qualname__", repr(value))
    return repr(value)


LatencySeconds = float | Callable[[Any], float]


@dataclass(frozen=True, kw_only=True, repr=False)
class Latency(Rule):
    """Wait before the call: ``seconds``, spread by ``jitter``.

    ``distribution="uniform"`` draws from ``seconds ± jitter``; ``"normal"`` uses ``jitter``
    as the standard deviation. Waits are never negative. ``seconds`` may be a callable taking a
    seeded :class:`random.Random` and returning the delay (such a plan cannot go to JSON).
    """

    kind: ClassVar[str] = "latency"
    seconds: LatencySeconds = field(default=0.0, kw_only=False)
    jitter: float = 0.0
    distribution: Literal["uniform", "normal"] = "uniform"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not callable(self.seconds):
            _check_number("Latency", "seconds", self.seconds, low=0.0, integer=False)
        _check_number("Latency", "jitter", self.jitter, low=0.0, integer=False)
        if self.distribution not in ("uniform", "normal"):
            raise PlanError(
                f"Latency: distribution must be 'uniform' or 'normal', got {self.distribution!r}"
            )

    def _encode(self, name: str, value: Any) -> Any:
        if name == "seconds" and callable(value):
            raise PlanError(
                f"{self!r}: a callable latency cannot be serialised; use seconds= and jitter="
            )
        return super()._encode(name, value)


ErrorSpec = str | type[BaseException] | BaseException


@dataclass(frozen=True, kw_only=True, repr=False)
class Raise(Rule):
    """Raise an exception instead of (``phase="before"``) or after (``"after"``) the call.

    ``error`` is a PEP 249 name such as ``"IntegrityError"`` (raised as the driver's own class),
    an exception class, or an instance. With ``phase="after"`` the statement has really run:
    the partial failure where a commit reached the server but its answer did not.
    """

    kind: ClassVar[str] = "raise"
    default_op: ClassVar[str | tuple[str, ...]] = "execute"
    error: ErrorSpec = field(default="OperationalError", kw_only=False)
    message: str | None = None
    phase: Phase = "before"

    def __post_init__(self) -> None:
        super().__post_init__()
        error = self.error
        if isinstance(error, str):
            if error not in ERROR_NAMES:
                raise PlanError(
                    f"Raise: error {error!r} is not a PEP 249 exception name; "
                    f"use one of {', '.join(ERROR_NAMES)}, a class or an instance"
                )
        elif not (
            isinstance(error, BaseException)
            or (isinstance(error, type) and issubclass(error, BaseException))
        ):
            raise PlanError(f"Raise: error must be a name, exception class or instance: {error!r}")
        if self.phase not in ("before", "after"):
            raise PlanError(f"Raise: phase must be 'before' or 'after', got {self.phase!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Raise):
            return NotImplemented
        return repr(self) == repr(other) and _error_key(self.error) == _error_key(other.error)

    def __hash__(self) -> int:
        return hash(repr(self))

    def _encode(self, name: str, value: Any) -> Any:
        if name != "error":
            return super()._encode(name, value)
        if isinstance(value, str):
            return value
        cls = value if isinstance(value, type) else type(value)
        path = f"{cls.__module__}:{cls.__qualname__}"
        if isinstance(value, BaseException):
            args = list(value.args)
            try:
                json.dumps(args)
            except TypeError:
                raise PlanError(f"{self!r}: the exception's args are not JSON data") from None
            return {"class": path, "args": args}
        return path


def _error_key(error: ErrorSpec) -> tuple[Any, ...]:
    if isinstance(error, BaseException):
        return (type(error), error.args)
    return (error,)


@dataclass(frozen=True, kw_only=True, repr=False)
class Drop(Rule):
    """Lose the connection: this call and every later one raise the driver's disconnect error.

    With ``phase="after"`` the statement ran on the server before the connection was lost.
    """

    kind: ClassVar[str] = "drop"
    default_op: ClassVar[str | tuple[str, ...]] = "execute"
    never_on_connect: ClassVar[bool] = True
    phase: Phase = "before"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.phase not in ("before", "after"):
            raise PlanError(f"Drop: phase must be 'before' or 'after', got {self.phase!r}")


@dataclass(frozen=True, kw_only=True, repr=False)
class Hang(Rule):
    """Block the call until the test releases it, the connection is cancelled, closed or
    dropped, or ``timeout`` seconds pass (never, when None).

    After the timeout: ``then="raise"`` raises the driver's timeout error, ``"drop"`` drops the
    connection, ``"proceed"`` runs the call as if it had only been slow.
    """

    kind: ClassVar[str] = "hang"
    default_op: ClassVar[str | tuple[str, ...]] = "execute"
    timeout: float | None = field(default=None, kw_only=False)
    then: Literal["raise", "drop", "proceed"] = "raise"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.timeout is not None:
            _check_number("Hang", "timeout", self.timeout, low=0.0, integer=False)
        if self.then not in ("raise", "drop", "proceed"):
            raise PlanError(f"Hang: then must be 'raise', 'drop' or 'proceed', got {self.then!r}")


@dataclass(frozen=True, kw_only=True, repr=False)
class Refuse(Rule):
    """Refuse new connections with the driver's "connection refused" error.

    ``Refuse()`` refuses every connect, ``Refuse(times=2)`` the first two,
    ``Refuse(probability=0.3)`` three in ten (seeded).
    """

    kind: ClassVar[str] = "refuse"
    default_op: ClassVar[str | tuple[str, ...]] = "connect"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.operations != ("connect",):
            raise PlanError(f"Refuse: applies to op='connect' only, got op={self.op!r}")


RULE_KINDS: dict[str, type[Rule]] = {cls.kind: cls for cls in (Latency, Raise, Drop, Hang, Refuse)}


_KINDS = frozenset(RULE_KINDS.values())


def _decode_error(value: Any) -> ErrorSpec:
    if isinstance(value, str) and ":" not in value:
        return value
    if isinstance(value, str):
        return _import_class(value)
    if isinstance(value, Mapping) and "class" in value:
        cls = _import_class(str(value["class"]))
        return cls(*value.get("args", ()))
    raise PlanError(f"cannot read an error from {value!r}")


def _import_class(path: str) -> type[BaseException]:
    module_name, _, qualname = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise PlanError(f"cannot import exception class {path!r}: {exc}") from None
    if not (isinstance(obj, type) and issubclass(obj, BaseException)):
        raise PlanError(f"{path!r} is not an exception class")
    return obj


def rule_from_dict(data: Mapping[str, Any]) -> Rule:
    """The rule :meth:`Rule.to_dict` gave."""
    data = dict(data)
    kind = data.pop("kind", None)
    cls = RULE_KINDS.get(str(kind))
    if cls is None:
        raise PlanError(f"unknown rule kind {kind!r}; known: {', '.join(RULE_KINDS)}")
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise PlanError(f"{cls.__name__}: unknown field(s) {', '.join(sorted(unknown))}")
    if isinstance(data.get("op"), list):
        data["op"] = tuple(data["op"])
    if "error" in data:
        data["error"] = _decode_error(data["error"])
    return cls(**data)


class Plan:
    """An ordered, seeded set of fault rules. Immutable; build a new one to change it.

    ``Plan(Drop(nth=3), Latency(0.01, jitter=0.005), seed=7)``. For each call every matching
    :class:`Latency` applies (their waits add up), and the first other rule that fires decides
    the fault.
    """

    __slots__ = ("rules", "seed")

    rules: tuple[Rule, ...]
    seed: int

    def __init__(self, *rules: Rule, seed: int = 0) -> None:
        for rule in rules:
            if type(rule) not in _KINDS:
                raise PlanError(
                    f"Plan takes rules (Latency, Raise, Drop, Hang, Refuse), got {rule!r}"
                )
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise PlanError(f"Plan: seed must be an integer, got {seed!r}")
        object.__setattr__(self, "rules", tuple(rules))
        object.__setattr__(self, "seed", seed)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Plan is immutable; build a new one")

    def __repr__(self) -> str:
        parts = [repr(r) for r in self.rules] + [f"seed={self.seed}"]
        return f"Plan({', '.join(parts)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Plan):
            return NotImplemented
        return self.seed == other.seed and self.rules == other.rules

    def __hash__(self) -> int:
        return hash((self.seed, self.rules))

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self) -> Any:
        return iter(self.rules)

    def __add__(self, other: Plan | Rule) -> Plan:
        """This plan with more rules appended (the left plan's seed is kept)."""
        if isinstance(other, Rule):
            return Plan(*self.rules, other, seed=self.seed)
        if isinstance(other, Plan):
            return Plan(*self.rules, *other.rules, seed=self.seed)
        return NotImplemented

    def with_seed(self, seed: int) -> Plan:
        """The same rules with another seed."""
        return Plan(*self.rules, seed=seed)

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "rules": [r.to_dict() for r in self.rules]}

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        if not isinstance(data, Mapping):
            raise PlanError(f"a plan is a mapping with 'rules' and 'seed', got {data!r}")
        unknown = set(data) - {"rules", "seed"}
        if unknown:
            raise PlanError(f"Plan: unknown field(s) {', '.join(sorted(unknown))}")
        rules = data.get("rules", ())
        if not isinstance(rules, (list, tuple)) or not all(isinstance(r, Mapping) for r in rules):
            raise PlanError(f"Plan: 'rules' must be a list of rule mappings, got {rules!r}")
        return cls(*(rule_from_dict(r) for r in rules), seed=data.get("seed", 0))

    @classmethod
    def from_json(cls, text: str) -> Plan:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PlanError(f"plan JSON does not parse: {exc}") from None
        return cls.from_dict(data)
