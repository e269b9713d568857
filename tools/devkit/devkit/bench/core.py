"""Bench plumbing: wrk runs, CPU time of server processes, result rows, the table and JSON."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Row:
    """One measured line of the bench table."""

    group: str
    name: str
    ops_per_s: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu_us_per_op: float | None = None
    ratio: float | None = None
    ratio_of: str | None = None
    notes: str = ""
    extra: dict[str, float | int | str] = field(default_factory=dict)


def cpu_seconds(pids: Iterable[int]) -> float:
    """User+system CPU seconds consumed so far by ``pids`` (and their reaped children)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        # fields[11..14] = utime stime cutime cstime (after the ") state" split)
        total += sum(int(x) for x in fields[11:15]) / CLK_TCK
    return total


@contextmanager
def cpu_meter(pids: Sequence[int]) -> Iterator[list[float]]:
    """Yields a one-element list that holds the CPU seconds spent by ``pids`` inside the block."""
    out = [0.0]
    start = cpu_seconds(pids)
    try:
        yield out
    finally:
        out[0] = cpu_seconds(pids) - start


def _pid_cpu(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return sum(int(x) for x in fields[11:15]) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy so far (all cores, every process: /proc/stat)."""
    parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(x) for x in parts]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    # guest and guest_nice are already counted in user and nice
    return (sum(ticks[:8]) - idle) / CLK_TCK


@dataclass
class Meter:
    """CPU seconds per named group of processes over a block, from /proc (utime+stime).

    A process that exits inside the block contributes nothing (its last ticks are lost);
    processes are read at entry, so one started inside the block is not counted.
    """

    groups: Mapping[str, Sequence[int]]
    cpu: dict[str, float] = field(default_factory=dict)
    wall: float = 0.0
    machine_busy: float = 0.0
    _start: dict[int, float] = field(default_factory=dict)
    _t0: float = 0.0
    _m0: float = 0.0

    def __enter__(self) -> Meter:
        self._start = {}
        for pids in self.groups.values():
            for pid in pids:
                v = _pid_cpu(pid)
                if v is not None:
                    self._start[pid] = v
        self._t0 = time.perf_counter()
        self._m0 = machine_busy_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._t0
        self.machine_busy = machine_busy_seconds() - self._m0
        for name, pids in self.groups.items():
            total = 0.0
            for pid in pids:
                end = _pid_cpu(pid)
                if end is not None and pid in self._start:
                    total += max(0.0, end - self._start[pid])
            self.cpu[name] = total

    @property
    def total(self) -> float:
        """CPU seconds of the service processes (groups not named ``postgres...``)."""
        return sum(v for k, v in self.cpu.items() if not k.startswith("postgres"))

    def per_op_us(self, ops: int) -> dict[str, float]:
        """CPU µs per operation for each group."""
        return {name: per_op_us(c, ops) for name, c in self.cpu.items()}

    def breakdown(self, ops: int, prefix: str = "cpu_us") -> dict[str, float | int | str]:
        """Row.extra entries: ``cpu_us:<group>`` per op, cores busy per group and machine-wide."""
        out: dict[str, float | int | str] = {
            f"{prefix}:{k}": round(v, 1) for k, v in self.per_op_us(ops).items()
        }
        if self.wall > 0:
            out.update({f"cores:{k}": round(c / self.wall, 3) for k, c in self.cpu.items()})
            out["cores:machine"] = round(self.machine_busy / self.wall, 3)
        out["ops"] = ops
        return out

    def note(self, ops: int) -> str:
        """``gateway 640, issuance 1,120`` (µs per op), for the notes column."""
        return ", ".join(f"{k} {v:,.0f}" for k, v in self.per_op_us(ops).items())


def descendants(pid: int) -> list[int]:
    """The live child processes of ``pid``, recursively (e.g. a pool of worker processes: their
    CPU is not in the parent's utime/stime until they are reaped)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                kids = [int(k) for k in task.read_text().split()]
            except (FileNotFoundError, ProcessLookupError):
                continue
            out.extend(kids)
            todo.extend(kids)
    return out


def process_groups(
    procs: Mapping[str, int], db_urls: Mapping[str, str] | None = None
) -> dict[str, list[int]]:
    """Meter groups: each named process with its children, then ``postgres:<service>``, the
    server processes connected to that service's database (PostgreSQL runs on this machine;
    none on SQLite). Read them after a warm-up, when pools (and worker pools) are open."""
    from devkit.bench.pgstats import backend_pids

    groups = {name: [pid, *descendants(pid)] for name, pid in procs.items()}
    for svc, url in (db_urls or {}).items():
        pids = backend_pids(url)
        if pids:
            groups[f"postgres:{svc}"] = pids
    return groups


def per_op_us(cpu_s: float, ops: int) -> float:
    """CPU seconds over ``ops`` operations, in µs per operation (0 ops counts as 1)."""
    return cpu_s / max(ops, 1) * 1e6


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(
    url: str,
    *,
    duration: int = 10,
    connections: int = 32,
    threads: int = 1,
    headers: Sequence[str] = (),
    script: Path | None = None,
    timeout: int | None = None,
) -> WrkResult:
    """Run wrk against ``url`` and parse its latency distribution and throughput."""
    exe = shutil.which("wrk")
    if exe is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    cmd = [exe, f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency"]
    for h in headers:
        cmd += ["-H", h]
    if script is not None:
        cmd += ["-s", str(script)]
    if timeout is not None:
        cmd += ["--timeout", f"{timeout}s"]
    cmd.append(url)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    reqs = re.search(r"(\d+) requests in ([\d.]+)(s|m)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"\s50%\s+(\S+)", out)
    p99 = re.search(r"\s99%\s+(\S+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if not (reqs and rps and p50 and p99):
        raise RuntimeError("could not parse wrk output:\n" + out)
    errors = int(non2xx.group(1)) if non2xx else 0
    if sock:
        errors += sum(int(g) for g in sock.groups())
    seconds = float(reqs.group(2)) * (60 if reqs.group(3) == "m" else 1)
    return WrkResult(
        int(reqs.group(1)),
        seconds,
        float(rps.group(1)),
        _ms(p50.group(1)),
        _ms(p99.group(1)),
        errors,
    )


def render_table(rows: Sequence[Row]) -> str:
    """A Markdown table of the rows (what the README quotes)."""
    head = "| group | what | ops/s | p50 ms | p99 ms | CPU µs/op | ratio | notes |"
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---|"]

    def f(v: float | None, digits: int = 1) -> str:
        return "" if v is None else f"{v:,.{digits}f}"

    for r in rows:
        ratio = "" if r.ratio is None else f"{r.ratio:.2f} of {r.ratio_of}"
        lines.append(
            f"| {r.group} | {r.name} | {f(r.ops_per_s, 0)} | {f(r.p50_ms, 2)} | "
            f"{f(r.p99_ms, 2)} | {f(r.cpu_us_per_op, 0)} | {ratio} | {r.notes} |"
        )
    return "\n".join(lines)


def rows_as_json(rows: Sequence[Row]) -> list[dict[str, object]]:
    return [asdict(r) for r in rows]
