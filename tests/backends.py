"""The databases the test suite runs against: sqlite3 (always), PostgreSQL and MariaDB (when up).

DSNs come from ``POOLKIT_POSTGRES_DSN`` (libpq key=value or URL) and ``POOLKIT_MYSQL_DSN``
(``mysql://user:password@host:port/db``). ``POOLKIT_REQUIRE_BACKENDS=postgres,mysql`` turns
"server unreachable" from a skip into a failure; CI sets it.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest

import poolkit
from poolkit._dsn import mysql_keywords
from poolkit._optional import MissingDependency, require, unavailable
from poolkit.conformance._defaults import DEFAULT_DSNS

# The documented defaults, shared with the conformance suite, soak_db and the benchmarks.
DEFAULT_POSTGRES_DSN = DEFAULT_DSNS["postgres"]
DEFAULT_MYSQL_DSN = DEFAULT_DSNS["mysql"]


@dataclass
class Backend:
    """How to reach one database and the bits of SQL that differ between them."""

    name: str
    driver: Any
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: placeholder for parameter n (0-based) in the driver's paramstyle
    placeholder: Callable[[int], str] = lambda n: "%s"
    #: a statement that keeps the server busy for `seconds`
    sleep_sql: Callable[[float], str] = lambda s: ""
    #: a statement returning this session's server-side id
    session_id_sql: str = ""
    #: a statement (run from another connection) that kills session `pid`
    kill_sql: Callable[[int], str] = lambda pid: ""
    #: counts the sessions of the test user on the server
    sessions_sql: str = ""
    int_pk: str = "INTEGER PRIMARY KEY"

    def connect(self) -> Any:
        """A plain driver connection, for setting up and inspecting from the test side."""
        return self.driver.connect(*self.args, **self.kwargs)

    def pool(self, **options: Any) -> poolkit.Pool:
        return poolkit.Pool(self.driver, *self.args, connect_kwargs=self.kwargs, **options)

    def q(self, n: int = 0) -> str:
        return self.placeholder(n)

    @contextmanager
    def table(self, columns: str = "id INTEGER, name VARCHAR(100)") -> Iterator[str]:
        """A fresh table for one test, dropped afterwards."""
        name = f"pk_{uuid.uuid4().hex[:12]}"
        self.run(f"CREATE TABLE {name} ({columns})")
        try:
            yield name
        finally:
            self.run(f"DROP TABLE IF EXISTS {name}")

    def run(self, sql: str, params: Any = None) -> list[Any]:
        """Run one statement on a fresh plain connection, commit, return the rows."""
        raw = self.connect()
        try:
            cur = raw.cursor()
            cur.execute(sql) if params is None else cur.execute(sql, params)
            rows = list(cur.fetchall()) if cur.description is not None else []
            raw.commit()
            return rows
        finally:
            raw.close()


def _postgres() -> Backend:
    import psycopg2

    dsn = os.environ.get("POOLKIT_POSTGRES_DSN", DEFAULT_POSTGRES_DSN)
    return Backend(
        name="postgres",
        driver=psycopg2,
        args=(dsn,),
        sleep_sql=lambda s: f"SELECT pg_sleep({s})",
        session_id_sql="SELECT pg_backend_pid()",
        kill_sql=lambda pid: f"SELECT pg_terminate_backend({int(pid)})",
        sessions_sql=(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE usename = current_user AND pid <> pg_backend_pid()"
        ),
        int_pk="INTEGER PRIMARY KEY",
    )


def mysql_kwargs(dsn: str) -> dict[str, Any]:
    """PyMySQL's connect() keywords for a mysql:// DSN, read as ``Pool(pymysql, dsn)`` reads it."""
    try:
        given = mysql_keywords(dsn, "pymysql")
    except ValueError as exc:
        raise ValueError(f"POOLKIT_MYSQL_DSN: {exc}") from None
    defaults = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
    return {**defaults, "database": "test", "connect_timeout": 3, **given}


