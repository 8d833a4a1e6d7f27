"""PEP 249 (DB-API 2.0) compliance, in the spirit of the classic ``dbapi20.py`` suite.

The same tests run against every *subject*: a real driver, the fake driver in each paramstyle,
and ``poolkit.fakes.inject()`` wrapped around each real driver. Where real drivers legitimately
differ, the difference is a declared field of :class:`Subject` and the test asserts the declared
behaviour, so a driver that changes (or a fake that drifts) fails instead of being skipped.
The only skip is "server unreachable", and a backend listed in POOLKIT_REQUIRE_BACKENDS fails.
"""

from __future__ import annotations

import contextlib
import importlib
import time as _time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from pathlib import Path
from typing import Any, Literal

import pytest

from tests.backends import Backend, resolve

Paramstyle = Literal["qmark", "format", "pyformat", "named", "numeric"]
#: PEP 249 names ProgrammingError for bad SQL; some drivers raise OperationalError instead
BadSqlError = Literal["ProgrammingError", "OperationalError"]
Params = tuple[Any, ...] | dict[str, Any]

DATABASE_ERRORS = (
    "DataError",
    "OperationalError",
    "IntegrityError",
    "InternalError",
    "ProgrammingError",
    "NotSupportedError",
)
TYPE_OBJECTS = ("STRING", "BINARY", "NUMBER", "DATETIME", "ROWID")
TICKS = 1_700_000_000


@dataclass(frozen=True, kw_only=True)
class Subject:
    """One PEP 249 module under test, and how it is declared to differ from the others."""

    name: str
    #: the object used as the PEP 249 module (a real driver, a FakeDriver, an inject() wrapper)
    module: Any
    #: whose exception classes must be raised (the wrapped real driver, for inject())
    exceptions_from: Any
    connect: Callable[[], Any]
    paramstyle: Paramstyle
    #: None where the level depends on how the library was built
    threadsafety: int | None
    blob_type: str
    # ----- declared differences -----
    #: absent: no nextset(); not_supported: raises NotSupportedError; single: returns None
    #: (one result set only); works: returns None at the end and True between result sets
    nextset: Literal["absent", "not_supported", "single", "works"]
    #: absent: no callproc(); not_supported: raises NotSupportedError; works: runs a routine
    callproc: Literal["absent", "not_supported", "works"]
    #: CREATE and DROP templates ({name}) for a routine taking an INTEGER a, yielding a + 1
    routine_ddl: tuple[str, str] | None
    rowcount_after_select: Literal["-1", "count"]
    #: DB-API exception class names for a syntax error and for a missing table
    bad_sql_error: BadSqlError
    missing_table_error: BadSqlError
    #: True: description[i][1] compares equal to the module's type objects; False: it is None
    description_type_codes: bool
    #: whether the STRING/BINARY/NUMBER/DATETIME/ROWID type objects exist at all
    type_objects: bool
    #: python: Date() etc. return datetime/bytes values; adapter: objects wrapping them (.adapted)
    constructors: Literal["python", "adapter"]
    #: TimestampFromTicks() gives a naive local datetime, or an aware one
    timestamp_from_ticks: Literal["naive", "aware"]
    #: fetch*() after a statement without a result set: empty result, or raises Error
    fetch_without_result: Literal["empty", "raises"]
    #: closing an already closed connection: a no-op, or raises Error
    close_twice: Literal["noop", "raises"]
    #: whether cursor.setoutputsize() exists (setinputsizes() is required of everyone)
    setoutputsize: bool
    #: whether the cursor supports the iteration protocol (optional extension)
    iterable: bool
    #: releases the module object itself after the test (FakeDriver.close())
    close: Callable[[], None] = lambda: None

    def placeholder(self, n: int, name: str) -> str:
        """The marker for parameter ``n`` (0-based), called ``name``, in this paramstyle."""
        return {
            "qmark": "?",
            "format": "%s",
            "pyformat": f"%({name})s",
            "named": f":{name}",
            "numeric": f":{n + 1}",
        }[self.paramstyle]

    def params(self, values: dict[str, Any]) -> Params:
        """``values`` as this paramstyle wants them: a dict by name, else a tuple in order."""
        if self.paramstyle in ("pyformat", "named"):
            return dict(values)
        return tuple(values.values())


# ----- the subjects ------------------------------------------------------------------------


