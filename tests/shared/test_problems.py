"""problem+json for validation errors, unknown routes, domain errors and crashes; request ids."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import httpx
import pytest
import pytest_asyncio
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from shared.app import build_service_app
from shared.problems import ConflictError, RateLimitedError
from shared.settings import ServiceSettings
from shared.validation import CleanStr

pytestmark = pytest.mark.asyncio


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1)
    unit_price: int


class Bill(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[Item]
    note: Annotated[CleanStr, Field(min_length=2, max_length=5)] | None = None


router = APIRouter()


@router.post("/v1/bills")
async def post_bill(bill: Bill) -> dict[str, int]:
    return {"n": len(bill.items)}


@router.get("/v1/conflict")
async def conflict() -> None:
    raise ConflictError("Already done.", slug="qr-already-used", title="QR code already used")


@router.get("/v1/limited")
async def limited() -> None:
    raise RateLimitedError(7)


@router.get("/v1/crash")
async def crash() -> None:
    raise RuntimeError("secret 360426199101010071 in a crash")


@pytest_asyncio.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = ServiceSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/p.db",
        keys_dir=tmp_path / "keys",
        environment="test",
        max_body_bytes=4096,
    )
    app = build_service_app(
        settings=settings,
        service="probe",
        title="probe",
        description="probe",
        key_purposes=(),
        routers=[router],
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            yield c


def assert_problem(resp: httpx.Response, status: int) -> dict[str, object]:
    assert resp.status_code == status
    assert resp.headers["content-type"] == "application/problem+json"
    body = resp.json()
    assert body["status"] == status
    for key in ("type", "title", "detail", "instance", "request_id"):
        assert key in body, key
    assert body["request_id"] == resp.headers["x-request-id"]
    return body


async def test_validation_error_names_the_field(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/v1/bills",
        json={
            "items": [
                {"code": "a", "unit_price": 1},
                {"code": "b", "unit_price": 2},
                {"code": "c", "unit_price": "x"},
            ]
        },
    )
    body = assert_problem(resp, 422)
    assert body["errors"] == [
        {"field": "items[2].unit_price", "message": body["errors"][0]["message"]}
    ]
    assert "items[2].unit_price" in str(body["detail"])


async def test_length_bounds_of_clean_strings_speak_of_characters(
    client: httpx.AsyncClient,
) -> None:
    for note, message in (
        ("x", "String should have at least 2 characters"),
        ("xxxxxx", "String should have at most 5 characters"),
    ):
        resp = await client.post("/v1/bills", json={"items": [], "note": note})
        body = assert_problem(resp, 422)
        assert body["errors"] == [{"field": "note", "message": message}]


async def test_unknown_field_is_rejected(client: httpx.AsyncClient) -> None:
    resp = await client.post("/v1/bills", json={"items": [], "status": "paid"})
    body = assert_problem(resp, 422)
    assert body["errors"] == [{"field": "status", "message": "Unknown field."}]


async def test_malformed_json(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/v1/bills", content=b"{not json", headers={"content-type": "application/json"}
    )
    body = assert_problem(resp, 422)
    assert body["errors"] == [{"field": "body", "message": "Body is not valid JSON."}]


async def test_undecodable_body_is_422_not_400(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/v1/bills", content=b'{"items": "\xff\xfe"}', headers={"content-type": "application/json"}
    )
    body = assert_problem(resp, 422)
    assert body["errors"] == [{"field": "body", "message": "Body is not valid JSON (UTF-8)."}]


async def test_unknown_route_and_method(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/v1/nothing"), 404)
    assert_problem(await client.delete("/v1/bills"), 405)


async def test_domain_error_keeps_its_type(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/v1/conflict"), 409)
    assert str(body["type"]).endswith("/qr-already-used")
    assert body["title"] == "QR code already used"


async def test_rate_limit_carries_retry_after(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/limited")
    assert_problem(resp, 429)
    assert resp.headers["retry-after"] == "7"


async def test_crash_is_a_500_problem_without_details(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/crash")
    body = assert_problem(resp, 500)
    assert "360426199101010071" not in resp.text
    assert "Traceback" not in resp.text
    assert body["detail"] == "An unexpected error occurred."


async def test_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/v1/bills", content=b"x" * 5000, headers={"content-type": "application/json"}
    )
    assert_problem(resp, 413)


async def test_request_id_echoed_or_generated(client: httpx.AsyncClient) -> None:
    resp = await client.get("/livez", headers={"X-Request-ID": "abc-42"})
    assert resp.headers["x-request-id"] == "abc-42"
    other = await client.get("/livez", headers={"X-Request-ID": "x" * 500})
    assert other.headers["x-request-id"] != "x" * 500
    assert len(other.headers["x-request-id"]) == 32


async def test_metrics_use_route_templates(client: httpx.AsyncClient) -> None:
    await client.get("/v1/conflict")
    text = (await client.get("/metrics")).text
    assert 'route="/v1/conflict"' in text
    assert 'status="409"' in text


async def test_readiness_reports_database_and_keys(client: httpx.AsyncClient) -> None:
    resp = await client.get("/readyz")
    assert resp.status_code == 200
    assert resp.json()["checks"] == {"not_draining": True, "database": True, "keys": True}
