"""Driver profiles: what differs between DB-API drivers and matters to a pool.

A profile answers, for one driver: how to ping cheaply, whether an exception means the
connection is gone, how to cancel a running statement from another thread, whether a
transaction is open (without a round trip, where the driver knows), and how to read and set
autocommit. Every function runs on the connection's worker thread, except ``cancel``,
which by its nature runs on a helper thread while the worker is blocked in the driver, and
``is_config_error`` (whether a failed connect is a configuration mistake, see
:mod:`poolkit._config_errors`), which the pool asks on the event loop.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import re
import select
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import _config_errors
from ._dsn import ConnectArgs, mysql_arguments, postgres_arguments

__all__ = ["DriverProfile", "profile_for"]

Raw = Any


def _select_one(raw: Raw, statement: str = "SELECT 1") -> None:
    cur = raw.cursor()
    try:
        cur.execute(statement)
        cur.fetchall()
    finally:
        cur.close()


def _attr_autocommit(raw: Raw) -> bool | None:
    value = getattr(raw, "autocommit", None)
    return value if isinstance(value, bool) else None


def _set_attr_autocommit(raw: Raw, on: bool) -> None:
    raw.autocommit = on


def _unknown_tx(raw: Raw) -> bool | None:
    return None


def _no_cancel(raw: Raw, cursor: Raw | None, reconnect: Callable[[], Raw]) -> None:
    return None


def _generic_cancel(raw: Raw, cursor: Raw | None, reconnect: Callable[[], Raw]) -> None:
    cancel = getattr(raw, "cancel", None)
    if callable(cancel):
        cancel()
    elif cursor is not None and callable(getattr(cursor, "cancel", None)):
        cursor.cancel()


def _closed_attr(raw: Raw | None) -> bool:
    closed: object = getattr(raw, "closed", False)
    return isinstance(closed, (bool, int)) and bool(closed)


def _generic_disconnect(exc: BaseException, raw: Raw | None, driver: Any) -> bool:
    """The connection says it is closed, or an InterfaceError that is not about a cursor."""
    if _closed_attr(raw):
        return True
    interface_error = getattr(driver, "InterfaceError", None)
    if isinstance(interface_error, type) and isinstance(exc, interface_error):
        return "cursor" not in str(exc).lower()
    return False


def _fileno(raw: Raw) -> int | None:
    """``raw.fileno()`` (psycopg2, psycopg): None when the connection has no socket now."""
    try:
        fd = raw.fileno()
    except Exception:  # closed, or not connected
        return None
    return fd if isinstance(fd, int) and fd >= 0 else None


def _pymysql_fd(raw: Raw) -> int | None:
    sock = getattr(raw, "_sock", None)
    try:
        return int(sock.fileno()) if sock is not None else None
    except (OSError, ValueError):
        return None


def has_news(fd: int) -> bool:
    """Whether the socket ``fd`` has something to read now (data, end of file or an error),
    without waiting: ~1 µs, on any thread, without touching the driver."""
    if _POLL is not None:
        poller = _POLL()
        poller.register(fd, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))
    readable, _, broken = select.select([fd], [], [fd], 0)
    return bool(readable or broken)


_POLL = getattr(select, "poll", None)  # not on Windows, where select() takes sockets


@dataclass(frozen=True)
class DriverProfile:
    """How poolkit talks to one driver. Override fields with :func:`dataclasses.replace`."""

    name: str
    ping: Callable[[Raw], None] = _select_one
    #: (exception, raw connection or None, driver module) -> the connection is unusable
    is_disconnect: Callable[[BaseException, Raw | None, Any], bool] = _generic_disconnect
    #: (raw connection, raw cursor running the call or None, connect-a-second-connection)
    cancel: Callable[[Raw, Raw | None, Callable[[], Raw]], None] = _generic_cancel
    #: True / False when the driver knows locally, None when unknown (poolkit then rolls back)
    in_transaction: Callable[[Raw], bool | None] = _unknown_tx
    get_autocommit: Callable[[Raw], bool | None] = _attr_autocommit
    set_autocommit: Callable[[Raw, bool], None] = _set_attr_autocommit
    #: ``in_transaction`` stays right after a failed call (False: unknown until a success)
    tx_status_after_error: bool = True
    #: the driver starts transactions only before DML (sqlite3): BEGIN before a savepoint
    explicit_begin: bool = False
    #: (raw connection, driver module) -> raise the driver's disconnect error if the driver
    #: already knows, without a round trip, that the connection is lost. Run around commits
    #: and after resets, for drivers whose commit can succeed on a lost connection.
    check_alive: Callable[[Raw, Any], None] | None = None
    #: a connection must stay on the thread that made it (sqlite3's ``check_same_thread``):
    #: ``Pool(threads="auto")`` then gives each connection a thread of its own
    thread_bound: bool = False
    #: (URL) -> (args, kwargs) for ``connect()``, when a pool's one connect argument is a URL
    #: (``scheme://...``): PyMySQL's reads a ``mysql://`` URL into keywords (``connect_kwargs``
    #: given too win); raises ValueError for a URL of another kind. None: passed as given.
    parse_url: Callable[[str], ConnectArgs] | None = None
    #: (exception from connect or ``configure``, driver module or None) -> a configuration
    #: mistake no retry can fix (bad password, unknown database, a DSN the driver rejects):
    #: the pool fails its callers at once instead of retrying until the acquire timeout.
    #: Every shipped profile's builds on the generic rule: TypeError, ValueError,
    #: AttributeError, ImportError and the driver's ProgrammingError / NotSupportedError
    #: (MySQL's "too many connections" numbers excepted, whatever their class).
    is_config_error: Callable[[BaseException, Any], bool] = _config_errors.generic
    #: (raw connection) -> its socket's file descriptor, or None where the driver does not
    #: show one. An idle connection whose socket has something to read has heard from the
    #: server while nobody asked (a close after a restart, a reset, a termination notice):
    #: it is pinged before it is handed out, so a restart costs no caller a failed call.
    socket_fd: Callable[[Raw], int | None] | None = None


# ----- psycopg2 --------------------------------------------------------------------------

_PG_DISCONNECT_SQLSTATES = ("08", "57P01", "57P02", "57P03")


def _pg_disconnect(exc: BaseException, raw: Raw | None, driver: Any) -> bool:
    # psycopg2 marks the connection closed (1 or 2) when it loses the server; its
    # InterfaceError also covers harmless misuse such as "cursor already closed".
    if _closed_attr(raw):
        return True
    code = getattr(exc, "pgcode", None) or ""
    return code.startswith(_PG_DISCONNECT_SQLSTATES)


def _pg_in_tx(raw: Raw) -> bool | None:
    # 0 idle, 1 active, 2 in transaction, 3 in error, 4 unknown (connection bad)
    return bool(raw.get_transaction_status())


def _pg_cancel(raw: Raw, cursor: Raw | None, reconnect: Callable[[], Raw]) -> None:
    raw.cancel()


class _LibPQ:
    """The libpq psycopg2 runs on, called through ctypes (which releases the GIL)."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.get_cancel = lib.PQgetCancel
        self.get_cancel.argtypes = [ctypes.c_void_p]
        self.get_cancel.restype = ctypes.c_void_p
        self.cancel = lib.PQcancel
        self.cancel.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        self.cancel.restype = ctypes.c_int
        self.free_cancel = lib.PQfreeCancel
        self.free_cancel.argtypes = [ctypes.c_void_p]
        self.free_cancel.restype = None


