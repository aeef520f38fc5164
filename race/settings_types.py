"""The value types of :class:`race.settings.Settings` (how an environment string becomes a
value) and the placeholder test; re-exported by :mod:`race.settings`."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AliasChoices, BeforeValidator, Field
from pydantic_settings import NoDecode

from race.domain.timeutil import parse_interval

_PLACEHOLDER = re.compile(r"\s*<.*>\s*", re.DOTALL)


def is_placeholder(value: Any) -> bool:
    """A value written ``<like this>``: the comment-like placeholder of
    ``local.settings.example.json``, never a real value."""
    return isinstance(value, str) and _PLACEHOLDER.fullmatch(value) is not None


def _csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _none_if_blank(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() in ("", "none", "off"):
        return None
    return value


def _interval(value: Any) -> Any:
    return parse_interval(value) if isinstance(value, str | timedelta) else value


Interval = Annotated[timedelta, BeforeValidator(_interval)]
CsvList = Annotated[list[str], NoDecode, BeforeValidator(_csv)]
OptionalDecimal = Annotated[Decimal | None, BeforeValidator(_none_if_blank)]
OptionalFloat = Annotated[float | None, BeforeValidator(_none_if_blank)]
OptionalSchedule = Annotated[str | None, BeforeValidator(_none_if_blank)]


def _env(name: str, *, default: Any) -> Any:
    return Field(default=default, validation_alias=AliasChoices(name, name.lower()))
