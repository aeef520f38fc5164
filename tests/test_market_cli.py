"""``python -m race ingest`` and ``python -m race assets`` as a user runs them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from race.cli import main
from tests.coingecko_server import FakeCoinGecko

KEY = "CG-cli-key-5e6f"


@pytest.fixture
def env(sqlite_url, monkeypatch):
    monkeypatch.setenv("RACE_DATABASE_URL", sqlite_url)
    for name in ("COINGECKO_API_KEY", "COINGECKO_PLAN", "COINGECKO_BASE_URL", "RACE_ASSETS"):
        monkeypatch.delenv(name, raising=False)
    return sqlite_url


def test_assets_add_list_disable_enable(env, capsys):
    assert main(["assets", "add", "btc", "bitcoin"]) == 0
    assert "BTC (bitcoin, Bitcoin): added, enabled" in capsys.readouterr().out
    assert main(["assets", "add", "SOL", "solana", "--name", "Solana", "--disabled"]) == 0
    capsys.readouterr()
    assert main(["assets", "list"]) == 0
    out = capsys.readouterr().out
    assert "symbol" in out and "coingecko id" in out
    assert "BTC" in out and "SOL" in out and "solana" in out
    assert main(["assets", "enable", "SOL"]) == 0
    assert "SOL: enabled" in capsys.readouterr().out
    assert main(["assets", "disable", "btc"]) == 0
    assert "BTC: disabled" in capsys.readouterr().out
    assert main(["assets", "list", "--json"]) == 0
    listed = {a["symbol"]: a for a in json.loads(capsys.readouterr().out)}
    assert listed["BTC"]["enabled"] is False and listed["SOL"]["enabled"] is True
    assert listed["BTC"]["candles"] == 0 and listed["BTC"]["lastClose"] is None


def test_assets_errors_name_the_problem(env, capsys):
    assert main(["assets", "add", "BTC", "Not An Id"]) == 2
    assert "CoinGecko id" in capsys.readouterr().err
    assert main(["assets", "disable", "XYZ"]) == 2
    assert "unknown asset 'XYZ'" in capsys.readouterr().err
    main(["assets", "add", "BTC", "bitcoin"])
    assert main(["assets", "add", "BTC", "bitcoin-cash"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_ingest_the_bundled_sample(env, capsys):
    code = main(
        [
            "ingest",
            "--source",
            "sample",
            "--asset",
            "BTC",
            "--start",
            "2023-12-01",
            "--end",
            "2023-12-02",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "ingest from sample" in out and "inserted" in out
    assert "BTC" in out and "ETH" not in out.split("\n", 2)[2]
    main(["assets", "list", "--json"])
    listed = {a["symbol"]: a for a in json.loads(capsys.readouterr().out)}
    assert listed["BTC"]["candles"] == 25
    assert listed["BTC"]["lastClose"] == "2023-12-02T00:00:00+00:00"
    args = ["--source", "sample", "--asset", "btc", "--start", "2023-12-01", "--end", "2023-12-02"]
    assert main(["ingest", *args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    # the bundled files did not change since: skipped, not read again
    assert [(a["symbol"], a["inserted"], a["skipped"]) for a in report["assets"]] == [
        ("BTC", 0, 25)
    ]
    assert report["totals"]["skipped"] == 25 and report["ok"] is True


def test_ingest_from_coingecko(env, capsys, monkeypatch):
    with FakeCoinGecko(demo_key=KEY) as server:
        monkeypatch.setenv("COINGECKO_BASE_URL", server.base_url)
        monkeypatch.setenv("COINGECKO_API_KEY", KEY)
        monkeypatch.setenv("COINGECKO_CALLS_PER_MINUTE", "6000")
        assert main(["ingest", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["ok"] and report["plan"] == "demo"
        assert {a["symbol"] for a in report["assets"]} == {"BTC", "ETH"}
        assert all(a["inserted"] >= 7 * 24 for a in report["assets"])
        assert len(server.requests) == 2

        monkeypatch.setenv("COINGECKO_API_KEY", "wrong")
        start = (datetime.now(UTC) - timedelta(days=3)).isoformat()
        assert main(["ingest", "--start", start]) == 1
        captured = capsys.readouterr()
        assert "error:" in captured.err and "COINGECKO_API_KEY" in captured.err
        assert KEY not in captured.out + captured.err


def test_ingest_argument_errors(env, capsys):
    assert main(["ingest", "--end", "2024-01-01"]) == 2
    assert "--end needs --start" in capsys.readouterr().err
    assert main(["ingest", "--source", "sample", "--asset", "DOGE"]) == 2
    assert "unknown asset 'DOGE'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["ingest", "--start", "yesterday"])


def test_ingest_needs_a_schema(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RACE_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    assert main(["ingest", "--source", "sample"]) == 2
    assert "db upgrade" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("setup", "source"),
    [
        ([["assets", "add", "SOL", "solana"]], "sample"),  # no bundled candles for SOL
        ([["assets", "add", "BTC", "bitcoin", "--disabled"]], "coingecko"),
    ],
)
def test_ingest_with_no_asset_to_report_says_so(env, capsys, setup, source):
    for command in setup:
        assert main(command) == 0
    capsys.readouterr()
    assert main(["ingest", "--source", source]) == 0
    out = capsys.readouterr().out
    assert "no enabled assets for this source" in out
    assert "assets add SYMBOL COINGECKO_ID" in out
