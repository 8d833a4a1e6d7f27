"""A configuration error fails at once; transient connect errors keep the retry with back-off.

When a connect fails with what the driver profile calls a configuration error (a bad
password, an unknown database or role, a DSN the driver rejects, an SQLite path that cannot
be opened), ``open()`` raises it and closes the pool, and callers the pool has no connection
for get it at once, as the driver's own exception with secrets masked, instead of waiting for
the acquire timeout. The pool keeps retrying with back-off and heals when the mistake is
fixed. Refused, starting up or too many connections keep callers waiting through the retry.

The pool's rules run on :mod:`poolkit.fakes` (whose ``ProgrammingError`` is a configuration
error by the generic rule); then every driver against its real server: PostgreSQL on
loopback (trust) and a throwaway cluster of our own that checks passwords (SCRAM), MariaDB
with a user made for the test, sqlite3 on a file, and pyodbc to both where it loads.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import psycopg2
import psycopg2.extensions
import pymysql
import pytest

from poolkit import Backoff, Pool, PoolError, PoolTimeout
from poolkit.fakes import FakeDriver, Plan, Raise, Refuse
from tests.backends import Backend, need, resolve

pytestmark = pytest.mark.anyio

FAST = Backoff(initial=0.01, maximum=0.05)
SLOW = Backoff(initial=5.0, maximum=5.0, jitter=0.0)  # a caller waiting for it would show
PASSWORD = "Cfg-7Qw2-xK9-secret"
TIMEOUT = 30.0  # the pools' acquire timeout: a configuration error must come long before it
AT_ONCE = 5.0  # "at once": a few seconds at most, on a busy machine, against real servers
HANG = 10.0  # only turns a hang into a failure
PG_BIN = Path(os.environ.get("POOLKIT_PG_BIN", "/usr/lib/postgresql/15/bin"))


async def until(predicate: Callable[[], bool], timeout: float = HANG) -> None:
    """Poll until ``predicate()`` holds; the bound only turns a hang into a failure."""
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.005)


def assert_masked(exc: BaseException, secret: str = PASSWORD) -> None:
    """Neither the error, its args nor anything chained to it shows the secret."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        assert secret not in str(e) and secret not in repr(e), repr(e)
        assert all(secret not in str(a) for a in e.args), e.args
        e = e.__cause__ or e.__context__
    assert exc.__cause__ is None and exc.__traceback__ is not None


# ----- the pool's rules, on the fake driver ----------------------------------------------


def broken(message: str = "invalid dsn: no such option 'sslmdoe'") -> Plan:
    """Every connect fails with a configuration error (ProgrammingError: the generic rule)."""
    return Plan(Raise("ProgrammingError", op="connect", message=message))


async def test_callers_fail_at_once_and_the_pool_stays_open() -> None:
    driver = FakeDriver(broken())
    pool = Pool(driver, min_size=0, max_size=2, timeout=TIMEOUT, backoff=SLOW)
    try:
        await pool.open()
        errors: list[BaseException] = []

        async def caller() -> None:
            try:
                async with pool.connection():
                    pass
            except driver.ProgrammingError as exc:
                errors.append(exc)

        started = time.monotonic()
        with anyio.fail_after(HANG):
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(caller)
        assert time.monotonic() - started < AT_ONCE
        assert len(errors) == 3 and all("sslmdoe" in str(e) for e in errors)
        assert len({id(e) for e in errors}) == 3, "each caller raises an object of its own"
        # A caller arriving now fails at once too: it does not wait for the next attempt,
        # which the 5 s back-off holds back.
        started = time.monotonic()
        with pytest.raises(driver.ProgrammingError):
            await pool.acquire()
        assert time.monotonic() - started < 1.0
        assert not pool.closed and pool.stats().timeouts == 0
    finally:
        await pool.close()
    driver.close()


