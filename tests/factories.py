"""Test data builders: assets, agents and synthetic (or real) candles."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from agents.baselines import DEFAULT_BASELINES
from race.bootstrap import App
from race.domain.model import Candle, Provider
from race.domain.money import quantize
from race.store.tables import Asset, CandleRow
from race.universe import NewAgent, add_agent, add_asset

HOUR = timedelta(hours=1)


def seed_assets(
    app: App, pairs: Sequence[tuple[str, str]] = (("BTC", "bitcoin"), ("ETH", "ethereum"))
) -> dict[str, int]:
    ids = {}
    for symbol, coin in pairs:
        row, _ = add_asset(app.db, symbol, coin, app.clock)
        ids[symbol] = row.id
    return ids


def seed_baselines(app: App, names: Iterable[str] | None = None) -> dict[str, int]:
    wanted = set(names) if names is not None else None
    ids = {}
    for spec in DEFAULT_BASELINES:
        if wanted is not None and spec["model"] not in wanted:
            continue
        row, _ = add_agent(
            app.db,
            NewAgent(
                name=spec["name"],
                provider=Provider.MOCK,
                model=spec["model"],
                strategy=spec["strategy"],
                params=spec["params"],
            ),
            app.settings.starting_capital,
            app.clock,
        )
        ids[spec["model"]] = row.id
    return ids


def seed_agent(
    app: App,
    name: str,
    provider: Provider = Provider.MOCK,
    model: str = "cash",
    params: dict[str, Any] | None = None,
    **kwargs: Any,
) -> int:
    row, _ = add_agent(
        app.db,
        NewAgent(name=name, provider=provider, model=model, params=params or {}, **kwargs),
        app.settings.starting_capital,
        app.clock,
    )
    return row.id


def wave_prices(
    n: int, base: float = 100.0, amplitude: float = 0.1, period: int = 40, drift: float = 0.0
) -> list[Decimal]:
    return [
        quantize(
            Decimal(
                str(
                    round(
                        base * (1 + amplitude * math.sin(2 * math.pi * i / period) + drift * i), 6
                    )
                )
            )
        )
        for i in range(n)
    ]


def make_candles(
    symbol: str,
    start: datetime,
    closes: Sequence[Decimal],
    interval: timedelta = HOUR,
    volume: Decimal | None = Decimal("10"),
) -> list[Candle]:
    """Consistent candles: open = previous close, high/low 0.5 % around."""
    candles = []
    previous = closes[0]
    for i, close in enumerate(closes):
        open_ = previous
        high = quantize(max(open_, close) * Decimal("1.005"))
        low = quantize(min(open_, close) * Decimal("0.995"))
        candles.append(Candle(symbol, start + interval * i, open_, high, low, close, volume))
        previous = close
    return candles


def insert_candles(
    app: App, candles: Iterable[Candle], interval: timedelta = HOUR, source: str = "test"
) -> int:
    with app.db.write() as session:
        ids = {s: i for i, s in session.execute(select(Asset.id, Asset.symbol))}
        rows = [
            dict(
                asset_id=ids[c.symbol],
                close_time=c.close_time,
                open=c.open,
                high=c.high,
                low=c.low,
                close=c.close,
                volume=c.volume,
                interval_seconds=int(interval.total_seconds()),
                source=source,
            )
            for c in candles
        ]
        if rows:
            session.execute(insert(CandleRow), rows)
        return len(rows)


def live_key(session: Session, key: Any) -> tuple[Any, Any]:
    """The primary key of a live-race row keyed by ``key`` (cycles: its time; agent stats:
    the agent), for ``session.get``."""
    from race.store import races

    return races.live_id(session), key
