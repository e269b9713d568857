"""The soak (issue 7, part 3): its checks fail on broken input, and a short soak passes them.

The checker functions get deliberately unbalanced, duplicated, lost and leaking inputs; the
PostgreSQL queries behind them run against a scratch database holding an unbalanced
transaction and a settlement posted twice. Then ``python -m devkit.soak`` runs briefly
against a real cluster (four uvicorn processes on PostgreSQL, Redis when it answers): every
kind of operation happens, and every check of the long soak passes.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from pathlib import Path

import asyncpg
import pytest

from devkit.soak import checks
from devkit.soak.__main__ import main
from devkit.soak.harness import ledger_rows, stored_objects
from devkit.soak.workload import fen, make_pin
from support.pg import PG_URL, create_databases, drop_databases, server_url

ACK = checks.Ack


def test_unbalanced_or_one_legged_transactions_are_reported() -> None:
    rows = [
        checks.TxLegs("tx_ok", 1_000, 1_000, 4),
        checks.TxLegs("tx_short", 1_000, 990, 3),
        checks.TxLegs("tx_alone", 0, 0, 1),
    ]
    problems = checks.unbalanced_transactions(rows)
    assert len(problems) == 2
    assert "tx_short" in problems[0]
    assert "1000" in problems[0]
    assert "990" in problems[0]
    assert "tx_alone" in problems[1]
    assert checks.unbalanced_transactions(rows[:1]) == []


def test_acknowledged_settlements_must_be_stored_exactly_once() -> None:
    acks = [ACK("k1", "s1", "q1"), ACK("k2", "s2", "q2"), ACK("k2", "s2", "q2")]  # k2 retried
    clean = [checks.Stored("s1", "q1", 1), checks.Stored("s2", "q2", 1)]
    assert checks.acknowledged_exactly_once("settlement", acks, clean) == []

    def problems(stored: list[checks.Stored], found: list[ACK] = acks, lost: int = 0) -> str:
        return "\n".join(
            checks.acknowledged_exactly_once("settlement", found, stored, uncertain=lost)
        )

    assert "s2: acknowledged, stored 0 times" in problems(clean[:1])
    assert "s1: acknowledged, stored 2 times" in problems([*clean, clean[0]])
    assert "s1: 2 ledger transactions" in problems([checks.Stored("s1", "q1", 2), clean[1]])
    assert "s1: 0 ledger transactions" in problems([checks.Stored("s1", "q1", 0), clean[1]])
    assert "2 stored for q1" in problems([*clean, checks.Stored("s9", "q1", 1)])
    assert "stored for q9" in problems([checks.Stored("s1", "q9", 1), clean[1]])
    phantom = [*clean, checks.Stored("s3", "q3", 1)]
    assert "1 stored but never acknowledged" in problems(phantom)
    assert problems(phantom, lost=1) == ""  # the answer of one request was lost: allowed
    assert "key k1 acknowledged 2 different objects" in problems(
        clean, [*acks, ACK("k1", "s2", "q2")]
    )
    assert "s1: acknowledged under 2 keys" in problems(clean, [*acks, ACK("k9", "s1", "q1")])


def test_server_errors_and_unanswered_requests_are_reported() -> None:
    seen = {"settle": {201: 40, 409: 1}, "quote": {201: 40, 503: 2}, "refund": {0: 1}}
    problems = checks.server_errors(seen)
    assert problems == [
        "quote: 2 x 503",
        "refund: 1 without an answer (timeout or connection error)",
    ]
    assert checks.server_errors({"settle": {201: 3, 422: 1, 429: 2}}) == []


def test_memory_growth_beyond_the_bound_is_reported() -> None:
    mib = 1024
    ok = [checks.Rss("gateway", 100 * mib, 129 * mib), checks.Rss("issuance", 300 * mib, 359 * mib)]
    assert checks.memory_growth(ok) == []
    leaking = [
        checks.Rss("gateway", 100 * mib, 131 * mib),
        checks.Rss("issuance", 300 * mib, 361 * mib),
    ]
    problems = checks.memory_growth(leaking)
    assert [p.split(":")[0] for p in problems] == ["gateway", "issuance"]
    assert "allowed +30.0" in problems[0]
    assert "allowed +60.0" in problems[1]
    assert checks.rss_kib(os.getpid()) > 1024


def test_client_side_helpers() -> None:
    assert [fen("12.30"), fen("0.05"), fen("-3.1"), fen("7")] == [1230, 5, -310, 700]
    rng = random.Random(1)
    for _ in range(200):
        pin = make_pin(rng, "110101199003074518")
        assert len(pin) == 6
        assert pin.isdigit()
        assert len(set(pin)) > 1
        assert pin not in "110101199003074518"
        assert pin not in "0123456789"
        assert pin not in "9876543210"


SCRATCH = """
CREATE TABLE ledger_tx (id text PRIMARY KEY, kind text NOT NULL, ref text NOT NULL);
CREATE TABLE ledger_entry (id serial PRIMARY KEY, tx_id text REFERENCES ledger_tx,
                           account_id text NOT NULL, amount_fen bigint NOT NULL);
