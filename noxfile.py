"""Sessions: lint, typecheck, tests on every Python, the suite against each database, and the
conformance matrix (backend x driver). ``nox -l`` lists them all."""

from __future__ import annotations

import os

import nox

PYTHON_VERSIONS = ["3.10", "3.11", "3.12", "3.13"]
BACKENDS = ["sqlite", "postgres", "mysql"]
# The conformance matrix: every backend with every driver that reaches it.
CONFORMANCE = [
    ("sqlite", "sqlite3"),
    ("sqlite", "fake"),
    ("postgres", "psycopg2"),
    ("postgres", "pyodbc"),
    ("postgres", "psycopg"),
    ("postgres-pgbouncer", "psycopg2"),
    ("postgres-pgbouncer", "pyodbc"),
    ("postgres-pgbouncer", "psycopg"),
    ("mysql", "pymysql"),
    ("mysql", "pyodbc"),
    ("mssql", "pyodbc"),
]
# Server-backed sessions read their DSNs from the environment, like the test suite does.
DSN_VARS = (
    "POOLKIT_POSTGRES_DSN",
    "POOLKIT_POSTGRES_PGBOUNCER_DSN",
    "POOLKIT_MYSQL_DSN",
    "POOLKIT_MSSQL_DSN",
)

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True


def _docker_socket() -> bool:
    """Whether a Docker engine's socket is there (the plugin pings it before using it)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    return not host.startswith("unix://") or os.path.exists(host.removeprefix("unix://"))


def _env(require: str = "") -> dict[str, str]:
    env = {k: os.environ[k] for k in DSN_VARS if k in os.environ}
    if require:
        env["POOLKIT_REQUIRE_BACKENDS"] = require
    return env


@nox.session(python=PYTHON_VERSIONS)
def tests(session: nox.Session) -> None:
    """The whole suite; servers that are not reachable are skipped with a reason."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs, env=_env())


@nox.session(python="3.11", default=False)
@nox.parametrize("db", BACKENDS)
def backend(session: nox.Session, db: str) -> None:
    """Only the tests of one database; a server-backed one must be reachable."""
    session.install("-e", ".[test]")
    marker = "not real" if db == "sqlite" else db
    require = "" if db == "sqlite" else db
    session.run("python", "-m", "pytest", "-m", marker, *session.posargs, env=_env(require))


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    """mypy --strict over poolkit, tests, examples and this file."""
    session.install("-e", ".[test,lint]")
    session.run("mypy")


@nox.session(python="3.11", default=False)
@nox.parametrize(
    ("db", "driver"), CONFORMANCE, ids=[f"{db}-{driver}" for db, driver in CONFORMANCE]
)
def conformance(session: nox.Session, db: str, driver: str) -> None:
    """``pytest --pool-conformance`` on one backend through one driver (it must be reachable).

    postgres-pgbouncer without its own DSN starts a PgBouncer in front of postgres (the
    ``pgbouncer`` binary must be installed: ``apt-get install pgbouncer``).
    """
    env = _env()
    # postgres-pgbouncer can do with postgres's DSN (or container)
    names = {
        f"POOLKIT_{db.upper().replace('-', '_')}_DSN",
        f"POOLKIT_{db.split('-')[0].upper()}_DSN",
    }
    if db != "sqlite" and not names & set(env) and not _docker_socket():
        session.skip(
            f"{db}: set {' or '.join(sorted(names))}, or run where a Docker engine can start "
            "a testcontainers container"
        )
    session.install("-e", ".[test,containers]")
    session.run(
        "python",
        "-m",
        "pytest",
        "--pool-conformance",
        f"--pool-backend={db}",
        f"--pool-driver={driver}",
        f"--pool-require={db}",
        f"--pool-report=reports/conformance-{db}-{driver}",
        *session.posargs,
        env=env,
    )


@nox.session(python="3.11", default=False)
@nox.parametrize("anyio_backend", ["asyncio", "trio"])
def soak(session: nox.Session, anyio_backend: str) -> None:
    """The stateful machine, long and random: POOLKIT_SOAK_EXAMPLES cases (default 5000).

    Prints how many cases and steps ran and how many faults were injected, by kind.
    """
    session.install("-e", ".[test]")
    examples = os.environ.get("POOLKIT_SOAK_EXAMPLES", "5000")
    session.run(
        "python",
        "-m",
        "poolkit.conformance.stateful",
        f"--examples={examples}",
        "--steps=50",
        f"--backend={anyio_backend}",
        *session.posargs,
    )


# The real-database soak: each backend with the drivers that reach it.
SOAK_DB = [
    ("postgres", "psycopg2"),
    ("postgres", "pyodbc"),
    ("mysql", "pymysql"),
    ("mysql", "pyodbc"),
]


@nox.session(python="3.11", default=False)
@nox.parametrize(("db", "driver"), SOAK_DB, ids=[f"{db}-{driver}" for db, driver in SOAK_DB])
def soak_db(session: nox.Session, db: str, driver: str) -> None:
    """Tasks write through the pool while sessions get killed; POOLKIT_SOAK_SECONDS (30).

    Compares rows committed with rows in the table and the server's session count with
    max_size; fails on any loss, duplicate or excess.
    """
    env = _env()
    if f"POOLKIT_{db.upper()}_DSN" not in env:
        session.skip(f"{db}: set POOLKIT_{db.upper()}_DSN")
    session.install("-e", ".[test]")
    session.run(
        "python",
        "-m",
        "poolkit.conformance.soak_db",
        f"--backend={db}",
        f"--driver={driver}",
        f"--seconds={os.environ.get('POOLKIT_SOAK_SECONDS', '30')}",
        *session.posargs,
        env=env,
    )


@nox.session(python="3.11", default=False)
def bench(session: nox.Session) -> None:
    """poolkit beside the native async pools on the local PostgreSQL and MariaDB (issue 6).

    ``nox -s bench`` is the full run (3 rounds x 3 s, N = 1, 4, 16, 64; then K processes x a
    pool of M each, straight to PostgreSQL and through PgBouncer, 3 rounds x 5 s; then poolkit,
    psycopg_pool and asyncpg through a server restart, crash and freeze on a private
    PostgreSQL 15 cluster it starts and removes itself, 3 rounds; about 60 minutes), writing
    benchmarks/RESULTS.md, its plots and samples in benchmarks/results/, and
    benchmarks/results/pgbouncer.md, restart.md and their .json; ``nox -s bench -- --quick``
    takes about three minutes and writes benchmarks/results-quick/; ``nox -s bench --
    --workload pgbouncer`` runs the many-processes case alone, ``--workload restart`` the
    restart, crash and freeze case alone (about 4 minutes; it needs the PostgreSQL server
    binaries, POOLKIT_PG_BIN, default /usr/lib/postgresql/15/bin). Arguments after ``--`` go to
    ``python -m benchmarks`` (``--help``).
    On a shared machine, serialise runs: ``flock /tmp/poolkit-bench.lock nox -s bench``.
    """
    session.install("-e", ".[bench]")
    session.run("python", "-m", "benchmarks", *session.posargs, env=_env())
