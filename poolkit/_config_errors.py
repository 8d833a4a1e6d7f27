"""Which connect errors are configuration mistakes, per driver: retrying cannot fix them.

A pool retries a failed connect with back-off, which is right for a server that is down,
restarting or full, and wrong for a bad password, an unknown database or a DSN the driver
cannot read: those only end in the acquire timeout. Each function here answers, for one
driver family, ``(exception, driver module or None) -> the error is a configuration
mistake``; a :class:`~poolkit.DriverProfile` holds one as ``is_config_error``.

They read the driver's own error codes where it gives them (MySQL error numbers, ODBC
SQLSTATEs, ORA-/DPY- codes) and its texts where it gives none: libpq reports no SQLSTATE for
a connect that fails, so psycopg2 and psycopg 3 are read by libpq's (English) messages; a
libpq or server set to another language is not recognised and its errors are retried, as
before. Never a configuration error: refused, timed out, server starting up or shutting
down, too many connections, and a host name that does not resolve (DNS is briefly wrong
while containers start, and fixes itself).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["generic", "libpq", "mysql", "odbc", "oracle", "sqlite"]


def _is_instance(exc: BaseException, driver: Any, *names: str) -> bool:
    kinds = tuple(k for k in (getattr(driver, n, None) for n in names) if isinstance(k, type))
    return bool(kinds) and isinstance(exc, kinds)


def generic(exc: BaseException, driver: Any) -> bool:
    """Bad connect arguments (TypeError, ValueError, AttributeError), a module that cannot
    be imported, or the driver's ProgrammingError / NotSupportedError (PEP 249's classes for
    an invalid DSN or an unsupported option). Every driver's rule builds on this one."""
    if isinstance(exc, (TypeError, ValueError, AttributeError, ImportError)):
        return True
    return _is_instance(exc, driver, "ProgrammingError", "NotSupportedError")


# ----- libpq: psycopg2, psycopg 3 (and psqlODBC, which connects through libpq) ------------

_PG_SQLSTATES = frozenset({"28000", "28P01", "3D000"})

#: libpq's and the server's texts for connect errors no retry fixes. The server's come as
#: 'connection to server at "h", port p failed: FATAL:  <text>'; libpq's own (a DSN it
#: cannot use) come alone.
LIBPQ_TEXTS = re.compile(
    "|".join(
        [
            r"password authentication failed for user",  # 28P01
            r'database "[^"]*" does not exist',  # 3D000
            r'role "[^"]*" does not exist',  # 28000
            r'role "[^"]*" is not permitted to log in',  # 28000
            r"no pg_hba\.conf entry for",  # 28000
            r'permission denied for database "',  # 42501: no CONNECT privilege
            r"no password supplied",  # fe_sendauth: the server wants one, the DSN has none
            r"invalid (?:\w+ value|port number|connection option)",  # libpq reading the DSN
            r"could not match \d+ (?:host names|port numbers) to \d+",
            r'invalid value for parameter "',  # 22023: options='-c name=value'
            r'unrecognized configuration parameter "',  # 42704: options='-c name=value'
            r"server does not support SSL, but SSL was required",
            r'root certificate file "[^"]*" does not exist',
            r"no such database: ",  # PgBouncer: a database it has no entry for
        ]
    )
)


def libpq(exc: BaseException, driver: Any) -> bool:
    """psycopg2 and psycopg 3: the generic rule, SQLSTATE 28000/28P01/3D000 where the error
    has one (``pgcode``, ``sqlstate``), else libpq's texts (see :data:`LIBPQ_TEXTS`)."""
    if generic(exc, driver):
        return True
    code = getattr(exc, "pgcode", None) or getattr(exc, "sqlstate", None)
    if code in _PG_SQLSTATES:
        return True
    return LIBPQ_TEXTS.search(str(exc)) is not None


# ----- MySQL and MariaDB: PyMySQL, mysqlclient (MySQLdb) ---------------------------------

#: 1044 no access to the database, 1045 access denied (user or password), 1049 unknown
#: database, 1130 host not allowed to connect, 1251 and 2059 an authentication method the
#: client cannot use, 1698 access denied without a password (MariaDB: unix_socket
#: authentication), 1862 password expired, 3118 and 4151 account locked (MySQL, MariaDB).
MYSQL_CONFIG_CODES = frozenset({1044, 1045, 1049, 1130, 1251, 1698, 1862, 2059, 3118, 4151})
#: Retried whatever class the driver gives them (MariaDB Connector/ODBC reports 1203 and
#: 1226 under SQLSTATE 42000, which pyodbc raises as ProgrammingError): 1040 too many
#: connections, 1203 user over max_user_connections, 1226 user over a resource limit,
#: 1129 host blocked, 1053 server shutting down, 2002/2003 cannot connect (refused; and
#: PyMySQL's name resolution failures), 2005 unknown host (DNS), 2006/2013 connection lost.
MYSQL_TRANSIENT_CODES = frozenset({1040, 1053, 1129, 1203, 1226, 2002, 2003, 2005, 2006, 2013})


