"""The PEP 249 surface, driven through the pool, on every backend.

Where drivers differ, the expected behaviour is taken from the plain driver itself: each
such test performs the same operation on a plain connection and asserts that poolkit gives
the same answer (same value, or the same exception class with the same arguments).
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

import poolkit
from tests.backends import Backend

pytestmark = pytest.mark.anyio

PK_COLUMNS = "id INTEGER PRIMARY KEY, name VARCHAR(100)"


# ----- helpers ---------------------------------------------------------------------------


def insert_sql(backend: Backend, table: str) -> str:
    return f"INSERT INTO {table} (id, name) VALUES ({backend.q(0)}, {backend.q(1)})"


def seed(backend: Backend, table: str, n: int) -> list[tuple[int, str]]:
    """Commit rows (i, "row<i>") for i in range(n) with a plain connection; return them."""
    rows = [(i, f"row{i}") for i in range(n)]
    if rows:
        raw = backend.connect()
        try:
            cur = raw.cursor()
            cur.executemany(insert_sql(backend, table), rows)
            raw.commit()
        finally:
            raw.close()
    return rows


def committed(backend: Backend, table: str) -> list[tuple[Any, ...]]:
    """The committed rows of ``table`` as a fresh plain connection sees them."""
    return [tuple(row) for row in backend.run(f"SELECT id, name FROM {table} ORDER BY id")]


def plain_error(backend: Backend, action: Callable[[Any], object]) -> BaseException:
    """The exception the plain driver raises for ``action(raw_connection)``."""
    raw = backend.connect()
    try:
        with pytest.raises(Exception) as info:
            action(raw)
        return info.value
    finally:
        raw.rollback()
        raw.close()


def plain_outcome(backend: Backend, action: Callable[[Any], object]) -> tuple[Any, ...]:
    """("ok", value) or ("raise", type, args) for ``action(raw_connection)`` on a plain conn."""
    raw = backend.connect()
    try:
        try:
            return ("ok", action(raw))
        except Exception as exc:
            return ("raise", type(exc), exc.args)
    finally:
        raw.rollback()
        raw.close()


def _then(first: Callable[[Any], Any], second: Callable[[Any], object]) -> Callable[[Any], object]:
    return lambda raw: second(first(raw))


def assert_same_error(got: BaseException, expected: BaseException, backend: Backend) -> None:
    """``got`` is the driver's exception, unchanged: same class, same args, driver's Error."""
    assert type(got) is type(expected), (type(got), type(expected))
    assert isinstance(got, backend.driver.Error)
    assert not isinstance(got, poolkit.PoolError)
    assert got.args == expected.args
    for attr in ("pgcode", "sqlite_errorcode"):
        assert getattr(got, attr, None) == getattr(expected, attr, None)


def raw_autocommit(raw: Any) -> bool:
    """Read autocommit straight from a raw connection (not through poolkit's profiles)."""
    if isinstance(raw, sqlite3.Connection):
        return raw.isolation_level is None
    get = getattr(raw, "get_autocommit", None)  # PyMySQL: .autocommit is the setter
    if callable(get):
        return bool(get())
    return bool(raw.autocommit)


def column_names(cur: poolkit.AsyncCursor) -> list[str]:
    assert cur.description is not None
    return [d[0] for d in cur.description]


async def next_row(cur: poolkit.AsyncCursor) -> tuple[Any, ...]:
    """``cur.fetchone()`` as a tuple (pyodbc's rows are not tuples); the row must be there."""
    row = await cur.fetchone()
    assert row is not None
    return tuple(row)


def needs(backend: Backend, *names: str, reason: str) -> None:
    if backend.name not in names:
        pytest.skip(f"{backend.name}: {reason}")


@pytest.fixture
def pk_table(backend: Backend) -> Iterator[str]:
    with backend.table(PK_COLUMNS) as name:
        yield name


# ----- execute with parameters -----------------------------------------------------------


async def test_execute_with_params_in_driver_paramstyle(backend: Backend, table: str) -> None:
    seed(backend, table, 5)
    q = backend.q
    async with backend.pool(max_size=1) as pool, pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT id, name FROM {table} WHERE id >= {q(0)} AND name <> {q(1)} ORDER BY id",
            (2, "row3"),
        )
        assert await cur.fetchall() == [(2, "row2"), (4, "row4")]
        # a value that would break naive string interpolation goes through as a parameter
        await conn.execute(insert_sql(backend, table), (99, "it's; DROP TABLE x --"))
        cur = await conn.execute(f"SELECT name FROM {table} WHERE id = {q(0)}", (99,))
        assert await cur.fetchall() == [("it's; DROP TABLE x --",)]
        await conn.rollback()


# ----- fetching, buffer refills and exhaustion -------------------------------------------


@pytest.mark.parametrize(
    ("prefetch", "n"), [(0, 0), (0, 4), (3, 0), (3, 2), (3, 3), (3, 4), (3, 10)]
)
async def test_fetchone_until_exhausted(
    backend: Backend, table: str, prefetch: int, n: int
) -> None:
    expected = seed(backend, table, n)
    async with backend.pool(max_size=1, prefetch=prefetch) as pool, pool.connection() as conn:
        cur = await conn.execute(f"SELECT id, name FROM {table} ORDER BY id")
        got = []
        for _ in range(n + 1):
            row = await cur.fetchone()
            if row is None:
                break
            got.append(tuple(row))
        assert got == expected
        # exhausted stays exhausted, whichever fetch asks
        assert await cur.fetchone() is None
        assert await cur.fetchmany(2) == []
        assert await cur.fetchall() == []


