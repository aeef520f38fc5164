"""The analytics on a replayed race (``tests/api_data.py``): the model chat with secrets
scrubbed, decision analytics, trade summary, equity performance, the market regime, the
leaderboard's extra keys (checked against an independent implementation of the circular
block bootstrap, the PSR and the buy-and-hold benchmark), the cache, the CLI and the docs."""

from __future__ import annotations

import bisect
import itertools
import json
import math
from collections import Counter
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from statistics import NormalDist

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from race.analysis import analyse, ranked_records
from race.api import analysis_models, create_api
from race.api.analysis_views import decision_detail, split_prompt
from race.bootstrap import bootstrap
from race.cli import main
from race.domain.regime import detect_regime
from race.secrets import SecretPolicy
from race.store.reads.agents import OrderRecord
from race.store.reads.analysis import DecisionDetail
from race.store.reads.standings import agent_records
from race.store.tables import (
    AgentStatsRow,
    Asset,
    CandleRow,
    DecisionRow,
    EquitySnapshotRow,
    TradeRow,
)
from tests.api_data import LAST_CANDLE, build_race
from tests.factories import HOUR
from tests.test_docs import API_DOC, json_type, sections

SECRET = "gsk-analytics-secret-0123456789"
CUTOFFS = "buy_and_hold=2024-02,random=2023-06-30"
OVERRIDES = {"LLAMA_API_KEY": SECRET, "RACE_MODEL_CUTOFFS": CUTOFFS}
SEED, RESAMPLES = 20120701, 2000


@pytest.fixture
def race(database_url, clock):
    application = bootstrap(overrides={"RACE_DATABASE_URL": database_url, **OVERRIDES}, clock=clock)
    agents = build_race(application)
    clock.advance((LAST_CANDLE + HOUR - clock.now()).total_seconds())
    client = TestClient(create_api(application), raise_server_exceptions=False)
    yield application, client, agents
    client.app.state.context.analyser.join(120)
    application.close()


def settled_board(client):
    """The leaderboard once its background analytics caught up with the stored stats."""
    get(client, "/api/leaderboard")  # starts the refresh when something is stale
    client.app.state.context.analyser.join(120)
    return get(client, "/api/leaderboard")


