"""Regressions from the review of poolkit.fakes, each as the reviewer reproduced it."""

from __future__ import annotations

import threading
import time

import pytest

from poolkit._redact import Redactor
from poolkit.fakes import FakeDriver, Plan, PlanError, Raise, Script
from poolkit.fakes.strategies import rules


def test_a_close_that_raised_still_frees_the_database() -> None:
    """An injected failing close must not leave the connection's write lock behind."""
    driver = FakeDriver(Plan(Raise(op="close", nth=1)), busy_timeout=0.5)
    try:
        setup = driver.connect()
        setup.cursor().execute("CREATE TABLE t (x INTEGER)")
        setup.commit()
        writer = driver.connect()
        writer.cursor().execute("INSERT INTO t VALUES (1)")  # holds the write lock
        with pytest.raises(driver.OperationalError):
            writer.close()
        assert writer.closed
        other = driver.connect()
        other.cursor().execute("INSERT INTO t VALUES (2)")  # not "database is locked"
        other.commit()
        assert other.cursor().execute("SELECT x FROM t").fetchall() == [(2,)]
    finally:
        driver.close()


def test_closing_from_a_foreign_thread_under_strict_threads_leaves_it_open() -> None:
    """As sqlite3: the misuse raises, and the connection stays usable by its own thread."""
    driver = FakeDriver(strict_threads=True)
    try:
        conn = driver.connect()
        errors: list[BaseException] = []

        def close_elsewhere() -> None:
            try:
                conn.close()
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=close_elsewhere)
        t.start()
        t.join(5)
        assert len(errors) == 1 and isinstance(errors[0], driver.ProgrammingError)
        assert not conn.closed
        assert conn.cursor().execute("SELECT 1").fetchall() == [(1,)]
        conn.close()
    finally:
        driver.close()


def test_dropping_a_connection_mid_statement_gives_the_disconnect_error() -> None:
    """A drop (a server restart) during ``sleep(5)`` is a lost connection, not a cancel."""
    driver = FakeDriver()
    try:
        conn = driver.connect()
        errors: list[BaseException] = []

        def slow() -> None:
            try:
                conn.cursor().execute("SELECT sleep(5)")
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=slow)
        t.start()
        deadline = time.monotonic() + 5
        while not driver.running() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert driver.drop(conn.id) == 1
        t.join(5)
        assert not t.is_alive()
        assert len(errors) == 1
        assert "server closed the connection unexpectedly" in str(errors[0])
        assert conn.closed
    finally:
        driver.close()


def test_connect_after_close_and_a_bad_database_path_are_clear_errors() -> None:
    driver = FakeDriver()
    driver.close()
    with pytest.raises(driver.OperationalError, match="closed"):
        driver.connect()
    with pytest.raises(PlanError, match="cannot open the database"):
        FakeDriver(database="/nonexistent/dir/x.db")


def test_plan_json_with_rules_not_a_list_is_a_plan_error() -> None:
    with pytest.raises(PlanError, match="'rules' must be a list"):
        Plan.from_json('{"rules": {"kind": "drop"}}')


def test_rules_strategy_refuses_drops_on_connect_only() -> None:
    with pytest.raises(ValueError, match="no rule kind"):
        rules(kinds=("drop",), ops=("connect",))


def test_a_script_responder_must_return_a_response() -> None:
    script = Script().on("FROM users", lambda sql, params: None)  # type: ignore[arg-type,return-value]
    driver = FakeDriver(backing=script)
    with pytest.raises(PlanError, match="must return a Response"):
        driver.connect().cursor().execute("SELECT * FROM users")


@pytest.mark.parametrize(
    ("args", "kwargs", "secret"),
    [
        (("host=h sslpassword=KeyPass1",), {}, "KeyPass1"),
        ((), {"wallet_password": "Wallet9x"}, "Wallet9x"),
        ((), {"access_token": "Tok3nValue"}, "Tok3nValue"),
        ((), {"auth": ("user", "AuthPw77")}, "AuthPw77"),
        ((), {"password": b"BytesPw5"}, "BytesPw5"),
    ],
)
def test_more_secret_spellings_are_masked(
    args: tuple[str, ...], kwargs: dict[str, object], secret: str
) -> None:
    text = f"connect({args!r}, {kwargs!r}) failed for {secret}"
    assert secret not in Redactor(args, kwargs)(text)
    driver = FakeDriver()
    try:
        driver.connect(*args, **kwargs)
        assert secret not in repr(driver.calls[0].params)
    finally:
        driver.close()


def test_call_log_slices_and_filters_with_globs() -> None:
    """``calls[-2:]`` and ``calls.filter("fetch*")`` work as a user would type them."""
    driver = FakeDriver()
    try:
        cur = driver.connect().cursor()
        cur.execute("SELECT 1")
        cur.fetchone()
        cur.fetchall()
        last_two = driver.calls[-2:]
        assert [c.op for c in last_two] == ["fetchone", "fetchall"]
        assert [c.op for c in driver.calls.filter("fetch*")] == ["fetchone", "fetchall"]
        assert [c.op for c in driver.calls.filter(("connect", "exec*"))] == ["connect", "execute"]
        assert driver.calls[0].op == "connect"
    finally:
        driver.close()
