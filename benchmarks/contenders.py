"""The contenders: each opens for N connections and gives back "run one query".

A :class:`Contender` declares its backend, the event loops it runs on and its kind (``poolkit``,
``native`` async, thread ``baseline``, or ``limit``: the driver with no pool and no loop), and
has a factory: ``open(server, n)``, an async context manager yielding a :class:`Session`
(``query(sql)`` = acquire, run, fetch all, release; plus ``acquire``/``run`` for the contention
workload) — or, for the limits, ``open_threads(server, n)`` yielding one blocking query function
per thread. Everything the factory does happens before the timed region. Every contender runs
in autocommit; every pool has ``min_size = max_size = n``. The pools' opener factories also
build them with the library's defaults (``autocommit=False``: the driver's own transaction mode;
``min_size``), as the restart workload (:mod:`.restart`) does.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import poolkit
from poolkit._optional import unavailable

from .dsn import Server, TargetError
from .measure import SyncQuery

QueryFn = Callable[[str], Awaitable[object]]

# Names the report refers to.
POOLKIT_PG = "poolkit+psycopg2"
POOLKIT_MY = "poolkit+PyMySQL"
ASYNCPG = "asyncpg Pool (no-op reset)"
ASYNCPG_RESET = "asyncpg Pool (default reset)"
PSYCOPG3 = "psycopg_pool (psycopg 3)"
REFERENCE = {"postgres": POOLKIT_PG, "mysql": POOLKIT_MY}

#: True when poolkit has the one-trip ``conn.fetchall(sql)``; the cursor path otherwise.
ONE_TRIP = hasattr(poolkit.AsyncConnection, "fetchall")
POOLKIT_CALL = (
    "await conn.fetchall(sql)" if ONE_TRIP else "cur = await conn.execute(sql); cur.fetchall()"
)


async def poolkit_run(conn: Any, sql: str) -> object:
    """The one per-query call every poolkit contender makes on a checked-out connection."""
    if ONE_TRIP:
        return await conn.fetchall(sql)
    cur = await conn.execute(sql)
    return await cur.fetchall()


async def poolkit_query(pool: poolkit.Pool, sql: str) -> object:
    """Acquire, query, release: the poolkit side of every query workload."""
    async with pool.connection() as conn:
        return await poolkit_run(conn, sql)


@dataclass(frozen=True)
class Session:
    """An opened contender: ``query(sql)``, and for pools ``acquire()`` + ``run(conn, sql)``
    and the pool object itself (for what only it does: ``await pool.close()``)."""

    query: QueryFn
    acquire: Callable[[], contextlib.AbstractAsyncContextManager[Any]] | None = None
    run: Callable[[Any, str], Awaitable[object]] | None = None
    pool: Any = None


Opener = Callable[[Server, int], contextlib.AbstractAsyncContextManager[Session]]
ThreadsOpener = Callable[[Server, int], contextlib.AbstractContextManager[list[SyncQuery]]]


@dataclass(frozen=True)
class Contender:
    name: str
    backend: str
    kind: str  # "poolkit" | "native" | "baseline" | "limit"
    loops: tuple[str, ...]
    needs: tuple[str, ...]
    open: Opener | None = None
    open_threads: ThreadsOpener | None = None
    #: the only concurrencies it runs at (empty: all)
    only_n: tuple[int, ...] = ()
    #: a PEP 249 driver whose connect arguments (and ODBC driver) must be resolvable
    dbapi: str = ""

    @property
    def pooled(self) -> bool:
        return self.open is not None and self.kind in ("poolkit", "native")

    def unavailable(self, server: Server) -> str | None:
        """Why it cannot run here (a missing module or ODBC driver), or None."""
        reason = missing(self.needs)
        if reason is None and self.dbapi:
            try:
                server.dbapi(self.dbapi)
            except TargetError as exc:
                reason = str(exc)
        return reason


def missing(modules: tuple[str, ...]) -> str | None:
    """Why one of ``modules`` cannot be imported, or None."""
    for module in modules:
        why = unavailable(module)
        if why is not None:
            return why
    return None


# ----- PEP 249 connections, in autocommit ---------------------------------------------------


def _connect_kwargs(driver: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    # psycopg2 has no autocommit connect argument: it is set on the connection instead
    return kwargs if driver == "psycopg2" else {**kwargs, "autocommit": True}


def _autocommit(raw: Any) -> None:
    raw.autocommit = True


def _dbapi_connect(server: Server, driver: str) -> Any:
    module, args, kwargs = server.dbapi(driver)
    raw = module.connect(*args, **_connect_kwargs(driver, kwargs))
    if driver == "psycopg2":
        _autocommit(raw)
    return raw


def _fetch(cursor: Any, sql: str) -> object:
    cursor.execute(sql)
    return cursor.fetchall()


@contextlib.contextmanager
def _dbapi_cursors(server: Server, driver: str, n: int) -> Iterator[list[Any]]:
    """``n`` connections, one cursor each (kept for the run, as a tight loop would)."""
    conns: list[Any] = []
    try:
        for _ in range(n):
            conns.append(_dbapi_connect(server, driver))
        yield [raw.cursor() for raw in conns]
    finally:
        for raw in conns:
            raw.close()


# ----- poolkit -------------------------------------------------------------------------------


def poolkit_opener(
    driver: str,
    threads: Literal["auto", "dedicated", "shared"] = "auto",
    *,
    autocommit: bool = True,
    min_size: int | None = None,
) -> Opener:
    """``poolkit.Pool(driver, ...)`` of ``max_size = n`` and ``min_size`` (None: n); with
    ``autocommit=False`` the driver's own transaction mode, as ``Pool(driver, dsn)`` gives."""

    @contextlib.asynccontextmanager
    async def open_(server: Server, n: int) -> AsyncIterator[Session]:
        module, args, kwargs = server.dbapi(driver)
        on = autocommit and driver == "psycopg2"
        pool = poolkit.Pool(
            module,
            *args,
            connect_kwargs=_connect_kwargs(driver, kwargs) if autocommit else kwargs,
            min_size=n if min_size is None else min_size,
            max_size=n,
            configure=_autocommit if on else None,
            threads=threads,
        )
        async with pool:
            query = functools.partial(poolkit_query, pool)
            yield Session(query, pool.connection, poolkit_run, pool)

    return open_


