"""race.domain.contamination: the cut-off table, the setting's parser and the flag."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from race.domain.contamination import (
    KNOWN_CUTOFFS,
    contamination,
    cutoff_of,
    cutoff_table,
    normalise,
    parse_cutoff,
    parse_cutoffs,
)
from race.settings import Settings


def test_every_model_the_project_names_has_a_cutoff() -> None:
    settings = Settings()
    names = [settings.llama_model, settings.together_model, settings.openai_model]
    names += [entry.rpartition("=")[0] for entry in settings.llm_prices]
    for name in names:
        assert cutoff_of(name, KNOWN_CUTOFFS) is not None, name


def test_published_cutoffs() -> None:
    assert KNOWN_CUTOFFS["llama-3.3-70b-versatile"] == date(2023, 12, 31)
    assert KNOWN_CUTOFFS["llama-3.1-8b-instant"] == date(2023, 12, 31)
    assert KNOWN_CUTOFFS["gpt-4o-mini"] == date(2023, 10, 31)
    assert KNOWN_CUTOFFS["gpt-4.1-mini"] == date(2024, 6, 30)
    assert all(key == normalise(key) for key in KNOWN_CUTOFFS)


def test_normalise_drops_the_provider_prefix_and_case() -> None:
    assert normalise(" meta-llama/Llama-3.3-70B-Instruct-Turbo ") == "llama-3.3-70b-instruct-turbo"
    assert normalise("GPT-4o-mini") == "gpt-4o-mini"


def test_parse_cutoff_day_or_month_end() -> None:
    assert parse_cutoff("2024-03-15") == date(2024, 3, 15)
    assert parse_cutoff("2024-02") == date(2024, 2, 29)  # leap year
    assert parse_cutoff(" 2023-02 ") == date(2023, 2, 28)
    for bad in ("2023-13", "2023-02-30", "2023/02/01", "Dec 2023", "", "2023-1-01"):
        with pytest.raises(ValueError, match="cut-off"):
            parse_cutoff(bad)


def test_parse_cutoffs_setting_value() -> None:
    value = "my-model=2025-01-31, Org/Other-Model=2024-07 ,,llama-3.3-70b-versatile=2024-01-15"
    assert parse_cutoffs(value) == {
        "my-model": date(2025, 1, 31),
        "other-model": date(2024, 7, 31),
        "llama-3.3-70b-versatile": date(2024, 1, 15),
    }
    assert parse_cutoffs(["a=2024-01-02", " "]) == {"a": date(2024, 1, 2)}
    assert parse_cutoffs("") == {}
    assert parse_cutoffs("name=with=equals=2024-01") == {"name=with=equals": date(2024, 1, 31)}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("no-date", "must look like model=YYYY-MM-DD"),
        ("=2024-01-01", "must look like model=YYYY-MM-DD"),
        ("m=2024-02-30", "is not a date"),
        ("m=tomorrow", "must be YYYY-MM-DD or YYYY-MM"),
    ],
)
def test_parse_cutoffs_names_the_bad_entry(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_cutoffs(f"ok=2024-01-01,{value}")
    assert repr(value) in str(info.value)


def test_cutoff_table_extends_and_overrides() -> None:
    table = cutoff_table(parse_cutoffs("New/Model=2025-05,LLAMA-3.3-70B-versatile=2024-02-01"))
    assert table["model"] == date(2025, 5, 31)
    assert table["llama-3.3-70b-versatile"] == date(2024, 2, 1)
    assert table["gpt-4o"] == KNOWN_CUTOFFS["gpt-4o"]
    assert KNOWN_CUTOFFS["llama-3.3-70b-versatile"] == date(2023, 12, 31)  # not mutated


def test_flag_when_the_race_starts_on_or_before_the_cutoff() -> None:
    model = "llama-3.3-70b-versatile"
    inside = contamination(model, datetime(2023, 6, 1, tzinfo=UTC))
    assert inside.possibly_contaminated is True
    assert inside.cutoff == date(2023, 12, 31)
    assert "may have seen" in inside.reason
    last_day = contamination(model, datetime(2023, 12, 31, 23, 45, tzinfo=UTC))
    assert last_day.possibly_contaminated is True
    after = contamination(model, datetime(2024, 1, 1, tzinfo=UTC))
    assert after.possibly_contaminated is False
    assert "after the training cut-off 2023-12-31" in after.reason


def test_flag_compares_utc_dates() -> None:
    # 2024-01-01 00:30 at UTC+1 is still 2023-12-31 in UTC: inside the cut-off month.
    plus_one = timezone(timedelta(hours=1))
    flag = contamination("gpt-4o", datetime(2023, 11, 1, 0, 30, tzinfo=plus_one))
    assert flag.possibly_contaminated is True  # 2023-10-31 23:30 UTC
    with pytest.raises(ValueError, match="timezone-aware"):
        contamination("gpt-4o", datetime(2024, 1, 1))


def test_flag_unknown_or_no_model() -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    unknown = contamination("some-new-model", start)
    assert unknown.possibly_contaminated is None and unknown.cutoff is None
    assert "unknown" in unknown.reason
    none = contamination(None, start)
    assert none.possibly_contaminated is None and "no language model" in none.reason
    assert contamination("  ", start).possibly_contaminated is None
    custom = contamination("some-new-model", start, {"some-new-model": date(2024, 3, 31)})
    assert custom.possibly_contaminated is True
    # a given table replaces the known one entirely: use cutoff_table() to extend it
    assert contamination("gpt-4o", start, {}).possibly_contaminated is None
    assert contamination("Meta-Llama/Llama-3.3-70B-Instruct-Turbo", start).cutoff == date(
        2023, 12, 31
    )