@pytest.mark.parametrize(
    ("prefetch", "n", "size"),
    [(3, 10, 4), (3, 3, 3), (3, 6, 3), (3, 2, 5), (0, 10, 4), (0, 3, 3)],
)
async def test_fetchmany_size(
    backend: Backend, table: str, prefetch: int, n: int, size: int
) -> None:
    expected = seed(backend, table, n)
    async with backend.pool(max_size=1, prefetch=prefetch) as pool, pool.connection() as conn:
        cur = await conn.execute(f"SELECT id, name FROM {table} ORDER BY id")
        chunks: list[list[tuple[Any, ...]]] = []
        for _ in range(n + 1):
            chunk = [tuple(row) for row in await cur.fetchmany(size)]
            chunks.append(chunk)
            if not chunk:
                break
        want = [expected[i : i + size] for i in range(0, n, size)] + [[]]
        assert chunks == want
        assert await cur.fetchone() is None


@pytest.mark.parametrize("prefetch", [0, 3])
async def test_fetchmany_honours_arraysize(backend: Backend, table: str, prefetch: int) -> None:
    expected = seed(backend, table, 10)
    select = f"SELECT id, name FROM {table} ORDER BY id"
    async with backend.pool(max_size=1, prefetch=prefetch) as pool, pool.connection() as conn:
        cur = conn.cursor()
        assert cur.arraysize == 1
        cur.arraysize = 4  # set before execute
        await cur.execute(select)
        assert [len(await cur.fetchmany()) for _ in range(4)] == [4, 4, 2, 0]

        await cur.execute(select)
        assert [tuple(r) for r in await cur.fetchmany()] == expected[:4]
        cur.arraysize = 5  # changed mid-result
        assert [tuple(r) for r in await cur.fetchmany()] == expected[4:9]
        assert [tuple(r) for r in await cur.fetchmany()] == expected[9:]
        assert await cur.fetchmany() == []

        with pytest.raises(ValueError):
            cur.arraysize = 0
        assert cur.arraysize == 5


@pytest.mark.parametrize("prefetch", [0, 3])
async def test_mixed_fetches_then_fetchall(backend: Backend, table: str, prefetch: int) -> None:
    expected = seed(backend, table, 10)
    async with backend.pool(max_size=1, prefetch=prefetch) as pool, pool.connection() as conn:
        cur = await conn.execute(f"SELECT id, name FROM {table} ORDER BY id")
        assert await next_row(cur) == expected[0]
        assert [tuple(r) for r in await cur.fetchmany(4)] == expected[1:5]
        assert await next_row(cur) == expected[5]
        assert [tuple(r) for r in await cur.fetchall()] == expected[6:]
        assert await cur.fetchall() == []


class CountingCursor:
    """A raw driver cursor that records each fetch call the pool makes on it."""

    _raw: Any
    _calls: list[str]

    def __init__(self, raw: Any, calls: list[str]) -> None:
        object.__setattr__(self, "_raw", raw)
        object.__setattr__(self, "_calls", calls)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._raw, name)
        if name not in {"fetchone", "fetchmany", "fetchall"}:
            return attr
        calls = self._calls

        def counted(*args: Any) -> Any:
            calls.append(name)
            return attr(*args)

        return counted

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._raw, name, value)


class CountingConnection:
    """A raw driver connection whose cursors are :class:`CountingCursor`."""

    _raw: Any
    _calls: list[str]

    def __init__(self, raw: Any, calls: list[str]) -> None:
        object.__setattr__(self, "_raw", raw)
        object.__setattr__(self, "_calls", calls)

    def cursor(self, *args: Any, **kwargs: Any) -> CountingCursor:
        return CountingCursor(self._raw.cursor(*args, **kwargs), self._calls)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._raw, name, value)


@pytest.mark.parametrize(("prefetch", "n"), [(3, 0), (3, 2), (3, 3), (3, 7), (0, 2)])
async def test_exhausted_result_is_not_fetched_again(
    backend: Backend, table: str, prefetch: int, n: int
) -> None:
    """Once the end of a result was seen, fetches are answered without the driver."""
    expected = seed(backend, table, n)
    calls: list[str] = []
    pool = poolkit.Pool(
        backend.driver,
        connect=lambda: CountingConnection(backend.connect(), calls),
        max_size=1,
        prefetch=prefetch,
        check_idle_after=None,  # no pings: every counted fetch is the test's
    )
    async with pool, pool.connection() as conn:
        for drain in ("fetchone", "fetchmany", "fetchall"):
            before = len(calls)
            cur = await conn.execute(f"SELECT id, name FROM {table} ORDER BY id")
            after_execute = len(calls)
            # the first rows came back in the execute's own trip
            assert after_execute - before == (1 if prefetch else 0), drain
            got: list[tuple[Any, ...]] = []
            for _ in range(n + 2):
                if drain == "fetchone":
                    row = await cur.fetchone()
                    rows = [] if row is None else [row]
                elif drain == "fetchmany":
                    rows = await cur.fetchmany(2)
                else:
                    rows = await cur.fetchall()
                got.extend(tuple(r) for r in rows)
                if not rows:
                    break
            assert got == expected, drain
            drained = len(calls)
            if n < prefetch:  # the execute trip already saw the end of the result
                assert drained == after_execute, drain
            assert await cur.fetchone() is None
            assert await cur.fetchmany(3) == []
            assert await cur.fetchall() == []
            assert [row async for row in cur] == []
            assert len(calls) == drained, drain


