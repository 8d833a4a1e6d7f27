"""``FakeDriver`` against real ``sqlite3``: the same statements must give the same answers.

A fakeredis-style differential test. Hypothesis writes a sequence of steps (statements with
parameters, ``executemany``, fetches, commit, rollback) over a small fixed schema; the sequence
runs on ``FakeDriver(paramstyle=...)`` (sqlite backing) for each of the five paramstyles, with
the qmark placeholders translated into the style under test, and on a plain ``sqlite3``
connection. After every step both must agree on: the rows, ``rowcount`` of DML,
``lastrowid`` of an INSERT, the column names of ``description``, whether a transaction is
open, and the exception (same class name, and a ``DatabaseError``/``Error`` of its own module
alike). At the end a fresh connection must see the same committed rows on both.

In the ``format``/``pyformat`` translations every ``%`` is doubled when there are
parameters, literals included, as psycopg2 and PyMySQL require; the named styles run on
sqlite3 as ``:pN`` with the same mapping, so a mapping with a key too many is no error on
either side.

The reference follows PEP 249 transactions as the fake does: it is opened with
``isolation_level=None`` and the harness issues ``BEGIN`` before the first statement after
connect, commit or rollback. The fake reads a result in full at ``execute``; the reference
does the same (it buffers ``fetchall()`` at execute), so fetch slicing is compared against the
PEP 249 model rather than against sqlite3's lazy cursor. One documented difference is
asserted rather than compared: fetching when the last call gave no result set raises the
fake's ``ProgrammingError`` (PEP 249) where sqlite3 returns nothing.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from poolkit import fakes
from poolkit.fakes import FakeConnection, FakeCursor, FakeDriver

PARAMSTYLES = ("qmark", "numeric", "named", "format", "pyformat")

SCHEMA = (
    "CREATE TABLE t ("
    "id INTEGER PRIMARY KEY, "
    "name TEXT UNIQUE, "
    "score REAL CHECK (score IS NULL OR score > -100), "
    "data BLOB)"
)

Params: TypeAlias = tuple[Any, ...]

# ----- steps -------------------------------------------------------------------------------
# Statements are written in qmark style; the harness translates them for the style under test.
# Their reprs are Python that rebuilds them, so a shrunk failure pastes into an @example.


@dataclass(frozen=True)
class Execute:
    sql: str
    params: Params | None = None


@dataclass(frozen=True)
class ExecuteMany:
    sql: str
    seq: tuple[Params, ...]


@dataclass(frozen=True)
class Fetch:
    how: Literal["one", "many", "all"]
    size: int | None = None


@dataclass(frozen=True)
class Commit:
    pass


@dataclass(frozen=True)
class Rollback:
    pass


Step: TypeAlias = Execute | ExecuteMany | Fetch | Commit | Rollback

# ----- strategies (small pools of values, simplest first, so failures shrink well) ---------

ids = st.sampled_from([1, 2, 3, 4])
maybe_ids = st.sampled_from([None, 1, 2, 3])
names = st.sampled_from(["a", "b", "c", "it's", "x:y%s"])
scores = st.sampled_from([None, 0.0, 1.5, -2.25, 10.0, -500.0])  # -500 fails the CHECK
blobs = st.sampled_from([None, b"", b"\x00\xff", b"blob"])
anything = st.one_of(names, scores, blobs, ids)

#: (qmark SQL, strategy for its parameters) — every marker gets one value
TEMPLATES: tuple[tuple[str, st.SearchStrategy[Params]], ...] = (
    (
        "INSERT INTO t (id, name, score, data) VALUES (?, ?, ?, ?)",
        st.tuples(maybe_ids, names, scores, blobs),
    ),
    ("INSERT INTO t (name, score) VALUES (?, ?)", st.tuples(names, scores)),
    # the same name twice in one statement: always violates UNIQUE(name)
    ("INSERT INTO t (name) VALUES (?), (?)", names.map(lambda n: (n, n))),
    ("UPDATE t SET score = score + ? WHERE name = ?", st.tuples(scores, names)),
    ("UPDATE t SET name = ? WHERE id = ?", st.tuples(names, ids)),
    ("UPDATE t SET data = ? WHERE score > ? OR score IS NULL", st.tuples(blobs, scores)),
    ("DELETE FROM t WHERE id = ?", st.tuples(ids)),
    ("DELETE FROM t WHERE score < ? OR name = ?", st.tuples(scores, names)),
    ("SELECT name, score FROM t WHERE score >= ? ORDER BY name", st.tuples(scores)),
    # markers, quotes, colons and percent signs inside literals are not parameters
    (
        "SELECT count(*) AS n, avg(score) AS mean FROM t WHERE name <> 'what?' AND id > ?",
        st.tuples(ids),
    ),
    ("SELECT id % 3 AS m, name FROM t WHERE id >= ? ORDER BY id", st.tuples(ids)),
    ("SELECT name || ':x' AS tag, ? AS extra FROM t ORDER BY id", st.tuples(names)),
    ("SELECT 'it''s ?' AS q, ? AS p", st.tuples(anything)),
    ("SELECT ? AS a, ? AS b, typeof(?) AS c", st.tuples(anything, anything, anything)),
    ("SELECT ? AS unsupported", st.just(([1, 2],))),  # a list cannot be bound
    ("SELECT * FROM missing_table WHERE id = ?", st.tuples(ids)),
    ("INSERT INTO t (name VALUES (?)", st.tuples(names)),  # syntax error
    ("DELETE FROM t WHERE no_such_column = ?", st.tuples(ids)),
)

PLAIN: tuple[str, ...] = (
    "SELECT id, name, score, data FROM t ORDER BY id",
    "SELECT count(*), sum(score), min(name), max(length(data)) FROM t",
    "SELECT id % 2 AS parity, count(*) AS n FROM t GROUP BY id % 2 ORDER BY parity",
    "SELECT * FROM t WHERE name LIKE 'a%' ORDER BY id",
    "DELETE FROM t WHERE score IS NULL",
    "SELECT * FROM missing_table",
    "SELEC id FROM t",
    "DELETE FROM t; DELETE FROM t",  # one statement at a time
    "   ",
    # savepoints run inside the implicit transaction, like any statement
    "SAVEPOINT sp",
    "RELEASE SAVEPOINT sp",
    "ROLLBACK TO SAVEPOINT sp",
)

MANY: tuple[tuple[str, st.SearchStrategy[Params]], ...] = (
    ("INSERT INTO t (name, score) VALUES (?, ?)", st.tuples(names, scores)),
    ("UPDATE t SET score = ? WHERE name = ?", st.tuples(scores, names)),
    ("DELETE FROM t WHERE id = ?", st.tuples(ids)),
    ("SELECT ? AS a", st.tuples(ids)),  # executemany() of a query is an error
)


@st.composite
def _execute(draw: st.DrawFn) -> Execute:
    sql, params = draw(st.sampled_from(TEMPLATES))
    return Execute(sql, draw(params))


@st.composite
def _plain(draw: st.DrawFn) -> Execute:
    sql = draw(st.sampled_from(PLAIN))
    return Execute(sql, draw(st.sampled_from([None, ()])))


@st.composite
def _wrong_count(draw: st.DrawFn) -> Execute:
    """A statement with one value too few or one too many."""
    sql, params = draw(st.sampled_from(TEMPLATES))
    values = draw(params)
    if draw(st.booleans()):
        return Execute(sql, values[:-1])
    return Execute(sql, (*values, draw(anything)))


@st.composite
def _execute_many(draw: st.DrawFn) -> ExecuteMany:
    sql, params = draw(st.sampled_from(MANY))
    seq = draw(st.lists(params, max_size=4))
    if seq and draw(st.integers(0, 4)) == 0:  # one entry with a value missing
        i = draw(st.integers(0, len(seq) - 1))
        seq[i] = seq[i][:-1]
    return ExecuteMany(sql, tuple(seq))


fetches = st.one_of(
    st.just(Fetch("one")),
    st.just(Fetch("all")),
    st.builds(Fetch, st.just("many"), st.sampled_from([None, 0, 1, 2, 5])),
)

steps: st.SearchStrategy[Step] = st.one_of(
    _execute(),
    _execute(),
    _plain(),
    fetches,
    fetches,
    _execute_many(),
    _wrong_count(),
    st.just(Commit()),
    st.just(Rollback()),
)

# ----- translating qmark statements ---------------------------------------------------------


def _markers(sql: str, marker: Callable[[int], str], percent: str) -> str:
    """``sql`` with the i-th ``?`` outside quotes replaced by ``marker(i)`` (from 1) and every
    ``%`` by ``percent``: psycopg2 and PyMySQL %-format the whole statement, literals too."""
    out: list[str] = []
    quoted = False
    n = 0
    for c in sql:
        if c == "'":
            quoted = not quoted  # a doubled quote toggles twice
        elif not quoted and c == "?":
            n += 1
            out.append(marker(n))
            continue
        elif c == "%":
            out.append(percent)
            continue
        out.append(c)
    return "".join(out)


def _named(params: Params) -> dict[str, Any]:
    return {f"p{i}": v for i, v in enumerate(params, 1)}


def to_style(style: str, sql: str, params: Params | None) -> tuple[str, Any]:
    """The statement and its parameters in ``style``. Wrong counts stay wrong: a mapping
    then lacks a key, or has one more than the statement names."""
    pct = "%%" if params is not None else "%"  # as psycopg2: no parameters, no % escaping
    if style == "qmark":
        return sql, params
    if style == "numeric":
        return _markers(sql, lambda i: f":{i}", "%"), params
    if style == "named":
        return _markers(sql, lambda i: f":p{i}", "%"), None if params is None else _named(params)
    if style == "format":
        return _markers(sql, lambda i: "%s", pct), params
    if style == "pyformat":
        text = _markers(sql, lambda i: f"%(p{i})s", pct)
        return text, None if params is None else _named(params)
    raise AssertionError(style)


def to_reference(style: str, sql: str, params: Params | None) -> tuple[str, Any]:
    """sqlite3 runs named styles as named (``:pN`` with the same mapping), the rest as qmark."""
    if style in ("named", "pyformat"):
        return _markers(sql, lambda i: f":p{i}", "%"), None if params is None else _named(params)
    return sql, params


# ----- the two sides ------------------------------------------------------------------------


@dataclass
class Outcome:
    error: BaseException | None = None
    value: Any = None
    description: list[str] | None = None
    rowcount: int | None = None  # DML only
    lastrowid: int | None = None  # successful execute only (compared after INSERT)
    in_transaction: bool = False
    no_result_set: bool = False  # the reference had nothing to fetch


def _names(description: Any) -> list[str] | None:
    return None if description is None else [d[0] for d in description]


class Fake:
    def __init__(self, driver: FakeDriver, style: str) -> None:
        self.style = style
        self.conn: FakeConnection = driver.connect()
        self.cur: FakeCursor = self.conn.cursor()

    def run(self, step: Step) -> Outcome:
        out = Outcome()
        try:
            if isinstance(step, Execute):
                sql, params = to_style(self.style, step.sql, step.params)
                self.cur.execute(sql, params)
                out.lastrowid = self.cur.lastrowid
                if self.cur.description is None:
                    out.rowcount = self.cur.rowcount
            elif isinstance(step, ExecuteMany):
                seq = [to_style(self.style, step.sql, p) for p in step.seq]
                sql = seq[0][0] if seq else to_style(self.style, step.sql, ())[0]
                self.cur.executemany(sql, [p for _, p in seq])
                out.rowcount = self.cur.rowcount
            elif isinstance(step, Fetch):
                out.value = _fetch(self.cur, step)
            elif isinstance(step, Commit):
                self.conn.commit()
            else:
                self.conn.rollback()
        except Exception as exc:
            out.error = exc
            out.rowcount = out.lastrowid = None
        out.description = _names(self.cur.description)
        out.in_transaction = self.conn.in_transaction
        return out


class Reference:
    """sqlite3 with PEP 249 transactions (BEGIN before the first statement) and results read
    in full at execute."""

    def __init__(self, path: str, style: str) -> None:
        self.style = style
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.cur = self.conn.cursor()
        self.need_begin = True
        self.rows: list[Any] | None = None
        self.pos = 0

    def _begin(self) -> None:
        if self.need_begin:
            self.conn.execute("BEGIN")
            self.need_begin = False

    def run(self, step: Step) -> Outcome:
        out = Outcome()
        try:
            if isinstance(step, Execute):
                self.rows = None
                self._begin()
                sql, params = to_reference(self.style, step.sql, step.params)
                self.cur.execute(sql, () if params is None else params)
                out.lastrowid = self.cur.lastrowid
                if self.cur.description is None:
                    out.rowcount = self.cur.rowcount
                else:
                    self.rows, self.pos = self.cur.fetchall(), 0
            elif isinstance(step, ExecuteMany):
                self.rows = None
                self._begin()
                seq = [to_reference(self.style, step.sql, p) for p in step.seq]
                sql = seq[0][0] if seq else to_reference(self.style, step.sql, ())[0]
                self.cur.executemany(sql, [p for _, p in seq])
                out.rowcount = self.cur.rowcount
            elif isinstance(step, Fetch):
                if self.rows is None:
                    out.no_result_set = True
                else:
                    out.value = self._fetch(step)
            else:
                if self.conn.in_transaction:
                    self.conn.execute("COMMIT" if isinstance(step, Commit) else "ROLLBACK")
                self.need_begin = True
        except Exception as exc:
            out.error = exc
            out.rowcount = out.lastrowid = None
            # A cursor's state after a failed call is undefined (sqlite3 on 3.10 keeps the
            # columns of a refused executemany): go on with a fresh one, as the fake does.
            self.cur = self.conn.cursor()
        out.description = _names(self.cur.description)
        out.in_transaction = self.conn.in_transaction
        return out

    def _fetch(self, step: Fetch) -> Any:
        assert self.rows is not None
        if step.how == "one":
            row = self.rows[self.pos] if self.pos < len(self.rows) else None
            self.pos = min(self.pos + 1, len(self.rows))
            return row
        size = len(self.rows) if step.how == "all" else (1 if step.size is None else step.size)
        rows = self.rows[self.pos : self.pos + size]
        self.pos += len(rows)
        return rows


def _fetch(cur: FakeCursor, step: Fetch) -> Any:
    if step.how == "one":
        return cur.fetchone()
    if step.how == "all":
        return cur.fetchall()
    return cur.fetchmany() if step.size is None else cur.fetchmany(step.size)


def _same_error(fake: BaseException | None, ref: BaseException | None) -> str | None:
    """What differs between the two errors, or None."""
    if fake is None and ref is None:
        return None
    if fake is None or ref is None:
        return f"fake raised {fake!r}, sqlite3 raised {ref!r}"
    if type(fake).__name__ != type(ref).__name__:
        return f"fake raised {fake!r}, sqlite3 raised {ref!r}"
    for fake_base, ref_base in (
        (fakes.DatabaseError, sqlite3.DatabaseError),
        (fakes.Error, sqlite3.Error),
    ):
        if isinstance(fake, fake_base) != isinstance(ref, ref_base):
            return f"{fake!r} and {ref!r} differ on being a {ref_base.__name__}"
    return None


def compare(step: Step, fake: Outcome, ref: Outcome) -> None:
    where = f"after {step!r}"
    if ref.no_result_set:
        # PEP 249: fetching with no result set raises Error; sqlite3 returns nothing.
        assert isinstance(fake.error, fakes.ProgrammingError), (
            f"{where}: fetch with no result set should raise ProgrammingError, got "
            f"{fake.error!r} / {fake.value!r}"
        )
    else:
        problem = _same_error(fake.error, ref.error)
        assert problem is None, f"{where}: {problem}"
        assert fake.value == ref.value, f"{where}: rows {fake.value!r} != {ref.value!r}"
        assert fake.rowcount == ref.rowcount, (
            f"{where}: rowcount {fake.rowcount!r} != {ref.rowcount!r}"
        )
        # lastrowid is defined for an INSERT; after other statements sqlite3 keeps the
        # connection's last one (stale, or 0) where the fake has None: not compared.
        inserted = isinstance(step, Execute) and step.sql.startswith("INSERT")
        if inserted and (fake.lastrowid is not None or ref.lastrowid is not None):
            assert fake.lastrowid == ref.lastrowid, (
                f"{where}: lastrowid {fake.lastrowid!r} != {ref.lastrowid!r}"
            )
    assert fake.description == ref.description, (
        f"{where}: columns {fake.description!r} != {ref.description!r}"
    )
    assert fake.in_transaction == ref.in_transaction, (
        f"{where}: in_transaction {fake.in_transaction} != {ref.in_transaction}"
    )


# ----- the test -----------------------------------------------------------------------------

_SHM = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


@contextmanager
def _databases(style: str) -> Iterator[tuple[FakeDriver, str]]:
    """A fake driver and a reference database file, both holding the empty schema."""
    driver = FakeDriver(paramstyle=style)
    directory = tempfile.mkdtemp(prefix="poolkit-ref-", dir=_SHM)
    path = os.path.join(directory, "ref.db")
    try:
        setup = driver.connect()
        setup.cursor().execute(SCHEMA)
        setup.commit()
        setup.close()
        ref = sqlite3.connect(path, isolation_level=None)
        ref.execute("PRAGMA journal_mode=WAL")  # the fake's too: readers see committed data
        ref.execute(SCHEMA)
        ref.close()
        yield driver, path
    finally:
        driver.close()
        shutil.rmtree(directory, ignore_errors=True)


def _committed_fake(driver: FakeDriver) -> list[Any]:
    conn = driver.connect()
    try:
        cur = conn.cursor()
        cur.execute("SELECT * FROM t ORDER BY id")
        return cur.fetchall()
    finally:
        conn.close()


def _committed_reference(path: str) -> list[Any]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT * FROM t ORDER BY id").fetchall()
    finally:
        conn.close()


def run_both(style: str, sequence: list[Step], *, events: bool = False) -> None:
    """Run ``sequence`` on both sides, comparing after every step and at the end."""
    with _databases(style) as (driver, path):
        fake, ref = Fake(driver, style), Reference(path, style)
        try:
            for step in sequence:
                ours, theirs = fake.run(step), ref.run(step)
                compare(step, ours, theirs)
                if events:  # pytest --hypothesis-show-statistics: what the examples covered
                    error = theirs.error
                    what = type(error).__name__ if error else "ok"
                    if theirs.no_result_set:
                        what = "no result set"
                    event(f"{type(step).__name__}: {what}")
            # What a fresh connection sees: committed data only, the same on both.
            assert _committed_fake(driver) == _committed_reference(path)
        finally:
            fake.conn.close()
            ref.conn.close()


INSERT2 = "INSERT INTO t (name, score) VALUES (?, ?)"


@pytest.mark.parametrize("style", PARAMSTYLES)
@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(sequence=st.lists(steps, min_size=1, max_size=20))
# a failed statement does not end the transaction; rollback undoes the earlier insert
@example(
    sequence=[
        Execute(INSERT2, ("a", 1.5)),
        Execute("INSERT INTO t (name) VALUES (?), (?)", ("a", "a")),
        Execute("SELEC id FROM t"),
        Rollback(),
        Execute("SELECT id, name, score, data FROM t ORDER BY id"),
        Fetch("all"),
    ]
)
# executemany stops at the duplicate: the rows before it stay, in the transaction
@example(
    sequence=[
        ExecuteMany(INSERT2, (("a", 0.0), ("b", None), ("a", 1.5))),
        Execute("SELECT name, score FROM t WHERE score >= ? ORDER BY name", (0.0,)),
        Fetch("many", 1),
        Fetch("one"),
        Fetch("many", 5),
        Commit(),
    ]
)
# markers inside literals, % with and without parameters, wrong parameter counts
@example(
    sequence=[
        Execute("SELECT 'it''s ?' AS q, ? AS p", ("x:y%s",)),
        Fetch("all"),
        Execute("SELECT id % 2 AS parity, count(*) AS n FROM t GROUP BY id % 2 ORDER BY parity"),
        Execute("SELECT id % 3 AS m, name FROM t WHERE id >= ? ORDER BY id", (1,)),
        Execute("DELETE FROM t WHERE id = ?", ()),
        Execute("DELETE FROM t WHERE id = ?", (1, 2)),
        Fetch("one"),
    ]
)
def test_fake_matches_sqlite3(style: str, sequence: list[Step]) -> None:
    run_both(style, sequence, events=True)


@pytest.mark.parametrize("style", PARAMSTYLES)
def test_executemany_with_no_rows(style: str) -> None:
    """PEP 249 drivers (and sqlite3) take ``executemany(sql, [])`` as a no-op."""
    run_both(style, [ExecuteMany(INSERT2, ()), Commit()])


@pytest.mark.parametrize("style", PARAMSTYLES)
def test_savepoint_first_is_inside_the_transaction(style: str) -> None:
    """A SAVEPOINT is a statement like any other: it runs inside the implicit transaction
    (psycopg2 sends BEGIN first; MySQL with autocommit off is always in one), so RELEASE
    does not commit and rollback undoes the savepoint's work. poolkit's nested
    ``conn.transaction()`` relies on it."""
    run_both(
        style,
        [
            Execute("SAVEPOINT sp"),
            Execute(INSERT2, ("a", 1.5)),
            Execute("RELEASE SAVEPOINT sp"),
            Rollback(),
            Execute("SELECT id, name, score, data FROM t ORDER BY id"),
            Fetch("all"),
        ],
    )
