"""The closes the analytics read (race.analysis.benchmark_closes): from each asset's entry
price at the race's first snapshot on, not the whole stored history — and every analysis
computed from them equals the one computed from every close (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from race.analysis import _analyse, benchmark_closes
from race.bootstrap import App
from race.domain.contamination import cutoff_table
from race.store.reads import analysis as reads
from race.store.reads.standings import agent_records
from tests.factories import HOUR, insert_candles, make_candles, seed_assets, seed_baselines
from tests.factories import wave_prices as waves

START = datetime(2024, 1, 1, tzinfo=UTC)


def test_analyses_from_the_race_s_closes_equal_those_from_every_close(app: App) -> None:
    seed_assets(app)
    insert_candles(app, make_candles("BTC", START, waves(200, base=40_000.0, period=23)))
    # ETH's history starts later, and an hour after BTC's closes: a different entry.
    late = START + 30 * HOUR + HOUR // 2
    insert_candles(app, make_candles("ETH", late, waves(150, base=2_000.0, period=13)))
    seed_baselines(app)
    report = asyncio.run(app.engine.backfill(START + 120 * HOUR, START + 190 * HOUR, HOUR))
    assert report.decisions == 71 * 5 and report.trades > 0
    with app.db.read() as session:
        records = agent_records(session)
        cut = benchmark_closes(session, records)
        every = reads.close_series(session)
        first = reads.first_snapshot(session, [r.agent_id for r in records])
        assert first is not None and first <= START + 120 * HOUR
        # Each asset keeps its last close at or before the first snapshot, and what follows.
        for symbol, series in every.items():
            entry = max(i for i, (t, _) in enumerate(series) if t <= first)
            earliest = min(
                max(t for t, _ in s if t <= first) for s in every.values() if s[0][0] <= first
            )
            kept = [(t, c) for t, c in series if t >= earliest]
            assert cut[symbol] == kept and cut[symbol][-1] == series[-1]
            assert series[entry] in cut[symbol] and len(cut[symbol]) < len(series)
        cutoffs = cutoff_table()
        for record in records:
            assert (
                _analyse(session, record, cutoffs, cut)[0]
                == (_analyse(session, record, cutoffs, every)[0])
            ), record.name


def test_without_snapshots_every_close_is_read(app: App) -> None:
    seed_assets(app)
    insert_candles(app, make_candles("BTC", START, waves(20, base=40_000.0)))
    seed_baselines(app, ["cash"])
    with app.db.read() as session:
        records = agent_records(session)
        assert reads.first_snapshot(session, [r.agent_id for r in records]) is None
        assert benchmark_closes(session, records) == reads.close_series(session)
        assert reads.closes_from(session, START - HOUR) == reads.close_series(session)
