"""Fault plans as values: building and checking rules, printing, JSON, immutability."""

from __future__ import annotations

import builtins
import dataclasses
import json
import sqlite3
from collections.abc import Callable
from typing import Any

import pytest

import poolkit
import poolkit.fakes
from poolkit.fakes import (
    OPERATIONS,
    Drop,
    Hang,
    IntegrityError,
    Latency,
    Plan,
    PlanError,
    Raise,
    Refuse,
    Rule,
)


class AppError(Exception):
    """An application's own exception, importable as ``tests.fakes.test_plan:AppError``."""


def _namespace() -> dict[str, Any]:
    """What a user has in scope after ``from poolkit.fakes import *`` (plus the imports
    that qualified class names need)."""
    names = {name: getattr(poolkit.fakes, name) for name in poolkit.fakes.__all__}
    return {**names, "poolkit": poolkit, "builtins": builtins, "tests": __import__("tests")}


SAMPLE = Plan(
    Latency(0.01, jitter=0.005, distribution="normal", op="execute"),
    Latency(0.2, op=("commit", "rollback"), probability=0.5),
    Raise("IntegrityError", op="commit", phase="after", message="duplicate key"),
    Raise(sql=r"^\s*insert", after=2, times=3, scope="connection"),
    Drop(nth=3, connection=2),
    Hang(2.5, then="drop", op="fetch*"),
    Refuse(times=2),
    seed=7,
)


# ----- building -----------------------------------------------------------------------


def test_defaults_and_expanded_operations() -> None:
    """Each kind has a sensible default op; globs expand in OPERATIONS order."""
    assert Latency(0.1).operations == OPERATIONS
    assert Raise().operations == ("execute",)
    assert Drop().operations == ("execute",)
    assert Hang().operations == ("execute",)
    assert Refuse().operations == ("connect",)
    assert Latency(op="fetch*").operations == ("fetchone", "fetchmany", "fetchall")
    assert Raise(op=("commit", "execute*")).operations == ("execute", "executemany", "commit")


def test_limit_is_one_for_nth_and_times_otherwise() -> None:
    assert Raise(nth=4).limit == 1
    assert Raise(nth=4, times=7).limit == 1
    assert Raise(times=3).limit == 3
    assert Raise().limit is None


def test_matches_filters_on_op_sql_and_connection() -> None:
    rule = Raise(sql="^select", connection=2, op="execute")
    assert rule.matches("execute", "SELECT 1", 2)
    assert not rule.matches("execute", "SELECT 1", 1)
    assert not rule.matches("execute", "UPDATE t SET x = 1", 2)
    assert not rule.matches("execute", None, 2)
    assert not rule.matches("commit", "SELECT 1", 2)


