"""The prompt: the rules with this race's numbers, the exact schema, the portfolio with
average and current prices and P&L, per-asset candles and indicators, and a hard size
bound that drops candle rows first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from agents.prompting import build_prompt
from race.domain.agent import AgentContext, AgentSpec
from race.domain.model import Costs, MarketView, Portfolio, Position, Provider, RiskLimits
from tests.factories import make_candles, wave_prices

T = datetime(2024, 3, 1, 12, tzinfo=UTC)
SCHEMA = (
    '{"reasoning": str, "orders": [{"asset": "BTC", "side": "BUY"|"SELL", "quantity": number}], '
    '"cited_rules": [str]}'
)


def context(limits=None, costs=None, portfolio=None, instructions="Be patient."):
    start = T - timedelta(hours=49)
    view = MarketView(
        as_of=T,
        candles={
            "BTC": make_candles("BTC", start, wave_prices(50, base=60000.0)),
            "ETH": make_candles("ETH", start, wave_prices(50, base=3000.0), volume=None),
        },
        max_price_age=timedelta(hours=6),
    )
    return AgentContext(
        agent=AgentSpec(
            id=1,
            name="Prompted",
            provider=Provider.LLAMA,
            strategy="Momentum",
            instructions=instructions,
        ),
        cycle_time=T,
        market=view,
        portfolio=portfolio or Portfolio(cash=Decimal("100000")),
        limits=limits or RiskLimits(),
        costs=costs or Costs(),
        allowed_assets=("BTC", "ETH"),
        starting_capital=Decimal("100000"),
    )


def test_system_message_states_the_rules_with_this_races_numbers():
    limits = RiskLimits(
        max_position_fraction=Decimal("0.3"),
        min_cash_reserve=Decimal("250"),
        max_order_notional=Decimal("12345"),
        min_order_notional=Decimal("20"),
        max_orders_per_cycle=3,
    )
    costs = Costs(fee_rate=Decimal("0.002"), slippage_bps=Decimal("7.5"))
    prompt = build_prompt(
        context(limits, costs), instructions="Be patient.", max_chars=20000, candle_rows=24
    )
    system = prompt.system
    for text in (
        "Trade only these assets: BTC, ETH",
        "taker fee of 0.2% of notional and 7.5 bps slippage",
        "may not exceed 30% of total equity",
        "Keep at least 250.00 USD cash",
        "at most 12,345.00 USD (clipped) and at least 20.00 USD",
        "At most 3 orders per decision",
        "Long only: no shorting, no leverage",
        SCHEMA,
        'HOLD is an empty "orders" list',
        "Be patient.",
        "Strategy: Momentum",
    ):
        assert text in system, text
    assert "JSON" in system  # JSON mode requires the word in the messages


def test_user_message_has_portfolio_candles_indicators_and_regime():
    held = Portfolio(
        cash=Decimal("70000"),
        positions={
            "BTC": Position("BTC", Decimal("0.5"), Decimal("58000"), Decimal("29029")),
        },
    )
    ctx = context(portfolio=held)
    prompt = build_prompt(ctx, instructions="", max_chars=20000, candle_rows=24)
    user = prompt.user
    price = ctx.market.prices["BTC"]
    assert "Decision time: 2024-03-01T12:00:00+00:00" in user
    assert "cash 70,000.00 USD" in user
    assert f"BTC, 0.5, 58,000.00, {price:,.2f}" in user
    pnl = Decimal("0.5") * price - Decimal("29029")
    assert f"{pnl:,.2f} USD" in user
    assert "Market regime (BTC):" in user
    for name in ("returns: 1 candle", "4 candles", "24 candles", "SMA10", "SMA20", "EMA12"):
        assert name in user
    for name in ("RSI14", "MACD", "signal", "ATR14", "volatility"):
        assert name in user
    assert user.count("last 24 candles (close time UTC, oldest first):") == 2
    btc = user.split("## BTC")[1].split("## ETH")[0].strip().splitlines()
    rows = btc[btc.index("time,open,high,low,close,volume") + 1 :]
    assert len(rows) == 24
    assert rows[0].startswith("02-29 13:00,") and rows[-1].startswith("03-01 12:00,")
    assert rows[-1].endswith(",10")  # volume known for BTC
    eth_rows = user.split("## ETH")[1].strip().splitlines()[-24:]
    assert all(row.endswith(",") for row in eth_rows)  # unknown volume left empty


def test_prompt_is_bounded_candle_rows_go_first():
    ctx = context(instructions="x" * 3000)
    full = build_prompt(ctx, instructions=ctx.agent.instructions, max_chars=20000, candle_rows=48)
    assert len(full) > 6000
    small = build_prompt(ctx, instructions=ctx.agent.instructions, max_chars=6000, candle_rows=48)
    assert len(small) <= 6000
    assert "Rules of the race:" in small.system
    tiny = build_prompt(ctx, instructions=ctx.agent.instructions, max_chars=2500, candle_rows=48)
    assert len(tiny) <= 2500
    assert "last " not in tiny.user  # no candle table left
    assert "instructions shortened" in tiny.system or "x" * 3000 not in tiny.system
    assert tiny.text.startswith("[system]\n") and "\n\n[user]\n" in tiny.text


def test_market_text_is_built_once_per_view():
    ctx = context()
    cache: dict = {}
    first = build_prompt(ctx, instructions="", max_chars=20000, candle_rows=24, cache=cache)
    assert len(cache) == 1
    second = build_prompt(ctx, instructions="other", max_chars=20000, candle_rows=24, cache=cache)
    assert len(cache) == 1
    assert first.user == second.user
