"""Risk control on quotes and settlements: assess, hold or flag, record, list and resolve.

A held attempt is refused with 422 ``risk-review``; its alert and the failed attempt are
written after the request's rollback (:func:`settlement.db.record_after_rollback`), so the
refusal moves no money and still leaves its trace. A flagged settlement goes through and its
alert commits with it.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from settlement.businessday import business_date, day_bounds
from settlement.config import SettlementSettings
from settlement.db import record_after_rollback
from settlement.errors import (
    AlertAlreadyResolvedError,
    AlertNotFoundError,
    InvalidCursorError,
    RiskReviewError,
)
from settlement.risk import repository
from settlement.risk.rules import Context, Hit, Thresholds, evaluate
from settlement.risk.schemas import AlertPage, AlertRead, AlertResolve, RiskRead, RuleHitRead
from settlement.telemetry import SettlementMetrics
from shared.db import after_commit


def thresholds(s: SettlementSettings) -> Thresholds:
    return Thresholds(
        hold_score=s.risk_hold_score,
        travel_max_kmh=s.risk_travel_max_kmh,
        travel_min_km=s.risk_travel_min_km,
        travel_score=s.risk_travel_score,
        daily_max=s.risk_daily_max_settlements,
        daily_score=s.risk_daily_score,
        holder_z=s.risk_holder_z,
        holder_min_samples=s.risk_holder_min_samples,
        holder_score=s.risk_holder_score,
        hospital_z=s.risk_hospital_z,
        hospital_min_samples=s.risk_hospital_min_samples,
        hospital_score=s.risk_hospital_score,
        outlier_min_fen=s.risk_outlier_min_fen,
        failures_max=s.risk_failures_max,
        failures_window_minutes=s.risk_failures_window_minutes,
        failures_score=s.risk_failures_score,
    )


@dataclass(frozen=True)
class Assessment:
    hits: list[Hit]
    score: int
    held: bool

    def read(self) -> RiskRead:
        return RiskRead(
            score=self.score,
            held=self.held,
            rules=[RuleHitRead(rule=h.rule, score=h.score, reason=h.reason) for h in self.hits],
        )


@dataclass(frozen=True)
class Attempt:
    """Who is attempting what, for the rules and the records."""

    stage: str
    holder_ref: str
    hospital_client_id: str
    treatment_region: str
    amount_fen: int
    quote_id: str | None = None


def context_window(settings: SettlementSettings, now: datetime) -> tuple[datetime, datetime]:
    """(start of the business day, start of the failures window): the context read's bounds."""
    day_start, _ = day_bounds(
        business_date(now, settings.business_utc_offset_hours), settings.business_utc_offset_hours
    )
    return day_start, now - timedelta(minutes=settings.risk_failures_window_minutes)


def assess(
    row: Mapping[str, Any], settings: SettlementSettings, attempt: Attempt, now: datetime
) -> Assessment:
    """Evaluate every rule for ``attempt`` from the context columns of ``row``."""
    th = thresholds(settings)
    holder, hospital, today, failures, last = repository.context_from(row)
    ctx = Context(
        amount_fen=attempt.amount_fen,
        now=now,
        treatment_region=attempt.treatment_region,
        last_region=last[0] if last else None,
        last_at=last[1] if last else None,
        settled_today=today,
        holder=holder,
        hospital=hospital,
        recent_failures=failures,
    )
    hits = evaluate(ctx, th)
    score = sum(h.score for h in hits)
    return Assessment(hits, score, score >= th.hold_score)


def _alert_values(
    attempt: Attempt, assessment: Assessment, action: str, now: datetime, settlement_id: str | None
) -> dict[str, Any]:
    return {
        "id": "al_" + secrets.token_urlsafe(12),
        "stage": attempt.stage,
        "action": action,
        "holder_ref": attempt.holder_ref,
        "hospital_client_id": attempt.hospital_client_id,
        "quote_id": attempt.quote_id,
        "settlement_id": settlement_id,
        "score": assessment.score,
        "rules": [{"rule": h.rule, "score": h.score, "reason": h.reason} for h in assessment.hits],
        "status": "open",
        "created_at": now,
    }


