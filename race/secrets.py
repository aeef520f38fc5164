"""The one secret policy: which values are secret and how they are hidden.

Every secret value comes from the settings — each :class:`~pydantic.SecretStr` (provider
API keys, the CoinGecko key, the admin key, the Application Insights connection string),
the password of ``RACE_DATABASE_URL`` wherever the URL carries it (``user:password@``,
``?password=…``, ``odbc_connect=…PWD=…``) and the keys agents name with their
``api_key_setting`` param. :meth:`SecretPolicy.redact` replaces each one, in its plain form
and in the escaped forms a secret takes when it passes through JSON (``\\uXXXX``), a URL
(percent-encoding) or ``repr``, by ``[redacted:SETTING_NAME]``.

The engine applies it to every decision field before it is stored, the logging and
telemetry filters to every record sent, and the API to every response body.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus

from pydantic import SecretStr

from race.store.urls import url_secrets

MIN_SECRET_LENGTH = 4
"""Shorter values are not treated as secrets (replacing "ab" everywhere would garble text)."""


def marker(name: str) -> str:
    return f"[redacted:{name}]"


def database_passwords(url: str) -> list[str]:
    """Every password a database URL carries, in any position and form
    (:func:`race.store.urls.url_secrets`)."""
    return [p for p in url_secrets(url) if len(p) >= MIN_SECRET_LENGTH]


def _forms(value: str) -> list[str]:
    """The value and the escaped forms it takes in JSON, URLs and ``repr``."""
    forms = [
        value,
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        "".join(f"\\u{ord(c):04x}" for c in value),
        "".join(f"\\u{ord(c):04X}" for c in value),
        quote(value, safe=""),
        quote_plus(value, safe=""),
        re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(value, safe="")),
        re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote_plus(value, safe="")),
        repr(value)[1:-1],
    ]
    return [f for f in dict.fromkeys(forms) if len(f) >= MIN_SECRET_LENGTH]


@dataclass(frozen=True)
class SecretPolicy:
    """Named secret values; :meth:`redact` hides them (and their escaped forms) in text."""

    secrets: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        pairs: list[tuple[str, str]] = []
        for name, value in self.secrets.items():
            if value and len(value) >= MIN_SECRET_LENGTH:
                pairs.extend((form, name) for form in _forms(value))
        pairs.sort(key=lambda p: len(p[0]), reverse=True)
        object.__setattr__(self, "_pairs", tuple(pairs))
        pattern = re.compile("|".join(re.escape(form) for form, _ in pairs)) if pairs else None
        lookup = {form: name.split("#")[0] for form, name in reversed(pairs)}
        object.__setattr__(self, "_pattern", pattern)
        object.__setattr__(self, "_lookup", lookup)

    @classmethod
    def from_settings(cls, settings: Any, extra: Mapping[str, str] | None = None) -> SecretPolicy:
        """Every secret in ``settings`` (by its environment name), plus ``extra``."""
        named: dict[str, str] = {}
        fields = type(settings).model_fields
        for name, info in fields.items():
            value = getattr(settings, name, None)
            env = _env_name(name, info)
            if isinstance(value, SecretStr) and value.get_secret_value():
                named[env] = value.get_secret_value()
        url = getattr(settings, "database_url", None)
        if isinstance(url, str):
            for index, password in enumerate(database_passwords(url)):
                named[f"RACE_DATABASE_URL{'' if index == 0 else f'#{index}'}"] = password
        for name, value in (extra or {}).items():
            if value:
                named[name] = value
        return cls(named)

    @classmethod
    def from_values(cls, values: Iterable[str]) -> SecretPolicy:
        """A policy of bare values (each named ``secret``)."""
        return policy_of(values)

    def with_secrets(self, extra: Mapping[str, str]) -> SecretPolicy:
        merged = dict(self.secrets)
        merged.update({k: v for k, v in extra.items() if v})
        return SecretPolicy(merged)

    @property
    def values(self) -> list[str]:
        return [v for v in self.secrets.values() if v and len(v) >= MIN_SECRET_LENGTH]

    def __bool__(self) -> bool:
        return self._pattern is not None  # type: ignore[attr-defined]

    def redact(self, text: str) -> str:
        pattern: re.Pattern[str] | None = self._pattern  # type: ignore[attr-defined]
        if pattern is None or not text:
            return text
        lookup: dict[str, str] = self._lookup  # type: ignore[attr-defined]
        if not any(form in text for form in lookup):
            return text  # the common case, without a regular-expression scan
        return pattern.sub(lambda m: marker(lookup.get(m.group(0), "secret")), text)

    def contains(self, text: str) -> bool:
        pattern: re.Pattern[str] | None = self._pattern  # type: ignore[attr-defined]
        return bool(pattern is not None and text and pattern.search(text))

    def redact_value(self, value: Any) -> Any:
        """``value`` with every string in it (keys too, nested lists and mappings) redacted."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, list | tuple):
            return [self.redact_value(v) for v in value]
        if isinstance(value, dict):
            return {self.redact_value(k): self.redact_value(v) for k, v in value.items()}
        return value


def _env_name(name: str, info: Any) -> str:
    alias = getattr(info, "validation_alias", None) or getattr(info, "alias", None)
    if isinstance(alias, str):
        return alias
    choices = getattr(alias, "choices", None)
    if choices:
        first = choices[0]
        if isinstance(first, str):
            return first
    return name.upper()


def policy_of(secrets: Iterable[str] | SecretPolicy) -> SecretPolicy:
    """A policy from a policy or from bare values (named ``secret``)."""
    if isinstance(secrets, SecretPolicy):
        return secrets
    values = [s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH]
    return SecretPolicy({f"secret#{i}": v for i, v in enumerate(values)})
