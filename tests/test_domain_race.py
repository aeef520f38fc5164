"""The race's pure values (race/domain/race.py): rules built from costs and limits and back,
their JSON (exact decimals), their settings' names, and which race is the live one."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from race.domain.model import Costs, RiskLimits
from race.domain.race import LIVE_RACE_NAME, Race, RaceKind, RaceRules
from race.settings import Settings

amounts = st.decimals(min_value=D("0.00000001"), max_value=D("1e9"), places=8)


@given(
    fee=st.decimals(min_value=D(0), max_value=D("0.1"), places=6),
    slippage=st.decimals(min_value=D(0), max_value=D(500), places=2),
    position=st.decimals(min_value=D("0.01"), max_value=D(1), places=4),
    reserve=amounts,
    order=amounts,
    smallest=amounts,
    count=st.integers(min_value=1, max_value=50),
    quantity=amounts,
)
def test_rules_round_trip_through_costs_limits_and_json(
    fee, slippage, position, reserve, order, smallest, count, quantity
) -> None:
    costs = Costs(fee_rate=fee, slippage_bps=slippage)
    limits = RiskLimits(position, reserve, order, smallest, count, quantity)
    rules = RaceRules.of(costs, limits)
    assert (rules.costs, rules.limits) == (costs, limits)
    as_json = rules.to_json()
    assert as_json["max_orders_per_cycle"] == count and isinstance(count, int)
    assert as_json["fee_rate"] == str(fee) and as_json["max_order_quantity"] == str(quantity)
    again = RaceRules.from_json(as_json)
    assert again == rules and type(again.max_orders_per_cycle) is int
    assert all(type(v) is D for k, v in again.to_settings().items() if k != "max_orders_per_cycle")


def test_json_numbers_are_read_exactly_and_the_count_as_an_integer() -> None:
    data = RaceRules.of(Costs(), RiskLimits()).to_json()
    data["fee_rate"], data["max_orders_per_cycle"] = 0.1, "7"
    rules = RaceRules.from_json(data)
    assert rules.fee_rate == D("0.1") and rules.max_orders_per_cycle == 7


def test_the_rules_name_the_settings_they_come_from() -> None:
    rules = RaceRules.of(Costs(), RiskLimits())
    fields = set(Settings.model_fields)
    assert set(rules.to_settings()) <= fields
    assert rules.to_settings()["fee_rate"] == Settings().fee_rate
    assert Settings().model_copy(update=rules.to_settings()).costs == rules.costs


def test_only_the_live_kind_is_live() -> None:
    now = datetime(2024, 1, 1, tzinfo=UTC)

    def race(kind: RaceKind) -> Race:
        return Race(
            1, LIVE_RACE_NAME, kind, now, None, 3600, D(1), None, None, "running", None, now
        )

    assert race(RaceKind.LIVE).is_live
    assert not race(RaceKind.BACKTEST).is_live and not race(RaceKind.WHATIF).is_live
    assert [k.value for k in RaceKind] == ["live", "backtest", "whatif"]


def _json(**changes: object) -> dict[str, object]:
    return {**RaceRules.of(Costs(), RiskLimits()).to_json(), **changes}


FINITE = "must be a finite number ≥ 0, got"
NUMBER, WHOLE, FRACTION = "must be a number, got", "must be a whole", "must be a fraction"


LONG_COUNT = f"rule max_orders_per_cycle {WHOLE} number, got '1.{'5' * 38}'"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"fee_rate": "NaN"}, f"rule fee_rate {FINITE} Decimal('NaN')"),
        ({"fee_rate": "1.5"}, f"rule fee_rate {FRACTION} between 0 and 1"),
        ({"max_position_fraction": 2}, f"rule max_position_fraction {FRACTION} between 0 and 1"),
        ({"slippage_bps": "10000"}, "rule slippage_bps must be below 10000 basis points"),
        ({"min_cash_reserve": "-1"}, f"rule min_cash_reserve {FINITE} Decimal('-1')"),
        ({"max_order_notional": "-Inf"}, f"rule max_order_notional {FINITE} Decimal('-Infinity')"),
        ({"min_order_notional": "ten"}, f"rule min_order_notional {NUMBER} 'ten'"),
        ({"min_order_notional": "x" * 50}, f"rule min_order_notional {NUMBER} '{'x' * 40}'"),
        ({"max_order_quantity": True}, f"rule max_order_quantity {NUMBER} bool"),
        ({"max_order_quantity": None}, f"rule max_order_quantity {NUMBER} NoneType"),
        ({"max_order_quantity": "-1"}, f"rule max_order_quantity {FINITE} Decimal('-1')"),
        ({"max_orders_per_cycle": 2.5}, f"rule max_orders_per_cycle {WHOLE} number, got '2.5'"),
        ({"max_orders_per_cycle": "1." + "5" * 50}, LONG_COUNT),
        ({"max_orders_per_cycle": "-1"}, f"rule max_orders_per_cycle {WHOLE} number ≥ 0, got -1"),
    ],
)  # fmt: skip
def test_rules_out_of_bounds_are_refused_naming_the_rule(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError) as refused:
        RaceRules.from_json(_json(**changes))
    assert str(refused.value) == message


def test_the_bounds_themselves_are_rules() -> None:
    edge = RaceRules.from_json(
        _json(fee_rate="1", max_position_fraction="0", slippage_bps="9999.99", min_cash_reserve=0)
    )
    assert edge.fee_rate == 1 and edge.slippage_bps == D("9999.99")
    assert RaceRules.from_json(_json(max_orders_per_cycle="1E+1")).max_orders_per_cycle == 10
    assert RaceRules.from_json(_json(max_orders_per_cycle=0)).max_orders_per_cycle == 0
    with pytest.raises(KeyError):
        RaceRules.from_json({k: v for k, v in _json().items() if k != "fee_rate"})
    with pytest.raises(ValueError, match="whole number ≥ 0, got True"):
        replace(RaceRules.of(Costs(), RiskLimits()), max_orders_per_cycle=True)
