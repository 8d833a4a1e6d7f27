"""The pool on a network that stops answering, made by poolkit's loopback fault proxy.

Each scenario runs in a child process with a deadline: the bug class here freezes a whole
interpreter, which no in-process timeout can report.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.backends import resolve

# The child: a pool over psycopg2 through a fault proxy; the network stalls halfway through
# a result; the caller gives up after 0.5 s. It prints how often the event loop ran meanwhile.
STALLED_CANCEL = """
import sys, time
import anyio, psycopg2, poolkit
from poolkit.conformance.proxy import FaultProxy
from psycopg2.extensions import parse_dsn

parts = parse_dsn(sys.argv[1])
host, port = parts.get("host") or "127.0.0.1", int(parts.get("port") or 5432)
with FaultProxy(host, port, lifetime=60) as proxy:
    parts.update(host="127.0.0.1", port=str(proxy.port))

    async def main() -> None:
        async with poolkit.Pool(psycopg2, connect_kwargs=parts, min_size=1, max_size=1) as pool:
            proxy.deafen_after(16 * 1024)
            with anyio.move_on_after(0.5) as scope:
                async with pool.connection() as conn:
                    await conn.execute("SELECT repeat('x', 100) FROM generate_series(1, 100000)")
            assert scope.cancelled_caught
            ticks = 0
            start = time.monotonic()
            while time.monotonic() - start < 1.0:  # the driver cancel runs meanwhile
                await anyio.sleep(0.05)
                ticks += 1
            print("ticks", ticks, flush=True)
            proxy.hear()
            async with pool.connection(timeout=10) as conn:
                cur = await conn.execute("SELECT 21 * 2")
                print("after", (await cur.fetchone())[0], flush=True)

    anyio.run(main)
"""


def test_a_driver_cancel_on_a_stalled_network_does_not_freeze_the_process(
    tmp_path: Path,
) -> None:
    """psycopg2's ``connection.cancel()`` keeps the GIL while libpq waits for the server: with
    the network stalled, a query timeout froze every thread of the process, event loop
    included (found by the conformance check ``test_a_call_stalled_mid_result_ends_with_its_
    caller``). poolkit sends the cancel through libpq without the GIL: the loop keeps
    running while the cancel waits, and the pool serves again once the network is back."""
    backend = resolve("postgres", tmp_path)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    try:
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(STALLED_CANCEL), backend.args[0]],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the process froze (no exit within 30 s); output: {exc.stdout!r}")
    assert done.returncode == 0, done.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert int(lines["ticks"]) >= 10, f"the event loop stalled: {done.stdout!r}"
    assert lines["after"] == "42"
