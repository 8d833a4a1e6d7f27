"""Where each backend is looked for: a DSN given, its environment variable, else a local default.

:func:`find` is the one rule, shared by the conformance suite's resolver, ``soak_db``, the
PgBouncer helper, the test suite and the benchmarks, so they all agree.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from ._targets import address

__all__ = ["DEFAULT_DSNS", "PROBE_TIMEOUT", "Found", "answers", "default_dsn", "env_dsn", "find"]

ENV_DSN = "POOLKIT_{}_DSN"

#: Where a backend is looked for when no DSN is given: a local server as the README sets it up.
#: The test suite, the conformance suite, soak_db and the benchmarks all use these.
DEFAULT_DSNS: dict[str, str] = {
    "postgres": "host=127.0.0.1 port=5432 dbname=test user=postgres connect_timeout=5",
    "mysql": "mysql://root@127.0.0.1:3306/test",
}
#: How long the default address may take to accept a TCP connection.
PROBE_TIMEOUT = 0.5


def default_dsn(backend: str) -> str | None:
    """The backend's DSN from its environment variable, else its default (None: none)."""
    return os.environ.get(env_dsn(backend)) or DEFAULT_DSNS.get(backend)


def answers(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether something accepts a TCP connection at ``host:port`` within ``timeout``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def env_dsn(backend: str) -> str:
    """The environment variable holding a backend's DSN: ``POOLKIT_POSTGRES_PGBOUNCER_DSN``."""
    return ENV_DSN.format(backend.upper().replace("-", "_"))


@dataclass(frozen=True)
class Found:
    """Where a backend is: its DSN and where that came from, or why there is none."""

    dsn: str | None = field(repr=False)  # never printed: it may hold a password
    #: "dsn" (given, or from the environment), "default" (the default address answered), or
    #: "unavailable"
    source: str
    #: for "unavailable": what was tried ("nothing answers at the default 127.0.0.1:5432")
    why: str = ""


def find(backend: str, given: str | None = None) -> Found:
    """``given``, else ``POOLKIT_<BACKEND>_DSN``, else the default DSN when something answers
    at its address within :data:`PROBE_TIMEOUT`."""
    dsn = given or os.environ.get(env_dsn(backend))
    if dsn:
        return Found(dsn, "dsn")
    default = DEFAULT_DSNS.get(backend)
    if default is None:
        return Found(None, "unavailable", f"{backend} has no default address")
    where = address(backend, default)
    if where is not None and not answers(*where):
        return Found(None, "unavailable", f"nothing answers at the default {where[0]}:{where[1]}")
    return Found(default, "default")
