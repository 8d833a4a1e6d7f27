"""Finding each backend: an explicit DSN, else the default address, else a container, else why not.

Order, per backend: ``--pool-dsn NAME=DSN`` or ``POOLKIT_<NAME>_DSN`` (``-`` read as ``_``:
``POOLKIT_POSTGRES_PGBOUNCER_DSN``); then the documented default address (:data:`DEFAULT_DSNS`,
the same the test suite uses), when something answers there within half a second; then, when a
Docker engine answers, a container started once per test run and reused by every check;
otherwise the backend is unavailable, with a reason that says what to set. SQLite needs neither:
it is embedded. ``postgres-pgbouncer`` needs no container of its own: when the ``pgbouncer``
binary is installed and ``postgres`` resolves, a PgBouncer
(:mod:`poolkit.conformance.pgbouncer`) is started in front of it for the run. Start-ups are
reported on the terminal as they happen; :meth:`Resolver.close` stops all.
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._redact import Redactor
from ._defaults import DEFAULT_DSNS, answers, default_dsn, env_dsn, find

__all__ = [
    "DEFAULT_DSNS",
    "Resolved",
    "Resolver",
    "answers",
    "default_dsn",
    "docker_reachable",
    "env_dsn",
]

PGBOUNCER = "postgres-pgbouncer"


#: image and how to read a DSN from the started container, per backend
CONTAINERS: dict[str, tuple[str, str]] = {
    "postgres": ("postgres:16-alpine", "PostgresContainer"),
    "mysql": ("mariadb:11", "MySqlContainer"),
    "mssql": ("mcr.microsoft.com/mssql/server:2022-latest", "SqlServerContainer"),
}


@dataclass
class Resolved:
    """A backend's DSN and where it came from, or why there is none."""

    backend: str
    dsn: str | None = field(repr=False)  # never printed: it may hold a password
    #: "embedded", "dsn", "default" (the default address answered), "container", "started"
    #: (a PgBouncer of this run) or "unavailable"
    source: str
    why: str = ""

    @property
    def available(self) -> bool:
        return self.source != "unavailable"


def docker_reachable(timeout: float = 3.0) -> tuple[bool, str]:
    """(True, "") when a Docker engine answers a ping, else (False, why)."""
    try:
        import docker
    except ImportError as exc:
        return False, f"the docker SDK is not installed ({exc}); pip install 'poolkit[containers]'"
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://") and not os.path.exists(host.removeprefix("unix://")):
        return False, f"no Docker engine is reachable ({host.removeprefix('unix://')} is absent)"
    client = None
    try:
        # An explicit API version: the client then connects only for the ping.
        client = docker.from_env(version="1.41", timeout=int(max(1, timeout)))
        client.ping()
    except Exception as exc:
        return False, f"no Docker engine is reachable ({type(exc).__name__}: {exc})"
    finally:
        if client is not None:
            client.close()
    return True, ""


def _container_dsn(backend: str, container: Any) -> str:
    if backend == "postgres":
        url: str = container.get_connection_url()
        # testcontainers gives a SQLAlchemy URL (postgresql+psycopg2://); libpq wants plain
        return url.replace("postgresql+psycopg2://", "postgresql://", 1)
    if backend == "mysql":
        host = container.get_container_host_ip()
        port = container.get_exposed_port(3306)
        return f"mysql://root:{container.root_password}@{host}:{port}/{container.dbname}"
    host = container.get_container_host_ip()
    port = container.get_exposed_port(1433)
    return f"mssql://sa:{container.password}@{host}:{port}/master"


