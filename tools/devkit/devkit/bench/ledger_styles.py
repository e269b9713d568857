"""The settle transaction written three ways — SQLAlchemy ORM, Core, raw asyncpg — on PostgreSQL.

The same work each time (the shape of ``POST /v1/settlements``): claim an idempotency key,
read the quote, claim the settlement row, compare-and-set the holder's year and balance,
insert the ledger transaction and its four legs, update the idempotency record, commit.
Client CPU per transaction (this process), sequential and with 16 concurrent sessions.
``python -m devkit.bench.ledger_styles [--n 600]``; the settlement service's choice and
the figures are in the README.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, cast

import asyncpg
from sqlalchemy import BigInteger, ForeignKey, String, Table, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA = """
CREATE TABLE b_idem (client_id text, key text, status int, body bytea,
                     PRIMARY KEY (client_id, key));
CREATE TABLE b_quote (id text PRIMARY KEY, holder text, amount bigint, assumed bigint);
CREATE TABLE b_settlement (id text PRIMARY KEY, quote_id text UNIQUE, amount bigint);
CREATE TABLE b_year (holder text PRIMARY KEY, fund_paid bigint NOT NULL);
CREATE TABLE b_account (id text PRIMARY KEY, balance bigint CHECK (balance >= 0));
CREATE TABLE b_tx (id text PRIMARY KEY, ref text);
CREATE TABLE b_entry (id bigserial PRIMARY KEY, tx_id text REFERENCES b_tx(id),
                      account_id text, amount bigint);