BAD_RULES: list[tuple[Callable[[], object], str]] = [
    (lambda: Raise(op="exec"), "unknown operation 'exec'"),
    (lambda: Latency(op="zz*"), "unknown operation 'zz*'"),
    (lambda: Latency(op=()), "op names no operation"),  # not silently "every operation"
    (lambda: Latency(op=("execute", 3)), "op must be a string"),  # type: ignore[arg-type]
    (lambda: Raise(probability=1.5), "probability must be within 0..1"),
    (lambda: Raise(probability=-0.1), "probability must be >= 0"),
    (lambda: Raise(probability=float("nan")), "probability must be finite"),
    (lambda: Latency(-0.5), "seconds must be >= 0"),
    (lambda: Latency(float("inf")), "seconds must be finite"),
    (lambda: Latency(0.1, jitter=-1), "jitter must be >= 0"),
    (lambda: Latency(0.1, distribution="pareto"), "distribution"),  # type: ignore[arg-type]
    (lambda: Hang(-1.0), "timeout must be >= 0"),
    (lambda: Hang(then="explode"), "then must be"),  # type: ignore[arg-type]
    (lambda: Raise(nth=0), "nth must be >= 1"),
    (lambda: Raise(times=0), "times must be >= 1"),
    (lambda: Raise(after=-1), "after must be >= 0"),
    (lambda: Raise(connection=0), "connection must be >= 1"),
    (lambda: Raise(nth=True), "nth must be an integer, got True"),
    (lambda: Raise(times=True), "times must be an integer, got True"),
    (lambda: Raise(after=False), "after must be an integer, got False"),
    (lambda: Raise(connection=True), "connection must be an integer, got True"),
    (lambda: Raise(nth=1.0), "nth must be an integer"),  # type: ignore[arg-type]
    (lambda: Latency(True), "seconds must be a number, got True"),
    (lambda: Raise(sql="(unclosed"), "does not compile"),
    (lambda: Raise(scope="thread"), "scope must be"),  # type: ignore[arg-type]
    (lambda: Raise(phase="during"), "phase must be"),  # type: ignore[arg-type]
    (lambda: Drop(phase="during"), "phase must be"),  # type: ignore[arg-type]
    (lambda: Refuse(op="execute"), "Refuse: applies to op='connect' only"),
    (lambda: Refuse(op="*"), "Refuse: applies to op='connect' only"),
    (lambda: Drop(op="connect"), "use Refuse"),
    (lambda: Latency(0.1, op="connect", scope="connection"), "drop scope='connection'"),
    (lambda: Raise(op="connect", scope="connection"), "connect attempts are counted per driver"),
    (lambda: Raise("Boom"), "'Boom' is not a PEP 249 exception name"),
    (lambda: Raise("integrityerror"), "is not a PEP 249 exception name"),
    (lambda: Raise(42), "error must be a name, exception class or instance"),  # type: ignore[arg-type]
    (lambda: Raise(int), "error must be a name, exception class or instance"),  # type: ignore[arg-type]
    (lambda: Plan(Raise(), "Drop()"), "Plan takes rules"),  # type: ignore[arg-type]
    (lambda: Plan(seed=True), "seed must be an integer"),
    (lambda: Plan(seed="7"), "seed must be an integer"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("build", "message"), BAD_RULES, ids=[m for _, m in BAD_RULES])
def test_bad_input_raises_plan_error_naming_the_problem(
    build: Callable[[], object], message: str
) -> None:
    with pytest.raises(PlanError) as info:
        build()
    assert message in str(info.value)


def test_plan_error_is_a_value_error() -> None:
    """Code catching ValueError around plan building keeps working."""
    assert issubclass(PlanError, ValueError)


def test_plan_rejects_the_abstract_rule() -> None:
    """``Rule`` only holds the shared filters: a plan of it would fire and do nothing."""
    with pytest.raises(PlanError):
        Plan(Rule(op="execute"))


def test_op_given_as_a_list_is_rejected_or_normalised() -> None:
    """A list for ``op`` must not give an unhashable rule that differs from its JSON copy."""
    try:
        rule = Latency(op=["execute", "commit"])  # type: ignore[arg-type]
    except PlanError:
        return
    assert rule == Latency(op=("execute", "commit"))
    hash(Plan(rule))


# ----- printing -----------------------------------------------------------------------


def test_repr_is_the_python_that_builds_the_plan() -> None:
    assert repr(Plan(Drop(nth=3), Latency(0.01, jitter=0.005), seed=7)) == (
        "Plan(Drop(nth=3), Latency(0.01, jitter=0.005), seed=7)"
    )
    assert repr(Raise("IntegrityError", op="commit")) == "Raise('IntegrityError', op='commit')"
    assert repr(Hang(1.5, then="proceed")) == "Hang(1.5, then='proceed')"
    assert repr(Refuse()) == "Refuse()"
    assert repr(Plan()) == "Plan(seed=0)"


@pytest.mark.parametrize(
    "plan",
    [
        Plan(),
        SAMPLE,
        Plan(Raise(ValueError("boom", 3)), Raise(AppError("x")), seed=1),
        Plan(Raise(IntegrityError), Raise(sqlite3.OperationalError), Raise(ValueError)),
        Plan(Raise(AppError, op="commit")),
    ],
    ids=["empty", "sample", "instances", "classes", "own-class"],
)
def test_repr_evaluates_back_to_an_equal_plan(plan: Plan) -> None:
    namespace = {**_namespace(), "AppError": AppError, "sqlite3": sqlite3}
    again = eval(repr(plan), namespace)
    assert again == plan
    assert repr(again) == repr(plan)


@pytest.mark.parametrize("error", [ValueError, IntegrityError], ids=["builtin", "fakes"])
def test_repr_of_a_well_known_class_needs_only_the_fakes_names(error: type[Exception]) -> None:
    """``Raise(ValueError)`` and ``Raise(IntegrityError)`` paste back after nothing but
    ``from poolkit.fakes import *``."""
    names = {name: getattr(poolkit.fakes, name) for name in poolkit.fakes.__all__}
    plan = Plan(Raise(error))
    assert eval(repr(plan), names) == plan


# ----- JSON ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "plan",
    [
        Plan(),
        SAMPLE,
        Plan(Raise(ValueError), Raise(IntegrityError, op="commit"), Raise(AppError)),
        Plan(Raise(ValueError("boom", 3, [1, "a"], {"k": None}))),
        Plan(Raise(IntegrityError("duplicate key", 23505))),
        Plan(Raise(AppError("custom"), phase="after"), seed=99),
        Plan(Latency(0), Hang(0)),
    ],
    ids=["empty", "sample", "classes", "builtin-instance", "fake-instance", "own", "zeros"],
)
def test_json_round_trip(plan: Plan) -> None:
    text = plan.to_json()
    json.loads(text)  # plain JSON
    again = Plan.from_json(text)
    assert again == plan
    assert hash(again) == hash(plan)
    assert again.to_json() == text


