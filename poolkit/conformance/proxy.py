"""A loopback TCP fault proxy: put it between a pool and a real server, then break the network.

:class:`FaultProxy` listens on 127.0.0.1 and forwards every connection to an upstream server
that must be on a loopback address too. From the test, while traffic flows:

- :meth:`~FaultProxy.delay` adds latency to every chunk forwarded, both ways;
- :meth:`~FaultProxy.deafen` stops forwarding without closing anything (the "deaf server"
  that makes pools hang: connects and queries get no answer, sockets stay open);
  :meth:`~FaultProxy.deafen_after` lets a number of bytes from the server through first, so a
  result stalls halfway; :meth:`~FaultProxy.hear` forwards again, held bytes included;
- :meth:`~FaultProxy.reset_all` resets every connection (a TCP RST on both sides), as a server
  restart or a failover does;
- :meth:`~FaultProxy.refuse` stops listening, so new connects are refused; :meth:`accept`
  listens again on the same port.

The proxy runs an asyncio loop of its own on a daemon thread, so the test may use asyncio,
trio or plain threads. It is bounded: each control call waits at most a few seconds, and the
proxy stops by itself ``lifetime`` seconds after it started (and when the process exits), so a
forgotten one cannot keep a test run's connections hanging.

    with FaultProxy("127.0.0.1", 5432) as proxy:
        dsn = f"host=127.0.0.1 port={proxy.port} dbname=test"
        ...
        proxy.deafen()
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from types import TracebackType
from typing import Any, TypeVar

__all__ = ["FaultProxy", "ProxyError"]

T = TypeVar("T")

_CHUNK = 65536
_CONTROL_TIMEOUT = 5.0  # seconds a control call may take before it fails


class ProxyError(Exception):
    """The proxy cannot do what was asked: a non-loopback address, or it is not running."""


def _loopback(host: str, what: str) -> None:
    """``host`` must resolve to loopback addresses only (the proxy never reaches further)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ProxyError(f"{what} {host!r} does not resolve ({exc})") from None
    addresses = {str(info[4][0]) for info in infos}
    outside = sorted(a for a in addresses if not ipaddress.ip_address(a).is_loopback)
    if not addresses or outside:
        raise ProxyError(
            f"{what} {host!r} must be a loopback address (127.0.0.0/8 or ::1); "
            f"it resolves to {', '.join(outside) or 'nothing'}"
        )


class _Pipe:
    """One proxied connection: the client's socket and the server's, and two pumps."""

    def __init__(self, client: asyncio.StreamWriter, server: asyncio.StreamWriter) -> None:
        self.writers = (client, server)
        self.tasks: list[asyncio.Task[None]] = []


