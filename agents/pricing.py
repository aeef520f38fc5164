"""What a language-model call costs, and how much an agent may spend per UTC day.

Prices are USD per million input (prompt) and output (completion) tokens, from the
``LLM_PRICES`` setting (``model=input/output`` entries). An agent's ``price`` param
(``{"input": 0.59, "output": 0.79}``) overrides the table, e.g. for an Azure deployment
whose name is not a model name.

A daily budget is never overshot by a call: before each call its worst case (the prompt's
estimated tokens plus ``max_tokens`` of answer) must still fit in what is left.
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


CHARS_PER_TOKEN = 4
"""Rough characters per token, for estimates: the worst case of a call before it is made,
and the usage of an answer that came without ``usage``."""


def estimate_tokens(text_or_chars: str | int) -> int:
    """Tokens in a text (or a character count), estimated as characters / 4 rounded up."""
    chars = text_or_chars if isinstance(text_or_chars, int) else len(text_or_chars)
    return -(-max(chars, 0) // CHARS_PER_TOKEN)


@dataclass(frozen=True)
class WorstCase:
    """The most a call can cost: its estimated prompt and ``max_tokens`` of answer."""

    prompt_tokens: int
    completion_tokens: int
    cost: Decimal


def worst_case(price: Price, prompt_chars: int, max_tokens: int) -> WorstCase:
    prompt_tokens = estimate_tokens(prompt_chars)
    return WorstCase(prompt_tokens, max_tokens, price.cost(prompt_tokens, max_tokens))


def _resumes(cycle_time: datetime) -> str:
    start = cycle_time.replace(hour=0, minute=0, second=0, microsecond=0)
    return (start + timedelta(days=1)).isoformat()


def budget_exhausted(
    spent_today: Decimal,
    budget: Decimal | None,
    cycle_time: datetime,
    next_call: WorstCase | None = None,
) -> str | None:
    """The HOLD reason when today's spend has reached the budget, or when the next call's
    worst case (``next_call``) would take it over the budget; else None."""
    if budget is None:
        return None
    spent = f"spent {plain(spent_today)} of {plain(budget)} USD today (UTC)"
    if spent_today >= budget:
        return f"budget exhausted: {spent}; resumes {_resumes(cycle_time)}"
    if next_call is not None and spent_today + next_call.cost > budget:
        return (
            f"budget exhausted: {spent} and the next call may cost up to "
            f"{plain(next_call.cost)} USD (≈{next_call.prompt_tokens} prompt tokens + "
            f"max_tokens {next_call.completion_tokens}); resumes {_resumes(cycle_time)}"
        )
    return None


def plain(value: Decimal) -> str:
    """``Decimal("10.500")`` → ``"10.5"``, never exponent notation."""
    return f"{value.normalize():f}" if value else "0"