def test_json_keeps_only_fields_that_differ_from_the_defaults() -> None:
    data = Plan(Drop(nth=3), Raise("IntegrityError", op="commit"), seed=5).to_dict()
    assert data == {
        "seed": 5,
        "rules": [
            {"kind": "drop", "nth": 3},
            {"kind": "raise", "op": "commit", "error": "IntegrityError"},
        ],
    }


def test_json_names_exception_classes_by_import_path() -> None:
    rules = Plan(Raise(AppError), Raise(ValueError("x", 1))).to_dict()["rules"]
    assert rules[0]["error"] == "tests.fakes.test_plan:AppError"
    assert rules[1]["error"] == {"class": "builtins:ValueError", "args": ["x", 1]}


def test_exception_instance_after_json_is_a_new_equal_instance() -> None:
    error = AppError("custom", 7)
    (rule,) = Plan.from_json(Plan(Raise(error)).to_json())
    assert isinstance(rule, Raise)
    assert type(rule.error) is AppError
    assert isinstance(rule.error, AppError) and rule.error.args == ("custom", 7)


def test_exception_with_non_json_args_refuses_to_serialise() -> None:
    with pytest.raises(PlanError, match="not JSON data"):
        Plan(Raise(ValueError(object()))).to_json()


@pytest.mark.parametrize(
    "seconds",
    [lambda rng: rng.uniform(0, 1), max],
    ids=["lambda", "builtin"],
)
def test_callable_latency_refuses_to_serialise(seconds: Callable[[Any], float]) -> None:
    rule = Latency(seconds)
    with pytest.raises(PlanError, match="callable latency cannot be serialised"):
        Plan(rule).to_json()
    with pytest.raises(PlanError):
        rule.to_dict()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"rules": [{"kind": "explode"}]}, "unknown rule kind 'explode'"),
        ({"rules": [{"nth": 1}]}, "unknown rule kind None"),
        ({"rules": [{"kind": "drop", "bogus": 1}]}, "Drop: unknown field(s) bogus"),
        ({"rules": [{"kind": "drop", "error": "IntegrityError"}]}, "unknown field(s) error"),
        ({"rules": [{"kind": "latency", "seconds": -1}]}, "seconds must be >= 0"),
        ({"rules": [{"kind": "raise", "nth": 1.0}]}, "nth must be an integer"),
        ({"rules": [{"kind": "raise", "error": "os:path"}]}, "is not an exception class"),
        ({"rules": [{"kind": "raise", "error": "no_such_mod:X"}]}, "cannot import"),
        ({"rules": [{"kind": "raise", "error": 12}]}, "cannot read an error"),
        ({"rules": [], "seed": 1, "version": 2}, "Plan: unknown field(s) version"),
        ({"seed": "x"}, "seed must be an integer"),
    ],
)
def test_from_dict_rejects_what_it_cannot_read(data: dict[str, Any], message: str) -> None:
    with pytest.raises(PlanError) as info:
        Plan.from_dict(data)
    assert message in str(info.value)


@pytest.mark.parametrize("text", ["{", "[1, 2]", '"plan"'])
def test_from_json_rejects_text_that_is_not_a_plan(text: str) -> None:
    with pytest.raises(PlanError):
        Plan.from_json(text)


# ----- values -------------------------------------------------------------------------


def test_plan_is_immutable() -> None:
    plan = Plan(Drop(nth=1), seed=3)
    with pytest.raises(AttributeError):
        plan.seed = 4
    with pytest.raises(AttributeError):
        plan.rules = ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.rules[0].nth = 2  # type: ignore[misc]
    assert plan == Plan(Drop(nth=1), seed=3)


def test_equal_plans_hash_equal_and_differ_by_seed_and_order() -> None:
    a = Plan(Drop(nth=1), Raise(ValueError("x")), seed=3)
    b = Plan(Drop(nth=1), Raise(ValueError("x")), seed=3)
    assert a == b and hash(a) == hash(b)
    assert len({a, b, a.with_seed(4)}) == 2
    assert a != a.with_seed(4)
    assert a != Plan(Raise(ValueError("x")), Drop(nth=1), seed=3)
    assert Raise(ValueError("x")) != Raise(ValueError("y"))
    assert Raise(ValueError("x")) != Raise(TypeError("x"))
    assert Raise(ValueError) != Raise(ValueError("x"))


def test_plan_is_a_sequence_of_its_rules() -> None:
    plan = Plan(Drop(nth=1), Latency(0.1))
    assert len(plan) == 2
    assert list(plan) == [Drop(nth=1), Latency(0.1)]


def test_adding_a_rule_or_a_plan_keeps_the_left_seed() -> None:
    base = Plan(Drop(nth=1), seed=5)
    assert base + Latency(0.1) == Plan(Drop(nth=1), Latency(0.1), seed=5)
    assert base + Plan(Refuse(), seed=9) == Plan(Drop(nth=1), Refuse(), seed=5)
    assert base == Plan(Drop(nth=1), seed=5)  # unchanged


def test_adding_anything_else_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        Plan() + "Drop()"  # type: ignore[operator]
