"""Which connect errors are configuration errors, per driver (:mod:`poolkit._config_errors`).

Each driver profile's ``is_config_error`` against the errors its driver really raises: the
texts and codes below are those psycopg2 2.9, psycopg 3.3, PyMySQL 1.2, sqlite3 and pyodbc
5.5 (psqlODBC 13, MariaDB Connector/ODBC 3.1) gave against PostgreSQL 15 and MariaDB 10.11
on loopback; oracledb's are from its documentation. Configuration mistakes (bad password,
unknown database or role, a DSN the driver rejects) must come out True; what a server in
trouble says (refused, timed out, starting up, shutting down, too many connections) and a
host name that does not resolve must come out False. What the pool does with the answer is
in ``test_connect_failures.py``.
"""

from __future__ import annotations

import sqlite3
import types
from pathlib import Path
from typing import Any

import psycopg2
import pymysql
import pytest

import poolkit
from tests.backends import need


def stand_in(name: str, *classes: str) -> types.ModuleType:
    """A module named like a driver that cannot be imported here, with its PEP 249 classes."""
    module = types.ModuleType(name)
    error = type("Error", (Exception,), {"__module__": name})
    module.Error = error  # type: ignore[attr-defined]
    database = type("DatabaseError", (error,), {"__module__": name})
    module.DatabaseError = database  # type: ignore[attr-defined]
    for cls in classes:
        base = error if cls == "InterfaceError" else database
        setattr(module, cls, type(cls, (base,), {"__module__": name}))
    return module


def is_config(driver: Any, exc: BaseException) -> bool:
    return bool(poolkit.profile_for(driver).is_config_error(exc, driver))


# ----- the classification, per driver ------------------------------------------------------

PG_AT = 'connection to server at "127.0.0.1", port 5432 failed: '

#: (text, is a configuration error): libpq's and the server's texts, as psycopg2 gave them
LIBPQ_CASES = [
    ('invalid integer value "notaport" for connection option "port"\n', True),
    ('invalid sslmode value: "bogus"\n', True),
    ('invalid target_session_attrs value: "bogus"\n', True),
    (PG_AT + 'invalid integer value "abc" for connection option "connect_timeout"\n', True),
    (PG_AT + 'FATAL:  password authentication failed for user "app"\n', True),
    (PG_AT + 'FATAL:  database "nosuchdb" does not exist\n', True),
    (PG_AT + 'FATAL:  role "nosuchrole" does not exist\n', True),
    (PG_AT + 'FATAL:  role "nologin" is not permitted to log in\n', True),
    (PG_AT + "fe_sendauth: no password supplied\n", True),
    (
        PG_AT + 'FATAL:  permission denied for database "app"\n'
        "DETAIL:  User does not have CONNECT privilege.\n",
        True,
    ),
    (
        PG_AT + 'FATAL:  no pg_hba.conf entry for host "10.1.2.3", user "app", database "app", '
        "no encryption\n",
        True,
    ),
    (PG_AT + 'FATAL:  unrecognized configuration parameter "nosuch_param"\n', True),
    (PG_AT + 'FATAL:  invalid value for parameter "statement_timeout": "abc"\n', True),
    (PG_AT + "server does not support SSL, but SSL was required\n", True),
    (PG_AT + "FATAL:  no such database: app\n", True),  # PgBouncer
    (
        PG_AT + "Connection refused\n\tIs the server running on that host and accepting "
        "TCP/IP connections?\n",
        False,
    ),
    ('could not translate host name "db.invalid" to address: Name or service not known\n', False),
    (PG_AT + "timeout expired\n", False),
    (PG_AT + "FATAL:  the database system is starting up\n", False),  # 57P03
    (PG_AT + "FATAL:  the database system is shutting down\n", False),  # 57P03
    (PG_AT + "FATAL:  sorry, too many clients already\n", False),  # 53300
    (PG_AT + 'FATAL:  too many connections for role "app"\n', False),  # 53300
    (
        PG_AT + "FATAL:  remaining connection slots are reserved for non-replication superuser "
        "connections\n",
        False,
    ),
    (PG_AT + 'FATAL:  database "app" is not currently accepting connections\n', False),
    ("server closed the connection unexpectedly\n", False),
]


@pytest.mark.parametrize(("text", "expected"), LIBPQ_CASES)
def test_psycopg2_errors(text: str, expected: bool) -> None:
    assert is_config(psycopg2, psycopg2.OperationalError(text)) is expected


@pytest.mark.parametrize(("text", "expected"), LIBPQ_CASES)
def test_psycopg_errors(text: str, expected: bool) -> None:
    psycopg = need("psycopg")
    # psycopg 3 prefixes libpq's texts ("connection failed: ", "connection is bad: ")
    assert is_config(psycopg, psycopg.OperationalError(f"connection failed: {text}")) is expected