class FaultProxy:
    """Forwards ``127.0.0.1:<port>`` to ``upstream_host:upstream_port``, with faults on demand.

    ``port=0`` picks a free port (read it from :attr:`port` once started). ``lifetime``: the
    proxy stops by itself that many seconds after :meth:`start`.
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        listen_host: str = "127.0.0.1",
        port: int = 0,
        lifetime: float = 600.0,
    ) -> None:
        if isinstance(upstream_port, bool) or not isinstance(upstream_port, int):
            raise TypeError(f"upstream_port must be an int, got {upstream_port!r}")
        if not 0 < upstream_port < 65536:
            raise ValueError(f"upstream_port must be in 1..65535, got {upstream_port}")
        if not lifetime > 0:
            raise ValueError(f"lifetime must be > 0 seconds, got {lifetime!r}")
        _loopback(upstream_host, "upstream_host")
        _loopback(listen_host, "listen_host")
        self.upstream = (upstream_host, upstream_port)
        self.host = listen_host
        self.port = port
        self.lifetime = lifetime
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._pipes: set[_Pipe] = set()
        self._accepting: set[asyncio.Task[Any]] = set()  # accepted, connecting upstream
        self._hearing: asyncio.Event | None = None
        self._quit: asyncio.Event | None = None
        self._latency = 0.0
        self._allowance: int | None = None  # bytes from the server still let through
        self._stopped = threading.Event()
        self._accepted = 0
        self._forwarded = 0

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        n = len(self._pipes)
        return (
            f"<FaultProxy 127.0.0.1:{self.port} -> {self.upstream[0]}:{self.upstream[1]} "
            f"{state}, {n} connection{'' if n == 1 else 's'}>"
        )

    # ----- life ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._stopped.is_set()

    def start(self) -> FaultProxy:
        """Listen and forward; returns once connects are accepted."""
        if self._thread is not None:
            raise ProxyError("the proxy was started already")
        loop = asyncio.new_event_loop()
        ready: Future[None] = Future()
        self._loop = loop
        self._thread = threading.Thread(
            target=self._main, args=(loop, ready), name="poolkit-fault-proxy", daemon=True
        )
        self._thread.start()
        try:
            ready.result(_CONTROL_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        return self

    def _main(self, loop: asyncio.AbstractEventLoop, ready: Future[None]) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(ready))
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._stopped.set()

    async def _serve(self, ready: Future[None]) -> None:
        self._hearing = asyncio.Event()
        self._hearing.set()
        self._quit = asyncio.Event()
        try:
            await self._listen()
        except BaseException as exc:
            ready.set_exception(exc)
            return
        ready.set_result(None)
        with contextlib.suppress(asyncio.TimeoutError):  # bounded: it stops by itself
            await asyncio.wait_for(self._quit.wait(), self.lifetime)
        await self._shutdown()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        await self._refuse()
        # Clients accepted a moment ago may still be connecting upstream: end those first,
        # so that no connect is left pending (and no socket unclosed) when the loop closes.
        accepting = list(self._accepting)
        for task in accepting:
            task.cancel()
        await asyncio.gather(*accepting, return_exceptions=True)
        tasks = [t for pipe in self._pipes for t in pipe.tasks]
        await self._reset_all()  # cancels those pumps; wait for them to end
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        """Close every connection and the listener; idempotent, bounded."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or self._stopped.is_set():
            return
        quit_ = self._quit
        if quit_ is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: stopped
                loop.call_soon_threadsafe(quit_.set)
        thread.join(_CONTROL_TIMEOUT)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ----- faults (thread-safe; each returns once in effect) ---------------------------

    def delay(self, seconds: float) -> None:
        """Hold every chunk ``seconds`` before forwarding it, both ways (0: no latency)."""
        if not seconds >= 0:
            raise ValueError(f"delay must be >= 0 seconds, got {seconds!r}")
        self._control(self._delay(float(seconds)))

    def deafen(self) -> None:
        """Stop forwarding, both ways, on every connection, new ones too; close nothing."""
        self._control(self._deafen(None))

    def deafen_after(self, nbytes: int) -> None:
        """Let ``nbytes`` more bytes from the server through, then stop forwarding."""
        if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
            raise ValueError(f"nbytes must be an int >= 0, got {nbytes!r}")
        self._control(self._deafen(nbytes))

    def hear(self) -> None:
        """Forward again, starting with what was held."""
        self._control(self._hear())

    def reset_all(self) -> int:
        """Reset every connection (TCP RST to the client and the server); returns how many."""
        return self._control(self._reset_all())

    def refuse(self) -> None:
        """Stop listening: new connects are refused. Open connections stay up."""
        self._control(self._refuse())

    def accept(self) -> None:
        """Listen again, on the same port, after :meth:`refuse`."""
        self._control(self._accept_again())

    @property
    def connections(self) -> int:
        """Connections proxied now."""
        return len(self._pipes)

    @property
    def accepted(self) -> int:
        """Connections accepted since start."""
        return self._accepted

    @property
    def forwarded(self) -> int:
        """Bytes forwarded since start, both ways."""
        return self._forwarded

    def _control(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self._loop
        if loop is None or self._stopped.is_set() or loop.is_closed():
            coro.close()
            raise ProxyError(f"{self!r} is not running")
        return asyncio.run_coroutine_threadsafe(coro, loop).result(_CONTROL_TIMEOUT)

    async def _delay(self, seconds: float) -> None:
        self._latency = seconds

    async def _deafen(self, allowance: int | None) -> None:
        assert self._hearing is not None
        self._allowance = allowance or None
        if not allowance:
            self._hearing.clear()

    async def _hear(self) -> None:
        assert self._hearing is not None
        self._allowance = None
        self._hearing.set()

    async def _reset_all(self) -> int:
        pipes = list(self._pipes)
        for pipe in pipes:
            self._abort(pipe)
        return len(pipes)

    async def _refuse(self) -> None:
        if self._server is not None:
            self._server.close()  # the listener only (wait_closed would wait for clients)
            self._server = None

    async def _accept_again(self) -> None:
        if self._server is None:
            await self._listen()

    # ----- forwarding ------------------------------------------------------------------

    def _abort(self, pipe: _Pipe) -> None:
        """Close both sockets with a TCP RST (linger 0), not an orderly FIN."""
        for writer in pipe.writers:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        for task in pipe.tasks:
            task.cancel()
        self._pipes.discard(pipe)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._accepting.add(task)
        try:
            upstream = await asyncio.wait_for(
                asyncio.open_connection(*self.upstream), _CONTROL_TIMEOUT
            )
        except (OSError, asyncio.TimeoutError):
            writer.transport.abort()  # the server is down: so is the proxy, for this client
            return
        except asyncio.CancelledError:  # the proxy stops
            writer.transport.abort()
            raise
        finally:
            self._accepting.discard(task)
        pipe = _Pipe(writer, upstream[1])
        self._pipes.add(pipe)
        pipe.tasks = [
            asyncio.create_task(self._pump(pipe, reader, upstream[1], from_server=False)),
            asyncio.create_task(self._pump(pipe, upstream[0], writer, from_server=True)),
        ]

    async def _pump(
        self,
        pipe: _Pipe,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        from_server: bool,
    ) -> None:
        hearing = self._hearing
        assert hearing is not None
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                while data:
                    await hearing.wait()
                    if self._latency:
                        await asyncio.sleep(self._latency)
                    chunk = data
                    if from_server and self._allowance is not None:
                        chunk = data[: self._allowance]
                        self._allowance -= len(chunk)
                        if not self._allowance:
                            self._allowance = None
                            hearing.clear()
                    data = data[len(chunk) :]
                    self._forwarded += len(chunk)  # before the peer can see it
                    writer.write(chunk)
                    await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if pipe in self._pipes:  # one side ended: end the other, in order
                self._pipes.discard(pipe)
                for side in pipe.writers:
                    side.close()
                for task in pipe.tasks:
                    if task is not asyncio.current_task():
                        task.cancel()
