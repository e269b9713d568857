"""The bad-input catalogue (issue 7): hostile values at every public field, through the gateway.

Real processes on PostgreSQL (``conftest.seeded``), because sizes, headers and content
types only mean something on a real HTTP stack. Each row puts one hostile value into
one field of an otherwise valid request and expects the documented 4xx problem that
names the field; every group of rows is bracketed by row counts of every table of the
three databases, which must not move. The table is built from:

- ``FIELDS``: every public body, query, path and header field, with its kind;
- ``INPUTS``: the hostile values of each kind (any string: NUL, control characters,
  10 000 characters, a number instead of a string; format-bound strings also SQL and
  script fragments; names also Unicode confusables; money negative, huge, 3-decimal,
  exponent, JSON number, fullwidth digits; quantities 1e308; region codes unknown or
  fullwidth; ID numbers with a bad check character; dates, integers, ids, limits);
- ``REQUESTS``: whole-request hostility (10 MB bodies, deep nesting, invalid UTF-8,
  wrong content types, oversized headers).

Names: a holder's name is matched against the physical card's record, so lookalikes are
REFUSED, not normalised (422 naming ``name``): Cyrillic or Greek letters that look Latin,
fullwidth Latin, CJK compatibility ideographs, zero-width and bidi control characters.
Only CJK unified ideographs, ASCII Latin letters, the middle dot and inner spaces pass
(``identity.holders.fields.check_name``).
"""

from __future__ import annotations

import copy
import itertools
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from support.seeded import Seeded

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]

VALID_ID = "360426199101010071"
BAD_CHECK = VALID_ID[:-1] + "2"


@dataclass(frozen=True)
class Op:
    """One public operation with a valid request (hostile values replace one field of it)."""

    method: str
    path: str  # with {placeholders} filled from Seeded.ids / the op's own ids
    kind: str
    body: Callable[[Seeded], Any] | None = None
    query: Callable[[Seeded], dict[str, Any]] | None = None
    headers: Callable[[], dict[str, str]] | None = None
    template: str = ""  # the inventory's template, when ``path`` is a filled-in one


def _details(s: Seeded) -> dict[str, Any]:
    return {k: s.holders[4][k] for k in ("name", "id_number", "card_number", "phone")}


def _idem() -> dict[str, str]:
    return {"Idempotency-Key": secrets.token_hex(8)}


def _policy(s: Seeded) -> dict[str, Any]:
    resp = httpx.get(s.url + "/v1/policies/370200", headers=s.auth("hospital"), timeout=10)
    body = {k: v for k, v in resp.json().items() if k not in _POLICY_READ_ONLY}
    return {**body, "year": body.get("year", 2026)}


_POLICY_READ_ONLY = {"region_code", "region_name", "version", "source", "loaded_at"}
LINE = {"code": "A1", "name": "ward day", "category": "A", "quantity": "1", "unit_price": "10.00"}
TOKEN40 = "A" * 40
ROW = {
    "name": "李四",
    "id_number": "110101199003070013",
    "phone": "13900139000",
    "card_number": "Z00000001",
    "region_code": "110000",
}

