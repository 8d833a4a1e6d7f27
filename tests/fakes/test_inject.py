"""``inject()``: the fake's faults around real drivers (sqlite3 always, psycopg2 and PyMySQL
against the servers in ``tests/backends.py``)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import poolkit
import poolkit.fakes
from poolkit._profiles import profile_for
from poolkit.fakes import (
    Drop,
    Hang,
    InjectedConnection,
    InjectedCursor,
    InjectedDriver,
    Latency,
    Plan,
    PlanError,
    Raise,
    Refuse,
    Rule,
    VirtualClock,
    inject,
)
from tests.backends import Backend, resolve

HANG = 10.0

SQLITE = pytest.param("sqlite", marks=[pytest.mark.sqlite])
POSTGRES = pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.real])
MYSQL = pytest.param("mysql", marks=[pytest.mark.mysql, pytest.mark.real])

# Is the server session with this id still there? (asked from a second connection)
SESSION_ALIVE_SQL = {
    "postgres": "SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
    "mysql": "SELECT count(*) FROM information_schema.PROCESSLIST WHERE ID = %s",
}


@pytest.fixture(params=[SQLITE, POSTGRES, MYSQL])
def real(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """A real driver and how to reach its database; servers skip (or fail) as in conftest."""
    return resolve(str(request.param), tmp_path)


Wrap = Callable[..., tuple[InjectedDriver, InjectedConnection]]


@pytest.fixture
def wrap(real: Backend) -> Iterator[Wrap]:
    """``wrap(*rules, clock=None)``: an injected driver and one connection through it."""
    made: list[InjectedDriver] = []

    def wrap(
        *rules: Rule, clock: VirtualClock | None = None
    ) -> tuple[InjectedDriver, InjectedConnection]:
        driver = inject(real.driver, Plan(*rules), clock=clock)
        made.append(driver)
        kwargs = dict(real.kwargs)
        if real.name == "sqlite":  # the hang tests call in on a second thread
            kwargs["check_same_thread"] = False
        return driver, driver.connect(*real.args, **kwargs)

    yield wrap
    for driver in made:
        driver.drop()  # closes every real connection still open


def _session_id(real: Backend, conn: Any) -> int:
    cur = conn.cursor()
    cur.execute(real.session_id_sql)
    (pid,) = cur.fetchone()
    cur.close()
    return int(pid)


def _sessions(real: Backend, pid: int) -> int:
    (n,) = real.run(SESSION_ALIVE_SQL[real.name], (pid,))[0]
    return int(n)


def _session_gone(real: Backend, pid: int) -> bool:
    """Whether the session left the server, waiting (bounded) for it to go."""
    deadline = time.monotonic() + HANG
    while _sessions(real, pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _sessions(real, pid) == 0


# ----- the wrapper is the driver ----------------------------------------------------------


def test_wrapper_looks_like_the_real_module(real: Backend) -> None:
    driver = inject(real.driver)
    module = real.driver
    assert driver.module is module
    assert driver.__name__ == module.__name__
    assert driver.paramstyle == module.paramstyle
    assert driver.IntegrityError is module.IntegrityError
    assert driver.OperationalError is module.OperationalError
    assert profile_for(driver) is profile_for(module)
    assert module.__name__ in repr(driver)


def test_inject_needs_a_pep249_module() -> None:
    with pytest.raises(PlanError, match="connect"):
        inject(object())
    with pytest.raises(PlanError, match="must be a Plan"):
        inject(sqlite3, Raise())  # type: ignore[arg-type]


def test_empty_plan_is_transparent(real: Backend, wrap: Wrap) -> None:
    with real.table("id INTEGER, name VARCHAR(20)") as table:
        driver, conn = wrap()
        q = real.q
        cur = conn.cursor()
        cur.executemany(f"INSERT INTO {table} VALUES ({q(0)}, {q(1)})", [(1, "a"), (2, "b")])
        conn.commit()
        cur.execute(f"SELECT id, name FROM {table} WHERE id > {q(0)} ORDER BY id", (0,))
        assert [tuple(r) for r in cur.fetchall()] == [(1, "a"), (2, "b")]
        assert cur.description is not None
        assert [d[0] for d in cur.description] == ["id", "name"]
        cur.close()
        conn.close()
        assert real.run(f"SELECT count(*) FROM {table}") == [(2,)]
    assert [c.op for c in driver.calls] == [
        "connect",
        "cursor",
        "executemany",
        "commit",
        "execute",
        "fetchall",
        "close",
    ]
    assert not driver.calls.faults() and not driver.calls.filter(outcome="error")
    assert driver.report().fired == 0


def test_execute_returns_what_the_real_cursor_returns(real: Backend, wrap: Wrap) -> None:
    """sqlite3 returns the cursor (the wrapper, then); psycopg2 None; PyMySQL the rowcount."""
    _, conn = wrap()
    cur = conn.cursor()
    result = cur.execute("SELECT 1")
    if real.name == "sqlite":
        assert result is cur
    elif real.name == "postgres":
        assert result is None
    else:
        assert result == 1


@pytest.mark.parametrize("real", [SQLITE], indirect=True)
@pytest.mark.parametrize("op", ["fetchall", "fetchone"])
def test_chained_fetch_on_sqlite3_is_still_faulted(wrap: Wrap, op: str) -> None:
    _, conn = wrap(Raise(op=op))
    cur = conn.cursor()
    chained = cur.execute("SELECT 1")
    assert isinstance(chained, InjectedCursor)
    with pytest.raises(sqlite3.OperationalError, match="injected"):
        chained.fetchall() if op == "fetchall" else list(chained)


# ----- Raise -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    ["IntegrityError", poolkit.fakes.IntegrityError, sqlite3.IntegrityError],
    ids=["name", "fake-class", "sqlite3-class"],
)
def test_raise_raises_the_real_drivers_class(wrap: Wrap, real: Backend, error: Any) -> None:
    _, conn = wrap(Raise(error))
    with pytest.raises(real.driver.IntegrityError) as info:
        conn.cursor().execute("SELECT 1")
    assert type(info.value) is real.driver.IntegrityError
    assert "injected by fault rule #0" in str(info.value)


# ----- Drop --------------------------------------------------------------------------------


def _drop(real: Backend, wrap: Wrap) -> tuple[InjectedDriver, InjectedConnection, Exception]:
    driver, conn = wrap(Drop(sql="^SELECT 2$"))
    cur = conn.cursor()
    cur.execute("SELECT 1")
    cur.fetchall()
    with pytest.raises(real.driver.Error) as info:
        cur.execute("SELECT 2")
    return driver, conn, info.value


def test_drop_raises_the_drivers_disconnect_error(real: Backend, wrap: Wrap) -> None:
    driver, conn, exc = _drop(real, wrap)
    module = real.driver
    if real.name == "postgres":
        assert type(exc) is module.OperationalError
        assert "server closed the connection unexpectedly" in str(exc)
        assert conn.closed
    elif real.name == "mysql":
        assert type(exc) is module.OperationalError
        assert exc.args[0] == 2013
        assert not conn.open
    else:
        assert type(exc) is module.ProgrammingError
        assert "closed database" in str(exc)
    assert profile_for(driver).is_disconnect(exc, conn, driver)
    with pytest.raises(module.Error):
        conn.cursor().execute("SELECT 1")


@pytest.mark.parametrize("real", [POSTGRES, MYSQL], indirect=True)
def test_drop_ends_the_server_session(real: Backend, wrap: Wrap) -> None:
    _, conn = wrap(Drop(sql="^SELECT 2$"))
    pid = _session_id(real, conn)
    assert _sessions(real, pid) == 1
    with pytest.raises(real.driver.OperationalError):
        conn.cursor().execute("SELECT 2")
    assert _session_gone(real, pid)


def test_drop_from_the_test_ends_the_connection(real: Backend, wrap: Wrap) -> None:
    driver, conn = wrap()
    assert driver.drop(conn.id) == 1
    with pytest.raises(real.driver.Error) as info:
        conn.cursor()
    assert profile_for(driver).is_disconnect(info.value, conn, driver)


def test_close_after_drop_does_not_raise(real: Backend, wrap: Wrap) -> None:
    """Closing a connection the server lost works on every real driver; so after a Drop."""
    _, conn, _ = _drop(real, wrap)
    conn.close()


# ----- Refuse ------------------------------------------------------------------------------


def test_refuse_raises_the_real_refused_error(real: Backend) -> None:
    driver = inject(real.driver, Plan(Refuse(times=1)))
    with pytest.raises(real.driver.OperationalError) as info:
        driver.connect(*real.args, **real.kwargs)
    exc = info.value
    if real.name == "mysql":
        assert exc.args[0] == 2003
    elif real.name == "postgres":
        assert "Connection refused" in str(exc)
    else:
        assert "database is locked" in str(exc)
    # a refusal is transient: the pool retries it, never fails its callers at once
    assert not poolkit.profile_for(real.driver).is_config_error(exc, real.driver)
    conn = driver.connect(*real.args, **real.kwargs)
    try:
        assert conn.id == 2
        assert driver.calls.connects("error") == 1 and driver.calls.connections() == [2]
    finally:
        conn.close()


# ----- Latency and Hang ----------------------------------------------------------------------


def test_latency_on_commit_is_recorded(wrap: Wrap) -> None:
    clock = VirtualClock()
    driver, conn = wrap(Latency(0.5, op="commit"), clock=clock)
    conn.cursor().execute("SELECT 1")
    conn.commit()
    (commit,) = driver.calls.filter("commit")
    assert commit.latency == 0.5 and commit.outcome == "ok"
    assert clock.slept == 0.5
    assert all(c.latency == 0 for c in driver.calls if c.op != "commit")


def test_hang_released_by_the_test(wrap: Wrap) -> None:
    driver, conn = wrap(Hang())
    cur = conn.cursor()
    done: list[object] = []
    thread = threading.Thread(target=lambda: done.append(cur.execute("SELECT 1")), daemon=True)
    thread.start()
    assert driver.wait_for_hang(timeout=HANG)
    assert driver.release() == 1
    thread.join(HANG)
    assert done and [tuple(r) for r in cur.fetchall()] == [(1,)]


@pytest.mark.parametrize("real", [SQLITE, POSTGRES], indirect=True)
def test_hang_cancelled_raises_the_drivers_cancel_error(real: Backend, wrap: Wrap) -> None:
    driver, conn = wrap(Hang(nth=1))
    cur = conn.cursor()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            cur.execute("SELECT 1")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert driver.wait_for_hang(timeout=HANG)
    conn.interrupt() if real.name == "sqlite" else conn.cancel()
    thread.join(HANG)
    assert not thread.is_alive()
    (exc,) = errors
    assert isinstance(exc, real.driver.OperationalError)
    if real.name == "postgres":
        assert type(exc) is real.driver.extensions.QueryCanceledError
    conn.rollback()
    cur = conn.cursor()
    cur.execute("SELECT 2")
    assert [tuple(r) for r in cur.fetchall()] == [(2,)]


@pytest.mark.parametrize("real", [POSTGRES], indirect=True)
def test_dsn_password_stays_out_of_the_record(real: Backend) -> None:
    """Trust authentication ignores the password, so a made-up one can be passed."""
    secret = "Inj-S3cret-77"
    driver = inject(real.driver, Plan(Raise(nth=1)))
    conn = driver.connect(f"{real.args[0]} password={secret}")
    try:
        with pytest.raises(real.driver.OperationalError):
            conn.cursor().execute("SELECT 1")
        for text in (repr(list(driver.calls)), repr(driver), str(driver.report())):
            assert secret not in text
    finally:
        conn.close()
