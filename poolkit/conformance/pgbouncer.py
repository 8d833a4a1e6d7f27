"""PgBouncer in transaction pooling mode in front of a PostgreSQL server, started on demand.

Services that run many processes put PgBouncer between their pools and PostgreSQL: each
process keeps its own pool of client connections to PgBouncer, and PgBouncer shares a few
server connections among all of them, one transaction at a time. :func:`start` runs one for a
test run or a benchmark::

    from poolkit.conformance.pgbouncer import start

    with start("host=127.0.0.1 dbname=test user=postgres") as bouncer:
        ...  # connect to bouncer.dsn; bouncer.admin() is its admin console

It writes its own ``pgbouncer.ini`` and user list into a private temporary directory:
``pool_mode = transaction``, ``listen_addr = 127.0.0.1`` on a free port, no Unix socket,
``default_pool_size`` server connections per database and user, ``max_client_conn`` clients,
the startup parameters drivers send that PgBouncer does not know ignored, and the upstream
user as the admin console's user (``SHOW CLIENTS``, ``SHOW POOLS``). An upstream DSN with a
password puts that password in the user list (readable by PgBouncer's user only) and makes
clients authenticate with SCRAM; without one, ``auth_type = trust``. The password is in
:attr:`PgBouncer.dsn` (clients need it) and nowhere that prints: reprs, logs and errors are
masked.

PgBouncer refuses to run as root: as root, it is started with ``--user`` (``postgres`` where
that account exists, else ``nobody``). It is stopped by :meth:`PgBouncer.stop` (bounded: SIGTERM,
then SIGKILL), on leaving the ``with`` block, and at interpreter exit.

PgBouncer 1.18 (Debian 12) cannot carry prepared statements in transaction mode: drivers must
not prepare on the server (psycopg 3: ``prepare_threshold=None``; psqlODBC:
``UseServerSidePrepare=0``; psycopg2 never prepares).

From a shell, ``python -m poolkit.conformance.pgbouncer --upstream DSN`` prints the DSN and runs
until interrupted.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import getpass
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._optional import unavailable
from .._redact import Redactor
from ._defaults import DEFAULT_DSNS, find
from ._targets import TargetError, _pg_parts

__all__ = [
    "AdminConsole",
    "PgBouncer",
    "PgBouncerError",
    "PgBouncerNotInstalled",
    "Upstream",
    "admin_dsn",
    "config_files",
    "find_binary",
    "main",
    "start",
]

log = logging.getLogger("poolkit.conformance.pgbouncer")

INSTALL = "apt-get install pgbouncer"
#: where Debian and most distributions put the binary (``/usr/sbin`` is not on every PATH)
_SEARCH = ("/usr/sbin", "/usr/local/sbin", "/usr/local/bin", "/usr/bin")
#: startup parameters that drivers send and PgBouncer would refuse the connection for
IGNORED_STARTUP_PARAMETERS = ("extra_float_digits", "options")
#: upstream DSN keys the client DSN keeps (the rest describe the way to the server)
_CLIENT_KEYS = ("connect_timeout",)


class PgBouncerError(Exception):
    """PgBouncer could not be configured, did not start or did not answer (message says why)."""


class PgBouncerNotInstalled(PgBouncerError):
    """The ``pgbouncer`` binary is not installed (``apt-get install pgbouncer``)."""


def find_binary() -> str | None:
    """The path of the ``pgbouncer`` binary: on PATH, or in an sbin directory; else None."""
    found = shutil.which("pgbouncer")
    if found:
        return found
    for directory in _SEARCH:
        candidate = Path(directory) / "pgbouncer"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _dsn_value(value: object) -> str:
    """A libpq connection string value, quoted when it must be."""
    text = str(value)
    if text and not re.search(r"[\s'\\]", text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _dsn(**items: object) -> str:
    return " ".join(f"{k}={_dsn_value(v)}" for k, v in items.items() if v not in (None, ""))


def admin_dsn(dsn: str) -> str:
    """The DSN of the admin console of the PgBouncer that ``dsn`` reaches: database
    ``pgbouncer``, same user (it must be in PgBouncer's admin_users or stats_users)."""
    try:
        parts = _pg_parts(dsn)
    except TargetError as exc:
        raise PgBouncerError(str(exc)) from None
    items = {k: str(v) for k, v in parts.items() if v is not None}
    return _dsn(**{**items, "dbname": "pgbouncer"})


@dataclass(frozen=True)
class Upstream:
    """The PostgreSQL server PgBouncer forwards to, read from a libpq DSN or URL."""

    host: str
    port: int
    dbname: str
    user: str
    password: str = field(default="", repr=False)
    sslmode: str = ""
    #: client-side settings kept in the DSN PgBouncer hands out (``connect_timeout``)
    client: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, dsn: str) -> Upstream:
        try:
            parts = _pg_parts(dsn)
        except TargetError as exc:
            raise PgBouncerError(f"upstream: {exc}") from None
        user = str(parts.get("user") or "") or getpass.getuser()  # libpq's default
        try:
            port = int(parts.get("port") or 5432)
        except ValueError:
            raise PgBouncerError(f"upstream: port {parts.get('port')!r} is not a number") from None
        return cls(
            host=str(parts.get("host") or "127.0.0.1"),
            port=port,
            dbname=str(parts.get("dbname") or user),
            user=user,
            password=str(parts.get("password") or ""),
            sslmode=str(parts.get("sslmode") or ""),
            client=tuple((k, str(parts[k])) for k in _CLIENT_KEYS if parts.get(k)),
        )


