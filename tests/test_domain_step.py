"""Unit tests of race.domain.step through its public functions (``judge``, ``equity_point``):
what one agent's step records for every kind of answer (mutation-tested with ``make mutate``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from race.domain.agent import AgentAnswer, AgentContext, AgentSpec
from race.domain.model import (
    Action,
    Candle,
    Costs,
    MarketView,
    Order,
    Portfolio,
    Position,
    Provider,
    RiskLimits,
    Side,
)
from race.domain.regime import BEARISH, BULLISH, UNKNOWN
from race.domain.step import MAX_RAW, MAX_TEXT, equity_point, judge

T = datetime(2024, 3, 1, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)


def series(symbol: str, closes: Sequence[float | str]) -> list[Candle]:
    """Candles closing hourly up to T, the last one at T."""
    n = len(closes)
    out = []
    for i, close in enumerate(closes):
        price = Decimal(str(close))
        out.append(Candle(symbol, T - (n - 1 - i) * HOUR, price, price, price, price))
    return out


def context(
    candles: Mapping[str, list[Candle]] | None = None,
    *,
    cash: str = "10000",
    positions: Mapping[str, Position] | None = None,
    allowed: Sequence[str] = ("BTC",),
) -> AgentContext:
    view = MarketView(
        as_of=T, candles=candles if candles is not None else {"BTC": series("BTC", [100])}
    )
    return AgentContext(
        agent=AgentSpec(id=1, name="tester", provider=Provider.MOCK),
        cycle_time=T,
        market=view,
        portfolio=Portfolio(Decimal(cash), dict(positions or {})),
        limits=RiskLimits(),
        costs=Costs(),
        allowed_assets=list(allowed),
        starting_capital=Decimal(10_000),
    )


def buy(quantity: Any, asset: str = "BTC") -> dict[str, Any]:
    return {"asset": asset, "side": "BUY", "quantity": quantity}


# --- HOLD and trades ------------------------------------------------------------------------


def test_hold_without_orders() -> None:
    ctx = context()
    step = judge(ctx, AgentAnswer(reasoning="  waiting  "))
    d = step.decision
    assert (d.action, d.asset, d.quantity) == (Action.HOLD, None, None)
    assert d.rationale == "waiting"
    assert (d.fallback, d.fallback_reason, d.was_validated) == (False, None, True)
    assert (d.notes, d.proposed_orders, step.fills) == ([], [], ())
    assert step.portfolio is ctx.portfolio
    assert d.cycle_time == T
    assert d.value_before == d.value_after == Decimal(10_000)
    assert step.equity.time == T and step.equity.total_value == Decimal(10_000)


@pytest.mark.parametrize("answer", [None, AgentAnswer(), AgentAnswer(reasoning="   ")])
def test_hold_without_reasoning_says_so(answer: AgentAnswer | None) -> None:
    d = judge(context(), answer).decision
    assert d.rationale == "HOLD: no orders"
    assert (d.fallback, d.fallback_reason, d.was_validated) == (False, None, True)
    assert (d.action, d.cited_rules, d.details, d.model) == (Action.HOLD, [], {}, None)


def test_buy_is_executed_and_recorded() -> None:
    ctx = context()
    step = judge(ctx, AgentAnswer(orders=[buy(1)], reasoning="go long", model="m"))
    d = step.decision
    (fill,) = step.fills
    assert (fill.asset, fill.side, fill.quantity) == ("BTC", Side.BUY, Decimal(1))
    assert fill.price == Decimal("100.05") and fill.fee == Decimal("0.10005")
    assert (d.action, d.asset, d.quantity) == (Action.BUY, "BTC", Decimal(1))
    assert d.rationale == "go long"
    assert (d.fallback, d.was_validated, d.notes) == (False, True, [])
    assert step.portfolio.cash == Decimal("9899.84995")
    assert step.portfolio.positions["BTC"].cost_basis == Decimal("100.15005")
    assert d.value_before == Decimal(10_000)
    assert d.value_after == Decimal("9999.84995") == step.equity.total_value
    assert step.equity.cash_value == Decimal("9899.84995")
    assert step.equity.positions_value == Decimal(100)
    assert step.equity.unrealized_pnl == Decimal("-0.15005")
    assert d.proposed_orders == [{"asset": "BTC", "side": "BUY", "quantity": 1}]
    assert d.model == "m"


def test_trade_without_reasoning_is_named_after_the_first_fill() -> None:
    held = {"BTC": Position("BTC", Decimal(2), Decimal(100), Decimal(200))}
    candles = {"BTC": series("BTC", [100]), "ETH": series("ETH", [50])}
    ctx = context(candles, positions=held, allowed=("BTC", "ETH"))
    orders = [{"asset": "BTC", "side": "SELL", "quantity": 2}, buy(1, "ETH")]
    step = judge(ctx, AgentAnswer(orders=orders))
    d = step.decision
    assert [(f.side, f.asset) for f in step.fills] == [(Side.SELL, "BTC"), (Side.BUY, "ETH")]
    assert (d.action, d.asset, d.quantity) == (Action.SELL, "BTC", Decimal(2))
    assert d.rationale == "SELL BTC"
    assert step.portfolio.quantity("BTC") == 0 and step.portfolio.quantity("ETH") == 1


def test_a_clipped_order_trades_but_is_not_validated() -> None:
    ctx = context(cash="1000")
    step = judge(ctx, AgentAnswer(orders=[buy(100)], reasoning="all in"))
    d = step.decision
    assert d.action is Action.BUY and d.quantity == step.fills[0].quantity < 100
    assert [n.code for n in d.notes] == ["clipped_cash_reserve", "clipped_position_cap"]
    assert (d.fallback, d.was_validated) == (False, False)


def test_a_dropped_order_is_noted_and_nothing_trades() -> None:
    ctx = context()
    step = judge(ctx, AgentAnswer(orders=[buy(1, "DOGE")], reasoning="meme"))
    d = step.decision
    assert step.fills == () and step.portfolio is ctx.portfolio
    assert [(n.code, n.outcome) for n in d.notes] == [("unknown_asset", "dropped")]
    assert (d.action, d.fallback, d.was_validated, d.rationale) == (
        Action.HOLD,
        False,
        False,
        "meme",
    )


def test_parsed_and_dropped_notes_are_both_kept() -> None:
    step = judge(context(cash="1000"), AgentAnswer(orders=[buy(-1), buy(100)]))
    codes = [n.code for n in step.decision.notes]
    assert codes == ["non_positive_quantity", "clipped_cash_reserve", "clipped_position_cap"]
    # Notes point at the orders as the agent wrote them.
    assert [n.order_index for n in step.decision.notes] == [0, 1, 1]


# --- fallbacks --------------------------------------------------------------------------------


def test_a_failure_is_a_fallback_hold_even_with_orders() -> None:
    ctx = context()
    answer = AgentAnswer(orders=[buy(1)], reasoning="I would buy")
    step = judge(ctx, answer, failure="timed out after 5 s")
    d = step.decision
    assert step.fills == () and step.portfolio is ctx.portfolio
    assert (d.action, d.fallback, d.was_validated) == (Action.HOLD, True, False)
    assert d.fallback_reason == "timed out after 5 s"
    assert d.rationale == "HOLD (fallback): timed out after 5 s | agent said: I would buy"
    assert d.proposed_orders == [{"asset": "BTC", "side": "BUY", "quantity": 1}]


def test_a_failure_without_an_answer() -> None:
    d = judge(context(), None, failure="boom").decision
    assert d.rationale == "HOLD (fallback): boom"
    assert (d.fallback, d.fallback_reason) == (True, "boom")


def test_the_agents_own_fallback_is_not_repeated() -> None:
    answer = AgentAnswer.fallback("daily budget exhausted")
    answer.orders = [buy(1)]
    step = judge(context(), answer)
    d = step.decision
    assert step.fills == ()
    assert d.rationale == "HOLD (fallback): daily budget exhausted"
    assert (d.fallback, d.fallback_reason) == (True, "daily budget exhausted")


def test_reasoning_equal_to_the_fallback_rationale_is_not_repeated() -> None:
    d = judge(context(), AgentAnswer(reasoning="HOLD (fallback): x"), failure="x").decision
    assert d.rationale == "HOLD (fallback): x"


def test_a_failure_wins_over_the_agents_reason() -> None:
    answer = AgentAnswer(reasoning="tired", fallback_reason="circuit open")
    d = judge(context(), answer, failure="cancelled").decision
    assert d.fallback_reason == "cancelled"
    assert d.rationale == "HOLD (fallback): cancelled"


def test_long_fallback_reason_is_cut_to_1000_characters() -> None:
    d = judge(context(), None, failure="r" * 1500).decision
    assert d.fallback_reason == "r" * 1000
    assert d.rationale.startswith("HOLD (fallback): rrr")


class _Unreadable(dict):  # type: ignore[type-arg]
    def __contains__(self, key: object) -> bool:
        raise RuntimeError("cannot look inside")


def test_orders_that_cannot_be_read_are_a_fallback() -> None:
    ctx = context()
    step = judge(ctx, AgentAnswer(orders=[_Unreadable()], reasoning="trust me"))
    d = step.decision
    assert step.fills == () and d.notes == []
    assert d.fallback_reason == "orders could not be read: RuntimeError"
    assert d.rationale == (
        "HOLD (fallback): orders could not be read: RuntimeError | agent said: trust me"
    )
    assert (d.fallback, d.was_validated) == (True, False)


# --- malformed answers ------------------------------------------------------------------------


def test_an_answer_of_the_wrong_type_is_a_fallback() -> None:
    d = judge(context(), "BUY everything").decision  # type: ignore[arg-type]
    assert d.fallback_reason == "agent answer malformed: str, not an answer"
    assert d.rationale == "HOLD (fallback): agent answer malformed: str, not an answer"
    assert (d.proposed_orders, d.details, d.cited_rules) == ([], {}, [])


def test_every_malformed_field_is_named_in_order() -> None:
    answer = AgentAnswer(
        orders="BUY",  # type: ignore[arg-type]
        reasoning=7,  # type: ignore[arg-type]
        cited_rules="rule",  # type: ignore[arg-type]
        raw_output=b"x",  # type: ignore[arg-type]
        prompt=1,  # type: ignore[arg-type]
        model=2.0,  # type: ignore[arg-type]
        regime=["x"],  # type: ignore[arg-type]
        fallback_reason=3,  # type: ignore[arg-type]
        latency_ms=1.5,  # type: ignore[arg-type]
        prompt_tokens=True,
        completion_tokens="9",  # type: ignore[arg-type]
        cost_usd=0.5,  # type: ignore[arg-type]
        confidence=True,
        details=[],  # type: ignore[arg-type]
    )
    d = judge(context(), answer).decision
    assert d.fallback_reason == (
        "agent answer malformed: orders is str, not a list; reasoning is int, not text; "
        "cited_rules is str, not a list; raw_output is bytes, not text; prompt is int, not "
        "text; model is float, not text; regime is list, not text; fallback_reason is int, "
        "not text; latency_ms is float, not an integer; prompt_tokens is bool, not an "
        "integer; completion_tokens is str, not an integer; cost_usd is not a finite "
        "Decimal; confidence is not a finite number; details is list, not a mapping"
    )
    # None of the malformed values reaches the record.
    assert (d.model, d.latency_ms, d.cost_usd, d.confidence, d.raw_output) == (
        None,
        None,
        None,
        None,
        None,
    )
    assert d.rationale == "HOLD (fallback): " + d.fallback_reason
    assert d.regime == UNKNOWN


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("cost_usd", Decimal("NaN"), "cost_usd is not a finite Decimal"),
        ("cost_usd", Decimal("Infinity"), "cost_usd is not a finite Decimal"),
        ("confidence", float("nan"), "confidence is not a finite number"),
        ("confidence", float("inf"), "confidence is not a finite number"),
        ("confidence", "0.5", "confidence is not a finite number"),
        ("latency_ms", False, "latency_ms is bool, not an integer"),
        ("completion_tokens", 2.0, "completion_tokens is float, not an integer"),
        ("orders", {"asset": "BTC"}, "orders is dict, not a list"),
        ("details", None, "details is NoneType, not a mapping"),
    ],
)
def test_one_malformed_field(field: str, value: Any, problem: str) -> None:
    answer = AgentAnswer(reasoning="fine")
    setattr(answer, field, value)
    d = judge(context(), answer).decision
    assert d.fallback_reason == f"agent answer malformed: {problem}"
    assert d.rationale == f"HOLD (fallback): agent answer malformed: {problem}"


def test_well_formed_values_of_every_accepted_type_pass() -> None:
    answer = AgentAnswer(
        orders=(buy(1),),  # type: ignore[arg-type]
        reasoning="ok",
        cited_rules=("r1", 2),  # type: ignore[arg-type]
        raw_output="{}",
        prompt="p",
        model="m",
        latency_ms=12,
        prompt_tokens=0,
        completion_tokens=5,
        cost_usd=Decimal("0.000000015"),
        regime="CALM",
        confidence=1,
        details={"k": "v"},
    )
    step = judge(context(), answer)
    d = step.decision
    assert (d.fallback, d.fallback_reason, d.action) == (False, None, Action.BUY)
    assert (d.raw_output, d.prompt, d.model) == ("{}", "p", "m")
    assert (d.latency_ms, d.prompt_tokens, d.completion_tokens) == (12, 0, 5)
    assert d.cost_usd == Decimal("0.00000002")  # rounded to 8 places, half to even
    assert (d.confidence, d.details, d.regime, d.cited_rules) == (
        1,
        {"k": "v"},
        "CALM",
        ["r1", "2"],
    )
    assert judge(context(), AgentAnswer(confidence=0.25)).decision.confidence == 0.25


# --- bounds on what is stored -----------------------------------------------------------------


def test_cited_rules_are_strings_of_at_most_64_characters_and_20_rules() -> None:
    rules = ["x" * 100, *[f"rule {i}" for i in range(30)]]
    d = judge(context(), AgentAnswer(cited_rules=rules)).decision
    assert d.cited_rules == ["x" * 64, *[f"rule {i}" for i in range(19)]]


def test_long_texts_are_truncated_with_a_marker() -> None:
    answer = AgentAnswer(
        reasoning="a" * (MAX_TEXT + 10), raw_output="b" * (MAX_RAW + 1), prompt="c" * (MAX_RAW + 2)
    )
    d = judge(context(), answer).decision
    assert len(d.rationale) == MAX_TEXT and d.rationale.endswith(" …[truncated 10 characters]")
    assert len(d.raw_output or "") == MAX_RAW and (d.raw_output or "").endswith(
        "[truncated 1 characters]"
    )
    assert len(d.prompt or "") == MAX_RAW and (d.prompt or "").endswith("[truncated 2 characters]")
    exact = judge(
        context(), AgentAnswer(reasoning="a" * MAX_TEXT, raw_output="b" * MAX_RAW)
    ).decision
    assert exact.rationale == "a" * MAX_TEXT and exact.raw_output == "b" * MAX_RAW
    assert (MAX_TEXT, MAX_RAW) == (8000, 64_000)


def test_regime_from_the_agent_is_cut_to_32_characters() -> None:
    d = judge(context(), AgentAnswer(regime="R" * 40)).decision
    assert d.regime == "R" * 32


def test_proposed_orders_are_bounded_copies() -> None:
    class Odd:
        def __repr__(self) -> str:
            return "<" + "o" * 100 + ">"

    item: dict[Any, Any] = {
        "k" * 50: "v" * 100,
        3: 1.5,
        "flag": True,
        "none": None,
        "q": Decimal("0.1"),
    }
    item.update({f"extra{i}": i for i in range(10)})
    order = Order("BTC", Side.SELL, Decimal("0.5"))
    answer = AgentAnswer(orders=[item, order, Odd(), *[{"n": i} for i in range(60)]])
    proposed = judge(context(), answer).decision.proposed_orders
    assert len(proposed) == 50
    assert proposed[0] == {
        "k" * 40: "v" * 64,
        "3": 1.5,
        "flag": True,
        "none": None,
        "q": "0.1",
        "extra0": 0,
        "extra1": 1,
        "extra2": 2,
        "extra3": 3,
        "extra4": 4,
    }
    assert proposed[1] == {"asset": "BTC", "side": "SELL", "quantity": "0.5"}
    assert proposed[2] == "<" + "o" * 63
    assert proposed[3] == {"n": 0} and proposed[49] == {"n": 46}


def test_an_object_with_only_an_asset_is_shown_by_its_repr() -> None:
    class HalfOrder:
        asset = "BTC"

        def __repr__(self) -> str:
            return "HalfOrder(BTC)"

    class SideOnly:
        side = "BUY"

        def __repr__(self) -> str:
            return "SideOnly"

    d = judge(context(), AgentAnswer(orders=[HalfOrder(), SideOnly()])).decision
    assert d.proposed_orders == ["HalfOrder(BTC)", "SideOnly"]


# --- market conditions and regime -------------------------------------------------------------


def test_market_conditions_list_prices_and_24h_change() -> None:
    btc = [100.0] * 5 + [50.0] + [90.0] * 23 + [75.0]  # 30 closes: closes[-25] is 50
    candles = {
        "ETH": series("ETH", [1] * 24 + [2]),  # 25 closes: closes[-25] is 1
        "BTC": series("BTC", btc),
        "SOL": series("SOL", [3] * 24),  # 24 closes: too few
        "ZERO": series("ZERO", [0] + [4] * 24),
    }
    d = judge(context(candles, allowed=("BTC", "ETH", "SOL", "ZERO")), None).decision
    conditions = d.market_conditions
    assert conditions["asOf"] == T.isoformat()
    assert conditions["prices"] == {"BTC": "75.0", "ETH": "2", "SOL": "3", "ZERO": "4"}
    assert list(conditions["prices"]) == ["BTC", "ETH", "SOL", "ZERO"]
    assert conditions["change24hPct"] == {"BTC": 50.0, "ETH": 100.0, "SOL": None, "ZERO": None}
    assert list(conditions["change24hPct"]) == ["BTC", "ETH", "SOL", "ZERO"]
    assert conditions["regime"] == d.regime


def test_change_is_rounded_to_four_places() -> None:
    d = judge(context({"BTC": series("BTC", [3] * 24 + [4])}), None).decision
    assert d.market_conditions["change24hPct"] == {"BTC": 33.3333}


def rising(n: int) -> list[float]:
    return [100 + i * 0.5 for i in range(n)]


def test_regime_is_read_from_the_first_allowed_asset() -> None:
    candles = {"BTC": series("BTC", rising(60)), "ETH": series("ETH", rising(60)[::-1])}
    assert judge(context(candles, allowed=("BTC", "ETH")), None).decision.regime == BULLISH
    d = judge(context(candles, allowed=("ETH", "BTC")), None).decision
    assert d.regime == BEARISH == d.market_conditions["regime"]


def test_no_allowed_asset_means_an_unknown_regime() -> None:
    candles = {"BTC": series("BTC", rising(60))}
    assert judge(context(candles, allowed=()), None).decision.regime == UNKNOWN


def test_the_agents_regime_wins_over_the_detected_one() -> None:
    candles = {"BTC": series("BTC", rising(60))}
    assert judge(context(candles), AgentAnswer(regime="CHOPPY")).decision.regime == "CHOPPY"


# --- equity points ----------------------------------------------------------------------------


def test_equity_point_marks_positions_and_values_unmarked_ones_at_cost() -> None:
    view = MarketView(as_of=T, candles={"BTC": series("BTC", ["100.000000013"]), "ETH": []})
    portfolio = Portfolio(
        Decimal("50.123456785"),
        {
            "BTC": Position("BTC", Decimal("0.5"), Decimal(90), Decimal(45)),
            "ETH": Position("ETH", Decimal(2), Decimal(10), Decimal("20.5")),
        },
    )
    point = equity_point(T + HOUR, portfolio, view)
    assert point.time == T + HOUR
    # 0.5 × 100.000000013 + 20.5 = 70.5000000065 → 70.50000001 (rounded once)
    assert point.positions_value == Decimal("70.50000001")
    assert point.cash_value == Decimal("50.12345678")  # half to even
    assert point.total_value == Decimal("50.12345678") + Decimal("70.50000001")
    assert point.unrealized_pnl == Decimal("70.50000001") - Decimal("65.5")
    assert point.total_value == portfolio.equity(view.marks)
    assert point.unrealized_pnl == portfolio.unrealized_pnl(view.marks)


def test_equity_point_of_cash_only() -> None:
    view = MarketView(as_of=T, candles={})
    point = equity_point(T, Portfolio(Decimal(7)), view)
    assert (point.total_value, point.cash_value, point.positions_value, point.unrealized_pnl) == (
        Decimal(7),
        Decimal(7),
        Decimal(0),
        Decimal(0),
    )
