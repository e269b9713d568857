"""POST /oauth/token: private_key_jwt and sandbox Basic, every refusal as invalid_client."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from shared.tokens.claims import ACCESS, INTERNAL, ClientKind
from shared.tokens.codec import InvalidTokenError, verify_token
from support.identity import ISSUER, ClientKey, Harness, basic, jwt_payload

pytestmark = pytest.mark.asyncio

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def _jwt_client(h: Harness, **extra: Any) -> tuple[str, ClientKey]:
    key = ClientKey.new()
    body = {"kind": "partner_app", "name": "Test app", "jwks": key.jwks, **extra}
    created = await h.register(**body)
    return created["client_id"], key


async def _token(
    h: Harness, data: dict[str, str], headers: dict[str, str] | None = None
) -> httpx.Response:
    return await h.http.post("/oauth/token", data=data, headers=headers or {})


def _assertion_form(assertion: str, **extra: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
        **extra,
    }


def _assert_invalid_client(resp: httpx.Response) -> None:
    assert resp.status_code == 401, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.json()["error"] == "invalid_client"
    assert "WWW-Authenticate" in resp.headers
    assert resp.headers["cache-control"] == "no-store"


async def test_private_key_jwt_issues_a_verifiable_access_token(harness: Harness) -> None:
    client_id, key = await _jwt_client(harness, scopes=["ecard:issue", "ecard:qr"])
    resp = await _token(harness, _assertion_form(key.assertion(client_id), scope="ecard:issue"))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "ecard:issue"
    assert 0 < body["expires_in"] <= 600
    assert resp.headers["cache-control"] == "no-store"
    jwks = (await harness.http.get("/.well-known/jwks.json")).json()
    from jwt import PyJWK

    keys = {k["kid"]: PyJWK(k).key for k in jwks["keys"]}
    claims = verify_token(
        body["access_token"], ACCESS, key_for_kid=keys.get, issuer=ISSUER, audience="urn:essc:api"
    )
    assert claims.client_id == client_id
    assert claims.sub == client_id
    assert claims.kind is ClientKind.PARTNER_APP
    assert claims.scope == "ecard:issue"
    assert claims.exp - claims.iat <= 600
    # A token for one audience is refused by another, and is no token of another kind.
    with pytest.raises(InvalidTokenError, match="wrong audience"):
        verify_token(
            body["access_token"],
            ACCESS,
            key_for_kid=keys.get,
            issuer=ISSUER,
            audience="urn:essc:issuance",
        )
    with pytest.raises(InvalidTokenError, match="wrong type"):
        verify_token(
            body["access_token"],
            INTERNAL,
            key_for_kid=keys.get,
            issuer=ISSUER,
            audience="urn:essc:api",
        )


async def test_default_scope_is_everything_registered_and_more_is_invalid_scope(
    harness: Harness,
) -> None:
    client_id, key = await _jwt_client(harness, scopes=["ecard:issue"])
    ok = await _token(harness, _assertion_form(key.assertion(client_id)))
    assert ok.json()["scope"] == "ecard:issue"
    bad = await _token(harness, _assertion_form(key.assertion(client_id), scope="ecard:issue ops"))
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid_scope"


async def test_hospital_token_carries_region_and_level(harness: Harness) -> None:
    created = await harness.register(
        kind="hospital", name="Qingdao No.1", region_code="370200", level=3, sandbox_secret=True
    )
    assert "webhook_secret" not in created
    resp = await _token(
        harness,
        {"grant_type": "client_credentials"},
        basic(created["client_id"], created["client_secret"]),
    )
    assert resp.status_code == 200, resp.text
    claims = jwt_payload(resp.json()["access_token"])
    assert claims["kind"] == "hospital"
    assert claims["region_code"] == "370200"
    assert claims["level"] == 3
    assert set(claims["scope"].split()) == {
        "scan",
        "settlement:write",
        "settlement:read",
        "reconciliation",
    }


async def test_replayed_assertion_is_invalid_client(harness: Harness) -> None:
    client_id, key = await _jwt_client(harness)
    assertion = key.assertion(client_id)
    assert (await _token(harness, _assertion_form(assertion))).status_code == 200
    _assert_invalid_client(await _token(harness, _assertion_form(assertion)))


@pytest.mark.parametrize(
    ("case", "kwargs"),
    [
        ("aud is the token URL", {"aud": ISSUER + "/oauth/token"}),
        ("aud is an array", {"aud": [ISSUER]}),
        ("expired", {"iat": int(time.time()) - 400, "lifetime": 300}),
        ("longer than five minutes", {"lifetime": 301}),
    ],
)
async def test_bad_assertions_are_invalid_client(
    harness: Harness, case: str, kwargs: dict[str, Any]
) -> None:
    client_id, key = await _jwt_client(harness)
    resp = await _token(harness, _assertion_form(key.assertion(client_id, **kwargs)))
    _assert_invalid_client(resp)


async def test_unknown_client_and_foreign_key_are_invalid_client(harness: Harness) -> None:
    stranger = ClientKey.new()
    _assert_invalid_client(await _token(harness, _assertion_form(stranger.assertion("app_nobody"))))
    client_id, _ = await _jwt_client(harness)
    _assert_invalid_client(await _token(harness, _assertion_form(stranger.assertion(client_id))))


async def test_disabled_client_gets_no_token_and_is_listed(harness: Harness) -> None:
    client_id, key = await _jwt_client(harness)
    resp = await harness.http.post(f"/v1/admin/clients/{client_id}/disable", headers=harness.ops())
    assert resp.status_code == 200
    assert resp.json()["status"] == "disabled"
    _assert_invalid_client(await _token(harness, _assertion_form(key.assertion(client_id))))
    listed = await harness.http.get(
        "/internal/v1/clients/disabled", headers=harness.service("gateway")
    )
    assert listed.status_code == 200
    assert client_id in listed.json()["client_ids"]
    refused = await harness.http.get("/internal/v1/clients/disabled", headers=harness.partner())
    assert refused.status_code == 403


async def test_basic_wrong_secret_unknown_client_and_non_sandbox(harness: Harness) -> None:
    created = await harness.register(kind="scanner", name="Hall scanner", sandbox_secret=True)
    ok = await _token(
        harness,
        {"grant_type": "client_credentials"},
        basic(created["client_id"], created["client_secret"]),
    )
    assert ok.status_code == 200
    wrong = await _token(
        harness, {"grant_type": "client_credentials"}, basic(created["client_id"], "nope")
    )
    _assert_invalid_client(wrong)
    assert wrong.headers["www-authenticate"].startswith("Basic")
    unknown = await _token(harness, {"grant_type": "client_credentials"}, basic("scn_unknown", "x"))
    _assert_invalid_client(unknown)
    client_id, _ = await _jwt_client(harness)  # registered with keys: no secret at all
    _assert_invalid_client(
        await _token(harness, {"grant_type": "client_credentials"}, basic(client_id, "guess"))
    )


async def test_basic_with_another_client_id_or_a_second_method_is_refused(
    harness: Harness,
) -> None:
    created = await harness.register(kind="scanner", name="Gate scanner", sandbox_secret=True)
    creds = basic(created["client_id"], created["client_secret"])
    form = {"grant_type": "client_credentials"}
    same = await _token(harness, {**form, "client_id": created["client_id"]}, creds)
    assert same.status_code == 200
    other = await _token(harness, {**form, "client_id": "scn_someone_else"}, creds)
    _assert_invalid_client(other)
    both = await _token(
        harness,
        {**form, "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
        creds,
    )
    assert both.status_code == 400
    assert both.json()["error"] == "invalid_request"


async def test_request_errors_use_the_oauth_format(harness: Harness) -> None:
    unsupported = await _token(harness, {"grant_type": "password"})
    assert unsupported.status_code == 400
    assert unsupported.json()["error"] == "unsupported_grant_type"
    missing = await _token(harness, {})
    assert missing.json()["error"] == "invalid_request"
    as_json = await harness.http.post("/oauth/token", json={"grant_type": "client_credentials"})
    assert as_json.status_code == 400
    assert as_json.json()["error"] == "invalid_request"
    anonymous = await _token(harness, {"grant_type": "client_credentials"})
    _assert_invalid_client(anonymous)


async def test_metadata_names_the_issuer_and_endpoints(harness: Harness) -> None:
    meta = (await harness.http.get("/.well-known/oauth-authorization-server")).json()
    assert meta["issuer"] == ISSUER
    assert meta["token_endpoint"] == ISSUER + "/oauth/token"
    assert "private_key_jwt" in meta["token_endpoint_auth_methods_supported"]
    assert "ops" in meta["scopes_supported"]
