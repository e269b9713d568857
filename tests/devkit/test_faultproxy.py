"""The fault proxy does what each mode says, against a real TCP echo server."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from devkit.faultproxy import ThreadedFaultProxy


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    def echo(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(4096):
                conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    stop.set()
    thread.join(2)
    server.close()


def roundtrip(port: int, payload: bytes, timeout: float = 2.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        return got


def test_pass_and_latency(echo_port: int) -> None:
    with ThreadedFaultProxy("127.0.0.1", echo_port) as proxy:
        assert roundtrip(proxy.port, b"hello") == b"hello"
        proxy.set("latency", latency=0.3)
        started = time.monotonic()
        assert roundtrip(proxy.port, b"slow") == b"slow"
        assert time.monotonic() - started >= 0.5  # held once each way


def test_blackhole_times_out(echo_port: int) -> None:
    with ThreadedFaultProxy("127.0.0.1", echo_port) as proxy:
        proxy.set("blackhole")
        with pytest.raises(TimeoutError):
            roundtrip(proxy.port, b"anyone?", timeout=0.5)


def test_reset_is_a_connection_reset(echo_port: int) -> None:
    with ThreadedFaultProxy("127.0.0.1", echo_port) as proxy:
        proxy.set("reset")
        try:
            got = roundtrip(proxy.port, b"x" * 10)
        except (ConnectionResetError, BrokenPipeError):
            got = b"reset"
        assert got == b"reset"


def test_drip_delivers_slowly_but_completely(echo_port: int) -> None:
    with ThreadedFaultProxy("127.0.0.1", echo_port) as proxy:
        proxy.set("drip", drip_bytes=1, drip_interval=0.02)
        started = time.monotonic()
        assert roundtrip(proxy.port, b"abcdefgh", timeout=5) == b"abcdefgh"
        assert time.monotonic() - started >= 0.1


def test_unknown_mode_refused(echo_port: int) -> None:
    with ThreadedFaultProxy("127.0.0.1", echo_port) as proxy, pytest.raises(ValueError):
        proxy.set("explode")