@dataclass
class Resolver:
    """Resolves backends once per test run; stops the containers it started."""

    dsns: dict[str, str] = field(default_factory=dict, repr=False)
    say: Callable[[str], None] = print
    use_containers: bool = True
    _cache: dict[str, Resolved] = field(default_factory=dict, repr=False)
    _containers: list[Any] = field(default_factory=list)
    _bouncers: list[Any] = field(default_factory=list)
    _docker: tuple[bool, str] | None = None

    def resolve(self, backend: str) -> Resolved:
        if backend not in self._cache:
            self._cache[backend] = self._resolve(backend)
        return self._cache[backend]

    def _resolve(self, backend: str) -> Resolved:
        if backend == "sqlite":
            return Resolved(backend, None, "embedded")
        env = env_dsn(backend)
        how = f"set {env} or pass --pool-dsn {backend}=DSN"
        found = find(backend, self.dsns.get(backend))
        if found.dsn is not None:
            return Resolved(backend, found.dsn, found.source)
        if backend == PGBOUNCER:
            return self._start_pgbouncer(how)
        missing = f"no DSN for {backend} ({how})"
        if backend in DEFAULT_DSNS:
            missing += f", {found.why}"
        if not self.use_containers:
            return Resolved(backend, None, "unavailable", missing)
        if self._docker is None:
            self._docker = docker_reachable()
        ok, why = self._docker
        if not ok:
            return Resolved(backend, None, "unavailable", f"{missing} and {why}")
        return self._start(backend, how)

    def _start(self, backend: str, how: str) -> Resolved:
        image, cls_name = CONTAINERS[backend]
        self.say(f"poolkit conformance: starting {cls_name}({image}) for {backend} ...")
        try:
            module = {
                "postgres": "testcontainers.postgres",
                "mysql": "testcontainers.mysql",
                "mssql": "testcontainers.mssql",
            }[backend]
            with warnings.catch_warnings():
                # testcontainers 4 warns about its own deprecated decorators on import
                warnings.simplefilter("ignore", DeprecationWarning)
                cls = getattr(importlib.import_module(module), cls_name)
                container = cls(image)
                container.start()
        except Exception as exc:
            why = f"{backend} container did not start ({type(exc).__name__}: {exc}); {how}"
            self.say(f"poolkit conformance: {why}")
            return Resolved(backend, None, "unavailable", why)
        self._containers.append(container)
        dsn = _container_dsn(backend, container)
        masked = Redactor([dsn])(dsn)
        self.say(f"poolkit conformance: {backend} container ready at {masked}")
        return Resolved(backend, dsn, "container")

    def _start_pgbouncer(self, how: str) -> Resolved:
        from . import pgbouncer

        if pgbouncer.find_binary() is None:
            why = (
                f"no DSN for {PGBOUNCER} ({how}), and no pgbouncer binary to start one in front "
                f"of postgres ({pgbouncer.INSTALL})"
            )
            return Resolved(PGBOUNCER, None, "unavailable", why)
        upstream = self.resolve("postgres")
        if not upstream.available or upstream.dsn is None:
            why = f"no DSN for {PGBOUNCER} ({how}), and postgres is unavailable: {upstream.why}"
            return Resolved(PGBOUNCER, None, "unavailable", why)
        self.say(f"poolkit conformance: starting PgBouncer in front of postgres for {PGBOUNCER}")
        try:
            bouncer = pgbouncer.start(upstream.dsn)
        except pgbouncer.PgBouncerError as exc:
            why = f"PgBouncer did not start in front of postgres ({exc}); {how}"
            self.say(f"poolkit conformance: {why}")
            return Resolved(PGBOUNCER, None, "unavailable", why)
        self._bouncers.append(bouncer)
        self.say(
            f"poolkit conformance: {bouncer.version} ready at {bouncer.redact(bouncer.dsn)} "
            "(transaction pooling)"
        )
        return Resolved(PGBOUNCER, bouncer.dsn, "started")

    def close(self) -> None:
        for bouncer in reversed(self._bouncers):  # before the containers they front
            try:
                bouncer.stop()
            except Exception as exc:  # the run is over; say it and go on
                self.say(f"poolkit conformance: stopping PgBouncer failed: {exc}")
        self._bouncers.clear()
        for container in reversed(self._containers):
            try:
                container.stop()
            except Exception as exc:  # the run is over; say it and go on
                self.say(f"poolkit conformance: stopping a container failed: {exc}")
        self._containers.clear()
