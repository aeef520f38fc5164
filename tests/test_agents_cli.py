"""``python -m race agents …`` as a user runs it, and the optional agents the demo seeds."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest

from agents.catalog import ML_AGENT_NAME, optional_agents
from agents.registry import AgentServices, build_agent
from race.bootstrap import bootstrap
from race.cli import main
from race.domain.agent import AgentSpec
from race.domain.model import Provider
from race.settings import load_settings
from race.universe import list_agents
from tests.factories import HOUR, insert_candles, make_candles, seed_assets, wave_prices

START = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
def cli_db(sqlite_url, monkeypatch):
    monkeypatch.setenv("RACE_DATABASE_URL", sqlite_url)
    monkeypatch.delenv("LLAMA_API_KEY", raising=False)
    return sqlite_url


def agents_json(capsys):
    assert main(["agents", "list", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_add_list_disable_enable(cli_db, capsys):
    assert main(["agents", "list"]) == 0
    assert "no agents yet" in capsys.readouterr().out
    code = main(
        [
            "agents",
            "add",
            "--name",
            "Llama Scalper",
            "--provider",
            "llama",
            "--instructions",
            "Trade the 4h trend.",
            "--strategy",
            "LLM trend",
            "--params",
            '{"daily_budget_usd": 0.25, "fallback": [{"provider": "OpenAI"}]}',
        ]
    )
    captured = capsys.readouterr()
    assert code == 0
    assert "added agent 'Llama Scalper'" in captured.out
    assert "Llama llama-3.3-70b-versatile" in captured.out
    assert "100,000.00 USD" in captured.out
    assert "LLAMA_API_KEY is not set" in captured.err  # a note, not an error
    assert (
        main(["agents", "add", "--name", "SMA", "--provider", "Mock", "--model", "sma_cross"]) == 0
    )
    capsys.readouterr()
    [llama, sma] = agents_json(capsys)
    assert llama["provider"] == "Llama" and llama["model"] == "llama-3.3-70b-versatile"
    assert llama["params"]["daily_budget_usd"] == 0.25
    assert llama["isActive"] and sma["isActive"]
    assert main(["agents", "list"]) == 0
    table = capsys.readouterr().out
    assert "Llama Scalper" in table and "sma_cross" in table and "active" in table

    assert main(["agents", "disable", "Llama Scalper"]) == 0
    assert "disabled agent 'Llama Scalper'" in capsys.readouterr().out
    assert [a["isActive"] for a in agents_json(capsys)] == [False, True]
    assert main(["agents", "enable", "Llama Scalper"]) == 0
    capsys.readouterr()
    assert [a["isActive"] for a in agents_json(capsys)] == [True, True]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--provider", "Skynet"], "unknown provider 'Skynet'"),
        (["--provider", "Llama", "--params", "{nope"], "--params is not valid JSON"),
        (["--provider", "Llama", "--params", "[1]"], "--params must be a JSON object"),
        (["--provider", "Llama", "--params", '{"budget": 1}'], "unknown param(s)"),
        (["--provider", "Mock"], "Mock agents need --model"),
        (["--provider", "Mock", "--model", "moon"], "unknown baseline 'moon'"),
        (["--provider", "CustomML", "--model", "remote"], "REMOTE_ML_URL"),
        (["--provider", "CustomML", "--params", '{"buy_threshold": 2}'], "buy_threshold"),
    ],
)
def test_add_refuses_bad_definitions_clearly(cli_db, capsys, argv, message):
    assert main(["agents", "add", "--name", "Bad", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert message in err
    assert agents_json(capsys) == []


def test_duplicate_names_and_unknown_agents_are_errors(cli_db, capsys):
    argv = ["agents", "add", "--name", "Twin", "--provider", "Mock", "--model", "cash"]
    assert main(argv) == 0
    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["agents", "disable", "Ghost"]) == 2
    assert "unknown agent 'Ghost'" in capsys.readouterr().err


def test_a_disabled_agent_stops_deciding(cli_db, capsys):
    app = bootstrap(overrides={"RACE_DATABASE_URL": cli_db})
    seed_assets(app)
    for symbol, base in (("BTC", 40000.0), ("ETH", 2000.0)):
        insert_candles(app, make_candles(symbol, START, wave_prices(60, base=base)))
    assert main(["agents", "add", "--name", "A", "--provider", "Mock", "--model", "cash"]) == 0
    assert main(["agents", "add", "--name", "B", "--provider", "Mock", "--model", "cash"]) == 0
    assert main(["agents", "disable", "B"]) == 0
    report = asyncio.run(app.engine.run_cycle(START + 59 * HOUR))
    assert report.agents_total == 1 and report.decided == 1
    assert [a.name for a in list_agents(app.db) if a.is_active] == ["A"]
    app.close()


# ---------------------------------------------------------------- catalog


def test_optional_agents_follow_the_settings():
    bare = optional_agents(load_settings({"LLAMA_API_KEY": "", "OPENAI_API_KEY": ""}))
    assert [a.name for a in bare] == [ML_AGENT_NAME]
    assert bare[0].provider is Provider.CUSTOM_ML and bare[0].model == "direction-gb"

    full = optional_agents(
        load_settings(
            {
                "LLAMA_API_KEY": "gsk-1234",
                "TOGETHER_API_KEY": "tg-1234",
                "OPENAI_API_KEY": "sk-1234",
                "AZURE_OPENAI_ENDPOINT": "https://race.openai.azure.com",
                "AZURE_OPENAI_API_KEY": "az-1234",
                "AZURE_OPENAI_DEPLOYMENT": "gpt4o-race",
            }
        )
    )
    providers = [a.provider for a in full]
    assert providers == [
        Provider.LLAMA,
        Provider.OPENAI,
        Provider.AZURE_OPENAI,
        Provider.CUSTOM_ML,
    ]
    llama = full[0]
    assert llama.model == "llama-3.3-70b-versatile"
    assert llama.params == {"fallback": [{"provider": "Together"}]}
    assert full[2].model == "gpt4o-race"
    # Every catalogue entry builds as the engine would build it.
    settings = load_settings({"LLAMA_API_KEY": "gsk-1234"})
    for index, new in enumerate(full):
        spec = AgentSpec(
            id=index,
            name=new.name,
            provider=new.provider,
            model=new.model,
            instructions=new.instructions,
            params=dict(new.params or {}),
        )
        build_agent(spec, AgentServices(settings=settings))
        for secret in ("gsk-1234", "sk-1234", "az-1234"):
            assert secret not in json.dumps(dict(new.params or {})) + new.instructions


def test_add_notes_what_an_ensembles_members_still_need(cli_db, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("RACE_ML_ARTIFACT_DIR", str(tmp_path / "no-artifacts"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    members = [
        {"name": "llama", "provider": "Llama", "model": "llama-3.3-70b-versatile"},
        {"name": "gpt", "provider": "OpenAI", "model": "gpt-4o-mini"},
        {"name": "ml", "provider": "CustomML", "model": "direction-gb"},
        {"name": "sma", "provider": "Mock", "model": "sma_cross"},
    ]
    argv = ["agents", "add", "--name", "Committee", "--provider", "CustomML"]
    argv += ["--model", "ensemble", "--params", json.dumps({"members": members})]
    assert main(argv) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note: ")]
    assert notes == [
        "note: ensemble member 'llama': Llama not configured (LLAMA_API_KEY is not set): it "
        "abstains until then",
        "note: ensemble member 'gpt': OpenAI not configured (OPENAI_API_KEY is not set): it "
        "abstains until then",
        "note: ensemble member 'ml': no trained model 'direction-gb' promoted in the database "
        "(run `python -m race ml train --until ISO`): it abstains until then",
    ]
    assert [a["name"] for a in agents_json(capsys)] == ["Committee"]


def test_add_notes_a_remote_models_key_setting_that_is_not_set(cli_db, capsys, monkeypatch):
    monkeypatch.delenv("MY_MODEL_KEY", raising=False)
    params = {"url": "https://models.example.com", "api_key_setting": "MY_MODEL_KEY"}
    argv = ["agents", "add", "--name", "Mine", "--provider", "CustomML", "--model", "remote"]
    assert main([*argv, "--params", json.dumps(params)]) == 0
    assert (
        "note: MY_MODEL_KEY is not set (named by param 'api_key_setting'): the agent will "
        "HOLD until then" in capsys.readouterr().err
    )
    monkeypatch.setenv("MY_MODEL_KEY", "my-own-key-1")
    assert main([*argv[:3], "Mine too", *argv[4:], "--params", json.dumps(params)]) == 0
    assert "note:" not in capsys.readouterr().err