"""


class Base(DeclarativeBase):
    pass


class Idem(Base):
    __tablename__ = "b_idem"
    client_id: Mapped[str] = mapped_column(String, primary_key=True)
    key: Mapped[str] = mapped_column(String, primary_key=True)
    status: Mapped[int | None]
    body: Mapped[bytes | None]


class QuoteRow(Base):
    __tablename__ = "b_quote"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    holder: Mapped[str]
    amount: Mapped[int] = mapped_column(BigInteger)
    assumed: Mapped[int] = mapped_column(BigInteger)


class SettlementRow(Base):
    __tablename__ = "b_settlement"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    quote_id: Mapped[str]
    amount: Mapped[int] = mapped_column(BigInteger)


class Year(Base):
    __tablename__ = "b_year"
    holder: Mapped[str] = mapped_column(String, primary_key=True)
    fund_paid: Mapped[int] = mapped_column(BigInteger)


class AccountRow(Base):
    __tablename__ = "b_account"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    balance: Mapped[int] = mapped_column(BigInteger)


class Tx(Base):
    __tablename__ = "b_tx"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    ref: Mapped[str]


class Entry(Base):
    __tablename__ = "b_entry"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tx_id: Mapped[str] = mapped_column(ForeignKey("b_tx.id"))
    account_id: Mapped[str]
    amount: Mapped[int] = mapped_column(BigInteger)


def _ids(i: int) -> tuple[str, str, str]:
    return f"q{i}", f"h{i % 64}", secrets.token_hex(8)


async def orm_settle(maker: async_sessionmaker[AsyncSession], i: int) -> None:
    quote_id, holder, sid = _ids(i)
    async with maker() as s, s.begin():
        s.add(Idem(client_id="c", key=sid))
        await s.flush()
        q = await s.get(QuoteRow, quote_id)
        assert q is not None
        s.add(SettlementRow(id=sid, quote_id=sid, amount=q.amount))
        year = await s.get(Year, holder, with_for_update=True)
        assert year is not None
        year.fund_paid += 10
        acc = await s.get(AccountRow, "p:" + holder, with_for_update=True)
        assert acc is not None
        acc.balance -= 1
        tx = Tx(id=sid, ref=sid)
        s.add(tx)
        await s.flush()
        s.add_all([Entry(tx_id=sid, account_id=a, amount=x) for a, x in _legs(holder)])
        idem = await s.get(Idem, ("c", sid))
        assert idem is not None
        idem.status, idem.body = 201, b"{}"


def _legs(holder: str) -> list[tuple[str, int]]:
    return [("r:x", 100), ("p:" + holder, -1), ("f:x", -10), ("c:x", -89)]


async def core_settle(maker: async_sessionmaker[AsyncSession], i: int) -> None:
    quote_id, holder, sid = _ids(i)
    t: dict[str, Table] = {
        m.__tablename__: cast(Table, m.__table__)
        for m in (Idem, QuoteRow, SettlementRow, Year, AccountRow, Tx, Entry)
    }
    async with maker() as s, s.begin():
        await s.execute(pg_insert(t["b_idem"]).values(client_id="c", key=sid)
                        .on_conflict_do_nothing().returning(t["b_idem"].c.key))  # fmt: skip
        q = (await s.execute(select(t["b_quote"]).where(t["b_quote"].c.id == quote_id))).one()
        await s.execute(pg_insert(t["b_settlement"]).values(id=sid, quote_id=sid, amount=q.amount)
                        .on_conflict_do_nothing().returning(t["b_settlement"].c.id))  # fmt: skip
        await s.execute(update(t["b_year"]).where(t["b_year"].c.holder == holder)
                        .values(fund_paid=t["b_year"].c.fund_paid + 10)
                        .returning(t["b_year"].c.fund_paid))  # fmt: skip
        await s.execute(update(t["b_account"]).where(t["b_account"].c.id == "p:" + holder,
                                                     t["b_account"].c.balance >= 1)
                        .values(balance=t["b_account"].c.balance - 1)
                        .returning(t["b_account"].c.balance))  # fmt: skip
        await s.execute(insert(t["b_tx"]).values(id=sid, ref=sid))
        await s.execute(insert(t["b_entry"]).values(
            [{"tx_id": sid, "account_id": a, "amount": x} for a, x in _legs(holder)]))  # fmt: skip
        await s.execute(update(t["b_idem"]).where(t["b_idem"].c.client_id == "c",
                                                  t["b_idem"].c.key == sid)
                        .values(status=201, body=b"{}"))  # fmt: skip


RAW = {
    "idem": "INSERT INTO b_idem (client_id, key) VALUES ('c', $1) ON CONFLICT DO NOTHING "
    "RETURNING key",
    "quote": "SELECT id, holder, amount, assumed FROM b_quote WHERE id = $1",
    "claim": "INSERT INTO b_settlement (id, quote_id, amount) VALUES ($1, $1, $2) "
    "ON CONFLICT DO NOTHING RETURNING id",
    "year": "UPDATE b_year SET fund_paid = fund_paid + 10 WHERE holder = $1 RETURNING fund_paid",
    "account": "UPDATE b_account SET balance = balance - 1 WHERE id = $1 AND balance >= 1 "
    "RETURNING balance",
    "tx": "INSERT INTO b_tx (id, ref) VALUES ($1, $1)",
    "entries": "INSERT INTO b_entry (tx_id, account_id, amount) "
    "SELECT $1, a, x FROM unnest($2::text[], $3::bigint[]) AS l(a, x)",
    "finish": "UPDATE b_idem SET status = 201, body = '{}' WHERE client_id = 'c' AND key = $1",
}


_TEXT = {
    k: text(v.replace("$1", ":a").replace("$2", ":b").replace("$3", ":c"))
    for k, v in RAW.items()
    if k != "entries"
}
_TEXT["entries"] = text(
    "INSERT INTO b_entry (tx_id, account_id, amount) VALUES (:a, :b1, :x1), (:a, :b2, :x2), "
    "(:a, :b3, :x3), (:a, :b4, :x4)"
)


async def text_settle(maker: async_sessionmaker[AsyncSession], i: int) -> None:
    """Core with prebuilt ``text()`` statements: SQLAlchemy's execution path, no construction."""
    quote_id, holder, sid = _ids(i)
    legs = _legs(holder)
    async with maker() as s, s.begin():
        await s.execute(_TEXT["idem"], {"a": sid})
        q = (await s.execute(_TEXT["quote"], {"a": quote_id})).one()
        await s.execute(_TEXT["claim"], {"a": sid, "b": q.amount})
        await s.execute(_TEXT["year"], {"a": holder})
        await s.execute(_TEXT["account"], {"a": "p:" + holder})
        await s.execute(_TEXT["tx"], {"a": sid})
        params: dict[str, object] = {"a": sid}
        for n, (acc, amount) in enumerate(legs, 1):
            params[f"b{n}"], params[f"x{n}"] = acc, amount
        await s.execute(_TEXT["entries"], params)
        await s.execute(_TEXT["finish"], {"a": sid})