@pytest.mark.parametrize("prefetch", [0, 3, 1000])
async def test_async_for(backend: Backend, table: str, prefetch: int) -> None:
    expected = seed(backend, table, 7)
    async with backend.pool(max_size=1, prefetch=prefetch) as pool, pool.connection() as conn:
        cur = await conn.execute(f"SELECT id, name FROM {table} ORDER BY id")
        assert [tuple(row) async for row in cur] == expected
        assert [row async for row in cur] == []


async def test_cursor_reused_for_several_executes(backend: Backend, table: str) -> None:
    q = backend.q
    async with backend.pool(max_size=1, prefetch=3) as pool, pool.connection() as conn:
        cur = conn.cursor()
        await cur.execute(insert_sql(backend, table), (1, "a"))
        assert cur.description is None
        assert cur.rowcount == 1
        await cur.executemany(insert_sql(backend, table), [(i, f"n{i}") for i in range(2, 12)])
        assert cur.rowcount == 10

        await cur.execute(f"SELECT id, name FROM {table} ORDER BY id")
        assert column_names(cur) == ["id", "name"]
        assert await next_row(cur) == (1, "a")
        # a new statement on the same cursor drops what was left of the previous result
        await cur.execute(f"SELECT name FROM {table} WHERE id = {q(0)}", (5,))
        assert column_names(cur) == ["name"]
        assert await cur.fetchall() == [("n5",)]

        await cur.execute(f"UPDATE {table} SET name = {q(0)} WHERE id > {q(1)}", ("z", 9))
        assert cur.description is None
        assert cur.rowcount == 2
        await cur.execute(f"SELECT count(*) FROM {table} WHERE name = {q(0)}", ("z",))
        assert await cur.fetchall() == [(2,)]
        assert cur.connection is conn
        await cur.close()
        assert cur.closed

        async with conn.cursor() as scoped:  # the context manager closes the cursor
            await scoped.execute(f"SELECT count(*) FROM {table}")
            assert await scoped.fetchall() == [(11,)]
        assert scoped.closed
        await conn.rollback()


# ----- description, rowcount, lastrowid, executemany --------------------------------------


async def test_description_and_rowcount(backend: Backend, table: str) -> None:
    q = backend.q
    async with backend.pool(max_size=1) as pool, pool.connection() as conn:
        cur = await conn.execute(insert_sql(backend, table), (1, "a"))
        assert cur.description is None
        assert cur.rowcount == 1

        cur = await conn.executemany(insert_sql(backend, table), [(2, "b"), (3, "c"), (4, "d")])
        assert cur.rowcount == 3

        cur = await conn.execute(f"UPDATE {table} SET name = {q(0)} WHERE id <= {q(1)}", ("x", 2))
        assert cur.description is None
        assert cur.rowcount == 2

        cur = await conn.execute(f"DELETE FROM {table} WHERE id = {q(0)}", (4,))
        assert cur.rowcount == 1
        cur = await conn.execute(f"DELETE FROM {table} WHERE id = {q(0)}", (404,))
        assert cur.rowcount == 0

        cur = await conn.execute(f"SELECT id AS ident, name AS label FROM {table} ORDER BY id")
        assert cur.description is not None
        assert column_names(cur) == ["ident", "label"]
        assert all(len(d) == 7 for d in cur.description)
        assert [tuple(r) for r in await cur.fetchall()] == [(1, "x"), (2, "x"), (3, "c")]
        await conn.commit()
    assert committed(backend, table) == [(1, "x"), (2, "x"), (3, "c")]


async def test_lastrowid(backend: Backend) -> None:
    needs(
        backend,
        "sqlite",
        "mysql",
        reason="psycopg2's lastrowid is the row OID, always 0 on tables without OIDs",
    )
    pk = "INTEGER PRIMARY KEY" + (" AUTO_INCREMENT" if backend.name == "mysql" else "")
    with backend.table(f"id {pk}, name VARCHAR(100)") as table:
        sql = f"INSERT INTO {table} (name) VALUES ({backend.q(0)})"
        async with backend.pool(max_size=1) as pool, pool.connection() as conn:
            first = await conn.execute(sql, ("a",))
            second = await conn.execute(sql, ("b",))
            cur = await conn.execute(f"SELECT id FROM {table} ORDER BY id")
            ids = [row[0] for row in await cur.fetchall()]
            assert len(ids) == 2
            assert [first.lastrowid, second.lastrowid] == ids
            assert first.lastrowid != second.lastrowid
            await conn.rollback()


async def test_executemany_rowcount_matches_plain_driver(backend: Backend, table: str) -> None:
    rows = [(i, f"r{i}") for i in range(5)]
    sql = insert_sql(backend, table)

    def plain(raw: Any) -> int:
        cur = raw.cursor()
        cur.executemany(sql, rows)
        return int(cur.rowcount)

    assert plain_outcome(backend, plain) == ("ok", 5)
    async with backend.pool(max_size=1) as pool, pool.connection() as conn:
        cur = conn.cursor()
        await cur.executemany(sql, rows)
        assert cur.rowcount == 5
        assert cur.description is None
        await conn.commit()
    assert committed(backend, table) == rows


