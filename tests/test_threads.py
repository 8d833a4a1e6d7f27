"""Thread affinity: each connection lives on one worker thread, never on the event loop's.

Also: worker threads are joined on close, a pool never closed does not block interpreter
exit, and the event loop's default executor is never used.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import sqlite3
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import poolkit
from tests.backends import Backend

REPO = Path(__file__).resolve().parent.parent


# ----- a sqlite3 driver that records which thread makes every call ---------------------


class Recorder:
    """(connection number, operation, thread ident) for every call on a raw object."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str, int]] = []
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)

    def new_connection_number(self) -> int:
        with self._lock:
            return next(self._numbers)

    def record(self, conn_no: int, op: str) -> None:
        with self._lock:
            self.calls.append((conn_no, op, threading.get_ident()))

    def threads_by_connection(self, *, exclude: frozenset[str]) -> dict[int, set[int]]:
        result: dict[int, set[int]] = {}
        for conn_no, op, ident in self.calls:
            if op not in exclude:
                result.setdefault(conn_no, set()).add(ident)
        return result

    def ops(self) -> set[str]:
        return {op for _, op, _ in self.calls}


class RecordingCursor:
    def __init__(self, recorder: Recorder, conn_no: int, raw: sqlite3.Cursor) -> None:
        self._recorder = recorder
        self._no = conn_no
        self._raw = raw

    def _rec(self, op: str) -> None:
        self._recorder.record(self._no, op)

    @property
    def description(self) -> Any:
        self._rec("cursor.description")
        return self._raw.description

    @property
    def rowcount(self) -> int:
        self._rec("cursor.rowcount")
        return self._raw.rowcount

    @property
    def lastrowid(self) -> Any:
        self._rec("cursor.lastrowid")
        return self._raw.lastrowid

    @property
    def arraysize(self) -> int:
        return self._raw.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._rec("cursor.arraysize")
        self._raw.arraysize = value

    def execute(self, *args: Any) -> RecordingCursor:
        self._rec("execute")
        self._raw.execute(*args)
        return self

    def executemany(self, *args: Any) -> RecordingCursor:
        self._rec("execute")
        self._raw.executemany(*args)
        return self

    def fetchone(self) -> Any:
        self._rec("fetch")
        return self._raw.fetchone()

    def fetchmany(self, *args: Any) -> list[Any]:
        self._rec("fetch")
        return self._raw.fetchmany(*args)

    def fetchall(self) -> list[Any]:
        self._rec("fetch")
        return self._raw.fetchall()

    def close(self) -> None:
        self._rec("cursor.close")
        self._raw.close()


