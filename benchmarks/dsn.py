"""Where the databases are: two environment variables, and every form a contender needs.

``POOLKIT_POSTGRES_DSN`` (libpq form) and ``POOLKIT_MYSQL_DSN`` (``mysql://`` URL), as the test
suite reads them. The PEP 249 drivers' connect arguments (psycopg2, PyMySQL, pyodbc with the
ODBC driver installed) come from the conformance suite's targets, so the DSN is parsed in one
place; the native async drivers get URLs and keywords derived here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from poolkit.conformance._defaults import DEFAULT_DSNS, default_dsn
from poolkit.conformance._targets import TargetError, build_target

ENV = {"postgres": "POOLKIT_POSTGRES_DSN", "mysql": "POOLKIT_MYSQL_DSN"}
DEFAULTS = DEFAULT_DSNS  # the test suite's and the conformance suite's
VERSION_SQL = {
    "postgres": "SELECT version()",
    "mysql": "SELECT CONCAT('MariaDB/MySQL ', VERSION())",
}

__all__ = ["DEFAULTS", "ENV", "Server", "TargetError"]


def _pg_keywords(dsn: str) -> dict[str, Any]:
    try:
        from psycopg2.extensions import parse_dsn
    except ImportError:
        from psycopg.conninfo import conninfo_to_dict as parse_dsn
    parts: dict[str, Any] = dict(parse_dsn(dsn))
    return parts


@dataclass(frozen=True)
class Server:
    """One database server, as every contender needs to reach it."""

    backend: str
    dsn: str
    host: str
    port: int
    user: str
    password: str
    database: str

    @classmethod
    def from_env(cls, backend: str) -> Server:
        """The server of ``backend`` from its environment variable (or the default)."""
        dsn = default_dsn(backend) or DEFAULTS[backend]
        if backend == "postgres":
            if dsn.startswith(("postgres://", "postgresql://")):
                parts = urlsplit(dsn)
                kw: dict[str, Any] = {
                    "host": parts.hostname,
                    "port": parts.port,
                    "user": parts.username,
                    "password": parts.password,
                    "dbname": parts.path.lstrip("/"),
                }
            else:
                kw = _pg_keywords(dsn)
            return cls(
                backend,
                dsn,
                str(kw.get("host") or "127.0.0.1"),
                int(kw.get("port") or 5432),
                str(kw.get("user") or "postgres"),
                str(kw.get("password") or ""),
                str(kw.get("dbname") or "postgres"),
            )
        url = urlsplit(dsn)
        return cls(
            backend,
            dsn,
            url.hostname or "127.0.0.1",
            url.port or 3306,
            url.username or "root",
            url.password or "",
            url.path.lstrip("/") or "test",
        )

    def url(self, scheme: str = "postgresql") -> str:
        """A URL form: ``postgresql://`` for asyncpg, ``postgresql+asyncpg://`` for SQLAlchemy."""
        auth = quote(self.user, safe="")
        if self.password:
            auth += ":" + quote(self.password, safe="")
        return f"{scheme}://{auth}@{self.host}:{self.port}/{quote(self.database)}"

    def dbapi(self, driver: str) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
        """``(module, args, kwargs)`` for ``module.connect(*args, **kwargs)`` of a PEP 249
        driver: ``psycopg2``, ``pymysql`` or ``pyodbc`` (raises :class:`TargetError` with the
        reason when the driver or its ODBC driver is missing)."""
        target = build_target(self.backend, driver, self.dsn, "dsn", "/tmp")
        return target.module, tuple(target.args), dict(target.kwargs)

    def keywords(self) -> dict[str, Any]:
        """Host, port, user, password and database as aiomysql takes them."""
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "db": self.database,
        }

    def redact(self, text: str) -> str:
        """``text`` with the password masked."""
        return text.replace(self.password, "***") if self.password else text

    def probe(self, timeout: float = 3.0) -> str:
        """The server's version string; raises the driver's error if it cannot be reached."""
        driver = "psycopg2" if self.backend == "postgres" else "pymysql"
        module, args, kwargs = self.dbapi(driver)
        raw = module.connect(*args, **{**kwargs, "connect_timeout": max(1, int(timeout))})
        try:
            cur = raw.cursor()
            cur.execute(VERSION_SQL[self.backend])
            return str(cur.fetchone()[0])
        finally:
            raw.close()
