"""Start the four parts as real uvicorn processes, for ``make run``, end-to-end tests and benches.

A :class:`Cluster` knows each part's port, database URL and key directory, and
hands every process the environment that points it at its peers. Processes
write their JSON logs to one file each, which the tests read.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

SERVICES = ("identity", "issuance", "settlement")
PARTS = ("gateway", *SERVICES)
DEFAULT_PORTS = {"gateway": 8000, "identity": 8001, "issuance": 8002, "settlement": 8003}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sqlite_urls(var_dir: Path) -> dict[str, str]:
    """The embedded default: one SQLite file per service under ``var_dir``."""
    return {svc: f"sqlite+aiosqlite:///{var_dir}/{svc}.db" for svc in SERVICES}


def postgres_urls(base: str, prefix: str = "essc") -> dict[str, str]:
    """One PostgreSQL database per service on the server of ``base`` (``postgresql://u@h:p/x``)."""
    root = base.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    if root.startswith("postgres://"):
        root = root.replace("postgres://", "postgresql+asyncpg://", 1)
    return {svc: f"{root}/{prefix}_{svc}" for svc in SERVICES}


def create_postgres_databases(urls: Mapping[str, str], *, drop_first: bool = False) -> None:
    """Create each database of ``urls`` if missing (connecting to the server's ``postgres`` db)."""
    import asyncio

    import asyncpg

    async def run() -> None:
        for url in urls.values():
            plain = url.replace("postgresql+asyncpg://", "postgresql://", 1)
            server, name = plain.rsplit("/", 1)
            conn = await asyncpg.connect(server + "/postgres")
            try:
                if drop_first:
                    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname=$1", name)
                if not exists:
                    await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()

    asyncio.run(run())


def drop_postgres_databases(urls: Mapping[str, str]) -> None:
    """Drop each database of ``urls`` (test clean-up)."""
    import asyncio

    import asyncpg

    async def run() -> None:
        for url in urls.values():
            plain = url.replace("postgresql+asyncpg://", "postgresql://", 1)
            server, name = plain.rsplit("/", 1)
            conn = await asyncpg.connect(server + "/postgres")
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()

    asyncio.run(run())


@dataclass
class Proc:
    """One running uvicorn process of a part."""

    part: str
    port: int
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Cluster:
    """The four parts' configuration, and the processes started from it.

    ``replicas`` runs several processes of a service (``issuance``, ``issuance-2``, ...),
    each on its own port; peers and the gateway get every replica's URL, comma-separated.
    """

    var_dir: Path
    db_urls: dict[str, str]
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    extra_env: dict[str, str] = field(default_factory=dict)
    environment: str = "development"
    log_dir: Path | None = None
    replicas: dict[str, int] = field(default_factory=dict)
    procs: dict[str, Proc] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for part, count in self.replicas.items():
            for i in range(2, count + 1):
                name = f"{part}-{i}"
                if name not in self.ports:
                    self.ports[name] = free_port()

    @classmethod
    def on_free_ports(cls, var_dir: Path, db_urls: dict[str, str], **kwargs: Any) -> Cluster:
        """A cluster whose ports are picked free (tests)."""
        ports = {part: free_port() for part in PARTS}
        return cls(var_dir=var_dir, db_urls=db_urls, ports=ports, **kwargs)

    def processes(self, part: str) -> list[str]:
        """The process names of a part: ``issuance``, ``issuance-2``, ..."""
        return [part] + [f"{part}-{i}" for i in range(2, self.replicas.get(part, 1) + 1)]

    def url(self, name: str) -> str:
        """The URL of one process (a part name means its first replica)."""
        return f"http://127.0.0.1:{self.ports[name]}"

    def urls(self, part: str) -> str:
        """Every replica of a part, comma-separated (what peers are configured with)."""
        return ",".join(self.url(n) for n in self.processes(part))

    def env_for(self, name: str) -> dict[str, str]:
        """The environment of one process: its database, keys and where its peers are."""
        part = name.split("-", 1)[0]
        prefix = part.upper() + "_"
        env = dict(os.environ)
        env.update(
            {
                prefix + "ENVIRONMENT": self.environment,
                prefix + "KEYS_DIR": str(self.var_dir / "keys" / part),
                prefix + "PUBLIC_ISSUER": self.url("gateway"),
                prefix + "GATEWAY_URL": self.url("gateway"),
                prefix + "IDENTITY_URL": self.urls("identity"),
                prefix + "ISSUANCE_URL": self.urls("issuance"),
                prefix + "SETTLEMENT_URL": self.urls("settlement"),
                "PYTHONUNBUFFERED": "1",
            }
        )
        if part in self.db_urls:
            env[prefix + "DATABASE_URL"] = self.db_urls[part]
        env.update(self.extra_env)
        return env

    def _expand(self, names: Iterable[str]) -> list[str]:
        out: list[str] = []
        for name in names:
            out.extend(self.processes(name) if name in PARTS else [name])
        return out

    def run_cli(
        self, part: str, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``python -m <part> <args>`` with the part's environment."""
        return subprocess.run(
            [sys.executable, "-m", part, *args],
            env=self.env_for(part),
            check=check,
            text=True,
            capture_output=True,
        )

    def run_clis(self, *calls: tuple[str, ...]) -> list[subprocess.CompletedProcess[str]]:
        """Run several ``(part, *args)`` commands at once (each part has its own database);
        raises :class:`subprocess.CalledProcessError` for the first that failed."""
        started = [
            (
                [sys.executable, "-m", *call],
                subprocess.Popen(
                    [sys.executable, "-m", *call],
                    env=self.env_for(call[0]),
                    text=True,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                ),
            )
            for call in calls
        ]
        done = []
        for cmd, popen in started:
            out, err = popen.communicate()
            done.append(subprocess.CompletedProcess(cmd, popen.returncode, out, err))
        for result in done:
            result.check_returncode()
        return done

    def migrate(self) -> None:
        """Apply every service's migrations (the three at once: a third of the wall time)."""
        self.run_clis(*((svc, "migrate") for svc in SERVICES))

    def start(self, parts: Iterable[str] = PARTS, *, graceful_timeout: int = 10) -> None:
        """Start the given parts or processes (not waiting for readiness)."""
        log_dir = self.log_dir or self.var_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        for name in self._expand(parts):
            part = name.split("-", 1)[0]
            log_path = log_dir / f"{name}.log"
            log = log_path.open("ab")
            cmd = [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                f"{part}.main:app_from_env",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.ports[name]),
                "--no-access-log",
                "--timeout-graceful-shutdown",
                str(graceful_timeout),
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--log-level",
                "warning",
            ]
            popen = subprocess.Popen(
                cmd,
                env=self.env_for(name),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            log.close()
            self.procs[name] = Proc(name, self.ports[name], popen, log_path)

    def wait_ready(
        self, parts: Iterable[str] = PARTS, timeout: float = 60.0, path: str = "/readyz"
    ) -> None:
        """Block until each process answers 200 on ``path``; raise with its log tail otherwise."""
        deadline = time.monotonic() + timeout
        # One client for all the polls: each bare httpx.get builds an SSL context (~10 ms CPU).
        with httpx.Client(timeout=1.0) as http:
            for name in self._expand(parts):
                while True:
                    proc = self.procs.get(name)
                    if proc is not None and proc.popen.poll() is not None:
                        raise RuntimeError(
                            f"{name} exited ({proc.popen.returncode}):\n{self.tail(name)}"
                        )
                    try:
                        if http.get(self.url(name) + path).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{name} not ready after {timeout}s:\n{self.tail(name)}")
                    time.sleep(0.1)

    def tail(self, part: str, lines: int = 40) -> str:
        proc = self.procs.get(part)
        if proc is None or not proc.log_path.exists():
            return ""
        return "\n".join(proc.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(
        self,
        parts: Iterable[str] | None = None,
        *,
        sig: int = signal.SIGTERM,
        timeout: float = 15.0,
    ) -> dict[str, int | None]:
        """Signal the given parts (all by default) and wait; returns exit codes."""
        names = self._expand(parts) if parts is not None else list(self.procs)
        for name in names:
            proc = self.procs.get(name)
            if proc is not None and proc.popen.poll() is None:
                proc.popen.send_signal(sig)
        codes: dict[str, int | None] = {}
        deadline = time.monotonic() + timeout
        for name in names:
            proc = self.procs.get(name)
            if proc is None:
                continue
            try:
                codes[name] = proc.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                codes[name] = proc.popen.wait()
            self.procs.pop(name, None)
        return codes
