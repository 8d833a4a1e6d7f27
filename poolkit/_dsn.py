"""Database URLs: ``mysql://user:password@host:port/database?charset=utf8mb4`` read into the
keywords of ``connect()``, for drivers that take no URL themselves (PyMySQL, MySQLdb).

The one URL parser of poolkit: the pool uses it through a driver profile's ``parse_url``,
and the conformance suite and the test suite read their DSNs with it. A URL of another
database's kind (``postgresql://`` given to PyMySQL, ``mysql://`` to psycopg2) is refused
with a ``ValueError`` naming the driver, the scheme it reads and how to pass the address.
Errors never echo a URL: it may hold a password.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = [
    "ConnectArgs",
    "Url",
    "is_url",
    "mysql_arguments",
    "mysql_keywords",
    "postgres_arguments",
    "scheme_of",
    "split_url",
]

#: ``(args, kwargs)`` for ``driver.connect()``
ConnectArgs = tuple[tuple[Any, ...], dict[str, Any]]

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://")
_ENCODE = (
    "special characters in a user name or password must be percent-encoded: "
    "@ as %40, : as %3A, / as %2F"
)


@dataclass(frozen=True)
class Url:
    """The parts of a ``scheme://user:password@host:port/database?key=value`` URL, decoded.
    Parts the URL leaves out are None; the password never shows in the repr."""

    #: lower case, without a SQLAlchemy-style ``+driver``
    scheme: str
    host: str | None
    port: int | None
    user: str | None
    password: str | None = field(repr=False)
    database: str | None
    query: tuple[tuple[str, str], ...] = ()


def is_url(value: object) -> bool:
    """Whether ``value`` is a string that starts like a URL (``scheme://``)."""
    return isinstance(value, str) and _SCHEME.match(value) is not None


def scheme_of(url: str) -> str:
    """The URL's scheme in lower case, without a SQLAlchemy-style ``+driver`` suffix."""
    match = _SCHEME.match(url)
    return match.group(1).lower().partition("+")[0] if match else ""


def split_url(url: str) -> Url:
    """Read a database URL; ValueError (without the URL's text) when it cannot be read."""
    scheme = scheme_of(url)
    if not scheme:
        raise ValueError("a database URL starts with its scheme, such as mysql://")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # its message may quote a password mistaken for a port: not shown
        raise ValueError(
            f"cannot read the host and port of the {scheme}:// URL ({_ENCODE})"
        ) from None
    path = parts.path[1:] if parts.path.startswith("/") else ""
    if "/" in path:
        raise ValueError(f"the {scheme}:// URL names more than one path segment after the host")
    database = unquote(path)
    return Url(
        scheme=scheme,
        host=parts.hostname or None,
        port=port,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        database=database or None,
        query=tuple(parse_qsl(parts.query, keep_blank_values=True)),
    )


# ----- MySQL and MariaDB ------------------------------------------------------------------

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _whole(key: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"URL parameter {key} must be a whole number, got {value!r}") from None


def _flag(key: str, value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ValueError(f"URL parameter {key} must be true or false (1 or 0), got {value!r}")


def _text(key: str, value: str) -> str:
    return value


#: The query parameters a mysql:// URL may carry, each read into its connect() keyword. A
#: parameter the driver does not take (``ssl_mode`` is mysqlclient's) it refuses at open().
MYSQL_PARAMETERS: dict[str, Callable[[str, str], Any]] = {
    "autocommit": _flag,
    "bind_address": _text,
    "charset": _text,
    "collation": _text,
    "compress": _flag,
    "connect_timeout": _whole,
    "init_command": _text,
    "local_infile": _flag,
    "max_allowed_packet": _whole,
    "program_name": _text,
    "read_timeout": _whole,
    "sql_mode": _text,
    "ssl_ca": _text,
    "ssl_cert": _text,
    "ssl_disabled": _flag,
    "ssl_key": _text,
    "ssl_mode": _text,
    "ssl_verify_cert": _flag,
    "ssl_verify_identity": _flag,
    "unix_socket": _text,
    "write_timeout": _whole,
}

_OTHER_DRIVER = {
    "postgresql": "a PostgreSQL URL needs a PostgreSQL driver, such as psycopg2",
    "postgres": "a PostgreSQL URL needs a PostgreSQL driver, such as psycopg2",
    "mysql": "a MySQL URL needs a MySQL driver, such as pymysql",
    "mariadb": "a MariaDB URL needs a MySQL driver, such as pymysql",
}


def _wrong_kind(driver: str, database: str, reads: str, scheme: str, how: str) -> ValueError:
    other = _OTHER_DRIVER.get(scheme)
    given = f"not {scheme}://" if scheme else "and this is not one"
    return ValueError(
        f"Pool({driver}, URL): {driver} connects to {database} and reads only {reads} URLs, "
        f"{given}: {how}" + (f" ({other})" if other else "")
    )


def mysql_keywords(url: str, driver: str = "pymysql") -> dict[str, Any]:
    """The connect() keywords a ``mysql://`` (or ``mariadb://``) URL says: host, port, user,
    password, database and the query parameters of :data:`MYSQL_PARAMETERS`, converted.
    Only what the URL names: the driver's defaults stand for the rest."""
    if scheme_of(url) not in ("mysql", "mariadb"):
        raise _wrong_kind(
            driver,
            "MySQL and MariaDB",
            "mysql:// (or mariadb://)",
            scheme_of(url),
            "give it 'mysql://user:password@host:3306/database', or its connect() keywords "
            "in connect_kwargs={'host': ..., 'user': ..., 'password': ..., 'database': ...}",
        )
    try:
        parts = split_url(url)
    except ValueError as exc:
        raise ValueError(f"Pool({driver}, URL): {exc}") from None
    kwargs: dict[str, Any] = {}
    for key, value in (
        ("host", parts.host),
        ("port", parts.port),
        ("user", parts.user),
        ("password", parts.password),
        ("database", parts.database),
    ):
        if value is not None:
            kwargs[key] = value
    for key, text in parts.query:
        read = MYSQL_PARAMETERS.get(key)
        if read is None:
            raise ValueError(
                f"Pool({driver}, URL): the mysql:// URL parameter {key!r} is not one poolkit "
                f"reads ({', '.join(MYSQL_PARAMETERS)}); pass it in "
                f"connect_kwargs={{{key!r}: ...}}"
            )
        try:
            kwargs[key] = read(key, text)
        except ValueError as exc:
            raise ValueError(f"Pool({driver}, URL): {exc}") from None
    return kwargs


def mysql_arguments(driver: str, url: str) -> ConnectArgs:
    """A profile's ``parse_url`` for a MySQL driver that takes keywords only."""
    return (), mysql_keywords(url, driver)


# ----- PostgreSQL ------------------------------------------------------------------------


def postgres_arguments(driver: str, url: str) -> ConnectArgs:
    """A profile's ``parse_url`` for a libpq driver: libpq reads ``postgresql://`` URLs
    itself (several hosts, socket directories, every libpq parameter), so the URL goes to
    connect() as given, less a SQLAlchemy-style ``+driver`` in its scheme."""
    scheme = scheme_of(url)
    if scheme not in ("postgresql", "postgres"):
        raise _wrong_kind(
            driver,
            "PostgreSQL",
            "postgresql:// (or postgres://)",
            scheme,
            "give it 'postgresql://user:password@host:5432/database', or a libpq string "
            "such as 'host=... dbname=... user=...'",
        )
    head, _, rest = url.partition("://")
    return (f"{scheme}://{rest}" if "+" in head else url,), {}
