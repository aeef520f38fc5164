"""Queries and writes of the race, on a SQLAlchemy session. No business rules here: the
rows written are those the pure core computed (:mod:`race.domain`).

The statements live in small modules; this one keeps their names importable as
``race.store.repository.X`` (``repo.X`` in the engine):

- :mod:`race.store.portfolios` — assets, agents, portfolio states, spend and decided agents;
- :mod:`race.store.views` — market views, their pins and a replay's candle tape;
- :mod:`race.store.steps` — writing a batch of steps (and mark-to-market snapshots);
- :mod:`race.store.bulk` — ``executemany`` inserts and id allocation;
- :mod:`race.store.agent_stats` — the leaderboard row of each agent.
"""

from __future__ import annotations

from race.domain.health import FALLBACK_HISTORY, HealthPolicy
from race.store.agent_stats import latest_snapshot_times, recompute_equity_stats, update_stats
from race.store.bulk import bulk_insert
from race.store.portfolios import (
    ConcurrentUpdate,
    PortfolioState,
    active_agents,
    asset_ids,
    decided_agents,
    enabled_assets,
    portfolio_states,
    spent_today,
    to_spec,
)
from race.store.steps import AgentBatch, write_batches, write_marks
from race.store.views import (
    CandleTape,
    PinnedViewLost,
    ViewPin,
    market_view,
    pinned_market_view,
    read_market_view,
)

__all__ = [
    "FALLBACK_HISTORY",
    "AgentBatch",
    "CandleTape",
    "ConcurrentUpdate",
    "HealthPolicy",
    "PinnedViewLost",
    "PortfolioState",
    "ViewPin",
    "active_agents",
    "asset_ids",
    "bulk_insert",
    "decided_agents",
    "enabled_assets",
    "latest_snapshot_times",
    "market_view",
    "pinned_market_view",
    "portfolio_states",
    "read_market_view",
    "recompute_equity_stats",
    "spent_today",
    "to_spec",
    "update_stats",
    "write_batches",
    "write_marks",
]
