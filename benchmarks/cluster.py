"""A private, throwaway PostgreSQL cluster for the restart workload.

:func:`private_cluster` runs ``initdb`` into a fresh temporary directory (trust auth, as the
``postgres`` OS user when this process is root: PostgreSQL refuses to run as root), starts it
on a free port of its own on 127.0.0.1 with its socket in that directory, and on the way out,
error and Ctrl-C (and SIGTERM) included, thaws it, stops it and removes the directory. In
between, a :class:`Cluster` (plain data: it pickles into the worker processes) restarts it
(``pg_ctl restart -m fast``), crashes it (``kill -9`` of the postmaster), freezes it (SIGSTOP of
the postmaster and all its children) and thaws it.

Only this cluster's processes are ever signalled: the postmaster's PID comes from the
cluster's own ``postmaster.pid``, the others are that postmaster's children, and every one
must have the cluster's data directory as its working directory (a PostgreSQL server process
changes into it), so a reused PID or another server on the machine is never touched.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from .dsn import Server

#: the PostgreSQL 15 server binaries (Debian's layout); ``POOLKIT_PG_BIN`` as the tests read it
PG_BIN = Path(os.environ.get("POOLKIT_PG_BIN", "/usr/lib/postgresql/15/bin"))
#: the OS user that runs the cluster when this process is root
RUN_AS = "postgres"
BINARIES = ("initdb", "pg_ctl", "postgres")


class ClusterError(Exception):
    """The private cluster did not start, stop or come back (the message says why, with the
    end of its log)."""


def unavailable(bin_dir: Path | None = None) -> str | None:
    """Why a private cluster cannot run here (no server binaries, root without a
    ``postgres`` user, no psycopg2), or None."""
    where = bin_dir or PG_BIN
    absent = [b for b in BINARIES if not (where / b).exists()]
    if absent:
        return (
            f"no PostgreSQL server binaries ({', '.join(absent)}) in {where} (set"
            " POOLKIT_PG_BIN, or apt-get install postgresql-15)"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(RUN_AS)
        except KeyError:
            return f"running as root, and there is no {RUN_AS!r} OS user to run the cluster as"
    try:
        import psycopg2  # noqa: F401
    except ImportError as exc:
        return f"psycopg2 is not importable ({exc})"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _state(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of a process from ``/proc``; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2 :].split()
    return fields[0].decode(), int(fields[1])


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not reaped, does not)."""
    state = _state(pid)
    return state is not None and state[0] != "Z"


