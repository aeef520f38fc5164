"""How an agent trades, from its snapshots, trades and decisions (formulas: docs/analytics.md).

Pure functions of plain rows: no I/O, no clock. Money stays Decimal; shares, rates and
durations are floats. A value that cannot be computed (no period, no trade closed, no
confidence stated…) is ``None``, never NaN.

* Exposure: time-weighted mean of positions value / total equity. Each snapshot's share
  holds until the next snapshot, so it weighs the time to the next one (the last weighs 0).
* Turnover: traded notional (buys and sells) / time-weighted mean equity, over the period
  and per day.
* HOLD share: HOLD decisions (fallbacks included) / all decisions.
* Holding time: units are matched first-in first-out; the mean time from a unit's BUY to
  the SELL that closes it, weighted by quantity. Units still held are not counted.
* Trades per day: trades / days from the first to the last snapshot.
* Per-asset P&L: realised = Σ realised P&L of its SELLs (fees included, as the engine books
  it); total = Σ SELL (notional − fee) − Σ BUY (notional + fee) + units held × mark;
  unrealised = total − realised.
* Calibration: per confidence bucket, the hit rate of directional decisions. A BUY of X is
  a hit when X's next price (the first after the decision time) is above its price at the
  decision time (the latest at or before it); a SELL is a hit when it is below. HOLDs, a
  flat next move, a decision with no later price, or a confidence outside [0, 1] are not
  counted.
"""

from __future__ import annotations

import bisect
from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Protocol

from race.domain.model import Action, Side
from race.domain.money import ZERO, quantize

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
MICROSECOND = timedelta(microseconds=1)


@dataclass
class _Lot:
    bought_at: datetime
    quantity: Decimal


class Snapshot(Protocol):
    """An equity snapshot (e.g. :class:`race.domain.step.EquityPoint`)."""

    @property
    def time(self) -> datetime: ...
    @property
    def total_value(self) -> Decimal: ...
    @property
    def positions_value(self) -> Decimal: ...


@dataclass(frozen=True)
class Trade:
    time: datetime
    asset: str
    side: Side
    quantity: Decimal
    notional: Decimal
    fee: Decimal
    realized_pnl: Decimal | None = None


@dataclass(frozen=True)
class Decision:
    time: datetime
    action: Action
    asset: str | None = None
    confidence: float | None = None
    fallback: bool = False


@dataclass(frozen=True)
class AssetPnl:
    asset: str
    trades: int
    volume: Decimal
    fees: Decimal
    realized: Decimal
    unrealized: Decimal | None
    """None when the asset is still held and has no mark."""
    total: Decimal | None
    held: Decimal


@dataclass(frozen=True)
class Bucket:
    low: float
    high: float
    decisions: int
    hits: int
    mean_confidence: float | None

    @property
    def hit_rate(self) -> float | None:
        return self.hits / self.decisions if self.decisions else None


@dataclass(frozen=True)
class Behaviour:
    exposure: float | None
    turnover: float | None
    turnover_per_day: float | None
    hold_share: float | None
    decisions: int
    fallbacks: int
    holding_hours: float | None
    trades: int
    trades_per_day: float | None
    pnl_by_asset: dict[str, AssetPnl] = field(default_factory=dict)
    calibration: list[Bucket] | None = None
    """None when no decision states a confidence."""


def _micros(span: timedelta) -> int:
    return span // MICROSECOND


def _weights(snapshots: Sequence[Snapshot]) -> list[int]:
    """Microseconds each snapshot's value holds: until the next snapshot (0 for the last)."""
    return [*(_micros(b.time - a.time) for a, b in pairwise(snapshots)), 0] if snapshots else []


def exposure(snapshots: Sequence[Snapshot]) -> float | None:
    """Time-weighted mean of positions value / total equity (None without a period)."""
    weights = _weights(snapshots)
    span = sum(weights)
    if span <= 0:
        return None
    weighted = 0.0
    for snap, w in zip(snapshots, weights, strict=True):
        if snap.total_value > 0:
            weighted += float(snap.positions_value / snap.total_value) * w
    return weighted / span


def mean_equity(snapshots: Sequence[Snapshot]) -> Decimal | None:
    """Time-weighted mean total equity (None without a period)."""
    weights = _weights(snapshots)
    span = sum(weights)
    if span <= 0:
        return None
    total = sum((s.total_value * w for s, w in zip(snapshots, weights, strict=True)), ZERO)
    return total / span


def period_days(snapshots: Sequence[Snapshot]) -> float | None:
    if len(snapshots) < 2:
        return None
    days = (snapshots[-1].time - snapshots[0].time) / DAY
    return days if days > 0 else None


def turnover(snapshots: Sequence[Snapshot], trades: Sequence[Trade]) -> float | None:
    """Traded notional / time-weighted mean equity."""
    mean = mean_equity(snapshots)
    if mean is None or mean <= 0:
        return None
    return float(sum((t.notional for t in trades), ZERO) / mean)


def hold_share(decisions: Sequence[Decision]) -> float | None:
    if not decisions:
        return None
    return sum(1 for d in decisions if d.action is Action.HOLD) / len(decisions)