def _mysql() -> Backend:
    import pymysql

    kwargs = mysql_kwargs(os.environ.get("POOLKIT_MYSQL_DSN", DEFAULT_MYSQL_DSN))
    return Backend(
        name="mysql",
        driver=pymysql,
        kwargs=kwargs,
        sleep_sql=lambda s: f"SELECT SLEEP({s})",
        session_id_sql="SELECT CONNECTION_ID()",
        kill_sql=lambda pid: f"KILL {int(pid)}",
        sessions_sql=(
            "SELECT count(*) FROM information_schema.PROCESSLIST "
            "WHERE USER = SUBSTRING_INDEX(CURRENT_USER(), '@', 1) AND ID <> CONNECTION_ID()"
        ),
        int_pk="INTEGER PRIMARY KEY",
    )


def sqlite_backend(directory: Path) -> Backend:
    return Backend(
        name="sqlite",
        driver=sqlite3,
        args=(str(directory / "poolkit-test.db"),),
        kwargs={"timeout": 5.0},
        placeholder=lambda n: "?",
    )


def fake_backend() -> Backend:
    """poolkit's fake driver: a shared SQLite database behind the fault-injection layer.

    It says threadsafety 2, so ``threads="auto"`` runs it on the shared thread group, as it
    does psycopg2: the suite covers both modes (sqlite3 and PyMySQL run dedicated).
    """
    from poolkit.fakes import FakeDriver

    return Backend(
        name="fake",
        driver=FakeDriver(threadsafety=2),
        placeholder=lambda n: "?",
        sleep_sql=lambda s: f"SELECT sleep({s})",
        session_id_sql="SELECT connection_id()",
        kill_sql=lambda pid: f"SELECT kill_connection({int(pid)})",
    )


#: The default addresses moved to a port where nothing listens (port 1 refuses at once).
NOTHING_AT_THE_DEFAULTS = {
    "postgres": "host=127.0.0.1 port=1 dbname=test user=postgres connect_timeout=5",
    "mysql": "mysql://root@127.0.0.1:1/test",
}


def no_default_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Conformance runs in this process find no server at the default addresses (the local
    servers stay out of runs that test what happens without one)."""
    for backend, dsn in NOTHING_AT_THE_DEFAULTS.items():
        monkeypatch.setitem(DEFAULT_DSNS, backend, dsn)


def need(name: str) -> Any:
    """``import name``, or skip the test with what to install: also when the module is
    installed but cannot load (pyodbc without unixODBC), which ``pytest.importorskip`` fails."""
    try:
        return require(name)
    except MissingDependency as exc:
        pytest.skip(str(exc))


SERVER_BACKENDS: dict[str, Callable[[], Backend]] = {"postgres": _postgres, "mysql": _mysql}


def required_backends() -> set[str]:
    raw = os.environ.get("POOLKIT_REQUIRE_BACKENDS", "")
    names = {n.strip() for n in raw.split(",") if n.strip()}
    unknown = names - set(SERVER_BACKENDS) - {"sqlite"}
    if unknown:
        raise ValueError(f"POOLKIT_REQUIRE_BACKENDS names unknown backends: {sorted(unknown)}")
    return names


@cache
def probe(name: str) -> tuple[Backend | None, str]:
    """(backend, "") when reachable, else (None, why) with secrets masked."""
    driver = {"postgres": "psycopg2", "mysql": "pymysql"}[name]
    why = unavailable(driver)
    if why is not None:
        return None, f"the {name} tests need {driver}: {why}"
    backend = SERVER_BACKENDS[name]()
    try:
        backend.connect().close()
    except Exception as exc:
        redact = poolkit._redact.Redactor(backend.args, backend.kwargs)
        env = f"POOLKIT_{name.upper()}_DSN"
        return None, f"{name} unreachable ({redact.exception(exc)}); set {env} to test it"
    return backend, ""


def resolve(name: str, tmp_path: Path) -> Backend:
    """The backend by name for one test: sqlite and the fake always; a server when reachable,
    else the test is skipped with the reason (failed when POOLKIT_REQUIRE_BACKENDS names it)."""
    if name == "sqlite":
        return sqlite_backend(tmp_path)
    if name == "fake":
        return fake_backend()
    backend, why = probe(name)
    if backend is None:
        if name in required_backends():
            pytest.fail(f"required backend {why} (POOLKIT_REQUIRE_BACKENDS)", pytrace=False)
        pytest.skip(why)
    return backend