# ----- errors from cursors ---------------------------------------------------------------


async def test_close_then_use_raises_drivers_error(backend: Backend, table: str) -> None:
    seed(backend, table, 5)
    select = f"SELECT id, name FROM {table} ORDER BY id"

    def closed_cursor(raw: Any) -> Any:
        cur = raw.cursor()
        cur.execute(select)
        cur.fetchone()
        cur.close()
        return cur

    expected_execute = plain_error(backend, lambda raw: closed_cursor(raw).execute(select))
    async with backend.pool(max_size=1, prefetch=3) as pool, pool.connection() as conn:
        cur = await conn.execute(select)
        assert await cur.fetchone() is not None
        await cur.close()
        assert cur.closed
        await cur.close()  # closing twice is harmless
        with pytest.raises(backend.driver.Error) as info:
            await cur.execute(select)
        assert_same_error(info.value, expected_execute, backend)

        # PyMySQL keeps serving a closed cursor's buffered rows, so it has no error to pass on
        if backend.name != "mysql":
            fetches: list[tuple[Callable[[Any], object], Callable[[], Any]]] = [
                (lambda c: c.fetchone(), lambda: cur.fetchone()),
                (lambda c: c.fetchmany(2), lambda: cur.fetchmany(2)),
                (lambda c: c.fetchall(), lambda: cur.fetchall()),
            ]
            for plain_fetch, pool_fetch in fetches:
                expected = plain_error(backend, _then(closed_cursor, plain_fetch))
                with pytest.raises(backend.driver.Error) as info:
                    await pool_fetch()
                assert_same_error(info.value, expected, backend)
        # the connection itself is fine
        rows = await (await conn.execute(select)).fetchmany(2)
        assert [tuple(r) for r in rows] == [(0, "row0"), (1, "row1")]


async def test_close_before_first_execute_then_execute_raises(backend: Backend) -> None:
    def fresh_closed(raw: Any) -> None:
        cur = raw.cursor()
        cur.close()
        cur.execute("SELECT 1")

    expected = plain_error(backend, fresh_closed)
    async with backend.pool(max_size=1) as pool, pool.connection() as conn:
        cur = conn.cursor()
        await cur.close()
        with pytest.raises(backend.driver.Error) as info:
            await cur.execute("SELECT 1")
        assert_same_error(info.value, expected, backend)


async def test_closed_cursor_error_does_not_discard_connection(backend: Backend) -> None:
    async with backend.pool(min_size=1, max_size=1) as pool:
        async with pool.connection() as conn:
            first = conn.id
            cur = await conn.execute("SELECT 1")
            await cur.close()
            with pytest.raises(backend.driver.Error):
                await cur.execute("SELECT 1")
            assert await (await conn.execute("SELECT 2")).fetchall() == [(2,)]
        async with pool.connection() as conn:
            assert await (await conn.execute("SELECT 3")).fetchall() == [(3,)]
            assert conn.id == first
        assert pool.stats().disconnects == 0


@pytest.mark.parametrize("where", ["after_insert", "never_executed"])
async def test_fetch_without_result_set_behaves_like_driver(
    backend: Backend, table: str, where: str
) -> None:
    sql = insert_sql(backend, table)

    def prepare(raw: Any) -> Any:
        cur = raw.cursor()
        if where == "after_insert":
            cur.execute(sql, (1, "a"))
        return cur

    def norm(outcome: tuple[Any, ...]) -> tuple[Any, ...]:
        # poolkit returns fetchmany/fetchall results as lists (PyMySQL returns tuples)
        if outcome[0] == "ok" and isinstance(outcome[1], (tuple, list)):
            return ("ok", list(outcome[1]))
        return outcome

    fetches: dict[str, tuple[Callable[[Any], object], Callable[[poolkit.AsyncCursor], Any]]] = {
        "fetchone": (lambda c: c.fetchone(), lambda c: c.fetchone()),
        "fetchmany": (lambda c: c.fetchmany(2), lambda c: c.fetchmany(2)),
        "fetchall": (lambda c: c.fetchall(), lambda c: c.fetchall()),
    }
    async with backend.pool(max_size=1) as pool, pool.connection() as conn:
        for name, (plain_fetch, pool_fetch) in fetches.items():
            expected = norm(plain_outcome(backend, _then(prepare, plain_fetch)))
            cur = conn.cursor()
            if where == "after_insert":
                await cur.execute(sql, (1, "a"))
            try:
                got: tuple[Any, ...] = ("ok", await pool_fetch(cur))
            except Exception as exc:
                got = ("raise", type(exc), exc.args)
            assert norm(got) == expected, name
            if backend.name == "postgres":  # the one driver here that refuses
                assert expected[0] == "raise"
                assert issubclass(expected[1], backend.driver.ProgrammingError)
            await conn.rollback()


# ----- nextset and callproc --------------------------------------------------------------


