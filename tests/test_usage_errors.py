"""Natural mistakes name their fix: driver keywords given to ``Pool()``, a misspelt pool option,
a URL for a driver that takes none (read) or of the wrong kind (refused), a missing optional
dependency (what to install, never a bare ModuleNotFoundError)."""

from __future__ import annotations

import dataclasses
import logging
import os
import sqlite3
import subprocess
import sys
import types
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

import poolkit
from poolkit._dsn import mysql_keywords, split_url
from poolkit.conformance._targets import build_target
from poolkit.fakes import FakeDriver
from tests.backends import mysql_kwargs, need, resolve

ROOT = Path(__file__).resolve().parent.parent

# ----- keywords for the driver given to Pool() itself ----------------------------------------
# Each call below carries "type: ignore[arg-type]": Pool's catch-all **driver_keywords is typed
# NoReturn, so mypy refuses an unknown keyword as an argument of the wrong type. Were the
# catch-all gone, mypy would report call-arg instead and this module would fail the mypy run.


def test_driver_keywords_given_to_pool_say_connect_kwargs() -> None:
    pymysql = need("pymysql")
    with pytest.raises(TypeError) as info:
        poolkit.Pool(pymysql, host="127.0.0.1", user="root", password="hunter2")  # type: ignore[arg-type]
    assert str(info.value) == (
        "Pool() got unexpected keyword arguments host, user, password: keywords for the "
        "driver's connect() go in connect_kwargs={'host': ..., 'user': ..., 'password': ...}"
    )
    assert "hunter2" not in str(info.value)  # names, never values


def test_a_misspelt_pool_option_gets_did_you_mean() -> None:
    pymysql = need("pymysql")  # its connect() declares its keywords: max_sise is not one
    with pytest.raises(TypeError) as info:
        poolkit.Pool(pymysql, max_sise=3)  # type: ignore[arg-type]
    assert str(info.value) == (
        "Pool() got an unexpected keyword argument max_sise: did you mean max_size?"
    )


def test_a_keyword_either_misspelt_or_for_the_driver_gets_both_hints() -> None:
    # sqlite3.connect() declares no signature: timout may be a typo of timeout, or its own
    with pytest.raises(TypeError) as info:
        poolkit.Pool(sqlite3, ":memory:", timout=3)  # type: ignore[arg-type]
    assert str(info.value) == (
        "Pool() got an unexpected keyword argument timout: did you mean timeout? Keywords for "
        "the driver's connect() go in connect_kwargs={'timout': ...}"
    )


def test_driver_keywords_and_a_misspelt_option_together() -> None:
    pymysql = need("pymysql")
    with pytest.raises(TypeError) as info:
        poolkit.Pool(pymysql, host="db", max_sise=3, read_timeout=5)  # type: ignore[arg-type]
    assert str(info.value) == (
        "Pool() got unexpected keyword arguments host, max_sise, read_timeout: did you mean "
        "max_size (not max_sise)? Keywords for the driver's connect() go in "
        "connect_kwargs={'host': ..., 'read_timeout': ...}"
    )


def test_driver_keywords_beside_a_connect_factory_belong_in_the_factory() -> None:
    with pytest.raises(TypeError) as info:
        poolkit.Pool(connect=lambda: sqlite3.connect(":memory:"), isolation_level=None)  # type: ignore[arg-type]
    assert str(info.value) == (
        "Pool() got an unexpected keyword argument isolation_level: keywords for the driver's "
        "connect() belong in the connect= factory"
    )


# ----- URLs ----------------------------------------------------------------------------------


