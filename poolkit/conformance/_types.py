"""What each driver does with PEP 249's basics, declared as data for the conformance checks.

PEP 249 leaves much to the driver: which Python type a SQL type comes back as, what
``rowcount`` says after a ``SELECT`` or an ``executemany``, which exception class a bad
statement raises, whether an error aborts the transaction. A pool must hand all of that over
untouched, so :mod:`poolkit.conformance.suite.test_pep249` checks what a pooled connection
does against one :class:`Declaration` per (backend, driver), the plain driver's own behaviour.

A difference between drivers is recorded here, never skipped, and the checks hold it both
ways: a driver that starts behaving otherwise (a lossy type that becomes exact, a declared
"not supported" value that makes the trip) fails its check until the declaration is updated.

Everything but ``mssql/pyodbc`` was observed on PostgreSQL 15, MariaDB 10.11 and SQLite 3
with psycopg2 2.9, psycopg 3, PyMySQL 1.1, pyodbc 5.5 (psqlODBC, MariaDB Connector/ODBC 3.1)
and Python 3.11's sqlite3. ``mssql/pyodbc`` is written from pyodbc's and SQL Server's
documentation and has not been run against a server yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from types import MappingProxyType
from typing import Literal

__all__ = [
    "DECLARATIONS",
    "LOGICAL_TYPES",
    "Declaration",
    "TypeCase",
    "declaration_for",
    "unsupported",
]

#: The values every target round-trips, in the order the checks show them.
LOGICAL_TYPES: tuple[str, ...] = (
    "int",
    "bigint",
    "decimal",
    "float",
    "text",
    "bytes",
    "date",
    "time",
    "datetime",
    "datetime_tz",
    "null",
)

BIG = 2**62 + 1
DECIMAL = Decimal("-12345.6789")
FLOAT = 0.1 + 0.2  # not exactly 0.3: any rounding on the way shows
TEXT = "naïve café — 日本語 ✓ 🐍"  # two-, three- and four-byte UTF-8
BYTES = b"\x00\x01\xfe\xffbin"  # NUL and bytes that are not UTF-8
DATE = date(2024, 2, 29)
TIME = time(23, 59, 58, 123456)
DATETIME = datetime(2024, 2, 29, 23, 59, 58, 123456)
DATETIME_TZ = DATETIME.replace(tzinfo=timezone(timedelta(hours=2)))


@dataclass(frozen=True)
class TypeCase:
    """One logical type on one target: a column of SQL type ``sql`` is sent ``send`` as a
    parameter and must give back ``back`` (equal, and of exactly ``type(back)``)."""

    sql: str
    send: object
    back: object
    #: how and why ``back`` differs from ``send``, when it does
    note: str = ""
    #: non-empty: the value cannot make the trip at all, and why; the check then requires the
    #: trip to fail (a driver error or another value back)
    not_supported: str = ""


def unsupported(sql: str, send: object, why: str) -> TypeCase:
    """A value that cannot make the trip through this driver (the check verifies that)."""
    return TypeCase(sql, send, None, not_supported=why)


@dataclass(frozen=True)
class Declaration:
    """What one driver does, on one backend, with the PEP 249 basics."""

    backend: str
    driver: str
    #: per logical type (every name of :data:`LOGICAL_TYPES`)
    types: Mapping[str, TypeCase]
    #: rowcount after a SELECT is the number of rows (else -1, "not determined")
    counts_selected_rows: bool = True
    #: rowcount after executemany is the total of the rows changed (else -1)
    executemany_counts_rows: bool = True
    #: an UPDATE counts the rows it "matched", or only those it "changed" (MySQL's affected
    #: rows, unless the client asks for CLIENT_FOUND_ROWS)
    update_counts: Literal["matched", "changed"] = "matched"
    #: PEP 249 classes raised by a syntax error, an unknown table and an unknown column
    syntax_error: str = "ProgrammingError"
    unknown_table_error: str = "ProgrammingError"
    unknown_column_error: str = "ProgrammingError"
    #: after an error, every statement fails (InternalError) until the transaction ends
    error_aborts_transaction: bool = False
    #: a transaction's second read sees a row another connection committed since its first
    #: (READ COMMITTED); False when reads keep a snapshot (REPEATABLE READ, SQLite's WAL)
    reread_sees_commits: bool = True
    #: a read waits for another connection's uncommitted row (locking READ COMMITTED)
    readers_wait_for_writers: bool = False

    def __post_init__(self) -> None:
        missing = set(LOGICAL_TYPES) - set(self.types)
        extra = set(self.types) - set(LOGICAL_TYPES)
        if missing or extra:
            raise ValueError(
                f"{self.backend}/{self.driver}: types must be {', '.join(LOGICAL_TYPES)} "
                f"(missing {sorted(missing)}, unknown {sorted(extra)})"
            )
        object.__setattr__(self, "types", MappingProxyType(dict(self.types)))

    @property
    def id(self) -> str:
        return f"{self.backend}-{self.driver}"


def _exact(sql: str, value: object) -> TypeCase:
    return TypeCase(sql, value, value)


_AS_TEXT = "no such storage class: the value travels as ISO text"

_SQLITE3 = {
    "int": _exact("INTEGER", 42),
    "bigint": _exact("INTEGER", BIG),
    "decimal": TypeCase(
        "TEXT",
        str(DECIMAL),
        str(DECIMAL),
        "no decimal storage class, and sqlite3 refuses to bind a Decimal "
        "(ProgrammingError): the value travels as text",
    ),
    "float": _exact("REAL", FLOAT),
    "text": _exact("TEXT", TEXT),
    "bytes": _exact("BLOB", BYTES),
    "date": TypeCase(
        "TEXT",
        DATE.isoformat(),
        DATE.isoformat(),
        f"{_AS_TEXT} (sqlite3's default date adapter is deprecated since Python 3.12)",
    ),
    "time": TypeCase(
        "TEXT",
        TIME.isoformat(),
        TIME.isoformat(),
        f"{_AS_TEXT} (sqlite3 refuses to bind a time: ProgrammingError)",
    ),
    "datetime": TypeCase("TEXT", DATETIME.isoformat(" "), DATETIME.isoformat(" "), _AS_TEXT),
    "datetime_tz": TypeCase(
        "TEXT", DATETIME_TZ.isoformat(" "), DATETIME_TZ.isoformat(" "), _AS_TEXT
    ),
    "null": _exact("TEXT", None),
}

_FAKE_ADAPTS = "the fake adapts it to ISO text"
_FAKE = {
    **_SQLITE3,
    "decimal": TypeCase(
        "TEXT",
        DECIMAL,
        str(DECIMAL),
        "the fake adapts a Decimal to text; sqlite3 itself refuses to bind one",
    ),
    "date": TypeCase("TEXT", DATE, DATE.isoformat(), _FAKE_ADAPTS),
    "time": TypeCase(
        "TEXT", TIME, TIME.isoformat(), f"{_FAKE_ADAPTS}; sqlite3 itself refuses to bind a time"
    ),
    "datetime": TypeCase("TEXT", DATETIME, DATETIME.isoformat(" "), _FAKE_ADAPTS),
    "datetime_tz": TypeCase("TEXT", DATETIME_TZ, DATETIME_TZ.isoformat(" "), _FAKE_ADAPTS),
}

_SESSION_ZONE = "the same instant, in the session's TimeZone"
_PSYCOPG = {
    "int": _exact("INTEGER", 42),
    "bigint": _exact("BIGINT", BIG),
    "decimal": _exact("NUMERIC(14, 4)", DECIMAL),
    "float": _exact("DOUBLE PRECISION", FLOAT),
    "text": _exact("TEXT", TEXT),
    "bytes": _exact("BYTEA", BYTES),
    "date": _exact("DATE", DATE),
    "time": _exact("TIME", TIME),
    "datetime": _exact("TIMESTAMP", DATETIME),
    "datetime_tz": TypeCase("TIMESTAMPTZ", DATETIME_TZ, DATETIME_TZ, _SESSION_ZONE),
    "null": _exact("TEXT", None),
}

_PSYCOPG2 = {
    **_PSYCOPG,
    "bytes": TypeCase(
        "BYTEA",
        BYTES,
        memoryview(BYTES).cast("c"),
        "psycopg2 returns bytea as a memoryview of format 'c', which equals neither the bytes "
        "nor a plain memoryview of them: compare bytes(value)",
    ),
}

_PG_PYODBC = {
    **_PSYCOPG,
    "time": TypeCase(
        "TIME",
        TIME,
        TIME.replace(microsecond=0),
        "pyodbc binds a time as SQL_TYPE_TIME, which has no fraction: the microseconds are "
        "lost on the way in (fetched times keep theirs)",
    ),
    "datetime_tz": TypeCase(
        "TIMESTAMPTZ",
        DATETIME_TZ,
        DATETIME,
        "pyodbc drops tzinfo when binding (the wall time is read in the session's TimeZone, "
        "so the stored instant moves by the offset) and psqlODBC returns timestamptz as a "
        "naive timestamp in the session's TimeZone",
    ),
}

_MYSQL = {
    "int": _exact("INTEGER", 42),
    "bigint": _exact("BIGINT", BIG),
    "decimal": _exact("DECIMAL(14, 4)", DECIMAL),
    "float": _exact("DOUBLE", FLOAT),
    "text": _exact("VARCHAR(100) CHARACTER SET utf8mb4", TEXT),
    "bytes": _exact("BLOB", BYTES),
    "date": _exact("DATE", DATE),
    "time": TypeCase(
        "TIME(6)",
        TIME,
        timedelta(hours=23, minutes=59, seconds=58, microseconds=123456),
        "PyMySQL returns TIME as a timedelta (MySQL's TIME is a duration, up to 838:59:59)",
    ),
    "datetime": _exact("DATETIME(6)", DATETIME),
    "datetime_tz": TypeCase(
        "DATETIME(6)",
        DATETIME_TZ,
        DATETIME,
        "MySQL has no time-zone-aware type; the driver sends the wall time and drops the offset",
    ),
    "null": _exact("VARCHAR(10)", None),
}

_NO_FRACTION = "a bound {what} loses its microseconds (pyodbc over MariaDB Connector/ODBC 3.1)"
_MYSQL_PYODBC = {
    **_MYSQL,
    "time": TypeCase(
        "TIME(6)",
        TIME,
        TIME.replace(microsecond=0),
        "a time loses its microseconds both ways (SQL_TIME_STRUCT has no fraction)",
    ),
    "datetime": TypeCase(
        "DATETIME(6)",
        DATETIME,
        DATETIME.replace(microsecond=0),
        _NO_FRACTION.format(what="datetime") + "; fetched ones keep theirs",
    ),
    "datetime_tz": TypeCase(
        "DATETIME(6)",
        DATETIME_TZ,
        DATETIME.replace(microsecond=0),
        "no time-zone-aware type; pyodbc drops the offset, and "
        + _NO_FRACTION.format(what="datetime"),
    ),
}

# Not run yet: from pyodbc's wiki (time parameters, DATETIMEOFFSET) and SQL Server's docs.
_MSSQL_PYODBC = {
    "int": _exact("INT", 42),
    "bigint": _exact("BIGINT", BIG),
    "decimal": _exact("DECIMAL(14, 4)", DECIMAL),
    "float": _exact("FLOAT", FLOAT),
    "text": _exact("NVARCHAR(100)", TEXT),
    "bytes": _exact("VARBINARY(100)", BYTES),
    "date": _exact("DATE", DATE),
    "time": TypeCase(
        "TIME(6)",
        TIME,
        TIME.replace(microsecond=0),
        "pyodbc binds a time as SQL_TYPE_TIME, which has no fraction",
    ),
    "datetime": _exact("DATETIME2(6)", DATETIME),
    "datetime_tz": unsupported(
        "DATETIMEOFFSET(6)",
        DATETIME_TZ,
        "pyodbc cannot fetch DATETIMEOFFSET (ODBC SQL type -155) without an output converter",
    ),
    "null": _exact("NVARCHAR(10)", None),
}

_SQLITE = Declaration(
    "sqlite",
    "sqlite3",
    _SQLITE3,
    counts_selected_rows=False,
    syntax_error="OperationalError",
    unknown_table_error="OperationalError",
    unknown_column_error="OperationalError",
    # the sqlite3 module begins a transaction only before INSERT/UPDATE/DELETE: reads run
    # outside one (and a reader holding one would block the writer's commit, rollback journal)
)
_PG = Declaration("postgres", "psycopg2", _PSYCOPG2, error_aborts_transaction=True)
_MYSQL_DECL = Declaration(
    "mysql",
    "pymysql",
    _MYSQL,
    update_counts="changed",
    # PyMySQL maps ER_BAD_FIELD_ERROR (1054) to OperationalError, not ProgrammingError
    unknown_column_error="OperationalError",
    reread_sees_commits=False,  # InnoDB's default REPEATABLE READ
)

_DECLARED: tuple[Declaration, ...] = (
    _SQLITE,
    replace(
        _SQLITE,
        driver="fake",
        types=_FAKE,
        counts_selected_rows=True,
        # the fake begins a transaction before any statement, SELECT included; in WAL
        # mode its first read fixes the snapshot the transaction then reads
        reread_sees_commits=False,
    ),
    _PG,
    replace(_PG, driver="psycopg", types=_PSYCOPG),
    replace(
        _PG,
        driver="pyodbc",
        types=_PG_PYODBC,
        executemany_counts_rows=False,
        # psqlODBC rolls back only the failed statement (its default rollback level)
        error_aborts_transaction=False,
    ),
    _MYSQL_DECL,
    replace(
        _MYSQL_DECL,
        driver="pyodbc",
        types=_MYSQL_PYODBC,
        executemany_counts_rows=False,
        unknown_column_error="ProgrammingError",  # SQLSTATE 42S22
    ),
    Declaration(
        "mssql",
        "pyodbc",
        _MSSQL_PYODBC,
        counts_selected_rows=False,
        executemany_counts_rows=False,
        readers_wait_for_writers=True,  # unless READ_COMMITTED_SNAPSHOT is on
    ),
)

#: Every target's declaration, by (backend, driver). Through PgBouncer each PostgreSQL driver
#: behaves as it does directly: PgBouncer hands the protocol over (observed with 1.18).
DECLARATIONS: Mapping[tuple[str, str], Declaration] = MappingProxyType(
    {
        (d.backend, d.driver): d
        for d in (
            *_DECLARED,
            *(
                replace(d, backend="postgres-pgbouncer")
                for d in _DECLARED
                if d.backend == "postgres"
            ),
        )
    }
)


def declaration_for(backend: str, driver: str) -> Declaration:
    """The declaration of a backend reached by a driver; KeyError names the known ones."""
    try:
        return DECLARATIONS[(backend, driver)]
    except KeyError:
        known = ", ".join(f"{b}/{d}" for b, d in DECLARATIONS)
        raise KeyError(f"nothing declared for {backend}/{driver} (declared: {known})") from None