async def test_nextset_when_there_is_none(backend: Backend, table: str) -> None:
    if backend.name == "sqlite":
        pytest.skip("sqlite3 cursors have no nextset() (PEP 249 makes it optional)")
    seed(backend, table, 4)
    select = f"SELECT id FROM {table} ORDER BY id"
    async with backend.pool(max_size=1, prefetch=3) as pool, pool.connection() as conn:
        cur = await conn.execute(select)
        if backend.name == "postgres":
            expected = plain_error(backend, lambda raw: raw.cursor().nextset())
            assert isinstance(expected, backend.driver.NotSupportedError)
            with pytest.raises(backend.driver.NotSupportedError) as info:
                await cur.nextset()
            assert_same_error(info.value, expected, backend)
        else:
            assert [r[0] for r in await cur.fetchall()] == [0, 1, 2, 3]
            assert not await cur.nextset()
        # the connection is still usable
        assert await (await conn.execute("SELECT 1")).fetchall() == [(1,)]


@pytest.fixture
def mysql_proc(backend: Backend) -> Iterator[str]:
    """A MariaDB procedure returning two result sets: n rows (i, i*i), then one row."""
    needs(backend, "mysql", reason="multiple result sets from a stored procedure are MariaDB's")
    name = f"pk_proc_{uuid.uuid4().hex[:12]}"
    backend.run(
        f"CREATE PROCEDURE {name}(IN n INT, IN tag VARCHAR(20)) BEGIN "
        "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < n) "
        "SELECT i, i * i AS sq FROM g ORDER BY i; "
        "SELECT tag AS label, n AS total; "
        "END"
    )
    try:
        yield name
    finally:
        backend.run(f"DROP PROCEDURE IF EXISTS {name}")


def _plain_result_sets(backend: Backend, call: Callable[[Any], object]) -> list[Any]:
    """Every (description names, rows) the plain driver yields, following nextset()."""
    raw = backend.connect()
    try:
        cur = raw.cursor()
        call(cur)
        sets: list[Any] = []
        for _ in range(10):
            names = [d[0] for d in cur.description] if cur.description else None
            sets.append((names, [tuple(r) for r in cur.fetchall()] if names else None))
            if not cur.nextset():
                break
        raw.rollback()
        return sets
    finally:
        raw.close()


async def _pool_result_sets(cur: poolkit.AsyncCursor) -> list[Any]:
    sets: list[Any] = []
    for _ in range(10):
        names = [d[0] for d in cur.description] if cur.description else None
        sets.append((names, [tuple(r) for r in await cur.fetchall()] if names else None))
        if not await cur.nextset():
            break
    return sets


@pytest.mark.parametrize("prefetch", [0, 3])
async def test_nextset_multiple_result_sets_mysql(
    backend: Backend, mysql_proc: str, prefetch: int
) -> None:
    expected = _plain_result_sets(backend, lambda cur: cur.execute(f"CALL {mysql_proc}(5, 'x')"))
    assert expected[:2] == [
        (["i", "sq"], [(1, 1), (2, 4), (3, 9), (4, 16), (5, 25)]),
        (["label", "total"], [("x", 5)]),
    ]
    async with backend.pool(max_size=1, prefetch=prefetch) as pool, pool.connection() as conn:
        cur = await conn.execute(f"CALL {mysql_proc}(%s, %s)", (5, "x"))
        assert await _pool_result_sets(cur) == expected
        assert not await cur.nextset()

        # nextset skips what is left of the current set, even rows already buffered
        cur = await conn.execute(f"CALL {mysql_proc}(%s, %s)", (6, "y"))
        assert await next_row(cur) == (1, 1)
        assert await cur.nextset()
        assert column_names(cur) == ["label", "total"]
        assert await cur.fetchall() == [("y", 6)]


async def test_callproc_mysql(backend: Backend, mysql_proc: str) -> None:
    params = (4, "t")
    expected = _plain_result_sets(backend, lambda cur: cur.callproc(mysql_proc, params))

    def plain_value(raw: Any) -> object:
        cur = raw.cursor()
        value = cur.callproc(mysql_proc, params)
        cur.close()
        return value

    expected_value = plain_outcome(backend, plain_value)
    async with backend.pool(max_size=1, prefetch=3) as pool, pool.connection() as conn:
        cur = conn.cursor()
        value = await cur.callproc(mysql_proc, params)
        assert ("ok", value) == expected_value
        got = await _pool_result_sets(cur)
        assert got == expected
        assert got[0] == (["i", "sq"], [(1, 1), (2, 4), (3, 9), (4, 16)])


async def test_callproc_postgres(backend: Backend) -> None:
    needs(backend, "postgres", reason="this is the PostgreSQL (function) callproc test")
    name = f"pk_fn_{uuid.uuid4().hex[:12]}"
    backend.run(
        f"CREATE FUNCTION {name}(n integer, k integer) RETURNS TABLE(i integer, v integer) "
        "AS $$ SELECT g, g * k FROM generate_series(1, n) AS g $$ LANGUAGE sql"
    )
    try:
        async with backend.pool(max_size=1, prefetch=3) as pool, pool.connection() as conn:
            cur = conn.cursor()
            value = await cur.callproc(name, (5, 10))
            assert tuple(value) == (5, 10)
            assert column_names(cur) == ["i", "v"]
            assert await cur.fetchall() == [(1, 10), (2, 20), (3, 30), (4, 40), (5, 50)]
            await cur.close()
            # unknown function: the driver's own error, and the connection recovers
            with pytest.raises(backend.driver.ProgrammingError):
                await conn.cursor().callproc(f"{name}_missing", (1,))
            await conn.rollback()
            assert await (await conn.execute("SELECT 1")).fetchall() == [(1,)]
    finally:
        backend.run(f"DROP FUNCTION IF EXISTS {name}(integer, integer)")


