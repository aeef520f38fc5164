"""Whether a model may have seen the race period in training (docs/analytics.md).

A language model whose training data reaches into the race period may "remember" the
prices it is asked to trade on. A participant is **possibly contaminated** when the race
period starts on or before its model's training cut-off. Published cut-offs are given to
the month; a month is taken to end on its last day (the conservative reading: a race that
starts within the cut-off month is flagged).

The table below holds the models the project names (``LLAMA_MODEL``, ``TOGETHER_MODEL``,
``OPENAI_MODEL`` defaults and the ``LLM_PRICES`` table); a setting extends or overrides it
with entries ``model=YYYY-MM-DD`` or ``model=YYYY-MM`` (:func:`parse_cutoffs`). Model names
match case-insensitively, and a provider prefix (``meta-llama/``) is ignored.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from race.domain.timeutil import ensure_utc


def _month_end(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])


KNOWN_CUTOFFS: dict[str, date] = {
    # Each source below was read through the project's reference search; a cut-off
    # published to the month is that month's last day.
    #
    # Llama 3.3 70B: "Knowledge cutoff date: December 2023" (Google Cloud, Vertex AI model
    # page "Llama 3.3 70B", https://cloud.google.com/vertex-ai/generative-ai/docs/
    # partner-models/llama/llama3-3). Groq serves it as llama-3.3-70b-versatile, Together as
    # meta-llama/Llama-3.3-70B-Instruct-Turbo.
    "llama-3.3-70b-versatile": _month_end(2023, 12),
    "llama-3.3-70b-instruct-turbo": _month_end(2023, 12),
    "llama-3.3-70b-instruct": _month_end(2023, 12),
    # Llama 3.1 8B / 70B / 405B: "Knowledge cutoff: December 2023" (Meta's Llama 3.1 model
    # card, table "Training Data … Knowledge cutoff", as published with the weights on
    # Hugging Face, e.g. https://huggingface.co/NousResearch/Meta-Llama-3.1-70B). Groq
    # serves the 8B as llama-3.1-8b-instant.
    "llama-3.1-8b-instant": _month_end(2023, 12),
    "llama-3.1-8b-instruct": _month_end(2023, 12),
    "llama-3.1-70b-instruct": _month_end(2023, 12),
    "llama-3.1-405b-instruct": _month_end(2023, 12),
    # Llama 3 8B: March 2023; Llama 3 70B: December 2023 (Meta's Llama 3 model card, "Data
    # Freshness" and "Knowledge cutoff", https://huggingface.co/meta-llama/
    # Meta-Llama-3-8B-Instruct; the card's "7B" typo was corrected to 8B in its discussion
    # #57).
    "meta-llama-3-8b-instruct": _month_end(2023, 3),
    "meta-llama-3-70b-instruct": _month_end(2023, 12),
    "llama3-8b-8192": _month_end(2023, 3),
    "llama3-70b-8192": _month_end(2023, 12),
    # GPT-4o (all snapshots) and GPT-4o mini: October 2023 ("Training data: Up to Oct 2023"
    # from the model card https://platform.openai.com/docs/models/gpt-4o as quoted in
    # GitLab's model-evaluation request gitlab-org/…/prompt-library issue 297; ChatGPT's
    # system prompt for GPT-4o mini states "Knowledge cutoff: 2023-10").
    "gpt-4o": _month_end(2023, 10),
    "gpt-4o-2024-05-13": _month_end(2023, 10),
    "gpt-4o-2024-08-06": _month_end(2023, 10),
    "gpt-4o-mini": _month_end(2023, 10),
    "gpt-4o-mini-2024-07-18": _month_end(2023, 10),
    # GPT-4.1, 4.1 mini and 4.1 nano: June 2024 ("All three variants share a knowledge
    # cutoff of June 2024", citing OpenAI's "Introducing GPT-4.1 in the API", 14 April
    # 2025; https://vercel.com/ai-gateway/models/gpt-4.1/faq says the same).
    "gpt-4.1": _month_end(2024, 6),
    "gpt-4.1-mini": _month_end(2024, 6),
    "gpt-4.1-nano": _month_end(2024, 6),
}

_ENTRY = re.compile(r"^(?P<year>\d{4})-(?P<month>\d{2})(?:-(?P<day>\d{2}))?$")


def normalise(model: str) -> str:
    """``meta-llama/Llama-3.3-70B-Instruct-Turbo`` → ``llama-3.3-70b-instruct-turbo``."""
    return model.strip().rsplit("/", 1)[-1].strip().lower()


def parse_cutoff(text: str) -> date:
    """``YYYY-MM-DD``, or ``YYYY-MM`` for the month's last day."""
    match = _ENTRY.match(text.strip())
    if match is None:
        raise ValueError(f"cut-off {text!r} must be YYYY-MM-DD or YYYY-MM")
    year, month = int(match["year"]), int(match["month"])
    try:
        if match["day"] is None:
            return _month_end(year, month)
        return date(year, month, int(match["day"]))
    except ValueError as exc:
        raise ValueError(f"cut-off {text!r} is not a date: {exc}") from None


def parse_cutoffs(value: str | Sequence[str]) -> dict[str, date]:
    """A setting's value, ``"model=YYYY-MM-DD,other=YYYY-MM"`` (or its list of entries),
    → cut-offs by normalised model name. Blank entries are skipped; a malformed entry
    raises ``ValueError`` naming it. The model name may contain ``=``: the last one splits."""
    entries = value.split(",") if isinstance(value, str) else list(value)
    table: dict[str, date] = {}
    for entry in entries:
        if not entry.strip():
            continue
        model, sep, when = entry.rpartition("=")
        if not sep or not model.strip():
            raise ValueError(
                f"cut-off entry {entry!r} must look like model=YYYY-MM-DD, "
                "e.g. llama-3.3-70b-versatile=2023-12-31"
            )
        try:
            table[normalise(model)] = parse_cutoff(when)
        except ValueError as exc:
            raise ValueError(f"cut-off entry {entry!r}: {exc}") from None
    return table


def cutoff_table(extra: Mapping[str, date] | None = None) -> dict[str, date]:
    """The known cut-offs, extended (and overridden) by ``extra``."""
    table = dict(KNOWN_CUTOFFS)
    for model, when in (extra or {}).items():
        table[normalise(model)] = when
    return table


def cutoff_of(model: str | None, table: Mapping[str, date]) -> date | None:
    if model is None or not model.strip():
        return None
    return table.get(normalise(model))


@dataclass(frozen=True)
class ContaminationFlag:
    model: str | None
    cutoff: date | None
    possibly_contaminated: bool | None
    """None when the model or its cut-off is unknown."""
    reason: str


def contamination(
    model: str | None, race_start: datetime, table: Mapping[str, date] | None = None
) -> ContaminationFlag:
    """Flag a participant whose model's training cut-off is on or after the race's start."""
    start = ensure_utc(race_start, field="race start").date()
    cutoff = cutoff_of(model, KNOWN_CUTOFFS if table is None else table)
    if model is None or not model.strip():
        return ContaminationFlag(None, None, None, "no language model: nothing to remember")
    if cutoff is None:
        return ContaminationFlag(model, None, None, f"training cut-off of {model!r} unknown")
    if start <= cutoff:
        return ContaminationFlag(
            model,
            cutoff,
            True,
            f"race starts {start.isoformat()}, on or before the training cut-off "
            f"{cutoff.isoformat()} of {model!r}: the model may have seen these prices",
        )
    return ContaminationFlag(
        model,
        cutoff,
        False,
        f"race starts {start.isoformat()}, after the training cut-off {cutoff.isoformat()}",
    )