OPS: dict[str, Op] = {
    "verification": Op("POST", "/v1/verifications", "partner_app", _details),
    "confirm": Op(
        "POST",
        "/v1/verifications/vrf_catalogue/confirm",
        "partner_app",
        lambda s: {"code": "123456"},
        template="/v1/verifications/{verification_id}/confirm",
    ),
    "ecard": Op("POST", "/v1/ecards", "partner_app", lambda s: {"identity_assertion": "a.b.c"}),
    "pin": Op("PUT", "/v1/ecards/{ecard_id}/pin", "partner_app", lambda s: {"pin": "246813"}),
    "payment": Op(
        "POST", "/v1/ecards/{ecard_id}/payment", "partner_app", lambda s: {"pin": "135790"}
    ),
    "qrcode": Op(
        "POST",
        "/v1/ecards/{ecard_id}/qrcodes",
        "partner_app",
        lambda s: {"purpose": "identity"},
        query=lambda s: {"format": "none"},
    ),
    "ecard_get": Op("GET", "/v1/ecards/{ecard_id}", "partner_app"),
    "account": Op("GET", "/v1/ecards/{ecard_id}/account", "partner_app"),
    "history": Op("GET", "/v1/ecards/{ecard_id}/settlements", "partner_app", query=lambda s: {}),
    "suspend": Op("POST", "/v1/ecards/{ecard_id}/suspend", "partner_app"),
    "resume": Op("POST", "/v1/ecards/{ecard_id}/resume", "partner_app"),
    "unlink": Op("DELETE", "/v1/ecards/{ecard_id}", "partner_app"),
    "h5_session": Op("POST", "/v1/ecards/{ecard_id}/h5-sessions", "partner_app"),
    "qrcode_png": Op(
        "GET",
        "/v1/ecards/{ecard_id}/qrcode.png",
        "partner_app",
        query=lambda s: {"purpose": "identity"},
    ),
    "h5_data": Op("GET", "/h5/ecard/{session_token}/data", "public"),
    "h5_qrcode": Op("POST", "/h5/ecard/{session_token}/qrcode", "public"),
    "scan": Op(
        "POST", "/v1/scans", "hospital", lambda s: {"qr_token": "x" * 175, "purpose": "identity"}
    ),
    "quote": Op(
        "POST",
        "/v1/settlements/quotes",
        "hospital",
        lambda s: {"settlement_token": TOKEN40, "visit": {"type": "outpatient"}, "items": [LINE]},
    ),
    "settle": Op(
        "POST", "/v1/settlements", "hospital", lambda s: {"quote_id": "q_catalogue"}, headers=_idem
    ),
    "settlement_get": Op("GET", "/v1/settlements/{settlement_id}", "hospital"),
    "refund": Op(
        "POST",
        "/v1/settlements/{settlement_id}/refunds",
        "hospital",
        lambda s: {"reason": "patient cancelled"},
        headers=_idem,
    ),
    "policy_get": Op("GET", "/v1/policies/{region_code}", "hospital"),
    "daily": Op(
        "GET", "/v1/reconciliation/daily", "hospital", query=lambda s: {"date": "2026-11-27"}
    ),
    "check": Op(
        "POST",
        "/v1/reconciliation/checks",
        "hospital",
        lambda s: {
            "date": "2026-11-27",
            "count": 0,
            "total": "0.00",
            "fund_pay": "0.00",
            "account_pay": "0.00",
            "cash_pay": "0.00",
        },
    ),
    "client": Op(
        "POST",
        "/v1/admin/clients",
        "ops",
        lambda s: {"kind": "scanner", "name": "Catalogue hall", "sandbox_secret": True},
    ),
    "disable": Op("POST", "/v1/admin/clients/{client_id}/disable", "ops"),
    "holders": Op("POST", "/v1/admin/holders", "ops", lambda s: {"holders": [dict(ROW)]}),
    "card_status": Op(
        "POST",
        "/v1/admin/cards/{card_number}/status",
        "ops",
        lambda s: {"status": "active"},
    ),
    "outbox": Op(
        "GET", "/v1/admin/sms-outbox", "ops", query=lambda s: {"phone": s.holders[4]["phone"]}
    ),
    "alerts": Op("GET", "/v1/admin/risk/alerts", "ops", query=lambda s: {}),
    "resolve": Op(
        "POST",
        "/v1/admin/risk/alerts/al_catalogue/resolve",
        "ops",
        lambda s: {"resolution": "acceptable"},
        template="/v1/admin/risk/alerts/{alert_id}/resolve",
    ),
    "policy_put": Op("PUT", "/v1/admin/policies/{region_code}", "ops", _policy),
    "top_up": Op(
        "POST",
        "/v1/admin/holders/h_catalogue/top-ups",
        "ops",
        lambda s: {"amount": "10.00", "reference": "catalogue-1"},
        template="/v1/admin/holders/{holder_ref}/top-ups",
    ),
    "rotate": Op("POST", "/v1/admin/keys/rotate", "ops", lambda s: {"purpose": "internal"}),
}