async def test_the_pool_keeps_retrying_and_heals_when_the_mistake_is_fixed() -> None:
    driver = FakeDriver(broken())
    pool = Pool(driver, min_size=1, max_size=2, timeout=TIMEOUT, backoff=FAST)
    try:
        await pool.open(wait=False)
        with pytest.raises(driver.ProgrammingError):
            await pool.acquire()
        attempts = driver.calls.connects()
        await until(lambda: driver.calls.connects() > attempts + 2)  # still retrying
        driver.plan = Plan()  # the DSN was fixed
        await until(lambda: pool.stats().idle == 1)
        async with pool.connection(timeout=1.0) as conn:
            assert await (await conn.execute("SELECT 1")).fetchone() == (1,)
            conn.invalidate()
        # Healed for good: with its only connection gone, a caller waits for the next one
        # instead of getting the configuration error the pool saw before.
        async with pool.connection(timeout=HANG) as conn:
            assert await (await conn.execute("SELECT 1")).fetchone() == (1,)
    finally:
        await pool.close()
    driver.close()


async def test_waiters_wait_for_connections_in_use_and_fail_once_none_is_left() -> None:
    driver = FakeDriver()
    async with Pool(driver, min_size=1, max_size=2, timeout=TIMEOUT, backoff=FAST) as pool:
        held = await pool.acquire()
        driver.plan = broken()
        outcome: list[object] = []

        async def caller() -> None:
            try:
                async with pool.connection() as conn:
                    outcome.append(conn)
            except driver.ProgrammingError as exc:
                outcome.append(exc)

        with anyio.fail_after(HANG):
            async with anyio.create_task_group() as tg:
                tg.start_soon(caller)
                await until(lambda: pool.stats().connect_errors >= 2)
                assert outcome == [], "a connection in use may come back to this caller"
                pool.release(held)  # ... and it does
        assert len(outcome) == 1 and not isinstance(outcome[0], BaseException)

        held = await pool.acquire()  # the idle connection serves, configuration error or not
        outcome.clear()
        with anyio.fail_after(HANG):
            async with anyio.create_task_group() as tg:
                tg.start_soon(caller)
                await until(lambda: pool.stats().waiting == 1)
                held.invalidate()  # the last connection goes: nothing can come back now
                pool.release(held)
        assert len(outcome) == 1 and isinstance(outcome[0], driver.ProgrammingError)
    driver.close()


async def test_transient_errors_keep_callers_waiting() -> None:
    driver = FakeDriver(Plan(Refuse(times=3)))
    async with Pool(driver, min_size=0, max_size=1, timeout=TIMEOUT, backoff=FAST) as pool:
        with anyio.fail_after(HANG):
            async with pool.connection() as conn:
                assert await (await conn.execute("SELECT 1")).fetchone() == (1,)
        assert pool.stats().connect_errors == 3
    driver.close()


async def test_a_transient_error_ends_the_fast_failure() -> None:
    """Callers fail at once while the latest attempt failed with a configuration error."""
    driver = FakeDriver(broken())
    async with Pool(driver, min_size=0, max_size=1, timeout=TIMEOUT, backoff=FAST) as pool:
        with pytest.raises(driver.ProgrammingError):
            await pool.acquire()
        driver.plan = Plan(Refuse(times=2))  # fixed, but the server restarts: refused, then up
        # Still the latest verdict: this caller fails at once, and starts a new attempt ...
        with pytest.raises(driver.ProgrammingError):
            await pool.acquire()
        # ... which is refused: a transient error, so the next caller waits through the retry.
        await until(lambda: "refused" in (pool.stats().last_connect_error or ""))
        with anyio.fail_after(HANG):
            async with pool.connection():
                pass
        assert pool.stats().connect_errors == 3  # the configuration error, 2 refusals
    driver.close()


async def test_a_refused_open_still_times_out() -> None:
    """The other side, unchanged: refused connects end in PoolTimeout, not at once."""
    driver = FakeDriver(Plan(Refuse()))
    pool = Pool(driver, timeout=TIMEOUT, backoff=FAST)
    with pytest.raises(PoolTimeout, match="Connection refused"):
        await pool.open(timeout=0.3)
    assert pool.stats().connect_errors >= 2
    driver.close()


async def test_open_raises_the_masked_error_at_once_and_closes() -> None:
    driver = FakeDriver(broken(f"invalid dsn: host=db password={PASSWORD} sslmdoe=1"))
    pool = Pool(driver, f"host=db password={PASSWORD}", timeout=TIMEOUT, backoff=FAST)
    started = time.monotonic()
    with pytest.raises(driver.ProgrammingError) as info:
        await pool.open()
    assert time.monotonic() - started < AT_ONCE
    assert pool.closed
    assert "***" in str(info.value) and "sslmdoe" in str(info.value)
    assert_masked(info.value)
    driver.close()