# ----- driver exceptions pass through unchanged ------------------------------------------


async def test_unique_violation_is_drivers_integrity_error(backend: Backend, pk_table: str) -> None:
    sql = insert_sql(backend, pk_table)
    backend.run(sql, (1, "a"))
    expected = plain_error(backend, lambda raw: raw.cursor().execute(sql, (1, "dup")))
    assert isinstance(expected, backend.driver.IntegrityError)
    async with backend.pool(max_size=1) as pool, pool.connection() as conn:
        caught: BaseException | None = None
        try:
            await conn.execute(sql, (1, "dup"))
        except backend.driver.IntegrityError as exc:  # the user's natural spelling works
            caught = exc
        assert caught is not None
        assert issubclass(type(caught), backend.driver.IntegrityError)
        assert_same_error(caught, expected, backend)

        # usable again after a rollback (PostgreSQL aborted the transaction)
        await conn.rollback()
        cur = await conn.execute(f"SELECT id, name FROM {pk_table} ORDER BY id")
        assert [tuple(r) for r in await cur.fetchall()] == [(1, "a")]
        await conn.execute(sql, (2, "b"))
        await conn.commit()
    assert committed(backend, pk_table) == [(1, "a"), (2, "b")]


async def test_bad_sql_raises_what_the_driver_raises(backend: Backend) -> None:
    bad = "SELEC 1"
    expected = plain_error(backend, lambda raw: raw.cursor().execute(bad))
    if backend.name == "sqlite":
        assert type(expected) is sqlite3.OperationalError
    elif backend.name == "fake":  # the fake raises sqlite3's classes, as its own
        assert type(expected) is backend.driver.OperationalError
    else:
        assert isinstance(expected, backend.driver.ProgrammingError)
    async with backend.pool(max_size=1) as pool, pool.connection() as conn:
        cur = conn.cursor()
        with pytest.raises(backend.driver.Error) as info:
            await cur.execute(bad)
        assert_same_error(info.value, expected, backend)
        await conn.rollback()
        # the same cursor and the connection both still work
        await cur.execute("SELECT 1")
        assert await cur.fetchall() == [(1,)]


async def test_exception_from_run_passes_through(backend: Backend) -> None:
    class Boom(Exception):
        pass

    boom = Boom("from the worker thread")

    def explode(raw: Any) -> None:
        raise boom

    async with backend.pool(max_size=1) as pool, pool.connection() as conn:
        with pytest.raises(Boom) as info:
            await conn.run(explode)
        assert info.value is boom
        assert await (await conn.execute("SELECT 1")).fetchall() == [(1,)]


# ----- transactions ----------------------------------------------------------------------


async def test_pool_transaction_commits_on_success(backend: Backend, table: str) -> None:
    sql = insert_sql(backend, table)
    async with backend.pool(max_size=2) as pool:
        async with pool.transaction() as conn:
            await conn.execute(sql, (1, "a"))
            await conn.execute(sql, (2, "b"))
            # not committed yet: another pooled connection and a plain one see nothing
            async with pool.connection() as other:
                assert other.id != conn.id
                assert await (await other.execute(f"SELECT id FROM {table}")).fetchall() == []
            assert committed(backend, table) == []
        assert committed(backend, table) == [(1, "a"), (2, "b")]
        async with pool.connection() as other:
            cur = await other.execute(f"SELECT id, name FROM {table} ORDER BY id")
            assert [tuple(r) for r in await cur.fetchall()] == [(1, "a"), (2, "b")]


async def test_pool_transaction_rolls_back_on_exception(backend: Backend, table: str) -> None:
    class Boom(Exception):
        pass

    boom = Boom()
    sql = insert_sql(backend, table)
    async with backend.pool(max_size=2) as pool:
        with pytest.raises(Boom) as info:
            async with pool.transaction() as conn:
                await conn.execute(sql, (1, "a"))
                raise boom
        assert info.value is boom
        assert committed(backend, table) == []
        async with pool.connection() as other:
            assert await (await other.execute(f"SELECT id FROM {table}")).fetchall() == []
        # and the pool is still fine for the next transaction
        async with pool.transaction() as conn:
            await conn.execute(sql, (2, "b"))
        assert committed(backend, table) == [(2, "b")]


async def test_transaction_on_autocommit_connection(backend: Backend, table: str) -> None:
    class Boom(Exception):
        pass

    sql = insert_sql(backend, table)
    async with backend.pool(max_size=1) as pool, pool.connection() as conn:
        await conn.set_autocommit(True)
        with pytest.raises(Boom):
            async with conn.transaction():
                await conn.execute(sql, (1, "a"))
                assert committed(backend, table) == []
                raise Boom
        assert committed(backend, table) == []
        async with conn.transaction():
            await conn.execute(sql, (2, "b"))
        assert committed(backend, table) == [(2, "b")]
        # autocommit is back on after the block: this one is visible at once
        await conn.execute(sql, (3, "c"))
        assert committed(backend, table) == [(2, "b"), (3, "c")]


