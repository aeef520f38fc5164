"""The optional contestants ``python -m race demo`` seeds next to the baselines: a language
model agent for each provider whose settings are present, and the ML agent (whose model
the demo trains first with :func:`race.ml_service.train_model`).

The Llama agent falls back to Together when ``TOGETHER_API_KEY`` is set too. (To run Llama
on Together only, point ``LLAMA_BASE_URL``/``LLAMA_API_KEY``/``LLAMA_MODEL`` at it.)"""

from __future__ import annotations

from agents.ml import DEFAULT_MODEL_NAME
from agents.providers import endpoint
from race.domain.model import Provider
from race.settings import Settings
from race.universe import NewAgent

LLM_INSTRUCTIONS = (
    "Trade BTC and ETH on a multi-hour horizon. Follow the trend when momentum and the "
    "regime agree, stay in cash when signals conflict or volatility spikes, and size "
    "positions modestly (10-25% of equity per entry). Take profit into overbought RSI and "
    "cut losers that break below their SMA20."
)
ML_AGENT_NAME = "ML Gradient Boost"


def optional_agents(settings: Settings) -> list[NewAgent]:
    agents: list[NewAgent] = []
    together = endpoint(settings, "together")
    fallback = [{"provider": "Together"}] if together.missing is None else []
    if endpoint(settings, "llama").missing is None:
        agents.append(
            NewAgent(
                name=f"Llama ({settings.llama_model})"[:100],
                provider=Provider.LLAMA,
                model=settings.llama_model,
                strategy="LLM trend follower with risk control",
                instructions=LLM_INSTRUCTIONS,
                params={"fallback": fallback} if fallback else {},
            )
        )
    if endpoint(settings, "openai").missing is None:
        agents.append(
            NewAgent(
                name=f"OpenAI ({settings.openai_model})"[:100],
                provider=Provider.OPENAI,
                model=settings.openai_model,
                strategy="LLM trend follower with risk control",
                instructions=LLM_INSTRUCTIONS,
            )
        )
    azure = endpoint(settings, "azure")
    if azure.missing is None and azure.default_model:
        agents.append(
            NewAgent(
                name=f"Azure OpenAI ({azure.default_model})"[:100],
                provider=Provider.AZURE_OPENAI,
                model=azure.default_model,
                strategy="LLM trend follower with risk control",
                instructions=LLM_INSTRUCTIONS,
            )
        )
    agents.append(
        NewAgent(
            name=ML_AGENT_NAME,
            provider=Provider.CUSTOM_ML,
            model=DEFAULT_MODEL_NAME,
            strategy="Gradient boosting on candle features: P(up over 4 candles)",
            params={},
        )
    )
    return agents