# ----- thread baselines and the limits -------------------------------------------------------


@contextlib.contextmanager
def _executor_hop(n: int) -> Iterator[Callable[[Any, str], Awaitable[object]]]:
    """``loop.run_in_executor`` on an executor of its own with ``n`` workers."""
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=n) as executor:
        yield lambda cur, sql: loop.run_in_executor(executor, _fetch, cur, sql)


@contextlib.contextmanager
def _trio_hop(n: int) -> Iterator[Callable[[Any, str], Awaitable[object]]]:
    """``trio.to_thread.run_sync`` with a ``CapacityLimiter`` of ``n``."""
    import trio

    limiter = trio.CapacityLimiter(n)
    yield lambda cur, sql: trio.to_thread.run_sync(_fetch, cur, sql, limiter=limiter)


Hop = Callable[[int], contextlib.AbstractContextManager[Callable[[Any, str], Awaitable[object]]]]


def _hop_opener(driver: str, hop: Hop) -> Opener:
    """Driver connections in a free list; each query hops to a thread and back."""

    @contextlib.asynccontextmanager
    async def open_(server: Server, n: int) -> AsyncIterator[Session]:
        # n tasks share n cursors, so the list is never empty when a task takes one
        with _dbapi_cursors(server, driver, n) as free, hop(n) as to_thread:

            async def query(sql: str) -> object:
                cur = free.pop()
                try:
                    return await to_thread(cur, sql)
                finally:
                    free.append(cur)

            yield Session(query)

    return open_


def _threads_opener(driver: str) -> ThreadsOpener:
    @contextlib.contextmanager
    def open_(server: Server, n: int) -> Iterator[list[SyncQuery]]:
        with _dbapi_cursors(server, driver, n) as cursors:
            yield [functools.partial(_fetch, cur) for cur in cursors]

    return open_