# --- hostile values by kind of field ---------------------------------------------------------

ANY_STRING: dict[str, Any] = {
    "nul": "ab\x00cd",
    "control": "ab\x1b[2Jcd",
    "10k-chars": "x" * 10_000,
    "json-number": 12345,
    "json-object": {"$ne": None},
}
INJECTION: dict[str, Any] = {
    "sql": "' OR '1'='1'; DROP TABLE holder; --",
    "script": "<script>alert(1)</script>",
}
CONFUSABLE: dict[str, Any] = {
    "cyrillic-lookalike": "Аnnа Li",  # А and а are Cyrillic
    "greek-lookalike": "Αlex Li",  # Greek capital alpha
    "fullwidth-latin": "ＺＨＡＮＧ Ｓａｎ",
    "compat-ideograph": "\uf90a三",  # CJK compatibility ideograph, looks like 金
    "zero-width": "张\u200b三",
    "bidi-override": "张\u202e三",
}
MONEY: dict[str, Any] = {
    "negative": "-1.00",
    "huge": "10000000000.00",
    "three-decimals": "1.234",
    "exponent": "1e3",
    "json-number": 12.5,
    "nan": "NaN",
    "fullwidth-digits": "１２.００",
    "sql": "1; DROP TABLE ledger_entry",
}
QUANTITY: dict[str, Any] = {
    "1e308": "1e308",
    "1e308-number": 1e308,
    "five-decimals": "1.00001",
    "negative": "-1",
    "huge": "100000000",
}
REGION: dict[str, Any] = {
    "unknown": "999999",
    "five-digits": "31000",
    "seven-digits": "3100000",
    "letters": "abcdef",
    "fullwidth": "３１００００",
}
ID_NUMBER: dict[str, Any] = {
    "bad-check-character": BAD_CHECK,
    "impossible-date": "360426199113320071",
    "seventeen": VALID_ID[:-1],
    **INJECTION,
}
DATE: dict[str, Any] = {
    "zero": "0",
    "feb-30": "2026-02-30",
    "basic-format": "20261127",
    "datetime": "2026-11-27T00:00:00Z",
    "json-number": 20261127,
}
INTEGER: dict[str, Any] = {
    "negative": -1,
    "huge": 10**20,
    "float": 1.5,
    "string": "5",
    "bool": True,
}
LIMIT: dict[str, Any] = {"zero": "0", "huge": "1000000000000", "negative": "-1", "text": "ten"}
CURSOR: dict[str, Any] = {"nul": "ab\x00", "forged": "eyJhIjoxfQ", "10k-chars": "x" * 10_000}
PATH_ID: dict[str, Any] = {
    "nul": "a\x00b",
    "10k-chars": "a" * 10_240,
    "sql": "1' OR '1'='1",
    "script": "<script>",
    "dot-dot": "..%2f..%2fetc",
}

KINDS: dict[str, dict[str, Any]] = {
    "text": ANY_STRING,
    "format": {**ANY_STRING, **INJECTION},
    "name": {**ANY_STRING, **INJECTION, **CONFUSABLE},
    "money": MONEY,
    "quantity": QUANTITY,
    "region": {**REGION, **INJECTION},
    "id_number": {**ID_NUMBER, "json-number": 360426199101010071},
    "date": DATE,
    "integer": INTEGER,
    "enum": {**ANY_STRING, **INJECTION, "case": "INPATIENT"},
    "limit": LIMIT,
    "cursor": CURSOR,
    "path_id": PATH_ID,
}

