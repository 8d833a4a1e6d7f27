"""Targets: one database reached through one driver, and the SQL that differs between them.

A backend (``postgres``, ``postgres-pgbouncer``, ``mysql``, ``mssql``, ``sqlite``) is reached
by one or more drivers: PostgreSQL by psycopg2, by pyodbc with the PostgreSQL ODBC driver and by
psycopg 3 (for the psycopg_pool adapter), directly or through PgBouncer in transaction pooling
mode; MariaDB/MySQL by PyMySQL and by pyodbc; SQL Server by pyodbc; SQLite by sqlite3 and by
poolkit's fake driver. A :class:`Target` knows how to connect, how to write a placeholder, and
the dialect's statements the checks need (a slow query, a session id, a kill, a server-side
session count, a statement timeout). Secrets never leave it unmasked.

Through PgBouncer (1.18: no prepared statements in transaction mode) psycopg 3 connects with
``prepare_threshold=None`` and psqlODBC with ``UseServerSidePrepare=0``; psycopg2 never
prepares. A session there is a client connection to PgBouncer: the server session under it
(``pg_backend_pid()``) is the one of the current transaction, and a ``SET`` lands on whichever
server connection runs it, so the statement timeout check is not supported. The pool's
sessions are counted on PgBouncer's admin console (``SHOW CLIENTS``), by application_name.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from .._dsn import mysql_keywords, scheme_of, split_url
from .._optional import MissingDependency, require
from .._redact import Redactor

__all__ = [
    "BACKENDS",
    "DRIVERS",
    "Dialect",
    "Masked",
    "MaskedDict",
    "SessionCounter",
    "Target",
    "TargetError",
    "build_target",
    "error_codes",
]


class Masked(tuple):  # type: ignore[type-arg]
    """Connect arguments that print masked: pytest shows frame arguments and locals."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<{len(self)} connect argument{'' if len(self) == 1 else 's'}, masked>"


class MaskedDict(dict):  # type: ignore[type-arg]
    """Connect keywords that print masked."""

    def __repr__(self) -> str:
        return f"<connect keywords {sorted(self)}, values masked>"


#: Backends and the drivers that reach each, in the order the matrix shows them.
DRIVERS: dict[str, tuple[str, ...]] = {
    "sqlite": ("sqlite3", "fake"),
    "postgres": ("psycopg2", "pyodbc", "psycopg"),
    "postgres-pgbouncer": ("psycopg2", "pyodbc", "psycopg"),
    "mysql": ("pymysql", "pyodbc"),
    "mssql": ("pyodbc",),
}
BACKENDS: tuple[str, ...] = tuple(DRIVERS)


class TargetError(Exception):
    """A target cannot be built: a driver is missing or a DSN cannot be read (message says)."""


@dataclass(frozen=True)
class Dialect:
    """The statements that differ between databases. Empty means "cannot be done here"."""

    #: a statement that keeps the server busy for ``seconds`` and can be cancelled
    sleep: Callable[[float], str]
    #: this session's id on the server
    session_id: str = ""
    #: ends session ``pid`` (run from another session)
    kill: Callable[[int], str] = lambda pid: ""
    #: makes the session's statements fail after ``ms`` milliseconds
    statement_timeout: Callable[[int], str] = lambda ms: ""
    #: whether a running statement was seen for a session (by its id)
    running: Callable[[int], str] = lambda pid: ""
    #: whether session ``pid`` is still on the server (a count: 0 or 1)
    alive: Callable[[int], str] = lambda pid: ""
    #: the same, from the driver's own activity view where no SQL shows it (the fake driver):
    #: ``(driver module, session id) -> statements running``
    running_view: Callable[[Any, int], int] | None = None
    int_pk: str = "INTEGER PRIMARY KEY"
    text: str = "VARCHAR(200)"
    #: lock a row for update
    lock_row: str = "UPDATE {table} SET n = n + 1 WHERE id = {id}"
    sessions_by_tag: bool = False
    #: opens a transaction where the driver would not before a SELECT (sqlite3)
    begin: str = ""
    #: codes (see :func:`error_codes`) of the error a deadlock victim gets; SQLite, which
    #: locks the whole database, refuses a lock upgrade that could deadlock with SQLITE_BUSY
    deadlock_codes: tuple[str, ...] = ()
    #: codes of the error a statement stopped by ``statement_timeout`` gets
    timeout_codes: tuple[str, ...] = ()
    #: a SELECT of ``n`` rows of 100 characters each (a result large enough to stall halfway)
    many_rows: Callable[[int], str] = lambda n: ""
    #: why a statement above is empty here, by field name, where the reason is not plain
    why_not: Mapping[str, str] = field(default_factory=dict)