# ----- native async pools --------------------------------------------------------------------


async def no_reset(conn: Any) -> None:
    return None


def asyncpg_opener(reset: bool, *, min_size: int | None = None) -> Opener:
    """``asyncpg.create_pool(url, ...)`` of ``max_size = n`` and ``min_size`` (None: n); its
    default reset on every release, or a no-op one."""

    @contextlib.asynccontextmanager
    async def open_(server: Server, n: int) -> AsyncIterator[Session]:
        import asyncpg

        options: dict[str, Any] = {} if reset else {"reset": no_reset}
        size = n if min_size is None else min_size
        async with asyncpg.create_pool(server.url(), min_size=size, max_size=n, **options) as pool:

            async def run(conn: Any, sql: str) -> object:
                return await conn.fetch(sql)

            async def query(sql: str) -> object:
                async with pool.acquire() as conn:
                    return await conn.fetch(sql)

            yield Session(query, pool.acquire, run, pool)

    return open_


def psycopg_pool_opener(*, autocommit: bool = True, min_size: int | None = None) -> Opener:
    """psycopg_pool's ``AsyncConnectionPool(dsn, ...)`` of ``max_size = n`` and ``min_size``
    (None: n), opened and filled; with ``autocommit=False`` psycopg's own transaction mode."""

    @contextlib.asynccontextmanager
    async def open_(server: Server, n: int) -> AsyncIterator[Session]:
        from psycopg_pool import AsyncConnectionPool

        size = n if min_size is None else min_size
        kwargs = {"autocommit": True} if autocommit else None
        async with AsyncConnectionPool(
            server.dsn, min_size=size, max_size=n, kwargs=kwargs, open=False
        ) as pool:
            await pool.wait()

            async def run(conn: Any, sql: str) -> object:
                cur = await conn.execute(sql)
                return await cur.fetchall()

            async def query(sql: str) -> object:
                async with pool.connection() as conn:
                    cur = await conn.execute(sql)
                    return await cur.fetchall()

            yield Session(query, pool.connection, run, pool)

    return open_


@contextlib.asynccontextmanager
async def _sqlalchemy(server: Server, n: int) -> AsyncIterator[Session]:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(
        server.url("postgresql+asyncpg"),
        pool_size=n,
        max_overflow=0,
        isolation_level="AUTOCOMMIT",
    )
    try:
        # open all n at once, so the pool holds n before the run
        held = [engine.connect() for _ in range(n)]
        await asyncio.gather(*(conn.start() for conn in held))
        await asyncio.gather(*(conn.close() for conn in held))

        async def run(conn: Any, sql: str) -> object:
            result = await conn.exec_driver_sql(sql)
            return result.fetchall()

        async def query(sql: str) -> object:
            async with engine.connect() as conn:
                result = await conn.exec_driver_sql(sql)
                return result.fetchall()

        yield Session(query, engine.connect, run)
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def _aiomysql(server: Server, n: int) -> AsyncIterator[Session]:
    import aiomysql

    pool = await aiomysql.create_pool(minsize=n, maxsize=n, autocommit=True, **server.keywords())
    try:

        async def run(conn: Any, sql: str) -> object:
            async with conn.cursor() as cur:
                await cur.execute(sql)
                return await cur.fetchall()

        async def query(sql: str) -> object:
            async with pool.acquire() as conn, conn.cursor() as cur:
                await cur.execute(sql)
                return await cur.fetchall()

        yield Session(query, pool.acquire, run)
    finally:
        pool.close()
        await pool.wait_closed()


# ----- the line-up ---------------------------------------------------------------------------

_BOTH = ("asyncio", "trio")
_ASYNCIO = ("asyncio",)
_NONE = ("none",)