async def test_callers_get_the_masked_error() -> None:
    driver = FakeDriver(broken(f"invalid dsn: host=db password={PASSWORD} sslmdoe=1"))
    pool = Pool(
        driver,
        connect_kwargs={"host": "db", "password": PASSWORD},
        min_size=0,
        timeout=TIMEOUT,
        backoff=FAST,
    )
    async with pool:
        for _ in range(2):  # the first attempt's waiter, then a caller failing fast
            with pytest.raises(driver.ProgrammingError) as info:
                await pool.acquire()
            assert "***" in str(info.value)
            assert_masked(info.value)
        assert PASSWORD not in (pool.stats().last_connect_error or "")
    driver.close()


class _Opaque(ValueError):
    """An error whose text comes from neither its args nor a string attribute."""

    def __init__(self, secret: str = "") -> None:
        super().__init__()
        self.parts = (secret,)

    def __str__(self) -> str:
        return f"login refused for {self.parts[0]}"


async def test_an_error_that_cannot_be_masked_becomes_a_pool_error() -> None:
    def connect() -> Any:
        raise _Opaque(PASSWORD)

    pool = Pool(sqlite3, connect=connect, secrets=[PASSWORD], timeout=TIMEOUT)
    with pytest.raises(PoolError) as info:
        await pool.open()
    assert "login refused for ***" in str(info.value)
    assert_masked(info.value)


# ----- PostgreSQL --------------------------------------------------------------------------


def odbc_string(kind: str, **items: Any) -> str:
    """A pyodbc connection string for the installed ODBC driver of ``kind``; skips without."""
    pyodbc = need("pyodbc")
    names = [n for n in pyodbc.drivers() if kind in n and "ANSI" not in n.upper()]
    if not names:
        pytest.skip(f"no {kind} ODBC driver is installed (found: {pyodbc.drivers()})")
    values = {k: f"{{{v}}}" if re.search(r"[;{}=\s]", str(v)) else v for k, v in items.items()}
    return ";".join([f"DRIVER={{{names[0]}}}", *(f"{k}={v}" for k, v in values.items())])


def postgres_args(driver_name: str, **parts: Any) -> tuple[str]:
    """The one connect argument for ``driver_name``: a libpq DSN, or an ODBC string."""
    if driver_name == "pyodbc":
        return (
            odbc_string(
                "PostgreSQL",
                SERVER=parts.get("host", "127.0.0.1"),
                PORT=parts.get("port", 5432),
                DATABASE=parts.get("dbname", "postgres"),
                UID=parts.get("user", "postgres"),
                PWD=parts.get("password", ""),
            ),
        )
    return (" ".join(f"{k}={v}" for k, v in parts.items()),)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class PasswordCluster:
    """A PostgreSQL cluster of our own on loopback that checks passwords (SCRAM)."""

    port: int
    admin_password: str

    def args(self, driver_name: str, user: str, password: str | None = None) -> tuple[str]:
        parts: dict[str, Any] = {"host": "127.0.0.1", "port": self.port, "dbname": "postgres"}
        parts["user"] = user
        if password is not None:
            parts["password"] = password
        return postgres_args(driver_name, **parts)

    def run(self, *statements: str) -> None:
        raw = psycopg2.connect(*self.args("psycopg2", "postgres", self.admin_password))
        try:
            raw.autocommit = True
            cur = raw.cursor()
            for sql in statements:
                cur.execute(sql)
        finally:
            raw.close()

    def role(self, password: str, *options: str) -> str:
        name = f"pk_cfg_{uuid.uuid4().hex[:10]}"
        self.run(f"CREATE ROLE {name} LOGIN PASSWORD '{password}' {' '.join(options)}")
        return name


