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


PLACEHOLDERS = {
    "RACE_ADMIN_KEY",
    "LLAMA_API_KEY",
    "TOGETHER_API_KEY",
    "OPENAI_API_KEY",
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_DEPLOYMENT",
    "REMOTE_ML_URL",
    "REMOTE_ML_API_KEY",
    "COINGECKO_API_KEY",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
}


def test_the_example_values_load(monkeypatch, caplog):
    """local.settings.example.json copied as is (as the README says): its ``<…>``
    placeholders are unset, never taken as keys anyone can read in the repository."""
    example = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    assert {n for n, v in example.items() if v.startswith("<") and v.endswith(">")} == (
        PLACEHOLDERS
    )
    for name, value in example.items():
        monkeypatch.setenv(name, value)
    with caplog.at_level("WARNING", logger="race.settings"):
        settings = load_settings()
    assert settings.decision_schedule == DECISION_SCHEDULE
    assert settings.database_url == "sqlite:///race.db"
    for name, field in Settings.model_fields.items():
        if field.validation_alias.choices[0] in PLACEHOLDERS:
            assert getattr(settings, name) is None, name
    assert settings.secret_values() == []
    warnings = [r.getMessage() for r in caplog.records if r.name == "race.settings"]
    assert len(warnings) == 1
    assert all(name in warnings[0] for name in PLACEHOLDERS)
    for value in (example[name] for name in PLACEHOLDERS):
        assert value not in warnings[0]


def test_the_example_leaves_admin_disabled_and_telemetry_off(monkeypatch, tmp_path, caplog):
    from fastapi.testclient import TestClient

    from race.api import create_api
    from race.bootstrap import bootstrap

    example = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    for name, value in example.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RACE_DATABASE_URL", f"sqlite:///{tmp_path / 'race.db'}")
    with caplog.at_level("INFO"):
        app = bootstrap()
    try:
        placeholder = example["RACE_ADMIN_KEY"]
        client = TestClient(create_api(app, resume_jobs=False))
        response = client.post("/api/admin/cycles", headers={"X-API-Key": placeholder})
        assert response.status_code == 403, "the published placeholder must not be a key"
        assert not any("ValueError" in r.getMessage() for r in caplog.records)
    finally:
        app.close()


@pytest.mark.parametrize("value", ["<set me>", "  <x; y>  ", "<optional: https://<r>.azure.com>"])
def test_any_setting_written_as_a_placeholder_is_unset(value, caplog):
    with caplog.at_level("WARNING", logger="race.settings"):
        settings = load_settings({"RACE_ADMIN_KEY": value, "RACE_LOG_LEVEL": value})
    assert settings.admin_key is None
    assert settings.log_level == "INFO"  # the default, not the placeholder
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "race.settings"]
    assert "RACE_ADMIN_KEY" in warning and "RACE_LOG_LEVEL" in warning
    assert value.strip() not in warning


def test_real_values_with_angle_brackets_inside_are_kept(caplog):
    with caplog.at_level("WARNING", logger="race.settings"):
        settings = load_settings({"RACE_ADMIN_KEY": "a<b>c", "OPENAI_API_KEY": "<only-start"})
    assert settings.admin_key.get_secret_value() == "a<b>c"
    assert settings.openai_api_key.get_secret_value() == "<only-start"
    assert not [r for r in caplog.records if r.name == "race.settings"]


END = datetime(9999, 12, 31, 23, 45, tzinfo=UTC)
START = datetime(1, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("when", "slot", "following"),
    [
        (datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), END, None),
        (datetime.max.replace(tzinfo=UTC), END, None),
        (START, START, START + timedelta(minutes=15)),
        (datetime.min.replace(tzinfo=UTC), START, START + timedelta(minutes=15)),
    ],
)
def test_the_ends_of_time_are_value_errors_never_overflow(when, slot, following):
    assert scheduled_time(DECISION_SCHEDULE, when) == slot
    if following is None:
        with pytest.raises(ValueError, match="has no next slot of schedule"):
            next_time(DECISION_SCHEDULE, when)
    else:
        assert next_time(DECISION_SCHEDULE, when) == following