async def raw_settle(pool: asyncpg.Pool, i: int) -> None:
    quote_id, holder, sid = _ids(i)
    legs = _legs(holder)
    async with pool.acquire() as conn, conn.transaction():
        await conn.fetchrow(RAW["idem"], sid)
        q = await conn.fetchrow(RAW["quote"], quote_id)
        await conn.fetchrow(RAW["claim"], sid, q["amount"])
        await conn.fetchrow(RAW["year"], holder)
        await conn.fetchrow(RAW["account"], "p:" + holder)
        await conn.execute(RAW["tx"], sid)
        await conn.execute(RAW["entries"], sid, [a for a, _ in legs], [x for _, x in legs])
        await conn.execute(RAW["finish"], sid)


async def _prepare(dsn: str, n: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DROP TABLE IF EXISTS b_entry, b_tx, b_account, b_year, b_settlement, "
                           "b_quote, b_idem")  # fmt: skip
        await conn.execute(SCHEMA)
        await conn.executemany("INSERT INTO b_quote VALUES ($1, $2, 100, 0)",
                               [(f"q{i}", f"h{i % 64}") for i in range(n)])  # fmt: skip
        await conn.executemany("INSERT INTO b_year VALUES ($1, 0)", [(f"h{i}",) for i in range(64)])
        await conn.executemany("INSERT INTO b_account VALUES ($1, $2)",
                               [(f"p:h{i}", 10**9) for i in range(64)])  # fmt: skip
    finally:
        await conn.close()


async def _measure(run: Callable[[int], Awaitable[None]], n: int, concurrency: int) -> float:
    """Client CPU µs per transaction of this process."""
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await run(i)

    start = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (time.process_time() - start) / n * 1e6


async def compare(dsn: str, n: int) -> dict[str, dict[int, float]]:
    """{style: {concurrency: client CPU µs per settle transaction}}."""
    sa_url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    engine = create_async_engine(sa_url, pool_size=16, max_overflow=0)
    maker = async_sessionmaker(engine, expire_on_commit=False)
    pool = await asyncpg.create_pool(dsn, min_size=16, max_size=16)
    assert pool is not None
    results: dict[str, dict[int, float]] = {}
    styles: dict[str, Callable[[int], Awaitable[None]]] = {
        "orm": lambda i: orm_settle(maker, i),
        "core": lambda i: core_settle(maker, i),
        "core text()": lambda i: text_settle(maker, i),
        "raw asyncpg": lambda i: raw_settle(pool, i),
    }
    try:
        for name, fn in styles.items():
            results[name] = {}
            for conc in (1, 16):
                await _prepare(dsn, n)
                await _measure(fn, min(50, n), conc)  # warm caches and prepared statements
                await _prepare(dsn, n)
                results[name][conc] = await _measure(fn, n, conc)
    finally:
        await pool.close()
        await engine.dispose()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devkit.bench.ledger_styles")
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument(
        "--dsn",
        default=os.environ.get(
            "ESSC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    args = parser.parse_args(argv)
    results: dict[str, Any] = asyncio.run(compare(args.dsn, args.n))
    print(f"settle transaction, client CPU µs/tx ({datetime.now(UTC):%Y-%m-%d}, n={args.n})")
    for name, by_conc in results.items():
        print(f"  {name:12s} 1 session: {by_conc[1]:7.0f}   16 sessions: {by_conc[16]:7.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