async def test_commit_and_rollback(backend: Backend, table: str) -> None:
    sql = insert_sql(backend, table)
    async with backend.pool(max_size=1) as pool, pool.connection() as conn:
        await conn.execute(sql, (1, "a"))
        assert committed(backend, table) == []
        await conn.commit()
        assert committed(backend, table) == [(1, "a")]
        await conn.execute(sql, (2, "b"))
        cur = await conn.execute(f"SELECT id FROM {table} ORDER BY id")
        assert [r[0] for r in await cur.fetchall()] == [1, 2]  # own writes are visible
        await conn.rollback()
        cur = await conn.execute(f"SELECT id FROM {table} ORDER BY id")
        assert [r[0] for r in await cur.fetchall()] == [1]
        await conn.commit()
    assert committed(backend, table) == [(1, "a")]


async def test_uncommitted_insert_invisible_to_other_pooled_connection(
    backend: Backend, table: str
) -> None:
    sql = insert_sql(backend, table)
    select = f"SELECT id, name FROM {table} ORDER BY id"
    async with backend.pool(min_size=2, max_size=2) as pool:
        async with pool.connection() as a, pool.connection() as b:
            assert a.id != b.id
            await a.execute(sql, (1, "a"))
            assert [tuple(r) for r in await (await a.execute(select)).fetchall()] == [(1, "a")]
            assert await (await b.execute(select)).fetchall() == []
            await b.rollback()  # end b's snapshot (REPEATABLE READ on MariaDB)
            await a.commit()
            assert [tuple(r) for r in await (await b.execute(select)).fetchall()] == [(1, "a")]


async def test_reset_on_return_discards_uncommitted_work(backend: Backend, table: str) -> None:
    sql = insert_sql(backend, table)
    select = f"SELECT id, name FROM {table} ORDER BY id"
    async with backend.pool(min_size=1, max_size=1) as pool:
        async with pool.connection() as conn:
            first = conn.id
            await conn.execute(sql, (1, "a"))
            assert conn.in_transaction
            assert [tuple(r) for r in await (await conn.execute(select)).fetchall()] == [(1, "a")]
        async with pool.connection() as conn:
            assert conn.id == first  # the very same connection came back
            assert await (await conn.execute(select)).fetchall() == []
        assert committed(backend, table) == []


async def test_set_autocommit_restored_on_return(backend: Backend, table: str) -> None:
    sql = insert_sql(backend, table)
    async with backend.pool(min_size=1, max_size=1) as pool:
        async with pool.connection() as conn:
            first = conn.id
            assert await conn.run(raw_autocommit) is False
            await conn.set_autocommit(True)
            assert await conn.run(raw_autocommit) is True
            await conn.execute(sql, (1, "a"))
            assert committed(backend, table) == [(1, "a")]  # no commit needed
        async with pool.connection() as conn:
            assert conn.id == first
            assert await conn.run(raw_autocommit) is False
            await conn.execute(sql, (2, "b"))
            assert committed(backend, table) == [(1, "a")]
        assert committed(backend, table) == [(1, "a")]


# ----- conn.run --------------------------------------------------------------------------


async def test_run_calls_fn_with_raw_connection(backend: Backend) -> None:
    def probe(raw: Any, a: int, b: int) -> tuple[int, int, list[Any], bool]:
        cur = raw.cursor()
        cur.execute("SELECT 40 + 2")
        rows = [tuple(r) for r in cur.fetchall()]
        cur.close()
        module = type(raw).__module__.split(".")[0].lstrip("_")
        expected = "poolkit" if backend.name == "fake" else backend.driver.__name__.split(".")[0]
        is_driver_conn = module == expected
        return threading.get_ident(), a * b, rows, is_driver_conn

    async with backend.pool(max_size=1) as pool, pool.connection() as conn:
        thread1, product, rows, is_driver_conn = await conn.run(probe, 6, 7)
        assert product == 42
        assert rows == [(42,)]
        assert is_driver_conn
        assert thread1 != threading.get_ident()  # ran on the worker, not the loop thread
        thread2, *_ = await conn.run(probe, 1, 1)
        assert thread2 == thread1  # always the connection's own thread
        assert await conn.run(lambda raw, x: x, "passthrough") == "passthrough"


# ----- type round trips ------------------------------------------------------------------

_DT = datetime(2024, 2, 29, 23, 59, 58, 123456)
_TEXT = "naïve café — 日本語 ✓ 🐍"
_BYTES = b"\x00\x01\xfe\xffbin"