@functools.cache
def _psycopg2_libpq() -> _LibPQ | None:
    """libpq's cancel functions, found through psycopg2's own extension module (whose
    symbol lookup reaches the libpq it links, bundled or not); None where that fails.
    Called only with a psycopg2 connection at hand, so the extension is imported."""
    path = getattr(sys.modules.get("psycopg2._psycopg"), "__file__", None)
    if not path:
        return None
    try:
        return _LibPQ(ctypes.CDLL(path))
    except (OSError, AttributeError):
        return None


def _psycopg2_cancel(raw: Raw, cursor: Raw | None, reconnect: Callable[[], Raw]) -> None:
    """psycopg2's ``connection.cancel()`` keeps the GIL while libpq connects to the server
    and waits for its answer: on a network that stopped answering, every thread of the
    process stops with it. The same libpq calls made through ctypes release the GIL, so only
    this helper thread waits. ``PQgetCancel`` copies what the request needs (the server's
    address and the session's key); the worker thread's later jobs, close included, wait for
    this cancel to finish, so the connection is not freed under it."""
    libpq = _psycopg2_libpq()
    ptr = getattr(raw, "pgconn_ptr", None)
    if libpq is None or not ptr:
        raw.cancel()
        return
    handle = libpq.get_cancel(ptr)
    if not handle:
        raise sys.modules["psycopg2"].OperationalError("libpq could not make a cancel request")
    try:
        errbuf = ctypes.create_string_buffer(256)
        if not libpq.cancel(handle, errbuf, len(errbuf)):
            message = errbuf.value.decode("utf-8", "replace").strip()
            raise sys.modules["psycopg2"].OperationalError(f"cancel request failed: {message}")
    finally:
        libpq.free_cancel(handle)