def error_codes(exc: BaseException) -> set[str]:
    """The codes a driver error carries: SQLSTATE, the server's native number, SQLite's name.

    psycopg2 has ``pgcode``, psycopg ``sqlstate``, PyMySQL the native number in ``args[0]``,
    pyodbc the SQLSTATE in ``args[0]`` and the native number in its message ("... (1213)
    (SQLExecDirectW)"), sqlite3 ``sqlite_errorname``. The fake driver repeats SQLite's
    messages without a code, so "database is locked" reads as ``SQLITE_BUSY``.
    """
    codes: set[str] = set()
    for name in ("pgcode", "sqlstate", "sqlite_errorname"):
        value = getattr(exc, name, None)
        if isinstance(value, str) and value:
            codes.add(value)
    first = exc.args[0] if exc.args else None
    if isinstance(first, int) and not isinstance(first, bool):
        codes.add(str(first))
    elif isinstance(first, str) and re.fullmatch(r"[0-9A-Z]{5}", first):
        codes.add(first)
    codes.update(re.findall(r"\((\d+)\) \(SQL\w+\)", str(exc)))
    if str(exc).startswith("database is locked"):
        codes.add("SQLITE_BUSY")
    return codes


def _pg_dialect(transaction_pooling: bool = False) -> Dialect:
    """PostgreSQL's statements; through PgBouncer's transaction pooling, no session ``SET``.

    There the session id names the server session of the current transaction, which stays
    the client's until the transaction ends: the checks read it, watch it run and kill it
    while that transaction runs. Afterwards it may name a server session serving another
    client, or the watcher itself (which ``running`` leaves out).
    """
    timeout = "" if transaction_pooling else "SET statement_timeout = {ms}"
    why_not = (
        {"statement_timeout": _SESSION_SET, "alive": _SERVER_SESSIONS}
        if transaction_pooling
        else {}
    )
    alive = "" if transaction_pooling else "SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"
    return Dialect(
        sleep=lambda s: f"SELECT pg_sleep({s})",
        session_id="SELECT pg_backend_pid()",
        kill=lambda pid: f"SELECT pg_terminate_backend({int(pid)})",
        statement_timeout=lambda ms: timeout.format(ms=int(ms)),
        # not the asking session: through PgBouncer it may be the very server session asked
        # about, freed by the pool since (and then running nothing but this question)
        running=lambda pid: (
            f"SELECT count(*) FROM pg_stat_activity WHERE pid = {int(pid)} AND state = 'active' "
            "AND pid <> pg_backend_pid()"
        ),
        alive=lambda pid: alive.format(pid=int(pid)),
        sessions_by_tag=True,
        deadlock_codes=("40P01",),
        timeout_codes=("57014",),
        many_rows=lambda n: f"SELECT repeat('x', 100) FROM generate_series(1, {int(n)})",
        why_not=why_not,
    )


_SERVER_SESSIONS = (
    "through PgBouncer's transaction pooling the server sessions are PgBouncer's, not the "
    "pool's: killing them all leaves the pool's connections up (and may hit the watcher's own)"
)
_SESSION_SET = (
    "a SET is session state, and through PgBouncer's transaction pooling the next transaction "
    "may run on another server session (where the SET stays, for other clients); the check "
    "sets the timeout in one transaction and expects it in the next, which SET LOCAL cannot do"
)


