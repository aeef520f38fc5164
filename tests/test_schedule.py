"""Schedule slots (NCRONTAB) and the settings files that list them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from race.schedule import next_time, scheduled_time, validate
from race.settings import DECISION_SCHEDULE, Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
T = datetime(2024, 5, 1, 10, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "slot"),
    [
        (T, T),
        (T + timedelta(milliseconds=300), T),
        (T - timedelta(milliseconds=500), T),  # a timer firing a hair early
        (T + timedelta(minutes=14, seconds=59), T),  # late (past due): still its own slot
        (T + timedelta(minutes=15), T + timedelta(minutes=15)),
    ],
)
def test_scheduled_time(now, slot):
    assert scheduled_time(DECISION_SCHEDULE, now) == slot


@given(
    st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
    )
)
def test_slots_are_on_the_grid_and_not_after_now(now):
    slot = scheduled_time(DECISION_SCHEDULE, now)
    assert slot <= now + timedelta(seconds=1)
    assert now - slot < timedelta(minutes=15, seconds=1)
    assert slot.minute % 15 == 0 and slot.second == 0 and slot.microsecond == 0
    assert next_time(DECISION_SCHEDULE, slot) == slot + timedelta(minutes=15)


@pytest.mark.parametrize("bad", ["*/15 * * * *", "nonsense", "0 61 * * * *", ""])
def test_bad_schedules_are_named(bad):
    with pytest.raises(ValueError, match="schedule"):
        validate(bad)


def test_local_settings_example_lists_every_setting():
    example = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    names = {field.validation_alias.choices[0] for field in Settings.model_fields.values()}
    functions_only = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage", "AzureWebJobsFeatureFlags"}
    assert names - set(example) == set(), "settings missing from local.settings.example.json"
    assert set(example) - names - functions_only == set(), "unknown names in the example"


def test_the_example_values_load(monkeypatch):
    example = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    for name, value in example.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.decision_schedule == DECISION_SCHEDULE
    assert settings.database_url == "sqlite:///race.db"
