"""OpenAI-compatible chat providers: where they are and what their calls share.

Four endpoints, each configured by settings (README): ``llama`` (``LLAMA_*``, Groq by
default), ``together`` (``TOGETHER_*``), ``openai`` (``OPENAI_*``) and ``azure``
(``AZURE_OPENAI_*``). Every agent that talks to the same endpoint shares one
:class:`ProviderRuntime` (kept in ``AgentServices.shared``): one rate limiter (requests per
minute and calls in flight), one circuit breaker, and one client per event loop.

:func:`agents.chat.chat_json` makes one resilient call through a runtime.
"""

from __future__ import annotations

import contextlib
import importlib
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from agents._clients import SharedClient
from agents.config import AgentConfigError
from race.clock import Clock
from race.domain.model import Provider
from race.resilience import CircuitBreaker, RateLimiter
from race.secrets import SecretPolicy, policy_of
from race.settings import Settings

if TYPE_CHECKING:  # the SDK takes seconds to import: only when a provider is called
    import openai

_ALIASES = {
    "llama": "llama",
    "groq": "llama",
    "together": "together",
    "openai": "openai",
    "azure": "azure",
    "azureopenai": "azure",
    "azure_openai": "azure",
}
PROVIDER_ENDPOINT = {
    Provider.LLAMA: "llama",
    Provider.OPENAI: "openai",
    Provider.AZURE_OPENAI: "azure",
}


def endpoint_key(name: str) -> str:
    """``"Llama"``, ``"groq"``, ``"Together"``, ``"OpenAI"``, ``"AzureOpenAI"``… → endpoint key."""
    key = _ALIASES.get(name.strip().lower().replace("-", "_"))
    if key is None:
        raise AgentConfigError(
            f"unknown LLM provider {name!r}: choose one of Llama (Groq), Together, OpenAI, "
            "AzureOpenAI"
        )
    return key


@dataclass(frozen=True)
class Endpoint:
    key: str
    label: str
    base_url: str | None
    api_key: SecretStr | None
    default_model: str | None
    calls_per_minute: float
    max_concurrency: int
    key_setting: str
    url_setting: str
    azure_api_version: str | None = None

    @property
    def missing(self) -> str | None:
        """Why this endpoint cannot be called, or None when it is configured."""
        if self.api_key is None or not self.api_key.get_secret_value():
            return f"{self.label} not configured ({self.key_setting} is not set)"
        if not self.base_url:
            return f"{self.label} not configured ({self.url_setting} is not set)"
        return None

    @property
    def host(self) -> str:
        return urlsplit(self.base_url or "").netloc or "?"


def endpoint(settings: Settings, key: str) -> Endpoint:
    s = settings
    if key == "llama":
        return Endpoint(
            "llama",
            "Llama",
            s.llama_base_url,
            s.llama_api_key,
            s.llama_model,
            s.llama_calls_per_minute,
            s.llama_max_concurrency,
            "LLAMA_API_KEY",
            "LLAMA_BASE_URL",
        )
    if key == "together":
        return Endpoint(
            "together",
            "Together",
            s.together_base_url,
            s.together_api_key,
            s.together_model,
            s.together_calls_per_minute,
            s.together_max_concurrency,
            "TOGETHER_API_KEY",
            "TOGETHER_BASE_URL",
        )
    if key == "openai":
        return Endpoint(
            "openai",
            "OpenAI",
            s.openai_base_url,
            s.openai_api_key,
            s.openai_model,
            s.openai_calls_per_minute,
            s.openai_max_concurrency,
            "OPENAI_API_KEY",
            "OPENAI_BASE_URL",
        )
    if key == "azure":
        return Endpoint(
            "azure",
            "Azure OpenAI",
            s.azure_openai_endpoint,
            s.azure_openai_api_key,
            s.azure_openai_deployment,
            s.azure_openai_calls_per_minute,
            s.azure_openai_max_concurrency,
            "AZURE_OPENAI_API_KEY",
            "AZURE_OPENAI_ENDPOINT",
            azure_api_version=s.azure_openai_api_version,
        )
    raise AgentConfigError(f"unknown LLM endpoint {key!r}")


def secrets_of(settings: Settings) -> SecretPolicy:
    """The settings' secret policy (:mod:`race.secrets`): reasons and logs are scrubbed."""
    return settings.secret_policy()


def scrub(text: str, secrets: Iterable[str] | SecretPolicy) -> str:
    return policy_of(secrets).redact(text)


# ---------------------------------------------------------------- shared runtime


class ProviderRuntime:
    """What every agent of one endpoint shares: limiter, breaker and a client per loop."""

    def __init__(self, endpoint: Endpoint, settings: Settings, clock: Clock) -> None:
        self.endpoint = endpoint
        self.timeout = settings.llm_timeout_seconds
        self.limiter = RateLimiter(
            endpoint.calls_per_minute,
            max_concurrent=max(1, endpoint.max_concurrency),
            clock=clock,
        )
        self.breaker = CircuitBreaker(
            failure_threshold=settings.llm_breaker_failures,
            reset_timeout=settings.llm_breaker_reset_seconds,
            clock=clock,
            name=f"{endpoint.label} provider",
        )
        self._tls: ssl.SSLContext | None = None
        self.clients: SharedClient[openai.AsyncOpenAI] = SharedClient(
            self._new_client, _close_client
        )

    def warm_up(self) -> None:
        """Start-up work, so that the first cycle pays none of it: the SDK imported (about
        a second), the CA bundle loaded, and a client made whose chat resource is touched
        (its modules are imported on first use), then dropped unused — clients are made
        per event loop (:attr:`clients`). Nothing is sent: no connection is opened."""
        client = self._new_client()
        client.chat.completions  # noqa: B018 - imports the resource the calls go through
        with contextlib.suppress(ImportError):  # the async backend the first request loads
            importlib.import_module("anyio._backends._asyncio")

    def _tls_context(self) -> ssl.SSLContext:
        import httpx2

        if self._tls is None:  # loading the CA bundle costs ~50 ms: once per provider
            self._tls = httpx2.create_ssl_context()
        return self._tls

    def _new_client(self) -> openai.AsyncOpenAI:
        import openai

        e = self.endpoint
        key = e.api_key.get_secret_value() if e.api_key else ""
        self._tls = self._tls_context()
        http_client = openai.DefaultAsyncHttpxClient(verify=self._tls, timeout=self.timeout)
        if e.key == "azure":
            return openai.AsyncAzureOpenAI(
                azure_endpoint=e.base_url,
                api_key=key,
                api_version=e.azure_api_version,
                timeout=self.timeout,
                max_retries=0,
                http_client=http_client,
            )
        return openai.AsyncOpenAI(
            base_url=e.base_url,
            api_key=key,
            timeout=self.timeout,
            max_retries=0,
            http_client=http_client,
        )


async def _close_client(client: openai.AsyncOpenAI) -> None:
    await client.close()


def provider_runtime(
    shared: dict[str, Any], settings: Settings, clock: Clock, key: str
) -> ProviderRuntime:
    """The endpoint's runtime from ``AgentServices.shared``, made on first use."""
    slot = f"llm.provider.{key}"
    runtime = shared.get(slot)
    if runtime is None:
        runtime = ProviderRuntime(endpoint(settings, key), settings, clock)
        shared[slot] = runtime
    return runtime
