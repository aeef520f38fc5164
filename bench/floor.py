"""The floor under ``vs_backtrader``: the race's per-cycle work as one hand-written loop.

    python bench/vs_backtrader.py --floor   (times it beside the race and backtrader)

What the SMA 10/30 replay of ``vs_backtrader`` must do for each hourly cycle, written
without any of the race's layers (no agent, context, risk engine, records, unit of work or
SQLAlchemy): the two moving averages and the cross, the regime label
(:func:`race.domain.regime.detect_regime` over the same 50-candle window, its returns
computed once for the whole tape as the replay does), the market conditions as JSON, the
order sized and filled as the race sizes and fills it (fraction of equity, clipped to the
maximum order notional at the slipped price, fee on the notional), and the same rows in
the race's storage encoding — a decision with its audit columns, an equity snapshot, a
trade per fill, the portfolio and its position — written with ``sqlite3.executemany`` in
chunks of 500 cycles, one transaction each, into the same schema (its indexes and foreign
keys). The trades it makes are checked against the race's and backtrader's. It replays the
stored candles: the hour missing from the bundled year is no cycle for it (8,759 cycles,
the race's 8,760: the race decides that hour on the previous close).

It is the bound no design of the race's replay can beat in CPython on SQLite: the
measured ratio floor/backtrader is what the target "race ≥ 2× backtrader" asks of a
replay that keeps nothing but this work.
"""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from race.domain.money import quantize, quantize_down
from race.domain.regime import candle_returns, detect_regime

CHUNK = 500
WINDOW = 50
"""Candles in the market view (``RACE_CONTEXT_CANDLES``'s default)."""

