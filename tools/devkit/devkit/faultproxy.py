"""A TCP fault proxy on loopback: latency, blackhole, connection reset and slow drip.

Put it between two parts (the gateway and a service, a service and PostgreSQL)
by pointing the client at the proxy's port. The mode can be changed while
traffic flows; it applies to new data on every connection:

- ``pass``: forward bytes as they come;
- ``latency``: hold each chunk ``latency`` seconds before forwarding;
- ``blackhole``: accept and read, forward nothing, answer nothing;
- ``reset``: abort every connection (RST) as soon as it carries data;
- ``drip``: forward ``drip_bytes`` bytes every ``drip_interval`` seconds.

Run it in the test process with :class:`ThreadedFaultProxy` (its own event loop in
a thread), or as ``python -m devkit.faultproxy LISTEN_PORT TARGET_HOST TARGET_PORT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from dataclasses import dataclass, field

MODES = ("pass", "latency", "blackhole", "reset", "drip")


@dataclass
class FaultConfig:
    """The proxy's current behaviour (read on every chunk, so changes apply at once)."""

    mode: str = "pass"
    latency: float = 0.0
    drip_bytes: int = 1
    drip_interval: float = 0.05


@dataclass
class FaultProxy:
    """The asyncio proxy itself."""

    target_host: str
    target_port: int
    listen_port: int = 0
    config: FaultConfig = field(default_factory=FaultConfig)
    connections: int = 0
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.listen_port)
        self.listen_port = int(self._server.sockets[0].getsockname()[1])
        return self.listen_port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
        # Connections still piping (a blackholed one never ends by itself): end them, so that
        # no task is left pending when the loop stops.
        pending = [t for t in self._tasks if not t.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def reset_all(self) -> None:
        """Abort every open connection now (RST), whatever the mode."""
        for writer in list(self._writers):
            _abort(writer)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            _abort(writer)
            self._writers.discard(writer)
            return
        self._writers.add(up_writer)
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer, writer),
                self._pipe(up_reader, writer, up_writer),
            )
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                with contextlib.suppress(Exception):
                    w.close()

    async def _pipe(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, other: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                data = await src.read(65536)
                if not data:
                    break
                cfg = self.config
                if cfg.mode == "reset":
                    _abort(dst)
                    _abort(other)
                    return
                if cfg.mode == "blackhole":
                    continue
                if cfg.mode == "latency" and cfg.latency > 0:
                    await asyncio.sleep(cfg.latency)
                if cfg.mode == "drip":
                    for i in range(0, len(data), max(1, cfg.drip_bytes)):
                        dst.write(data[i : i + max(1, cfg.drip_bytes)])
                        await dst.drain()
                        await asyncio.sleep(cfg.drip_interval)
                    continue
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            _abort(other)
        finally:
            with contextlib.suppress(Exception):
                if dst.can_write_eof():
                    dst.write_eof()


def _abort(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport = writer.transport
    with contextlib.suppress(Exception):
        transport.abort()


class ThreadedFaultProxy:
    """A :class:`FaultProxy` running on its own event loop in a daemon thread (for tests)."""

    def __init__(self, target_host: str, target_port: int, listen_port: int = 0) -> None:
        self.proxy = FaultProxy(target_host, target_port, listen_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name="fault-proxy"
        )

    def __enter__(self) -> ThreadedFaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.proxy.start(), self._loop).result(5)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def port(self) -> int:
        return self.proxy.listen_port

    def set(self, mode: str, **params: float) -> None:
        """Switch mode (``pass``, ``latency``, ``blackhole``, ``reset``, ``drip``)."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        cfg = FaultConfig(mode=mode)
        for key, value in params.items():
            setattr(cfg, key, type(getattr(cfg, key))(value))
        self.proxy.config = cfg

    def reset_all(self) -> None:
        self._loop.call_soon_threadsafe(self.proxy.reset_all)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m devkit.faultproxy", description=__doc__)
    parser.add_argument("listen_port", type=int)
    parser.add_argument("target_host")
    parser.add_argument("target_port", type=int)
    parser.add_argument("--mode", choices=MODES, default="pass")
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args(argv)

    async def run() -> None:
        proxy = FaultProxy(
            args.target_host,
            args.target_port,
            args.listen_port,
            FaultConfig(mode=args.mode, latency=args.latency),
        )
        await proxy.start()
        await asyncio.Event().wait()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
