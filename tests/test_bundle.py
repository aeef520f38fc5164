"""Export and re-score (race/bundle.py, race/rescore.py): a race exported as a bundle is
re-scored from the bundle alone to the same trades, snapshots and leaderboard; an altered
trade is reported by name (exit 1); a tampered candle or a malformed bundle is one line and
exit 2. The source race (tests/test_whatif.py) runs on SQLite and, when configured,
PostgreSQL; the re-score always runs in a temporary SQLite database."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from race.bundle import FORMAT, VERSION
from tests.test_whatif import LLAMA_KEY, REMOTE_KEY, Source, source  # noqa: F401  (the fixture)


def _main(*argv: str) -> int:
    from race.cli import main

    return main(list(argv))


def _export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    out = tmp_path / "bt.race.json.gz"
    assert _main("export", "bt", "--out", str(out)) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    return out


def _edit(path: Path, change: Any) -> Path:
    document = json.loads(gzip.decompress(path.read_bytes()))
    change(document)
    edited = path.with_name("edited.json.gz")
    edited.write_bytes(gzip.compress(json.dumps(document).encode()))
    return edited


def test_export_then_rescore_matches(
    source: Source,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = _export(tmp_path, capsys)
    text = gzip.decompress(path.read_bytes()).decode()
    assert LLAMA_KEY not in text and REMOTE_KEY not in text
    document = json.loads(text)
    assert (document["format"], document["version"]) == (FORMAT, VERSION)
    assert document["description"]["candles"].startswith("per asset")
    assert {p["kind"] for p in document["participants"]} == {"llama", "baseline", "remote_ml"}
    assert len(document["decisions"]) == 5 * 31 and document["trades"]
    assert [c["symbol"] for c in document["candles"]] == ["BTC", "ETH"]
    assert _main("rescore", str(path)) == 0
    out = capsys.readouterr().out
    assert "MATCH" in out and "DOES NOT" not in out
    assert len(source.server.requests) == source.calls, "a re-score called the provider"


def test_an_altered_trade_does_not_match(
    source: Source,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = _export(tmp_path, capsys)
    altered: dict[str, Any] = {}

    def alter(document: dict[str, Any]) -> None:
        trade = document["trades"][2]
        trade["price"] = str(float(trade["price"]) + 1)
        altered.update(trade)

    assert _main("rescore", str(_edit(path, alter))) == 1
    out = capsys.readouterr().out
    assert "DOES NOT MATCH (1 differences)" in out
    assert f"trade {altered['id']} (" in out and "price exported" in out


TAMPERED: list[tuple[Any, str]] = [
    (
        lambda d: d["candles"][0]["rows"][5].__setitem__(4, "1.00000000"),
        "error: candles of BTC: SHA-256 mismatch",
    ),
    (lambda d: d.__setitem__("version", 99), "is a race bundle of version 99"),
    (lambda d: d.__setitem__("format", "zip"), "is not a race bundle"),
    (lambda d: d["race"].pop("rules"), "error: malformed bundle: missing field 'rules'"),
    (lambda d: d["decisions"][0].__setitem__("cycle_time", "soon"), "malformed bundle"),
    (lambda d: d["participants"][0].__setitem__("provider", "Oracle"), "malformed bundle"),
    (
        lambda d: d["race"]["rules"].__setitem__("fee_rate", "NaN"),
        "malformed bundle: rule fee_rate must be a finite number ≥ 0, got Decimal('NaN')",
    ),
    (
        lambda d: d["race"]["rules"].__setitem__("max_orders_per_cycle", 2.5),
        "malformed bundle: rule max_orders_per_cycle must be a whole number, got '2.5'",
    ),
]


def test_a_tampered_or_malformed_bundle_is_one_line_and_exit_2(
    source: Source,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every way of tampering with one exported bundle (the race exported once: each case
    edits a copy of it)."""
    path = _export(tmp_path, capsys)
    for change, message in TAMPERED:
        assert _main("rescore", str(_edit(path, change))) == 2, message
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.count("\n") == 1, message
        assert message in captured.err, (message, captured.err)


def test_not_a_bundle_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "plain.txt").write_text("hello")
    for path, message in (
        (tmp_path / "plain.txt", "is not a gzip'd race bundle"),
        (tmp_path / "missing.gz", "no bundle at"),
    ):
        assert _main("rescore", str(path)) == 2
        captured = capsys.readouterr()
        assert message in captured.err and captured.err.count("\n") == 1
