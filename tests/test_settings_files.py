"""Settings the CLI and ``serve`` read beneath the environment: ``.env``, then
``local.settings.json`` Values (in the working directory or ``RACE_SETTINGS_DIR``); ``-v``
says where each came from (never the value); a malformed file is one clear error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from race.bootstrap import bootstrap
from race.cli import main
from race.cli._common import open_app
from race.settings import load_settings
from race.settings_files import (
    SettingsFileError,
    read_dotenv,
    read_local_settings,
    read_sources,
)

ROOT = Path(__file__).resolve().parents[1]
SECRET = "gsk-from-the-file-1234"


def write_local(directory: Path, values: dict[str, object], **extra: object) -> Path:
    path = directory / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": values, **extra}, indent=2))
    return path


@pytest.fixture
def settings_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "settings"
    directory.mkdir()
    monkeypatch.setenv("RACE_SETTINGS_DIR", str(directory))
    for name in ("LLAMA_API_KEY", "RACE_FEE_RATE", "RACE_SLIPPAGE_BPS", "RACE_CONTEXT_CANDLES"):
        monkeypatch.delenv(name, raising=False)
    return directory


def test_environment_then_dotenv_then_local_settings(settings_dir, monkeypatch):
    write_local(
        settings_dir,
        {
            "RACE_FEE_RATE": "0.002",
            "RACE_SLIPPAGE_BPS": "7",
            "race_context_candles": 33,  # any case; numbers as the host takes them
            "LLAMA_API_KEY": SECRET,
        },
    )
    (settings_dir / ".env").write_text(
        "# a comment\nexport RACE_SLIPPAGE_BPS=9\nRACE_FEE_RATE='0.003'  # inline\n"
    )
    monkeypatch.setenv("RACE_FEE_RATE", "0.004")
    settings = load_settings()
    assert str(settings.fee_rate) == "0.004"  # the environment wins
    assert str(settings.slippage_bps) == "9"  # then .env
    assert settings.context_candles == 33  # then local.settings.json
    assert settings.llama_api_key is not None
    assert settings.llama_api_key.get_secret_value() == SECRET
    # overrides (tests, the CLI) win over all of them
    assert str(load_settings({"RACE_SLIPPAGE_BPS": "1"}).slippage_bps) == "1"
    sources = read_sources()
    assert sources.origin("RACE_FEE_RATE") == "environment"
    assert sources.origin("race_slippage_bps") == str(settings_dir / ".env")
    assert sources.origin("LLAMA_API_KEY") == str(settings_dir / "local.settings.json")
    assert sources.origin("RACE_ADMIN_KEY") is None


def test_an_empty_environment_variable_leaves_the_file_value(settings_dir, monkeypatch):
    write_local(settings_dir, {"RACE_SLIPPAGE_BPS": "7"})
    monkeypatch.setenv("RACE_SLIPPAGE_BPS", "")
    assert str(load_settings().slippage_bps) == "7"


def test_the_working_directory_is_the_default(tmp_path, monkeypatch):
    monkeypatch.delenv("RACE_SETTINGS_DIR")
    monkeypatch.delenv("RACE_SLIPPAGE_BPS", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("RACE_SLIPPAGE_BPS=11\n")
    assert str(load_settings().slippage_bps) == "11"


def test_placeholders_copied_from_the_example_are_unset(settings_dir):
    write_local(settings_dir, {"LLAMA_API_KEY": "<your Groq key>"})
    assert load_settings().llama_api_key is None


def test_agents_add_finds_a_key_set_only_in_local_settings(settings_dir, sqlite_url, capsys):
    write_local(settings_dir, {"RACE_DATABASE_URL": sqlite_url, "LLAMA_API_KEY": SECRET})
    assert main(["agents", "add", "--name", "Scalper", "--provider", "Llama"]) == 0
    captured = capsys.readouterr()
    assert "added agent 'Scalper'" in captured.out
    assert "LLAMA_API_KEY is not set" not in captured.err


def test_without_the_file_the_key_is_reported_missing(settings_dir, sqlite_url, capsys):
    write_local(settings_dir, {"RACE_DATABASE_URL": sqlite_url})
    assert main(["agents", "add", "--name", "Scalper", "--provider", "Llama"]) == 0
    assert "LLAMA_API_KEY is not set" in capsys.readouterr().err


def test_a_remote_models_named_key_is_found_in_dotenv(settings_dir, sqlite_url, capsys):
    (settings_dir / ".env").write_text(f"RACE_DATABASE_URL={sqlite_url}\nMY_MODEL_KEY=k-123456\n")
    params = {"url": "https://models.example.com", "api_key_setting": "MY_MODEL_KEY"}
    argv = ["agents", "add", "--name", "Mine", "--provider", "CustomML", "--model", "remote"]
    assert main([*argv, "--params", json.dumps(params)]) == 0
    assert "note:" not in capsys.readouterr().err
    app = bootstrap()
    try:
        assert app.services.environ["MY_MODEL_KEY"] == "k-123456"
    finally:
        app.close()


def test_serve_and_the_cli_open_the_database_named_in_a_file(settings_dir, sqlite_url):
    (settings_dir / ".env").write_text(f'RACE_DATABASE_URL="{sqlite_url}"\n')
    app = open_app(require_schema=False)  # what `serve` opens
    try:
        assert app.settings.database_url == sqlite_url
    finally:
        app.close()


def test_verbose_says_where_each_setting_came_from_never_its_value(
    settings_dir, sqlite_url, capsys, monkeypatch
):
    write_local(settings_dir, {"LLAMA_API_KEY": SECRET})
    (settings_dir / ".env").write_text("RACE_SLIPPAGE_BPS=9\n")
    monkeypatch.setenv("RACE_DATABASE_URL", sqlite_url)
    assert main(["-v", "agents", "list"]) == 0
    err = capsys.readouterr().err
    assert f"setting LLAMA_API_KEY from {settings_dir / 'local.settings.json'}" in err
    assert f"setting RACE_SLIPPAGE_BPS from {settings_dir / '.env'}" in err
    assert "setting RACE_DATABASE_URL from environment" in err
    assert SECRET not in err and sqlite_url not in err


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "local.settings.json",
            '{\n  "Values": {\n    "RACE_FEE_RATE": "0.1",,\n  }\n}\n',
            "local.settings.json, line 3 column 28: not valid JSON: Expecting property name",
        ),
        ("local.settings.json", "[1, 2]", 'must be a JSON object with a "Values" object'),
        ("local.settings.json", '{"Values": ["A=1"]}', '"Values" must be a JSON object'),
        ("local.settings.json", '{"Values": {"A": {"b": 1}}}', '"Values"."A" must be a string'),
        ("local.settings.json", '{"IsEncrypted": true, "Values": {}}', "are encrypted"),
        (".env", "A=1\nLLAMA_API_KEY gsk-secret-value\n", ".env, line 2: expected KEY=value"),
        (".env", "A=1\n\nB='open\n", ".env, line 3: the value's ' quote is never closed"),
        (".env", "my key=1\n", ".env, line 1: 'my key' is not a setting name"),
        (".env", 'A="x" y\n', ".env, line 1: unexpected text after the quoted value"),
    ],
)
def test_a_malformed_file_is_one_clear_error(settings_dir, capsys, name, text, message):
    (settings_dir / name).write_text(text)
    with pytest.raises(SettingsFileError, match="^" + str(settings_dir / name)):
        read_sources()
    assert main(["agents", "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: " + str(settings_dir / name))
    assert message in err
    assert "gsk-secret-value" not in err
    assert err.count("\n") == 1


def test_serve_refuses_a_corrupted_local_settings_without_a_traceback(settings_dir):
    (settings_dir / "local.settings.json").write_text('{"Values": {"RACE_ADMIN_KEY": "x"')
    env = {**os.environ, "RACE_SETTINGS_DIR": str(settings_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "race", "serve", "--no-schedule"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {settings_dir / 'local.settings.json'}, line 1 column 34: not valid JSON: "
        "Expecting ',' delimiter"
    ]


def test_readers_directly(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text('A=1\nexport B = two words # c\nC="line\\nnext"\nD=\nE=x#y\n')
    expected = {"A": "1", "B": "two words", "C": "line\nnext", "D": "", "E": "x#y"}
    assert read_dotenv(dotenv) == expected
    local = write_local(tmp_path, {"A": True, "B": 1.5, "C": None}, ConnectionStrings={})
    assert read_local_settings(local) == {"A": "true", "B": "1.5"}