#: (column, SQL type, parameter, expected value) per backend
TYPE_CASES: dict[str, list[tuple[str, str, object, object]]] = {
    "postgres": [
        ("c_int", "INTEGER", 42, 42),
        ("c_big", "BIGINT", 2**62 + 1, 2**62 + 1),
        ("c_dec", "NUMERIC(14, 4)", Decimal("-12345.6789"), Decimal("-12345.6789")),
        ("c_float", "DOUBLE PRECISION", 0.1 + 0.2, 0.1 + 0.2),
        ("c_text", "TEXT", _TEXT, _TEXT),
        ("c_bytes", "BYTEA", _BYTES, _BYTES),  # comes back as memoryview
        ("c_date", "DATE", _DT.date(), _DT.date()),
        ("c_ts", "TIMESTAMP", _DT, _DT),
        ("c_null", "TEXT", None, None),
    ],
    "mysql": [
        ("c_int", "INTEGER", 42, 42),
        ("c_big", "BIGINT", 2**62 + 1, 2**62 + 1),
        ("c_dec", "DECIMAL(14, 4)", Decimal("-12345.6789"), Decimal("-12345.6789")),
        ("c_float", "DOUBLE", 3.14159, 3.14159),
        ("c_text", "VARCHAR(100) CHARACTER SET utf8mb4", _TEXT, _TEXT),
        ("c_bytes", "BLOB", _BYTES, _BYTES),
        ("c_date", "DATE", _DT.date(), _DT.date()),
        ("c_ts", "DATETIME(6)", _DT, _DT),
        ("c_null", "VARCHAR(10)", None, None),
    ],
    # sqlite3 has no decimal or date storage classes, and its default date adapters are
    # deprecated (3.12): the plain driver round-trips such values as text, so do we.
    "sqlite": [
        ("c_int", "INTEGER", 42, 42),
        ("c_big", "INTEGER", 2**62 + 1, 2**62 + 1),
        ("c_dec", "TEXT", "-12345.6789", "-12345.6789"),
        ("c_float", "REAL", 0.1 + 0.2, 0.1 + 0.2),
        ("c_text", "TEXT", _TEXT, _TEXT),
        ("c_bytes", "BLOB", _BYTES, _BYTES),
        ("c_date", "TEXT", _DT.date().isoformat(), _DT.date().isoformat()),
        ("c_ts", "TEXT", _DT.isoformat(" "), _DT.isoformat(" ")),
        ("c_null", "TEXT", None, None),
    ],
}
TYPE_CASES["fake"] = TYPE_CASES["sqlite"]


async def test_type_round_trips(backend: Backend) -> None:
    cases = TYPE_CASES[backend.name]
    columns = ", ".join(f"{col} {sqltype}" for col, sqltype, _, _ in cases)
    names = ", ".join(col for col, *_ in cases)
    params = tuple(p for _, _, p, _ in cases)
    with backend.table(f"k INTEGER, {columns}") as table:
        marks = ", ".join(backend.q(i) for i in range(len(cases) + 1))
        insert = f"INSERT INTO {table} (k, {names}) VALUES ({marks})"
        select = f"SELECT {names} FROM {table} WHERE k = {backend.q(0)}"
        backend.run(insert, (2, *params))  # written by the plain driver
        plain = backend.run(select, (2,))
        async with backend.pool(max_size=1) as pool, pool.connection() as conn:
            await conn.execute(insert, (1, *params))
            await conn.commit()
            mine = await (await conn.execute(select, (1,))).fetchall()
            theirs = await (await conn.execute(select, (2,))).fetchall()
        assert committed_count(backend, table) == 2
    assert len(mine) == len(theirs) == len(plain) == 1
    for i, (col, _, _, expected) in enumerate(cases):
        got = mine[0][i]
        assert unview(got) == expected, col
        assert unview(theirs[0][i]) == expected, col
        assert type(got) is type(plain[0][i]), col  # what the plain driver returns
        if expected is not None and not isinstance(expected, bytes):
            assert type(got) is type(expected), col


def unview(value: object) -> object:
    """psycopg2 returns bytea as memoryview; compare its bytes."""
    return bytes(value) if isinstance(value, memoryview) else value


def committed_count(backend: Backend, table: str) -> int:
    return int(backend.run(f"SELECT count(*) FROM {table}")[0][0])


# ----- use after return ------------------------------------------------------------------


async def test_use_after_return_raises_connection_returned(backend: Backend, table: str) -> None:
    sql = insert_sql(backend, table)
    async with backend.pool(min_size=1, max_size=1) as pool:
        async with pool.connection() as conn:
            assert not conn.closed
            cur = await conn.execute(sql, (1, "a"))  # no result set
            idle = conn.cursor()
        assert conn.closed

        attempts: list[tuple[str, Callable[[], Any]]] = [
            ("conn.execute", lambda: conn.execute("SELECT 1")),
            ("conn.executemany", lambda: conn.executemany(sql, [(2, "b")])),
            ("conn.commit", lambda: conn.commit()),
            ("conn.rollback", lambda: conn.rollback()),
            ("conn.run", lambda: conn.run(lambda raw: None)),
            ("conn.set_autocommit", lambda: conn.set_autocommit(True)),
            ("conn.cursor().execute", lambda: conn.cursor().execute("SELECT 1")),
            ("cur.execute", lambda: cur.execute("SELECT 1")),
            ("cur.fetchone", lambda: cur.fetchone()),
            ("cur.fetchall", lambda: cur.fetchall()),
            ("idle.execute", lambda: idle.execute("SELECT 1")),
        ]
        for what, attempt in attempts:
            try:
                await attempt()
            except poolkit.ConnectionReturned:
                continue
            pytest.fail(f"{what} after the block did not raise ConnectionReturned")

        # nothing leaked into the next checkout: the insert was rolled back, same conn
        async with pool.connection() as again:
            assert again.id == conn.id
            assert await (await again.execute(f"SELECT id FROM {table}")).fetchall() == []
            assert await again.run(raw_autocommit) is False


async def test_buffered_rows_after_return_raise_connection_returned(backend: Backend) -> None:
    async with backend.pool(max_size=1) as pool:
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT 1")
        with pytest.raises(poolkit.ConnectionReturned):
            await cur.fetchone()
