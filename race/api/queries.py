"""The API's reads over one session: each asks the read repositories
(:mod:`race.store.reads`) and shapes their records with the pure builders of
:mod:`race.api.views` and :mod:`race.api.activity`. They never write; leaderboard figures
come from the per-agent stats kept up to date by the engine, not from the whole equity
curve. Shared by the routers and the CLI (``agents show``, ``leaderboard --json``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from race.analysis import ranked_records
from race.analysis_cache import Analyser
from race.api import activity, analysis_views, views
from race.api import models as m
from race.api.activity import validation_fields
from race.leaderboard import Standing, ranked, standings
from race.store.reads import agents as agent_reads
from race.store.reads import equity as equity_reads
from race.store.reads import health as health_reads
from race.store.reads import market as market_reads
from race.store.reads import standings as standing_reads
from race.store.reads.equity import curve_version, even_times
from race.store.reads.health import HealthFacts

__all__ = [
    "agent_detail",
    "agent_exists",
    "agent_summaries",
    "asset_by_symbol",
    "curve_version",
    "decisions",
    "equity",
    "even_times",
    "health_facts",
    "job",
    "leaderboard",
    "market_price",
    "market_prices",
    "portfolio",
    "trades",
    "validation_fields",
]

agent_exists = agent_reads.agent_exists
asset_by_symbol = market_reads.asset_by_symbol


def agent_summaries(session: Session, race_id: int | None = None) -> list[m.AgentSummary]:
    return [views.agent_summary(s) for s in standings(session, race_id=race_id)]


def _standing(session: Session, agent_id: int, race_id: int | None) -> Standing | None:
    return next((s for s in standings(session, race_id=race_id) if s.agent_id == agent_id), None)


def agent_detail(
    session: Session, agent_id: int, now: datetime, race_id: int | None = None
) -> m.AgentDetail | None:
    standing = _standing(session, agent_id, race_id)
    if standing is None:
        return None
    latest = agent_reads.latest_snapshot(session, agent_id, race_id)
    state = standing_reads.equity_state(session, agent_id, race_id)
    return views.agent_detail(standing, latest, state, now)


def equity(
    session: Session,
    agent_id: int,
    start: datetime | None,
    end: datetime | None,
    max_points: int | None,
    race_id: int | None = None,
) -> list[dict[str, Any]]:
    """The equity curve of ``[start, end]``, ascending, downsampled to ``max_points``:
    plain dicts of the :class:`~race.api.models.EquitySnapshot` shape."""
    points = equity_reads.equity_points(session, agent_id, start, end, max_points, race_id)
    return views.equity_curve(points)


def leaderboard(
    session: Session, analyser: Analyser, db: Any = None, race_id: int | None = None
) -> list[m.LeaderboardEntry]:
    """The standings, each with its analytics as extra keys (``GET /api/leaderboard``).

    With ``db`` (the API), small stale work is done now and more is refreshed in the
    background while the cached figures are served (:meth:`Analyser.for_leaderboard`): the
    request never waits for it. Without (the CLI), every figure is computed first."""
    records = standing_reads.agent_records(session, race_id=race_id)
    order = ranked_records(records)
    if db is None:
        analyser.agents(session, order)
        analyser.rank_steps(order)
        analyses, steps = analyser.latest(order)
    else:
        analyses, steps = analyser.for_leaderboard(session, db, order)
    return [
        views.leaderboard_entry(s).model_copy(
            update=analysis_views.leaderboard_extras(
                analyses.get(s.agent_id), steps.get(s.agent_id)
            )
        )
        for s in ranked(records)
    ]


def trades(
    session: Session, agent_id: int, limit: int, offset: int, race_id: int | None = None
) -> m.TradePage:
    total = agent_reads.trade_count(session, agent_id, race_id)
    rows = agent_reads.trades(session, agent_id, limit, offset, race_id)
    return activity.trade_page(rows, total, limit, offset)


def decisions(
    session: Session, agent_id: int, limit: int, race_id: int | None = None
) -> list[m.DecisionLog]:
    rows = agent_reads.decisions(session, agent_id, limit, race_id)
    orders = agent_reads.executed_orders(session, [d.id for d in rows])
    return activity.decision_logs(rows, orders)


def portfolio(session: Session, agent_id: int, race_id: int | None = None) -> m.Portfolio | None:
    row = agent_reads.portfolio(session, agent_id, race_id)
    if row is None:
        return None
    return views.portfolio(row, market_reads.latest_closes(session))


def market_price(session: Session, asset: market_reads.AssetRecord) -> m.MarketPrice | None:
    facts = market_reads.price_facts(session, asset)
    return None if facts is None else views.market_price(facts)


def market_prices(session: Session) -> list[m.MarketPrice]:
    prices = []
    for asset in market_reads.assets(session):
        price = market_price(session, asset)
        if price is not None:
            prices.append(price)
    return prices


def health_facts(session: Session) -> HealthFacts:
    return health_reads.health_facts(session)


def job(session: Session, job_id: int) -> m.Job | None:
    row = health_reads.job(session, job_id)
    return None if row is None else views.job(row)
