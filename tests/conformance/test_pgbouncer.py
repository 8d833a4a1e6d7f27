"""``poolkit.conformance.pgbouncer`` and the ``postgres-pgbouncer`` backend.

Config writing and the resolver are tested without a PgBouncer (stand-ins for the binary and
for ``start``); the round trips start a real one in front of the local PostgreSQL, and are
skipped, with the reason, where the ``pgbouncer`` binary is missing (``.ci/run`` installs it).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from poolkit.conformance import _resolve, pgbouncer
from poolkit.conformance._resolve import Resolved, Resolver, env_dsn
from poolkit.conformance._targets import build_target
from poolkit.conformance.pgbouncer import (
    PgBouncerError,
    PgBouncerNotInstalled,
    Upstream,
    admin_dsn,
    config_files,
    start,
)
from poolkit.conformance.suite._server import require, watched
from tests.backends import DEFAULT_POSTGRES_DSN, need, no_default_servers, resolve

pytest_plugins = ["pytester"]

SECRET = "Bn9'cr\"et"  # a quote of each kind: both files must quote it right
QUIET = ("-p", "no:cacheprovider")


def _quiet(text: str) -> None:
    pass


#: the outer run's settings, for finding the local PostgreSQL (the tests run without them)
OUTER = {k: v for k, v in os.environ.items() if k.startswith("POOLKIT_")}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The resolver and the inner runs see no POOLKIT_* setting of the outer run, and no
    server at the default addresses."""
    for name in list(os.environ):
        if name.startswith("POOLKIT_"):
            monkeypatch.delenv(name)
    no_default_servers(monkeypatch)


@pytest.fixture
def upstream_dsn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The local PostgreSQL's DSN, and a pgbouncer binary: else skipped (or failed, if required)."""
    if pgbouncer.find_binary() is None:
        pytest.skip(f"the pgbouncer binary is not installed ({pgbouncer.INSTALL})")
    with monkeypatch.context() as outer:
        for name, value in OUTER.items():
            outer.setenv(name, value)
        backend = resolve("postgres", tmp_path)
    return str(backend.args[0]) if backend.args else DEFAULT_POSTGRES_DSN


# ----- configuration ------------------------------------------------------------------------


def test_upstream_from_a_url_and_from_key_value_pairs() -> None:
    url = Upstream.parse("postgresql://alice:pw%40x@db.example:6543/app?connect_timeout=4")
    assert (url.host, url.port, url.dbname, url.user, url.password) == (
        "db.example",
        6543,
        "app",
        "alice",
        "pw@x",
    )
    assert url.client == (("connect_timeout", "4"),)
    assert "pw@x" not in repr(url)
    plain = Upstream.parse("host=127.0.0.1 dbname=test user=postgres")
    assert (plain.port, plain.password, plain.sslmode) == (5432, "", "")


def test_config_with_a_password_uses_scram_and_keeps_it_in_the_user_list(tmp_path: Path) -> None:
    upstream = Upstream("db", 5433, "app", "alice", SECRET)
    files = config_files(upstream, directory=tmp_path, port=7001, pool_size=5, max_client_conn=50)
    ini, users = files["pgbouncer.ini"], files["userlist.txt"]
    for line in (
        "* = host=db port=5433",
        "listen_addr = 127.0.0.1",
        "listen_port = 7001",
        "unix_socket_dir =",
        "pool_mode = transaction",
        "default_pool_size = 5",
        "max_client_conn = 50",
        "auth_type = scram-sha-256",
        f"auth_file = {tmp_path / 'userlist.txt'}",
        "admin_users = alice",
        "stats_users = alice",
        "ignore_startup_parameters = extra_float_digits,options",
    ):
        assert line in ini.splitlines(), line
    assert SECRET not in ini and "Bn9" not in ini
    assert users == '"alice" "Bn9\'cr""et"\n'  # a double quote doubled, as PgBouncer reads it