def test_libpq_errors_with_a_sqlstate() -> None:
    """Where the error carries a SQLSTATE (psycopg 3's classes do; psycopg2's ``pgcode`` only
    when the server's answer had one), the code decides, whatever the text."""
    psycopg = need("psycopg")
    errors = psycopg.errors
    assert is_config(psycopg, errors.InvalidPassword("nope"))  # 28P01
    assert is_config(psycopg, errors.InvalidAuthorizationSpecification("nope"))  # 28000
    assert is_config(psycopg, errors.InvalidCatalogName("nope"))  # 3D000
    assert not is_config(psycopg, errors.CannotConnectNow("nope"))  # 57P03: starting up
    assert not is_config(psycopg, errors.TooManyConnections("nope"))  # 53300


def test_psycopg2_dsn_and_argument_errors_stay_configuration_errors() -> None:
    assert is_config(psycopg2, psycopg2.ProgrammingError('invalid dsn: missing "=" after "x"'))
    assert is_config(psycopg2, psycopg2.NotSupportedError("nope"))
    assert is_config(psycopg2, TypeError("'dbnme' is an invalid keyword argument"))
    assert is_config(psycopg2, ValueError("nope"))


#: (MySQL error number and message as PyMySQL gave them, is a configuration error)
MYSQL_CASES = [
    (1045, "Access denied for user 'app'@'127.0.0.1' (using password: YES)", True),
    (1045, "Access denied for user 'app'@'127.0.0.1' (using password: NO)", True),
    (1044, "Access denied for user 'app'@'%' to database 'mysql'", True),
    (1049, "Unknown database 'nosuchdb'", True),
    (1698, "Access denied for user 'root'@'localhost'", True),
    (1130, "Host '10.1.2.3' is not allowed to connect to this MariaDB server", True),
    (4151, "Access denied, this account is locked", True),
    (2003, "Can't connect to MySQL server on '127.0.0.1' ([Errno 111] Connection refused)", False),
    (
        2003,
        "Can't connect to MySQL server on 'db.invalid' ([Errno -2] Name or service not known)",
        False,
    ),
    (2005, "Unknown MySQL server host 'db.invalid' (-2)", False),  # mysqlclient: DNS, retried
    (2013, "Lost connection to MySQL server during query", False),
    (1040, "Too many connections", False),
    (1226, "User 'app' has exceeded the 'max_user_connections' resource (current value: 1)", False),
    (1203, "User app already has more than 'max_user_connections' active connections", False),
    (1053, "Server shutdown in progress", False),
]


@pytest.mark.parametrize(("code", "message", "expected"), MYSQL_CASES)
def test_pymysql_errors(code: int, message: str, expected: bool) -> None:
    assert is_config(pymysql, pymysql.err.OperationalError(code, message)) is expected


@pytest.mark.parametrize(("code", "message", "expected"), MYSQL_CASES)
def test_mysqlclient_errors(code: int, message: str, expected: bool) -> None:
    mysqldb = stand_in("MySQLdb", "OperationalError", "ProgrammingError", "NotSupportedError")
    assert is_config(mysqldb, mysqldb.OperationalError(code, message)) is expected


def test_mysql_transient_numbers_win_over_the_class() -> None:
    message = "User 'app' has exceeded the 'max_user_connections' resource (current value: 1)"
    assert not is_config(pymysql, pymysql.err.ProgrammingError(1226, message))


def test_pymysql_argument_errors_stay_configuration_errors() -> None:
    assert is_config(pymysql, ValueError("port should be of type int"))
    assert is_config(pymysql, TypeError("unexpected keyword argument 'hots'"))
    assert is_config(pymysql, AttributeError("'NoneType' object has no attribute 'encoding'"))


def test_sqlite3_errors(tmp_path: Path) -> None:
    with pytest.raises(sqlite3.OperationalError) as cannot_open:
        sqlite3.connect(str(tmp_path / "missing" / "x.db"))
    assert is_config(sqlite3, cannot_open.value)  # SQLITE_CANTOPEN
    assert is_config(sqlite3, sqlite3.OperationalError("unable to open database file"))
    assert is_config(sqlite3, sqlite3.OperationalError("no such access mode: bogus"))
    assert is_config(sqlite3, sqlite3.DatabaseError("file is not a database"))
    # Python 3.11+ names the result code: an extended CANTOPEN code with another text
    isdir = sqlite3.OperationalError("cannot open: is a directory")
    isdir.sqlite_errorname = "SQLITE_CANTOPEN_ISDIR"  # type: ignore[attr-defined]
    assert is_config(sqlite3, isdir)
    assert not is_config(sqlite3, sqlite3.OperationalError("database is locked"))
    assert not is_config(sqlite3, sqlite3.OperationalError("connection refused"))


