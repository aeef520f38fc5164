"""What a backtest with LLM participants may cost: one call per cycle and LLM agent, each at
its worst case as the LLM agent's budget check estimates it before a call
(:func:`agents.pricing.worst_case`: the longest prompt ``LLM_PROMPT_MAX_CHARS`` allows
plus ``max_tokens`` of answer), priced by the agent's ``price`` param or ``LLM_PRICES``."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from race.backtest import BacktestPlan, Participant
from race.domain.model import Provider
from race.settings import Settings

LLM_PROVIDERS = (Provider.LLAMA, Provider.OPENAI, Provider.AZURE_OPENAI)


@dataclass(frozen=True)
class AgentCost:
    name: str
    calls: int
    per_call: Decimal | None
    """None: no price known for its model (``LLM_PRICES``) or not a priced LLM."""
    note: str | None = None

    @property
    def total(self) -> Decimal | None:
        return None if self.per_call is None else self.per_call * self.calls


@dataclass(frozen=True)
class CostEstimate:
    calls: int
    agents: list[AgentCost]

    @property
    def total(self) -> Decimal:
        return sum((a.total for a in self.agents if a.total is not None), Decimal(0))

    @property
    def unpriced(self) -> list[AgentCost]:
        return [a for a in self.agents if a.per_call is None]

    def render(self) -> list[str]:
        lines = [
            f"{self.calls:,} LLM call(s) (cycles x network agents); estimated cost at most "
            f"{self.total.quantize(Decimal('0.01'))} USD"
        ]
        for agent in self.agents:
            if agent.total is None:
                lines.append(
                    f"  {agent.name}: {agent.calls:,} call(s), cost unknown ({agent.note})"
                )
            else:
                lines.append(
                    f"  {agent.name}: {agent.calls:,} call(s) x at most {agent.per_call:.6f} USD "
                    f"= {agent.total.quantize(Decimal('0.01'))} USD"
                )
        return lines


def _per_call(participant: Participant, settings: Settings) -> tuple[Decimal | None, str | None]:
    from agents.config import AgentConfigError, integer
    from agents.pricing import parse_price_table, price_for, price_override, worst_case
    from agents.registry import default_model

    if participant.provider not in LLM_PROVIDERS:
        return None, "not a priced LLM (remote model or ensemble)"
    model = participant.model or default_model(participant.provider, settings) or ""
    try:
        price = price_override(participant.params) or price_for(
            parse_price_table(settings.llm_prices), model
        )
        max_tokens = integer(participant.params, "max_tokens", settings.llm_max_tokens, 16, 32_000)
    except (AgentConfigError, ValueError) as exc:
        return None, str(exc)
    if price is None:
        return None, f"no price for model {model!r} (set LLM_PRICES)"
    return worst_case(price, settings.llm_prompt_max_chars, max_tokens).cost, None


def estimate(plan: BacktestPlan, settings: Settings) -> CostEstimate:
    """The calls and worst-case cost of ``plan``'s network agents over its cycles."""
    agents = []
    for participant in plan.network_agents:
        per_call, note = _per_call(participant, settings)
        agents.append(AgentCost(participant.name, plan.cycles, per_call, note))
    return CostEstimate(calls=plan.cycles * len(agents), agents=agents)