# (operation, field, kind): body fields are dotted paths (``items.0.unit_price``);
# ``query:``, ``path:`` and ``header:`` name the other places.
FIELDS: list[tuple[str, str, str]] = [
    ("verification", "name", "name"),
    ("verification", "id_number", "id_number"),
    ("verification", "card_number", "format"),
    ("verification", "phone", "format"),
    ("verification", "face_attestation", "text"),
    ("confirm", "code", "format"),
    ("confirm", "path:verification_id", "path_id"),
    ("ecard", "identity_assertion", "text"),
    ("pin", "pin", "format"),
    ("pin", "old_pin", "format"),
    ("pin", "identity_assertion", "text"),
    ("pin", "path:ecard_id", "path_id"),
    ("payment", "pin", "format"),
    ("qrcode", "purpose", "enum"),
    ("qrcode", "pin", "format"),
    ("qrcode", "query:format", "enum"),
    ("ecard_get", "path:ecard_id", "path_id"),
    ("account", "path:ecard_id", "path_id"),
    ("history", "path:ecard_id", "path_id"),
    ("history", "query:limit", "limit"),
    ("history", "query:cursor", "cursor"),
    ("suspend", "path:ecard_id", "path_id"),
    ("resume", "path:ecard_id", "path_id"),
    ("unlink", "path:ecard_id", "path_id"),
    ("h5_session", "path:ecard_id", "path_id"),
    ("qrcode_png", "path:ecard_id", "path_id"),
    ("qrcode_png", "query:purpose", "enum"),
    ("h5_data", "path:session_token", "path_id"),
    ("h5_qrcode", "path:session_token", "path_id"),
    ("scan", "qr_token", "text"),
    ("scan", "purpose", "enum"),
    ("quote", "settlement_token", "text"),
    ("quote", "visit.type", "enum"),
    ("quote", "visit.department", "text"),
    ("quote", "visit.diagnosis_code", "text"),
    ("quote", "items.0.code", "text"),
    ("quote", "items.0.name", "text"),
    ("quote", "items.0.category", "enum"),
    ("quote", "items.0.quantity", "quantity"),
    ("quote", "items.0.unit_price", "money"),
    ("quote", "items.0.price_cap", "money"),
    ("settle", "quote_id", "text"),
    ("settlement_get", "path:settlement_id", "path_id"),
    ("refund", "reason", "text"),
    ("refund", "path:settlement_id", "path_id"),
    ("policy_get", "path:region_code", "region"),
    ("daily", "query:date", "date"),
    ("check", "date", "date"),
    ("check", "count", "integer"),
    ("check", "total", "money"),
    ("check", "fund_pay", "money"),
    ("check", "account_pay", "money"),
    ("check", "cash_pay", "money"),
    ("check", "settlement_ids.0", "text"),
    ("client", "kind", "enum"),
    ("client", "name", "text"),
    ("client", "region_code", "region"),
    ("client", "level", "integer"),
    ("client", "jwks_uri", "format"),
    ("client", "webhook_url", "format"),
    ("client", "scopes.0", "format"),
    ("disable", "path:client_id", "path_id"),
    ("card_status", "status", "enum"),
    ("card_status", "new_card_number", "format"),
    ("card_status", "path:card_number", "path_id"),
    ("outbox", "query:phone", "format"),
    ("alerts", "query:status", "enum"),
    ("alerts", "query:limit", "limit"),
    ("alerts", "query:cursor", "cursor"),
    ("resolve", "resolution", "enum"),
    ("resolve", "note", "text"),
    ("resolve", "path:alert_id", "path_id"),
    ("policy_put", "name", "text"),
    ("policy_put", "year", "integer"),
    ("policy_put", "annual_cap", "money"),
    ("policy_put", "deductible.outpatient.level_1", "money"),
    ("policy_put", "class_b_self_pay", "quantity"),
    ("policy_put", "account_may_pay", "enum"),
    ("policy_put", "path:region_code", "region"),
    ("top_up", "amount", "money"),
    ("top_up", "reference", "text"),
    ("top_up", "path:holder_ref", "path_id"),
    ("rotate", "purpose", "format"),
]
# Holder import rows are validated one by one: 200 with the row refused, naming the field.
ROW_FIELDS: list[tuple[str, str]] = [
    ("name", "name"),
    ("id_number", "id_number"),
    ("phone", "format"),
    ("card_number", "format"),
    ("region_code", "region"),
    ("account_balance", "money"),
    ("insurance_type", "enum"),
]