@pytest.fixture(scope="session")
def pg_passwords() -> Iterator[PasswordCluster]:
    """initdb a throwaway cluster (SCRAM, its own free port on 127.0.0.1), stopped after."""
    initdb, pg_ctl = PG_BIN / "initdb", PG_BIN / "pg_ctl"
    if not initdb.exists() or not pg_ctl.exists():
        pytest.skip(f"no PostgreSQL server binaries in {PG_BIN} (set POOLKIT_PG_BIN)")
    run_as: dict[str, Any] = {}
    owner: tuple[int, int] | None = None
    if os.geteuid() == 0:  # initdb refuses root: run it as the postgres OS user
        try:
            entry = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root, and there is no 'postgres' OS user to run initdb as")
        owner = (entry.pw_uid, entry.pw_gid)
        run_as = {"user": entry.pw_uid, "group": entry.pw_gid}
    directory = Path(tempfile.mkdtemp(prefix="poolkit-scram-"))
    admin = f"Adm-{uuid.uuid4().hex[:12]}"
    data = directory / "data"
    try:
        pwfile = directory / "pwfile"
        pwfile.write_text(admin + "\n")
        if owner is not None:
            os.chown(directory, *owner)
            os.chown(pwfile, *owner)

        def run(*argv: object, check: bool = True) -> None:
            command = [str(a) for a in argv]
            subprocess.run(command, check=check, capture_output=True, timeout=120, **run_as)

        auth = ("--auth=scram-sha-256", f"--pwfile={pwfile}")
        run(initdb, "-D", data, "-U", "postgres", *auth, "--no-sync", "--no-instructions")
        port = _free_port()
        options = (
            f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={directory} "
            "-c fsync=off"
        )
        run(pg_ctl, "-D", data, "-l", directory / "log", "-w", "-t", 60, "-o", options, "start")
        try:
            yield PasswordCluster(port, admin)
        finally:
            run(pg_ctl, "-D", data, "-m", "fast", "-w", "stop", check=False)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.real
@pytest.mark.postgres
@pytest.mark.parametrize("driver_name", ["psycopg2", "psycopg", "pyodbc"])
@pytest.mark.parametrize(
    ("override", "text"),
    [
        ({"dbname": "pk_no_such_db"}, 'database "pk_no_such_db" does not exist'),
        ({"user": "pk_no_such_role"}, 'role "pk_no_such_role" does not exist'),
        ({"port": "notaport"}, 'invalid integer value "notaport"'),
    ],
)
async def test_postgres_open_fails_at_once(
    driver_name: str, override: dict[str, str], text: str, tmp_path: Path
) -> None:
    backend = resolve("postgres", tmp_path)
    driver = need(driver_name)
    parts = {**psycopg2.extensions.parse_dsn(backend.args[0]), **override}
    pool = Pool(driver, *postgres_args(driver_name, **parts), timeout=TIMEOUT)
    started = time.monotonic()
    with pytest.raises(driver.Error, match=text):
        await pool.open()
    assert time.monotonic() - started < AT_ONCE
    assert pool.closed


@pytest.mark.real
@pytest.mark.postgres
@pytest.mark.parametrize("driver_name", ["psycopg2", "psycopg"])
async def test_postgres_dsn_the_driver_rejects_fails_at_once(
    driver_name: str, tmp_path: Path
) -> None:
    backend = resolve("postgres", tmp_path)
    driver = need(driver_name)
    pool = Pool(driver, *backend.args, connect_kwargs={"sslmode": "bogus"}, timeout=TIMEOUT)
    started = time.monotonic()
    with pytest.raises(driver.OperationalError, match='invalid sslmode value: "bogus"'):
        await pool.open()
    assert time.monotonic() - started < AT_ONCE


@pytest.mark.real
@pytest.mark.postgres
@pytest.mark.parametrize("driver_name", ["psycopg2", "psycopg", "pyodbc"])
async def test_postgres_bad_password_fails_at_once_masked(
    driver_name: str, pg_passwords: PasswordCluster
) -> None:
    driver = need(driver_name)
    user = pg_passwords.role("Right-pw-1")
    pool = Pool(driver, *pg_passwords.args(driver_name, user, PASSWORD), min_size=0)
    async with pool:
        for _ in range(2):  # the caller whose attempt fails, then one that fails fast
            started = time.monotonic()
            with pytest.raises(driver.Error) as info:
                await pool.acquire()
            assert time.monotonic() - started < AT_ONCE
            assert f'password authentication failed for user "{user}"' in str(info.value)
            assert_masked(info.value)
        assert PASSWORD not in (pool.stats().last_connect_error or "")
        assert not pool.closed
    pool = Pool(driver, *pg_passwords.args(driver_name, user), timeout=TIMEOUT)  # none given
    started = time.monotonic()
    with pytest.raises(driver.Error, match="no password supplied"):
        await pool.open()
    assert time.monotonic() - started < AT_ONCE


