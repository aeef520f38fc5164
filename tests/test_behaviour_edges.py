"""race.domain.behaviour at its edges, with exact expected values: time weights to the
microsecond, zero and one as equity, prices and confidences, selling what was never
bought, and the money rounding of the per-asset figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from race.domain.behaviour import (
    Decision,
    Trade,
    behaviour,
    calibration,
    exposure,
    hold_share,
    holding_hours,
    mean_equity,
    next_move,
    period_days,
    pnl_by_asset,
    turnover,
)
from race.domain.model import Action, Side
from tests.test_behaviour import Snap

T0 = datetime(2024, 1, 1, tzinfo=UTC)
H = timedelta(hours=1)
US = timedelta(microseconds=1)
D = Decimal


def test_exposure_is_exactly_the_microsecond_weighted_mean() -> None:
    snaps = [
        Snap(T0, D(1000), D(0)),
        Snap(T0 + H, D(1000), D(500)),
        Snap(T0 + 3 * H, D(1100), D(660)),
        Snap(T0 + 4 * H, D(1000), D(0)),  # the last one weighs nothing
    ]
    hour = 3_600_000_000
    assert exposure(snaps) == (0.0 * hour + 0.5 * 2 * hour + 0.6 * hour + 0.0) / (4 * hour)
    assert exposure([*snaps[:3], Snap(T0 + 4 * H, D(1000), D(1000))]) == exposure(snaps)


def test_time_weights_count_single_microseconds() -> None:
    snaps = [
        Snap(T0, D(10), D(10)),
        Snap(T0 + US, D(40), D(0)),
        Snap(T0 + 3 * US, D(70), D(70)),
    ]
    assert mean_equity(snaps) == D(30)  # (10·1 + 40·2) / 3
    assert exposure(snaps) == 1 / 3
    assert period_days(snaps) == 3 / 86_400_000_000


def test_a_snapshot_worth_zero_or_one() -> None:
    snaps = [
        Snap(T0, D(0), D(0)),  # nothing left: no share, no division
        Snap(T0 + H, D(1), D(1)),
        Snap(T0 + 2 * H, D(1), D(1)),
    ]
    assert exposure(snaps) == 0.5
    assert mean_equity(snaps) == D("0.5")
    assert turnover(snaps, [Trade(T0, "BTC", Side.BUY, D(1), D(2), D(0))]) == 4.0


def test_no_period_or_no_equity_has_no_ratio() -> None:
    single = [Snap(T0, D(100), D(50))]
    assert mean_equity(single) is None and mean_equity([]) is None
    assert exposure(single) is None
    same_time = [Snap(T0, D(100), D(50)), Snap(T0, D(100), D(50))]
    assert exposure(same_time) is None and mean_equity(same_time) is None
    assert period_days(same_time) is None
    assert period_days(single) is None
    assert period_days([single[0], Snap(T0 + 12 * H, D(1), D(0))]) == 0.5
    broke = [Snap(T0, D(0), D(0)), Snap(T0 + H, D(0), D(0))]
    trade = Trade(T0, "BTC", Side.BUY, D(1), D(10), D(0))
    assert turnover(broke, [trade]) is None
    assert turnover(single, [trade]) is None
    b = behaviour(broke, [trade], [])
    assert b.turnover is None and b.turnover_per_day is None
    assert b.trades_per_day == 24.0 and b.exposure == 0.0


def test_hold_share_counts_only_holds() -> None:
    decisions = [
        Decision(T0, Action.HOLD),
        Decision(T0, Action.BUY, "BTC"),
        Decision(T0, Action.SELL, "BTC"),
        Decision(T0, Action.HOLD, fallback=True),
    ]
    assert hold_share(decisions) == 0.5
    assert hold_share(decisions[1:3]) == 0.0
    assert hold_share([]) is None


def test_selling_what_was_never_bought_holds_nothing() -> None:
    assert holding_hours([Trade(T0, "BTC", Side.SELL, D(1), D(10), D(0))]) is None
    trades = [
        Trade(T0, "ETH", Side.BUY, D(1), D(10), D(0)),
        Trade(T0 + H, "BTC", Side.SELL, D(1), D(10), D(0)),  # another asset's lot stays
        Trade(T0 + 3 * H, "ETH", Side.SELL, D(2), D(20), D(0)),  # one unit more than held
        Trade(T0 + 4 * H, "ETH", Side.BUY, D(1), D(10), D(0)),
        Trade(T0 + 5 * H, "ETH", Side.SELL, D("0.5"), D(5), D(0)),
    ]
    # 1 unit held 3 h, then half a unit held 1 h: (3 + 0.5) / 1.5
    assert holding_hours(trades) == float(D("3.5") / D("1.5"))


def test_holding_time_sorts_the_trades_by_time() -> None:
    trades = [
        Trade(T0 + 6 * H, "BTC", Side.SELL, D(2), D(20), D(0)),
        Trade(T0 + 2 * H, "BTC", Side.BUY, D(1), D(10), D(0)),
        Trade(T0, "BTC", Side.BUY, D(1), D(10), D(0)),
    ]
    assert holding_hours(trades) == 5.0  # (6 + 4) / 2


def test_pnl_by_asset_is_rounded_and_sorted() -> None:
    trades = [
        Trade(T0, "ETH", Side.BUY, D(1), D("10.000000004"), D("0.000000004")),
        Trade(T0 + H, "BTC", Side.BUY, D(2), D(20), D("0.1")),
        Trade(T0 + 2 * H, "BTC", Side.SELL, D(1), D(15), D("0.1"), D("4.850000006")),
        Trade(T0 + 3 * H, "ETH", Side.SELL, D(1), D(12), D("0.000000006"), D("1.99")),
    ]
    pnl = pnl_by_asset(trades, {"BTC": D(16)})
    assert list(pnl) == ["BTC", "ETH"]
    btc, eth = pnl["BTC"], pnl["ETH"]
    assert (btc.trades, btc.held, btc.volume, btc.fees) == (2, D(1), D(35), D("0.2"))
    assert btc.realized == D("4.85000001")
    assert btc.total == D("10.8")  # 14.9 − 20.1 + 1 × 16
    assert btc.unrealized == D("5.94999999")
    assert (eth.volume, eth.fees, eth.held) == (D("22.00000000"), D("0.00000001"), D(0))
    assert eth.total == D("1.99999999")  # 12 − 0.000000006 − 10.000000008, rounded
    assert eth.unrealized == D("0.00999999")


def test_next_move_from_the_first_price_and_from_zero() -> None:
    prices = [(T0, D(0)), (T0 + H, D(100)), (T0 + 2 * H, D(100)), (T0 + 3 * H, D(90))]
    assert next_move(prices, T0) is None  # from a price of 0 there is no relative move
    assert next_move(prices, T0 + H) == D(0)
    assert next_move(prices, T0 + 2 * H) == D("-0.1")
    assert next_move(prices[1:], T0 + H) == D(0)  # the first price, at index 0
    assert next_move(prices[1:], T0 + H - US) is None
    assert next_move([], T0) is None


def test_calibration_counts_the_bounds_of_confidence() -> None:
    prices = {"BTC": [(T0, D(100)), (T0 + H, D(110)), (T0 + 2 * H, D(99))]}
    decisions = [
        Decision(T0, Action.BUY, "BTC", 0.0),  # up: hit, bucket [0, 0.2)
        Decision(T0 + H, Action.BUY, "BTC", 0.2),  # down: miss, bucket [0.2, 0.4)
        Decision(T0 + H, Action.SELL, "BTC", 1.0),  # down: hit, last bucket
        Decision(T0 + H, Action.SELL, "BTC", -0.01),  # out of [0, 1]
        Decision(T0 + H, Action.SELL, "BTC", 1.01),
        Decision(T0 + H, Action.SELL, None, 0.5),  # no asset
        Decision(T0 + H, Action.SELL, "ETH", 0.5),  # no prices for it
        Decision(T0 + H, Action.HOLD, "BTC", 0.6),
    ]
    buckets = calibration(decisions, prices)
    assert buckets is not None
    assert [(b.decisions, b.hits) for b in buckets] == [(1, 1), (1, 0), (0, 0), (0, 0), (1, 1)]
    assert [b.mean_confidence for b in buckets] == [0.0, 0.2, None, None, 1.0]
    two = calibration(decisions[:3], prices, buckets=2)
    assert two is not None
    assert [(b.low, b.high, b.decisions, b.hits) for b in two] == [
        (0.0, 0.5, 2, 1),
        (0.5, 1.0, 1, 1),
    ]
    assert calibration([], prices) is None


def test_behaviour_defaults_to_no_marks_and_no_prices() -> None:
    snaps = [Snap(T0, D(100), D(0)), Snap(T0 + 6 * H, D(100), D(50))]
    trades = [Trade(T0, "BTC", Side.BUY, D(1), D(50), D(0))]
    decisions = [Decision(T0, Action.BUY, "BTC", 0.9, fallback=False)]
    b = behaviour(snaps, trades, decisions)
    assert b.pnl_by_asset["BTC"].total is None  # held, and no mark given
    assert b.calibration is not None and [x.decisions for x in b.calibration] == [0] * 5
    assert b.turnover == 0.5 and b.turnover_per_day == 2.0 and b.trades_per_day == 4.0
    assert b.fallbacks == 0 and b.decisions == 1 and b.trades == 1


def test_a_period_of_one_microsecond_is_a_period() -> None:
    snaps = [Snap(T0, D(80), D(20)), Snap(T0 + US, D(50), D(50))]
    assert exposure(snaps) == 0.25
    assert mean_equity(snaps) == D(80)


def test_half_a_unit_closed_is_a_holding_time() -> None:
    trades = [
        Trade(T0, "BTC", Side.BUY, D(1), D(10), D(0)),
        Trade(T0 + 2 * H, "BTC", Side.SELL, D("0.5"), D(5), D(0)),
    ]
    assert holding_hours(trades) == 2.0


def test_moves_of_prices_below_one() -> None:
    prices = [(T0, D("0.5")), (T0 + H, D("0.6")), (T0 + 2 * H, D("0.3"))]
    assert next_move(prices, T0) == D("0.2")
    assert next_move(prices, T0 + H) == D("-0.5")


def test_each_asset_pnl_names_its_asset() -> None:
    pnl = pnl_by_asset([Trade(T0, "ETH", Side.BUY, D(1), D(10), D(0))], {"ETH": D(10)})
    assert pnl["ETH"].asset == "ETH" and pnl["ETH"].total == D(0)
