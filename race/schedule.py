"""NCRONTAB schedules (six fields, seconds first, UTC) as used by the Functions timers and
by ``python -m race serve``. The strings live in settings; this turns them into times."""

from __future__ import annotations

from datetime import datetime, timedelta

from croniter import CroniterBadDateError, croniter

from race.domain.timeutil import ensure_utc

_TOLERANCE = timedelta(seconds=1)


def validate(expression: str) -> str:
    """The expression, or ``ValueError`` naming it."""
    try:
        croniter(expression, datetime(2024, 1, 1), second_at_beginning=True)  # noqa: DTZ001
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"schedule {expression!r} is not a valid NCRONTAB expression: {exc}"
        ) from None
    if len(expression.split()) != 6:
        raise ValueError(
            f"schedule {expression!r} must have six fields (second minute hour day month "
            "weekday), e.g. '0 */15 * * * *'"
        )
    return expression


def scheduled_time(expression: str, now: datetime) -> datetime:
    """The schedule slot an invocation at ``now`` belongs to: the latest slot at or before
    ``now`` (a second of early firing tolerated). A late or repeated invocation maps to the
    same slot, so it can never start a second cycle. ``ValueError`` (never an
    ``OverflowError``) at the ends of ``datetime``'s range."""
    now = ensure_utc(now)
    if now > datetime.max.replace(tzinfo=now.tzinfo) - _TOLERANCE:  # no room for tolerance
        base = now.replace(tzinfo=None, microsecond=0)
    else:
        base = (now + _TOLERANCE).replace(tzinfo=None)
    expression = validate(expression)
    try:
        previous = croniter(expression, base, second_at_beginning=True).get_prev(datetime)
    except (OverflowError, ValueError, CroniterBadDateError):
        raise ValueError(f"time {now.isoformat()} has no slot of schedule {expression!r}") from None
    return previous.replace(tzinfo=now.tzinfo)


def next_time(expression: str, after: datetime) -> datetime:
    """The first slot strictly after ``after``."""
    after = ensure_utc(after)
    expression = validate(expression)
    try:
        following = croniter(
            expression, after.replace(tzinfo=None), second_at_beginning=True
        ).get_next(datetime)
    except (OverflowError, ValueError, CroniterBadDateError):
        raise ValueError(
            f"time {after.isoformat()} has no next slot of schedule {expression!r}"
        ) from None
    return following.replace(tzinfo=after.tzinfo)
