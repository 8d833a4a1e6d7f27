"""PEP 249 behaviour through the pool: what a driver promises must survive the pool.

Where drivers differ (the Python type a SQL type comes back as, ``rowcount`` after a SELECT or
an ``executemany``, the class of a bad statement's error, what a transaction reads), the check
expects what the target's declaration in :mod:`poolkit.conformance._types` says: a pool hands
the driver's behaviour over, whatever it is. A declaration that stops being true fails too.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from poolkit.conformance._targets import Target
from poolkit.conformance._types import Declaration, declaration_for
from poolkit.conformance.suite._support import not_supported, rows

pytestmark = pytest.mark.anyio

#: No step of these checks takes more than a fraction of a second: a hang fails at this bound
#: (below the per-test timeout, and above sqlite3's 10 s wait for a lock).
BOUND = 20.0


def _declared(target: Target) -> Declaration:
    try:
        return declaration_for(target.backend, target.driver)
    except KeyError as exc:
        pytest.fail(str(exc.args[0]), pytrace=False)


def _people(target: Target) -> str:
    return f"id {target.dialect.int_pk}, name {target.dialect.text}"


def _insert(target: Target, table: str) -> str:
    return f"INSERT INTO {table} (id, name) VALUES ({target.q(0)}, {target.q(1)})"


async def _count(conn: Any, table: str) -> int:
    return int((await rows(await conn.execute(f"SELECT count(*) FROM {table}")))[0][0])


async def test_select_one_round_trip(target: Target, adapter: Any) -> None:
    """A pooled connection runs a statement and returns its row."""
    async with adapter.pool(target, min_size=1, max_size=2) as pool:
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT 41")
            assert [tuple(r) for r in await cur.fetchall()] == [(41,)]


async def test_commit_is_seen_by_another_connection(target: Target, adapter: Any) -> None:
    """A committed row is visible from a second pooled connection."""
    with target.table(f"id {target.dialect.int_pk}, name {target.dialect.text}") as table:
        async with adapter.pool(target, min_size=0, max_size=2) as pool:
            async with pool.connection() as a:
                await a.execute(
                    f"INSERT INTO {table} (id, name) VALUES ({target.q(0)}, {target.q(1)})",
                    (1, "committed"),
                )
                await a.commit()
                async with pool.connection() as b:
                    cur = await b.execute(f"SELECT name FROM {table} WHERE id = 1")
                    assert [tuple(r) for r in await cur.fetchall()] == [("committed",)]
                    await b.rollback()


@pytest.mark.requires("rollback_on_return")
async def test_reset_on_return_rolls_back(target: Target, adapter: Any) -> None:
    """A row inserted without commit is gone once its connection is back in the pool."""
    with target.table(f"id {target.dialect.int_pk}, name {target.dialect.text}") as table:
        async with adapter.pool(target, min_size=1, max_size=1) as pool:
            async with pool.connection() as conn:
                await conn.execute(
                    f"INSERT INTO {table} (id, name) VALUES ({target.q(0)}, {target.q(1)})",
                    (1, "uncommitted"),
                )
            async with pool.connection() as conn:
                cur = await conn.execute(f"SELECT count(*) FROM {table}")
                assert [tuple(r) for r in await cur.fetchall()] == [(0,)]
                await conn.rollback()
        assert target.run(f"SELECT count(*) FROM {table}") == [(0,)]


# ----- types -----------------------------------------------------------------------------


async def _round_trip(target: Target, adapter: Any, logical: str) -> None:
    """Insert the declared value as a parameter, commit, read it back on the next checkout."""
    case = _declared(target).types[logical]
    refused: BaseException | None = None
    got: list[tuple[Any, ...]] = []
    with target.table(f"k INTEGER, v {case.sql}") as table:
        insert = f"INSERT INTO {table} (k, v) VALUES ({target.q(0)}, {target.q(1)})"
        select = f"SELECT v FROM {table} WHERE k = {target.q(0)}"
        with anyio.fail_after(BOUND):
            async with adapter.pool(target, min_size=1, max_size=1) as pool:
                try:
                    async with pool.connection() as conn:
                        await conn.execute(insert, (1, case.send))
                        await conn.commit()
                    async with pool.connection() as conn:
                        got = await rows(await conn.execute(select, (1,)))
                        await conn.rollback()
                except target.module.Error as exc:
                    if not case.not_supported:
                        raise
                    refused = exc
        plain = [] if case.not_supported else target.run(select, (1,))
    if case.not_supported:
        if refused is None and got == [(case.send,)] and type(got[0][0]) is type(case.send):
            pytest.fail(
                f"{logical} is declared not supported on {target.id} ({case.not_supported}) "
                "but made the trip: update poolkit.conformance._types",
                pytrace=False,
            )
        not_supported(f"{logical} as {case.sql}: {case.not_supported}")
    why = f"{logical} as {case.sql}" + (f" ({case.note})" if case.note else "")
    assert got == [(case.back,)], why
    assert type(got[0][0]) is type(case.back), why
    # the pool hands over the driver's own value: what a plain connection reads
    assert plain == got, f"{why}: the plain driver read {plain!r}"
    assert type(plain[0][0]) is type(got[0][0]), f"{why}: the plain driver read {plain!r}"


async def test_round_trip_int(target: Target, adapter: Any) -> None:
    """An int parameter comes back as the declared value."""
    await _round_trip(target, adapter, "int")


async def test_round_trip_bigint(target: Target, adapter: Any) -> None:
    """A 63-bit int parameter comes back whole."""
    await _round_trip(target, adapter, "bigint")


async def test_round_trip_decimal(target: Target, adapter: Any) -> None:
    """A Decimal (or, where there is no decimal storage, its text) comes back exactly."""
    await _round_trip(target, adapter, "decimal")


async def test_round_trip_float(target: Target, adapter: Any) -> None:
    """A float that is not a short decimal (0.1 + 0.2) comes back bit for bit."""
    await _round_trip(target, adapter, "float")


async def test_round_trip_text(target: Target, adapter: Any) -> None:
    """Non-ASCII text (up to four-byte UTF-8) comes back unchanged."""
    await _round_trip(target, adapter, "text")


async def test_round_trip_bytes(target: Target, adapter: Any) -> None:
    """Bytes with NUL and non-UTF-8 bytes come back unchanged."""
    await _round_trip(target, adapter, "bytes")


async def test_round_trip_date(target: Target, adapter: Any) -> None:
    """A date comes back as the declared value."""
    await _round_trip(target, adapter, "date")


async def test_round_trip_time(target: Target, adapter: Any) -> None:
    """A time with microseconds comes back as the declared value."""
    await _round_trip(target, adapter, "time")


async def test_round_trip_datetime(target: Target, adapter: Any) -> None:
    """A naive datetime with microseconds comes back as the declared value."""
    await _round_trip(target, adapter, "datetime")


async def test_round_trip_datetime_tz(target: Target, adapter: Any) -> None:
    """A datetime with a UTC offset comes back as the declared value."""
    await _round_trip(target, adapter, "datetime_tz")


async def test_round_trip_null(target: Target, adapter: Any) -> None:
    """None goes in as NULL and comes back as None."""
    await _round_trip(target, adapter, "null")


# ----- cursors ---------------------------------------------------------------------------


def _plain_description(target: Target, sql: str) -> list[tuple[Any, ...]]:
    raw = target.connect()
    try:
        cur = raw.cursor()
        cur.execute(sql)
        described = [tuple(column) for column in cur.description]
        cur.fetchall()
        raw.rollback()
        return described
    finally:
        raw.close()


async def test_description(target: Target, adapter: Any) -> None:
    """description is None after an INSERT; after a SELECT, one 7-item sequence per column,
    named as selected, equal to what the plain driver describes."""
    with target.table(_people(target)) as table:
        target.run(_insert(target, table), (1, "a"))
        select = f"SELECT id, name AS label FROM {table} ORDER BY id"
        plain = _plain_description(target, select)
        with anyio.fail_after(BOUND):
            async with adapter.pool(target, min_size=1, max_size=1) as pool:
                async with pool.connection() as conn:
                    cur = await conn.execute(_insert(target, table), (2, "b"))
                    after_insert = cur.description
                    cur = await conn.execute(select)
                    described = [tuple(column) for column in cur.description or ()]
                    assert await rows(cur) == [(1, "a"), (2, "b")]
                    await conn.rollback()
    assert after_insert is None
    assert [column[0] for column in described] == ["id", "label"]
    assert [len(column) for column in described] == [7, 7]
    assert described == plain


async def test_rowcount(target: Target, adapter: Any) -> None:
    """rowcount after INSERT, UPDATE, DELETE (and SELECT) is what the driver declares."""
    declared = _declared(target)
    counts: dict[str, int] = {}
    with target.table(_people(target)) as table:
        statements = {
            "insert": f"INSERT INTO {table} (id, name) VALUES (1, 'a')",
            "insert 2 rows": f"INSERT INTO {table} (id, name) VALUES (2, 'b'), (3, 'c')",
            "update 2 rows": f"UPDATE {table} SET name = 'z' WHERE id IN (1, 2)",
            "update 3 rows, 1 changes": f"UPDATE {table} SET name = 'z' WHERE id IN (1, 2, 3)",
            "select 3 rows": f"SELECT id, name FROM {table}",
            "delete 1 row": f"DELETE FROM {table} WHERE id = 3",
            "delete no row": f"DELETE FROM {table} WHERE id = 300",
        }
        with anyio.fail_after(BOUND):
            async with adapter.pool(target, min_size=1, max_size=1) as pool:
                async with pool.connection() as conn:
                    for what, sql in statements.items():
                        cur = await conn.execute(sql)
                        counts[what] = cur.rowcount
                        if cur.description is not None:
                            await rows(cur)
                    await conn.commit()
        stored = target.run(f"SELECT id, name FROM {table} ORDER BY id")
    assert stored == [(1, "z"), (2, "z")]
    assert counts == {
        "insert": 1,
        "insert 2 rows": 2,
        "update 2 rows": 2,
        "update 3 rows, 1 changes": 3 if declared.update_counts == "matched" else 1,
        "select 3 rows": 3 if declared.counts_selected_rows else -1,
        "delete 1 row": 1,
        "delete no row": 0,
    }


@pytest.mark.requires("pep249_cursor")
async def test_executemany(target: Target, adapter: Any) -> None:
    """executemany runs once per parameter set; rowcount is the total where the driver
    counts (pyodbc says -1)."""
    declared = _declared(target)
    with target.table(_people(target)) as table:
        update = f"UPDATE {table} SET name = {target.q(0)} WHERE id = {target.q(1)}"
        with anyio.fail_after(BOUND):
            async with adapter.pool(target, min_size=1, max_size=1) as pool:
                async with pool.connection() as conn:
                    async with conn.cursor() as cur:
                        await cur.executemany(
                            _insert(target, table), [(1, "a"), (2, "b"), (3, "c")]
                        )
                        inserted = cur.rowcount
                        await cur.executemany(update, [("x", 1), ("y", 2)])
                        updated = cur.rowcount
                    await conn.commit()
        stored = target.run(f"SELECT id, name FROM {table} ORDER BY id")
    assert stored == [(1, "x"), (2, "y"), (3, "c")]
    assert (inserted, updated) == ((3, 2) if declared.executemany_counts_rows else (-1, -1))


@pytest.mark.requires("pep249_cursor")
async def test_fetchmany_honours_size_and_arraysize(target: Target, adapter: Any) -> None:
    """fetchmany() takes arraysize rows (1 by default), fetchmany(n) takes n, both stop at
    the end; an arraysize set before execute holds from the first fetch."""
    with target.table(_people(target)) as table:
        target.run(
            f"INSERT INTO {table} (id, name) "
            "VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd'), (5, 'e')"
        )
        select = f"SELECT id FROM {table} ORDER BY id"
        with anyio.fail_after(BOUND):
            async with adapter.pool(target, min_size=1, max_size=1) as pool:
                async with pool.connection() as conn:
                    async with conn.cursor() as cur:
                        default_size = cur.arraysize
                        await cur.execute(select)
                        batches = [await cur.fetchmany()]
                        cur.arraysize = 2
                        batches.append(await cur.fetchmany())
                        batches.append(await cur.fetchmany(1))
                        batches.append(await cur.fetchmany(10))
                        batches.append(await cur.fetchmany())
                        past_end = await cur.fetchone()
                        cur.arraysize = 3
                        await cur.execute(select)
                        again = [await cur.fetchmany(), await cur.fetchmany()]
                    await conn.rollback()
    assert default_size == 1
    assert [[tuple(r) for r in batch] for batch in batches] == [
        [(1,)],
        [(2,), (3,)],
        [(4,)],
        [(5,)],
        [],
    ]
    assert past_end is None
    assert [[tuple(r) for r in batch] for batch in again] == [[(1,), (2,), (3,)], [(4,), (5,)]]


# ----- transactions ----------------------------------------------------------------------


async def test_commit_persists(target: Target, adapter: Any) -> None:
    """A commit is durable at once (a plain connection sees the row while the pooled one is
    still checked out) and after the pool has closed."""
    with target.table(_people(target)) as table:
        select = f"SELECT id, name FROM {table}"
        with anyio.fail_after(BOUND):
            async with adapter.pool(target, min_size=1, max_size=1) as pool:
                async with pool.connection() as conn:
                    await conn.execute(_insert(target, table), (1, "kept"))
                    await conn.commit()
                    during = target.run(select)
        after = target.run(select)
    assert during == [(1, "kept")]
    assert after == [(1, "kept")]


async def test_rollback_discards(target: Target, adapter: Any) -> None:
    """A rolled-back row is gone, and the next transaction on the connection commits alone."""
    with target.table(_people(target)) as table:
        with anyio.fail_after(BOUND):
            async with adapter.pool(target, min_size=1, max_size=1) as pool:
                async with pool.connection() as conn:
                    await conn.execute(_insert(target, table), (1, "discarded"))
                    await conn.rollback()
                    seen = await _count(conn, table)
                    await conn.execute(_insert(target, table), (2, "kept"))
                    await conn.commit()
        stored = target.run(f"SELECT id, name FROM {table}")
    assert seen == 0
    assert stored == [(2, "kept")]


async def test_isolation_between_pooled_connections(target: Target, adapter: Any) -> None:
    """Another pooled connection does not see an uncommitted row; once committed, it sees it
    in its next transaction (and in its current one only under READ COMMITTED, as declared)."""
    declared = _declared(target)
    if declared.readers_wait_for_writers:
        not_supported("a reader waits for the writer's uncommitted row (locking READ COMMITTED)")
    with target.table(_people(target)) as table:
        with anyio.fail_after(BOUND):
            async with adapter.pool(target, min_size=0, max_size=2) as pool:
                async with pool.connection() as a, pool.connection() as b:
                    await a.execute(_insert(target, table), (1, "pending"))
                    before = await _count(b, table)
                    await a.commit()
                    reread = await _count(b, table)
                    await b.rollback()
                    after = await _count(b, table)
                    await b.rollback()
    assert before == 0, "another connection saw an uncommitted row"
    assert reread == (1 if declared.reread_sees_commits else 0), (
        "a transaction's second read saw a commit made since its first"
        if not declared.reread_sees_commits
        else "a second read did not see a row committed meanwhile (declared READ COMMITTED)"
    )
    assert after == 1, "a new transaction did not see a committed row"


# ----- errors ----------------------------------------------------------------------------


async def test_unique_violation_raises_integrity_error(target: Target, adapter: Any) -> None:
    """A duplicate key raises the driver's IntegrityError; after a rollback the connection
    works, in the block and after the error has left the block."""
    declared = _declared(target)
    with target.table(_people(target)) as table:
        insert = _insert(target, table)
        target.run(insert, (1, "first"))
        with anyio.fail_after(BOUND):
            async with adapter.pool(target, min_size=1, max_size=1) as pool:
                async with pool.connection() as conn:
                    with pytest.raises(target.module.Error) as caught:
                        await conn.execute(insert, (1, "again"))
                    if declared.error_aborts_transaction:
                        with pytest.raises(target.module.InternalError):
                            await conn.execute("SELECT 1")
                    else:
                        assert await rows(await conn.execute("SELECT 1")) == [(1,)]
                    await conn.rollback()
                    kept = await rows(await conn.execute(f"SELECT id, name FROM {table}"))
                    await conn.rollback()
                with pytest.raises(target.module.IntegrityError):
                    async with pool.connection() as conn:
                        await conn.execute(insert, (1, "again"))
                async with pool.connection() as conn:
                    after = await rows(await conn.execute("SELECT 1"))
                    await conn.rollback()
    error = caught.value
    assert isinstance(error, target.module.IntegrityError), (
        f"{type(error).__module__}.{type(error).__qualname__} is not the driver's IntegrityError"
    )
    assert kept == [(1, "first")]
    assert after == [(1,)]


async def test_bad_sql_raises_the_declared_error(target: Target, adapter: Any) -> None:
    """A syntax error, an unknown table and an unknown column raise the declared PEP 249
    class (ProgrammingError, except where declared); the connection works after a rollback."""
    declared = _declared(target)
    raised: dict[str, BaseException] = {}
    usable: dict[str, list[tuple[Any, ...]]] = {}
    with target.table(_people(target)) as table:
        bad = {
            "syntax error": ("SELEC 1", declared.syntax_error),
            "unknown table": ("SELECT id FROM pkc_no_such_table", declared.unknown_table_error),
            "unknown column": (f"SELECT nope FROM {table}", declared.unknown_column_error),
        }
        with anyio.fail_after(BOUND):
            async with adapter.pool(target, min_size=1, max_size=1) as pool:
                async with pool.connection() as conn:
                    for what, (sql, _) in bad.items():
                        with pytest.raises(target.module.Error) as caught:
                            await conn.execute(sql)
                        raised[what] = caught.value
                        await conn.rollback()
                        usable[what] = await rows(await conn.execute("SELECT 1"))
                        await conn.rollback()
    for what, (_, name) in bad.items():
        error = raised[what]
        assert isinstance(error, getattr(target.module, name)), (
            f"{what}: {type(error).__module__}.{type(error).__qualname__} is not the "
            f"driver's {name}"
        )
        assert usable[what] == [(1,)], f"the connection is not usable after a {what}"


# ----- parameters ------------------------------------------------------------------------

#: A string literal holding what looks like a marker in each paramstyle, and its value.
_MARKER_LITERAL = {
    "qmark": ("'?'", "?"),
    "format": ("'%%'", "%"),
    "pyformat": ("'%%'", "%"),
    "named": ("':x'", ":x"),
    "numeric": ("':1'", ":1"),
}


async def test_paramstyle_is_honoured(target: Target, adapter: Any) -> None:
    """Statements written with the driver's own markers (positional, and named with a dict
    where the style has names) bind in order; a marker inside a string literal is text."""
    style = target.paramstyle
    assert target.module.paramstyle == style
    literal, literal_value = _MARKER_LITERAL[style]
    named: list[tuple[Any, ...]] | None = None
    with target.table(_people(target)) as table:
        with anyio.fail_after(BOUND):
            async with adapter.pool(target, min_size=1, max_size=1) as pool:
                async with pool.connection() as conn:
                    await conn.execute(_insert(target, table), (1, "one"))
                    positional = await rows(
                        await conn.execute(
                            f"SELECT {literal}, name FROM {table} "
                            f"WHERE id = {target.q(0)} AND name = {target.q(1)}",
                            (1, "one"),
                        )
                    )
                    if style in ("pyformat", "named"):
                        named = await rows(
                            await conn.execute(
                                f"SELECT name FROM {table} WHERE id = "
                                f"{target.q(0, 'key')} AND name = {target.q(1, 'label')}",
                                {"label": "one", "key": 1},
                            )
                        )
                    await conn.commit()
        stored = target.run(f"SELECT id, name FROM {table}")
    assert positional == [(literal_value, "one")]
    if style in ("pyformat", "named"):
        assert named == [("one",)]
    assert stored == [(1, "one")]
