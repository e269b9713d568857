"""The soak's verdicts: pure functions over what the client saw and what the databases hold.

Each returns a list of problems (empty when the property holds), so a test can feed them a
deliberately broken input and see them fail. None of them talks to a server.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

# "Flat" memory: an RSS that grew by at most the larger of these two from the end of the
# warm-up to the end of the run. A CPython service's RSS rises while caches fill (SQLAlchemy's
# compiled-statement cache, the connection pool, pydantic validators, allocator arenas) and then
# plateaus; the warm-up absorbs most of that. 30 MiB over the 10-minute soak (tens of thousands
# of requests per process) catches a leak of about 1 KiB per request; 20 % covers a process whose
# working set is large to begin with, where fragmentation alone moves RSS by a few percent.
MAX_GROWTH_KIB = 30 * 1024
MAX_GROWTH_RATIO = 0.20


@dataclass(frozen=True)
class TxLegs:
    """One ledger transaction as summed in PostgreSQL: debits (positive legs), credits, count."""

    tx_id: str
    debits_fen: int
    credits_fen: int
    legs: int


def unbalanced_transactions(rows: Iterable[TxLegs]) -> list[str]:
    """Transactions whose debits differ from their credits, or with fewer than two legs."""
    problems = []
    for r in rows:
        if r.debits_fen != r.credits_fen:
            problems.append(f"{r.tx_id}: debits {r.debits_fen} != credits {r.credits_fen} fen")
        elif r.legs < 2:
            problems.append(f"{r.tx_id}: {r.legs} leg(s)")
    return problems


@dataclass(frozen=True)
class Ack:
    """A 2xx the client saw: its Idempotency-Key, the object's id and what it was for.

    For a settlement ``ref`` is the quote id; for a refund, the settlement id.
    """

    key: str
    object_id: str
    ref: str


@dataclass(frozen=True)
class Stored:
    """A row in the database: its id, what it was for, and its ledger transactions."""

    object_id: str
    ref: str
    ledger_txs: int


def acknowledged_exactly_once(
    what: str, acks: Sequence[Ack], stored: Sequence[Stored], *, uncertain: int = 0
) -> list[str]:
    """Every acknowledged operation is stored exactly once, with exactly one ledger transaction.

    Also: one key never acknowledged two different objects, two keys never the same object,
    and nothing is stored that was not acknowledged, except at most ``uncertain`` objects
    (requests whose answer the client never saw: a timeout or a dropped connection).
    """
    problems: list[str] = []
    by_key: dict[str, set[str]] = {}
    keys_of: dict[str, set[str]] = {}
    for a in acks:
        by_key.setdefault(a.key, set()).add(a.object_id)
        keys_of.setdefault(a.object_id, set()).add(a.key)
    for key, ids in by_key.items():
        if len(ids) > 1:
            problems.append(f"{what}: key {key} acknowledged {len(ids)} different objects")
    for oid, keys in keys_of.items():
        if len(keys) > 1:
            problems.append(f"{what} {oid}: acknowledged under {len(keys)} keys")
    rows_of = Counter(s.object_id for s in stored)
    per_ref = Counter(s.ref for s in stored)
    row = {s.object_id: s for s in stored}
    acked_refs = {a.object_id: a.ref for a in acks}
    for oid, ref in acked_refs.items():
        n = rows_of.get(oid, 0)
        if n != 1:
            problems.append(f"{what} {oid}: acknowledged, stored {n} times")
            continue
        s = row[oid]
        if s.ref != ref:
            problems.append(f"{what} {oid}: acknowledged for {ref}, stored for {s.ref}")
        if per_ref[ref] != 1:
            problems.append(f"{what} {oid}: {per_ref[ref]} stored for {ref}")
        if s.ledger_txs != 1:
            problems.append(f"{what} {oid}: {s.ledger_txs} ledger transactions")
    unacked = [s.object_id for s in stored if s.object_id not in acked_refs]
    if len(unacked) > uncertain:
        problems.append(
            f"{what}: {len(unacked)} stored but never acknowledged "
            f"(only {uncertain} answers were lost): {', '.join(sorted(unacked)[:5])}"
        )
    return problems


def server_errors(statuses: Mapping[str, Mapping[int, int]]) -> list[str]:
    """Every 5xx answer, and every request that got no answer at all (status 0), by kind."""
    problems = []
    for kind, counts in sorted(statuses.items()):
        for status, n in sorted(counts.items()):
            if status >= 500:
                problems.append(f"{kind}: {n} x {status}")
            elif status == 0:
                problems.append(f"{kind}: {n} without an answer (timeout or connection error)")
    return problems


@dataclass(frozen=True)
class Rss:
    """One process's resident set (KiB) after the warm-up and at the end."""

    process: str
    start_kib: int
    end_kib: int

    @property
    def growth_kib(self) -> int:
        return self.end_kib - self.start_kib

    @property
    def allowed_kib(self) -> int:
        return max(MAX_GROWTH_KIB, int(self.start_kib * MAX_GROWTH_RATIO))


def memory_growth(samples: Iterable[Rss]) -> list[str]:
    """Processes whose RSS grew by more than the bound (see ``MAX_GROWTH_KIB``)."""
    return [
        f"{s.process}: RSS {s.start_kib / 1024:.1f} -> {s.end_kib / 1024:.1f} MiB "
        f"(+{s.growth_kib / 1024:.1f}, allowed +{s.allowed_kib / 1024:.1f})"
        for s in samples
        if s.growth_kib > s.allowed_kib
    ]


def rss_kib(pid: int) -> int:
    """``VmRSS`` of a process from ``/proc/<pid>/status``, in KiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")
