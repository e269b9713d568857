"""Calls to issuance: settlement tokens (resolve, redeem) and e-card ownership.

Issuance's 4xx answers become this service's problems: an unknown, expired or foreign
token is 422 ``settlement-token-invalid`` naming the field, a token redeemed for another
quote is 409 ``settlement-token-used``, someone else's e-card is 404. Anything else issuance
answers with 4xx is our fault or theirs, never the caller's: 502.
"""

from __future__ import annotations

from settlement.errors import (
    EcardNotActiveError,
    EcardNotFoundError,
    SettlementTokenInvalidError,
    SettlementTokenUsedError,
)
from shared.app import Runtime
from shared.http import UpstreamProblemError
from shared.problems import BadGatewayError
from shared.wire import EcardRef, SettlementTokenInfo

_TOKEN_FIELD = [{"field": "settlement_token", "message": "unknown, expired or not yours"}]


def _token_problem(exc: UpstreamProblemError) -> Exception:
    if exc.status == 404:
        return SettlementTokenInvalidError(
            "The settlement token is unknown, expired or was issued to another hospital.",
            errors=_TOKEN_FIELD,
        )
    if exc.status == 409:
        return SettlementTokenUsedError("The settlement token was already used for another bill.")
    if exc.status == 403:
        return EcardNotActiveError("The e-card was suspended or revoked; nothing was charged.")
    return BadGatewayError(f"The issuance service refused the call ({exc.status}).")


async def resolve_token(
    runtime: Runtime, token: str, hospital_client_id: str
) -> SettlementTokenInfo:
    """Who the token is for, without consuming it."""
    try:
        return await runtime.client("issuance").call(
            "POST",
            "/internal/v1/settlement-tokens/resolve",
            SettlementTokenInfo,
            json={"settlement_token": token, "hospital_client_id": hospital_client_id},
        )
    except UpstreamProblemError as exc:
        raise _token_problem(exc) from None


async def redeem_token(
    runtime: Runtime, token: str, hospital_client_id: str, redemption_ref: str
) -> SettlementTokenInfo:
    """Consume the token for ``redemption_ref`` (idempotent for the same ref)."""
    try:
        return await runtime.client("issuance").call(
            "POST",
            "/internal/v1/settlement-tokens/redeem",
            SettlementTokenInfo,
            json={
                "settlement_token": token,
                "hospital_client_id": hospital_client_id,
                "redemption_ref": redemption_ref,
            },
        )
    except UpstreamProblemError as exc:
        raise _token_problem(exc) from None


async def ecard_ref(runtime: Runtime, ecard_id: str, partner_client_id: str) -> EcardRef:
    """The e-card if it belongs to ``partner_client_id`` (404 otherwise)."""
    try:
        return await runtime.client("issuance").call(
            "GET",
            f"/internal/v1/ecards/{ecard_id}",
            EcardRef,
            params={"client_id": partner_client_id},
        )
    except UpstreamProblemError as exc:
        if exc.status == 404:
            raise EcardNotFoundError("No such e-card for this app.") from None
        raise BadGatewayError(f"The issuance service refused the call ({exc.status}).") from None