PSYCOPG2 = DriverProfile(
    name="psycopg2",
    is_disconnect=_pg_disconnect,
    cancel=_psycopg2_cancel,
    in_transaction=_pg_in_tx,
    parse_url=functools.partial(postgres_arguments, "psycopg2"),
    is_config_error=_config_errors.libpq,
    socket_fd=_fileno,
)


# ----- PyMySQL and mysqlclient -----------------------------------------------------------

# 2006 gone away, 2013 lost during query, 2014 out of sync, 2045/2055 lost,
# 1927 MariaDB "connection was killed", 1053 server shutdown, 4031 idle disconnect (MySQL 8).
_MYSQL_DISCONNECT_CODES = frozenset({2006, 2013, 2014, 2045, 2055, 1927, 1053, 4031, 1152})


def _mysql_disconnect(exc: BaseException, raw: Raw | None, driver: Any) -> bool:
    code = exc.args[0] if exc.args else None
    if isinstance(code, int) and code in _MYSQL_DISCONNECT_CODES:
        return True
    interface_error = getattr(driver, "InterfaceError", None)
    if isinstance(interface_error, type) and isinstance(exc, interface_error):
        return True
    return raw is not None and getattr(raw, "open", True) is False


def _pymysql_in_tx(raw: Raw) -> bool | None:
    return bool(raw.server_status & 1)  # SERVER_STATUS_IN_TRANS


def _mysql_ping(raw: Raw) -> None:
    try:
        raw.ping(reconnect=False)
    except TypeError:  # mysqlclient: ping() takes no reconnect flag in recent versions
        raw.ping()


def _mysql_cancel(raw: Raw, cursor: Raw | None, reconnect: Callable[[], Raw]) -> None:
    thread_id = int(raw.thread_id())
    other = reconnect()
    try:
        cur = other.cursor()
        cur.execute(f"KILL QUERY {thread_id}")
        cur.close()
    finally:
        other.close()


def _mysql_get_autocommit(raw: Raw) -> bool | None:
    return bool(raw.get_autocommit())


def _mysql_set_autocommit(raw: Raw, on: bool) -> None:
    raw.autocommit(on)


PYMYSQL = DriverProfile(
    name="pymysql",
    ping=_mysql_ping,
    is_disconnect=_mysql_disconnect,
    cancel=_mysql_cancel,
    in_transaction=_pymysql_in_tx,
    get_autocommit=_mysql_get_autocommit,
    set_autocommit=_mysql_set_autocommit,
    tx_status_after_error=False,  # server_status is updated from OK/EOF packets only
    parse_url=functools.partial(mysql_arguments, "pymysql"),
    is_config_error=_config_errors.mysql,
    socket_fd=_pymysql_fd,
)

MYSQLDB = DriverProfile(
    name="MySQLdb",
    ping=_mysql_ping,
    is_disconnect=_mysql_disconnect,
    cancel=_mysql_cancel,
    get_autocommit=_mysql_get_autocommit,
    set_autocommit=_mysql_set_autocommit,
    parse_url=functools.partial(mysql_arguments, "MySQLdb"),
    is_config_error=_config_errors.mysql,
)


# ----- sqlite3 ---------------------------------------------------------------------------


def _sqlite_in_tx(raw: Raw) -> bool | None:
    return bool(raw.in_transaction)


def _sqlite_cancel(raw: Raw, cursor: Raw | None, reconnect: Callable[[], Raw]) -> None:
    raw.interrupt()


def _sqlite_disconnect(exc: BaseException, raw: Raw | None, driver: Any) -> bool:
    return "closed database" in str(exc)