class RecordingConnection:
    """Wraps a real sqlite3 connection (check_same_thread=True); records each call."""

    def __init__(self, recorder: Recorder, raw: sqlite3.Connection, conn_no: int) -> None:
        object.__setattr__(self, "_recorder", recorder)
        object.__setattr__(self, "_raw", raw)
        object.__setattr__(self, "_no", conn_no)

    def _rec(self, op: str) -> None:
        self._recorder.record(self._no, op)

    def cursor(self) -> RecordingCursor:
        self._rec("cursor")
        return RecordingCursor(self._recorder, self._no, self._raw.cursor())

    def commit(self) -> None:
        self._rec("commit")
        self._raw.commit()

    def rollback(self) -> None:
        self._rec("rollback")
        self._raw.rollback()

    def close(self) -> None:
        self._rec("close")
        self._raw.close()

    def interrupt(self) -> None:
        # The one call that is meant to come from another thread (a driver cancel).
        self._rec("interrupt")
        self._raw.interrupt()

    def __getattr__(self, name: str) -> Any:  # in_transaction, isolation_level, ...
        self._rec(f"get {name}")
        return getattr(self._raw, name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._rec(f"set {name}")
        setattr(self._raw, name, value)


class RecordingSqlite:
    """A DB-API "module" over sqlite3 whose connections record their calls."""

    paramstyle = sqlite3.paramstyle
    threadsafety = sqlite3.threadsafety
    apilevel = sqlite3.apilevel
    Error = sqlite3.Error
    InterfaceError = sqlite3.InterfaceError
    DatabaseError = sqlite3.DatabaseError
    OperationalError = sqlite3.OperationalError
    ProgrammingError = sqlite3.ProgrammingError
    __poolkit_profile__ = poolkit.profile_for(sqlite3)

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def connect(self, database: str, **kwargs: Any) -> RecordingConnection:
        no = self.recorder.new_connection_number()
        self.recorder.record(no, "connect")
        return RecordingConnection(self.recorder, sqlite3.connect(database, **kwargs), no)


def pool_threads(pool: poolkit.Pool) -> list[threading.Thread]:
    """The pool's long-lived threads (workers, maintenance), not its short helpers."""
    prefix = f"poolkit-{pool.name}-"
    return [
        t
        for t in threading.enumerate()
        if t.name.startswith(prefix) and not t.name.endswith(("-cancel", "-join"))
    ]


async def wait_until(pred: Callable[[], bool], what: str, within: float = 5.0) -> None:
    with anyio.move_on_after(within):
        while not pred():
            await anyio.sleep(0.005)
        return
    pytest.fail(f"not within {within} s: {what}")


# ----- every call of a connection on its one thread ------------------------------------


@pytest.mark.anyio
async def test_every_call_of_a_connection_runs_on_its_own_thread(tmp_path: Path) -> None:
    loop_thread = threading.get_ident()
    recorder = Recorder()
    driver = RecordingSqlite(recorder)
    # sqlite3's default check_same_thread=True: a call from a foreign thread would raise.
    pool = poolkit.Pool(
        driver,
        str(tmp_path / "threads.db"),
        connect_kwargs={"timeout": 5.0},
        min_size=1,
        max_size=2,
        check_idle_after=0,  # a health check on every acquire, on the worker too
        name=f"affinity-{uuid.uuid4().hex[:8]}",
    )
    async with pool:
        async with pool.connection() as conn:
            await conn.execute("CREATE TABLE t (id INTEGER, name TEXT)")
            await conn.commit()

        both_in_use = anyio.Event()

        async def worker(n: int) -> None:
            async with pool.connection() as conn:
                await conn.executemany("INSERT INTO t VALUES (?, ?)", [(n, "a"), (n, "b")])
                await conn.commit()
                if pool.stats().in_use == 2:
                    both_in_use.set()
                with anyio.fail_after(5):  # hold on until the pool needed a second connection
                    await both_in_use.wait()
                cur = await conn.execute("SELECT count(*) FROM t WHERE id = ?", (n,))
                assert await cur.fetchall() == [(2,)]
                await cur.close()
                await conn.execute("INSERT INTO t VALUES (?, 'rolled back')", (n,))
                await conn.rollback()

        async with anyio.create_task_group() as tg:
            for n in range(4):
                tg.start_soon(worker, n)

        with pytest.raises(RuntimeError, match="boom"):
            async with pool.transaction() as conn:
                await conn.execute("INSERT INTO t VALUES (99, 'x')")
                raise RuntimeError("boom")

        # a cancelled call: the driver cancel comes from a helper thread, the reset
        # (rollback) must again run on the connection's own thread
        gate = threading.Event()

        def stuck(raw: Any) -> None:
            gate.wait(10)

        async with pool.connection() as conn:
            with anyio.move_on_after(0.1):
                await conn.run(stuck)
        gate.set()
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT count(*) FROM t")
            assert await cur.fetchone() == (8,)

        threads = pool_threads(pool)
        assert threads
    assert all(not t.is_alive() for t in threads)

    per_conn = recorder.threads_by_connection(exclude=frozenset({"interrupt"}))
    assert len(per_conn) == 2, "the workload was meant to need two connections"
    for conn_no, idents in per_conn.items():
        assert len(idents) == 1, f"connection {conn_no} was used from {len(idents)} threads"
        assert loop_thread not in idents, f"connection {conn_no} was used on the loop thread"
    # distinct connections, distinct threads
    assert len(set().union(*per_conn.values())) == 2
    needed = {"connect", "cursor", "execute", "fetch", "commit", "rollback", "close"}
    assert needed <= recorder.ops(), f"not exercised: {needed - recorder.ops()}"
    # the cancel went through the driver, from a thread that is neither loop nor worker
    cancels = [ident for _, op, ident in recorder.calls if op == "interrupt"]
    assert cancels
    assert not (set(cancels) & (set().union(*per_conn.values()) | {loop_thread}))


@pytest.mark.anyio
async def test_sqlite_check_same_thread_holds_through_the_pool(sqlite: Backend) -> None:
    loop_thread = threading.get_ident()
    async with sqlite.pool(min_size=1, max_size=1) as pool:
        async with pool.connection() as conn:
            await conn.execute("CREATE TABLE IF NOT EXISTS st (x INTEGER)")
            await conn.execute("INSERT INTO st VALUES (?)", (41,))
            await conn.commit()
            cur = await conn.execute("SELECT x + 1 FROM st")
            assert await cur.fetchall() == [(42,)]
            worker_thread = await conn.run(lambda raw: threading.get_ident())
            assert worker_thread != loop_thread
            # the check is live: the same raw connection refuses the loop's thread
            raw = await conn.run(lambda raw: raw)
            with pytest.raises(sqlite3.ProgrammingError, match="thread"):
                raw.execute("SELECT 1")
            del raw
            assert await conn.run(lambda raw: raw.execute("SELECT 2").fetchone()) == (2,)


# ----- thread life ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_worker_threads_are_joined_after_close(backend: Backend) -> None:
    pool = backend.pool(min_size=2, max_size=3, name=f"join-{uuid.uuid4().hex[:8]}")
    await pool.open()
    try:
        idents: set[int] = set()
        all_in = anyio.Event()

        async def use() -> None:
            async with pool.connection() as conn:
                idents.add(await conn.run(lambda raw: threading.get_ident()))
                if pool.stats().in_use == 3:
                    all_in.set()
                with anyio.fail_after(5):  # hold on until three connections are in use
                    await all_in.wait()

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(use)
        threads = pool_threads(pool)
        workers = [t for t in threads if not t.name.endswith("-maintenance")]
        # one thread per connection, in either threads= mode; the calls ran on them
        assert len(workers) == 3
        assert idents <= {t.ident for t in workers}
        assert all(t.daemon for t in workers)
    finally:
        forced = await pool.close()
    assert forced == 0
    assert [t.name for t in threads if t.is_alive()] == []
    assert pool_threads(pool) == []


_NEVER_CLOSED = textwrap.dedent(
    """
    import sqlite3, sys, threading, time

    import anyio
    import poolkit

    async def main() -> None:
        pool = poolkit.Pool(
            sqlite3,
            sys.argv[2],
            connect_kwargs={"check_same_thread": sys.argv[3] == "dedicated"},
            min_size=2,
            max_size=2,
            threads=sys.argv[3],
        )
        await pool.open()
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT 6 * 7")
            print(await cur.fetchone(), flush=True)
        # leave one worker thread stuck inside a call, and another connection checked out
        held = await pool.acquire()
        with anyio.move_on_after(0.1):
            await held.run(lambda raw: time.sleep(60))
        alive = [t.name for t in threading.enumerate() if t.name.startswith("poolkit-")]
        print("threads", len(alive), flush=True)
        globals()["keep"] = pool  # not even garbage: referenced until the very end

    anyio.run(main, backend=sys.argv[1])
    print("returned", flush=True)
    """
)


@pytest.mark.parametrize("threads", ["dedicated", "shared"])
@pytest.mark.parametrize("library", ["asyncio", "trio"])
def test_unclosed_pool_does_not_block_interpreter_exit(
    library: str, threads: str, tmp_path: Path
) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _NEVER_CLOSED, library, str(tmp_path / "exit.db"), threads],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "(42,)"
    assert lines[1].startswith("threads ") and int(lines[1].split()[1]) >= 2
    assert lines[2:] == ["returned"]
    assert "Traceback" not in proc.stderr, proc.stderr


