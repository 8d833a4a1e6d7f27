"""Server sessions and PgBouncer clients, sampled during a measured window.

A :class:`Sampler` has connections of its own straight to PostgreSQL (and, when PgBouncer
is in the way, one to PgBouncer's admin console) and reads, every ``interval`` seconds from
the window's opening to its close:

- ``server``: the client backends of the database that carry the run's ``application_name``
  (PgBouncer passes a client's on to the server session it lends), and ``server_all``: every
  client backend of the database, ``SELECT count(*) FROM pg_stat_activity WHERE datname = ...
  AND backend_type = 'client backend'``, the sampler's own sessions left out. Where the two differ,
  someone else had sessions open on the database meanwhile;
- through PgBouncer: ``clients``, the run's client connections (``SHOW CLIENTS``), and from
  ``SHOW POOLS`` for the database ``cl_active``, ``cl_waiting`` (clients waiting for a server
  connection), ``sv_active`` and ``sv_idle``.

The result is a :data:`Series`: one list of readings per column, in time order.
"""

from __future__ import annotations

import functools
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from poolkit.conformance.pgbouncer import AdminConsole

SESSIONS_SQL = (
    "SELECT count(*) FILTER (WHERE application_name = %s), count(*) FROM pg_stat_activity"
    " WHERE datname = %s AND backend_type = 'client backend' AND pid <> ALL(%s)"
)
SERVER_COLUMNS = ("server", "server_all")
POOL_COLUMNS = ("cl_active", "cl_waiting", "sv_active", "sv_idle")
BOUNCER_COLUMNS = ("clients", *POOL_COLUMNS)
#: column -> one reading per tick
Series = dict[str, list[int]]


def pool_counts(rows: Iterable[Mapping[str, Any]], database: str) -> dict[str, int]:
    """``SHOW POOLS``'s client and server counts for ``database`` (summed over its users)."""
    counts = dict.fromkeys(POOL_COLUMNS, 0)
    for row in rows:
        if row.get("database") == database:
            for column in POOL_COLUMNS:
                counts[column] += int(row.get(column) or 0)
    return counts


def client_count(rows: Iterable[Mapping[str, Any]], database: str, application_name: str) -> int:
    """How many of ``SHOW CLIENTS``'s connections are the run's (database and name)."""
    return sum(
        1
        for row in rows
        if row.get("database") == database and row.get("application_name") == application_name
    )


def peak(series: Series, column: str) -> int:
    """The highest reading of ``column`` (0 when it was not sampled)."""
    return max(series.get(column) or [0])


def steady(series: Series, column: str) -> float:
    """The median reading of ``column``: what held for most of the window (NaN: no readings)."""
    values = series.get(column) or []
    return float(statistics.median(values)) if values else float("nan")


class Sampler:
    """Reads the session counts; open it with ``with``, then :meth:`sample` one window.

    A reading of ``pg_stat_activity`` needs the sampler's own server session to run, and on
    a small machine that the run keeps busy, a PostgreSQL backend that woke up can wait on
    the run queue for seconds (seen here on 2 vCPUs, no steal time: 1 ms of CPU in a 1.9 s
    reading, and some 5 s windows with 3 readings or none; a nice of -10 on the sampler's
    backends did not help, nor can a cancel, whose request needs the same server to fork a
    process). So the server is read over ``connections`` sessions, each in a thread of its
    own, staggered; a reading counts only if it completed inside the window, and
    :meth:`sample` returns a moment after the window's close without waiting for a late one,
    which ends by itself once the load stops (``with``'s exit waits for it).
    """

    def __init__(
        self,
        dsn: str,
        database: str,
        application_name: str,
        admin_dsn: str | None = None,
        interval: float = 0.05,
        connections: int = 2,
    ) -> None:
        self._dsn, self._database, self._name = dsn, database, application_name
        self._admin_dsn, self._interval, self._connections = admin_dsn, interval, connections
        self._conns: list[Any] = []
        #: the server sessions of the sampler's own connections, left out of every count
        self._pids: list[int] = []
        self._admin: AdminConsole | None = None
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Sampler:
        import psycopg2

        try:
            for _ in range(self._connections):
                conn = psycopg2.connect(self._dsn)
                self._conns.append(conn)
                conn.autocommit = True
                self._pids.append(int(conn.get_backend_pid()))
            if self._admin_dsn is not None:
                self._admin = AdminConsole(self._admin_dsn)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for thread in self._threads:
            thread.join(30.0)  # a late reading ends once its backend runs again
        if self._admin is not None:
            self._admin.close()
        for conn in self._conns:
            conn.close()

    def server(self, conn: Any = None) -> dict[str, int]:
        """The run's sessions and every client session on the database now."""
        cur = (conn or self._conns[0]).cursor()
        try:
            cur.execute(SESSIONS_SQL, (self._name, self._database, self._pids))
            ours, every = cur.fetchone()
        finally:
            cur.close()
        return {"server": int(ours), "server_all": int(every)}

    def bouncer(self) -> dict[str, int]:
        """PgBouncer's counts now (none without PgBouncer)."""
        if self._admin is None:
            return {}
        clients = client_count(self._admin.show("CLIENTS"), self._database, self._name)
        return {"clients": clients, **pool_counts(self._admin.show("POOLS"), self._database)}

    def sample(self, closes: float, grace: float = 0.2) -> Series:
        """Readings from now until ``closes`` (monotonic clock), in time order; returns
        ``grace`` seconds after ``closes`` at the latest, leaving out a reading still due."""
        readers: list[Callable[[], dict[str, int]]] = [
            functools.partial(self.server, conn) for conn in self._conns
        ]
        if self._admin is not None:
            readers.append(self.bouncer)
        taken: list[tuple[float, dict[str, int]]] = []  # list.append is atomic under the GIL
        failed: list[BaseException] = []
        begin = time.monotonic()

        def loop(i: int, read: Callable[[], dict[str, int]]) -> None:
            next_at = begin + self._interval * i / len(readers)
            try:
                while next_at < closes:
                    time.sleep(max(0.0, next_at - time.monotonic()))
                    reading = read()
                    done = time.monotonic()
                    if done < closes:
                        taken.append((done, reading))
                    next_at = max(next_at + self._interval, done)
            except BaseException as exc:
                failed.append(exc)

        threads = [
            threading.Thread(target=loop, args=pair, daemon=True) for pair in enumerate(readers)
        ]
        self._threads += threads
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.0, closes + grace - time.monotonic()))
        if failed:
            raise failed[0]
        series: Series = {}
        for _, reading in sorted(taken, key=lambda pair: pair[0]):
            for column, value in reading.items():
                series.setdefault(column, []).append(value)
        return series

    def wait_idle(self, timeout: float = 10.0) -> int:
        """Wait until none of the run's sessions is left on the server (a previous run's
        backends exit a moment after their clients close); returns how many are left."""
        deadline = time.monotonic() + timeout
        while True:
            left = self.server()["server"]
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.05)
