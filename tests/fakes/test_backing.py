"""What the fake connections talk to: the shared SQLite database (paramstyles, PEP 249
transactions, concurrent readers and writers) and scripted answers."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from poolkit.fakes import (
    FakeDriver,
    IntegrityError,
    OperationalError,
    Plan,
    ProgrammingError,
    Raise,
    Response,
    Script,
)

HANG = 10.0
MakeDriver = Callable[..., FakeDriver]


@pytest.fixture
def make(fake_driver_factory: MakeDriver) -> MakeDriver:
    return fake_driver_factory


def rows(driver: FakeDriver, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Run one statement on a fresh connection, commit, and return its rows."""
    conn = driver.connect()
    cur = conn.cursor()
    cur.execute(sql, params)
    result = cur.fetchall() if cur.description is not None else []
    conn.commit()
    return result


# ----- paramstyles ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("style", "sql", "params", "expected"),
    [
        ("qmark", "SELECT ? /* ? */, '?' -- ?", (5,), (5, "?")),
        ("qmark", "SELECT ?, ':x', '%s', '%'", (5,), (5, ":x", "%s", "%")),
        ("numeric", "SELECT :2, :1, ':1' /* :1 */ -- :2", (5, 6), (6, 5, ":1")),
        ("named", "SELECT :a, ':a' /* :b */, :a -- :c", {"a": 5}, (5, ":a", 5)),
        ("named", "SELECT :a, '?', 'it''s :b'", {"a": 5}, (5, "?", "it's :b")),
        ("format", "SELECT %s, '?', ':x' /* ? :x */", (5,), (5, "?", ":x")),
        ("format", "SELECT %s, %s", (5, "a"), (5, "a")),
        ("pyformat", "SELECT %(a)s, %(a)s, '?' /* :x */", {"a": 5}, (5, 5, "?")),
        ("pyformat", "SELECT %s, %s", (5, 6), (5, 6)),
    ],
)
def test_paramstyle_markers_outside_literals_and_comments(
    make: MakeDriver, style: str, sql: str, params: Any, expected: tuple[Any, ...]
) -> None:
    assert rows(make(paramstyle=style), sql, params) == [expected]


@pytest.mark.parametrize(
    ("style", "sql", "params"),
    [("format", "SELECT 7 %% %s", (4,)), ("pyformat", "SELECT 7 %% %(n)s", {"n": 4})],
)
def test_double_percent_is_one_percent_in_format_styles(
    make: MakeDriver, style: str, sql: str, params: Any
) -> None:
    assert rows(make(paramstyle=style), sql, params) == [(3,)]


@pytest.mark.parametrize("style", ["format", "pyformat"])
def test_no_percent_processing_without_params(make: MakeDriver, style: str) -> None:
    """As psycopg2 and PyMySQL: ``execute(sql)`` sends ``sql`` as written."""
    driver = make(paramstyle=style)
    assert rows(driver, "SELECT 7 % 4, '100%', '%s', '%(x)s'") == [(3, "100%", "%s", "%(x)s")]


@pytest.mark.parametrize("style", ["format", "pyformat"])
def test_percent_inside_a_literal_is_read_as_the_real_drivers_read_it(
    make: MakeDriver, style: str
) -> None:
    """psycopg2 and PyMySQL %-format the whole statement, literals included: with params,
    ``'100%%'`` is ``'100%'`` and a lone ``%`` in a literal is an error."""
    driver = make(paramstyle=style)
    assert rows(driver, "SELECT %s, '100%%'", (5,)) == [(5, "100%")]
    with pytest.raises(ProgrammingError):
        rows(driver, "SELECT %s, '100%'", (5,))


