"""The stored leaderboard statistics start each equity curve at the agent's starting capital
(docs/rules.md): engine → agent_stats → standings, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import math
from datetime import UTC, datetime
from decimal import Decimal as D

import pytest
from sqlalchemy import delete, select

from race.bootstrap import App
from race.domain.metrics import equity_stats
from race.leaderboard import standings
from race.store.repository import recompute_equity_stats
from race.store.tables import AgentStatsRow, DecisionRow, EquitySnapshotRow
from tests.factories import (
    HOUR,
    insert_candles,
    live_key,
    make_candles,
    seed_assets,
    seed_baselines,
    wave_prices,
)

START = datetime(2024, 1, 1, tzinfo=UTC)
T = START + 100 * HOUR
PERIODS = 365 * 24  # hourly snapshots


def seed_market(app: App) -> None:
    seed_assets(app)
    insert_candles(app, make_candles("BTC", START, wave_prices(200, base=40000.0)))
    insert_candles(app, make_candles("ETH", START, wave_prices(200, base=2000.0, period=25)))


def values_after(app: App, agent_id: int) -> list[D]:
    with app.db.read() as session:
        return list(
            session.scalars(
                select(DecisionRow.value_after)
                .where(DecisionRow.agent_id == agent_id)
                .order_by(DecisionRow.cycle_time)
            )
        )


def standing(app: App, agent_id: int):
    with app.db.read() as session:
        return next(s for s in standings(session) if s.agent_id == agent_id)


def hand_sharpe(capital: D, values: list[D]) -> float:
    curve = [float(capital), *map(float, values)]
    returns = [b / a - 1 for a, b in itertools.pairwise(curve)]
    mean = sum(returns) / len(returns)
    std = math.sqrt(sum((r - mean) ** 2 for r in returns) / (len(returns) - 1))
    return mean / std * math.sqrt(PERIODS)


def test_the_first_trades_fee_is_in_the_max_drawdown(app):
    seed_market(app)
    agent = seed_baselines(app, ["buy_and_hold"])["buy_and_hold"]
    capital = app.settings.starting_capital
    asyncio.run(app.engine.run_cycle(T))
    (first,) = values_after(app, agent)
    assert first < capital  # bought at once: fees and slippage
    one = standing(app, agent)
    assert one.max_drawdown_pct == pytest.approx(float((capital - first) / capital * 100))
    assert one.max_drawdown_pct > 0
    assert one.sharpe is None and one.sortino is None  # one snapshot: no spacing yet

    asyncio.run(app.engine.run_cycle(T + HOUR))
    values = values_after(app, agent)
    assert len(values) == 2
    two = standing(app, agent)
    # Two returns (capital → first snapshot → second), annualised by the real hourly spacing.
    assert two.sharpe == pytest.approx(hand_sharpe(capital, values))
    assert two.max_drawdown_pct >= one.max_drawdown_pct
    with app.db.read() as session:
        row = session.get(AgentStatsRow, live_key(session, agent))
        assert row.equity_state["origin"] == float(capital)
        assert row.snapshot_count == 2


def test_a_state_stored_before_the_origin_existed_is_rebuilt(app):
    seed_market(app)
    agent = seed_baselines(app, ["buy_and_hold"])["buy_and_hold"]
    capital = app.settings.starting_capital
    asyncio.run(app.engine.run_cycle(T))
    # What the previous version stored: no "origin", the curve starting at its first snapshot.
    with app.db.write() as session:
        points = list(
            session.execute(
                select(EquitySnapshotRow.captured_at, EquitySnapshotRow.total_value).where(
                    EquitySnapshotRow.agent_id == agent
                )
            )
        )
        old = equity_stats([(t, v) for t, v in points])
        state = old.to_state()
        del state["origin"]
        row = session.get(AgentStatsRow, live_key(session, agent))
        row.equity_state = state
        row.max_drawdown_pct = old.max_drawdown_pct
    assert standing(app, agent).max_drawdown_pct == 0.0  # the old figure, fee ignored

    asyncio.run(app.engine.run_cycle(T + HOUR))
    values = values_after(app, agent)
    now = standing(app, agent)
    assert now.sharpe == pytest.approx(hand_sharpe(capital, values))
    assert now.max_drawdown_pct >= float((capital - values[0]) / capital * 100) > 0
    with app.db.read() as session:
        row = session.get(AgentStatsRow, live_key(session, agent))
        assert row.equity_state["origin"] == float(capital)
        assert row.snapshot_count == 2
        assert row.current_value == values[-1]
        rebuilt = recompute_equity_stats(session, agent)
    assert rebuilt.origin == float(capital)
    assert rebuilt.max_drawdown_pct == pytest.approx(now.max_drawdown_pct)


def test_a_missing_stats_row_is_recreated_from_the_starting_capital(app):
    seed_market(app)
    agent = seed_baselines(app, ["buy_and_hold"])["buy_and_hold"]
    capital = app.settings.starting_capital
    with app.db.write() as session:
        session.execute(delete(AgentStatsRow).where(AgentStatsRow.agent_id == agent))
    asyncio.run(app.engine.run_cycle(T))
    (first,) = values_after(app, agent)
    with app.db.read() as session:
        row = session.get(AgentStatsRow, live_key(session, agent))
        assert row.equity_state["origin"] == float(capital)
        assert row.max_drawdown_pct == pytest.approx(float((capital - first) / capital * 100))
        assert row.current_value == first


def test_a_mark_folds_into_the_curve_from_the_origin(app):
    seed_market(app)
    agent = seed_baselines(app, ["buy_and_hold"])["buy_and_hold"]
    capital = app.settings.starting_capital
    asyncio.run(app.engine.run_cycle(T))
    assert app.engine.snapshot(T + HOUR) == 1
    with app.db.read() as session:
        values = list(
            session.scalars(
                select(EquitySnapshotRow.total_value)
                .where(EquitySnapshotRow.agent_id == agent)
                .order_by(EquitySnapshotRow.captured_at)
            )
        )
    assert len(values) == 2
    assert standing(app, agent).sharpe == pytest.approx(hand_sharpe(capital, values))