def children(pid: int) -> list[int]:
    """The live processes whose parent is ``pid``."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            state = _state(int(entry.name))
            if state is not None and state[1] == pid and state[0] != "Z":
                found.append(int(entry.name))
    return found


@dataclass(frozen=True)
class Cluster:
    """A running private cluster: where it is and how to act on it."""

    bin_dir: str
    #: the temporary directory: ``data/``, the log and the Unix socket
    directory: str
    port: int
    #: the OS user and group the server runs as (None: this process's)
    uid: int | None = None
    gid: int | None = None

    @property
    def data(self) -> str:
        return os.path.join(self.directory, "data")

    @property
    def log(self) -> str:
        return os.path.join(self.directory, "postgres.log")

    @property
    def dsn(self) -> str:
        """What the pools connect with: nothing but the address (their defaults apply)."""
        return f"host=127.0.0.1 port={self.port} dbname=postgres user=postgres"

    def server(self) -> Server:
        return Server("postgres", self.dsn, "127.0.0.1", self.port, "postgres", "", "postgres")

    # ----- pg_ctl ------------------------------------------------------------------------

    def _options(self) -> str:
        return (
            f"-p {self.port} -c listen_addresses=127.0.0.1"
            f" -c unix_socket_directories={self.directory}"
        )

    def run(self, *argv: object, check: bool = True, timeout: float = 120) -> str:
        """A server binary run as the cluster's user; its output. Raises ClusterError."""
        command = [os.path.join(self.bin_dir, str(argv[0])), *map(str, argv[1:])]
        as_user: dict[str, Any] = {}
        if self.uid is not None:
            as_user = {"user": self.uid, "group": self.gid, "extra_groups": []}
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=self.directory,
                check=False,
                **as_user,
            )
        except subprocess.TimeoutExpired as exc:
            raise ClusterError(f"{_label(argv)}: no answer in {timeout:g} s") from exc
        if check and done.returncode != 0:
            said = (done.stderr or done.stdout).strip()
            raise ClusterError(f"{_label(argv)} failed: {said}{self._log_tail()}")
        return str(done.stdout)

    def _log_tail(self, lines: int = 8) -> str:
        try:
            tail = Path(self.log).read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "\n  log: " + "\n  log: ".join(tail) if tail else ""

    def start(self, wait: bool = True) -> None:
        """``pg_ctl start``; without ``wait`` it returns once the postmaster is launched."""
        self._clear_stale_lock()
        self.run(
            "pg_ctl", "-D", self.data, "-l", self.log, "-o", self._options(),
            *(("-w", "-t", 60) if wait else ("-W",)), "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self.run("pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", 60, "stop")

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: sessions are ended, the server comes back; returns once
        it accepts connections."""
        self.run(
            "pg_ctl", "-D", self.data, "-l", self.log, "-o", self._options(), "-m", "fast",
            "-w", "-t", 60, "restart",
        )  # fmt: skip

    # ----- processes ---------------------------------------------------------------------

    def _ours(self, pid: int) -> bool:
        """Whether ``pid`` is a live process of this cluster (it works in its data dir)."""
        try:
            return os.readlink(f"/proc/{pid}/cwd") == os.path.realpath(self.data)
        except OSError:
            return False

    def _lock_pid(self, path: str | None = None) -> int | None:
        """The PID a lock file names (its first line): ``postmaster.pid`` by default."""
        try:
            first = Path(path or os.path.join(self.data, "postmaster.pid")).read_text()
            return int(first.split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def _clear_stale_lock(self) -> None:
        """Remove ``postmaster.pid`` and the socket's lock file when the PID they name is not
        a live process of ours (killed, or a zombie nobody reaped): the postmaster refuses to
        start over them."""
        socket_lock = os.path.join(self.directory, f".s.PGSQL.{self.port}.lock")
        for path in (os.path.join(self.data, "postmaster.pid"), socket_lock):
            pid = self._lock_pid(path)
            if pid is not None and not (alive(pid) and self._ours(pid)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

    def postmaster(self) -> int | None:
        """The running postmaster's PID, or None."""
        pid = self._lock_pid()
        return pid if pid is not None and alive(pid) and self._ours(pid) else None

    def processes(self) -> list[int]:
        """The postmaster (first) and every child of it; [] when it is not running."""
        pid = self.postmaster()
        if pid is None:
            return []
        return [pid, *(c for c in children(pid) if self._ours(c))]

    def every_process(self) -> list[int]:
        """Every live process working in the data directory, the postmaster or not (what is
        left of a crashed server too)."""
        return [
            int(e.name) for e in os.scandir("/proc") if e.name.isdigit() and self._ours(int(e.name))
        ]

    def _signal(self, pids: list[int], sig: signal.Signals) -> None:
        for pid in pids:
            if self._ours(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)

    def crash(self) -> list[int]:
        """``kill -9`` of the postmaster; returns its children, which end by themselves
        once they notice (:meth:`wait_gone`)."""
        every = self.processes()
        if not every:
            raise ClusterError("no postmaster to crash")
        self._signal(every[:1], signal.SIGKILL)
        return every[1:]

    def wait_gone(self, pids: list[int], timeout: float = 15.0) -> None:
        """Until every one of ``pids`` has ended; those left at ``timeout`` get SIGKILL."""
        deadline = time.monotonic() + timeout
        while any(alive(p) for p in pids):
            if time.monotonic() > deadline:
                self._signal([p for p in pids if alive(p)], signal.SIGKILL)
                deadline = time.monotonic() + 5.0
                pids = [p for p in pids if alive(p) and self._ours(p)]
            time.sleep(0.01)

    def freeze(self) -> list[int]:
        """SIGSTOP the postmaster (so it starts no process), then every child; the PIDs."""
        every = self.processes()
        self._signal(every[:1], signal.SIGSTOP)
        rest = [p for p in self.processes()[1:] if p not in every]
        self._signal([*every[1:], *rest], signal.SIGSTOP)
        frozen = [*every, *rest]
        deadline = time.monotonic() + 2.0  # a signal is delivered when the process next runs
        while time.monotonic() < deadline and any(
            (_state(p) or ("T", 0))[0] not in "TZ" for p in frozen
        ):
            time.sleep(0.005)
        return frozen

    def thaw(self) -> None:
        """SIGCONT to every process of the cluster (harmless when none is stopped)."""
        self._signal(self.every_process(), signal.SIGCONT)

    # ----- connections -------------------------------------------------------------------

    def connect(self, timeout: int = 2) -> Any:
        """A plain psycopg2 connection in autocommit (for the benchmark's own checks)."""
        import psycopg2

        raw = psycopg2.connect(self.dsn, connect_timeout=timeout)
        raw.autocommit = True
        return raw

    def accepting(self) -> bool:
        try:
            self.connect().close()
        except Exception:
            return False
        return True

    def wait_accepting(self, timeout: float = 60.0, interval: float = 0.01) -> float:
        """Poll with a plain psycopg2 connect every ``interval`` until one succeeds; the
        ``time.monotonic()`` when it did. Raises ClusterError at ``timeout``."""
        started = time.monotonic()
        deadline = started + timeout
        while True:
            if self.accepting():
                return time.monotonic()
            now = time.monotonic()
            if now > deadline or (now > started + 5.0 and self.postmaster() is None):
                raise ClusterError(f"not accepting after {now - started:.1f} s{self._log_tail()}")
            time.sleep(interval)

    def execute(self, sql: str) -> list[tuple[Any, ...]]:
        """One statement on a fresh connection; its rows ([] when it returns none)."""
        raw = self.connect()
        try:
            cur = raw.cursor()
            cur.execute(sql)
            return list(cur.fetchall()) if cur.description is not None else []
        finally:
            raw.close()

    def end_sessions(self) -> int:
        """``pg_terminate_backend`` every client session but this one; how many."""
        rows = self.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        return int(rows[0][0])

    def version(self) -> str:
        return str(self.execute("SELECT version()")[0][0])

    def ensure_up(self) -> None:
        """Thawed and accepting connections: started again if it is down (after a crash,
        what is left of the old server is waited for first)."""
        self.thaw()
        if self.postmaster() is None:
            self.wait_gone(self.every_process())
            self.start()
        self.wait_accepting(60.0, 0.05)


def _label(argv: tuple[object, ...]) -> str:
    """``pg_ctl restart`` (the action is last), ``initdb``."""
    return f"pg_ctl {argv[-1]}" if argv[0] == "pg_ctl" else str(argv[0])


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def private_cluster(bin_dir: Path | None = None) -> Iterator[Cluster]:
    """A fresh cluster for the ``with`` block; thawed, stopped and removed after it, also
    on an error, Ctrl-C or SIGTERM (turned into KeyboardInterrupt meanwhile)."""
    why = unavailable(bin_dir)
    if why is not None:
        raise ClusterError(why)
    uid = gid = None
    if os.geteuid() == 0:
        entry = pwd.getpwnam(RUN_AS)
        uid, gid = entry.pw_uid, entry.pw_gid
    directory = tempfile.mkdtemp(prefix="poolkit-restart-")
    cluster = Cluster(str(bin_dir or PG_BIN), directory, free_port(), uid, gid)
    previous: Any = None
    with contextlib.suppress(ValueError):  # not the main thread: leave SIGTERM alone
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        if uid is not None and gid is not None:
            os.chown(directory, uid, gid)
        cluster.run(
            "initdb", "-D", cluster.data, "-U", "postgres", "--auth=trust", "--no-sync",
            "--no-instructions", "-E", "UTF8", "--locale=C",
        )  # fmt: skip
        cluster.start()
        yield cluster
    finally:
        try:
            _shut_down(cluster)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


def _shut_down(cluster: Cluster) -> None:
    """Thaw, ``pg_ctl stop -m fast``; whatever of the cluster still runs then gets SIGKILL."""
    with contextlib.suppress(Exception):
        cluster.thaw()
    if cluster.postmaster() is not None:
        with contextlib.suppress(Exception):
            cluster.stop()
    left = cluster.every_process()
    if left:
        cluster._signal(left, signal.SIGKILL)
        cluster.wait_gone(left, 5.0)