_DECISION_SQL = (
    "INSERT INTO decisions (id, race_id, agent_id, cycle_time, action, asset_symbol, "
    "quantity, rationale, cited_rules, regime, market_conditions, value_before, value_after, "
    "was_validated, validation_errors, proposed_orders, fallback, model, details) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_SNAPSHOT_SQL = (
    "INSERT INTO equity_snapshots (race_id, agent_id, portfolio_id, captured_at, total_value, "
    "cash_value, positions_value, unrealized_pnl, source) VALUES (?,?,?,?,?,?,?,?,?)"
)
_TRADE_SQL = (
    "INSERT INTO trades (decision_id, sequence, race_id, agent_id, asset_id, executed_at, "
    "side, quantity, reference_price, price, notional, fee, slippage_cost, realized_pnl) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


def _units(value: Decimal) -> int:
    """A money value as the race stores it on SQLite: an integer of 1e-8 units."""
    return int(value.scaleb(8))


def run_floor(
    path: Path,
    symbol: str,
    start: datetime,
    end: datetime,
    params: dict[str, Any],
    costs: Any,
) -> tuple[int, float, list[tuple[datetime, str, Decimal, Decimal]], Decimal]:
    """Replay ``start``..``end`` hourly into the database at ``path`` (a copy of the
    prepared template): the cycles, the seconds, the trades (time, side, quantity, price)
    and the final equity."""
    began = time.perf_counter()
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA synchronous = NORMAL")
    con.execute("PRAGMA foreign_keys = ON")
    (asset_id,) = con.execute("SELECT id FROM assets WHERE symbol = ?", (symbol,)).fetchone()
    race_id, agent_id, portfolio_id, version = con.execute(
        "SELECT race_id, agent_id, id, version FROM portfolios"
    ).fetchone()
    # The range and the warm-up before it (the view's window, the moving averages').
    warmup = start - timedelta(hours=max(WINDOW, params["slow"]) + 1)
    stored = con.execute(
        "SELECT close_time, close FROM candles WHERE asset_id = ? AND close_time >= ? "
        "AND close_time <= ? ORDER BY close_time",
        (asset_id, *(t.replace(tzinfo=None).isoformat(" ", "microseconds") for t in (warmup, end))),
    ).fetchall()
    times = [datetime.fromisoformat(t).replace(tzinfo=UTC) for t, _ in stored]
    prices = [Decimal(close).scaleb(-8) for _, close in stored]
    closes = [float(p) for p in prices]
    returns = candle_returns(closes)
    fast_n, slow_n, fraction = params["fast"], params["slow"], Decimal(str(params["fraction"]))
    up = 1 + costs.slippage_bps / 10_000
    down = 1 - costs.slippage_bps / 10_000
    cash, held, cost_basis = costs.starting_capital, Decimal(0), Decimal(0)
    (next_id,) = con.execute("SELECT coalesce(max(id), 0) + 1 FROM decisions").fetchone()
    trades: list[tuple[datetime, str, Decimal, Decimal]] = []
    decisions: list[tuple[Any, ...]] = []
    snapshots: list[tuple[Any, ...]] = []
    fills: list[tuple[Any, ...]] = []
    first = next(i for i, t in enumerate(times) if t >= start)
    value = cash
    for i in range(first, len(times)):
        at, price, close = times[i], prices[i], closes[i]
        window = closes[max(0, i - WINDOW + 1) : i + 1]
        regime = detect_regime(window, returns=returns[i - len(window) + 2 : i + 1])
        fast = sum(closes[i - fast_n + 1 : i + 1]) / fast_n
        slow = sum(closes[i - slow_n + 1 : i + 1]) / slow_n
        before = value
        action, quantity, notes, proposed = "HOLD", None, None, "[]"
        if fast > slow and held == 0:
            wanted = quantize_down((cash + held * price) * fraction / price)
            fill = quantize(price * up)
            quantity = min(wanted, quantize_down(costs.max_order_notional / fill))
            action, side = "BUY", "BUY"
            rationale = f"SMA cross: {symbol}: SMA10 {fast:.2f} > SMA30 {slow:.2f}, entering"
            proposed = json.dumps([{"asset": symbol, "side": side, "quantity": str(wanted)}])
            if quantity != wanted:
                notes = json.dumps(
                    [{"order": 0, "asset": symbol, "code": "clipped_max_order_notional"}]
                )
        elif fast < slow and held > 0:
            fill, quantity = quantize(price * down), held
            action, side = "SELL", "SELL"
            rationale = f"SMA cross: {symbol}: SMA10 {fast:.2f} < SMA30 {slow:.2f}, exiting"
            proposed = json.dumps([{"asset": symbol, "side": side, "quantity": str(held)}])
        else:
            rationale = f"SMA cross: {symbol}: no cross signal, staying flat"
        if quantity is not None:
            notional = quantize(quantity * fill)
            fee = quantize(notional * costs.fee_rate)
            slippage = quantize(abs(fill - price) * quantity)
            if action == "BUY":
                cash, held, cost_basis, pnl = cash - notional - fee, quantity, notional + fee, None
            else:
                pnl = notional - fee - cost_basis
                cash, held, cost_basis = cash + notional - fee, Decimal(0), Decimal(0)
            fills.append(
                (
                    next_id, 0, race_id, agent_id, asset_id, at, action, _units(quantity),
                    _units(price), _units(fill), _units(notional), _units(fee),
                    _units(slippage), None if pnl is None else _units(pnl),
                )
            )  # fmt: skip
            trades.append((at, action, quantity, fill))
        positions = quantize(held * price)
        value = quantize(cash) + positions
        conditions = {
            "asOf": at.isoformat(),
            "prices": {symbol: str(price)},
            "change24hPct": {
                symbol: round((close / closes[i - 24] - 1.0) * 100, 4) if i >= 24 else None
            },
            "regime": regime,
        }
        stamp = at.replace(tzinfo=None).isoformat(" ", "microseconds")
        decisions.append(
            (
                next_id, race_id, agent_id, stamp, action, None if quantity is None else symbol,
                None if quantity is None else _units(quantity), rationale, "[]", regime,
                json.dumps(conditions), _units(before), _units(value), notes is None, notes,
                proposed, False, "sma_cross", "{}",
            )
        )  # fmt: skip
        snapshots.append(
            (
                race_id, agent_id, portfolio_id, stamp, _units(value), _units(quantize(cash)),
                _units(positions), _units(positions - cost_basis), "cycle",
            )
        )  # fmt: skip
        next_id += 1
        if len(decisions) == CHUNK or i == len(times) - 1:
            position = None
            if held:
                position = (portfolio_id, asset_id, _units(held),
                            _units(quantize(cost_basis / held)), _units(cost_basis))  # fmt: skip
            state = (portfolio_id, version, stamp, _units(quantize(cash)), position)
            version = _commit(con, decisions, snapshots, fills, state)
    con.close()
    return len(times) - first, time.perf_counter() - began, trades, value


def _commit(
    con: sqlite3.Connection,
    decisions: list[tuple[Any, ...]],
    snapshots: list[tuple[Any, ...]],
    fills: list[tuple[Any, ...]],
    state: tuple[Any, ...],
) -> int:
    """One chunk in one transaction: the portfolio (compare-and-set on its version), its
    position, the decisions, snapshots and trades."""
    portfolio_id, version, stamp, cash, position = state
    con.execute("BEGIN IMMEDIATE")
    moved = con.execute(
        "UPDATE portfolios SET version = ?, as_of = ?, cash = ? WHERE id = ? AND version = ?",
        (version + len(decisions), stamp, cash, portfolio_id, version),
    ).rowcount
    if moved != 1:
        con.execute("ROLLBACK")
        raise RuntimeError("the portfolio moved underneath the floor's replay")
    con.executemany(_DECISION_SQL, decisions)
    con.executemany(_SNAPSHOT_SQL, snapshots)
    if fills:
        con.executemany(_TRADE_SQL, fills)
    con.execute("DELETE FROM positions WHERE portfolio_id = ?", (portfolio_id,))
    if position is not None:
        con.execute(
            "INSERT INTO positions (portfolio_id, asset_id, quantity, average_price, "
            "cost_basis) VALUES (?,?,?,?,?)",
            position,
        )
    con.execute("COMMIT")
    version += len(decisions)
    decisions.clear()
    snapshots.clear()
    fills.clear()
    return int(version)