def _mysql_dialect() -> Dialect:
    return Dialect(
        sleep=lambda s: f"SELECT SLEEP({s})",
        session_id="SELECT CONNECTION_ID()",
        kill=lambda pid: f"KILL {int(pid)}",
        # MariaDB (seconds); MySQL would be max_execution_time (ms, SELECT only)
        statement_timeout=lambda ms: f"SET SESSION max_statement_time = {ms / 1000:g}",
        # MariaDB Connector/ODBC runs statements as prepared ones: COMMAND is 'Execute'
        running=lambda pid: (
            "SELECT count(*) FROM information_schema.PROCESSLIST "
            f"WHERE ID = {int(pid)} AND COMMAND IN ('Query', 'Execute')"
        ),
        alive=lambda pid: (
            f"SELECT count(*) FROM information_schema.PROCESSLIST WHERE ID = {int(pid)}"
        ),
        sessions_by_tag=True,
        deadlock_codes=("1213",),
        timeout_codes=("1969",),  # ER_STATEMENT_TIMEOUT
        # MariaDB's SEQUENCE engine; MySQL 8 would need a recursive CTE
        many_rows=lambda n: f"SELECT REPEAT('x', 100) FROM seq_1_to_{int(n)}",
    )


def _mssql_dialect() -> Dialect:
    return Dialect(
        sleep=lambda s: f"WAITFOR DELAY '00:00:{s:06.3f}'",
        session_id="SELECT @@SPID",
        kill=lambda pid: f"KILL {int(pid)}",
        running=lambda pid: (
            f"SELECT count(*) FROM sys.dm_exec_requests WHERE session_id = {int(pid)}"
        ),
        alive=lambda pid: (
            f"SELECT count(*) FROM sys.dm_exec_sessions WHERE session_id = {int(pid)}"
        ),
        int_pk="INT PRIMARY KEY",
        text="NVARCHAR(200)",
        sessions_by_tag=True,
        deadlock_codes=("1205",),
    )


# A query that runs until interrupted: sqlite3 has no sleep, but interrupt() stops this.
_SQLITE_SPIN = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT {n}) "
    "SELECT count(*) FROM c"
)


def _fake_running(driver: Any, pid: int) -> int:
    return sum(1 for conn, op, _ in driver.running() if conn == pid and op.startswith("execute"))


def _sqlite_dialect(fake: bool) -> Dialect:
    if fake:
        return Dialect(
            sleep=lambda s: f"SELECT sleep({s})",
            session_id="SELECT connection_id()",
            kill=lambda pid: f"SELECT kill_connection({int(pid)})",
            alive=lambda pid: f"SELECT connection_alive({int(pid)})",
            running_view=_fake_running,
            deadlock_codes=("SQLITE_BUSY",),  # a transaction is begun before a SELECT too
        )
    return Dialect(
        sleep=lambda s: _SQLITE_SPIN.format(n=int(s * 20_000_000)),
        begin="BEGIN",
        deadlock_codes=("SQLITE_BUSY",),
    )