def _sqlite_get_autocommit(raw: Raw) -> bool | None:
    autocommit = getattr(raw, "autocommit", None)  # Python 3.12+
    if isinstance(autocommit, bool):
        return autocommit
    return raw.isolation_level is None


def _sqlite_set_autocommit(raw: Raw, on: bool) -> None:
    if isinstance(getattr(raw, "autocommit", None), bool):
        raw.autocommit = on
    else:
        raw.isolation_level = None if on else ""


SQLITE3 = DriverProfile(
    name="sqlite3",
    is_disconnect=_sqlite_disconnect,
    cancel=_sqlite_cancel,
    in_transaction=_sqlite_in_tx,
    get_autocommit=_sqlite_get_autocommit,
    set_autocommit=_sqlite_set_autocommit,
    explicit_begin=True,
    thread_bound=True,
    is_config_error=_config_errors.sqlite,
)


# ----- pyodbc ----------------------------------------------------------------------------


# 08xxx connection exceptions; PostgreSQL's 57P01-57P03 (session terminated, server shutting
# down or starting) as psqlODBC reports them; 01002 disconnect error; HYT01 connect timeout.
_ODBC_DISCONNECT_STATES = ("08", "57P01", "57P02", "57P03", "01002", "HYT01")
# MariaDB Connector/ODBC reports a lost socket as HY000 with the client library's native
# code in the message, "... Write error: Connection reset by peer (104) (5014)
# (SQLExecDirectW)": 2006 server gone, 2013 lost during a query, 2055 lost at a stage,
# 5013/5014 read/write error on the socket.
_ODBC_NATIVE_DISCONNECT = re.compile(r"\((2006|2013|2055|5013|5014)\) \(SQL\w+\)")


def _odbc_disconnect(exc: BaseException, raw: Raw | None, driver: Any) -> bool:
    state = exc.args[0] if exc.args else None
    if isinstance(state, str) and state.startswith(_ODBC_DISCONNECT_STATES):
        return True
    if state == "HY000" and _ODBC_NATIVE_DISCONNECT.search(str(exc)):
        return True
    return _generic_disconnect(exc, raw, driver)


def _odbc_cancel(raw: Raw, cursor: Raw | None, reconnect: Callable[[], Raw]) -> None:
    if cursor is not None:
        cursor.cancel()


def _odbc_in_tx(raw: Raw) -> bool | None:
    return False if getattr(raw, "autocommit", False) else None


_SQL_ATTR_CONNECTION_DEAD = 1209
_odbc_attr: Any = None  # SQLGetConnectAttr from the driver manager; False when unavailable


def _odbc_get_connect_attr() -> Any:
    global _odbc_attr
    if _odbc_attr is None:
        _odbc_attr = False
        for name in ("odbc", "iodbc", "odbc32"):
            path = ctypes.util.find_library(name)
            if path is None:
                continue
            try:
                fn = ctypes.CDLL(path).SQLGetConnectAttr
            except (OSError, AttributeError):
                continue
            fn.argtypes = [
                ctypes.c_void_p,
                ctypes.c_int32,
                ctypes.c_void_p,
                ctypes.c_int32,
                ctypes.c_void_p,
            ]
            fn.restype = ctypes.c_int16
            _odbc_attr = fn
            break
    return _odbc_attr


def _odbc_handle(raw: Raw) -> Any:
    """The connection's ODBC handle: ``raw.hdbc`` (pyodbc 5.4+), else read from pyodbc's
    ``Connection`` struct, whose first field after the object header has been the HDBC in
    every pyodbc 4 and 5 (checked against ``hdbc`` on 5.5 and by use on 5.3)."""
    hdbc = getattr(raw, "hdbc", None)
    if hdbc is not None:
        return hdbc
    module = sys.modules.get("pyodbc")
    version = str(getattr(module, "version", ""))
    if (
        module is None
        or type(raw) is not getattr(module, "Connection", None)
        or sys.implementation.name != "cpython"
        or not version.startswith(("4.", "5."))
    ):
        return None
    handle = ctypes.c_void_p.from_address(id(raw) + object.__basicsize__)
    return handle if handle.value else None