CREATE TABLE settlement (id text PRIMARY KEY, quote_id text NOT NULL);
CREATE TABLE refund (id text PRIMARY KEY, settlement_id text NOT NULL);
INSERT INTO ledger_tx VALUES ('tx1', 'settlement', 's1'), ('tx2', 'settlement', 's2'),
  ('tx3', 'settlement', 's2'), ('tx4', 'opening', 'h1'), ('tx5', 'refund', 'r1');
INSERT INTO ledger_entry (tx_id, account_id, amount_fen) VALUES
  ('tx1', 'recv', 500), ('tx1', 'fund', -300), ('tx1', 'cash', -200),
  ('tx2', 'recv', 500), ('tx2', 'fund', -490),
  ('tx3', 'recv', 100), ('tx3', 'cash', -100),
  ('tx5', 'recv', -500), ('tx5', 'fund', 300), ('tx5', 'cash', 200);
INSERT INTO settlement VALUES ('s1', 'q1'), ('s2', 'q2');
INSERT INTO refund VALUES ('r1', 's1');
"""


@pytest.mark.postgres
def test_the_queries_find_an_unbalanced_transaction_and_a_double_posting(run_id: str) -> None:
    """On books that PostgreSQL's own trigger would refuse: the soak's SQL must still see it."""
    name = f"essc_{run_id}_soakcheck"

    async def go() -> tuple[list[checks.TxLegs], list[checks.Stored], list[checks.Stored]]:
        await create_databases([name])
        try:
            conn = await asyncpg.connect(f"{server_url(PG_URL)}/{name}")
            try:
                await conn.execute(SCRATCH)
                return (
                    await ledger_rows(conn),
                    await stored_objects(conn, "settlement"),
                    await stored_objects(conn, "refund"),
                )
            finally:
                await conn.close()
        finally:
            await drop_databases([name])

    txs, settlements, refunds = asyncio.run(go())
    by_id = {t.tx_id: t for t in txs}
    assert by_id["tx1"] == checks.TxLegs("tx1", 500, 500, 3)
    assert by_id["tx4"] == checks.TxLegs("tx4", 0, 0, 0)
    problems = checks.unbalanced_transactions(txs)
    assert len(problems) == 2
    assert "tx2" in problems[0] + problems[1]
    assert "tx4" in " ".join(problems)
    assert sorted(settlements, key=lambda s: s.object_id) == [
        checks.Stored("s1", "q1", 1), checks.Stored("s2", "q2", 2)
    ]  # fmt: skip
    assert refunds == [checks.Stored("r1", "s1", 1)]
    acks = [ACK("k1", "s1", "q1"), ACK("k2", "s2", "q2")]
    assert checks.acknowledged_exactly_once("settlement", acks, settlements) == [
        "settlement s2: 2 ledger transactions"
    ]


# Every kind of operation the soak drives, which a short run must cover too.
KINDS = (
    "token (partner_app)", "token (hospital)", "token (ops)", "verify: start",
    "verify: sms outbox", "verify: confirm", "ecard: issue", "ecard: set PIN",
    "ecard: enable payment", "qr: payment", "scan: settlement", "quote", "settle",
    "refund", "qr: identity", "scan: identity", "enquiry: account", "enquiry: settlements",
)  # fmt: skip


@pytest.mark.postgres
@pytest.mark.e2e
@pytest.mark.slow
def test_a_short_soak_passes_every_check(tmp_path: Path) -> None:
    out = tmp_path / "soak"
    code = main(["--seconds", "15", "--warmup", "4", "--workers", "6", "--holders", "50",
                 "--out", str(out)])  # fmt: skip
    report = json.loads((out / "latest.json").read_text())
    failed = [v for v in report["verdicts"] if not v["ok"]]
    assert code == 0, failed
    assert report["ok"] is True
    assert len(report["verdicts"]) == 8
    ops = {k["kind"]: k for k in report["operations"]}
    for kind in KINDS:
        assert kind in ops, (kind, sorted(ops))
        assert any(s.startswith("2") for s in ops[kind]["statuses"]), ops[kind]
    assert any(k.startswith("reconciliation") for k in ops)
    assert report["settlements_acknowledged"] == report["settlements_stored"] > 0
    assert report["refunds_acknowledged"] == report["refunds_stored"] > 0
    assert report["ledger_check"]["balanced"] is True
    assert report["reconciliation_checks"]
    assert all(r["match"] for r in report["reconciliation_checks"])
    assert {p["process"] for p in report["processes"]} == {
        "gateway",
        "identity",
        "issuance",
        "settlement",
    }
    for p in report["processes"]:
        assert p["rss_start_kib"] > 10_000
        assert p["rss_end_kib"] > 10_000
    assert (out / "latest.md").read_text().count("PASS") == 8
