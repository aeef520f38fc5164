"""What a language-model call costs, and how much an agent may spend per UTC day.

Prices are USD per million input (prompt) and output (completion) tokens, from the
``LLM_PRICES`` setting (``model=input/output`` entries). An agent's ``price`` param
(``{"input": 0.59, "output": 0.79}``) overrides the table, e.g. for an Azure deployment
whose name is not a model name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from agents.config import AgentConfigError, optional_usd
from race.domain.money import to_decimal
from race.settings import Settings

MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class Price:
    input_per_million: Decimal
    output_per_million: Decimal

    def cost(self, prompt_tokens: int | None, completion_tokens: int | None) -> Decimal:
        return (
            Decimal(prompt_tokens or 0) * self.input_per_million
            + Decimal(completion_tokens or 0) * self.output_per_million
        ) / MILLION


def _usd(text: object, where: str) -> Decimal:
    try:
        value = to_decimal(text, field=where)
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    if value < 0:
        raise ValueError(f"{where} must be ≥ 0, got {value}")
    return value


def parse_price_table(entries: Sequence[str]) -> dict[str, Price]:
    """``["llama-3.3-70b-versatile=0.59/0.79", …]`` → prices by model name."""
    table: dict[str, Price] = {}
    for entry in entries:
        model, sep, prices = entry.rpartition("=")
        given_in, slash, given_out = prices.partition("/")
        if not sep or not slash or not model.strip():
            raise ValueError(
                f"LLM_PRICES entry {entry!r} must look like model=input/output "
                "(USD per million tokens), e.g. llama-3.3-70b-versatile=0.59/0.79"
            )
        where = f"LLM_PRICES entry {entry!r}"
        table[model.strip()] = Price(_usd(given_in.strip(), where), _usd(given_out.strip(), where))
    return table


def price_for(table: Mapping[str, Price], model: str) -> Price | None:
    found = table.get(model)
    if found is not None:
        return found
    lowered = model.lower()
    for name, price in table.items():
        if name.lower() == lowered:
            return price
    return None


def price_override(params: Mapping[str, Any]) -> Price | None:
    raw = params.get("price")
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or set(raw) != {"input", "output"}:
        raise AgentConfigError(
            'param \'price\' must be {"input": USD per million tokens, "output": …}'
        )
    _, given_in = optional_usd(raw, "input")
    _, given_out = optional_usd(raw, "output")
    if given_in is None or given_out is None:
        raise AgentConfigError("param 'price' needs numbers for 'input' and 'output'")
    return Price(given_in, given_out)


def daily_budget(params: Mapping[str, Any], settings: Settings) -> Decimal | None:
    """The agent's ``daily_budget_usd`` param (null = no limit), else ``LLM_DAILY_BUDGET_USD``."""
    given, value = optional_usd(params, "daily_budget_usd")
    return value if given else settings.llm_daily_budget_usd


def budget_exhausted(
    spent_today: Decimal, budget: Decimal | None, cycle_time: datetime
) -> str | None:
    """The HOLD reason when today's spend has reached the budget, else None."""
    if budget is None or spent_today < budget:
        return None
    resume = cycle_time.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    return (
        f"budget exhausted: spent {plain(spent_today)} of {plain(budget)} USD today (UTC); "
        f"resumes {resume.isoformat()}"
    )


def plain(value: Decimal) -> str:
    """``Decimal("10.500")`` → ``"10.5"``, never exponent notation."""
    return f"{value.normalize():f}" if value else "0"