def test_a_mysql_url_is_read_into_connect_keywords() -> None:
    url = (
        "mysql+pymysql://ann:p%40ss%3Aword@DB.example:3307/shop%20db"
        "?charset=utf8mb4&connect_timeout=5&autocommit=on&ssl_verify_cert=0&init_command=SET+x%3D1"
    )
    assert mysql_keywords(url) == {
        "host": "db.example",
        "port": 3307,
        "user": "ann",
        "password": "p@ss:word",
        "database": "shop db",
        "charset": "utf8mb4",
        "connect_timeout": 5,
        "autocommit": True,
        "ssl_verify_cert": False,
        "init_command": "SET x=1",
    }
    # only what the URL names: the driver's defaults stand for the rest
    assert mysql_keywords("mariadb://db") == {"host": "db"}
    assert "password=" not in repr(split_url("mysql://ann:secret@db/shop"))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "mysql://db/shop?chraset=utf8",
            "the mysql:// URL parameter 'chraset' is not one poolkit reads",
        ),
        ("mysql://db/shop?connect_timeout=2.5", "connect_timeout must be a whole number"),
        ("mysql://db/shop?autocommit=maybe", "autocommit must be true or false"),
        ("mysql://db/shop/extra", "more than one path segment"),
    ],
)
def test_a_mysql_url_it_cannot_read_is_refused_saying_why(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mysql_keywords(url)


def test_a_password_mistaken_for_a_port_is_not_echoed() -> None:
    with pytest.raises(ValueError) as info:  # the '@host' is missing: "s3cret" reads as a port
        mysql_keywords("mysql://root:s3cret/shop")
    assert "s3cret" not in str(info.value)
    assert "percent-encoded" in str(info.value)


def _as_pymysql(fake: FakeDriver) -> poolkit.DriverProfile:
    """The fake driver's profile, reading URLs as PyMySQL's does (the fake takes any args)."""
    pymysql = need("pymysql")
    parse_url = poolkit.profile_for(pymysql).parse_url
    return dataclasses.replace(poolkit.profile_for(fake), parse_url=parse_url)


@pytest.mark.anyio
async def test_pool_reads_a_url_for_a_driver_that_takes_none() -> None:
    fake = FakeDriver()
    try:
        url = "mysql://ann:p%40ss@db.example:3307/shop?charset=utf8mb4&connect_timeout=5"
        pool = poolkit.Pool(
            fake, url, connect_kwargs={"database": "other"}, profile=_as_pymysql(fake)
        )
        async with pool:
            pass
        connect = next(c for c in fake.calls if c.op == "connect")
        assert connect.params == {
            "args": [],
            "kwargs": {
                "host": "db.example",
                "port": 3307,
                "user": "ann",
                "password": "***",  # the fake records it masked
                "database": "other",  # connect_kwargs win over the URL
                "charset": "utf8mb4",
                "connect_timeout": 5,
            },
        }
    finally:
        fake.close()


@pytest.mark.anyio
async def test_pymysql_connects_with_a_url(tmp_path: Path) -> None:
    mysql = resolve("mysql", tmp_path)
    kw = mysql.kwargs
    auth = quote(kw["user"], safe="") + (
        ":" + quote(kw["password"], safe="") if kw.get("password") else ""
    )
    url = f"mysql://{auth}@{kw['host']}:{kw['port']}/{kw['database']}?charset=utf8mb4"
    async with poolkit.Pool(mysql.driver, f"{url}&connect_timeout=5") as pool:
        row = await pool.fetchone("SELECT DATABASE(), @@character_set_client")
    assert row is not None and tuple(row) == (kw["database"], "utf8mb4")


def test_a_url_of_the_wrong_kind_is_refused_at_construction() -> None:
    pymysql = need("pymysql")
    with pytest.raises(ValueError) as info:
        poolkit.Pool(pymysql, "postgresql://ann:s3cret@db/shop")
    assert str(info.value) == (
        "Pool(pymysql, URL): pymysql connects to MySQL and MariaDB and reads only mysql:// (or "
        "mariadb://) URLs, not postgresql://: give it 'mysql://user:password@host:3306/database', "
        "or its connect() keywords in connect_kwargs={'host': ..., 'user': ..., 'password': ..., "
        "'database': ...} (a PostgreSQL URL needs a PostgreSQL driver, such as psycopg2)"
    )
    psycopg2 = need("psycopg2")
    with pytest.raises(ValueError) as info:
        poolkit.Pool(psycopg2, "mysql://ann:s3cret@db/shop")
    assert str(info.value) == (
        "Pool(psycopg2, URL): psycopg2 connects to PostgreSQL and reads only postgresql:// (or "
        "postgres://) URLs, not mysql://: give it 'postgresql://user:password@host:5432/database', "
        "or a libpq string such as 'host=... dbname=... user=...' (a MySQL URL needs a MySQL "
        "driver, such as pymysql)"
    )
    mysqldb = poolkit._profiles.MYSQLDB.parse_url
    assert mysqldb is not None
    with pytest.raises(ValueError, match=r"^Pool\(MySQLdb, URL\): MySQLdb connects to MySQL"):
        mysqldb("postgres://db/shop")


@pytest.mark.anyio
async def test_a_postgresql_url_goes_to_libpq_as_given() -> None:
    fake = FakeDriver()
    psycopg2 = need("psycopg2")
    profile = dataclasses.replace(
        poolkit.profile_for(fake), parse_url=poolkit.profile_for(psycopg2).parse_url
    )
    try:
        # SQLAlchemy's "+driver" is dropped: libpq reads postgresql:// and postgres:// only
        url = "postgresql+psycopg2://ann@db1:5432,db2:5433/shop?sslmode=disable"
        async with poolkit.Pool(fake, url, profile=profile):
            pass
        connect = next(c for c in fake.calls if c.op == "connect")
        assert connect.params == {
            "args": ["postgresql://ann@db1:5432,db2:5433/shop?sslmode=disable"],
            "kwargs": {},
        }
    finally:
        fake.close()


class _EchoError(Exception):
    pass


def _echo_driver() -> Any:
    """A PyMySQL stand-in whose connect() fails repeating everything it was given, as some
    drivers' messages repeat a DSN: the worst case for secrets in errors and logs."""

    def connect(*args: Any, **kwargs: Any) -> Any:
        raise driver.OperationalError(f"cannot connect with {args} {kwargs}")

    driver = types.SimpleNamespace(
        __poolkit_profile__="pymysql",
        connect=connect,
        paramstyle="pyformat",
        Error=_EchoError,
        OperationalError=type("OperationalError", (_EchoError,), {}),
    )
    return driver


@pytest.mark.anyio
async def test_a_password_read_from_a_url_never_shows(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="poolkit")
    pool = poolkit.Pool(_echo_driver(), "mysql://ann:s3%40cret@db/shop", timeout=0.3)
    with pytest.raises(poolkit.PoolTimeout) as info:
        await pool.open()
    message = str(info.value)
    assert "'password': '***'" in message  # the driver's message, masked
    error = info.value.connect_error  # the driver's exception, masked too
    assert error is not None and "'password': '***'" in str(error)
    shown = (message, caplog.text, repr(pool), str(pool.stats()), str(error), repr(error.args))
    for text in shown:
        assert "s3@cret" not in text and "s3%40cret" not in text


def test_the_test_and_conformance_suites_read_dsns_as_the_pool_does(tmp_path: Path) -> None:
    need("pymysql")
    dsn = "mysql://ann:p%40ss@db.example:3307/shop?charset=utf8mb4&connect_timeout=9"
    given = {"host": "db.example", "port": 3307, "user": "ann", "password": "p@ss"}
    assert mysql_kwargs(dsn) == {
        **given,
        "database": "shop",
        "charset": "utf8mb4",
        "connect_timeout": 9,
    }
    target = build_target("mysql", "pymysql", dsn, "dsn", str(tmp_path))
    assert dict(target.kwargs) == {
        **given,
        "database": "shop",
        "charset": "utf8mb4",
        "connect_timeout": 9,
    }


# ----- missing optional dependencies ---------------------------------------------------------

# Makes the named top-level modules "not installed": their import raises ModuleNotFoundError,
# as it does where they are absent (a None in sys.modules would say "import halted" instead).
_HIDE = """\
import sys
HIDDEN = {hidden!r}
class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
assert not HIDDEN & set(sys.modules), "imported before it could be hidden"
sys.meta_path.insert(0, _NotInstalled())
"""


def _without(hidden: set[str], code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where the ``hidden`` modules are not installed.

    HYPOTHESIS_NO_PLUGINS: hypothesis, when imported, loads the plugins installed packages
    declare (trio declares one); a package that is not installed declares none.
    """
    env = dict(os.environ, PYTHONPATH=str(ROOT), HYPOTHESIS_NO_PLUGINS="1")
    return subprocess.run(
        [sys.executable, "-c", _HIDE.format(hidden=hidden) + code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _last_line(result: subprocess.CompletedProcess[str]) -> str:
    return result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""


@pytest.mark.parametrize(
    ("hidden", "module", "says"),
    [
        (
            "opentelemetry",
            "poolkit.otel",
            "ImportError: poolkit.otel needs the OpenTelemetry API (opentelemetry-api): "
            "pip install 'poolkit[otel]'",
        ),
        (
            "hypothesis",
            "poolkit.fakes.strategies",
            "poolkit._optional.MissingDependency: hypothesis is not installed: "
            "pip install 'poolkit[fakes]' (hypothesis) (for poolkit.fakes.strategies)",
        ),
        (
            "hypothesis",
            "poolkit.conformance.stateful",
            "poolkit._optional.MissingDependency: hypothesis is not installed: "
            "pip install 'poolkit[fakes]' (hypothesis) (for poolkit.conformance.stateful)",
        ),
        (
            "pytest",
            "poolkit.conformance.plugin",
            "poolkit._optional.MissingDependency: pytest is not installed: "
            "pip install 'poolkit[conformance]' (poolkit.conformance.plugin is a pytest plugin)",
        ),
        (
            "pytest",
            "poolkit.conformance.suite.test_pool",
            "poolkit._optional.MissingDependency: pytest is not installed: "
            "pip install 'poolkit[conformance]' (the conformance checks run under pytest)",
        ),
    ],
)
def test_a_missing_optional_dependency_says_what_to_install(
    hidden: str, module: str, says: str
) -> None:
    result = _without({hidden}, f"import {module}")
    assert result.returncode == 1
    assert _last_line(result) == says


def test_the_command_line_tools_need_no_test_dependencies() -> None:
    result = _without(
        {"pytest", "hypothesis", "rich", "trio"},
        "import poolkit.__main__, poolkit.conformance.soak_db, poolkit.conformance.pgbouncer",
    )
    assert result.returncode == 0, result.stderr


def test_the_pgbouncer_admin_console_says_to_install_psycopg2() -> None:
    code = (
        "from poolkit.conformance.pgbouncer import AdminConsole\n"
        "AdminConsole('host=127.0.0.1 port=1 user=pgbouncer dbname=pgbouncer')\n"
    )
    result = _without({"psycopg2"}, code)
    assert _last_line(result) == (
        "poolkit.conformance.pgbouncer.PgBouncerError: the admin console is reached with "
        "psycopg2: psycopg2 is not installed: pip install 'poolkit[postgres]' (psycopg2-binary)"
    )


@pytest.mark.parametrize(
    ("module", "argv", "says"),
    [
        (
            "poolkit",
            ["--loop", "trio"],
            "python -m poolkit: error: --loop trio: trio is not installed: pip install trio",
        ),
        (
            "poolkit.conformance.soak_db",
            ["--anyio-backend", "trio"],
            "python -m poolkit.conformance.soak_db: error: --anyio-backend trio: trio is not "
            "installed: pip install trio",
        ),
        (
            "poolkit.conformance.stateful",
            ["--examples", "1", "--steps", "1"],  # on asyncio and trio by default
            "python -m poolkit.conformance.stateful: error: --backend trio: trio is not "
            "installed: pip install trio (or pass --backend asyncio)",
        ),
    ],
)
def test_a_command_asked_for_trio_without_trio_says_pip_install_trio(
    module: str, argv: list[str], says: str
) -> None:
    code = (
        "import runpy\n"
        f"sys.argv = [{module!r}, *{argv!r}]\n"
        f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
    )
    result = _without({"trio"}, code)
    assert result.returncode == 2, result.stderr
    assert _last_line(result) == says


def test_a_trio_state_machine_without_trio_says_what_to_install() -> None:
    code = "from poolkit.conformance.stateful import pool_machine\npool_machine(backend='trio')\n"
    result = _without({"trio"}, code)
    assert _last_line(result) == (
        "poolkit._optional.MissingDependency: trio is not installed: pip install trio "
        "(pool_machine(backend='trio'))"
    )