def mysql(exc: BaseException, driver: Any) -> bool:
    """PyMySQL and mysqlclient: an error number (the first of the exception's args) in
    :data:`MYSQL_CONFIG_CODES`, or else the generic rule, unless the number is one of
    :data:`MYSQL_TRANSIENT_CODES`."""
    code = exc.args[0] if exc.args else None
    if isinstance(code, int) and not isinstance(code, bool):
        if code in MYSQL_TRANSIENT_CODES:
            return False
        if code in MYSQL_CONFIG_CODES:
            return True
    return generic(exc, driver)


# ----- sqlite3 ---------------------------------------------------------------------------

_SQLITE_URI_ERRORS = (
    "no such access mode:",
    "no such cache mode:",
    "invalid uri authority:",
    "no such vfs:",
)


def sqlite(exc: BaseException, driver: Any) -> bool:
    """sqlite3: the generic rule, a file that cannot be opened (SQLITE_CANTOPEN, "unable to
    open database file": a missing directory, no permission, a directory) or that is not a
    database (SQLITE_NOTADB), or a ``file:`` URI with an unknown mode, cache, vfs or host.
    Out of file descriptors is SQLITE_CANTOPEN too, and counts as a mistake here."""
    if generic(exc, driver):
        return True
    name = getattr(exc, "sqlite_errorname", None)  # Python 3.11+
    if isinstance(name, str) and name.startswith(("SQLITE_CANTOPEN", "SQLITE_NOTADB")):
        return True
    text = str(exc)
    return text in ("unable to open database file", "file is not a database") or text.startswith(
        _SQLITE_URI_ERRORS
    )


# ----- pyodbc ----------------------------------------------------------------------------

#: 28xxx invalid authorization; 3D000 invalid catalog (database) name; IM002 no such DSN and
#: no default driver, IM003 the driver cannot be loaded, IM007/IM010-IM012/IM014 a
#: connection string the driver manager cannot use. (42xxx, as MariaDB's 1049 unknown
#: database or SQL Server's 4060 come, is pyodbc's ProgrammingError: the generic rule.)
ODBC_CONFIG_STATES = ("28", "3D000", "IM002", "IM003", "IM007", "IM010", "IM011", "IM012", "IM014")
# MariaDB's and MySQL's ODBC drivers put the server's error number in the message, whatever
# the SQLSTATE: "[ma-3.1.15]Access denied for user ... (1045) (SQLDriverConnect)".
_ODBC_MYSQL_NATIVE = re.compile(r"\[(?:ma-[\d.]+|MySQL)\].*\((\d+)\) \(SQL\w+\)", re.DOTALL)
# unixODBC cannot load the driver named by DRIVER= (it reports SQLSTATE 01000).
_ODBC_NO_DRIVER = "[Driver Manager]Can't open lib"


def odbc(exc: BaseException, driver: Any) -> bool:
    """pyodbc: a MySQL error number in the message (MariaDB's, MySQL's ODBC driver) decides by
    :data:`MYSQL_CONFIG_CODES` and :data:`MYSQL_TRANSIENT_CODES`; else the generic rule, a
    SQLSTATE in :data:`ODBC_CONFIG_STATES`, a driver unixODBC cannot load, or, under 08001
    (psqlODBC's state for every failed connect), one of libpq's texts."""
    text = " ".join(a for a in exc.args if isinstance(a, str))
    native = _ODBC_MYSQL_NATIVE.search(text)
    if native is not None and int(native.group(1)) in MYSQL_TRANSIENT_CODES:
        return False
    if native is not None and int(native.group(1)) in MYSQL_CONFIG_CODES:
        return True
    if generic(exc, driver):
        return True
    state = exc.args[0] if exc.args else None
    if not isinstance(state, str):
        return False
    if state.startswith(ODBC_CONFIG_STATES) or _ODBC_NO_DRIVER in text:
        return True
    return state == "08001" and LIBPQ_TEXTS.search(text) is not None


# ----- oracledb, cx_Oracle ---------------------------------------------------------------

#: ORA-01017 invalid username or password, ORA-01005 no password, ORA-01045 no CREATE
#: SESSION privilege, ORA-28000 account locked, ORA-28001 password expired, ORA-12154 a
#: connect identifier tnsnames.ora does not have; thin mode's DPY-4000 (the same), DPY-4001
#: no credentials, DPY-4017/4018/4021 a connect string it cannot read, DPY-4026/4027 no
#: tnsnames.ora or configuration directory, DPY-6002 server certificate DN mismatch.
#: Retried: ORA-12514/DPY-6001 and ORA-12505/DPY-6003 (the service registers with the
#: listener after a restart), ORA-12541 no listener, ORA-01033/01034/01089 starting or
#: shutting down, DPY-6005 cannot connect.
ORACLE_CONFIG_CODES = re.compile(
    r"\b(?:ORA-(?:01017|01005|01045|28000|28001|12154)"
    r"|DPY-(?:4000|4001|4017|4018|4021|4026|4027|6002))\b"
)


def oracle(exc: BaseException, driver: Any) -> bool:
    """oracledb and cx_Oracle: the generic rule, or a code of :data:`ORACLE_CONFIG_CODES`
    in the message."""
    return generic(exc, driver) or ORACLE_CONFIG_CODES.search(str(exc)) is not None