CONTENDERS: tuple[Contender, ...] = (
    # PostgreSQL
    Contender(POOLKIT_PG, "postgres", "poolkit", _BOTH, ("psycopg2",), poolkit_opener("psycopg2"),
              dbapi="psycopg2"),
    # threads="auto" shares threads for psycopg2 (threadsafety 2); the dedicated ones beside it
    Contender("poolkit+psycopg2 (dedicated threads)", "postgres", "poolkit", _ASYNCIO,
              ("psycopg2",), poolkit_opener("psycopg2", "dedicated"), dbapi="psycopg2"),
    Contender("poolkit+pyodbc (psqlODBC)", "postgres", "poolkit", _BOTH, ("pyodbc",),
              poolkit_opener("pyodbc"), dbapi="pyodbc"),
    Contender(ASYNCPG, "postgres", "native", _ASYNCIO, ("asyncpg",), asyncpg_opener(False)),
    Contender(ASYNCPG_RESET, "postgres", "native", _ASYNCIO, ("asyncpg",),
              asyncpg_opener(True)),
    Contender(PSYCOPG3, "postgres", "native", _ASYNCIO,
              ("psycopg", "psycopg_pool"), psycopg_pool_opener()),
    Contender("SQLAlchemy async (asyncpg)", "postgres", "native", _ASYNCIO,
              ("sqlalchemy.ext.asyncio", "asyncpg", "greenlet"), _sqlalchemy),
    Contender("psycopg2 run_in_executor", "postgres", "baseline", _ASYNCIO, ("psycopg2",),
              _hop_opener("psycopg2", _executor_hop), dbapi="psycopg2"),
    Contender("psycopg2 trio.to_thread", "postgres", "baseline", ("trio",), ("psycopg2", "trio"),
              _hop_opener("psycopg2", _trio_hop), dbapi="psycopg2"),
    Contender("psycopg2 plain loop", "postgres", "limit", _NONE, ("psycopg2",),
              open_threads=_threads_opener("psycopg2"), only_n=(1,), dbapi="psycopg2"),
    Contender("psycopg2 N threads", "postgres", "limit", _NONE, ("psycopg2",),
              open_threads=_threads_opener("psycopg2"), dbapi="psycopg2"),
    # MySQL / MariaDB
    Contender(POOLKIT_MY, "mysql", "poolkit", _BOTH, ("pymysql",), poolkit_opener("pymysql"),
              dbapi="pymysql"),
    # PyMySQL says threadsafety 1, so "auto" dedicates threads; shared is the user's opt-in
    Contender("poolkit+PyMySQL (shared threads)", "mysql", "poolkit", _ASYNCIO, ("pymysql",),
              poolkit_opener("pymysql", "shared"), dbapi="pymysql"),
    Contender("poolkit+pyodbc (MariaDB ODBC)", "mysql", "poolkit", _BOTH, ("pyodbc",),
              poolkit_opener("pyodbc"), dbapi="pyodbc"),
    Contender("aiomysql Pool", "mysql", "native", _ASYNCIO, ("aiomysql",), _aiomysql),
    Contender("PyMySQL plain loop", "mysql", "limit", _NONE, ("pymysql",),
              open_threads=_threads_opener("pymysql"), only_n=(1,), dbapi="pymysql"),
    Contender("PyMySQL N threads", "mysql", "limit", _NONE, ("pymysql",),
              open_threads=_threads_opener("pymysql"), dbapi="pymysql"),
)  # fmt: skip

#: The statement of each query workload, per backend.
WORKLOADS: dict[str, dict[str, str]] = {
    "select1": {"postgres": "SELECT 1", "mysql": "SELECT 1"},
    "rows100": {
        "postgres": "SELECT g, 'row ' || g FROM generate_series(1, 100) g",
        "mysql": "SELECT seq, CONCAT('row ', seq) FROM seq_1_to_100",
    },
    "sleep1ms": {"postgres": "SELECT pg_sleep(0.001)", "mysql": "SELECT SLEEP(0.001)"},
}
#: The contention workload: many tasks, a smaller pool, the cheapest statement.
CONTENTION_TASKS, CONTENTION_SIZE, CONTENTION_SQL = 256, 16, "SELECT 1"
