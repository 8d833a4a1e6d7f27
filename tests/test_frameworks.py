"""The pool from different hosts: a Tornado RequestHandler, plain asyncio.run, trio.run and
anyio.run (each in-process, from sync tests)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anyio
import pytest
import sniffio
import tornado.httpclient
import tornado.httpserver
import tornado.testing
import tornado.web
import trio

import poolkit
from tests.backends import Backend


async def double(conn: poolkit.AsyncConnection, backend: Backend, n: int) -> Any:
    cur = await conn.execute(f"SELECT {backend.q(0)} * 2", (n,))
    rows = await cur.fetchall()
    assert len(rows) == 1
    return rows[0][0]


# ----- Tornado -------------------------------------------------------------------------


class DoubleHandler(tornado.web.RequestHandler):
    def initialize(self, pool: poolkit.Pool, backend: Backend, gate: asyncio.Event) -> None:
        self.pool = pool
        self.backend = backend
        self.gate = gate

    async def get(self, n: str) -> None:
        async with self.pool.connection(timeout=10) as conn:
            value = await double(conn, self.backend, int(n))
            await self.gate.wait()  # keep the connection until the test opens the gate
        self.write({"n": int(n), "double": value, "library": sniffio.current_async_library()})


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_tornado_request_handler(backend: Backend) -> None:
    gate = asyncio.Event()
    async with backend.pool(min_size=2, max_size=2) as pool:
        handler_args = {"pool": pool, "backend": backend, "gate": gate}
        app = tornado.web.Application([(r"/double/(\d+)", DoubleHandler, handler_args)])
        sock, port = tornado.testing.bind_unused_port()
        server = tornado.httpserver.HTTPServer(app)
        server.add_sockets([sock])
        client = tornado.httpclient.AsyncHTTPClient()
        try:
            fetches = asyncio.gather(
                *(client.fetch(f"http://127.0.0.1:{port}/double/{n}") for n in range(8))
            )
            try:
                # two handlers hold both connections, the other six queue on the pool
                with anyio.fail_after(10):
                    while (pool.stats().in_use, pool.stats().waiting) != (2, 6):
                        await asyncio.sleep(0.005)
            finally:
                gate.set()
            responses = await fetches
        finally:
            client.close()
            server.stop()
            await server.close_all_connections()
        bodies = [json.loads(r.body) for r in responses]
        assert [r.code for r in responses] == [200] * 8
        assert bodies == [{"n": n, "double": 2 * n, "library": "asyncio"} for n in range(8)]
        s = pool.stats()
        assert (s.acquired, s.waited) == (8, 6)
        assert (s.in_use, s.waiting) == (0, 0)
        assert s.size <= 2
        # the same pool, used directly from the test on the same loop
        async with pool.connection() as conn:
            assert await double(conn, backend, 21) == 42


# ----- asyncio.run / trio.run / anyio.run ----------------------------------------------


async def summary(
    pool: poolkit.Pool, backend: Backend, values: list[Any], waiting_after_cancel: int
) -> dict[str, Any]:
    """What every workload reports, after one more query on the same pool."""
    async with pool.connection() as conn:
        last = await double(conn, backend, 50)
    s = pool.stats()
    return {
        "library": sniffio.current_async_library(),
        "values": values,
        "waiting_after_cancel": waiting_after_cancel,
        "last": last,
        "stats": (s.in_use, s.waiting, s.timeouts, s.size <= 2),
    }


async def asyncio_workload(backend: Backend) -> dict[str, Any]:
    """Native asyncio only: gather, wait_for (task cancellation), no anyio in the caller."""
    async with backend.pool(min_size=1, max_size=2) as pool:

        async def one(n: int) -> Any:
            async with pool.connection() as conn:
                await asyncio.sleep(0.01)
                return await double(conn, backend, n)

        values = await asyncio.gather(*(one(n) for n in range(6)))
        holders = [await pool.acquire(), await pool.acquire()]
        try:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(pool.acquire(), 0.1)  # cancelled while waiting
            waiting_after_cancel = pool.stats().waiting
        finally:
            for holder in holders:
                pool.release(holder)
        return await summary(pool, backend, list(values), waiting_after_cancel)


async def trio_workload(backend: Backend) -> dict[str, Any]:
    """Native trio only: nursery, move_on_after."""
    async with backend.pool(min_size=1, max_size=2) as pool:
        values: dict[int, Any] = {}

        async def one(n: int) -> None:
            async with pool.connection() as conn:
                await trio.sleep(0.01)
                values[n] = await double(conn, backend, n)

        async with trio.open_nursery() as nursery:
            for n in range(6):
                nursery.start_soon(one, n)
        holders = [await pool.acquire(), await pool.acquire()]
        try:
            with trio.move_on_after(0.1) as scope:
                await pool.acquire()
            assert scope.cancelled_caught
            waiting_after_cancel = pool.stats().waiting
        finally:
            for holder in holders:
                pool.release(holder)
        return await summary(pool, backend, [values[n] for n in range(6)], waiting_after_cancel)


async def anyio_workload(backend: Backend) -> dict[str, Any]:
    async with backend.pool(min_size=1, max_size=2) as pool:
        values: dict[int, Any] = {}

        async def one(n: int) -> None:
            async with pool.connection() as conn:
                await anyio.sleep(0.01)
                values[n] = await double(conn, backend, n)

        async with anyio.create_task_group() as tg:
            for n in range(6):
                tg.start_soon(one, n)
        holders = [await pool.acquire(), await pool.acquire()]
        try:
            with anyio.move_on_after(0.1) as scope:
                await pool.acquire()
            assert scope.cancelled_caught
            waiting_after_cancel = pool.stats().waiting
        finally:
            for holder in holders:
                pool.release(holder)
        return await summary(pool, backend, [values[n] for n in range(6)], waiting_after_cancel)


def expected(library: str) -> dict[str, Any]:
    return {
        "library": library,
        "values": [0, 2, 4, 6, 8, 10],
        "waiting_after_cancel": 0,
        "last": 100,
        "stats": (0, 0, 0, True),
    }


def test_plain_asyncio_run(backend: Backend) -> None:
    assert asyncio.run(asyncio_workload(backend)) == expected("asyncio")


def test_plain_trio_run(backend: Backend) -> None:
    assert trio.run(trio_workload, backend) == expected("trio")


@pytest.mark.parametrize("library", ["asyncio", "trio"])
def test_anyio_run(backend: Backend, library: str) -> None:
    assert anyio.run(anyio_workload, backend, backend=library) == expected(library)


def test_one_event_loop_after_another(backend: Backend) -> None:
    """Pools opened by consecutive event loops in one process do not interfere."""
    results = [
        asyncio.run(asyncio_workload(backend)),
        trio.run(trio_workload, backend),
        asyncio.run(asyncio_workload(backend)),
    ]
    assert results == [expected("asyncio"), expected("trio"), expected("asyncio")]