def _userlist_entry(*values: str) -> str:
    return " ".join('"' + v.replace('"', '""') + '"' for v in values)


def config_files(
    upstream: Upstream,
    *,
    directory: str | Path,
    port: int,
    pool_size: int = 20,
    max_client_conn: int = 200,
) -> dict[str, str]:
    """The text of ``pgbouncer.ini`` and ``userlist.txt`` for PgBouncer in ``directory``.

    The password, if any, is in ``userlist.txt`` only.
    """
    directory = Path(directory)
    server = _dsn(host=upstream.host, port=upstream.port)
    tls = f"server_tls_sslmode = {upstream.sslmode}\n" if upstream.sslmode else ""
    ini = (
        "; written by poolkit.conformance.pgbouncer\n"
        "[databases]\n"
        f"* = {server}\n"
        "\n"
        "[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {int(port)}\n"
        "unix_socket_dir =\n"
        "pool_mode = transaction\n"
        f"default_pool_size = {int(pool_size)}\n"
        f"max_client_conn = {int(max_client_conn)}\n"
        f"auth_type = {'scram-sha-256' if upstream.password else 'trust'}\n"
        f"auth_file = {directory / 'userlist.txt'}\n"
        f"admin_users = {upstream.user}\n"
        f"stats_users = {upstream.user}\n"
        f"ignore_startup_parameters = {','.join(IGNORED_STARTUP_PARAMETERS)}\n"
        f"{tls}"
        "logfile =\n"
        "pidfile =\n"
        "log_connections = 0\n"
        "log_disconnections = 0\n"
    )
    return {
        "pgbouncer.ini": ini,
        "userlist.txt": _userlist_entry(upstream.user, upstream.password) + "\n",
    }


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as() -> str | None:
    """The account PgBouncer switches to when started as root (it refuses to run as root)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    import pwd

    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise PgBouncerError("running as root, and neither a postgres nor a nobody account exists")


_RUNNING: set[PgBouncer] = set()
_RUNNING_LOCK = threading.Lock()


@atexit.register
def _stop_all() -> None:
    with _RUNNING_LOCK:
        running = list(_RUNNING)
    for bouncer in running:
        bouncer.stop()


class PgBouncer:
    """A PgBouncer process this module started: its DSN, its admin console, ``stop()``."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        directory: Path,
        upstream: Upstream,
        port: int,
        version: str,
    ) -> None:
        self._process = process
        self._directory = directory
        self.upstream = upstream
        self.port = port
        #: e.g. "PgBouncer 1.18.0"
        self.version = version
        self._redact = Redactor(extra=[upstream.password] if upstream.password else [])
        self._lock = threading.Lock()
        with _RUNNING_LOCK:
            _RUNNING.add(self)

    @property
    def dsn(self) -> str:
        """A libpq DSN of PgBouncer, for clients: the upstream's database, user and password."""
        return self._dsn(self.upstream.dbname)

    @property
    def admin_dsn(self) -> str:
        """The DSN of PgBouncer's admin console (database ``pgbouncer``)."""
        return self._dsn("pgbouncer")

    def _dsn(self, dbname: str) -> str:
        u = self.upstream
        return _dsn(
            host="127.0.0.1",
            port=self.port,
            dbname=dbname,
            user=u.user,
            password=u.password,
            **dict(u.client),
        )

    def redact(self, text: str) -> str:
        """``text`` with the upstream password masked."""
        return self._redact(text)

    @property
    def pid(self) -> int:
        """The PgBouncer process's id (a benchmark reads its CPU time in ``/proc``)."""
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    def admin(self) -> AdminConsole:
        """A connection to the admin console (close it, or use it in a ``with`` block)."""
        return AdminConsole(self.admin_dsn)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop PgBouncer (SIGTERM: it drops its clients; SIGKILL after ``timeout`` s) and
        remove its directory. Idempotent."""
        with self._lock:
            if self._process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self._process.send_signal(signal.SIGTERM)
                try:
                    self._process.wait(timeout)
                except subprocess.TimeoutExpired:
                    log.warning("PgBouncer on port %d did not stop; killing it", self.port)
                    self._process.kill()
                    self._process.wait(timeout)
                log.info("stopped PgBouncer on 127.0.0.1:%d", self.port)
            shutil.rmtree(self._directory, ignore_errors=True)
            with _RUNNING_LOCK:
                _RUNNING.discard(self)

    def __enter__(self) -> PgBouncer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        u = self.upstream
        state = "running" if self.running else "stopped"
        return (
            f"<PgBouncer 127.0.0.1:{self.port} -> {u.host}:{u.port} (transaction pooling) {state}>"
        )


def start(
    upstream: str,
    *,
    pool_size: int = 20,
    max_client_conn: int = 200,
    timeout: float = 10.0,
    binary: str | None = None,
    user: str | None = None,
) -> PgBouncer:
    """Start PgBouncer in front of the PostgreSQL server at the DSN ``upstream``.

    Returns once it accepts connections, within ``timeout`` seconds (else
    :class:`PgBouncerError`, with its log, masked). ``pool_size`` is its
    ``default_pool_size`` (server connections per database and user), ``max_client_conn``
    the clients it accepts. ``user`` is the account it runs as when started as root
    (default ``postgres``, else ``nobody``). Raises :class:`PgBouncerNotInstalled` when there
    is no ``pgbouncer`` binary.
    """
    path = binary or find_binary()
    if path is None:
        raise PgBouncerNotInstalled(f"the pgbouncer binary is not installed ({INSTALL})")
    parsed = Upstream.parse(upstream)
    redact = Redactor([upstream], extra=[parsed.password] if parsed.password else [])
    run_as = user or _run_as()
    version = _version(path)
    last = ""
    for _attempt in range(3):  # a free port can be taken between asking and binding
        port = _free_port()
        directory = Path(tempfile.mkdtemp(prefix="poolkit-pgbouncer-"))
        try:
            process = _spawn(path, directory, parsed, port, run_as, pool_size, max_client_conn)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        bouncer = PgBouncer(process, directory, parsed, port, version)
        try:
            ready, last = _wait_ready(process, directory / "pgbouncer.log", port, timeout)
        except BaseException:
            bouncer.stop()
            raise
        if ready:
            log.info(
                "started %s on 127.0.0.1:%d in front of %s:%d (transaction pooling)",
                version,
                port,
                parsed.host,
                parsed.port,
            )
            return bouncer
        bouncer.stop()
        if "Address already in use" not in last:
            break
    raise PgBouncerError(f"PgBouncer did not start: {redact(last.strip()) or 'no output'}")


def _version(path: str) -> str:
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PgBouncerError(f"{path} --version failed: {exc}") from None
    first = (out.stdout or out.stderr).strip().splitlines()
    return first[0] if first and first[0].startswith("PgBouncer ") else "PgBouncer (version?)"


def _spawn(
    path: str,
    directory: Path,
    upstream: Upstream,
    port: int,
    run_as: str | None,
    pool_size: int,
    max_client_conn: int,
) -> subprocess.Popen[bytes]:
    files = config_files(
        upstream,
        directory=directory,
        port=port,
        pool_size=pool_size,
        max_client_conn=max_client_conn,
    )
    owner = None
    if run_as is not None:
        import pwd

        try:
            entry = pwd.getpwnam(run_as)
        except KeyError:
            raise PgBouncerError(f"no account {run_as!r} to run PgBouncer as") from None
        owner = (entry.pw_uid, entry.pw_gid)
    for name, text in files.items():
        file = directory / name
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
    if owner is not None:  # PgBouncer reads its files again as that account
        for item in (directory, *(directory / n for n in files)):
            os.chown(item, *owner)
    argv = [path, *(["--user", run_as] if run_as else []), str(directory / "pgbouncer.ini")]
    with open(directory / "pgbouncer.log", "wb") as logfile:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            cwd=directory,
            start_new_session=True,  # a Ctrl-C in the terminal is ours to handle, not its
        )


def _wait_ready(
    process: subprocess.Popen[bytes], logfile: Path, port: int, timeout: float
) -> tuple[bool, str]:
    """(True, log) once PgBouncer listens on ``port`` and accepts; (False, log) if it exits
    or does not within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    listening = f"listening on 127.0.0.1:{port}"
    text = ""
    while time.monotonic() < deadline:
        text = logfile.read_text(errors="replace") if logfile.exists() else ""
        if process.poll() is not None:
            return False, text
        if listening in text:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return True, text
            except OSError:
                pass
        time.sleep(0.02)
    return False, f"{text}\n(not accepting connections within {timeout:g} s)"


