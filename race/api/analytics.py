"""Why an agent won, and whether it was luck: the model chat
(``/api/agents/{id}/decisions/{decisionId}``), decision analytics, the trade summary, equity
performance with significance, and the market regime (``docs/api.md``). Figures come from
:mod:`race.analysis`, cached per agent by its stored stats (see there)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from race.analysis import AgentAnalysis
from race.api import analysis_models as a
from race.api import analysis_views as v
from race.api._requests import ApiError
from race.api.context import (
    ID_PATTERN,
    AgentId,
    ApiContext,
    Context,
    RaceParam,
    agent_key,
    race_key,
)
from race.api.errors import ERRORS
from race.api.routing import AreaRouter
from race.store import races
from race.store.reads import agents as agent_reads
from race.store.reads import analysis as reads
from race.store.reads import market as market_reads
from race.store.reads.standings import agent_records

router = AreaRouter(tags=["analytics"])

REGIME_CLOSES = 50
"""Closes per asset the current regime is detected over (the slow mean's window)."""

DecisionId = Annotated[
    str,
    Path(
        alias="decisionId",
        description="decision id (a positive integer)",
        max_length=40,
        pattern=ID_PATTERN,
    ),
]


def _analysis(context: ApiContext, key: int, race: str | None) -> AgentAnalysis:
    with context.reading() as session:
        race_id = race_key(session, race)
        records = agent_records(session, race_id=race_id)
        record = next((r for r in records if r.agent_id == key), None)
        if record is None:
            raise ApiError(404, f"no agent {key}")
        return context.analyser_for(race_id).agent(session, record)


@router.get(
    "/api/agents/{agent_id}/decisions/analytics",
    response_model=a.DecisionAnalytics,
    responses=ERRORS,
)
def get_decision_analytics(
    agent_id: AgentId, context: Context, race: RaceParam = None
) -> a.DecisionAnalytics:
    """Counts by action, cited rule, recorded regime and fallback reason, and calibration."""
    return v.decision_analytics(_analysis(context, agent_key(agent_id), race))


@router.get(
    "/api/agents/{agent_id}/decisions/{decisionId}",
    response_model=a.DecisionDetail,
    responses=ERRORS,
)
def get_decision(
    agent_id: AgentId, decision_id: DecisionId, context: Context, race: RaceParam = None
) -> a.DecisionDetail:
    """The model chat: one decision's whole record, secrets scrubbed (with ``race``: only a
    decision of that race; decision ids are unique across races)."""
    key = agent_key(agent_id)
    decision = agent_key(decision_id)
    with context.reading() as session:
        race_id = race_key(session, race)
        found = reads.decision_detail(session, decision)
        elsewhere = (
            race is not None
            and found is not None
            and found.race_id != races.resolve(session, race_id)
        )
        if found is None or found.agent_id != key or elsewhere:
            raise ApiError(404, f"no decision {decision} of agent {key}")
        orders = agent_reads.executed_orders(session, [decision])
    return v.decision_detail(found, orders, context.app.settings.secret_policy())


@router.get(
    "/api/agents/{agent_id}/trades/summary", response_model=a.TradeSummary, responses=ERRORS
)
def get_trade_summary(
    agent_id: AgentId, context: Context, race: RaceParam = None
) -> a.TradeSummary:
    """Per asset: trades, volume, fees, realised P&L, biggest win and loss."""
    return v.trade_summary(_analysis(context, agent_key(agent_id), race))


@router.get(
    "/api/agents/{agent_id}/equity/performance",
    response_model=a.EquityPerformance,
    responses=ERRORS,
)
def get_equity_performance(
    agent_id: AgentId, context: Context, race: RaceParam = None
) -> a.EquityPerformance:
    """Significance, behaviour, cost efficiency and contamination of the agent's curve."""
    return v.equity_performance(_analysis(context, agent_key(agent_id), race))


@router.get("/api/market/regime", response_model=a.MarketRegime, responses=ERRORS)
def get_regime(context: Context, race: RaceParam = None) -> a.MarketRegime:
    """Each asset's regime over its latest closes, and what the race's (default: the live
    race's) latest cycle recorded."""
    with context.reading() as session:
        race_id = race_key(session, race)
        assets = [
            v.asset_regime(asset.symbol, reads.recent_closes(session, asset.symbol, REGIME_CLOSES))
            for asset in market_reads.assets(session)
        ]
        latest = reads.regime_history(session, 1, race_id)
    return a.MarketRegime(
        assets=assets,
        latestCycle=v.regime_point(latest[0]).cycleTime if latest else None,
        recorded=latest[0].counts if latest else {},
    )


@router.get("/api/market/regime/history", response_model=list[a.RegimePoint], responses=ERRORS)
def get_regime_history(
    context: Context,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    race: RaceParam = None,
) -> list[a.RegimePoint]:
    """Per cycle of the race (default: live), newest first: the regime most decisions
    recorded, and the counts."""
    with context.reading() as session:
        race_id = race_key(session, race)
        return [v.regime_point(c) for c in reads.regime_history(session, limit, race_id)]
