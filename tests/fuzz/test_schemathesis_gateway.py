"""Schemathesis against the gateway's merged ``/openapi.json`` over real HTTP (issue 7).

The four real processes on PostgreSQL (``conftest.seeded``). One run per client kind —
partner_app, hospital, scanner, ops — over the operations that kind may call, with that
kind's access token (a demo client's), and one run of the public operations (OAuth,
metadata, the e-card web page) without a token. Every phase, a fixed seed, the checks of
``support.fuzz``; seeded ids join the generated ones. ``make fuzz`` also runs every kind
against every operation (the forbidden ones must answer a documented 403 problem).
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
import schemathesis

from gateway.routes import ROUTES
from support import fuzz
from support.seeded import Seeded

pytestmark = [pytest.mark.postgres, pytest.mark.e2e, pytest.mark.slow]

KINDS = ("partner_app", "hospital", "scanner", "ops")
# make fuzz: each kind against every operation, not only its own.
CROSS_KINDS = os.environ.get("ESSC_FUZZ_CROSS_KINDS") == "1"


def _admits(kind: str) -> set[tuple[str, str]]:
    return {(r.method, r.template) for r in ROUTES if any(k.value == kind for k in r.kinds)}


def test_merged_document_is_the_inventory(seeded: Seeded) -> None:
    doc = httpx.get(seeded.url + "/openapi.json", timeout=10).json()
    documented = {
        (m.upper(), p) for p, item in doc["paths"].items() for m in item if m != "parameters"
    }
    assert documented == {(r.method, r.template) for r in ROUTES}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method == "parameters" or op.get("x-essc-own-errors"):
                continue  # the OAuth token endpoint answers RFC 6749 errors
            statuses = set(op["responses"])
            assert {"404", "422", "429"} <= statuses, (method, path, statuses)
            if op["security"]:
                assert {"401", "403"} <= statuses, (method, path, statuses)


@pytest.mark.parametrize("caller", [*KINDS, fuzz.PUBLIC])
def test_gateway(seeded: Seeded, caller: str, output_dir: Path) -> None:
    callers = fuzz.callers_from_routes()
    if caller == fuzz.PUBLIC:
        wanted = {op for op, c in callers.items() if c == fuzz.PUBLIC}
    elif CROSS_KINDS:
        wanted = {op for op, c in callers.items() if c != fuzz.PUBLIC}
    else:
        wanted = _admits(caller)

    skip = [op for op in callers if op not in wanted]
    schema = schemathesis.openapi.from_url(
        seeded.url + "/openapi.json", config=fuzz.config(base_url=seeded.url, skip=skip)
    )
    override = None if caller == fuzz.PUBLIC else caller
    fuzz.KindAuth(callers, seeded.token, override=override).install(schema)
    fuzz.real_ids(schema, seeded.ids)
    outcome = fuzz.run(schema, f"gateway-{caller}", output_dir)
    print(outcome.summary())
    assert len(outcome.operations) == len(wanted), outcome.summary()
    assert outcome.cases["examples"] + outcome.cases["coverage"] > 0, outcome.summary()
    assert not outcome.failures, outcome.summary()
    assert not outcome.errors, outcome.summary()
