"""The shared defences schemathesis and the bad-input catalogue rely on (issue 7)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
import pytest_asyncio
from fastapi import APIRouter, Header, Query
from pydantic import Field, ValidationError

from shared.app import build_service_app
from shared.openapi import IDEMPOTENCY_REQUIRED, OWN_ERRORS, PUBLIC, finalize_openapi
from shared.settings import ServiceSettings
from shared.validation import CLEAN_PATTERN, CleanStr, IdPath, IsoDate, RequestModel


class Body(RequestModel):
    count: int = Field(ge=0, le=10)
    flag: bool
    day: IsoDate
    note: Annotated[CleanStr, Field(max_length=20)] | None = None


router = APIRouter()


@router.post("/v1/things/{thing_id}", openapi_extra=IDEMPOTENCY_REQUIRED)
async def post_thing(
    thing_id: IdPath,
    body: Body,
    key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> dict[str, Any]:
    return {"id": thing_id, "count": body.count}


@router.get("/v1/days", openapi_extra=PUBLIC)
async def days(on: Annotated[IsoDate, Query(alias="date")]) -> dict[str, str]:
    return {"date": on.isoformat()}


@router.get("/oauth/like", openapi_extra=OWN_ERRORS, responses={400: {"description": "x"}})
async def own() -> dict[str, str]:
    return {}


def _app(tmp_path: Path) -> Any:
    settings = ServiceSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/h.db",
        keys_dir=tmp_path / "keys",
        environment="test",
        max_header_bytes=2048,
        max_headers=20,
    )
    return build_service_app(
        settings=settings,
        service="probe",
        title="probe",
        description="probe",
        key_purposes=(),
        routers=[router],
    )


@pytest_asyncio.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = _app(tmp_path)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            yield c


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"count": "3", "flag": True, "day": "2026-11-27"}, "count"),
        ({"count": 1.0, "flag": True, "day": "2026-11-27"}, "count"),
        ({"count": 3, "flag": "true", "day": "2026-11-27"}, "flag"),
        ({"count": 3, "flag": 1, "day": "2026-11-27"}, "flag"),
        ({"count": 3, "flag": True, "day": "0"}, "day"),
        ({"count": 3, "flag": True, "day": 20261127}, "day"),
        ({"count": 3, "flag": True, "day": "2026-02-30"}, "day"),
        ({"count": 3, "flag": True, "day": "2026-11-27T00:00:00"}, "day"),
        ({"count": 3, "flag": True, "day": "2026-11-27", "note": "a\x00"}, "note"),
    ],
)
def test_request_models_are_strict(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Body.model_validate(payload)
    assert info.value.errors()[0]["loc"] == (field,)
    ok = Body.model_validate({"count": 3, "flag": True, "day": "2026-11-27"})
    assert ok.day == date(2026, 11, 27)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("thing", "status"),
    [("t_1-A", 200), ("a" * 65, 422), ("a%00b", 422), ("a%20b", 422), ("%3Cscript%3E", 422)],
)
async def test_path_ids_are_bounded(client: httpx.AsyncClient, thing: str, status: int) -> None:
    body = {"count": 1, "flag": False, "day": "2026-11-27"}
    resp = await client.post(f"/v1/things/{thing}", json=body)
    assert resp.status_code == status, resp.text
    if status == 422:
        assert resp.headers["content-type"] == "application/problem+json"
        assert [e["field"] for e in resp.json()["errors"]] == ["thing_id"]


@pytest.mark.asyncio
async def test_query_dates_are_iso(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/days", params={"date": "2026-11-27"})).status_code == 200
    resp = await client.get("/v1/days", params={"date": "0"})
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["field"] == "date"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "headers",
    [{"X-Big": "a" * 4096}, {f"X-H{i}": "v" for i in range(30)}],
    ids=["bytes", "count"],
)
async def test_oversized_headers_are_431(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    resp = await client.get("/v1/days", params={"date": "2026-11-27"}, headers=headers)
    assert resp.status_code == 431
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["status"] == 431
    small = await client.get("/v1/days", params={"date": "2026-11-27"}, headers={"X-A": "b"})
    assert small.status_code == 200


def test_document_lists_every_problem_answer(tmp_path: Path) -> None:
    doc = _app(tmp_path).openapi()
    post = doc["paths"]["/v1/things/{thing_id}"]["post"]
    assert set(post["responses"]) >= {"200", "400", "401", "403", "404", "409", "413", "422"}
    for status, response in post["responses"].items():
        if int(status) >= 400:
            assert list(response["content"]) == ["application/problem+json"], status
            example = response["content"]["application/problem+json"]["example"]
            assert example["status"] == int(status)
    key = next(p for p in post["parameters"] if p["name"] == "Idempotency-Key")
    assert key["required"] is True
    assert key["schema"]["maxLength"] == 255
    thing = next(p for p in post["parameters"] if p["name"] == "thing_id")
    assert thing["schema"]["maxLength"] == 64
    public = doc["paths"]["/v1/days"]["get"]["responses"]
    assert "401" not in public
    assert "403" not in public
    assert "422" in public
    own = doc["paths"]["/oauth/like"]["get"]["responses"]
    assert set(own) == {"200", "400"}
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    note = doc["components"]["schemas"]["Body"]["properties"]["note"]["anyOf"][0]
    assert note["pattern"] == CLEAN_PATTERN
    assert finalize_openapi(doc) == doc  # idempotent: the gateway finalizes again