def test_config_without_a_password_trusts(tmp_path: Path) -> None:
    upstream = Upstream("127.0.0.1", 5432, "test", "postgres")
    files = config_files(upstream, directory=tmp_path, port=1)
    assert "auth_type = trust" in files["pgbouncer.ini"].splitlines()
    assert files["userlist.txt"] == '"postgres" ""\n'


def test_upstream_tls_mode_is_passed_on(tmp_path: Path) -> None:
    upstream = Upstream.parse("host=db user=u dbname=d sslmode=require")
    ini = config_files(upstream, directory=tmp_path, port=1)["pgbouncer.ini"]
    assert "server_tls_sslmode = require" in ini.splitlines()


@pytest.mark.parametrize(
    "dsn",
    [f"host=127.0.0.1 port=6432 dbname=app user=bob password={SECRET!r}", "postgresql://bob@h/app"],
    ids=["libpq", "url"],
)
def test_admin_dsn_names_the_console_database(dsn: str) -> None:
    admin = admin_dsn(dsn)
    assert "dbname=pgbouncer" in admin and "user=bob" in admin and "app" not in admin


def test_missing_binary_is_a_typed_error_saying_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pgbouncer, "find_binary", lambda: None)
    with pytest.raises(PgBouncerNotInstalled, match="apt-get install pgbouncer") as info:
        start(f"postgresql://u:{SECRET}@127.0.0.1/db")
    assert isinstance(info.value, PgBouncerError)
    assert SECRET not in str(info.value)


