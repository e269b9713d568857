"""A stand-in for the settlement service's peers, for its unit, contract and crash tests.

One small app plays three parts under three path prefixes, each with its own signing keys:

- ``/gw``  — the gateway: ``/gw/internal/jwks.json`` and internal tokens it mints for callers
  (``POST /_stub/gateway-token`` or :meth:`PeerStub.gateway_token`);
- ``/iss`` — issuance: settlement tokens (resolve, redeem — idempotent per ``redemption_ref``,
  409 for another, 404 unknown/expired/other hospital) and e-card ownership (``EcardRef``);
- ``/idn`` — identity: the event feed (``GET /idn/internal/v1/events``).

Point the settlement service at it with ``SETTLEMENT_GATEWAY_URL=<stub>/gw``,
``SETTLEMENT_ISSUANCE_URL=<stub>/iss`` and ``SETTLEMENT_IDENTITY_URL=<stub>/idn``. The contracts
are ``shared.wire``'s. End-to-end tests never use it: they run the real services.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shared.tokens.claims import INTERNAL, ClientKind, InternalTokenClaims
from shared.tokens.codec import sign_token
from shared.tokens.keys import KeyRing
from shared.wire import EcardRef, EcardStatus, InsuranceType, SettlementTokenInfo

_TOKEN_CHARS = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"


def _problem(status: int, slug: str, detail: str) -> Response:
    body = {"type": f"https://e-ssc.example/problems/{slug}", "title": slug, "status": status,
            "detail": detail, "instance": "", "request_id": None}  # fmt: skip
    return Response(orjson.dumps(body), status, media_type="application/problem+json")


def _claims_of(request: Request) -> dict[str, Any]:
    """The caller's token claims, unverified (the stub only checks who says they call)."""
    header = request.headers.get("authorization", "")
    token = header.partition(" ")[2]
    try:
        payload = token.split(".")[1]
        data = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass
class StubToken:
    info: SettlementTokenInfo
    redemptions: int = 0