def _sqlite3(name: str, module: Any, real: Any, backend: Backend) -> Subject:
    return Subject(
        name=name,
        module=module,
        exceptions_from=real,
        connect=lambda: module.connect(*backend.args, **backend.kwargs),
        paramstyle="qmark",
        threadsafety=None,  # follows SQLite's compile-time SQLITE_THREADSAFE
        blob_type="BLOB",
        nextset="absent",
        callproc="absent",
        routine_ddl=None,
        rowcount_after_select="-1",
        bad_sql_error="OperationalError",
        missing_table_error="OperationalError",
        description_type_codes=False,
        type_objects=False,
        constructors="python",
        timestamp_from_ticks="naive",
        fetch_without_result="empty",
        close_twice="noop",
        setoutputsize=True,
        iterable=True,
    )


def _psycopg2(name: str, module: Any, real: Any, backend: Backend) -> Subject:
    return Subject(
        name=name,
        module=module,
        exceptions_from=real,
        connect=lambda: module.connect(*backend.args, **backend.kwargs),
        paramstyle="pyformat",
        threadsafety=2,
        blob_type="BYTEA",
        nextset="not_supported",
        callproc="works",
        routine_ddl=(
            "CREATE FUNCTION {name}(a INTEGER) RETURNS INTEGER AS 'SELECT a + 1' LANGUAGE SQL",
            "DROP FUNCTION IF EXISTS {name}(INTEGER)",
        ),
        rowcount_after_select="count",
        bad_sql_error="ProgrammingError",
        missing_table_error="ProgrammingError",
        description_type_codes=True,
        type_objects=True,
        constructors="adapter",
        timestamp_from_ticks="aware",
        fetch_without_result="raises",
        close_twice="noop",
        setoutputsize=True,
        iterable=True,
    )


def _pymysql(name: str, module: Any, real: Any, backend: Backend) -> Subject:
    return Subject(
        name=name,
        module=module,
        exceptions_from=real,
        connect=lambda: module.connect(*backend.args, **backend.kwargs),
        paramstyle="pyformat",
        threadsafety=1,
        blob_type="BLOB",
        nextset="works",
        callproc="works",
        routine_ddl=(
            "CREATE PROCEDURE {name}(IN a INTEGER) SELECT a + 1",
            "DROP PROCEDURE IF EXISTS {name}",
        ),
        rowcount_after_select="count",
        bad_sql_error="ProgrammingError",
        missing_table_error="ProgrammingError",
        description_type_codes=True,
        type_objects=True,
        constructors="python",
        timestamp_from_ticks="naive",
        fetch_without_result="empty",
        close_twice="raises",
        setoutputsize=False,  # PyMySQL spells it setoutputsizes()
        iterable=True,
    )


def _fakes() -> Any:
    """``poolkit.fakes``, imported only when a fake or inject() subject is built."""
    return importlib.import_module("poolkit.fakes")


def _real(
    declare: Callable[[str, Any, Any, Backend], Subject], backend_name: str, *, injected: bool
) -> Callable[[Path], Subject]:
    def build(tmp_path: Path) -> Subject:
        backend = resolve(backend_name, tmp_path)
        real = backend.driver
        if injected:
            # No plan: the wrapper must be transparent, so it is declared exactly like `real`.
            return declare(f"inject({real.__name__})", _fakes().inject(real), real, backend)
        return declare(real.__name__, real, real, backend)

    return build


def _fake(paramstyle: Paramstyle) -> Callable[[Path], Subject]:
    def build(tmp_path: Path) -> Subject:
        driver = _fakes().FakeDriver(paramstyle=paramstyle, threadsafety=1)
        return Subject(
            name=f"fake-{paramstyle}",
            module=driver,
            exceptions_from=driver,
            connect=driver.connect,
            paramstyle=paramstyle,
            threadsafety=1,
            blob_type="BLOB",
            nextset="single",
            callproc="not_supported",
            routine_ddl=None,
            rowcount_after_select="count",
            bad_sql_error="OperationalError",  # sqlite3's class, mapped by name
            missing_table_error="OperationalError",
            description_type_codes=True,  # inferred from the first row's values
            type_objects=True,
            constructors="python",
            timestamp_from_ticks="naive",
            fetch_without_result="raises",
            close_twice="noop",
            setoutputsize=True,
            iterable=True,
            close=driver.close,
        )

    return build


