"""race.domain.behaviour and race.domain.efficiency on a small fixture computed by hand.

The fixture, over four hours (T0 … T0+4h):

  snapshots  T0      total 1000, positions   0  (share 0,   holds 1 h)
             T0+1h   total 1000, positions 500  (share 0.5, holds 2 h)
             T0+3h   total 1100, positions 660  (share 0.6, holds 1 h)
             T0+4h   total 1000, positions   0  (last: holds 0)
  trades     T0+1h BUY  2 BTC, notional 500, fee 0.5
             T0+2h BUY  3 ETH, notional 150, fee 0.15        (still held, mark 60)
             T0+3h SELL 1 BTC, notional 300, fee 0.3,  realised 300 − 0.3 − 250.25 = 49.45
             T0+4h SELL 1 BTC, notional 320, fee 0.32, realised 320 − 0.32 − 250.25 = 69.43
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from race.domain.behaviour import (
    Decision,
    Trade,
    behaviour,
    calibration,
    exposure,
    holding_hours,
    mean_equity,
    next_move,
    pnl_by_asset,
)
from race.domain.efficiency import efficiency
from race.domain.model import Action, Side
from race.domain.step import EquityPoint

T0 = datetime(2024, 1, 1, tzinfo=UTC)
H = timedelta(hours=1)
D = Decimal


@dataclass(frozen=True)
class Snap:
    time: datetime
    total_value: Decimal
    positions_value: Decimal


SNAPSHOTS = [
    Snap(T0, D(1000), D(0)),
    Snap(T0 + H, D(1000), D(500)),
    Snap(T0 + 3 * H, D(1100), D(660)),
    Snap(T0 + 4 * H, D(1000), D(0)),
]
TRADES = [
    Trade(T0 + H, "BTC", Side.BUY, D(2), D(500), D("0.5")),
    Trade(T0 + 2 * H, "ETH", Side.BUY, D(3), D(150), D("0.15")),
    Trade(T0 + 3 * H, "BTC", Side.SELL, D(1), D(300), D("0.3"), D("49.45")),
    Trade(T0 + 4 * H, "BTC", Side.SELL, D(1), D(320), D("0.32"), D("69.43")),
]
PRICES = {
    "BTC": [
        (T0, D(250)),
        (T0 + H, D(250)),
        (T0 + 2 * H, D(280)),
        (T0 + 3 * H, D(300)),
        (T0 + 4 * H, D(320)),
        (T0 + 5 * H, D(310)),
    ],
    "ETH": [(T0 + 2 * H, D(50)), (T0 + 3 * H, D(50))],
}
DECISIONS = [
    Decision(T0, Action.HOLD),
    Decision(T0 + H, Action.BUY, "BTC", 0.9),  # 250 → 280: hit, bucket [0.8, 1]
    Decision(T0 + 2 * H, Action.BUY, "ETH", 0.95),  # 50 → 50: flat, not counted
    Decision(T0 + 2 * H, Action.HOLD, fallback=True),
    Decision(T0 + 3 * H, Action.SELL, "BTC", 0.3),  # 300 → 320: miss, bucket [0.2, 0.4)
    Decision(T0 + 4 * H, Action.SELL, "BTC", 1.0),  # 320 → 310: hit, bucket [0.8, 1]
    Decision(T0 + 4 * H, Action.SELL, "BTC", None),  # no confidence
    Decision(T0 + 5 * H, Action.BUY, "BTC", 0.5),  # no later price: not counted
    Decision(T0 + 5 * H, Action.BUY, "BTC", 1.5),  # confidence out of [0, 1]
    Decision(T0 + 5 * H, Action.HOLD, "BTC", 0.7),  # HOLD: no direction claimed
]


def test_exposure_is_time_weighted() -> None:
    # (0·1 + 0.5·2 + 0.6·1) / 4 = 0.4
    assert exposure(SNAPSHOTS) == pytest.approx(0.4)
    assert exposure(SNAPSHOTS[:1]) is None
    assert exposure([]) is None


def test_exposure_accepts_engine_equity_points() -> None:
    points = [
        EquityPoint(T0, D(100), D(100), D(0), D(0)),
        EquityPoint(T0 + H, D(100), D(25), D(75), D(0)),
        EquityPoint(T0 + 2 * H, D(100), D(100), D(0), D(0)),
    ]
    assert exposure(points) == pytest.approx(0.375)


def test_mean_equity_is_time_weighted() -> None:
    assert mean_equity(SNAPSHOTS) == D(1025)  # (1000·1 + 1000·2 + 1100·1) / 4


def test_holding_time_fifo() -> None:
    # Both BTC units bought at T0+1h, closed after 2 h and 3 h; ETH still held: 2.5 h.
    assert holding_hours(TRADES) == pytest.approx(2.5)
    assert holding_hours(TRADES[:2]) is None


def test_holding_time_fifo_across_lots() -> None:
    trades = [
        Trade(T0, "BTC", Side.BUY, D(1), D(100), D(0)),
        Trade(T0 + H, "BTC", Side.BUY, D(3), D(300), D(0)),
        Trade(T0 + 5 * H, "BTC", Side.SELL, D(2), D(200), D(0)),
    ]
    # 1 unit held 5 h (first lot), 1 unit held 4 h (second lot): (5 + 4) / 2
    assert holding_hours(trades) == pytest.approx(4.5)


def test_pnl_by_asset() -> None:
    pnl = pnl_by_asset(TRADES, {"ETH": D(60), "BTC": D(999)})
    btc, eth = pnl["BTC"], pnl["ETH"]
    assert (btc.trades, btc.volume, btc.fees, btc.held) == (3, D(1120), D("1.12"), D(0))
    assert btc.realized == D("118.88")
    assert btc.total == D("118.88")  # 299.7 + 319.68 − 500.5
    assert btc.unrealized == D(0)
    assert (eth.trades, eth.volume, eth.fees, eth.held) == (1, D(150), D("0.15"), D(3))
    assert eth.realized == D(0)
    assert eth.total == D("29.85")  # −150.15 + 3 × 60
    assert eth.unrealized == D("29.85")
    unmarked = pnl_by_asset(TRADES, {})
    assert unmarked["ETH"].total is None and unmarked["ETH"].unrealized is None
    assert unmarked["BTC"].total == D("118.88")  # nothing held: no mark needed


def test_next_move() -> None:
    btc = PRICES["BTC"]
    assert next_move(btc, T0 + H) == D(280) / D(250) - 1
    assert next_move(btc, T0 + H + timedelta(minutes=1)) == D(280) / D(250) - 1
    assert next_move(btc, T0 + 2 * H) == D(300) / D(280) - 1
    assert next_move(btc, T0 - H) is None  # no price at or before
    assert next_move(btc, T0 + 5 * H) is None  # no price after


def test_calibration_buckets() -> None:
    buckets = calibration(DECISIONS, PRICES)
    assert buckets is not None
    assert [(b.low, b.high) for b in buckets] == [
        (0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.0),
    ]  # fmt: skip
    assert [(b.decisions, b.hits) for b in buckets] == [(0, 0), (1, 0), (0, 0), (0, 0), (2, 2)]
    assert buckets[1].hit_rate == 0.0 and buckets[1].mean_confidence == pytest.approx(0.3)
    assert buckets[4].hit_rate == 1.0 and buckets[4].mean_confidence == pytest.approx(0.95)
    assert buckets[0].hit_rate is None and buckets[0].mean_confidence is None
    assert calibration([Decision(T0, Action.BUY, "BTC")], PRICES) is None


def test_behaviour_of_the_fixture() -> None:
    b = behaviour(SNAPSHOTS, TRADES, DECISIONS, marks={"ETH": D(60)}, prices=PRICES)
    assert b.exposure == pytest.approx(0.4)
    assert b.turnover == pytest.approx(1270 / 1025)  # (500 + 150 + 300 + 320) / 1025
    assert b.turnover_per_day == pytest.approx(1270 / 1025 * 6)  # 4 h = 1/6 day
    assert b.hold_share == pytest.approx(3 / 10)
    assert (b.decisions, b.fallbacks, b.trades) == (10, 1, 4)
    assert b.trades_per_day == pytest.approx(24.0)
    assert b.holding_hours == pytest.approx(2.5)
    assert set(b.pnl_by_asset) == {"BTC", "ETH"}
    assert b.calibration is not None and b.calibration[4].hits == 2


def test_behaviour_without_history() -> None:
    b = behaviour([], [], [])
    assert b.exposure is None and b.turnover is None and b.turnover_per_day is None
    assert b.hold_share is None and b.trades_per_day is None and b.holding_hours is None
    assert b.pnl_by_asset == {} and b.calibration is None


# --- efficiency -----------------------------------------------------------------------


def test_efficiency_by_hand() -> None:
    e = efficiency(D(100_000), D(101_000), D("2.5"), 400_000, 100_000)
    assert e.tokens == 500_000
    assert e.pnl_per_usd == D(400)  # 1000 / 2.5
    assert e.return_pct_per_usd == pytest.approx(0.4)  # 1 % / 2.5
    assert e.pnl_per_million_tokens == D(2000)  # 1000 / 0.5
    assert e.return_pct_per_million_tokens == pytest.approx(2.0)


def test_efficiency_is_none_without_spend() -> None:
    e = efficiency(D(100_000), D(99_000), None, None, None)
    assert e.spend_usd == D(0) and e.tokens == 0
    assert e.pnl_per_usd is None and e.return_pct_per_usd is None
    assert e.pnl_per_million_tokens is None and e.return_pct_per_million_tokens is None
    free = efficiency(D(100_000), D(99_000), D(0), 1000, 0)
    assert free.pnl_per_usd is None
    assert free.pnl_per_million_tokens == D(-1_000_000)  # −1000 / 0.001
    assert efficiency(D(0), D(10), D(1), 10, 0).return_pct_per_usd is None
