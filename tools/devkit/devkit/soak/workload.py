"""The soak's traffic: seeded workers driving the public API through the gateway only.

Every worker draws its next action from its own ``random.Random`` (seeded from the run's
seed and the worker's index): onboard a holder (real-name verification with the code from the
development SMS outbox, e-card, PIN, payment), pay (payment QR, the hospital's scan, quote,
settle with an Idempotency-Key, sometimes the same request again as a client retry would),
an identity check (identity QR scanned by a hospital or the service hall's scanner), a quote
left unsettled, a refund, the holder's self-service enquiry, the hospital's reconciliation.
Access tokens come from ``POST /oauth/token`` (client credentials) and are refreshed after a
drawn lifetime, so token refreshes run through the whole soak. A holder is used by one worker
at a time (one person, one phone) and pays at hospitals of one city, as people do.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import random
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import aiohttp

from devkit.soak.checks import Ack

CST = timezone(timedelta(hours=8))
SETTLEMENTS_PER_HOLDER = 4  # the daily-velocity rule flags the 7th of a day
OK = {200, 201, 204}


class StepFailed(Exception):
    """A step of a flow got an answer other than the expected one; the flow stops there."""


def fen(text: str) -> int:
    """A decimal yuan string (``"12.30"``) in fen."""
    sign = -1 if text.startswith("-") else 1
    whole, _, frac = text.lstrip("-").partition(".")
    return sign * (int(whole) * 100 + int((frac + "00")[:2]))


def business_day(settled_at: str) -> date:
    """The China Standard Time day of an RFC 3339 timestamp (reconciliation's day)."""
    return datetime.fromisoformat(settled_at.replace("Z", "+00:00")).astimezone(CST).date()


def make_pin(rng: random.Random, id_number: str) -> str:
    """Six digits the PIN rules accept: no run, not one digit repeated, not in the ID number."""
    while True:
        pin = f"{rng.randrange(10**6):06d}"
        steps = {int(b) - int(a) for a, b in itertools.pairwise(pin)}
        if len(set(pin)) > 1 and steps not in ({1}, {-1}) and pin not in id_number:
            return pin


def make_bill(rng: random.Random) -> tuple[str, list[dict[str, str]]]:
    """A visit type and 1-4 bill lines of plausible prices (class A, B and C items)."""
    inpatient = rng.random() < 0.2
    lines = []
    if inpatient:
        days = rng.randint(1, 5)
        lines.append(
            {
                "code": "W1",
                "name": "ward day",
                "category": "A",
                "quantity": str(days),
                "unit_price": f"{rng.randint(80, 300)}.00",
            }
        )
    for n in range(rng.randint(1, 3)):
        category = rng.choices("ABC", weights=(5, 3, 1))[0]
        quantity = rng.choice(("1", "2", "3", "0.5", "2.5"))
        price = f"{rng.randint(5, 400)}.{rng.randrange(100):02d}"
        lines.append(
            {
                "code": f"{category}{n + 1}",
                "name": f"item {category}{n + 1}",
                "category": category,
                "quantity": quantity,
                "unit_price": price,
            }
        )
    return ("inpatient" if inpatient else "outpatient"), lines


@dataclass
class Holder:
    details: dict[str, str]
    region_code: str
    pin: str
    hospitals: list[dict[str, Any]]
    app: dict[str, Any]
    ecard_id: str | None = None
    settles_left: int = SETTLEMENTS_PER_HOLDER
    busy: bool = False


@dataclass
class Settled:
    settlement_id: str
    quote_id: str
    key: str
    hospital: dict[str, Any]
    holder: Holder
    totals: dict[str, int]
    day: date
    refunded: bool = False


@dataclass
class Recorder:
    """Every request's kind, status and latency; what the client saw acknowledged."""

    started: float = field(default_factory=time.monotonic)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    unexpected: dict[str, str] = field(default_factory=dict)  # "kind status" -> problem type
    settlement_acks: list[Ack] = field(default_factory=list)
    refund_acks: list[Ack] = field(default_factory=list)
    lost_settles: int = 0
    lost_refunds: int = 0
    contract_problems: list[str] = field(default_factory=list)

    def add(self, kind: str, status: int, seconds: float, body: Any) -> None:
        self.latencies[kind].append(seconds)
        self.statuses[kind][status] += 1
        label = f"{kind} {status}"
        if status not in OK and label not in self.unexpected:
            problem = body if isinstance(body, dict) else {}
            self.unexpected[label] = str(problem.get("type") or problem.get("error") or "")[:200]


class Api:
    """The gateway over one pooled aiohttp session, every request recorded by kind."""

    def __init__(self, http: aiohttp.ClientSession, base: str, rec: Recorder) -> None:
        self.http = http
        self.base = base
        self.rec = rec

    async def call(
        self,
        kind: str,
        method: str,
        path: str,
        *,
        expect: int | tuple[int, ...] = (200, 201),
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Send one request; the parsed body if the status is expected, else StepFailed."""
        started = time.perf_counter()
        body: Any = None
        try:
            async with self.http.request(
                method, self.base + path, headers=dict(headers or {}), **kwargs
            ) as resp:
                status = resp.status
                raw = await resp.read()
                if resp.content_type.endswith("json") and raw:
                    body = await resp.json(content_type=None)
                else:
                    body = raw.decode(errors="replace")
        except (aiohttp.ClientError, TimeoutError):
            status = 0
        self.rec.add(kind, status, time.perf_counter() - started, body)
        wanted = (expect,) if isinstance(expect, int) else expect
        if status not in wanted:
            raise StepFailed(f"{kind}: {status}")
        return body


def basic(client_id: str, secret: str) -> str:
    """HTTP Basic credentials of a client (RFC 6749 §2.3.1: ids and secrets are URL-safe)."""
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


class Tokens:
    """Access tokens per client, shared by the workers, fetched again after a drawn lifetime."""

    def __init__(self, api: Api, rng: random.Random, lifetime: tuple[float, float]) -> None:
        self.api = api
        self.rng = rng
        self.lifetime = lifetime
        self.cache: dict[str, tuple[str, float]] = {}
        self.locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def auth(self, client: Mapping[str, Any]) -> dict[str, str]:
        cid = str(client["client_id"])
        hit = self.cache.get(cid)
        if hit is None or time.monotonic() >= hit[1]:
            async with self.locks[cid]:
                hit = self.cache.get(cid)
                if hit is None or time.monotonic() >= hit[1]:
                    body = await self.api.call(
                        f"token ({client['kind']})",
                        "POST",
                        "/oauth/token",
                        expect=200,
                        data={"grant_type": "client_credentials"},
                        headers={"Authorization": basic(cid, str(client["client_secret"]))},
                    )
                    life = min(self.rng.uniform(*self.lifetime), float(body["expires_in"]) * 0.8)
                    hit = (str(body["access_token"]), time.monotonic() + life)
                    self.cache[cid] = hit
        return {"Authorization": "Bearer " + hit[0]}


@dataclass
class World:
    """What the workers share: clients, the holders still to onboard and those ready."""

    api: Api
    tokens: Tokens
    hospitals: list[dict[str, Any]]
    scanner: dict[str, Any]
    ops: dict[str, Any]
    fresh: list[Holder]
    ready: list[Holder] = field(default_factory=list)
    settled: list[Settled] = field(default_factory=list)
    done: set[str] = field(default_factory=set)

    @property
    def rec(self) -> Recorder:
        return self.api.rec


class Worker:
    """One client loop: draw an action, run it to its end or its first failed step, repeat."""

    ACTIONS = ("onboard", "pay", "identity", "quote_only", "refund", "enquiry", "reconcile")
    WEIGHTS = (3.0, 8.0, 1.5, 1.0, 1.2, 2.5, 0.8)

    def __init__(self, world: World, index: int, seed: int) -> None:
        self.w = world
        self.rng = random.Random(f"{seed}:{index}")
        self.index = index

    def _idle(self, *, paying: bool = False) -> Holder | None:
        pool = [h for h in self.w.ready if not h.busy and (not paying or h.settles_left > 0)]
        return self.rng.choice(pool) if pool else None

    def choose(self) -> str:
        weights = list(self.WEIGHTS)
        if not self.w.fresh:
            weights[0] = 0.0
        if not any(not h.busy and h.settles_left > 0 for h in self.w.ready):
            weights[1] = weights[3] = 0.0
        if not any(not s.refunded and not s.holder.busy for s in self.w.settled):
            weights[4] = 0.0
        if sum(weights) == 0:
            return "enquiry" if self.w.ready else "reconcile"
        # Every action once as soon as it is possible, so that even a short run covers the mix.
        possible = [a for a, w in zip(self.ACTIONS, weights, strict=True) if w]
        missing = [a for a in possible if a not in self.w.done]
        if missing:
            return self.rng.choice(missing)
        return self.rng.choices(self.ACTIONS, weights=weights)[0]

    async def run(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            action = self.choose()
            try:
                await getattr(self, action)()
                self.w.done.add(action)
            except StepFailed:
                await asyncio.sleep(0.05)

    async def _use(self, holder: Holder, flow: Any) -> None:
        holder.busy = True
        try:
            await flow
        finally:
            holder.busy = False

    # -- actions -------------------------------------------------------------------------------

    async def onboard(self) -> None:
        if not self.w.fresh:
            return
        holder = self.w.fresh.pop()
        holder.busy = True
        try:
            await self._onboard(holder)
        finally:
            holder.busy = False

    async def _onboard(self, h: Holder) -> None:
        api, app = self.w.api, await self.w.tokens.auth(h.app)
        started = await api.call(
            "verify: start", "POST", "/v1/verifications", expect=201, json=h.details, headers=app
        )
        ops = await self.w.tokens.auth(self.w.ops)
        outbox = await api.call(
            "verify: sms outbox",
            "GET",
            "/v1/admin/sms-outbox",
            expect=200,
            params={"phone": h.details["phone"]},
            headers=ops,
        )
        code = sorted(outbox["items"], key=lambda i: i["sent_at"])[-1]["code"]
        confirmed = await api.call(
            "verify: confirm",
            "POST",
            f"/v1/verifications/{started['verification_id']}/confirm",
            expect=200,
            json={"code": code},
            headers=app,
        )
        issued = await api.call(
            "ecard: issue",
            "POST",
            "/v1/ecards",
            expect=(200, 201),
            json={"identity_assertion": confirmed["identity_assertion"]},
            headers=app,
        )
        ecard = str(issued["ecard_id"])
        await api.call(
            "ecard: set PIN",
            "PUT",
            f"/v1/ecards/{ecard}/pin",
            expect=204,
            json={"pin": h.pin},
            headers=app,
        )
        await api.call(
            "ecard: enable payment",
            "POST",
            f"/v1/ecards/{ecard}/payment",
            expect=200,
            json={"pin": h.pin},
            headers=app,
        )
        h.ecard_id = ecard
        self.w.ready.append(h)

    async def _settlement_token(self, h: Holder, hospital: dict[str, Any]) -> str:
        api, app = self.w.api, await self.w.tokens.auth(h.app)
        qr = await api.call(
            "qr: payment",
            "POST",
            f"/v1/ecards/{h.ecard_id}/qrcodes",
            expect=201,
            json={"purpose": "payment", "pin": h.pin},
            headers=app,
        )
        scan = await api.call(
            "scan: settlement",
            "POST",
            "/v1/scans",
            expect=201,
            json={"qr_token": qr["qr_token"], "purpose": "settlement"},
            headers=await self.w.tokens.auth(hospital),
        )
        return str(scan["settlement_token"])

    async def _quote(self, h: Holder, hospital: dict[str, Any]) -> dict[str, Any]:
        token = await self._settlement_token(h, hospital)
        visit, items = make_bill(self.rng)
        quote: dict[str, Any] = await self.w.api.call(
            "quote",
            "POST",
            "/v1/settlements/quotes",
            expect=201,
            json={"settlement_token": token, "visit": {"type": visit}, "items": items},
            headers=await self.w.tokens.auth(hospital),
        )
        return quote

    async def pay(self) -> None:
        h = self._idle(paying=True)
        if h is not None:
            await self._use(h, self._pay(h))

    async def _pay(self, h: Holder) -> None:
        hospital = self.rng.choice(h.hospitals)
        quote = await self._quote(h, hospital)
        key = f"soak-{self.index}-{secrets.token_hex(8)}"
        headers = {**await self.w.tokens.auth(hospital), "Idempotency-Key": key}
        body = {"quote_id": quote["quote_id"]}
        h.settles_left -= 1
        try:
            settled = await self.w.api.call(
                "settle", "POST", "/v1/settlements", expect=201, json=body, headers=headers
            )
        except StepFailed as exc:
            if str(exc).endswith(": 0"):
                self.w.rec.lost_settles += 1
            raise
        sid = str(settled["settlement_id"])
        self.w.rec.settlement_acks.append(Ack(key, sid, str(quote["quote_id"])))
        self.w.settled.append(
            Settled(
                sid,
                str(quote["quote_id"]),
                key,
                hospital,
                h,
                {k: fen(v) for k, v in settled["totals"].items() if k != "fund_ratio"},
                business_day(settled["settled_at"]),
            )
        )
        if self.rng.random() < 0.1:  # the client retries: a lost answer, the same request again
            again = await self.w.api.call(
                "settle: retry (same key)",
                "POST",
                "/v1/settlements",
                expect=201,
                json=body,
                headers=headers,
            )
            replayed = Ack(key, str(again["settlement_id"]), body["quote_id"])
            self.w.rec.settlement_acks.append(replayed)
            if again != settled:
                self.w.rec.contract_problems.append(f"settle retry with key {key}: other answer")

    async def identity(self) -> None:
        h = self._idle()
        if h is not None:
            await self._use(h, self._identity(h))

    async def _identity(self, h: Holder) -> None:
        api, app = self.w.api, await self.w.tokens.auth(h.app)
        qr = await api.call(
            "qr: identity",
            "POST",
            f"/v1/ecards/{h.ecard_id}/qrcodes",
            expect=201,
            json={"purpose": "identity"},
            headers=app,
        )
        by = self.w.scanner if self.rng.random() < 0.3 else self.rng.choice(h.hospitals)
        await api.call(
            "scan: identity",
            "POST",
            "/v1/scans",
            expect=201,
            json={"qr_token": qr["qr_token"], "purpose": "identity"},
            headers=await self.w.tokens.auth(by),
        )

    async def quote_only(self) -> None:
        h = self._idle(paying=True)
        if h is not None:
            await self._use(h, self._quote(h, self.rng.choice(h.hospitals)))

    async def refund(self) -> None:
        open_ = [s for s in self.w.settled if not s.refunded and not s.holder.busy]
        if open_:
            s = self.rng.choice(open_)
            await self._use(s.holder, self._refund(s))

    async def _refund(self, s: Settled) -> None:
        key = f"soak-r{self.index}-{secrets.token_hex(8)}"
        headers = {**await self.w.tokens.auth(s.hospital), "Idempotency-Key": key}
        body = {"reason": self.rng.choice(("bill cancelled", "wrong items", "patient left"))}
        path = f"/v1/settlements/{s.settlement_id}/refunds"
        s.refunded = True
        try:
            refund = await self.w.api.call(
                "refund", "POST", path, expect=201, json=body, headers=headers
            )
        except StepFailed as exc:
            if str(exc).endswith(": 0"):
                self.w.rec.lost_refunds += 1
            raise
        self.w.rec.refund_acks.append(Ack(key, str(refund["refund_id"]), s.settlement_id))
        if self.rng.random() < 0.1:
            again = await self.w.api.call(
                "refund: retry (same key)", "POST", path, expect=201, json=body, headers=headers
            )
            if again != refund:
                self.w.rec.contract_problems.append(f"refund retry with key {key}: other answer")

    async def enquiry(self) -> None:
        h = self._idle()
        if h is None:
            return
        api, app = self.w.api, await self.w.tokens.auth(h.app)
        await api.call(
            "enquiry: account", "GET", f"/v1/ecards/{h.ecard_id}/account", expect=200, headers=app
        )
        await api.call(
            "enquiry: settlements",
            "GET",
            f"/v1/ecards/{h.ecard_id}/settlements",
            expect=200,
            params={"limit": "20"},
            headers=app,
        )
        mine = [s for s in self.w.settled if s.holder is h]
        if mine:
            s = self.rng.choice(mine)
            await api.call(
                "settlement: read",
                "GET",
                f"/v1/settlements/{s.settlement_id}",
                expect=200,
                headers=await self.w.tokens.auth(s.hospital),
            )

    async def reconcile(self) -> None:
        hospital = self.rng.choice(self.w.hospitals)
        headers = await self.w.tokens.auth(hospital)
        today = datetime.now(UTC).astimezone(CST).date().isoformat()
        if self.rng.random() < 0.3:
            await self.w.api.call(
                "reconciliation: detail (csv)",
                "GET",
                "/v1/reconciliation/daily",
                expect=200,
                params={"date": today},
                headers={**headers, "Accept": "text/csv"},
            )
        else:
            await self.w.api.call(
                "reconciliation: daily",
                "GET",
                "/v1/reconciliation/daily",
                expect=200,
                params={"date": today},
                headers=headers,
            )


def hospital_books(settled: Sequence[Settled]) -> dict[tuple[str, date], dict[str, Any]]:
    """Each hospital's own figures per day from the settlements it saw acknowledged."""
    books: dict[tuple[str, date], dict[str, Any]] = {}
    for s in settled:
        k = (str(s.hospital["client_id"]), s.day)
        b = books.setdefault(
            k,
            {
                "count": 0,
                "total": 0,
                "fund_pay": 0,
                "account_pay": 0,
                "cash_pay": 0,
                "settlement_ids": [],
            },
        )
        b["count"] += 1
        for name in ("total", "fund_pay", "account_pay", "cash_pay"):
            b[name] += s.totals[name]
        b["settlement_ids"].append(s.settlement_id)
    return books