@dataclass
class PeerStub:
    """The parts' state; tests call its methods directly (same process) or over HTTP."""

    rings: dict[str, KeyRing] = field(default_factory=dict)
    tokens: dict[str, StubToken] = field(default_factory=dict)
    ecards: dict[str, EcardRef] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    resolve_calls: int = 0
    redeem_calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        now = datetime.now(UTC)
        for part in ("gateway", "issuance", "identity"):
            self.rings.setdefault(part, KeyRing.generate(["internal"], now))

    # --- what tests set up -------------------------------------------------------------------

    def gateway_token(
        self,
        client_id: str,
        kind: ClientKind,
        scope: str,
        *,
        region_code: str | None = None,
        level: int | None = None,
        audience: str = "urn:essc:settlement",
        lifetime: int = 300,
    ) -> str:
        """An internal token as the gateway mints it for a verified client."""
        return self._sign(
            "gateway",
            InternalTokenClaims(
                iss="urn:essc:gateway",
                sub=client_id,
                aud=audience,
                iat=int(time.time()),
                exp=int(time.time()) + lifetime,
                jti=secrets.token_urlsafe(12),
                client_id=client_id,
                kind=kind,
                scope=scope,
                region_code=region_code,
                level=level,
            ),
        )

    def service_token(self, service: str, audience: str = "urn:essc:settlement") -> str:
        """An internal token of a peer service (``issuance``, ``identity``) calling settlement."""
        now = int(time.time())
        return self._sign(
            service,
            InternalTokenClaims(
                iss=f"urn:essc:{service}",
                sub=f"service:{service}",
                aud=audience,
                iat=now,
                exp=now + 300,
                jti=secrets.token_urlsafe(12),
                client_id=f"service:{service}",
                kind=ClientKind.SERVICE,
                scope="internal",
            ),
        )

    def _sign(self, part: str, claims: InternalTokenClaims) -> str:
        return sign_token(INTERNAL, claims, self.rings[part].signing_key("internal"))

    def issue_token(
        self,
        *,
        holder_ref: str,
        hospital_client_id: str,
        insured_region: str,
        partner_client_id: str = "partner-1",
        ecard_id: str | None = None,
        insurance_type: InsuranceType = InsuranceType.EMPLOYEE,
        birth_date: date = date(1990, 1, 1),
        gender: str = "male",
        sign_level: int = 2,
        ttl: float = 600.0,
    ) -> str:
        """A fresh 40-character settlement token for a holder at a hospital."""
        token = "".join(secrets.choice(_TOKEN_CHARS) for _ in range(40))
        ecard = ecard_id or f"ec_{holder_ref}_{partner_client_id}"
        info = SettlementTokenInfo(
            ecard_id=ecard,
            scan_id="scan_" + secrets.token_hex(6),
            holder_ref=holder_ref,
            partner_client_id=partner_client_id,
            hospital_client_id=hospital_client_id,
            insured_region=insured_region,
            insurance_type=insurance_type,
            birth_date=birth_date,
            gender=gender,
            sign_level=sign_level,
            ecard_status=EcardStatus.ACTIVE,
            expires_at=datetime.now(UTC) + timedelta(seconds=ttl),
        )
        with self.lock:
            self.tokens[token] = StubToken(info)
        if ecard not in self.ecards:
            self.add_ecard(holder_ref, partner_client_id, insured_region, ecard)
        return token

    def add_ecard(
        self,
        holder_ref: str,
        partner_client_id: str,
        insured_region: str,
        ecard_id: str | None = None,
    ) -> str:
        """Register an e-card of a holder in a partner app; returns its id."""
        ecard = ecard_id or f"ec_{holder_ref}_{partner_client_id}"
        with self.lock:
            self.ecards[ecard] = EcardRef(
                ecard_id=ecard,
                holder_ref=holder_ref,
                partner_client_id=partner_client_id,
                status=EcardStatus.ACTIVE,
                insured_region=insured_region,
            )
        return ecard

    def add_event(self, type_: str, payload: dict[str, Any]) -> int:
        """Append an event to identity's feed; returns its seq."""
        with self.lock:
            seq = len(self.events) + 1
            self.events.append(
                {
                    "event_id": f"ev_{seq}_{secrets.token_hex(4)}",
                    "seq": seq,
                    "type": type_,
                    "occurred_at": datetime.now(UTC).isoformat(),
                    "payload": payload,
                }
            )
        return seq

    # --- the parts' endpoints ----------------------------------------------------------------

    async def _jwks(self, request: Request) -> Response:
        part = {"gw": "gateway", "iss": "issuance", "idn": "identity"}[request.path_params["part"]]
        return JSONResponse(self.rings[part].jwks())

    def _caller_ok(self, request: Request, audience: str) -> bool:
        claims = _claims_of(request)
        return claims.get("aud") == audience and claims.get("iss") == "urn:essc:settlement"

    async def _token_call(self, request: Request) -> Response:
        if not self._caller_ok(request, "urn:essc:issuance"):
            return _problem(401, "unauthorized", "bad service token")
        body = orjson.loads(await request.body())
        redeem = request.path_params["action"] == "redeem"
        with self.lock:
            if redeem:
                self.redeem_calls += 1
            else:
                self.resolve_calls += 1
            entry = self.tokens.get(str(body.get("settlement_token")))
            now = datetime.now(UTC)
            if (
                entry is None
                or entry.info.hospital_client_id != body.get("hospital_client_id")
                or entry.info.expires_at <= now
            ):
                return _problem(404, "settlement-token-invalid", "unknown token")
            info = entry.info
            if redeem:
                ref = str(body.get("redemption_ref"))
                if info.redemption_ref is not None and info.redemption_ref != ref:
                    return _problem(409, "settlement-token-used", "used for another ref")
                if info.redemption_ref is None:
                    info = info.model_copy(update={"redeemed_at": now, "redemption_ref": ref})
                    entry.info = info
                    entry.redemptions += 1
        return Response(info.model_dump_json(), media_type="application/json")

    async def _ecard(self, request: Request) -> Response:
        if not self._caller_ok(request, "urn:essc:issuance"):
            return _problem(401, "unauthorized", "bad service token")
        ref = self.ecards.get(request.path_params["ecard_id"])
        if ref is None or ref.partner_client_id != request.query_params.get("client_id"):
            return _problem(404, "not-found", "no such e-card")
        return Response(ref.model_dump_json(), media_type="application/json")

    async def _events(self, request: Request) -> Response:
        if not self._caller_ok(request, "urn:essc:identity"):
            return _problem(401, "unauthorized", "bad service token")
        after = int(request.query_params.get("after", "0"))
        limit = int(request.query_params.get("limit", "100"))
        with self.lock:
            items = [e for e in self.events if e["seq"] > after][:limit]
        next_after = items[-1]["seq"] if items else after
        return JSONResponse({"items": items, "next_after": next_after})

    # --- control API (for processes that cannot call the methods) ----------------------------

    async def _control(self, request: Request) -> Response:
        what = request.path_params["what"]
        body = orjson.loads(await request.body() or b"{}")
        if what == "gateway-token":
            token = self.gateway_token(
                body["client_id"],
                ClientKind(body["kind"]),
                body["scope"],
                region_code=body.get("region_code"),
                level=body.get("level"),
            )
            return JSONResponse({"token": token})
        if what == "tokens":
            return JSONResponse({"settlement_token": self.issue_token(**body)})
        if what == "ecards":
            ecard = self.add_ecard(
                body["holder_ref"],
                body.get("partner_client_id", "partner-1"),
                body["insured_region"],
            )
            return JSONResponse({"ecard_id": ecard})
        if what == "events":
            return JSONResponse({"seq": self.add_event(body["type"], body["payload"])})
        return _problem(404, "not-found", "unknown control")

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/{part:str}/internal/jwks.json", self._jwks),
                Route(
                    "/iss/internal/v1/settlement-tokens/{action:str}",
                    self._token_call,
                    methods=["POST"],
                ),
                Route("/iss/internal/v1/ecards/{ecard_id:str}", self._ecard),
                Route("/idn/internal/v1/events", self._events),
                Route("/_stub/{what:str}", self._control, methods=["POST"]),
            ]
        )


class StubServer:
    """The stub served by uvicorn in a background thread (tests)."""

    def __init__(self, stub: PeerStub, port: int) -> None:
        self.stub = stub
        self.port = port
        config = uvicorn.Config(
            stub.app(), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name="peer-stub", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.run(self.server.serve())

    def start(self) -> StubServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("peer stub did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)

    def env(self, prefix: str = "SETTLEMENT_") -> dict[str, str]:
        """The settlement service's environment pointing at this stub."""
        return {
            prefix + "GATEWAY_URL": self.url + "/gw",
            prefix + "ISSUANCE_URL": self.url + "/iss",
            prefix + "IDENTITY_URL": self.url + "/idn",
        }


def main(argv: list[str] | None = None) -> int:
    """``python -m devkit.peerstub --port N``: serve the stub until interrupted (benches)."""
    parser = argparse.ArgumentParser(prog="python -m devkit.peerstub", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    uvicorn.run(PeerStub().app(), host="127.0.0.1", port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
