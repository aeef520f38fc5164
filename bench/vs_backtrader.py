"""The race against backtrader: one SMA 10/30 cross over a year of bundled BTC hourly candles.

    python bench/vs_backtrader.py [--runs 5] [--days 365]

(backtrader is a benchmark-only dependency: ``make bench-backtrader`` installs it with
requirements-bench.txt into ``.venv-bench`` and runs this script.)

Both sides trade the same bars (read back from the race's own candle table) with the same
rule and costs:

* the race: a real backfill of one ``sma_cross`` agent (fast 10, slow 30, fraction 0.25,
  the default baseline) over the year, persisting every decision, trade and equity snapshot
  to a fresh SQLite file; fee and slippage from the race's settings (0.1 %, 5 bps);
* backtrader (``stdstats=False``: no observers, it records nothing but the strategy's
  fills): the same rule on ``bt.indicators.SMA``, orders filled at the decision bar's
  close (cheat-on-close) moved against the trader by ``slip_perc`` and charged the fee as a
  percentage ``commission``; sized as the race sizes it — ``fraction`` of equity at the
  close, rounded down to 8 decimals, clipped to the race's maximum order notional (at
  100,000 USD starting capital, 25 % of equity plus the slippage is just above 25,000 USD).

The one hour missing from that year of data (2023-03-24 14:00) is a cycle for the race,
deciding on the previous close as a live cycle would, and no bar for backtrader: the race
counts its 8,760 cycles, backtrader its 8,789 bars (the 8,759 of the year, 29 warm-up bars
for SMA 30 and the bar after the last cycle).

Timed side by side, alternating, best of ``--runs``: the race's backfill (the template
database with the candles is prepared once, untimed, and copied before each run) against
backtrader's ``cerebro.run()``. Prints both rates in bars per second and the ratio
race/backtrader. Then checks that both made the same trades (time, side, quantity within
``--qty-tol``, price within ``--price-tol`` relative) and ended with the same equity (within
``--equity-tol`` USD); exits 1 naming the first difference when they diverge.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import backtrader as bt
from floor import run_floor
from outcome import Costs, Outcome, Trade, first_difference
from sqlalchemy import func, select

from agents.baselines import DEFAULT_BASELINES
from race.bootstrap import bootstrap
from race.domain.model import Provider
from race.domain.money import quantize, quantize_down
from race.domain.timeutil import floor_time
from race.ingest import ingest_sample
from race.store.tables import Asset, CandleRow, EquitySnapshotRow, TradeRow
from race.universe import NewAgent, add_agent, add_asset

HOUR = timedelta(hours=1)
SYMBOL = "BTC"
SMA_CROSS = next(spec for spec in DEFAULT_BASELINES if spec["model"] == "sma_cross")


# --- the race ---------------------------------------------------------------------------


def _app(path: Path) -> Any:
    return bootstrap(overrides={"RACE_DATABASE_URL": f"sqlite:///{path}"})


def prepare(path: Path, days: int) -> tuple[datetime, datetime, Costs]:
    """A database with BTC, its bundled candles and one sma_cross agent; the replayed range
    (the last ``days`` of hourly cycles but one, so backtrader has the bar after the last
    cycle to fill that cycle's order on) and the race's costs."""
    app = _app(path)
    app.db.upgrade()
    add_asset(app.db, SYMBOL, "bitcoin", app.clock)
    add_agent(
        app.db,
        NewAgent(
            name=SMA_CROSS["name"],
            provider=Provider.MOCK,
            model=SMA_CROSS["model"],
            strategy=SMA_CROSS["strategy"],
            params=SMA_CROSS["params"],
        ),
        app.settings.starting_capital,
        app.clock,
    )
    ingest_sample(app, symbols=[SYMBOL])
    with app.db.read() as session:
        latest = session.scalar(select(func.max(CandleRow.close_time)))
    end = floor_time(latest, HOUR) - HOUR
    start = end - timedelta(days=days) + HOUR
    s = app.settings
    costs = Costs(s.starting_capital, s.fee_rate, s.slippage_bps, s.max_order_notional)
    app.close()
    return start, end, costs


def candles(path: Path, start: datetime, end: datetime, warmup: int) -> list[tuple[Any, ...]]:
    """The stored BTC candles from ``warmup`` bars before ``start`` to one bar after ``end``:
    (close time, open, high, low, close, volume) with floats, as backtrader takes them."""
    app = _app(path)
    with app.db.read() as session:
        query = (
            select(
                CandleRow.close_time,
                CandleRow.open,
                CandleRow.high,
                CandleRow.low,
                CandleRow.close,
                CandleRow.volume,
            )
            .join(Asset)
            .where(Asset.symbol == SYMBOL, CandleRow.close_time <= end + HOUR)
            .order_by(CandleRow.close_time)
        )
        before = [row for row in session.execute(query.where(CandleRow.close_time < start))]
        after = [row for row in session.execute(query.where(CandleRow.close_time >= start))]
    app.close()
    rows = before[-warmup:] + after
    return [
        (t, float(o), float(h), float(lo), float(c), float(v or 0)) for t, o, h, lo, c, v in rows
    ]


def run_floor_copy(
    template: Path, workdir: Path, start: datetime, end: datetime, costs: Costs
) -> Outcome:
    """The hand-written loop of ``bench/floor.py`` on a fresh copy of the template."""
    path = _fresh_copy(template, workdir / "floor.db")
    cycles, seconds, trades, final = run_floor(path, SYMBOL, start, end, SMA_CROSS["params"], costs)
    return Outcome(cycles, seconds, [Trade(*t) for t in trades], final)


def _fresh_copy(template: Path, path: Path) -> Path:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    shutil.copy(template, path)
    return path


def run_race(template: Path, workdir: Path, start: datetime, end: datetime) -> Outcome:
    app = _app(_fresh_copy(template, workdir / "race.db"))
    began = time.perf_counter()
    report = asyncio.run(app.engine.backfill(start, end, HOUR))
    seconds = time.perf_counter() - began
    with app.db.read() as session:
        trades = [
            Trade(t.executed_at, t.side, t.quantity, t.price)
            for t in session.scalars(select(TradeRow).order_by(TradeRow.executed_at, TradeRow.id))
        ]
        final = session.scalar(
            select(EquitySnapshotRow.total_value)
            .where(EquitySnapshotRow.captured_at == end)
            .order_by(EquitySnapshotRow.id.desc())
            .limit(1)
        )
    app.close()
    if final is None:
        raise SystemExit(f"the race stored no equity snapshot at {end.isoformat()}")
    return Outcome(report.decisions, seconds, trades, final)


# --- backtrader ---------------------------------------------------------------------------


class CandleFeed(bt.feed.DataBase):
    """Bars from a list of (close time, open, high, low, close, volume); close time is the
    bar's timestamp, as in the race."""

    params = (("rows", ()),)

    def start(self) -> None:
        super().start()
        self._rows = iter(self.p.rows)

    def _load(self) -> bool:
        row = next(self._rows, None)
        if row is None:
            return False
        when, o, h, lo, c, v = row
        self.lines.datetime[0] = bt.date2num(when.replace(tzinfo=None))
        self.lines.open[0] = o
        self.lines.high[0] = h
        self.lines.low[0] = lo
        self.lines.close[0] = c
        self.lines.volume[0] = v
        self.lines.openinterest[0] = 0.0
        return True


class SmaCrossStrategy(bt.Strategy):
    """The race's ``sma_cross``: long (``fraction`` of equity) while SMA fast > SMA slow,
    flat when it falls below; decides only on bars in [first, last]."""

    params = (
        ("fast", 10),
        ("slow", 30),
        ("fraction", Decimal("0.25")),
        ("first", None),
        ("last", None),
        ("costs", None),
    )

    def __init__(self) -> None:
        self.fast = bt.indicators.SMA(self.data.close, period=self.p.fast)
        self.slow = bt.indicators.SMA(self.data.close, period=self.p.slow)
        self.first = bt.date2num(self.p.first.replace(tzinfo=None))
        self.last = bt.date2num(self.p.last.replace(tzinfo=None))
        self.trades: list[Trade] = []
        self.final_equity = Decimal(0)

    def _size(self, close: float) -> float:
        costs: Costs = self.p.costs
        equity = Decimal(repr(self.broker.getvalue()))
        reference = Decimal(repr(close))
        size = quantize_down(equity * self.p.fraction / reference)
        fill_price = quantize(reference * (1 + costs.slippage_bps / 10_000))
        return float(min(size, quantize_down(costs.max_order_notional / fill_price)))

    def next(self) -> None:
        now = self.data.datetime[0]
        if now > self.last:
            # The bar after the last cycle: its orders are filled by now; value at that
            # cycle's close, as the race's last snapshot does.
            self.final_equity = Decimal(
                repr(self.broker.getcash() + self.position.size * self.data.close[-1])
            )
            return
        if now < self.first:
            return
        fast, slow = self.fast[0], self.slow[0]
        if fast > slow and not self.position:
            self.buy(size=self._size(self.data.close[0]))
        elif fast < slow and self.position:
            self.close()

    def notify_order(self, order: bt.Order) -> None:
        if order.status == order.Completed:
            self.trades.append(
                Trade(
                    bt.num2date(order.executed.dt).replace(tzinfo=UTC),
                    "BUY" if order.isbuy() else "SELL",
                    Decimal(repr(abs(order.executed.size))),
                    Decimal(repr(order.executed.price)),
                )
            )
        elif order.status in (order.Canceled, order.Margin, order.Rejected):
            raise RuntimeError(f"backtrader did not fill an order: {order.getstatusname()}")


def run_backtrader(
    rows: Sequence[tuple[Any, ...]], start: datetime, end: datetime, costs: Costs
) -> Outcome:
    began = time.perf_counter()
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(CandleFeed(rows=rows, timeframe=bt.TimeFrame.Minutes, compression=60))
    params = SMA_CROSS["params"]
    cerebro.addstrategy(
        SmaCrossStrategy,
        fast=params["fast"],
        slow=params["slow"],
        fraction=Decimal(str(params["fraction"])),
        first=start,
        last=end,
        costs=costs,
    )
    broker = cerebro.broker
    broker.setcash(float(costs.starting_capital))
    broker.setcommission(commission=float(costs.fee_rate))
    broker.set_slippage_perc(
        float(costs.slippage_bps / 10_000), slip_open=True, slip_match=True, slip_out=True
    )
    broker.set_coc(True)
    (strategy,) = cerebro.run()
    seconds = time.perf_counter() - began
    return Outcome(len(rows), seconds, strategy.trades, strategy.final_equity)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each (best of)")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--qty-tol", type=Decimal, default=Decimal("0.0000001"))
    parser.add_argument("--price-tol", type=Decimal, default=Decimal("1e-9"))
    parser.add_argument("--equity-tol", type=Decimal, default=Decimal("0.01"))
    parser.add_argument(
        "--floor", action="store_true", help="also time bench/floor.py's hand-written loop"
    )
    args = parser.parse_args()
    if args.runs < 1 or args.days < 2:
        parser.error("--runs must be at least 1 and --days at least 2")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        template = workdir / "template.db"
        t0 = time.perf_counter()
        logging.disable(logging.WARNING)  # the bundled data's known mess, reported by ingest
        try:
            start, end, costs = prepare(template, args.days)
        finally:
            logging.disable(logging.NOTSET)
        params = SMA_CROSS["params"]
        rows = candles(template, start, end, warmup=params["slow"] - 1)
        print(
            f"prepared {SYMBOL} candles in {time.perf_counter() - t0:.1f} s; SMA "
            f"{params['fast']}/{params['slow']} cross, fraction {params['fraction']}, hourly "
            f"{start.isoformat()} → {end.isoformat()}; fee {costs.fee_rate}, slippage "
            f"{costs.slippage_bps} bps, capital {costs.starting_capital}, max order "
            f"{costs.max_order_notional} USD"
        )
        best: dict[str, Outcome] = {}
        for i in range(args.runs):
            order = ["race", "backtrader"] + (["floor"] if args.floor else [])
            for name in order if i % 2 == 0 else order[::-1]:
                if name == "race":
                    outcome = run_race(template, workdir, start, end)
                elif name == "floor":
                    outcome = run_floor_copy(template, workdir, start, end, costs)
                else:
                    outcome = run_backtrader(rows, start, end, costs)
                print(
                    f"  run {i + 1} {name:>10}: {outcome.bars} bars in {outcome.seconds:.2f} s "
                    f"= {outcome.bars / outcome.seconds:,.0f} bars/s, "
                    f"{len(outcome.trades)} trades"
                )
                if name not in best or outcome.seconds < best[name].seconds:
                    best[name] = outcome
    race, other = best["race"], best["backtrader"]
    race_rate, bt_rate = race.bars / race.seconds, other.bars / other.seconds
    print(
        f"best of {args.runs}: race {race_rate:,.0f} bars/s (persisting to SQLite), "
        f"backtrader {bt_rate:,.0f} bars/s (in memory); ratio race/backtrader "
        f"{race_rate / bt_rate:.2f} (target >= 2); load {os.getloadavg()[0]:.2f}"
    )
    if "floor" in best:
        floor = best["floor"]
        floor_rate = floor.bars / floor.seconds
        print(
            f"floor (bench/floor.py, the same rows by a hand-written loop) {floor_rate:,.0f} "
            f"bars/s: floor/backtrader {floor_rate / bt_rate:.2f}, race/floor "
            f"{race_rate / floor_rate:.2f}"
        )
    for name, outcome in best.items():
        tolerances = (args.qty_tol, args.price_tol, args.equity_tol)
        difference = None if name == "race" else first_difference(race, outcome, *tolerances)
        if difference is not None:
            print(f"DIVERGED from {name}: {difference}", file=sys.stderr)
            return 1
    largest = max(
        (abs(a.quantity - b.quantity) for a, b in zip(race.trades, other.trades, strict=True)),
        default=Decimal(0),
    )
    print(
        f"same trades: {len(race.trades)} (times and sides equal, quantities within "
        f"{args.qty_tol}: largest difference {largest}; prices within {args.price_tol} "
        f"relative); final equity race {race.final_equity}, backtrader "
        f"{quantize(other.final_equity)} USD"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