_SQLITE = [pytest.mark.sqlite]
_POSTGRES = [pytest.mark.real, pytest.mark.postgres]
_MYSQL = [pytest.mark.real, pytest.mark.mysql]
SUBJECTS = [
    pytest.param(_real(_sqlite3, "sqlite", injected=False), marks=_SQLITE, id="sqlite3"),
    pytest.param(_real(_psycopg2, "postgres", injected=False), marks=_POSTGRES, id="psycopg2"),
    pytest.param(_real(_pymysql, "mysql", injected=False), marks=_MYSQL, id="pymysql"),
    *(
        pytest.param(_fake(style), marks=[pytest.mark.fake], id=f"fake-{style}")
        for style in ("qmark", "format", "pyformat", "named", "numeric")
    ),
    pytest.param(_real(_sqlite3, "sqlite", injected=True), marks=_SQLITE, id="inject-sqlite3"),
    pytest.param(
        _real(_psycopg2, "postgres", injected=True), marks=_POSTGRES, id="inject-psycopg2"
    ),
    pytest.param(_real(_pymysql, "mysql", injected=True), marks=_MYSQL, id="inject-pymysql"),
]


# ----- fixtures and helpers ----------------------------------------------------------------


@pytest.fixture(params=SUBJECTS)
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Subject]:
    build: Callable[[Path], Subject] = request.param
    built = build(tmp_path)
    yield built
    built.close()


class Connections:
    """Opens connections for one test and closes them all, before any scratch object is dropped."""

    def __init__(self, subject: Subject) -> None:
        self.subject = subject
        self.opened: list[Any] = []

    def __call__(self) -> Any:
        con = self.subject.connect()
        self.opened.append(con)
        return con

    def close_all(self) -> None:
        for con in self.opened:
            with contextlib.suppress(self.subject.exceptions_from.Error):
                con.close()
        self.opened.clear()


def run(subject: Subject, sql: str) -> None:
    """Run one statement on a fresh connection and commit."""
    con = subject.connect()
    try:
        con.cursor().execute(sql)
        con.commit()
    finally:
        con.close()


@pytest.fixture
def connect(subject: Subject) -> Iterator[Connections]:
    connections = Connections(subject)
    yield connections
    connections.close_all()


@pytest.fixture
def table(subject: Subject, connect: Connections) -> Iterator[str]:
    """A fresh ``(id INTEGER PRIMARY KEY, name VARCHAR(100), payload <blob>)`` table."""
    name = f"pk_{uuid.uuid4().hex[:12]}"
    columns = f"id INTEGER PRIMARY KEY, name VARCHAR(100), payload {subject.blob_type}"
    run(subject, f"CREATE TABLE {name} ({columns})")
    yield name
    connect.close_all()
    run(subject, f"DROP TABLE IF EXISTS {name}")


@pytest.fixture
def routine(subject: Subject, connect: Connections) -> Iterator[str]:
    """A fresh routine ``(a INTEGER) -> a + 1`` where the subject can call one."""
    name = f"pk_{uuid.uuid4().hex[:12]}"
    if subject.routine_ddl is None:
        yield name
        return
    create, drop = subject.routine_ddl
    run(subject, create.format(name=name))
    yield name
    connect.close_all()
    run(subject, drop.format(name=name))


@pytest.fixture
def con(connect: Connections, table: str) -> Any:
    return connect()


@contextlib.contextmanager
def raises(subject: Subject, name: str) -> Iterator[None]:
    """Expect DB-API exception ``name``: the module's class, and the real driver's own."""
    with pytest.raises(getattr(subject.module, name)) as info:
        yield
    assert isinstance(info.value, getattr(subject.exceptions_from, name)), type(info.value)


def insert_sql(subject: Subject, table: str, *columns: str) -> str:
    marks = ", ".join(subject.placeholder(n, column) for n, column in enumerate(columns))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"


def seed(subject: Subject, con: Any, table: str, n: int) -> list[tuple[int, str]]:
    """Commit rows (i, "row<i>") for i in range(n); return them."""
    rows = [(i, f"row{i}") for i in range(n)]
    con.cursor().executemany(
        insert_sql(subject, table, "id", "name"),
        [subject.params({"id": i, "name": name}) for i, name in rows],
    )
    con.commit()
    return rows


def select(con: Any, table: str) -> Any:
    cur = con.cursor()
    cur.execute(f"SELECT id, name FROM {table} ORDER BY id")
    return cur


def count(con: Any, table: str) -> int:
    cur = con.cursor()
    cur.execute(f"SELECT COUNT(*) FROM {table}")
    (n,) = cur.fetchone()
    return int(n)


def tuples(rows: Any) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in rows]


# ----- module interface --------------------------------------------------------------------