@dataclass(frozen=True)
class Row:
    op: str
    field: str
    input: str
    value: Any

    @property
    def id(self) -> str:
        return f"{self.op}:{self.field}:{self.input}"


ROWS = [
    Row(op, field, name, value) for op, field, kind in FIELDS for name, value in KINDS[kind].items()
]


def _set(body: Any, dotted: str, value: Any) -> Any:
    """``body`` with ``value`` at a dotted path (``items.0.unit_price``); lists as needed."""
    out = copy.deepcopy(body)
    node = out
    parts = dotted.split(".")
    for part, following in itertools.pairwise(parts):
        empty: Any = [] if following.isdigit() else {}
        if part.isdigit():
            node = node[int(part)]
        else:
            node = node.setdefault(part, empty)
    last = parts[-1]
    if last.isdigit() and int(last) == len(node):
        node.append(value)
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return out


def _field_name(field: str) -> str:
    """``items.0.unit_price`` → ``items[0].unit_price`` (the problems' notation)."""
    name = field.rpartition(":")[2]
    out = ""
    for part in name.split("."):
        out += f"[{part}]" if part.isdigit() else ("." if out else "") + part
    return out


def _fill(path: str, s: Seeded) -> str:
    for name, values in s.ids.items():
        path = path.replace("{" + name + "}", quote(values[0], safe=""))
    return path


def _request(s: Seeded, row: Row) -> httpx.Request:
    op = OPS[row.op]
    place, _, name = row.field.rpartition(":")
    path = op.path
    if place == "path":
        value = quote(str(row.value), safe="%")
        template = op.template or op.path
        path = template.replace("{" + name + "}", value)
    path = _fill(path, s)
    query = op.query(s) if op.query else {}
    if place == "query":
        query = {**query, name: row.value}
    body = op.body(s) if op.body else None
    if not place and body is not None:
        body = _set(body, name, row.value)
    auth = {} if op.kind == "public" else s.auth(op.kind)
    headers = {**auth, **(op.headers() if op.headers else {})}
    content = None if body is None else json.dumps(body).encode()
    if content is not None:
        headers["Content-Type"] = "application/json"
    return httpx.Request(op.method, s.url + path, params=query, content=content, headers=headers)


def _documented(doc: dict[str, Any], op: Op, status: int) -> bool:
    template = op.template or op.path
    operation = doc["paths"][template][op.method.lower()]
    return str(status) in operation["responses"]


def _assert_problem(resp: httpx.Response, doc: dict[str, Any], op: Op, what: str) -> None:
    assert 400 <= resp.status_code < 500, f"{what}: {resp.status_code} {resp.text[:300]}"
    assert resp.headers["content-type"].startswith("application/problem+json"), what
    body = resp.json()
    assert body["status"] == resp.status_code, what
    assert _documented(doc, op, resp.status_code), f"{what}: {resp.status_code} undocumented"


@pytest.fixture(scope="module")
def doc(seeded: Seeded) -> dict[str, Any]:
    data: dict[str, Any] = httpx.get(seeded.url + "/openapi.json", timeout=10).json()
    return data


@pytest.fixture(scope="module")
def http(seeded: Seeded) -> Any:
    with httpx.Client(timeout=30) as client:
        yield client


