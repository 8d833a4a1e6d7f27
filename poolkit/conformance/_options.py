"""The plugin's command-line options and markers: what pytest needs of poolkit in every run.

This module imports only pytest (and the standard library), so that a project with poolkit
installed pays for nothing else until it runs ``--pool-conformance``.
"""

from __future__ import annotations

import os

import pytest

__all__ = ["DEFAULT_REPORT", "MARKERS", "add_options"]

DEFAULT_REPORT = "poolkit-report"

#: marker lines for ``config.addinivalue_line("markers", ...)``
MARKERS = (
    "fake_driver(plan=None, *, paramstyle='qmark', assert_fired=False, ...): configure the "
    "fake_driver fixture (arguments are poolkit.fakes.FakeDriver's)",
    "requires(*capabilities): the pool adapter must support these",
)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("poolkit", "poolkit conformance suite")
    group.addoption(
        "--pool-conformance",
        action="store_true",
        default=os.environ.get("POOLKIT_CONFORMANCE", "") not in ("", "0"),
        help="run poolkit's pool conformance suite (env POOLKIT_CONFORMANCE=1)",
    )
    group.addoption(
        "--pool-backend",
        action="append",
        help="backends to check: sqlite, postgres, postgres-pgbouncer, mysql, mssql "
        "(env POOLKIT_BACKENDS)",
    )
    group.addoption(
        "--pool-dsn",
        action="append",
        metavar="NAME=DSN",
        help="DSN of a backend (env POOLKIT_POSTGRES_DSN, POOLKIT_POSTGRES_PGBOUNCER_DSN, "
        "POOLKIT_MYSQL_DSN, POOLKIT_MSSQL_DSN); without one, postgres-pgbouncer starts a "
        "PgBouncer in front of postgres when pgbouncer is installed",
    )
    group.addoption(
        "--pool-driver",
        action="append",
        help="drivers to use: sqlite3, fake, psycopg2, psycopg, pymysql, pyodbc "
        "(env POOLKIT_DRIVERS)",
    )
    group.addoption(
        "--pool-under-test",
        action="append",
        metavar="MODULE:FACTORY",
        help="pool adapter(s) to check (env POOLKIT_POOL_UNDER_TEST); default poolkit and "
        "psycopg_pool",
    )
    group.addoption(
        "--pool-require",
        action="append",
        help="backends that must be reachable: an unreachable one fails the run "
        "(env POOLKIT_REQUIRE)",
    )
    group.addoption(
        "--pool-report",
        metavar="PATH",
        default=os.environ.get("POOLKIT_REPORT", DEFAULT_REPORT),
        help="write the check x case matrix as Markdown (PATH.md) and JSON (PATH.json); "
        f"default {DEFAULT_REPORT}, empty: none (env POOLKIT_REPORT)",
    )
    group.addoption(
        "--pool-matrix",
        action="store_true",
        default=os.environ.get("POOLKIT_MATRIX", "") not in ("", "0"),
        help="print the check x case matrix on the terminal too; it is printed anyway when a "
        "check failed (env POOLKIT_MATRIX=1)",
    )
    group.addoption(
        "--pool-no-containers",
        action="store_true",
        default=os.environ.get("POOLKIT_NO_CONTAINERS", "") not in ("", "0"),
        help="never start testcontainers, even when a Docker engine answers "
        "(env POOLKIT_NO_CONTAINERS=1)",
    )