def test_module_attributes(subject: Subject) -> None:
    """apilevel is "2.0", threadsafety is 0-3, paramstyle names one of the five styles."""
    module = subject.module
    assert module.apilevel == "2.0"
    assert module.threadsafety in (0, 1, 2, 3)
    if subject.threadsafety is not None:
        assert module.threadsafety == subject.threadsafety
    assert module.paramstyle == subject.paramstyle


def test_exception_hierarchy(subject: Subject) -> None:
    """Warning and Error subclass Exception; the rest subclass Error or DatabaseError."""
    module = subject.module
    for name in ("Warning", "Error", "InterfaceError", "DatabaseError", *DATABASE_ERRORS):
        assert getattr(module, name) is getattr(subject.exceptions_from, name), name
    assert issubclass(module.Warning, Exception)
    assert issubclass(module.Error, Exception)
    assert issubclass(module.InterfaceError, module.Error)
    assert issubclass(module.DatabaseError, module.Error)
    for name in DATABASE_ERRORS:
        assert issubclass(getattr(module, name), module.DatabaseError), name


def test_constructors(subject: Subject) -> None:
    """Date, Time, Timestamp, their *FromTicks variants and Binary build parameter values."""
    module = subject.module

    def value(obj: Any) -> Any:
        if subject.constructors == "adapter":
            assert not isinstance(obj, date | time | bytes | memoryview), type(obj)
            return obj.adapted
        return obj

    assert value(module.Date(2024, 2, 29)) == date(2024, 2, 29)
    assert value(module.Time(13, 45, 30)) == time(13, 45, 30)
    assert value(module.Timestamp(2024, 2, 29, 13, 45, 30)) == datetime(2024, 2, 29, 13, 45, 30)
    local = _time.localtime(TICKS)
    assert value(module.DateFromTicks(TICKS)) == date(*local[:3])
    assert value(module.TimeFromTicks(TICKS)) == time(*local[3:6])
    stamp = value(module.TimestampFromTicks(TICKS))
    if subject.timestamp_from_ticks == "aware":
        assert stamp.tzinfo is not None
        assert stamp == datetime.fromtimestamp(TICKS, timezone.utc)
    else:
        assert stamp == datetime(*local[:6])
    assert bytes(value(module.Binary(b"\x00\x01\xff"))) == b"\x00\x01\xff"


def test_type_objects(subject: Subject) -> None:
    """STRING, BINARY, NUMBER, DATETIME and ROWID describe column types (declared if absent)."""
    present = [name for name in TYPE_OBJECTS if hasattr(subject.module, name)]
    assert present == (list(TYPE_OBJECTS) if subject.type_objects else [])


# ----- connections -------------------------------------------------------------------------


def test_connection_methods(subject: Subject, con: Any) -> None:
    """cursor(), commit(), rollback(), close(); after close() any operation raises Error."""
    con.cursor().close()
    con.commit()  # nothing pending: still fine
    con.rollback()
    con.close()
    with raises(subject, "Error"):
        con.cursor().execute("SELECT 1")
    with raises(subject, "Error"):
        con.commit()
    with raises(subject, "Error"):
        con.rollback()
    if subject.close_twice == "raises":
        with raises(subject, "Error"):
            con.close()
    else:
        con.close()


def test_closed_cursor_raises(subject: Subject, con: Any) -> None:
    """After cursor.close(), execute() raises Error (or a subclass)."""
    cur = con.cursor()
    cur.close()
    with raises(subject, "Error"):
        cur.execute("SELECT 1")


# ----- cursors -----------------------------------------------------------------------------


def test_description(subject: Subject, con: Any, table: str) -> None:
    """description: None before execute and after non-SELECT; 7-item sequences after SELECT."""
    cur = con.cursor()
    assert cur.description is None
    cur.execute(f"INSERT INTO {table} (id, name) VALUES (1, 'one')")
    assert cur.description is None
    description = select(con, table).description
    assert len(description) == 2
    assert all(len(column) == 7 for column in description)
    assert [column[0] for column in description] == ["id", "name"]


def test_description_type_codes(subject: Subject, con: Any, table: str) -> None:
    """description[i][1] (type_code) compares equal to one of the module's type objects."""
    cur = con.cursor()
    values = {"id": 1, "name": "one", "payload": subject.module.Binary(b"\x01")}
    cur.execute(insert_sql(subject, table, *values), subject.params(values))
    cur.execute(f"SELECT id, name, payload FROM {table}")
    codes = [column[1] for column in cur.description]
    if not subject.description_type_codes:
        assert codes == [None, None, None]
        return
    module = subject.module
    assert module.NUMBER == codes[0]
    assert module.STRING == codes[1]
    assert module.BINARY == codes[2]
    assert module.STRING != codes[0]
    assert module.NUMBER != codes[1]