PYODBC_ERRORS = ("InterfaceError", "OperationalError", "ProgrammingError", "NotSupportedError")
PSQLODBC = '[08001] connection to server at "127.0.0.1", port 5432 failed: '
#: (class, SQLSTATE, message, is a configuration error): as pyodbc 5.5 gave them with
#: psqlODBC 13 and MariaDB Connector/ODBC 3.1.15, except the SQL Server line (its docs)
PYODBC_CASES = [
    (
        "OperationalError",
        "08001",
        PSQLODBC + 'FATAL:  database "pk_no_such_db" does not exist\n (101) (SQLDriverConnect)',
        True,
    ),
    (
        "OperationalError",
        "08001",
        PSQLODBC + 'FATAL:  role "pk_no_such_role" does not exist\n (101) (SQLDriverConnect)',
        True,
    ),
    (
        "OperationalError",
        "08001",
        '[08001] invalid integer value "notaport" for connection option "port"\n (101) '
        "(SQLDriverConnect)",
        True,
    ),
    (
        "InterfaceError",
        "IM002",
        "[IM002] [unixODBC][Driver Manager]Data source name not found and no default driver "
        "specified (0) (SQLDriverConnect)",
        True,
    ),
    (
        "Error",
        "01000",
        "[01000] [unixODBC][Driver Manager]Can't open lib 'Nope' : file not found (0) "
        "(SQLDriverConnect)",
        True,
    ),
    (
        "ProgrammingError",
        "42000",
        "[42000] [ma-3.1.15]Unknown database 'pk_no_such_db' (1049) (SQLDriverConnect)",
        True,
    ),
    (
        "ProgrammingError",
        "42000",
        "[42000] [ma-3.1.15]Access denied for user 'app'@'%' to database 'mysql' (1044) "
        "(SQLDriverConnect)",
        True,
    ),
    (
        "InterfaceError",
        "28000",
        "[28000] [ma-3.1.15]Access denied for user 'app'@'127.0.0.1' (using password: YES) "
        "(1045) (SQLDriverConnect)",
        True,
    ),
    (
        "InterfaceError",
        "28000",
        "[28000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Login failed for user "
        "'app'. (18456) (SQLDriverConnect)",
        True,
    ),
    (
        "OperationalError",
        "08001",
        PSQLODBC + "Connection refused\n\tIs the server running on that host and accepting "
        "TCP/IP connections?\n (101) (SQLDriverConnect)",
        False,
    ),
    (
        "OperationalError",
        "08001",
        '[08001] could not translate host name "db.invalid" to address: Name or service not '
        "known\n (101) (SQLDriverConnect)",
        False,
    ),
    (
        "OperationalError",
        "08001",
        PSQLODBC + "FATAL:  the database system is starting up\n (101) (SQLDriverConnect)",
        False,
    ),
    (
        "Error",
        "HY000",
        "[HY000] [ma-3.1.15]Can't connect to server on '127.0.0.1' (115) (2002) (SQLDriverConnect)",
        False,
    ),
    (
        "Error",
        "HY000",
        "[HY000] [ma-3.1.15]Unknown server host 'db.invalid' (-2) (2005) (SQLDriverConnect)",
        False,
    ),
    (  # a ProgrammingError by its SQLSTATE, but a full server: retried
        "ProgrammingError",
        "42000",
        "[42000] [ma-3.1.15]User 'app' has exceeded the 'max_user_connections' resource "
        "(current value: 1) (1226) (SQLDriverConnect)",
        False,
    ),
    ("OperationalError", "HYT00", "[HYT00] Login timeout expired (0) (SQLDriverConnect)", False),
]


@pytest.mark.parametrize(("cls", "state", "message", "expected"), PYODBC_CASES)
def test_pyodbc_errors(cls: str, state: str, message: str, expected: bool) -> None:
    pyodbc = stand_in("pyodbc", *PYODBC_ERRORS)  # pyodbc needs unixODBC to import
    assert is_config(pyodbc, getattr(pyodbc, cls)(state, message)) is expected


@pytest.mark.parametrize(
    ("cls", "message", "expected"),
    [
        ("DatabaseError", "ORA-01017: invalid username/password; logon denied", True),
        ("DatabaseError", "ORA-28000: The account is locked.", True),
        ("DatabaseError", "ORA-12154: TNS:could not resolve the connect identifier", True),
        ("DatabaseError", 'DPY-4000: unable to find "app" in /etc/tnsnames.ora', True),
        ("ProgrammingError", "DPY-2025: invalid connect params", True),
        (
            "OperationalError",
            "DPY-6005: cannot connect to database (CONNECTION_ID=x).\n"
            "[Errno 111] Connection refused",
            False,
        ),
        (
            "OperationalError",
            'DPY-6001: cannot connect to database (CONNECTION_ID=x). Service "app" is not '
            "registered with the listener at host 127.0.0.1 port 1521. (Similar to ORA-12514)",
            False,
        ),
        ("DatabaseError", "ORA-01033: ORACLE initialization or shutdown in progress", False),
    ],
)
def test_oracledb_errors(cls: str, message: str, expected: bool) -> None:
    oracledb = stand_in("oracledb", "OperationalError", "ProgrammingError", "NotSupportedError")
    assert is_config(oracledb, getattr(oracledb, cls)(message)) is expected


def test_unknown_drivers_keep_the_generic_rule() -> None:
    other = stand_in("otherdb", "OperationalError", "ProgrammingError", "NotSupportedError")
    assert is_config(other, other.ProgrammingError("bad DSN"))
    assert is_config(other, other.NotSupportedError("no such option"))
    assert is_config(other, TypeError("bad keyword"))
    assert is_config(other, ImportError("no module named otherdb_native"))
    # Texts are read only by the profiles that know the driver's wording.
    assert not is_config(other, other.OperationalError("password authentication failed"))