# ----- the loop's default executor -----------------------------------------------------


class ForbiddenExecutor(concurrent.futures.ThreadPoolExecutor):
    """A default executor that records and refuses every job."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.submitted: list[str] = []

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.submitted.append(repr(fn))
        raise RuntimeError(f"the default executor was used for {fn!r}")


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_pool_never_uses_the_default_executor(backend: Backend) -> None:
    loop = asyncio.get_running_loop()
    executor = ForbiddenExecutor()
    loop.set_default_executor(executor)
    try:
        with pytest.raises(RuntimeError, match="default executor"):
            await loop.run_in_executor(None, int)
        assert len(executor.submitted) == 1  # the trap is set
        executor.submitted.clear()

        async with backend.pool(min_size=1, max_size=2, check_idle_after=0) as pool:

            async def use(n: int) -> None:
                async with pool.connection() as conn:
                    cur = await conn.execute(f"SELECT {backend.q(0)} + 1", (n,))
                    assert await cur.fetchall() == [(n + 1,)]
                    await anyio.sleep(0.02)

            async with anyio.create_task_group() as tg:
                for n in range(4):
                    tg.start_soon(use, n)
            gate = threading.Event()
            async with pool.connection() as conn:
                with anyio.move_on_after(0.1):  # cancel, driver cancel, reset
                    await conn.run(lambda raw: gate.wait(10))
            gate.set()
            async with pool.connection() as conn:
                await conn.rollback()
        assert executor.submitted == []
    finally:
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=1))
        executor.shutdown(wait=True)