def test_rowcount(subject: Subject, con: Any, table: str) -> None:
    """rowcount: -1 before execute, rows affected by DML, declared (-1 or count) for SELECT."""
    cur = con.cursor()
    assert cur.rowcount == -1
    seed(subject, con, table, 3)
    cur.execute(insert_sql(subject, table, "id", "name"), subject.params({"id": 9, "name": "x"}))
    assert cur.rowcount == 1
    cur.execute(f"DELETE FROM {table} WHERE id < 2")
    assert cur.rowcount == 2
    cur.execute(f"SELECT id, name FROM {table}")
    assert cur.rowcount == (-1 if subject.rowcount_after_select == "-1" else 2)


def test_fetchone_fetchall(subject: Subject, con: Any, table: str) -> None:
    """fetchone() gives one row or None at the end; fetchall() gives all remaining rows."""
    rows = seed(subject, con, table, 4)
    cur = select(con, table)
    assert tuple(cur.fetchone()) == rows[0]
    assert tuple(cur.fetchone()) == rows[1]
    assert tuples(cur.fetchall()) == rows[2:]
    assert len(cur.fetchall()) == 0
    assert cur.fetchone() is None
    assert cur.fetchone() is None


def test_fetchmany_honours_arraysize(subject: Subject, con: Any, table: str) -> None:
    """arraysize defaults to 1; fetchmany() fetches arraysize rows, or an explicit size."""
    rows = seed(subject, con, table, 5)
    cur = select(con, table)
    assert cur.arraysize == 1
    assert tuples(cur.fetchmany()) == rows[:1]
    cur.arraysize = 2
    assert tuples(cur.fetchmany()) == rows[1:3]
    assert tuples(cur.fetchmany(5)) == rows[3:]  # fewer left than asked for
    assert len(cur.fetchmany()) == 0
    assert len(cur.fetchmany(3)) == 0


def test_fetch_without_result_set(subject: Subject, con: Any, table: str) -> None:
    """fetch*() after a statement without a result set: Error, or (declared) an empty result."""
    cur = con.cursor()
    cur.execute(f"INSERT INTO {table} (id, name) VALUES (1, 'one')")
    if subject.fetch_without_result == "raises":
        with raises(subject, "Error"):
            cur.fetchone()
        with raises(subject, "Error"):
            cur.fetchall()
    else:
        assert cur.fetchone() is None
        assert len(cur.fetchall()) == 0


def test_executemany(subject: Subject, con: Any, table: str) -> None:
    """executemany() runs the operation once per parameter set."""
    cur = con.cursor()
    rows = [(i, f"many{i}") for i in range(3)]
    cur.executemany(
        insert_sql(subject, table, "id", "name"),
        [subject.params({"id": i, "name": name}) for i, name in rows],
    )
    assert cur.rowcount in (-1, 3)
    assert tuples(select(con, table).fetchall()) == rows


def test_iteration(subject: Subject, con: Any, table: str) -> None:
    """Where supported, iter(cursor) is the cursor and yields the rows fetchone() would."""
    rows = seed(subject, con, table, 3)
    cur = select(con, table)
    if not subject.iterable:
        with pytest.raises(TypeError):
            iter(cur)
        return
    assert iter(cur) is cur
    assert tuples(cur) == rows


def test_nextset(subject: Subject, con: Any, routine: str) -> None:
    """nextset() skips to the next result set, None when there is none (declared if absent)."""
    cur = con.cursor()
    if subject.nextset == "absent":
        assert not hasattr(cur, "nextset")
        return
    cur.execute("SELECT 1")
    if subject.nextset == "not_supported":
        with raises(subject, "NotSupportedError"):
            cur.nextset()
        return
    assert cur.nextset() is None
    if subject.nextset == "works":
        # A procedure's SELECT is one result set, the CALL's own status another.
        cur.callproc(routine, (41,))
        assert tuples(cur.fetchall()) == [(42,)]
        assert cur.nextset() is True
        assert cur.description is None
        assert cur.nextset() is None


def test_callproc(subject: Subject, con: Any, routine: str) -> None:
    """callproc() calls a stored routine and returns (a copy of) its parameters."""
    cur = con.cursor()
    if subject.callproc == "absent":
        assert not hasattr(cur, "callproc")
        return
    if subject.callproc == "not_supported":
        with raises(subject, "NotSupportedError"):
            cur.callproc(routine, (41,))
        return
    assert subject.routine_ddl is not None
    assert list(cur.callproc(routine, (41,))) == [41]
    assert tuple(cur.fetchone()) == (42,)