class AdminConsole:
    """A connection to PgBouncer's admin console, through psycopg2 with autocommit.

    The console speaks only the simple query protocol and accepts no transaction (``BEGIN``
    is refused), so this is the one way the conformance suite asks it anything.
    """

    def __init__(self, dsn: str) -> None:
        why = unavailable("psycopg2")
        if why is not None:
            raise PgBouncerError(f"the admin console is reached with psycopg2: {why}")
        import psycopg2

        redact = Redactor([dsn])
        try:
            self._conn = psycopg2.connect(dsn)
        except psycopg2.Error as exc:
            raise PgBouncerError(
                f"cannot reach PgBouncer's admin console ({redact(str(exc).strip())}); its user "
                "must be in admin_users or stats_users"
            ) from None
        self._conn.autocommit = True
        self._lock = threading.Lock()

    def show(self, what: str) -> list[dict[str, Any]]:
        """``SHOW what`` (``CLIENTS``, ``POOLS``, ``SERVERS``, ...): one dict per row."""
        if not re.fullmatch(r"[A-Za-z_]+", what):
            raise ValueError(f"not a SHOW command: {what!r}")
        with self._lock:
            cur = self._conn.cursor()
            try:
                cur.execute(f"SHOW {what}")
                names = [column[0] for column in cur.description or ()]
                return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
            finally:
                cur.close()

    def count(self, application_name: str) -> int:
        """How many client connections carry ``application_name`` (``SHOW CLIENTS``)."""
        clients = self.show("CLIENTS")
        if clients and "application_name" not in clients[0]:
            raise PgBouncerError("this PgBouncer's SHOW CLIENTS has no application_name column")
        return sum(1 for c in clients if c.get("application_name") == application_name)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> AdminConsole:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def _interrupted() -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt (also where the shell started us with
    SIGINT ignored, as it does for a background job)."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def main(argv: list[str] | None = None) -> int:
    """``python -m poolkit.conformance.pgbouncer``: start PgBouncer, print its DSN, wait."""
    parser = argparse.ArgumentParser(
        prog="python -m poolkit.conformance.pgbouncer",
        description="Run PgBouncer (transaction pooling) in front of a PostgreSQL server "
        "until interrupted; prints the DSN to connect to (password masked).",
    )
    parser.add_argument(
        "--upstream",
        help="the PostgreSQL server's DSN (default: POOLKIT_POSTGRES_DSN, else "
        f"{DEFAULT_DSNS['postgres']!r} when a server answers there)",
    )
    parser.add_argument("--pool-size", type=int, default=20, help="default_pool_size (20)")
    parser.add_argument("--max-client-conn", type=int, default=200, help="max_client_conn (200)")
    args = parser.parse_args(argv)
    found = find("postgres", args.upstream)
    if found.dsn is None:
        parser.error(f"{found.why}: pass --upstream DSN or set POOLKIT_POSTGRES_DSN")
    args.upstream = found.dsn
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        bouncer = start(
            args.upstream, pool_size=args.pool_size, max_client_conn=args.max_client_conn
        )
    except PgBouncerError as exc:
        print(f"pgbouncer: {exc}", file=sys.stderr)
        return 2
    with bouncer, _interrupted():
        print(bouncer.redact(bouncer.dsn), flush=True)
        print(f"admin console: {bouncer.redact(bouncer.admin_dsn)}", flush=True)
        try:
            while bouncer.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            return 0
    print("pgbouncer: exited on its own", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
