"""The loopback fault proxy, against a tiny echo server on 127.0.0.1 (no database needed)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from poolkit.conformance.proxy import FaultProxy, ProxyError

HANG = 10.0  # a bound only a hang reaches


@pytest.fixture
def echo() -> Iterator[int]:
    """An echo server's port: every connection sends back what it receives."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                conn.sendall(data)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(HANG)
        listener.close()


def _client(proxy: FaultProxy, timeout: float = HANG) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)


def _round_trip(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def test_forwards_both_ways(echo: int) -> None:
    with FaultProxy("127.0.0.1", echo) as proxy, _client(proxy) as sock:
        assert _round_trip(sock, b"hello") == b"hello"
        assert proxy.connections == 1 and proxy.accepted == 1
        assert proxy.forwarded == 10  # 5 bytes each way


def test_deafen_holds_the_bytes_and_hear_delivers_them(echo: int) -> None:
    with FaultProxy("127.0.0.1", echo) as proxy, _client(proxy, timeout=0.3) as sock:
        proxy.deafen()
        sock.sendall(b"held")
        with pytest.raises(TimeoutError):
            sock.recv(10)  # nothing comes back, and nothing is closed either
        proxy.hear()
        sock.settimeout(HANG)
        assert sock.recv(10) == b"held"


def test_deafen_after_lets_that_many_bytes_through(echo: int) -> None:
    with FaultProxy("127.0.0.1", echo) as proxy, _client(proxy, timeout=0.3) as sock:
        proxy.deafen_after(4)
        sock.sendall(b"0123456789")
        got = b""
        with pytest.raises(TimeoutError):
            while True:
                got += sock.recv(10)
        assert got == b"0123"
        proxy.hear()
        sock.settimeout(HANG)
        while len(got) < 10:
            got += sock.recv(10)
        assert got == b"0123456789"


def test_delay_holds_each_chunk(echo: int) -> None:
    with FaultProxy("127.0.0.1", echo) as proxy, _client(proxy) as sock:
        proxy.delay(0.2)
        start = time.monotonic()
        assert _round_trip(sock, b"x") == b"x"
        assert time.monotonic() - start >= 0.4  # held on the way there and back
        with pytest.raises(ValueError, match="delay must be >= 0"):
            proxy.delay(-1)


def test_reset_all_sends_a_reset(echo: int) -> None:
    with FaultProxy("127.0.0.1", echo) as proxy, _client(proxy) as sock:
        assert _round_trip(sock, b"a") == b"a"
        assert proxy.reset_all() == 1
        with pytest.raises(ConnectionResetError):
            for _ in range(10):  # the RST may land on the send or on the receive
                sock.sendall(b"b")
                if not sock.recv(10):
                    break
                time.sleep(0.05)
        assert proxy.connections == 0


def test_refuse_and_accept_again_on_the_same_port(echo: int) -> None:
    with FaultProxy("127.0.0.1", echo) as proxy:
        port = proxy.port
        proxy.refuse()
        with pytest.raises(ConnectionRefusedError):
            _client(proxy)
        proxy.accept()
        assert proxy.port == port
        with _client(proxy) as sock:
            assert _round_trip(sock, b"back") == b"back"


@pytest.mark.parametrize("host", ["8.8.8.8", "10.0.0.1", "example.invalid"])
def test_only_loopback_upstreams(host: str) -> None:
    with pytest.raises(ProxyError, match=r"loopback|does not resolve"):
        FaultProxy(host, 5432)


def test_only_loopback_listeners(echo: int) -> None:
    with pytest.raises(ProxyError, match="listen_host"):
        FaultProxy("127.0.0.1", echo, listen_host="0.0.0.0")


def test_it_stops_by_itself_after_its_lifetime(echo: int) -> None:
    proxy = FaultProxy("127.0.0.1", echo, lifetime=0.3).start()
    with _client(proxy) as sock:
        deadline = time.monotonic() + HANG
        while proxy.running and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not proxy.running
        try:
            ended = sock.recv(10) == b""
        except ConnectionResetError:
            ended = True
        assert ended, "a connection outlived the proxy"
    with pytest.raises(ProxyError, match="not running"):
        proxy.deafen()
    proxy.stop()  # idempotent


def test_bad_arguments_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="upstream_port"):
        FaultProxy("127.0.0.1", 0)
    with pytest.raises(TypeError, match="upstream_port"):
        FaultProxy("127.0.0.1", "5432")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lifetime"):
        FaultProxy("127.0.0.1", 5432, lifetime=0)
    with pytest.raises(ValueError, match="nbytes"):
        FaultProxy("127.0.0.1", 5432).deafen_after(-1)


def test_stop_ends_a_client_still_connecting_upstream() -> None:
    """A client accepted while the proxy's connect to the server is still pending (the
    server's backlog is full, so its SYNs go unanswered): stop() ends that connect too,
    leaving no pending coroutine or unclosed socket behind once the proxy's loop closes
    (those would surface as unraisable ResourceWarnings in a later test)."""
    import gc
    import warnings

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)  # never accepts: one queued connect fills the backlog
    fillers = []
    try:
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(server.getsockname())
            fillers.append(s)
        proxy = FaultProxy(*server.getsockname(), lifetime=HANG).start()
        client = socket.create_connection(("127.0.0.1", proxy.port), timeout=HANG)
        deadline = time.monotonic() + HANG
        while proxy.accepted == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proxy.accepted == 1 and proxy.connections == 0  # still connecting upstream
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            started = time.monotonic()
            proxy.stop()
            assert time.monotonic() - started < HANG
            gc.collect()
        leaks = [w for w in seen if issubclass(w.category, (ResourceWarning, RuntimeWarning))]
        assert leaks == [], [str(w.message) for w in leaks]
        client.close()
    finally:
        for s in fillers:
            s.close()
        server.close()