def holding_hours(trades: Sequence[Trade]) -> float | None:
    """Quantity-weighted mean hours from BUY to the SELL that closes the units (FIFO)."""
    lots: dict[str, deque[_Lot]] = defaultdict(deque)
    weighted = Decimal(0)
    closed = Decimal(0)
    for trade in sorted(trades, key=lambda t: t.time):
        if trade.side is Side.BUY:
            lots[trade.asset].append(_Lot(trade.time, trade.quantity))
            continue
        left = trade.quantity
        queue = lots[trade.asset]
        while left > 0 and queue:
            lot = queue[0]
            matched = min(left, lot.quantity)
            weighted += matched * _micros(trade.time - lot.bought_at)
            closed += matched
            left -= matched
            lot.quantity -= matched
            if lot.quantity == 0:
                queue.popleft()
    return float(weighted / closed) / _micros(HOUR) if closed > 0 else None


def pnl_by_asset(trades: Sequence[Trade], marks: Mapping[str, Decimal]) -> dict[str, AssetPnl]:
    """Per asset: trades, volume, fees, realised, unrealised and total P&L at ``marks``."""
    out: dict[str, AssetPnl] = {}
    by_asset: dict[str, list[Trade]] = defaultdict(list)
    for trade in trades:
        by_asset[trade.asset].append(trade)
    for asset in sorted(by_asset):
        rows = by_asset[asset]
        held = sum((t.quantity if t.side is Side.BUY else -t.quantity for t in rows), ZERO)
        flow = sum(
            (t.notional - t.fee if t.side is Side.SELL else -(t.notional + t.fee) for t in rows),
            ZERO,
        )
        realized = quantize(sum((t.realized_pnl or ZERO for t in rows), ZERO))
        mark = marks.get(asset)
        total = None if held != 0 and mark is None else quantize(flow + held * (mark or ZERO))
        out[asset] = AssetPnl(
            asset=asset,
            trades=len(rows),
            volume=quantize(sum((t.notional for t in rows), ZERO)),
            fees=quantize(sum((t.fee for t in rows), ZERO)),
            realized=realized,
            unrealized=None if total is None else total - realized,
            total=total,
            held=held,
        )
    return out


def next_move(prices: Sequence[tuple[datetime, Decimal]], at: datetime) -> Decimal | None:
    """Relative move from the latest price at or before ``at`` to the first one after it
    (``prices`` in time order)."""
    return _move([t for t, _ in prices], prices, at)


def _move(
    times: Sequence[datetime], prices: Sequence[tuple[datetime, Decimal]], at: datetime
) -> Decimal | None:
    i = bisect.bisect_right(times, at)
    if i == 0 or i >= len(prices):
        return None
    before, after = prices[i - 1][1], prices[i][1]
    return after / before - 1 if before > 0 else None


def calibration(
    decisions: Sequence[Decision],
    prices: Mapping[str, Sequence[tuple[datetime, Decimal]]],
    buckets: int = 5,
) -> list[Bucket] | None:
    """Hit rate by confidence bucket ([0, 1/k), …, [(k−1)/k, 1]); None when no decision
    states a confidence."""
    if not any(d.confidence is not None for d in decisions):
        return None
    counts = [[0, 0, 0.0] for _ in range(buckets)]
    times = {asset: [t for t, _ in series] for asset, series in prices.items()}
    for d in decisions:
        c = d.confidence
        if c is None or not 0.0 <= c <= 1.0 or d.action is Action.HOLD or d.asset is None:
            continue
        series = prices.get(d.asset)
        move = None if series is None else _move(times[d.asset], series, d.time)
        if move is None or move == 0:
            continue
        hit = move > 0 if d.action is Action.BUY else move < 0
        slot = counts[min(int(c * buckets), buckets - 1)]
        slot[0] += 1
        slot[1] += int(hit)
        slot[2] += c
    return [
        Bucket(
            low=i / buckets,
            high=(i + 1) / buckets,
            decisions=int(n),
            hits=int(h),
            mean_confidence=s / n if n else None,
        )
        for i, (n, h, s) in enumerate(counts)
    ]


def behaviour(
    snapshots: Sequence[Snapshot],
    trades: Sequence[Trade],
    decisions: Sequence[Decision],
    *,
    marks: Mapping[str, Decimal] | None = None,
    prices: Mapping[str, Sequence[tuple[datetime, Decimal]]] | None = None,
) -> Behaviour:
    """All behaviour metrics of one agent over the period of its ``snapshots``."""
    days = period_days(snapshots)
    turn = turnover(snapshots, trades)
    return Behaviour(
        exposure=exposure(snapshots),
        turnover=turn,
        turnover_per_day=None if turn is None or days is None else turn / days,
        hold_share=hold_share(decisions),
        decisions=len(decisions),
        fallbacks=sum(1 for d in decisions if d.fallback),
        holding_hours=holding_hours(trades),
        trades=len(trades),
        trades_per_day=None if days is None else len(trades) / days,
        pnl_by_asset=pnl_by_asset(trades, marks or {}),
        calibration=calibration(decisions, prices or {}),
    )
