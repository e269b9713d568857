"""The schemathesis harness itself can fail: a deliberately broken app, each defect caught."""

from __future__ import annotations

from pathlib import Path

import schemathesis
from fastapi import FastAPI
from starlette.responses import JSONResponse, Response

from shared.openapi import finalize_openapi
from shared.problems import install_problem_handlers
from support import fuzz


def broken_app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)  # as every service: a 405 or 422 is a problem

    @app.get("/boom")
    async def boom() -> Response:
        return JSONResponse({"oops": True}, status_code=500)

    @app.get("/teapot")
    async def teapot() -> Response:
        return JSONResponse({"tea": True}, status_code=418)

    @app.get("/liar", responses={404: {"description": "No such thing."}})
    async def liar() -> Response:
        body = b'{"type":"x","title":"x","status":400,"detail":"x","instance":"/liar"}'
        return Response(body, status_code=404, media_type="application/problem+json")

    @app.get("/plain", responses={404: {"description": "No such thing."}})
    async def plain() -> Response:
        return JSONResponse({"detail": "Not Found"}, status_code=404)

    @app.get("/fine")
    async def fine() -> dict[str, bool]:
        return {"ok": True}

    generate = app.openapi
    app.openapi = lambda: finalize_openapi(generate())  # type: ignore[method-assign]
    return app


def test_each_defect_is_reported(output_dir: Path) -> None:
    schema = schemathesis.openapi.from_asgi(
        "/openapi.json", broken_app(), config=fuzz.config(phases=["examples", "coverage"])
    )
    outcome = fuzz.run(schema, "harness-self-test", output_dir)
    found = {(f["operation"], f["check"]) for f in outcome.failures}
    assert ("GET /boom", "not_a_server_error") in found, outcome.summary()
    assert ("GET /teapot", "status_code_conformance") in found, outcome.summary()
    assert ("GET /liar", "problem_details") in found, outcome.summary()
    assert ("GET /plain", "content_type_conformance") in found, outcome.summary()
    assert not [f for f in outcome.failures if f["operation"] == "GET /fine"], outcome.summary()