def held_error(
    attempt: Attempt, assessment: Assessment, metrics: SettlementMetrics, now: datetime
) -> BaseException:
    """The 422 ``risk-review`` problem; its alert and failed attempt commit after the rollback."""
    values = _alert_values(attempt, assessment, "held", now, None)
    for hit in assessment.hits:
        metrics.risk_alerts.labels(hit.rule).inc()
    exc = RiskReviewError(
        "The bill is held for review by the platform's risk rules; nothing was charged.",
        extra={"alert_id": values["id"], "risk": assessment.read().model_dump()},
    )

    async def write(session: AsyncSession) -> None:
        await repository.add_alert(session, values)
        await repository.add_failure(
            session, attempt.holder_ref, attempt.hospital_client_id, "risk-review", now
        )

    return record_after_rollback(exc, write)


def failure_recorder(
    attempt: Attempt, kind: str, now: datetime
) -> Callable[[AsyncSession], Awaitable[None]]:
    """A write counting a failed attempt (stale, expired) for the repeated-failures rule."""

    async def write(session: AsyncSession) -> None:
        await repository.add_failure(
            session, attempt.holder_ref, attempt.hospital_client_id, kind, now
        )

    return write


async def flag(
    session: AsyncSession,
    attempt: Attempt,
    assessment: Assessment,
    metrics: SettlementMetrics,
    now: datetime,
    settlement_id: str,
) -> None:
    """Record a below-threshold hit on a settlement that goes through (same transaction)."""
    await repository.add_alert(
        session, _alert_values(attempt, assessment, "flagged", now, settlement_id)
    )
    for hit in assessment.hits:  # the alert commits with the settlement: so does its count
        after_commit(session, metrics.risk_alerts.labels(hit.rule).inc)


async def observe(
    session: AsyncSession, holder_ref: str, hospital_client_id: str, amount_fen: int
) -> None:
    """Feed a settled amount into the holder's and the hospital's running statistics."""
    await repository.observe_amount(session, holder_ref, hospital_client_id, amount_fen)


def _alert_read(row: Any) -> AlertRead:
    return AlertRead(
        alert_id=row.id,
        stage=row.stage,
        action=row.action,
        status=row.status,
        holder_ref=row.holder_ref,
        hospital_client_id=row.hospital_client_id,
        quote_id=row.quote_id,
        settlement_id=row.settlement_id,
        score=row.score,
        rules=[RuleHitRead.model_validate(r) for r in row.rules],
        created_at=row.created_at,
        resolved_at=row.resolved_at,
        resolved_by=row.resolved_by,
        resolution=row.resolution,
    )


def encode_cursor(at: datetime, key: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([at.isoformat(), key])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """A cursor made by :func:`encode_cursor`; 422 naming ``cursor`` otherwise."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, key = orjson.loads(raw)
        parsed = datetime.fromisoformat(at)
        if parsed.tzinfo is None or not isinstance(key, str):
            raise ValueError
        return parsed, key
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise InvalidCursorError(
            "The cursor is not one this service issued.",
            errors=[{"field": "cursor", "message": "invalid cursor"}],
        ) from None


async def list_alerts(
    session: AsyncSession, *, status: str | None, cursor: str | None, limit: int
) -> AlertPage:
    after = decode_cursor(cursor) if cursor else None
    rows = await repository.list_alerts(session, status=status, after=after, limit=limit + 1)
    items = [_alert_read(r) for r in rows[:limit]]
    more = len(rows) > limit
    next_cursor = encode_cursor(items[-1].created_at, items[-1].alert_id) if more else None
    return AlertPage(items=items, next_cursor=next_cursor)


async def resolve(
    session: AsyncSession, alert_id: str, body: AlertResolve, *, by: str, now: datetime
) -> AlertRead:
    """Close an open alert; 404 if unknown, 409 if already resolved."""
    resolution = body.resolution + (f": {body.note}" if body.note else "")
    row = await repository.resolve_alert(session, alert_id, by=by, resolution=resolution, at=now)
    if row is None:
        if await repository.get_alert(session, alert_id) is None:
            raise AlertNotFoundError("No such alert.")
        raise AlertAlreadyResolvedError("The alert was already resolved.")
    return _alert_read(row)