def test_a_binary_that_exits_at_once_is_an_error_with_its_output(tmp_path: Path) -> None:
    (tmp_path / "said").write_text(f"FATAL cannot start, DSN had password={SECRET}\n")
    fake = tmp_path / "pgbouncer"
    fake.write_text(f"#!/bin/sh\ncat {tmp_path / 'said'}\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(PgBouncerError, match=r"PgBouncer did not start: .*FATAL") as info:
        start(f"host=127.0.0.1 user=u password={SECRET}", binary=str(fake), timeout=5)
    assert SECRET not in str(info.value)
    assert pgbouncer._RUNNING == set()


# ----- targets ------------------------------------------------------------------------------


def test_targets_do_not_prepare_on_the_server_and_count_on_the_admin_console(
    tmp_path: Path,
) -> None:
    dsn = f"host=127.0.0.1 port=6432 dbname=test user=postgres password={SECRET!r}"
    psycopg = build_target("postgres-pgbouncer", "psycopg", dsn, "dsn", str(tmp_path))
    assert psycopg.kwargs == {"autocommit": False, "prepare_threshold": None}
    assert psycopg.tagger is not None
    _, kwargs, count = psycopg.tagger("pkc_tag")
    assert kwargs == {"autocommit": False, "prepare_threshold": None, "application_name": "pkc_tag"}
    assert count == "pkc_tag" and psycopg.counter is not None
    assert psycopg.dialect.statement_timeout(100) == ""  # a SET is session state
    assert psycopg.dialect.session_id and psycopg.dialect.kill(1)
    assert SECRET not in repr(psycopg) and SECRET not in psycopg.redact(dsn)
    pyodbc = need("pyodbc")
    if "PostgreSQL Unicode" not in pyodbc.drivers():
        pytest.skip("the PostgreSQL ODBC driver is not installed")
    odbc = build_target("postgres-pgbouncer", "pyodbc", dsn, "dsn", str(tmp_path))
    assert odbc.args[0].endswith(";UseServerSidePrepare=0")
    direct = build_target("postgres", "pyodbc", dsn, "dsn", str(tmp_path))
    assert "UseServerSidePrepare" not in direct.args[0] and direct.counter is None


class _Counter:
    def __init__(self) -> None:
        self.asked: list[str] = []
        self.closed = False

    def count(self, tag: str) -> int:
        self.asked.append(tag)
        return 7

    def close(self) -> None:
        self.closed = True


@pytest.mark.anyio
async def test_a_watch_counts_with_the_targets_counter_where_it_has_one(tmp_path: Path) -> None:
    """With ``Target.counter`` the Watch asks it (giving it the tagger's count) on its own
    connection and closes it; without, it runs the count SQL on its plain session."""
    plain = build_target("sqlite", "fake", None, "embedded", str(tmp_path))
    counter = _Counter()
    try:
        async with watched(plain) as watch:
            assert await watch.sessions() == 0  # the fake's SQL: only the watcher is open
        async with watched(dataclasses.replace(plain, counter=lambda: counter)) as watch:
            assert await watch.sessions() == 7
        assert counter.asked == ["SELECT open_connections() - 1"] and counter.closed
    finally:
        plain.module.close()


def test_require_names_the_reason_a_dialect_gives() -> None:
    """A missing dialect statement with a declared reason is "not supported" with it."""
    target = build_target("postgres-pgbouncer", "psycopg2", "host=h", "dsn", "/tmp")
    with pytest.raises(pytest.xfail.Exception, match=r"lacks dialect.statement_timeout \(a SET"):
        require(target, "session_id", "statement_timeout")
    require(target, "session_id", "kill", "running", "sessions")  # these it has


# ----- the resolver -------------------------------------------------------------------------


class _StandIn:
    """What ``pgbouncer.start`` returns, without a process."""

    version = "PgBouncer 1.18.0"

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.dsn = f"host=127.0.0.1 port=7777 dbname=test user=postgres password={SECRET}"
        self.stopped = False

    def redact(self, text: str) -> str:
        return text.replace(SECRET, "***")

    def stop(self) -> None:
        self.stopped = True


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[_StandIn]:
    """pgbouncer.start replaced: the stand-ins it made, in order."""
    made: list[_StandIn] = []

    def fake_start(upstream: str, **options: Any) -> _StandIn:
        made.append(_StandIn(upstream))
        return made[-1]

    monkeypatch.setattr(pgbouncer, "find_binary", lambda: "/usr/sbin/pgbouncer")
    monkeypatch.setattr(pgbouncer, "start", fake_start)
    return made


def test_env_name_reads_the_dash_as_an_underscore() -> None:
    assert env_dsn("postgres-pgbouncer") == "POOLKIT_POSTGRES_PGBOUNCER_DSN"
    assert env_dsn("postgres") == "POOLKIT_POSTGRES_DSN"


@pytest.mark.parametrize("how", ["option", "env"])
def test_resolver_explicit_dsn_wins(
    monkeypatch: pytest.MonkeyPatch, started: list[_StandIn], how: str
) -> None:
    dsn = "host=127.0.0.1 port=6432 dbname=test user=postgres"
    dsns = {"postgres": "host=pg", "postgres-pgbouncer": dsn} if how == "option" else {}
    if how == "env":
        monkeypatch.setenv("POOLKIT_POSTGRES_PGBOUNCER_DSN", dsn)
    resolver = Resolver(dsns=dsns, say=_quiet, use_containers=False)
    assert resolver.resolve("postgres-pgbouncer") == Resolved("postgres-pgbouncer", dsn, "dsn")
    assert started == []


def test_resolver_starts_one_in_front_of_postgres_and_stops_it(started: list[_StandIn]) -> None:
    said: list[str] = []
    upstream = f"postgresql://postgres:{SECRET}@127.0.0.1/test"
    resolver = Resolver(dsns={"postgres": upstream}, say=said.append, use_containers=False)
    resolved = resolver.resolve("postgres-pgbouncer")
    assert resolved == Resolved("postgres-pgbouncer", started[0].dsn, "started")
    assert resolver.resolve("postgres-pgbouncer") is resolved and len(started) == 1
    assert started[0].upstream == upstream
    assert any("PgBouncer 1.18.0 ready at host=127.0.0.1 port=7777" in s for s in said)
    assert not any(SECRET in s for s in said)
    resolver.close()
    assert started[0].stopped


def test_resolver_without_the_binary_says_how_to_install_or_pass_a_dsn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pgbouncer, "find_binary", lambda: None)
    resolver = Resolver(dsns={"postgres": "host=pg"}, say=_quiet, use_containers=False)
    resolved = resolver.resolve("postgres-pgbouncer")
    assert (resolved.source, resolved.dsn) == ("unavailable", None)
    for text in ("POOLKIT_POSTGRES_PGBOUNCER_DSN", "--pool-dsn postgres-pgbouncer=DSN"):
        assert text in resolved.why
    assert "apt-get install pgbouncer" in resolved.why