class SessionCounter(Protocol):
    """A connection of its own that counts tagged sessions (see :attr:`Target.counter`)."""

    def count(self, tag: str) -> int: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Target:
    """One backend through one driver."""

    backend: str
    driver: str
    module: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    paramstyle: str
    dialect: Dialect
    #: where the database came from: "embedded", "dsn", "container" or "started" (a PgBouncer
    #: this run started in front of postgres)
    source: str
    secrets: tuple[str, ...] = ()
    #: set up connect arguments that mark sessions with a tag (for server-side counts), and the
    #: count: SQL giving it on a plain session, or, with ``counter``, what that counter takes
    tagger: Callable[[str], tuple[tuple[Any, ...], dict[str, Any], str]] | None = None
    #: opens the connection that counts the tagged sessions where no SQL on a plain session can
    #: (PgBouncer's admin console); None: the count SQL runs on the watcher's own session
    counter: Callable[[], SessionCounter] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: the DSN it was built from (None: embedded); never shown
    dsn: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "args", Masked(self.args))
        object.__setattr__(self, "kwargs", MaskedDict(self.kwargs))

    @property
    def id(self) -> str:
        return f"{self.backend}-{self.driver}"

    def redact(self, text: str) -> str:
        return Redactor(self.args, self.kwargs, self.secrets)(text)

    def __repr__(self) -> str:
        return f"<Target {self.id} ({self.source})>"

    @property
    def address(self) -> tuple[str, int] | None:
        """The server's TCP host and port, or None (embedded, or a socket path)."""
        if self.dsn is None:
            return None
        return address(self.backend, self.dsn)

    def rehosted(self, host: str, port: int) -> Target:
        """The same database and driver, reached at ``host:port`` (say, through a proxy)."""
        if self.dsn is None or self.address is None:
            raise TargetError(f"{self.id} is not reached over TCP")
        return build_target(
            self.backend, self.driver, _rehost(self.backend, self.dsn, host, port), self.source, ""
        )

    def connect(self) -> Any:
        """A plain driver connection, for setting up and inspecting from the check's side.

        A failure is re-raised as the driver's own class with secrets masked, and without the
        driver's frames, whose arguments (the DSN) pytest would print.
        """
        try:
            return self.module.connect(*self.args, **self.kwargs)
        except Exception as exc:
            redact = Redactor(self.args, self.kwargs, self.secrets)
            error = redact.masked(exc) or TargetError(redact.exception(exc))
        raise error from None

    def q(self, n: int = 0, name: str | None = None) -> str:
        """The placeholder for parameter ``n`` (0-based) in the driver's paramstyle."""
        style = self.paramstyle
        if style == "qmark":
            return "?"
        if style == "numeric":
            return f":{n + 1}"
        if style == "named":
            return f":{name or f'p{n}'}"
        if style == "pyformat" and name is not None:
            return f"%({name})s"
        return "%s"

    def run(self, sql: str, params: Any = None) -> list[Any]:
        """Run one statement on a fresh plain connection, commit, return the rows."""
        raw = self.connect()
        try:
            cur = raw.cursor()
            if params is None:
                cur.execute(sql)
            else:
                cur.execute(sql, params)
            rows = [tuple(r) for r in cur.fetchall()] if cur.description is not None else []
            raw.commit()
            return rows
        finally:
            raw.close()

    @contextmanager
    def table(self, columns: str) -> Iterator[str]:
        """A fresh table for one check, dropped afterwards."""
        name = f"pkc_{uuid.uuid4().hex[:12]}"
        self.run(f"CREATE TABLE {name} ({columns})")
        try:
            yield name
        finally:
            self.run(f"DROP TABLE {name}")

    @contextmanager
    def tagged(self) -> Iterator[tuple[tuple[Any, ...], dict[str, Any], str]]:
        """Connect arguments that mark sessions, and SQL counting the marked sessions."""
        if self.tagger is None:
            raise TargetError(f"{self.id} cannot count its sessions on the server")
        tag = f"pkc_{uuid.uuid4().hex[:12]}"
        args, kwargs, count_sql = self.tagger(tag)
        if self.backend in ("mysql", "mssql"):
            self.run(f"CREATE DATABASE {tag}")
        try:
            yield Masked(args), MaskedDict(kwargs), count_sql
        finally:
            if self.backend in ("mysql", "mssql"):
                self.run(f"DROP DATABASE {tag}")


# ----- DSNs ------------------------------------------------------------------------------


def _url(dsn: str, schemes: tuple[str, ...], what: str) -> dict[str, Any]:
    """A URL DSN's parts, read by poolkit's one URL parser (as ``Pool`` reads one)."""
    if scheme_of(dsn) not in schemes:
        raise TargetError(f"{what} DSN must look like {schemes[0]}://user:password@host:port/db")
    try:
        url = split_url(dsn)
    except ValueError as exc:
        raise TargetError(f"cannot read the {what} DSN: {exc}") from None
    return {
        "host": url.host or "127.0.0.1",
        "port": url.port,
        "user": url.user or "",
        "password": url.password or "",
        "database": url.database or "",
    }


