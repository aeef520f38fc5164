"""The API's answers built from repository records, without a database: the pure
builders of race.api.views and race.api.health, and the storage decoding of
race.store.reads.equity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from race.api import views
from race.api.health import health_reasons, healthy
from race.domain.metrics import YEAR, equity_stats
from race.leaderboard import ranked
from race.store.reads.agents import PortfolioRecord, PositionRecord
from race.store.reads.equity import EquityPoint, _sqlite_iso, _sqlite_money
from race.store.reads.health import HealthFacts
from race.store.reads.market import PriceFacts
from race.store.reads.standings import AgentRecord, StoredStats

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _stats(current: str, **overrides: object) -> StoredStats:
    fields: dict[str, object] = dict(
        snapshot_count=3,
        current_value=Decimal(current),
        max_drawdown_pct=5.0,
        sharpe=1.23456789,
        sortino=float("nan"),
        volatility_pct=None,
        total_trades=4,
        winning_trades=1,
        losing_trades=2,
        fees_paid=Decimal("1.5"),
        decisions=10,
        fallbacks=2,
        prompt_tokens=7,
        completion_tokens=8,
        cost_usd=Decimal("0.25"),
        last_captured_at=T0 + timedelta(hours=1),
        degraded=False,
    )
    fields.update(overrides)
    return StoredStats(**fields)  # type: ignore[arg-type]


def _agent(agent_id: int, stats: StoredStats | None) -> AgentRecord:
    return AgentRecord(
        agent_id=agent_id,
        name=f"a{agent_id}",
        provider="Mock",
        model=None,
        strategy="hold",
        is_active=True,
        created_at=T0,
        starting_capital=Decimal("1000"),
        stats=stats,
    )


def test_standings_rank_by_value_then_id_and_start_from_the_capital():
    standings = ranked(
        [
            _agent(3, _stats("900")),
            _agent(1, None),
            _agent(2, _stats("1100")),
            _agent(4, _stats("5000", snapshot_count=0)),  # no snapshot yet: its capital
        ]
    )
    assert [(s.agent_id, s.rank) for s in standings] == [(2, 1), (1, 2), (4, 3), (3, 4)]
    by_id = {s.agent_id: s for s in standings}
    assert by_id[4].current_value == Decimal("1000") and by_id[4].return_pct == 0.0
    assert by_id[3].return_pct == pytest.approx(-10.0)
    assert by_id[1].sharpe is None and by_id[1].fees_paid == Decimal("0")
    assert by_id[2].win_rate_pct == pytest.approx(100 / 3)


def test_a_leaderboard_entry_rounds_and_drops_non_finite_ratios():
    entry = views.leaderboard_entry(ranked([_agent(2, _stats("1100"))])[0])
    assert entry.agent.modelType == "Mock" and entry.agent.provider == "hold"
    assert entry.sharpeRatio == 1.234568
    assert entry.sortinoRatio is None  # NaN is no number
    assert entry.winRate == 33.3333
    assert entry.performancePercent == 10.0
    assert entry.lastUpdated == "2026-01-01T01:00:00+00:00"


def test_the_equity_curve_is_relative_to_its_first_point():
    points = [
        EquityPoint(1, 9, 2, "2026-01-01T00:00:00+00:00", 200.0, 50.0, 150.0, 0.0, "cycle"),
        EquityPoint(2, 9, 2, "2026-01-01T01:00:00+00:00", 230.0, 50.0, 180.0, 30.0, "mark"),
    ]
    curve = views.equity_curve(points)
    assert [p["percentChange"] for p in curve] == [0.0, 15.0]
    assert curve[1] == {
        "id": "2",
        "portfolioId": "9",
        "agentId": "2",
        "capturedAt": "2026-01-01T01:00:00+00:00",
        "totalValue": 230.0,
        "cashValue": 50.0,
        "positionsValue": 180.0,
        "unrealizedPnL": 30.0,
        "percentChange": 15.0,
        "source": "mark",
    }
    zero = views.equity_curve([points[0]._replace(total_value=0.0)])
    assert zero[0]["percentChange"] is None
    assert views.equity_curve([]) == []


def test_sqlite_storage_is_decoded_as_the_orm_would():
    assert _sqlite_money(123_456_789) == 1.23456789
    assert _sqlite_money(-(2**60)) == float(Decimal(-(2**60)).scaleb(-8))
    assert _sqlite_iso("2026-01-01 10:00:00.000000") == "2026-01-01T10:00:00+00:00"
    assert _sqlite_iso("2026-01-01 10:00:00.250000") == "2026-01-01T10:00:00.250000+00:00"
    assert _sqlite_iso("2026-01-01 10:00:00") == "2026-01-01T10:00:00+00:00"


def test_calmar_is_rounded_to_four_places_and_none_without_a_state():
    state = equity_stats([(T0, 100.0), (T0 + YEAR, 121.0)]).to_state()
    assert views.calmar(state, 7.0) == round(0.21 / 0.07, 4)
    assert views.calmar({}, 7.0) is None
    assert views.calmar(None, 7.0) is None


def test_a_portfolio_is_marked_at_the_latest_closes_or_its_cost():
    row = PortfolioRecord(
        id=5,
        agent_id=2,
        cash=Decimal("100"),
        as_of=None,
        created_at=T0,
        positions=[
            PositionRecord(1, "BTC", Decimal("2"), Decimal("10"), Decimal("20")),
            PositionRecord(2, "ETH", Decimal("3"), Decimal("4"), Decimal("12")),
        ],
    )
    answer = views.portfolio(row, {1: Decimal("15")})
    btc, eth = answer.positions
    assert (btc.currentPrice, btc.marketValue, btc.unrealizedPnL) == (15.0, 30.0, 10.0)
    assert (eth.currentPrice, eth.marketValue, eth.unrealizedPnL) == (None, 12.0, 0.0)
    assert answer.totalValue == 142.0 and answer.asOf == "2026-01-01T00:00:00+00:00"


def test_a_price_without_a_reference_has_no_percent_change():
    facts = PriceFacts(
        symbol="BTC",
        name="Bitcoin",
        close=Decimal("110"),
        close_time=T0,
        reference=Decimal("100"),
        high=Decimal("120"),
        low=Decimal("90"),
    )
    price = views.market_price(facts)
    assert (price.change24h, price.changePercent24h) == (10.0, 10.0)
    flat = views.market_price(PriceFacts(**{**facts.__dict__, "reference": Decimal("0")}))
    assert flat.changePercent24h == 0.0


class _Settings:
    health_max_candle_age = timedelta(hours=2)
    health_max_cycle_age = timedelta(hours=3)


def test_health_is_degraded_only_past_the_limits():
    now = T0 + timedelta(days=1)
    assert health_reasons(_Settings(), now, None, None) == []
    assert health_reasons(_Settings(), now, now - timedelta(hours=2), now) == []
    reasons = health_reasons(
        _Settings(), now, now - timedelta(hours=2, minutes=1), now - timedelta(days=1, hours=2)
    )
    assert len(reasons) == 2
    assert "2 h 1 min ago" in reasons[0] and "ingestion is behind" in reasons[0]
    assert "1 d 2 h ago" in reasons[1] and "cycles are not completing" in reasons[1]
    facts = HealthFacts(3, now, now, "completed", now)
    body = healthy(now, facts, reasons)
    assert body["status"] == "Degraded" and body["activeAgentCount"] == 3
    assert body["lastCycle"] == {"time": "2026-01-02T00:00:00+00:00", "status": "completed"}
    assert healthy(now, facts, [])["status"] == "Healthy"