def test_resolver_without_postgres_says_why(started: list[_StandIn]) -> None:
    resolved = Resolver(say=_quiet, use_containers=False).resolve("postgres-pgbouncer")
    assert resolved.source == "unavailable" and started == []
    assert "postgres is unavailable: no DSN for postgres (set POOLKIT_POSTGRES_DSN" in resolved.why
    assert "POOLKIT_POSTGRES_PGBOUNCER_DSN" in resolved.why


def test_resolver_when_pgbouncer_does_not_start(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(upstream: str, **options: Any) -> None:
        raise PgBouncerError("PgBouncer did not start: FATAL bad config")

    monkeypatch.setattr(pgbouncer, "find_binary", lambda: "/usr/sbin/pgbouncer")
    monkeypatch.setattr(pgbouncer, "start", failing)
    said: list[str] = []
    resolver = Resolver(dsns={"postgres": "host=pg"}, say=said.append, use_containers=False)
    resolved = resolver.resolve("postgres-pgbouncer")
    assert resolved.source == "unavailable"
    assert "FATAL bad config" in resolved.why and "POOLKIT_POSTGRES_PGBOUNCER_DSN" in resolved.why
    assert any("did not start" in s for s in said)
    resolver.close()


def test_pool_dsn_and_require_accept_the_backend(pytester: pytest.Pytester) -> None:
    """Without postgres, a required postgres-pgbouncer fails with the reason; the option
    and its DSN are accepted (no usage error)."""
    result = pytester.runpytest(
        *QUIET,
        "--pool-conformance",
        "--pool-backend=postgres-pgbouncer",
        "--pool-require=postgres-pgbouncer",
        "--pool-no-containers",
        "-k",
        "test_select_one_round_trip",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["*required backend unavailable: no DSN for postgres-pgbouncer (set POOLKIT_POSTGRES_PGB*"]
    )
    refused = pytester.runpytest(
        *QUIET,
        "--pool-conformance",
        "--pool-backend=postgres-pgbouncer",
        f"--pool-dsn=postgres-pgbouncer=postgresql://u:{SECRET}@127.0.0.1:1/db",
        "--pool-driver=psycopg2",
        "-k",
        "test_select_one_round_trip",
    )
    # unreachable: left out of the run and said so, not a usage error
    assert refused.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    refused.stdout.fnmatch_lines(["  postgres-pgbouncer (psycopg2): *unreachable*"])
    assert SECRET not in refused.stdout.str() + refused.stderr.str()


# ----- a real PgBouncer ---------------------------------------------------------------------


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def test_start_serve_count_and_stop(upstream_dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    """A real PgBouncer: queries pass through in transaction mode, the admin console counts
    clients by application_name, and stop() ends the process and removes its files."""
    psycopg2 = need("psycopg2")
    caplog.set_level(logging.INFO, logger="poolkit.conformance.pgbouncer")
    with start(upstream_dsn, pool_size=2) as bouncer:
        assert bouncer.running and bouncer.version.startswith("PgBouncer")
        assert f"127.0.0.1:{bouncer.port} -> " in repr(bouncer)
        raw = [psycopg2.connect(bouncer.dsn, application_name="pkc_pgb_test") for _ in range(3)]
        try:
            for i, conn in enumerate(raw):
                cur = conn.cursor()
                cur.execute("SELECT %s + 1, current_setting('application_name')", (i,))
                assert cur.fetchall() == [(i + 1, "pkc_pgb_test")]
                conn.commit()
            with bouncer.admin() as admin:
                assert admin.count("pkc_pgb_test") == 3
                pools = admin.show("POOLS")
                assert {p["pool_mode"] for p in pools if p["database"] != "pgbouncer"} == {
                    "transaction"
                }
        finally:
            for conn in raw:
                conn.close()
        directory = bouncer._directory
        assert (directory / "pgbouncer.ini").exists()
    assert not bouncer.running and "stopped" in repr(bouncer)
    assert not directory.exists()
    assert _refused(bouncer.port)
    assert bouncer not in pgbouncer._RUNNING
    bouncer.stop()  # again: nothing to do
    assert any("started PgBouncer" in r.getMessage() for r in caplog.records)


def test_a_password_never_shows(upstream_dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    """Clients authenticate with the upstream password (SCRAM, from the user list); it is in
    the DSN, never in the repr, the logs or a masked DSN."""
    psycopg2 = need("psycopg2")
    caplog.set_level(logging.DEBUG, logger="poolkit.conformance.pgbouncer")
    upstream = Upstream.parse(upstream_dsn)
    dsn = f"{upstream_dsn} password={pgbouncer._dsn_value(SECRET)}"  # the server trusts us
    with start(dsn) as bouncer:
        conn = psycopg2.connect(bouncer.dsn)
        conn.close()
        with pytest.raises(psycopg2.OperationalError, match="authentication failed"):
            psycopg2.connect(bouncer.dsn.replace("Bn9", "Xx9"))
        shown = repr(bouncer) + bouncer.redact(bouncer.dsn) + bouncer.redact(bouncer.admin_dsn)
        assert upstream.user in shown
    assert SECRET not in shown and "Bn9" not in shown
    assert not any("Bn9" in r.getMessage() for r in caplog.records)


def test_command_line_prints_the_dsn_and_stops_when_interrupted(upstream_dsn: str) -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "poolkit.conformance.pgbouncer", "--upstream", upstream_dsn],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            dsn = process.stdout.readline().strip()
            assert dsn.startswith("host=127.0.0.1 port=") and "dbname=" in dsn
            port = int(dsn.split("port=", 1)[1].split()[0])
            assert not _refused(port)
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=15) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert _refused(port)


def test_command_line_without_an_upstream_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No --upstream, no POOLKIT_POSTGRES_DSN, nothing at the default address: say what to do."""
    with pytest.raises(SystemExit) as exited:
        pgbouncer.main([])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "nothing answers at the default 127.0.0.1:1" in err
    assert "pass --upstream DSN or set POOLKIT_POSTGRES_DSN" in err


def test_stopped_at_interpreter_exit(upstream_dsn: str) -> None:
    code = (
        "import sys\n"
        "from poolkit.conformance.pgbouncer import start\n"
        "bouncer = start(sys.argv[1])\n"
        "print(bouncer.port, bouncer._process.pid, flush=True)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, upstream_dsn], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    port, pid = (int(v) for v in result.stdout.split())
    assert _refused(port)
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_conformance_run_starts_pgbouncer_in_front_of_postgres(
    pytester: pytest.Pytester, upstream_dsn: str
) -> None:
    """A few checks on the auto-started PgBouncer, required: they pass, with source "started"."""
    report = pytester.path / "rep"
    result = pytester.runpytest(
        *QUIET,
        "--pool-conformance",
        "--pool-backend=postgres-pgbouncer",
        "--pool-require=postgres-pgbouncer",
        f"--pool-dsn=postgres={upstream_dsn}",
        "--pool-report",
        str(report),
        "-k",
        "test_select_one_round_trip or test_server_never_sees_more_sessions_than_max_size "
        "or test_statement_timeout",
    )
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    counts = result.parseoutcomes()
    assert counts["passed"] > 0 and set(counts) <= {"passed", "xfailed", "deselected"}
    import json

    results = json.loads(report.with_suffix(".json").read_text())["results"]
    assert {r["source"] for r in results} == {"started"}
    assert {r["backend"] for r in results} == {"postgres-pgbouncer"}
    timeouts = [r for r in results if r["check"].startswith("test_statement_timeout")]
    assert timeouts and {r["outcome"] for r in timeouts} == {"not supported"}
    assert all("statement_timeout (a SET is session state" in r["why"] for r in timeouts)
    assert _resolve.PGBOUNCER == "postgres-pgbouncer"