def _odbc_check_alive(raw: Raw, driver: Any) -> None:
    """Raise 08S01 when the ODBC driver has marked the connection dead.

    psqlODBC does so silently, for instance when closing a cursor meets the server's
    "terminating connection" message, and its SQLEndTran then returns success without
    committing anything: the caller would lose a transaction it was told was committed.
    SQL_ATTR_CONNECTION_DEAD is read locally by the driver, with no round trip.
    """
    fn = _odbc_get_connect_attr()
    hdbc = _odbc_handle(raw) if fn else None
    if not fn or hdbc is None:
        return
    value = ctypes.c_uint32(0)
    if fn(hdbc, _SQL_ATTR_CONNECTION_DEAD, ctypes.byref(value), 0, None) not in (0, 1):
        return  # SQL_SUCCESS or SQL_SUCCESS_WITH_INFO; anything else: the driver cannot say
    if value.value == 1:  # SQL_CD_TRUE
        error = getattr(driver, "OperationalError", None) or RuntimeError
        raise error(
            "08S01",
            "[08S01] the ODBC driver reports this connection dead (SQL_ATTR_CONNECTION_DEAD); "
            "its transaction did not commit, or its outcome is unknown (poolkit)",
        )


PYODBC = DriverProfile(
    name="pyodbc",
    is_disconnect=_odbc_disconnect,
    cancel=_odbc_cancel,
    in_transaction=_odbc_in_tx,
    check_alive=_odbc_check_alive,
    is_config_error=_config_errors.odbc,
)


# ----- oracledb / cx_Oracle --------------------------------------------------------------

_ORA_DISCONNECT = (
    "DPI-1080",
    "DPI-4011",
    "ORA-03113",
    "ORA-03114",
    "ORA-03135",
    "ORA-00028",
    "ORA-01012",
    "ORA-02396",
    "DPY-4011",
    "DPY-1001",
)


def _ora_disconnect(exc: BaseException, raw: Raw | None, driver: Any) -> bool:
    text = str(exc)
    return any(code in text for code in _ORA_DISCONNECT) or _generic_disconnect(exc, raw, driver)


def _ora_ping(raw: Raw) -> None:
    raw.ping()


def _ora_in_tx(raw: Raw) -> bool | None:
    value = getattr(raw, "transaction_in_progress", None)
    return value if isinstance(value, bool) else None


ORACLEDB = DriverProfile(
    name="oracledb",
    ping=_ora_ping,
    is_disconnect=_ora_disconnect,
    cancel=_pg_cancel,  # Connection.cancel() is the documented cross-thread break
    in_transaction=_ora_in_tx,
    is_config_error=_config_errors.oracle,
)

#: psycopg 3 as a plain PEP 249 driver: the generic profile, plus libpq's configuration errors.
PSYCOPG = DriverProfile(name="psycopg", is_config_error=_config_errors.libpq, socket_fd=_fileno)

GENERIC = DriverProfile(name="generic")


# ----- poolkit.fakes ----------------------------------------------------------------------


def _fake_in_tx(raw: Raw) -> bool | None:
    return bool(raw.in_transaction)


#: ``poolkit.fakes.FakeDriver``: ``closed`` turns true when a connection is dropped.
FAKE = DriverProfile(name="fake", cancel=_pg_cancel, in_transaction=_fake_in_tx)

_BY_MODULE = {
    "psycopg2": PSYCOPG2,
    "psycopg": PSYCOPG,
    "pymysql": PYMYSQL,
    "MySQLdb": MYSQLDB,
    "sqlite3": SQLITE3,
    "pyodbc": PYODBC,
    "oracledb": ORACLEDB,
    "cx_Oracle": ORACLEDB,
    "fake": FAKE,
}


def profile_for(driver: Any) -> DriverProfile:
    """The profile for a driver module (or a driver-like object); generic when unknown."""
    own = getattr(driver, "__poolkit_profile__", None)
    if isinstance(own, DriverProfile):
        return own
    if isinstance(own, str) and own in _BY_MODULE:
        return _BY_MODULE[own]
    name = getattr(driver, "__name__", "") or ""
    return _BY_MODULE.get(name.split(".")[0], GENERIC)


def driver_name(driver: Any) -> str:
    name = getattr(driver, "__name__", None)
    if isinstance(name, str) and name:
        return name.split(".")[0]
    return type(driver).__name__