def _pg_parts(dsn: str) -> dict[str, Any]:
    try:
        from psycopg2.extensions import parse_dsn
    except ImportError:  # pragma: no cover - psycopg2 is a test dependency
        parse_dsn = None
    if parse_dsn is not None:
        try:
            parts: dict[str, Any] = parse_dsn(dsn)
        except Exception as exc:
            raise TargetError(f"cannot read the PostgreSQL DSN: {type(exc).__name__}") from None
        return parts
    if dsn.startswith(("postgres://", "postgresql://")):
        url = _url(dsn, ("postgresql", "postgres"), "PostgreSQL")
        return {
            "host": url["host"],
            "port": url["port"],
            "user": url["user"],
            "password": url["password"],
            "dbname": url["database"],
        }
    return dict(re.findall(r"(\w+)\s*=\s*('[^']*'|\S+)", dsn))


_ODBC_INSTALL = {
    "PostgreSQL": "apt-get install unixodbc odbc-postgresql",
    "MariaDB": "apt-get install unixodbc odbc-mariadb",
    "SQL Server": "Microsoft's msodbcsql18 package (ODBC Driver 18 for SQL Server)",
}


def _odbc_driver(*needles: str) -> str:
    pyodbc = _import("pyodbc")
    for name in pyodbc.drivers():
        if any(n.lower() in name.lower() for n in needles) and "ansi" not in name.lower():
            return str(name)
    raise TargetError(
        f"no ODBC driver for {'/'.join(needles)} is installed "
        f"(found: {', '.join(pyodbc.drivers()) or 'none'}); install "
        f"{_ODBC_INSTALL.get(needles[0], 'the database ODBC driver')}"
    )


def _odbc_value(value: Any) -> str:
    text = str(value)
    if any(c in text for c in ";{}=") or text != text.strip():
        return "{" + text.replace("}", "}}") + "}"
    return text


def _odbc_string(**items: Any) -> str:
    """An ODBC connection string; values with separators are braced (ODBC's quoting)."""
    return ";".join(
        f"{k}={{{v}}}" if k == "DRIVER" else f"{k}={_odbc_value(v)}" for k, v in items.items()
    )


def _import(name: str) -> Any:
    """The driver module, or TargetError saying what to install (not installed, or installed
    but unable to load its library: pyodbc without unixODBC)."""
    try:
        return require(name)
    except MissingDependency as exc:
        raise TargetError(str(exc)) from None


def build_target(backend: str, driver: str, dsn: str | None, source: str, tmp: str) -> Target:
    """The target for a backend reached by a driver, from a DSN (None for embedded SQLite)."""
    if backend == "sqlite":
        return _sqlite(driver, tmp)
    if dsn is None:
        raise TargetError(f"{backend} needs a DSN")
    if backend in ("postgres", "postgres-pgbouncer"):
        target = _postgres(driver, dsn, source, backend)
    elif backend == "mysql":
        target = _mysql(driver, dsn, source)
    elif backend == "mssql":
        target = _mssql(driver, dsn, source)
    else:
        raise TargetError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    return dataclasses.replace(target, dsn=dsn)


def address(backend: str, dsn: str) -> tuple[str, int] | None:
    """The TCP host and port a backend's DSN names, or None (a socket path, ODBC string)."""
    if backend.startswith("postgres"):
        parts = _pg_parts(dsn)
        host = str(parts.get("host") or "")
        if not host or host.startswith("/") or "," in host:  # a socket, or several hosts
            return None
        return host, int(parts.get("port") or 5432)
    if dsn.lower().startswith(("driver=", "dsn=")):  # an ODBC connection string
        return None
    url = urlsplit(dsn)
    if not url.hostname:
        return None
    return url.hostname, url.port or {"mysql": 3306, "mssql": 1433}.get(backend, 0)


