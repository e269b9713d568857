"""All SQL of the risk rules: the context in one round trip, profiles, failures, alerts.

The context is read by the quote's and the settlement's own first statement
(:func:`context_columns`); the profile update runs on every settlement (raw statements, see
:mod:`settlement.rawsql`); alerts and failures are rare and use SQLAlchemy Core.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from settlement import rawsql
from settlement.models import RiskAlert, RiskFailure
from settlement.rawsql import Statement
from settlement.risk.rules import Stats
from settlement.sql import AnyRow, table

ALERT = table(RiskAlert)
FAILURE = table(RiskFailure)


def context_columns(*, holder: str, hospital: str, day_start: str, since: str) -> str:
    """The risk context as select-list columns, for the hot reads to fetch in their own
    round trip. Arguments are SQL expressions (placeholders or columns) for the holder's ref,
    the hospital's client id, the start of the business day and the failures window."""
    hs, ps = f"('h:' || {holder})", f"('p:' || {hospital})"
    return (
        f"(SELECT n FROM risk_profile WHERE subject = {hs}) AS h_n, "  # noqa: S608 (constants)
        f"(SELECT mean FROM risk_profile WHERE subject = {hs}) AS h_mean, "
        f"(SELECT m2 FROM risk_profile WHERE subject = {hs}) AS h_m2, "
        f"(SELECT n FROM risk_profile WHERE subject = {ps}) AS p_n, "
        f"(SELECT mean FROM risk_profile WHERE subject = {ps}) AS p_mean, "
        f"(SELECT m2 FROM risk_profile WHERE subject = {ps}) AS p_m2, "
        f"(SELECT count(*) FROM settlement WHERE holder_ref = {holder} "
        f"AND settled_at >= {day_start}) AS risk_today, "
        f"(SELECT count(*) FROM risk_failure WHERE holder_ref = {holder} AND at >= {since}) "
        "AS risk_failures, "
        f"(SELECT treatment_region FROM settlement WHERE holder_ref = {holder} "
        "ORDER BY settled_at DESC LIMIT 1) AS last_region, "
        f"(SELECT max(settled_at) FROM settlement WHERE holder_ref = {holder}) AS last_at"
    )


def holder_subject(holder_ref: str) -> str:
    return "h:" + holder_ref


def hospital_subject(client_id: str) -> str:
    return "p:" + client_id


def context_from(
    row: Mapping[str, Any],
) -> tuple[Stats, Stats, int, int, tuple[str, datetime] | None]:
    """(holder stats, hospital stats, settled today, recent failures, last settlement)."""
    holder = Stats(int(row["h_n"] or 0), float(row["h_mean"] or 0.0), float(row["h_m2"] or 0.0))
    hospital = Stats(int(row["p_n"] or 0), float(row["p_mean"] or 0.0), float(row["p_m2"] or 0.0))
    last = None
    if row["last_at"] is not None:
        last = (str(row["last_region"]), rawsql.utc(row["last_at"]))
    return holder, hospital, int(row["risk_today"]), int(row["risk_failures"]), last


_WELFORD = Statement(
    """
    INSERT INTO risk_profile (subject, n, mean, m2) VALUES ($1, 1, $3, 0), ($2, 1, $3, 0)
    ON CONFLICT (subject) DO UPDATE SET
      n = risk_profile.n + 1,
      mean = risk_profile.mean + (excluded.mean - risk_profile.mean) / (risk_profile.n + 1),
      m2 = risk_profile.m2 + (excluded.mean - risk_profile.mean) * (excluded.mean -
           (risk_profile.mean + (excluded.mean - risk_profile.mean) / (risk_profile.n + 1)))
    """
)


def welford_pg(first: int) -> str:
    """:data:`_WELFORD` for PostgreSQL with its three parameters numbered from ``first``
    (to be sent in one statement with others)."""
    return re.sub(r"\$(\d+)", lambda m: f"${int(m.group(1)) + first - 1}", _WELFORD.pg)


def welford_args(holder_ref: str, hospital_client_id: str, amount_fen: int) -> tuple[Any, ...]:
    """The arguments of :data:`_WELFORD` (and of :func:`welford_pg`)."""
    return holder_subject(holder_ref), hospital_subject(hospital_client_id), float(amount_fen)


async def observe_amount(
    session: AsyncSession, holder_ref: str, hospital_client_id: str, amount_fen: int
) -> None:
    """Welford's update of both profiles in one statement (holder row first: a fixed order)."""
    await rawsql.execute(
        session, _WELFORD, *welford_args(holder_ref, hospital_client_id, amount_fen)
    )


async def add_failure(
    session: AsyncSession, holder_ref: str, hospital_client_id: str, kind: str, at: datetime
) -> None:
    await session.execute(
        FAILURE.insert().values(
            holder_ref=holder_ref, hospital_client_id=hospital_client_id, kind=kind, at=at
        )
    )


async def add_alert(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(ALERT.insert().values(**values))


async def list_alerts(
    session: AsyncSession, *, status: str | None, after: tuple[datetime, str] | None, limit: int
) -> list[AnyRow]:
    """Alerts newest first, keyset-paginated on (created_at, id)."""
    stmt = select(ALERT).order_by(ALERT.c.created_at.desc(), ALERT.c.id.desc()).limit(limit)
    if status is not None:
        stmt = stmt.where(ALERT.c.status == status)
    if after is not None:
        at, alert_id = after
        stmt = stmt.where(
            (ALERT.c.created_at < at) | ((ALERT.c.created_at == at) & (ALERT.c.id < alert_id))
        )
    return list((await session.execute(stmt)).all())


async def resolve_alert(
    session: AsyncSession, alert_id: str, *, by: str, resolution: str, at: datetime
) -> AnyRow | None:
    """Mark an open alert resolved; None if it is not open (or does not exist)."""
    stmt = (
        update(ALERT)
        .where(ALERT.c.id == alert_id, ALERT.c.status == "open")
        .values(status="resolved", resolved_at=at, resolved_by=by, resolution=resolution)
        .returning(*ALERT.c)
    )
    return (await session.execute(stmt)).first()


async def get_alert(session: AsyncSession, alert_id: str) -> AnyRow | None:
    return (await session.execute(select(ALERT).where(ALERT.c.id == alert_id))).first()