async def _waits_through_a_connection_limit(pool: Pool, held: Any, *texts: str) -> None:
    """A caller waits while connects fail on the server's connection limit (retried, not a
    configuration error); closing ``held`` frees the slot and the caller gets a connection."""
    async with pool:
        got: list[object] = []

        async def caller() -> None:
            async with pool.connection() as conn:
                got.append(conn)

        with anyio.fail_after(HANG):
            async with anyio.create_task_group() as tg:
                tg.start_soon(caller)
                await until(lambda: pool.stats().connect_errors >= 3)
                assert got == [] and pool.stats().waiting == 1
                error = pool.stats().last_connect_error or ""
                assert all(text in error for text in texts), error
                held.close()
        assert len(got) == 1


@pytest.mark.real
@pytest.mark.postgres
async def test_postgres_too_many_connections_is_retried(pg_passwords: PasswordCluster) -> None:
    user = pg_passwords.role("Limited-pw-1", "CONNECTION LIMIT 1")
    (dsn,) = pg_passwords.args("psycopg2", user, "Limited-pw-1")
    held = psycopg2.connect(dsn)
    try:
        pool = Pool(psycopg2, dsn, min_size=0, max_size=1, timeout=TIMEOUT, backoff=FAST)
        # 53300; the slot frees when `held` closes, and the retry gets through
        await _waits_through_a_connection_limit(
            pool, held, f'too many connections for role "{user}"'
        )
    finally:
        held.close()


@pytest.mark.real
@pytest.mark.postgres
async def test_postgres_password_changed_under_a_running_pool(
    pg_passwords: PasswordCluster,
) -> None:
    user = pg_passwords.role("Before-pw-1")
    pool = Pool(
        psycopg2,
        *pg_passwords.args("psycopg2", user, "Before-pw-1"),
        min_size=1,
        max_size=1,
        timeout=TIMEOUT,
        backoff=Backoff(initial=0.05, maximum=0.2),
    )
    async with pool:
        pg_passwords.run(f"ALTER ROLE {user} PASSWORD 'After-pw-1'")
        async with pool.connection() as conn:  # the idle connection still serves
            await conn.execute("SELECT 1")
            conn.invalidate()  # ... and then goes: the pool must reconnect
        await until(lambda: pool.stats().connect_errors >= 1)
        started = time.monotonic()
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            await pool.acquire()
        assert time.monotonic() - started < AT_ONCE
        assert not pool.closed
        pg_passwords.run(f"ALTER ROLE {user} PASSWORD 'Before-pw-1'")  # rotated back
        await until(lambda: pool.stats().idle == 1)  # the back-off retries got through
        async with pool.connection(timeout=1.0) as conn:
            await conn.execute("SELECT 1")


# ----- MariaDB -----------------------------------------------------------------------------


@dataclass
class MysqlUser:
    backend: Backend
    name: str
    password: str

    def kwargs(self, **override: Any) -> dict[str, Any]:
        kwargs = {**self.backend.kwargs, "user": self.name, "password": self.password}
        return {**kwargs, **override}


@pytest.fixture
def mysql_user(tmp_path: Path) -> Iterator[MysqlUser]:
    """A MariaDB user with a password and at most one connection, dropped after the test."""
    backend = resolve("mysql", tmp_path)
    user = MysqlUser(backend, f"pk_cfg_{uuid.uuid4().hex[:10]}", "Mysql-pw-1")
    backend.run(
        f"CREATE USER IF NOT EXISTS '{user.name}'@'%' IDENTIFIED BY '{user.password}' "
        "WITH MAX_USER_CONNECTIONS 1"
    )
    try:
        backend.run(f"GRANT ALL ON test.* TO '{user.name}'@'%'")
        yield user
    finally:
        backend.run(f"DROP USER IF EXISTS '{user.name}'@'%'")