def _libpq_value(value: object) -> str:
    text = str(value)
    if text and not any(c in text for c in " '\\"):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _rehost(backend: str, dsn: str, host: str, port: int) -> str:
    """``dsn`` pointed at ``host:port`` instead; everything else (and any password) kept."""
    if backend.startswith("postgres"):
        parts = {k: v for k, v in _pg_parts(dsn).items() if k not in ("hostaddr",)}
        parts.update(host=host, port=str(port))
        return " ".join(f"{k}={_libpq_value(v)}" for k, v in parts.items())
    url = urlsplit(dsn)
    userinfo, _, _ = url.netloc.rpartition("@")
    netloc = f"{userinfo}@{host}:{port}" if userinfo else f"{host}:{port}"
    return url._replace(netloc=netloc).geturl()


def _sqlite(driver: str, tmp: str) -> Target:
    if driver == "sqlite3":
        import sqlite3

        path = f"{tmp}/conformance-{uuid.uuid4().hex[:8]}.db"
        return Target(
            "sqlite",
            "sqlite3",
            sqlite3,
            (path,),
            {"timeout": 10.0},
            "qmark",
            _sqlite_dialect(fake=False),
            "embedded",
        )
    if driver == "fake":
        from poolkit.fakes import FakeDriver

        return Target(
            "sqlite",
            "fake",
            FakeDriver(),
            (),
            {},
            "qmark",
            _sqlite_dialect(fake=True),
            "embedded",
            tagger=_fake_tagger,
        )
    raise TargetError(f"sqlite is reached by sqlite3 or fake, not {driver!r}")


def _fake_tagger(tag: str) -> tuple[tuple[Any, ...], dict[str, Any], str]:
    # Each fake target is a fresh driver: all its sessions but the counting one are the pool's.
    return (), {}, "SELECT open_connections() - 1"


def _postgres(driver: str, dsn: str, source: str, backend: str = "postgres") -> Target:
    parts = _pg_parts(dsn)
    secrets = (str(parts["password"]),) if parts.get("password") else ()
    bouncer = backend == "postgres-pgbouncer"
    count = "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{tag}'"
    counter: Callable[[], SessionCounter] | None = None
    if bouncer:
        count = "{tag}"  # what the admin console counts: clients by application_name
        counter = _admin_console(dsn)
    if driver in ("psycopg2", "psycopg"):
        module = _import(driver)
        kwargs: dict[str, Any] = {} if driver == "psycopg2" else {"autocommit": False}
        if bouncer and driver == "psycopg":
            kwargs["prepare_threshold"] = None  # PgBouncer 1.18 cannot carry prepared statements

        def tagger(tag: str) -> tuple[tuple[Any, ...], dict[str, Any], str]:
            return (dsn,), {**kwargs, "application_name": tag}, count.format(tag=tag)

        return Target(
            backend,
            driver,
            module,
            (dsn,),
            kwargs,
            "pyformat",
            _pg_dialect(transaction_pooling=bouncer),
            source,
            secrets,
            tagger,
            counter,
        )
    if driver == "pyodbc":
        module = _import("pyodbc")
        items = {
            "DRIVER": _odbc_driver("PostgreSQL"),
            "SERVER": parts.get("host") or "127.0.0.1",
            "PORT": parts.get("port") or 5432,
            "DATABASE": parts.get("dbname") or "postgres",
            "UID": parts.get("user") or "",
            "PWD": parts.get("password") or "",
        }
        if bouncer:
            items["UseServerSidePrepare"] = 0  # no prepared statements through PgBouncer 1.18
        conn_str = _odbc_string(**items)

        def odbc_tagger(tag: str) -> tuple[tuple[Any, ...], dict[str, Any], str]:
            tagged = f"{conn_str};pqopt={{application_name={tag}}}"
            return (tagged,), {}, count.format(tag=tag)

        return Target(
            backend,
            "pyodbc",
            module,
            (conn_str,),
            {},
            "qmark",
            _pg_dialect(transaction_pooling=bouncer),
            source,
            secrets,
            odbc_tagger,
            counter,
        )
    raise TargetError(f"{backend} is reached by {', '.join(DRIVERS[backend])}, not {driver!r}")