@pytest.mark.parametrize("op_name", sorted({r.op for r in ROWS}))
def test_field_catalogue(
    seeded: Seeded, doc: dict[str, Any], http: httpx.Client, op_name: str
) -> None:
    """Every hostile value at every field of one operation: a 4xx problem naming the field."""
    op = OPS[op_name]
    rows = [r for r in ROWS if r.op == op_name]
    before = seeded.row_counts()
    problems: list[str] = []
    for row in rows:
        resp = http.send(_request(seeded, row))
        _assert_problem(resp, doc, op, row.id)
        body = resp.json()
        place = row.field.rpartition(":")[0]
        if resp.status_code == 422:
            fields = {e["field"] for e in body.get("errors", [])}
            wanted = _field_name(row.field)
            if not any(f == wanted or f.startswith(wanted + ".") for f in fields):
                problems.append(f"{row.id}: 422 names {sorted(fields)}, not {wanted}")
        elif not (place == "path" and resp.status_code in (404, 410)):
            # a well-formed id that names nothing: 404 (410 for an e-card page link)
            problems.append(f"{row.id}: {resp.status_code} {body.get('detail')}")
    assert not problems, "\n".join(problems)
    assert seeded.row_counts() == before, f"{op_name}: rows written by refused requests"


def test_holder_import_rows(seeded: Seeded, http: httpx.Client) -> None:
    """The import refuses each hostile row by itself (200, the row and field named), writes none."""
    before = seeded.row_counts()
    rows = [
        (field, name, _set(dict(ROW), field, value))
        for field, kind in ROW_FIELDS
        for name, value in KINDS[kind].items()
    ]
    resp = http.post(
        seeded.url + "/v1/admin/holders",
        json={"holders": [r for _, _, r in rows]},
        headers=seeded.auth("ops"),
    )
    assert resp.status_code == 200, resp.text
    result = resp.json()
    assert (result["created"], result["updated"]) == (0, 0), result
    refused = {r["index"]: {e["field"] for e in r["errors"]} for r in result["rejected"]}
    for index, (field, name, _) in enumerate(rows):
        assert field in refused.get(index, set()), (
            f"{field}:{name} not refused: {refused.get(index)}"
        )
    assert seeded.row_counts() == before


def test_free_text_is_data(seeded: Seeded, http: httpx.Client) -> None:
    """SQL and script in free text are stored and answered verbatim, and harm nothing."""
    tables = set(seeded.row_counts())
    text = "'); DROP TABLE client; -- <script>alert(1)</script>"
    resp = http.post(
        seeded.url + "/v1/admin/clients",
        json={"kind": "scanner", "name": text, "sandbox_secret": True},
        headers=seeded.auth("ops"),
    )
    assert resp.status_code == 201, resp.text
    assert resp.headers["content-type"] == "application/json"
    assert resp.json()["name"] == text
    assert set(seeded.row_counts()) == tables


# --- whole-request hostility -----------------------------------------------------------------

TEN_MB = b"{" + b'"a": "' + b"x" * (10 * 1024 * 1024) + b'"}'
NESTED = b'{"items": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"


def _chunks(data: bytes, size: int = 65_536) -> Any:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@dataclass(frozen=True)
class Whole:
    name: str
    op: str
    content: bytes | None
    headers: dict[str, str]
    statuses: tuple[int, ...]
    field: str | None = None
    chunked: bool = False