def mysql_pool(driver_name: str, kwargs: dict[str, Any], **options: Any) -> Pool:
    """A pool over PyMySQL, or over pyodbc with MariaDB's ODBC driver, from PyMySQL kwargs."""
    if driver_name == "pymysql":
        return Pool(pymysql, connect_kwargs=kwargs, **options)
    conn_str = odbc_string(
        "MariaDB",
        SERVER=kwargs["host"],
        PORT=kwargs["port"],
        DATABASE=kwargs["database"],
        UID=kwargs["user"],
        PWD=kwargs["password"],
    )
    return Pool(need("pyodbc"), conn_str, **options)


def mysql_code(exc: BaseException) -> int:
    """The MySQL error number: PyMySQL's first arg, or in pyodbc's message "(1045) (SQL...)"."""
    if isinstance(exc.args[0], int):
        return exc.args[0]
    match = re.search(r"\((\d+)\) \(SQL\w+\)", str(exc.args[-1]))
    assert match is not None, exc.args
    return int(match.group(1))


MYSQL_DRIVERS = ["pymysql", "pyodbc"]


@pytest.mark.real
@pytest.mark.mysql
@pytest.mark.parametrize("driver_name", MYSQL_DRIVERS)
@pytest.mark.parametrize(
    ("as_root", "override", "code"),
    [
        (False, {"password": PASSWORD}, 1045),
        (True, {"database": "pk_no_such_db"}, 1049),  # for the user: 1044, no access to it
        (False, {"database": "mysql"}, 1044),
    ],
)
async def test_mysql_open_fails_at_once(
    mysql_user: MysqlUser, driver_name: str, as_root: bool, override: dict[str, str], code: int
) -> None:
    kwargs = {**mysql_user.backend.kwargs, **override} if as_root else mysql_user.kwargs(**override)
    pool = mysql_pool(driver_name, kwargs, timeout=TIMEOUT)
    started = time.monotonic()
    with pytest.raises(need(driver_name).Error) as info:
        await pool.open()
    assert time.monotonic() - started < AT_ONCE
    assert mysql_code(info.value) == code and pool.closed
    assert_masked(info.value)


@pytest.mark.real
@pytest.mark.mysql
@pytest.mark.parametrize("driver_name", MYSQL_DRIVERS)
async def test_mysql_bad_password_fails_callers_at_once(
    mysql_user: MysqlUser, driver_name: str
) -> None:
    pool = mysql_pool(driver_name, mysql_user.kwargs(password=PASSWORD), min_size=0)
    async with pool:
        for _ in range(2):  # the caller whose attempt fails, then one that fails fast
            started = time.monotonic()
            with pytest.raises(need(driver_name).Error) as info:
                async with pool.connection():
                    pass
            assert time.monotonic() - started < AT_ONCE
            assert mysql_code(info.value) == 1045
            assert_masked(info.value)


@pytest.mark.real
@pytest.mark.mysql
@pytest.mark.parametrize("driver_name", MYSQL_DRIVERS)
async def test_mysql_user_connection_limit_is_retried(
    mysql_user: MysqlUser, driver_name: str
) -> None:
    held = pymysql.connect(**mysql_user.kwargs())
    try:
        options: dict[str, Any] = {"min_size": 0, "max_size": 1, "backoff": FAST}
        pool = mysql_pool(driver_name, mysql_user.kwargs(), timeout=TIMEOUT, **options)
        # the user's one connection frees when `held` closes, and the retry gets through
        await _waits_through_a_connection_limit(pool, held, "max_user_connections", "1226")
    finally:
        if held.open:
            held.close()


# ----- sqlite3 -----------------------------------------------------------------------------


async def test_sqlite_path_that_cannot_be_opened_fails_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "no-such-directory" / "app.db")
    pool = Pool(sqlite3, path, timeout=TIMEOUT)
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="unable to open database file"):
        await pool.open()
    assert time.monotonic() - started < AT_ONCE and pool.closed
    async with Pool(sqlite3, path, min_size=0, timeout=TIMEOUT) as pool:
        started = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="unable to open database file"):
            await pool.acquire()
        assert time.monotonic() - started < AT_ONCE
