"""The recorded answers of an agent's decisions, for a what-if replay
(:mod:`race.domain.recorded`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from race.domain.recorded import RecordedAnswer
from race.store import races
from race.store.tables import DecisionRow


def recorded_answers(
    session: Session,
    race_id: int | None,
    agent_id: int,
    first: datetime | None = None,
    last: datetime | None = None,
) -> dict[datetime, RecordedAnswer]:
    """The agent's decisions in the race (None: the live race), from ``first`` to ``last``
    inclusive when given, by cycle."""
    query = select(DecisionRow).where(
        DecisionRow.race_id == races.resolve(session, race_id), DecisionRow.agent_id == agent_id
    )
    if first is not None:
        query = query.where(DecisionRow.cycle_time >= first)
    if last is not None:
        query = query.where(DecisionRow.cycle_time <= last)
    answers: dict[datetime, RecordedAnswer] = {}
    for row in session.scalars(query.order_by(DecisionRow.cycle_time)):
        conditions = row.market_conditions if isinstance(row.market_conditions, dict) else {}
        market_regime = conditions.get("regime")
        answers[row.cycle_time] = RecordedAnswer(
            cycle_time=row.cycle_time,
            rationale=row.rationale,
            cited_rules=list(row.cited_rules or []),
            regime=row.regime,
            market_regime=market_regime if isinstance(market_regime, str) else None,
            proposed_orders=list(row.proposed_orders or []),
            fallback=row.fallback,
            fallback_reason=row.fallback_reason,
            raw_output=row.raw_output,
            prompt=row.prompt,
            model=row.model,
            latency_ms=row.latency_ms,
            prompt_tokens=row.prompt_tokens,
            completion_tokens=row.completion_tokens,
            cost_usd=row.cost_usd,
            confidence=row.confidence,
            details=dict(row.details or {}),
            model_version=row.model_version,
            validation_errors=list(row.validation_errors or []),
        )
    return answers