def test_setinputsizes_setoutputsize(subject: Subject, con: Any, table: str) -> None:
    """setinputsizes() and setoutputsize() exist and may do nothing: here they change nothing."""
    cur = con.cursor()
    long_name = "n" * 60
    cur.setinputsizes((None, 100))
    cur.execute(
        insert_sql(subject, table, "id", "name"), subject.params({"id": 1, "name": long_name})
    )
    if subject.setoutputsize:
        cur.setoutputsize(1)
        cur.setoutputsize(1, 1)
    else:
        assert not hasattr(cur, "setoutputsize")
    cur.execute(f"SELECT id, name FROM {table}")
    assert tuples(cur.fetchall()) == [(1, long_name)]


# ----- parameters --------------------------------------------------------------------------


def test_paramstyle_round_trip(subject: Subject, con: Any, table: str) -> None:
    """Parameters written in the module's paramstyle are bound as data, not spliced into SQL."""
    cur = con.cursor()
    awkward = "O'Reilly ? %s :1 -- not SQL"
    for i, name in ((1, "plain"), (2, awkward)):
        cur.execute(
            insert_sql(subject, table, "id", "name"), subject.params({"id": i, "name": name})
        )
    where = f"name = {subject.placeholder(0, 'name')} AND id > {subject.placeholder(1, 'low')}"
    cur.execute(
        f"SELECT id, name FROM {table} WHERE {where}", subject.params({"name": awkward, "low": 0})
    )
    assert tuples(cur.fetchall()) == [(2, awkward)]


def test_binary_round_trip(subject: Subject, con: Any, table: str) -> None:
    """A Binary() parameter is stored and read back byte for byte."""
    data = bytes(range(256))
    cur = con.cursor()
    values = {"id": 1, "payload": subject.module.Binary(data)}
    cur.execute(insert_sql(subject, table, *values), subject.params(values))
    cur.execute(f"SELECT payload FROM {table}")
    (payload,) = cur.fetchone()
    assert bytes(payload) == data


# ----- transactions ------------------------------------------------------------------------


def test_rollback_discards(subject: Subject, con: Any, table: str) -> None:
    """A transaction begins implicitly; rollback() discards its changes."""
    cur = con.cursor()
    cur.execute(f"INSERT INTO {table} (id, name) VALUES (1, 'one')")
    assert count(con, table) == 1
    con.rollback()
    assert count(con, table) == 0


def test_commit_keeps(subject: Subject, connect: Connections, table: str) -> None:
    """commit() makes the changes permanent: a new connection sees them."""
    writer = connect()
    writer.cursor().execute(f"INSERT INTO {table} (id, name) VALUES (1, 'one')")
    writer.commit()
    writer.close()
    assert count(connect(), table) == 1


def test_isolation(subject: Subject, connect: Connections, table: str) -> None:
    """Another connection sees only committed rows (no autocommit by default)."""
    writer, reader = connect(), connect()
    writer.cursor().execute(f"INSERT INTO {table} (id, name) VALUES (1, 'one')")
    assert count(writer, table) == 1
    assert count(reader, table) == 0
    reader.rollback()  # end the reader's snapshot (REPEATABLE READ)
    writer.commit()
    assert count(reader, table) == 1


# ----- errors ------------------------------------------------------------------------------


def test_integrity_error(subject: Subject, con: Any, table: str) -> None:
    """A unique-key violation raises IntegrityError."""
    cur = con.cursor()
    cur.execute(f"INSERT INTO {table} (id, name) VALUES (1, 'one')")
    with raises(subject, "IntegrityError"):
        cur.execute(f"INSERT INTO {table} (id, name) VALUES (1, 'again')")
    con.rollback()


def test_bad_sql_error(subject: Subject, con: Any) -> None:
    """A syntax error raises the declared DatabaseError (ProgrammingError in PEP 249's words)."""
    with raises(subject, subject.bad_sql_error):
        con.cursor().execute("SELEKT 1")
    con.rollback()


def test_missing_table_error(subject: Subject, con: Any, table: str) -> None:
    """A missing table raises the declared DatabaseError (ProgrammingError in PEP 249's words)."""
    with raises(subject, subject.missing_table_error):
        con.cursor().execute(f"SELECT id FROM {table}_missing")
    con.rollback()