def get(client, url, status=200):
    response = client.get(url)
    assert response.status_code == status, (url, response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def rows(app, query):
    with Session(app.db.engine) as session:
        return session.execute(query).all()


# --- an independent implementation of the figures ------------------------------------


def curve(app, agent_id):
    return rows(
        app,
        select(EquitySnapshotRow.captured_at, EquitySnapshotRow.total_value)
        .where(EquitySnapshotRow.agent_id == agent_id)
        .order_by(EquitySnapshotRow.captured_at),
    )


def closes(app):
    out: dict[str, list[tuple[datetime, Decimal]]] = {}
    for symbol, t, c in rows(
        app,
        select(Asset.symbol, CandleRow.close_time, CandleRow.close)
        .join(Asset, Asset.id == CandleRow.asset_id)
        .order_by(Asset.symbol, CandleRow.close_time),
    ):
        out.setdefault(symbol, []).append((t, c))
    return out


def benchmark(app, capital, times):
    """Equal weights over every asset, bought at the close at or before the first time."""
    series = closes(app)

    def at(symbol, when):
        keys = [t for t, _ in series[symbol]]
        return series[symbol][bisect.bisect_right(keys, when) - 1][1]

    entry = {s: at(s, times[0]) for s in series}
    return [sum(capital / len(entry) * at(s, t) / entry[s] for s in entry) for t in times]


def resample_indices(n):
    length = 1
    while length**3 < n:
        length += 1
    rng = np.random.default_rng(SEED)
    starts = rng.integers(0, n, size=(RESAMPLES, -(-n // length)))
    return [np.concatenate([(s + np.arange(length)) % n for s in row])[:n] for row in starts]


def expected_figures(app, agent_id, capital=Decimal(100000)):
    points = curve(app, agent_id)
    times = [t for t, _ in points]
    values = [float(capital)] + [float(v) for _, v in points]
    r = np.array([b / a - 1 for a, b in itertools.pairwise(values)])
    bench_values = [float(capital)] + [float(v) for v in benchmark(app, capital, times)]
    rb = np.array([b / a - 1 for a, b in itertools.pairwise(bench_values)])
    n = len(r)
    totals, diffs, wins = [], [], 0.0
    for idx in resample_indices(n):
        ta, tb = np.prod(1 + r[idx]) - 1, np.prod(1 + rb[idx]) - 1
        totals.append(ta)
        diffs.append(ta - tb)
        wins += 1.0 if ta > tb else 0.5 if ta == tb else 0.0
    mean, sd = r.mean(), r.std(ddof=1)
    d = r - mean
    m2 = np.mean(d**2)
    skew, kurt = np.mean(d**3) / m2**1.5, np.mean(d**4) / m2**2
    sr = mean / sd
    psr = NormalDist().cdf(
        sr * math.sqrt(n - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    )
    return {
        "returnInterval": [np.quantile(totals, 0.025) * 100, np.quantile(totals, 0.975) * 100],
        "pBeatBuyAndHold": wins / RESAMPLES,
        "psr": psr,
        "buyAndHoldReturnPct": (bench_values[-1] / float(capital) - 1) * 100,
        "days": (times[-1] - times[0]).total_seconds() / 86400,
    }


# --- the leaderboard's extra keys ------------------------------------------------------


def test_leaderboard_extra_keys_match_an_independent_computation(race):
    app, client, agents = race
    board = {e["agent"]["id"]: e for e in settled_board(client)}
    for name in ("buy_and_hold", "random"):
        entry = board[str(agents[name])]
        want = expected_figures(app, agents[name])
        assert entry["returnInterval"]["low"] == pytest.approx(want["returnInterval"][0], abs=1e-4)
        assert entry["returnInterval"]["high"] == pytest.approx(want["returnInterval"][1], abs=1e-4)
        assert entry["pBeatBuyAndHold"] == pytest.approx(want["pBeatBuyAndHold"], abs=1e-9)
        assert entry["psr"] == pytest.approx(want["psr"], abs=1e-6)
        assert entry["significant"] is (want["psr"] >= 0.95)
        assert entry["buyAndHoldReturnPct"] == pytest.approx(want["buyAndHoldReturnPct"], abs=1e-5)
        assert entry["sharpeInterval"]["low"] < entry["sharpeInterval"]["high"]
        trades = rows(
            app, select(func.count()).select_from(TradeRow).where(TradeRow.agent_id == agents[name])
        )
        holds = Counter(
            a
            for (a,) in rows(
                app, select(DecisionRow.action).where(DecisionRow.agent_id == agents[name])
            )
        )
        behaviour = entry["behaviour"]
        assert behaviour["holdShare"] == pytest.approx(
            holds["HOLD"] / sum(holds.values()), abs=1e-6
        )
        assert behaviour["tradesPerDay"] == pytest.approx(trades[0][0] / want["days"], abs=1e-6)
        assert 0 <= behaviour["exposure"] <= 1
    # RACE_MODEL_CUTOFFS: buy_and_hold's cut-off (end of February 2024) is after the race
    # starts (January 2024); random's (June 2023) is before; the others have none.
    assert board[str(agents["buy_and_hold"])]["possiblyContaminated"] is True
    assert board[str(agents["buy_and_hold"])]["trainingCutoff"] == "2024-02-29"
    assert board[str(agents["random"])]["possiblyContaminated"] is False
    assert board[str(agents["cash"])]["possiblyContaminated"] is None
    # The idle agent never ran: too few points, every figure null, never NaN.
    idle = board[str(agents["idle"])]
    assert idle["returnInterval"] is None and idle["psr"] is None and idle["significant"] is None


def returns_of(app, agent_id, capital=100000.0):
    points = curve(app, agent_id)
    values = [capital] + [float(v) for _, v in points]
    return {t: b / a - 1 for (t, _), (a, b) in zip(points, itertools.pairwise(values), strict=True)}


def test_rank_steps_and_analyse_match_an_independent_paired_bootstrap(race):
    app, client, agents = race
    board = settled_board(client)
    upper, lower = int(board[0]["agent"]["id"]), int(board[1]["agent"]["id"])
    ra, rb = returns_of(app, upper), returns_of(app, lower)
    shared = sorted(ra.keys() & rb.keys())
    xa = np.array([ra[t] for t in shared])
    xb = np.array([rb[t] for t in shared])
    wins, diffs = 0.0, []
    for idx in resample_indices(len(shared)):
        ta, tb = np.prod(1 + xa[idx]) - 1, np.prod(1 + xb[idx]) - 1
        wins += 1.0 if ta > tb else 0.5 if ta == tb else 0.0
        diffs.append(ta - tb)
    low, high = np.quantile(diffs, [0.025, 0.975])
    assert board[0]["pBeatNextRank"] == pytest.approx(wins / RESAMPLES, abs=1e-9)
    assert board[0]["rankSignificant"] is bool(low > 0 or high < 0)
    assert board[-1]["pBeatNextRank"] is None and board[-1]["rankSignificant"] is None
    # The report's entry point gives the same figures, every agent, in the same order.
    result = analyse(app.db, app.settings, app.clock)
    assert result.computed_at == app.clock.now()
    assert result.rank_order == [int(e["agent"]["id"]) for e in board]
    assert set(result.agents) == set(agents.values())
    assert result.rank_steps[upper].p_a_beats_b == pytest.approx(wins / RESAMPLES, abs=1e-9)
    mine = result.agents[agents["buy_and_hold"]]
    entry = next(e for e in board if e["agent"]["id"] == str(agents["buy_and_hold"]))
    assert mine.significance.psr == pytest.approx(entry["psr"], abs=1e-6)
    assert mine.contamination.possibly_contaminated is True


def test_rank_comparisons_are_work_the_leaderboard_leaves_to_the_background(race, monkeypatch):
    """Every agent analysed but no rank compared yet: comparing 49 pairs of long curves is
    as costly as analysing them, so a big race's leaderboard serves without them and a
    background refresh adds them (a burst of requests never computes them inline)."""
    app, client, _ = race
    analyser = client.app.state.context.analyser
    with app.db.read() as session:
        records = ranked_records(agent_records(session))
        analyser.agents(session, records)

    def count(record):
        return record.stats.snapshot_count if record.stats is not None else 0

    pairs = sum(count(a) + count(b) for a, b in itertools.pairwise(records))
    assert pairs > 0
    assert analyser.stale_snapshots(records) == pairs  # the agents are cached, the pairs not
    analyser.inline_snapshots = pairs - 1
    started: list[int] = []
    refresh = analyser.refresh
    # Hold the background refresh back, to see what the request itself computed.
    monkeypatch.setattr(analyser, "refresh", lambda db, ranked: started.append(len(ranked)))
    served = get(client, "/api/leaderboard")
    assert started == [len(records)], "the comparisons were left to a background refresh"
    assert all(e["pBeatNextRank"] is None for e in served), "not compared within the request"
    monkeypatch.setattr(analyser, "refresh", refresh)
    settled = settled_board(client)
    assert analyser.stale_snapshots(records) == 0
    assert any(e["pBeatNextRank"] is not None for e in settled)


def test_cost_efficiency_and_the_cache(race):
    app, client, agents = race
    key = str(agents["random"])
    analyser = client.app.state.context.analyser
    analyser.inline_snapshots = 0  # as with a big race: everything in the background
    cold = get(client, "/api/leaderboard")
    # The leaderboard never waits for the analytics: nothing is cached yet.
    assert all(e["analyticsAsOf"] is None and e["psr"] is None for e in cold)
    analyser.join(120)
    first = {e["agent"]["id"]: e for e in get(client, "/api/leaderboard")}
    assert all(e["analyticsAsOf"] == e["lastUpdated"] for e in first.values())
    misses = analyser.misses
    again = {e["agent"]["id"]: e for e in settled_board(client)}
    assert analyser.misses == misses, "an unchanged race is served from the cache"
    assert again == first
    assert first[key]["costEfficiency"]["returnPctPerUsd"] is None  # a baseline spends nothing
    with Session(app.db.engine) as session, session.begin():
        session.execute(
            update(AgentStatsRow)
            .where(AgentStatsRow.agent_id == agents["random"])
            .values(cost_usd=Decimal(2), prompt_tokens=150000, completion_tokens=50000)
        )
    stale = {e["agent"]["id"]: e for e in get(client, "/api/leaderboard")}
    assert stale[key]["costEfficiency"] == first[key]["costEfficiency"], "served from the cache"
    assert stale[key]["analyticsAsOf"] == first[key]["analyticsAsOf"]
    assert stale[key]["costUsd"] == 2.0, "the stored stats themselves are current"
    analyser.join(120)
    changed = {e["agent"]["id"]: e for e in get(client, "/api/leaderboard")}
    assert analyser.misses == misses + 1, "only the agent whose stats changed is recomputed"
    pct = first[key]["performancePercent"]
    pnl = first[key]["currentValue"] - 100000
    cost = changed[key]["costEfficiency"]
    assert cost["spendUsd"] == 2.0 and cost["tokens"] == 200000
    assert cost["returnPctPerUsd"] == pytest.approx(pct / 2, rel=1e-6)
    assert cost["pnlPerUsd"] == pytest.approx(pnl / 2, rel=1e-6)
    assert cost["returnPctPerMillionTokens"] == pytest.approx(pct / 0.2, rel=1e-6)
    assert cost["pnlPerMillionTokens"] == pytest.approx(pnl / 0.2, rel=1e-6)


def test_a_small_race_is_analysed_within_the_request(race):
    _, client, agents = race
    board = get(client, "/api/leaderboard")  # no join: computed inline (a small race)
    assert all(e["analyticsAsOf"] == e["lastUpdated"] for e in board)
    assert next(e for e in board if e["agent"]["id"] == str(agents["random"]))["psr"] is not None


# --- per-agent endpoints ---------------------------------------------------------------


def test_decision_analytics_counts(race):
    app, client, agents = race
    for name in ("random", "sma_cross"):
        body = get(client, f"/api/agents/{agents[name]}/decisions/analytics")
        facts = rows(
            app,
            select(DecisionRow.action, DecisionRow.regime, DecisionRow.fallback).where(
                DecisionRow.agent_id == agents[name]
            ),
        )
        assert body["agentId"] == str(agents[name])
        assert body["decisions"] == len(facts)
        assert body["actions"] == dict(Counter(a for a, _, _ in facts))
        assert body["regimes"] == dict(Counter(r for _, r, _ in facts))
        assert body["fallbacks"] == sum(1 for *_, f in facts if f)
        assert body["fallbackReasons"] == {} and body["calibration"] is None
        analysis_models.DecisionAnalytics.model_validate(body)


def test_trade_summary_per_asset(race):
    app, client, agents = race
    body = get(client, f"/api/agents/{agents['rsi_reversion']}/trades/summary")
    facts = rows(
        app,
        select(Asset.symbol, TradeRow.notional, TradeRow.fee, TradeRow.realized_pnl)
        .join(Asset, Asset.id == TradeRow.asset_id)
        .where(TradeRow.agent_id == agents["rsi_reversion"]),
    )
    assert body["trades"] == len(facts) > 0
    for asset in body["assets"]:
        mine = [f for f in facts if f[0] == asset["asset"]]
        pnl = [float(p) for *_, p in mine if p is not None]
        assert asset["trades"] == len(mine)
        assert asset["volume"] == pytest.approx(sum(float(n) for _, n, _, _ in mine), abs=1e-6)
        assert asset["fees"] == pytest.approx(sum(float(f) for _, _, f, _ in mine), abs=1e-6)
        assert asset["realizedPnL"] == pytest.approx(sum(pnl), abs=1e-6)
        wins, losses = [p for p in pnl if p > 0], [p for p in pnl if p < 0]
        assert asset["biggestWin"] == (pytest.approx(max(wins)) if wins else None)
        assert asset["biggestLoss"] == (pytest.approx(min(losses)) if losses else None)
    assert sum(a["trades"] for a in body["assets"]) == body["trades"]
    analysis_models.TradeSummary.model_validate(body)


def test_equity_performance_agrees_with_the_leaderboard(race):
    app, client, agents = race
    key = agents["buy_and_hold"]
    body = get(client, f"/api/agents/{key}/equity/performance")
    entry = next(e for e in settled_board(client) if e["agent"]["id"] == str(key))
    points = curve(app, key)
    sig = body["significance"]
    assert body["snapshots"] == len(points) and sig["returns"] == len(points)
    assert body["finalEquity"] == pytest.approx(float(points[-1][1]))
    assert sig["totalReturnPct"] == pytest.approx(entry["performancePercent"], abs=1e-5)
    assert sig["totalReturnInterval"] == entry["returnInterval"]
    assert sig["psr"] == entry["psr"] and sig["pBeatBuyAndHold"] == entry["pBeatBuyAndHold"]
    assert sig["seed"] == SEED and sig["resamples"] == RESAMPLES
    assert body["behaviour"] == entry["behaviour"]
    assert body["contamination"]["possiblyContaminated"] is True
    assert "2024-02-29" in body["contamination"]["reason"]
    values = [v for _, v in points]
    peak, worst = values[0], 0.0
    for v in values:
        peak = max(peak, v)
        worst = max(worst, float((peak - v) / peak * 100))
    assert body["maxDrawdownPct"] == pytest.approx(worst, abs=1e-5)
    analysis_models.EquityPerformance.model_validate(body)


@pytest.mark.parametrize(
    "path", ["decisions/analytics", "trades/summary", "equity/performance", "decisions/1"]
)
def test_unknown_agent_is_404_and_bad_ids_400(race, path):
    _, client, _ = race
    assert "message" in get(client, f"/api/agents/999/{path}", 404)
    assert "message" in get(client, f"/api/agents/abc/{path}", 400)


# --- the model chat --------------------------------------------------------------------

PROMPT = f"[system]\nYou trade. Key {SECRET} must not leak.\n\n[user]\nBTC is 40000. Decide."
NOTES = [
    {
        "order": 0,
        "asset": "BTC",
        "code": "max_order_notional",
        "outcome": "clipped",
        "message": "clipped to the maximum order notional",
        "requested": "5",
        "final": "0.25",
    }
]


def insert_chat(app, agent_id):
    row = DecisionRow(
        race_id=1,  # the live race: created with the first agent
        agent_id=agent_id,
        cycle_time=LAST_CANDLE + 5 * HOUR,
        action="BUY",
        asset_symbol="BTC",
        quantity=Decimal("0.25"),
        rationale=f"Momentum; echoing {SECRET}",
        cited_rules=["R4", "R7"],
        regime="BULLISH",
        market_conditions={"prices": {"BTC": "40000"}, "regime": "BULLISH"},
        value_before=Decimal(100000),
        value_after=Decimal(100000),
        was_validated=True,
        validation_errors=NOTES,
        proposed_orders=[{"asset": "BTC", "side": "BUY", "quantity": 5}],
        fallback=False,
        fallback_reason=None,
        raw_output=json.dumps({"reasoning": f"key {SECRET}", "orders": []}),
        prompt=PROMPT,
        model="llama-3.3-70b-versatile",
        latency_ms=812,
        prompt_tokens=1200,
        completion_tokens=80,
        cost_usd=Decimal("0.00077"),
        confidence=0.8,
        details={"responseModel": "llama-3.3-70b-versatile-2024-12", "attempts": 1},
    )
    with Session(app.db.engine) as session, session.begin():
        session.add(row)
        session.flush()
        return row.id


def test_model_chat_serves_the_whole_record_scrubbed(race):
    app, client, agents = race
    key = agents["sma_cross"]
    decision = insert_chat(app, key)
    raw = client.get(f"/api/agents/{key}/decisions/{decision}")
    assert raw.status_code == 200 and SECRET not in raw.text
    body = raw.json()
    analysis_models.DecisionDetail.model_validate(body)
    marker = "[redacted:LLAMA_API_KEY]"
    assert body["systemPrompt"] == f"You trade. Key {marker} must not leak."
    assert body["userPrompt"] == "BTC is 40000. Decide."
    assert json.loads(body["rawAnswer"]) == {"reasoning": f"key {marker}", "orders": []}
    assert body["rationale"] == f"Momentum; echoing {marker}"
    assert body["proposedOrders"] == [{"asset": "BTC", "side": "BUY", "quantity": 5}]
    assert body["executedOrders"] == []
    assert body["riskChanges"] == [
        {
            "order": 0,
            "asset": "BTC",
            "code": "max_order_notional",
            "outcome": "clipped",
            "message": "clipped to the maximum order notional",
            "requested": "5",
            "final": "0.25",
        }
    ]
    assert body["citedRules"] == ["R4", "R7"] and body["confidence"] == 0.8
    assert body["regime"] == "BULLISH"
    assert body["marketConditions"] == {"prices": {"BTC": "40000"}, "regime": "BULLISH"}
    assert (body["promptTokens"], body["completionTokens"], body["latencyMs"]) == (1200, 80, 812)
    assert body["costUsd"] == pytest.approx(0.00077)
    assert body["model"] == "llama-3.3-70b-versatile"
    assert body["modelVersion"] == "llama-3.3-70b-versatile-2024-12"
    assert (body["agentId"], body["id"], body["action"]) == (str(key), str(decision), "BUY")
    # Another agent's decision, an unknown one: 404 JSON; the analytics route is not
    # captured by the decision route.
    assert "message" in get(client, f"/api/agents/{agents['random']}/decisions/{decision}", 404)
    assert "message" in get(client, f"/api/agents/{key}/decisions/99999999", 404)
    assert "message" in get(client, f"/api/agents/{key}/decisions/0", 400)
    assert get(client, f"/api/agents/{key}/decisions/analytics")["agentId"] == str(key)


def test_model_chat_executed_orders_come_from_the_trades(race):
    app, client, agents = race
    key = agents["rsi_reversion"]
    decision, symbol, side, quantity = rows(
        app,
        select(TradeRow.decision_id, Asset.symbol, TradeRow.side, TradeRow.quantity)
        .join(Asset, Asset.id == TradeRow.asset_id)
        .where(TradeRow.agent_id == key)
        .order_by(TradeRow.id)
        .limit(1),
    )[0]
    body = get(client, f"/api/agents/{key}/decisions/{decision}")
    first = body["executedOrders"][0]
    assert (first["asset"], first["side"]) == (symbol, side)
    assert first["quantity"] == pytest.approx(float(quantity))


def test_the_view_itself_scrubs_without_the_middleware():
    record = DecisionDetail(
        id=1, agent_id=2, cycle_time=LAST_CANDLE, action="HOLD", asset_symbol=None,
        quantity=None, rationale=SECRET, cited_rules=[SECRET], regime="UNKNOWN",
        market_conditions={"note": SECRET}, value_before=Decimal(1), value_after=Decimal(1),
        was_validated=True, validation_errors=[{"message": SECRET}], proposed_orders=[SECRET],
        fallback=True, fallback_reason=SECRET, raw_output=SECRET, prompt=PROMPT, model=None,
        latency_ms=None, prompt_tokens=None, completion_tokens=None, cost_usd=None,
        confidence=None, details={"responseModel": SECRET}, model_version=None,
    )  # fmt: skip
    policy = SecretPolicy({"LLAMA_API_KEY": SECRET})
    body = decision_detail(record, [OrderRecord(1, "BTC", "BUY", Decimal(1), Decimal(2))], policy)
    assert SECRET not in body.model_dump_json()
    assert body.modelVersion is not None  # the provider's response model, scrubbed
    # The version the agent recorded (the ML agent's stored model) is the one shown.
    recorded = decision_detail(replace(record, model_version="direction-gb/v3"), [], policy)
    assert recorded.modelVersion == "direction-gb/v3"
    assert body.executedOrders[0].asset == "BTC"
    assert split_prompt("plain text") == (None, "plain text")
    assert split_prompt(None) == (None, None)


# --- market regime ---------------------------------------------------------------------


def test_market_regime_and_history(race):
    app, client, _ = race
    body = get(client, "/api/market/regime")
    series = closes(app)
    for asset in body["assets"]:
        last = [float(c) for _, c in series[asset["symbol"]][-50:]]
        assert asset["regime"] == detect_regime(last) and asset["closes"] == 50
    history = get(client, "/api/market/regime/history?limit=3")
    assert len(history) == 3
    times = [h["cycleTime"] for h in history]
    assert times == sorted(times, reverse=True)
    assert body["latestCycle"] == times[0] and body["recorded"] == history[0]["counts"]
    newest = select(func.max(DecisionRow.cycle_time)).scalar_subquery()
    counted = Counter(
        r for (r,) in rows(app, select(DecisionRow.regime).where(DecisionRow.cycle_time == newest))
    )
    assert history[0]["counts"] == dict(counted)
    assert history[0]["regime"] == max(sorted(counted), key=lambda r: counted[r])
    assert "message" in get(client, "/api/market/regime/history?limit=0", 400)


# --- the CLI and the docs --------------------------------------------------------------


def test_cli_decisions_show_prints_the_same_record(race, monkeypatch, capsys):
    app, client, agents = race
    key = agents["sma_cross"]
    decision = insert_chat(app, key)
    api = get(client, f"/api/agents/{key}/decisions/{decision}")
    monkeypatch.setenv("RACE_DATABASE_URL", app.settings.database_url)
    monkeypatch.setenv("LLAMA_API_KEY", SECRET)
    capsys.readouterr()
    assert main(["decisions", "show", str(decision), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == api
    assert main(["decisions", "show", str(decision)]) == 0
    out = capsys.readouterr().out
    assert SECRET not in out
    for part in ("── system prompt ──", "BTC is 40000. Decide.", "── raw answer ──", "R4, R7"):
        assert part in out
    assert "clipped (max_order_notional)" in out and "812 ms" in out
    assert main(["decisions", "show", "99999999"]) == 2
    assert "no decision 99999999" in capsys.readouterr().err
    # agents show NAME --decision ID: the same record, refused for another agent's.
    assert main(["agents", "show", "SMA Cross 10/30", "--decision", str(decision), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == api
    assert main(["agents", "show", str(key), "--decision", str(decision)]) == 0
    assert "── user prompt ──" in capsys.readouterr().out
    assert main(["agents", "show", str(agents["random"]), "--decision", str(decision)]) == 2
    assert "is not agent" in capsys.readouterr().err
    assert main(["agents", "show", str(key), "--limit", "1"]) == 0
    assert "recent decisions (1" in capsys.readouterr().out


def test_model_cutoffs_setting_is_checked_at_start_up():
    from pydantic import ValidationError

    from race.settings import Settings

    assert Settings(RACE_MODEL_CUTOFFS="a=2024-01, b=2023-06-30").race_model_cutoffs == [
        "a=2024-01",
        "b=2023-06-30",
    ]
    with pytest.raises(ValidationError, match="gpt-x=June"):
        Settings(RACE_MODEL_CUTOFFS="gpt-x=June")


def test_analytics_shapes_are_documented():
    documented = sections(API_DOC.read_text(encoding="utf-8"))
    missing = []
    for name, cls in vars(analysis_models).items():
        if not (isinstance(cls, type) and cls.__module__ == analysis_models.__name__):
            continue
        if not getattr(cls, "model_fields", None):
            continue
        section = documented.get(name, "")
        table = {
            cells[0].strip(): cells[1].strip()
            for line in section.splitlines()
            if line.startswith("| `")
            for cells in [line.strip("|").split(" | ")]
        }
        for field, info in cls.model_fields.items():
            if table.get(f"`{field}`") != json_type(info.annotation):
                missing.append(f"{name}.{field}: {json_type(info.annotation)}")
    assert not missing, f"docs/api.md lacks or mistypes: {missing}"
