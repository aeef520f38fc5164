"""race.domain.contamination: the cut-off table, the setting's parser and the flag."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from race.domain.contamination import (
    KNOWN_CUTOFFS,
    ContaminationFlag,
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


def test_the_whole_known_table() -> None:
    december_2023 = date(2023, 12, 31)
    october_2023 = date(2023, 10, 31)
    june_2024 = date(2024, 6, 30)
    assert {
        "llama-3.3-70b-versatile": december_2023,
        "llama-3.3-70b-instruct-turbo": december_2023,
        "llama-3.3-70b-instruct": december_2023,
        "llama-3.1-8b-instant": december_2023,
        "llama-3.1-8b-instruct": december_2023,
        "llama-3.1-70b-instruct": december_2023,
        "llama-3.1-405b-instruct": december_2023,
        "meta-llama-3-8b-instruct": date(2023, 3, 31),
        "meta-llama-3-70b-instruct": december_2023,
        "llama3-8b-8192": date(2023, 3, 31),
        "llama3-70b-8192": december_2023,
        "gpt-4o": october_2023,
        "gpt-4o-2024-05-13": october_2023,
        "gpt-4o-2024-08-06": october_2023,
        "gpt-4o-mini": october_2023,
        "gpt-4o-mini-2024-07-18": october_2023,
        "gpt-4.1": june_2024,
        "gpt-4.1-mini": june_2024,
        "gpt-4.1-nano": june_2024,
    } == KNOWN_CUTOFFS


def test_normalise_keeps_only_the_last_path_part() -> None:
    assert normalise("a/b/GPT-4o") == "gpt-4o"
    assert normalise("org/ sub/ Model ") == "model"
    assert normalise("Model") == "model"


def test_parse_errors_word_for_word() -> None:
    with pytest.raises(ValueError) as bad_form:
        parse_cutoff("2023/02")
    assert str(bad_form.value) == "cut-off '2023/02' must be YYYY-MM-DD or YYYY-MM"
    with pytest.raises(ValueError) as bad_month:
        parse_cutoff("2023-13")
    assert str(bad_month.value).startswith("cut-off '2023-13' is not a date: ")  # + Python's words
    with pytest.raises(ValueError) as bad_day:
        parse_cutoff("2023-02-29")
    assert str(bad_day.value).startswith("cut-off '2023-02-29' is not a date: ")
    with pytest.raises(ValueError) as no_model:
        parse_cutoffs(" =2024-01")
    assert str(no_model.value) == (
        "cut-off entry ' =2024-01' must look like model=YYYY-MM-DD, "
        "e.g. llama-3.3-70b-versatile=2023-12-31"
    )
    with pytest.raises(ValueError) as bad_date:
        parse_cutoffs("m=2024")
    assert str(bad_date.value) == (
        "cut-off entry 'm=2024': cut-off '2024' must be YYYY-MM-DD or YYYY-MM"
    )


def test_the_flags_word_for_word() -> None:
    start = datetime(2024, 6, 30, 12, tzinfo=UTC)
    assert contamination("GPT-4.1", start) == ContaminationFlag(
        "GPT-4.1",
        date(2024, 6, 30),
        True,
        "race starts 2024-06-30, on or before the training cut-off 2024-06-30 of 'GPT-4.1': "
        "the model may have seen these prices",
    )
    assert contamination("gpt-4.1", start + timedelta(days=1)) == ContaminationFlag(
        "gpt-4.1",
        date(2024, 6, 30),
        False,
        "race starts 2024-07-01, after the training cut-off 2024-06-30",
    )
    assert contamination("mystery", start) == ContaminationFlag(
        "mystery", None, None, "training cut-off of 'mystery' unknown"
    )
    nothing = ContaminationFlag(None, None, None, "no language model: nothing to remember")
    assert contamination(None, start) == nothing
    assert contamination(" ", start) == nothing
    assert cutoff_of(" ", KNOWN_CUTOFFS) is None and cutoff_of(None, KNOWN_CUTOFFS) is None
    with pytest.raises(ValueError) as naive:
        contamination("gpt-4o", datetime(2024, 1, 1))
    assert str(naive.value) == (
        "race start must be timezone-aware (UTC), got naive 2024-01-01T00:00:00"
    )
