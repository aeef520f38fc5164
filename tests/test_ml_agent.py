"""The ML agent on the bundled real candles (Binance BTC/ETH hourly): training strictly
before ``--until`` with a held-out later window, the versioned model stored in the database,
predictions through the real engine, and HOLD reasons for missing, stale or look-ahead
models."""

from __future__ import annotations

import asyncio
import csv
import gzip
import hashlib
import os
import pickle
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import delete, select

from agents.features import FEATURES, latest_features
from agents.ml import confidence_scale, model_from_bytes
from race.bootstrap import bootstrap
from race.cli import main
from race.clock import ManualClock
from race.domain.model import Candle, Provider
from race.ml_service import train_model
from race.store import ml_models
from race.store.database import Database
from race.store.tables import Asset, CandleRow, DecisionRow, MLModelRow
from tests.factories import insert_candles, make_candles, seed_agent, seed_assets, wave_prices

DATA_START = datetime(2022, 12, 1, tzinfo=UTC)
UNTIL = datetime(2023, 2, 1, tzinfo=UTC)
DATA_END = datetime(2023, 2, 15, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent.parent
CSV_DIRS = (ROOT / "market" / "data", Path("/work/shared/data"))


def _csv_candles(symbol: str, start: datetime, end: datetime) -> list[Candle]:
    """Fallback reader of the real Binance export (``date`` = open time, UTC)."""
    name = f"binance_spot_{symbol}USDT_1h_2021-2023.csv"
    for folder in CSV_DIRS:
        for path, opener in ((folder / f"{name}.gz", gzip.open), (folder / name, open)):
            if path.exists():
                candles = []
                with opener(path, "rt") as handle:
                    for row in csv.DictReader(handle):
                        close = datetime.fromisoformat(row["date"]).replace(tzinfo=UTC)
                        close += timedelta(hours=1)
                        if start <= close <= end:
                            candles.append(
                                Candle(
                                    symbol,
                                    close,
                                    Decimal(row["open"]),
                                    Decimal(row["high"]),
                                    Decimal(row["low"]),
                                    Decimal(row["close"]),
                                    Decimal(row["volume"]),
                                )
                            )
                return candles
    pytest.skip(f"bundled candles for {symbol} not found")


def load_real_candles(app, start=DATA_START, end=DATA_END) -> None:
    """The bundled real candles, through the project's sample loader when it is there."""
    try:
        from race.ingest import ingest_sample
    except ImportError:
        for symbol in ("BTC", "ETH"):
            insert_candles(app, _csv_candles(symbol, start, end), source="sample")
        return
    ingest_sample(app, start=start, end=end)


def make_app(database_url, artifacts, clock=None):
    return bootstrap(
        overrides={"RACE_DATABASE_URL": database_url, "RACE_ML_ARTIFACT_DIR": str(artifacts)},
        clock=clock or ManualClock(datetime(2024, 1, 1, tzinfo=UTC)),
    )


@contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    """A lock shared by the xdist workers (POSIX); elsewhere each worker works alone."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def bundled(tmp_path_factory, sqlite_template):
    """The real candles of the test window, loaded once through the project's loader, and
    one model trained on them — once per test session, shared by the xdist workers."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the session's directory, common to all workers
    folder = base / "ml-bundled"
    with _exclusive(base / "ml-bundled.lock"):
        if not (folder / "report.pickle").exists():
            folder.mkdir(exist_ok=True)
            shutil.copy(sqlite_template, folder / "race.db")
            application = make_app(f"sqlite:///{folder / 'race.db'}", folder / "artifacts")
            seed_assets(application)
            load_real_candles(application)
            report = train_model(application, UNTIL)
            application.close()
            (folder / "report.pickle").write_bytes(pickle.dumps(report))
    report = pickle.loads((folder / "report.pickle").read_bytes())
    application = make_app(f"sqlite:///{folder / 'race.db'}", folder / "artifacts")
    with application.db.read() as session:
        candles = [
            Candle(symbol, r.close_time, r.open, r.high, r.low, r.close, r.volume)
            for r, symbol in session.execute(
                select(CandleRow, Asset.symbol)
                .join(Asset, Asset.id == CandleRow.asset_id)
                .order_by(Asset.id, CandleRow.close_time)
            )
        ]
    application.close()
    return candles, folder, report


def install_models(app, folder: Path) -> None:
    """The models trained into the bundled database, stored in ``app``'s database too (as
    another instance would find them: the database is where models live)."""
    source = Database(f"sqlite:///{folder / 'race.db'}")
    try:
        with source.read() as session:
            rows = [
                {c.key: getattr(r, c.key) for c in MLModelRow.__table__.columns if c.key != "id"}
                for r in session.scalars(select(MLModelRow))
            ]
    finally:
        source.dispose()
    with app.db.write() as session:
        for row in rows:
            if ml_models.find(session, row["name"], row["version"]) is None:
                session.add(MLModelRow(**row))


def stored_model(app, name: str, version: str | None = None):
    """(row, fitted estimator) of the stored model ``name`` (its only or given version)."""
    with app.db.read() as session:
        rows = [r for r in ml_models.listing(session, name) if version in (None, r.version)]
        assert len(rows) == 1, rows
        data, digest = ml_models.artifact_of(session, rows[0].id)
    return rows[0], model_from_bytes(data), digest, data


def with_candles(app, candles, start=None, end=None) -> None:
    insert_candles(
        app,
        [
            c
            for c in candles
            if (start is None or c.close_time >= start) and (end is None or c.close_time <= end)
        ],
        source="sample",
    )


@pytest.fixture
def real_app(database_url, tmp_path, bundled):
    application = make_app(database_url, tmp_path / "artifacts")
    seed_assets(application)
    with_candles(application, bundled[0])
    yield application
    application.close()


def test_training_uses_only_candles_before_until_and_holds_out_a_later_window(real_app):
    report = train_model(real_app, UNTIL)
    assert report.symbols == ["BTC", "ETH"]
    assert report.trained_until == UNTIL
    assert report.train_start < report.train_end < report.test_start <= report.test_end < UNTIL
    # Purged split: no training label reaches into the held-out window.
    assert report.train_end + timedelta(hours=report.horizon) < report.test_start
    assert report.train_rows > 2000 and report.test_rows > 500
    assert 0.0 <= report.accuracy <= 1.0
    assert report.precision is None or 0.0 <= report.precision <= 1.0
    assert 0.3 < report.up_rate < 0.7
    assert report.version == "20230201T000000Z-h4"
    row, _, digest, data = stored_model(real_app, "direction-gb")
    assert row.version == report.version and row.status == "promoted"
    assert row.trained_until == UNTIL
    assert row.features == list(FEATURES)
    assert row.metrics["accuracy"] == pytest.approx(report.accuracy, abs=1e-6)
    assert row.test_end < UNTIL and row.train_end < row.test_start
    assert row.sha256 == digest == report.sha256 == hashlib.sha256(data).hexdigest()
    assert row.size_bytes == len(data)
    assert row.info["symbols"] == ["BTC", "ETH"]
    assert "BTC" in report.describe() and "held-out accuracy" in report.describe()


def test_candles_at_or_after_until_do_not_change_the_model(real_app, tmp_path):
    first = train_model(real_app, UNTIL, name="before", symbols=["BTC"])
    # Rewrite everything from `until` on: a model trained before it must not notice.
    with real_app.db.write() as session:
        session.execute(delete(CandleRow).where(CandleRow.close_time >= UNTIL))
    planted = make_candles("BTC", UNTIL, wave_prices(200, base=1.0, amplitude=0.9, period=3))
    insert_candles(real_app, planted)
    second = train_model(real_app, UNTIL, name="after", symbols=["BTC"])
    assert (first.accuracy, first.precision, first.train_rows, first.test_rows) == (
        second.accuracy,
        second.precision,
        second.train_rows,
        second.test_rows,
    )
    model_a = stored_model(real_app, "before")[1]
    model_b = stored_model(real_app, "after")[1]
    probe = np.random.default_rng(0).normal(0, 0.02, size=(50, len(FEATURES)))
    np.testing.assert_array_equal(model_a.predict_proba(probe), model_b.predict_proba(probe))


def test_training_without_enough_candles_says_so(real_app):
    with pytest.raises(ValueError, match="no candles before"):
        train_model(real_app, DATA_START)
    with pytest.raises(ValueError, match="not enough candles"):
        train_model(real_app, DATA_START + timedelta(days=5))
    with pytest.raises(ValueError, match="unknown asset"):
        train_model(real_app, UNTIL, symbols=["DOGE"])


def prediction_app(bundled, database_url):
    candles, folder, report = bundled
    application = make_app(database_url, folder / "artifacts")
    seed_assets(application)
    install_models(application, folder)
    with_candles(application, candles, start=UNTIL - timedelta(days=5))
    return application, report


def test_ml_agent_decides_through_the_engine_with_the_artifact_before_t(bundled, database_url):
    app, report = prediction_app(bundled, database_url)
    try:
        agent = seed_agent(app, "ML", Provider.CUSTOM_ML, model="direction-gb")
        result = asyncio.run(
            app.engine.backfill(UNTIL, UNTIL + timedelta(days=4), timedelta(hours=1))
        )
        assert result.decisions == 97
        assert result.fallbacks == 0
        with app.db.read() as session:
            rows = list(
                session.scalars(
                    select(DecisionRow)
                    .where(DecisionRow.agent_id == agent)
                    .order_by(DecisionRow.cycle_time)
                )
            )
        assert len(rows) == 97
        assert all(r.model == f"direction-gb@{report.version}" for r in rows)
        assert all(r.model_version == report.version for r in rows)
        assert all(r.details["trainedUntil"] == UNTIL.isoformat() for r in rows)
        assert all(set(r.details["signals"]) == {"BTC", "ETH"} for r in rows)
        assert all(0.0 <= r.confidence <= 1.0 for r in rows)
        assert any(r.action != "HOLD" for r in rows), "a 4-day replay should trade at least once"
        for row in rows:
            for asset, signal in row.details["signals"].items():
                assert signal["signal"] == (
                    "BUY" if signal["pUp"] >= 0.55 else "SELL" if signal["pUp"] <= 0.45 else "HOLD"
                ), asset
    finally:
        app.close()


def test_confidence_scale_is_confidence_over_full_confidence_capped_at_one():
    for full in (0.2, 0.5, 1.0):
        for confidence in (0.0, 0.01, 0.05, 0.1, 0.19, 0.2, 0.3, 0.5, 0.75, 1.0):
            expected = min(1.0, confidence / full)
            assert float(confidence_scale(confidence, full)) == pytest.approx(expected)
    assert confidence_scale(0.1, 0.2) == Decimal("0.5")
    assert confidence_scale(0.0, 0.2) == 0
    assert confidence_scale(0.6, 0.2) == 1
    scales = [confidence_scale(c / 100, 0.5) for c in range(101)]
    assert scales == sorted(scales) and scales[0] == 0 and scales[-1] == 1


def _context_at(app, spec, at):
    from race.domain.agent import AgentContext
    from race.domain.model import Portfolio
    from race.store import repository as repo

    with app.db.read() as session:
        assets = {a.symbol: a.id for a in repo.enabled_assets(session)}
        view = repo.market_view(session, at, assets, 50, timedelta(hours=6))
    return AgentContext(
        agent=spec,
        cycle_time=at,
        market=view,
        portfolio=Portfolio(cash=Decimal("100000")),
        limits=app.settings.limits,
        costs=app.settings.costs,
        allowed_assets=("BTC", "ETH"),
        starting_capital=Decimal("100000"),
    )


def test_orders_are_sized_by_confidence(bundled, sqlite_url):
    """At UNTIL + 10 h the model is bullish on BTC with a confidence below both
    ``full_confidence`` values tried, so the order is a fraction of the full size — and a
    larger ``full_confidence`` asks for proportionally less."""
    app, _ = prediction_app(bundled, sqlite_url)
    try:
        at = UNTIL + timedelta(hours=10)
        sized = {}
        for full in (0.2, 0.5):
            agent_id = seed_agent(
                app,
                f"ML full at {full}",
                Provider.CUSTOM_ML,
                model="direction-gb",
                params={"buy_threshold": 0.5, "max_fraction": 0.4, "full_confidence": full},
            )
            spec = next(s for s in _specs(app) if s.id == agent_id)
            context = _context_at(app, spec, at)
            answer = asyncio.run(app.engine.agent_for(spec).decide(context))
            [order] = [o for o in answer.orders if o["asset"] == "BTC"]
            assert order["side"] == "BUY"
            confidence = answer.details["signals"]["BTC"]["confidence"]
            assert 0.05 < confidence < full  # a partial size: the test bites
            notional = order["quantity"] * context.market.prices["BTC"]
            expected = Decimal(100000) * Decimal("0.4") * Decimal(str(confidence / full))
            assert float(notional) == pytest.approx(float(expected), rel=1e-4)
            assert notional < Decimal(100000) * Decimal("0.4") * Decimal("0.99")
            sized[full] = order["quantity"]
        assert float(sized[0.5] / sized[0.2]) == pytest.approx(0.2 / 0.5, rel=1e-3)
    finally:
        app.close()


def _specs(app):
    from race.store import repository as repo

    with app.db.read() as session:
        return repo.active_agents(session)


def test_missing_stale_and_look_ahead_artifacts_hold_with_the_reason(bundled, sqlite_url):
    candles, folder, report = bundled
    app = make_app(sqlite_url, folder / "artifacts")
    try:
        seed_assets(app)
        install_models(app, folder)
        with_candles(app, candles, UNTIL - timedelta(days=5), UNTIL + timedelta(days=2))
        missing = seed_agent(app, "ML missing", Provider.CUSTOM_ML, model="never-trained")
        ml = seed_agent(app, "ML", Provider.CUSTOM_ML, model="direction-gb")
        asyncio.run(app.engine.run_cycle(UNTIL - timedelta(days=1)))  # before the cut-off
        with app.db.read() as session:
            rows = {r.agent_id: r for r in session.scalars(select(DecisionRow))}
        assert rows[missing].fallback
        assert "no trained model 'never-trained'" in rows[missing].fallback_reason
        assert "ml train --until" in rows[missing].fallback_reason
        assert rows[ml].fallback
        assert "would look ahead" in rows[ml].fallback_reason
        stale_at = UNTIL + timedelta(days=121)
        insert_candles(
            app, make_candles("BTC", stale_at - timedelta(hours=59), wave_prices(60, 40000.0))
        )
        insert_candles(
            app, make_candles("ETH", stale_at - timedelta(hours=59), wave_prices(60, 2000.0))
        )
        asyncio.run(app.engine.run_cycle(stale_at))
        with app.db.read() as session:
            stale = session.scalar(
                select(DecisionRow).where(
                    DecisionRow.agent_id == ml, DecisionRow.cycle_time == stale_at
                )
            )
        assert stale.fallback and "is stale" in stale.fallback_reason
        assert report.version in stale.fallback_reason
    finally:
        app.close()


def test_predictions_work_without_volume(bundled):
    _, folder, _ = bundled
    from race.domain.agent import AgentContext, AgentSpec
    from race.domain.model import MarketView, Portfolio
    from race.settings import load_settings

    settings = load_settings(
        {
            "RACE_ML_ARTIFACT_DIR": str(folder / "artifacts"),
            "RACE_DATABASE_URL": f"sqlite:///{folder / 'race.db'}",
        }
    )
    at = UNTIL + timedelta(days=1)
    start = at - timedelta(hours=49)
    view = MarketView(
        as_of=at,
        candles={
            "BTC": make_candles("BTC", start, wave_prices(50, 23000.0), volume=None),
            "ETH": make_candles("ETH", start, wave_prices(50, 1600.0), volume=None),
        },
    )
    assert np.isnan(latest_features(view.candles["BTC"])[FEATURES.index("volume_ratio_24")])
    spec = AgentSpec(id=1, name="ML", provider=Provider.CUSTOM_ML, model="direction-gb")
    from agents.registry import AgentServices, build_agent

    agent = build_agent(spec, AgentServices(settings=settings))
    answer = asyncio.run(
        agent.decide(
            AgentContext(
                agent=spec,
                cycle_time=at,
                market=view,
                portfolio=Portfolio(cash=Decimal("100000")),
                limits=settings.limits,
                costs=settings.costs,
                allowed_assets=("BTC", "ETH"),
                starting_capital=Decimal("100000"),
            )
        )
    )
    assert answer.fallback_reason is None
    assert set(answer.details["signals"]) == {"BTC", "ETH"}


def test_ml_train_command_prints_the_metrics(bundled, sqlite_url, tmp_path, monkeypatch, capsys):
    app = make_app(sqlite_url, tmp_path / "cli-artifacts")
    seed_assets(app)
    with_candles(app, bundled[0], end=UNTIL)
    app.close()
    monkeypatch.setenv("RACE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("RACE_ML_ARTIFACT_DIR", str(tmp_path / "cli-artifacts"))
    assert main(["ml", "train", "--until", "2023-02-01T00:00:00Z", "--symbols", "BTC"]) == 0
    out = capsys.readouterr().out
    assert "trained direction-gb@20230201T000000Z-h4 on BTC" in out
    assert "held-out accuracy" in out and "precision(up)" in out
    assert "stored in the database" in out and "promoted: the first promoted model" in out
    app = make_app(sqlite_url, tmp_path / "cli-artifacts")
    try:
        row = stored_model(app, "direction-gb", "20230201T000000Z-h4")[0]
        assert row.status == "promoted" and row.info["symbols"] == ["BTC"]
    finally:
        app.close()
    assert main(["ml", "train", "--until", "2020-01-01"]) == 2
    assert "no candles before" in capsys.readouterr().err
