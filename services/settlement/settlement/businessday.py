"""The business calendar: days and years as hospitals and the insurance year count them.

China has one time zone and no daylight saving, so a fixed UTC offset (default +08:00) is
exact; reconciliation dates and annual totals use it, timestamps on the wire stay UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone


def business_tz(offset_hours: int) -> timezone:
    return timezone(timedelta(hours=offset_hours))


def business_date(now: datetime, offset_hours: int) -> date:
    """The business day that ``now`` (aware) falls on."""
    return now.astimezone(business_tz(offset_hours)).date()


def day_bounds(day: date, offset_hours: int) -> tuple[datetime, datetime]:
    """The UTC start (inclusive) and end (exclusive) of a business day."""
    start = datetime.combine(day, time(0), tzinfo=business_tz(offset_hours)).astimezone(UTC)
    return start, start + timedelta(days=1)