@pytest.mark.parametrize(
    ("style", "sql", "params"),
    [
        ("pyformat", "SELECT %s, %(a)s", (1,)),
        ("pyformat", "SELECT %s, %(a)s", {"a": 1}),
        ("qmark", "SELECT ?", {"a": 1}),
        ("numeric", "SELECT :1", {"1": 1}),
        ("named", "SELECT :a", (1,)),
        ("format", "SELECT %s", {"a": 1}),
        ("pyformat", "SELECT %(a)s", (1,)),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_mixed_or_mismatched_markers_are_a_programming_error(
    make: MakeDriver, style: str, sql: str, params: Any
) -> None:
    with pytest.raises(ProgrammingError):
        rows(make(paramstyle=style), sql, params)


@pytest.mark.parametrize("style", ["qmark", "format"])
@pytest.mark.parametrize("params", [5, "ab", b"ab", object(), {1, 2}], ids=repr)
def test_params_of_the_wrong_type_are_a_programming_error(
    make: MakeDriver, style: str, params: Any
) -> None:
    marker = "?" if style == "qmark" else "%s"
    with pytest.raises(ProgrammingError, match="sequence or a mapping"):
        rows(make(paramstyle=style), f"SELECT {marker}", params)


@pytest.mark.parametrize("sql", ["SELECT %d", "SELECT %(a)d", "SELECT %"])
def test_unsupported_format_markers_are_a_programming_error(make: MakeDriver, sql: str) -> None:
    with pytest.raises(ProgrammingError, match="unsupported format marker"):
        rows(make(paramstyle="pyformat"), sql, {"a": 1})


def test_wrong_number_of_params_is_a_programming_error(make: MakeDriver) -> None:
    with pytest.raises(ProgrammingError):
        rows(make(), "SELECT ?, ?", (1,))


def test_an_unknown_paramstyle_is_refused(make: MakeDriver) -> None:
    with pytest.raises(ValueError, match="paramstyle 'dollar'"):
        make(paramstyle="dollar")


# ----- transactions -----------------------------------------------------------------------


def test_a_select_begins_a_transaction(make: MakeDriver) -> None:
    conn = make().connect()
    assert not conn.in_transaction
    conn.cursor().execute("SELECT 1")
    assert conn.in_transaction
    conn.commit()
    assert not conn.in_transaction


def test_rollback_discards_ddl(make: MakeDriver) -> None:
    driver = make()
    conn = driver.connect()
    conn.cursor().execute("CREATE TABLE t (x INTEGER)")
    conn.rollback()
    with pytest.raises(OperationalError, match="no such table"):
        rows(driver, "SELECT * FROM t")


@pytest.mark.parametrize(("fails", "committed"), [(False, 1), (True, 0)])
def test_connection_as_context_manager_commits_or_rolls_back(
    make: MakeDriver, fails: bool, committed: int
) -> None:
    driver = make()
    rows(driver, "CREATE TABLE t (x INTEGER)")
    conn = driver.connect()
    with pytest.raises(KeyError) if fails else contextlib.nullcontext():
        with conn:
            conn.cursor().execute("INSERT INTO t VALUES (1)")
            if fails:
                raise KeyError("app error")
    assert not conn.closed
    assert rows(driver, "SELECT count(*) FROM t") == [(committed,)]


def _table(driver: FakeDriver) -> None:
    conn = driver.connect()
    conn.cursor().execute("CREATE TABLE t (x INTEGER)")
    conn.commit()
    conn.close()


def test_readers_see_only_committed_data_and_do_not_block(make: MakeDriver) -> None:
    """WAL: a reader on another connection neither waits for the writer nor sees its rows.
    (A blocked reader would fail with "database is locked" after busy_timeout.)"""
    driver = make(busy_timeout=0.2)
    _table(driver)
    writer, reader = driver.connect(), driver.connect()
    writer.cursor().execute("INSERT INTO t VALUES (1)")
    read = reader.cursor()
    assert read.execute("SELECT count(*) FROM t").fetchall() == [(0,)]
    reader.rollback()
    writer.commit()
    assert read.execute("SELECT count(*) FROM t").fetchall() == [(1,)]


def test_a_second_writer_waits_for_the_first(make: MakeDriver) -> None:
    driver = make(busy_timeout=HANG)
    _table(driver)
    first, second = driver.connect(), driver.connect()
    first.cursor().execute("INSERT INTO t VALUES (1)")
    done = threading.Event()

    def write() -> None:
        second.cursor().execute("INSERT INTO t VALUES (2)")
        second.commit()
        done.set()

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    assert not done.wait(0.2)  # blocked behind the first writer's transaction
    first.commit()
    thread.join(HANG)
    assert done.is_set()
    assert rows(driver, "SELECT x FROM t ORDER BY x") == [(1,), (2,)]


def test_a_writer_gives_up_after_busy_timeout(make: MakeDriver) -> None:
    driver = make(busy_timeout=0.05)
    _table(driver)
    first, second = driver.connect(), driver.connect()
    first.cursor().execute("INSERT INTO t VALUES (1)")
    with pytest.raises(OperationalError, match="locked"):
        second.cursor().execute("INSERT INTO t VALUES (2)")


def test_autocommit_mode(make: MakeDriver) -> None:
    driver = make()
    _table(driver)
    conn = driver.connect()
    conn.cursor().execute("INSERT INTO t VALUES (1)")
    conn.autocommit = True  # commits the open transaction
    assert rows(driver, "SELECT count(*) FROM t") == [(1,)]
    conn.cursor().execute("INSERT INTO t VALUES (2)")
    assert not conn.in_transaction
    assert rows(driver, "SELECT count(*) FROM t") == [(2,)]
    last = driver.calls.filter("execute", connection=conn.id, sql="VALUES \\(2\\)")[0]
    assert last.autocommit and last.transaction is None
    conn.autocommit = False
    conn.cursor().execute("INSERT INTO t VALUES (3)")
    assert conn.in_transaction
    conn.rollback()
    assert rows(driver, "SELECT count(*) FROM t") == [(2,)]


def test_backing_errors_become_the_drivers_classes(make: MakeDriver) -> None:
    driver = make()
    rows(driver, "CREATE TABLE u (x INTEGER UNIQUE)")
    conn = driver.connect()
    cur = conn.cursor()
    cur.execute("INSERT INTO u VALUES (1)")
    with pytest.raises(IntegrityError, match="UNIQUE"):
        cur.execute("INSERT INTO u VALUES (1)")
    with pytest.raises(OperationalError, match="syntax error"):
        cur.execute("SELEKT 1")


# ----- the database file --------------------------------------------------------------------


def _database_file(driver: FakeDriver) -> str:
    ((_, _, path),) = rows(driver, "PRAGMA database_list")
    return str(path)


def test_close_removes_the_database_it_made(make: MakeDriver) -> None:
    driver = make()
    conn = driver.connect()
    path = _database_file(driver)
    assert os.path.exists(path)
    driver.close()
    assert not os.path.exists(path)
    assert not os.path.exists(os.path.dirname(path))
    assert conn.closed


def test_a_given_database_file_is_kept_and_shared(make: MakeDriver, tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    first = make(database=str(path))
    rows(first, "CREATE TABLE t (x INTEGER)")
    first.close()
    assert path.exists()
    second = make(database=str(path))
    assert rows(second, "SELECT count(*) FROM t") == [(0,)]


# ----- Script ------------------------------------------------------------------------------


@pytest.fixture
def scripted(make: MakeDriver) -> FakeDriver:
    return make(backing="script")


def _script(driver: FakeDriver) -> Script:
    assert driver.script is not None
    return driver.script


def test_script_rows_and_columns(scripted: FakeDriver) -> None:
    _script(scripted).on(
        r"^select name, age from users", rows=[("ann", 31), ("bob", 42)], columns=["name", "age"]
    )
    cur = scripted.connect().cursor()
    cur.execute("SELECT name, age FROM users WHERE age > ?", (30,))
    assert cur.rowcount == 2
    assert cur.description is not None
    assert [d[0] for d in cur.description] == ["name", "age"]
    assert cur.description[0][1] == scripted.STRING and cur.description[1][1] == scripted.NUMBER
    assert cur.fetchone() == ("ann", 31)
    assert cur.fetchall() == [("bob", 42)]


def test_script_rows_without_columns_get_generic_names(scripted: FakeDriver) -> None:
    _script(scripted).on("pairs", rows=[(1, 2)])
    cur = scripted.connect().cursor()
    cur.execute("SELECT pairs")
    assert cur.description is not None
    assert [d[0] for d in cur.description] == ["column1", "column2"]


def test_script_rowcount(scripted: FakeDriver) -> None:
    _script(scripted).on(r"^update", rowcount=3)
    cur = scripted.connect().cursor()
    cur.execute("UPDATE t SET x = 1")
    assert cur.rowcount == 3
    assert cur.description is None
    with pytest.raises(ProgrammingError, match="no results"):
        cur.fetchall()
    cur.executemany("UPDATE t SET x = ?", [(1,), (2,)])
    assert cur.rowcount == 6


@pytest.mark.parametrize(
    ("name", "expected"),
    [("IntegrityError", IntegrityError), ("OperationalError", OperationalError)],
)
def test_script_error_by_pep249_name(
    scripted: FakeDriver, name: str, expected: type[Exception]
) -> None:
    _script(scripted).on("insert", error=name, message="duplicate key")
    with pytest.raises(expected, match=r"^duplicate key$"):
        scripted.connect().cursor().execute("INSERT INTO t VALUES (1)")


def test_script_callable_responder_sees_sql_and_params(scripted: FakeDriver) -> None:
    seen: list[tuple[str, Any]] = []

    def double(sql: str, params: Any) -> Response:
        seen.append((sql, params))
        return Response(rows=[(params[0] * 2,)], columns=["double"])

    _script(scripted).on("double", double)
    cur = scripted.connect().cursor()
    assert cur.execute("SELECT double(?)", (21,)).fetchall() == [(42,)]
    assert seen == [("SELECT double(?)", (21,))]


def test_script_most_recent_registration_wins(scripted: FakeDriver) -> None:
    script = _script(scripted)
    script.on("select x", rows=[(1,)]).on("select x", rows=[(2,)])
    cur = scripted.connect().cursor()
    assert cur.execute("SELECT x").fetchall() == [(2,)]
    script.on("select", rows=[(3,)])  # a broader, later pattern takes over
    assert cur.execute("SELECT x").fetchall() == [(3,)]


def test_script_unscripted_statement_is_a_programming_error_naming_it(
    scripted: FakeDriver,
) -> None:
    with pytest.raises(ProgrammingError, match="DELETE FROM audit"):
        scripted.connect().cursor().execute("DELETE FROM audit")


def test_script_answers_select_1_by_default_and_can_be_overridden(scripted: FakeDriver) -> None:
    cur = scripted.connect().cursor()
    assert cur.execute("SELECT 1").fetchall() == [(1,)]
    assert cur.execute("select 1;").fetchall() == [(1,)]
    _script(scripted).on(r"^select 1$", error="OperationalError")
    with pytest.raises(OperationalError):
        cur.execute("SELECT 1")


def test_script_pattern_that_does_not_compile(scripted: FakeDriver) -> None:
    with pytest.raises(ValueError, match="does not compile"):
        _script(scripted).on("(unclosed")


def test_script_transactions_are_counted(scripted: FakeDriver) -> None:
    conn = scripted.connect()
    assert not conn.in_transaction
    conn.cursor().execute("SELECT 1")
    assert conn.in_transaction
    conn.commit()
    assert not conn.in_transaction


def test_one_script_shared_by_two_drivers_and_faults_still_apply(make: MakeDriver) -> None:
    script = Script().on("ping", rows=[("pong",)])
    plain = make(backing=script)
    faulty = make(Plan(Raise(nth=1)), backing=script)
    assert plain.script is script and faulty.script is script
    assert rows(plain, "ping") == [("pong",)]
    with pytest.raises(OperationalError):
        rows(faulty, "ping")
    assert rows(faulty, "ping") == [("pong",)]
    assert "script" in repr(plain)