def _admin_console(dsn: str) -> Callable[[], SessionCounter]:
    """Opens PgBouncer's admin console: the DSN's user must be an admin or stats user."""
    from .pgbouncer import AdminConsole, admin_dsn

    console = admin_dsn(dsn)
    return lambda: AdminConsole(console)


def _mysql(driver: str, dsn: str, source: str) -> Target:
    url = _url(dsn, ("mysql", "mariadb", "mysql+pymysql"), "MySQL")
    secrets = (url["password"],) if url["password"] else ()
    count = "SELECT count(*) FROM information_schema.PROCESSLIST WHERE DB = '{tag}'"
    if driver == "pymysql":
        module = _import("pymysql")
        try:  # the keywords Pool(pymysql, dsn) would read, query parameters included
            given = mysql_keywords(dsn, "pymysql")
        except ValueError as exc:
            raise TargetError(f"cannot read the MySQL DSN: {exc}") from None
        kwargs = {
            "host": "127.0.0.1",
            "port": 3306,
            "user": "root",
            "password": "",
            "database": "test",
            "connect_timeout": 5,
            **given,
        }

        def tagger(tag: str) -> tuple[tuple[Any, ...], dict[str, Any], str]:
            return (), {**kwargs, "database": tag}, count.format(tag=tag)

        return Target(
            "mysql",
            "pymysql",
            module,
            (),
            kwargs,
            "pyformat",
            _mysql_dialect(),
            source,
            secrets,
            tagger,
        )
    if driver == "pyodbc":
        module = _import("pyodbc")
        base = {
            "DRIVER": _odbc_driver("MariaDB", "MySQL"),
            "SERVER": url["host"],
            "PORT": url["port"] or 3306,
            "UID": url["user"] or "root",
            "PWD": url["password"],
        }
        conn_str = _odbc_string(**base, DATABASE=url["database"] or "test")

        def odbc_tagger(tag: str) -> tuple[tuple[Any, ...], dict[str, Any], str]:
            return (_odbc_string(**base, DATABASE=tag),), {}, count.format(tag=tag)

        return Target(
            "mysql",
            "pyodbc",
            module,
            (conn_str,),
            {},
            "qmark",
            _mysql_dialect(),
            source,
            secrets,
            odbc_tagger,
        )
    raise TargetError(f"mysql is reached by {', '.join(DRIVERS['mysql'])}, not {driver!r}")


def _mssql(driver: str, dsn: str, source: str) -> Target:
    if driver != "pyodbc":
        raise TargetError(f"mssql is reached by pyodbc, not {driver!r}")
    module = _import("pyodbc")
    if dsn.lower().startswith(("driver=", "dsn=")):
        conn_str = dsn
        secrets = tuple(re.findall(r"(?i)\bpwd=([^;]+)", dsn))
        base = None
    else:
        url = _url(dsn, ("mssql", "sqlserver"), "SQL Server")
        secrets = (url["password"],) if url["password"] else ()
        base = {
            "DRIVER": _odbc_driver("SQL Server"),
            "SERVER": f"{url['host']},{url['port'] or 1433}",
            "UID": url["user"] or "sa",
            "PWD": url["password"],
            "TrustServerCertificate": "yes",
        }
        conn_str = _odbc_string(**base, DATABASE=url["database"] or "master")
    count = "SELECT count(*) FROM sys.dm_exec_sessions WHERE DB_NAME(database_id) = '{tag}'"

    def tagger(tag: str) -> tuple[tuple[Any, ...], dict[str, Any], str]:
        if base is None:
            raise TargetError("an ODBC connection string DSN cannot be tagged")
        return (_odbc_string(**base, DATABASE=tag),), {}, count.format(tag=tag)

    return Target(
        "mssql",
        "pyodbc",
        module,
        (conn_str,),
        {},
        "qmark",
        _mssql_dialect(),
        source,
        secrets,
        tagger,
    )
