"""The domain's fast paths (race/domain/lazy.py): ``cached`` computes once per instance and
``assemble`` builds the same value as the dataclass's own ``__init__``."""

from __future__ import annotations

import asyncio
from dataclasses import FrozenInstanceError, dataclass, fields, replace
from datetime import UTC, datetime
from decimal import Decimal as D

import pytest

from agents.baselines import SmaCross
from race.clock import ManualClock
from race.domain.agent import AgentContext, AgentSpec
from race.domain.lazy import cached
from race.domain.model import MarketView, Portfolio, Provider
from race.domain.step import DecisionRecord, ViewSummary, judge
from race.settings import Settings
from race.usecases.deciding import Deciding
from tests.factories import make_candles

T0 = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class _Counted:
    calls: list[int]

    @cached
    def value(self) -> int:
        self.calls.append(1)
        return len(self.calls)


def test_cached_computes_once_per_instance_and_documents_itself() -> None:
    one, other = _Counted([]), _Counted([])
    assert (one.value, one.value, one.value) == (1, 1, 1)
    assert other.value == 1 and len(one.calls) == 1
    assert isinstance(_Counted.value, cached) and _Counted.value.name == "value"


def test_a_cached_method_is_stored_under_the_name_it_is_bound_to() -> None:
    def compute(self: object) -> int:
        """The doc."""
        return 7

    descriptor = cached(compute)
    assert (descriptor.func, descriptor.name, descriptor.__doc__) == (
        compute,
        "compute",
        "The doc.",
    )
    Holder = type("Holder", (), {"answer": descriptor})  # __set_name__ renames it
    holder = Holder()
    assert descriptor.name == "answer" and holder.answer == 7
    assert vars(holder) == {"answer": 7}


def _context() -> AgentContext:
    closes = [D(100 + i) for i in range(40)]
    view = MarketView(as_of=T0, candles={"BTC": make_candles("BTC", T0, closes)})
    deciding = Deciding(Settings(), lambda spec: SmaCross({}), ManualClock(T0))
    return deciding.context_of(
        AgentSpec(1, "a", Provider.MOCK), Portfolio(cash=D(1000)), D(1000), view, T0, ["BTC"]
    )


def test_an_assembled_context_equals_the_constructed_one_and_stays_frozen() -> None:
    context = _context()
    names = {f.name for f in fields(AgentContext)}
    assert set(vars(context)) == names
    assert context == AgentContext(**{n: getattr(context, n) for n in names})
    with pytest.raises(FrozenInstanceError):
        context.cycle_time = T0  # type: ignore[misc]
    assert context.equity == D(1000) and "equity" in vars(context)


def test_judges_record_has_every_field_and_equals_the_constructed_one() -> None:
    context = _context()
    answer = asyncio.run(SmaCross({}).decide(context))
    record = judge(context, answer, summary=ViewSummary(context.market, "BTC")).decision
    names = [f.name for f in fields(DecisionRecord)]
    assert list(vars(record)) == names
    rebuilt = DecisionRecord(**vars(record))
    assert record == rebuilt and repr(record) == repr(rebuilt) and hash(record.cycle_time)
    assert replace(record, regime="X").regime == "X" and record.regime != "X"
    with pytest.raises(FrozenInstanceError):
        record.regime = "X"  # type: ignore[misc]