JSON = {"Content-Type": "application/json"}
WHOLE: list[Whole] = [
    Whole("10MB-body", "quote", TEN_MB, JSON, (413,)),
    Whole("10MB-body-chunked", "quote", TEN_MB, JSON, (413,), chunked=True),
    Whole("10MB-body", "verification", TEN_MB, JSON, (413,)),
    Whole("10MB-body", "client", TEN_MB, JSON, (413,)),
    Whole("deeply-nested", "quote", NESTED, JSON, (422,), "body"),
    Whole("deeply-nested", "verification", NESTED, JSON, (422,), "body"),
    Whole("deeply-nested", "rotate", NESTED, JSON, (422,), "body"),
    Whole("not-utf8", "quote", b'{"visit": "\xff\xfe"}'.replace(b"\\x", b"\\x"), JSON, (422,)),
    Whole("invalid-utf8-bytes", "scan", b'{"qr_token": "\xff\xfe\xfd"}', JSON, (422,)),
    Whole("truncated-json", "scan", b'{"qr_token": "abc', JSON, (422,), "body"),
    Whole("json-array", "scan", b"[1, 2, 3]", JSON, (422,), "body"),
    Whole("text-plain", "scan", b'{"qr_token": "x", "purpose": "identity"}',
          {"Content-Type": "text/plain"}, (415, 422), "body"),
    Whole("xml", "quote", b"<quote><items/></quote>", {"Content-Type": "application/xml"},
          (415, 422), "body"),
    Whole("form", "verification", b"name=a&id_number=b",
          {"Content-Type": "application/x-www-form-urlencoded"}, (415, 422), "body"),
    Whole("multipart", "client", b"--x\r\nContent-Disposition: form-data; name=kind\r\n\r\n"
          b"ops\r\n--x--\r\n", {"Content-Type": "multipart/form-data; boundary=x"},
          (415, 422), "body"),
    Whole("no-content-type", "rotate", b"purpose=internal", {}, (415, 422), "body"),
    Whole("64KB-header", "ecard_get", None, {"X-Filler": "a" * 65_536}, (431,)),
    Whole("200-headers", "ecard_get", None, {f"X-Filler-{i}": "a" for i in range(200)}, (431,)),
    Whole("20KB-authorization", "ecard_get", None, {"Authorization": "Bearer " + "a" * 20_000},
          (431,)),
    Whole("empty-idempotency-key", "settle", b'{"quote_id": "q_x"}',
          {**JSON, "Idempotency-Key": ""}, (400,)),
    Whole("256-char-idempotency-key", "settle", b'{"quote_id": "q_x"}',
          {**JSON, "Idempotency-Key": "k" * 256}, (400,)),
    Whole("spaced-idempotency-key", "settle", b'{"quote_id": "q_x"}',
          {**JSON, "Idempotency-Key": "a b"}, (400,)),
    Whole("missing-idempotency-key", "refund", b'{"reason": "x"}', JSON, (400,)),
]  # fmt: skip


@pytest.mark.parametrize("case", WHOLE, ids=[f"{w.op}:{w.name}" for w in WHOLE])
def test_whole_request(
    seeded: Seeded, doc: dict[str, Any], http: httpx.Client, case: Whole
) -> None:
    """Sizes, nesting, encodings, content types and headers: a clean, documented 4xx."""
    op = OPS[case.op]
    before = seeded.row_counts()
    headers = {**seeded.auth(op.kind), **case.headers}
    if case.op in ("settle", "refund") and "Idempotency-Key" not in case.headers:
        headers.pop("Idempotency-Key", None)
    content: Any = _chunks(case.content) if case.chunked and case.content else case.content
    resp = http.request(
        op.method, seeded.url + _fill(op.path, seeded), content=content, headers=headers
    )
    assert resp.status_code in case.statuses, f"{resp.status_code} {resp.text[:300]}"
    _assert_problem(resp, doc, op, case.name)
    if case.field is not None and resp.status_code == 422:
        assert case.field in {e["field"] for e in resp.json()["errors"]}, resp.text
    assert seeded.row_counts() == before


OAUTH_FIELDS = ("grant_type", "scope", "client_assertion_type", "client_assertion", "client_id")


@pytest.mark.parametrize("field", OAUTH_FIELDS)
def test_token_endpoint_form_fields(seeded: Seeded, http: httpx.Client, field: str) -> None:
    """The token endpoint answers RFC 6749 errors (400/401 JSON ``error``), never a 5xx."""
    before = seeded.row_counts()
    entry = seeded.client("partner_app")
    for name, value in {**ANY_STRING, **INJECTION}.items():
        form = {"grant_type": "client_credentials", field: str(value)}
        resp = http.post(
            seeded.url + "/oauth/token",
            data=form,
            auth=(entry["client_id"], entry["client_secret"]),
        )
        assert resp.status_code in (400, 401), f"{field}:{name}: {resp.status_code} {resp.text}"
        assert resp.headers["content-type"] == "application/json", f"{field}:{name}"
        assert resp.json()["error"] in (
            "invalid_request",
            "invalid_client",
            "invalid_scope",
            "unsupported_grant_type",
            "invalid_grant",
        ), resp.text
    assert seeded.row_counts() == before
