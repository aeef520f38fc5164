"""Training the ML agent's model: ``python -m race ml train --until ISO``.

Only candles that closed strictly before ``until`` are read. Each row's features use that
candle and the ones before it (:mod:`agents.features`); its label is whether the close rose
over the next ``horizon`` candles — all of which also closed before ``until``. The split is
by time: the latest ``test_fraction`` of decision times is held out, and training rows
whose label window reaches into it are purged, so the held-out accuracy and precision are
measured on a later window the model never saw. The fitted classifier, its bytes' SHA-256,
windows, features and metrics are stored in the database (``ml_models``,
:mod:`race.store.ml_models`), where every instance finds it.

Promotion. A model's held-out score is its **edge**: held-out accuracy minus the accuracy
of always answering the held-out window's majority class (so windows with different up
rates compare fairly; 0 = no better than the trivial answer). A new model is promoted —
becomes the one the agent decides with — when there is no promoted model of its name, or
when its edge is at least the promoted model's edge minus ``RACE_ML_PROMOTE_MARGIN``
(an absolute tolerance in accuracy points: 0.01 lets a new model be up to one percentage
point of edge worse, the price of fresher data). A model trained on an earlier cut-off
than the promoted one is never promoted automatically. Otherwise it is stored as a
``candidate`` with the reason (``ml promote VERSION`` can still promote it).

Retraining (:func:`retrain`, the ``retrain_ml`` timer on ``RACE_ML_RETRAIN_SCHEDULE``):
at each slot, every stored model name is trained walk-forward on the candles closed
before the slot, and promoted or not by the rule above.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import sklearn
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline

from agents.features import FEATURES, complete_rows, feature_frame
from agents.ml import DEFAULT_MODEL_NAME, SCHEMA_VERSION, check_name, dump_model
from race.domain.timeutil import ensure_utc
from race.ml_report import TrainReport
from race.ml_retrain import RetrainOutcome, edge, promotion, retrain
from race.store import assets as asset_rows
from race.store import ml_models

if TYPE_CHECKING:
    from race.bootstrap import App

log = logging.getLogger("race.ml")

__all__ = [
    "CLASSIFIER_PARAMS",
    "DEFAULT_HISTORY",
    "DEFAULT_HORIZON",
    "MIN_TEST_ROWS",
    "MIN_TRAIN_ROWS",
    "RetrainOutcome",
    "TrainReport",
    "edge",
    "labelled_rows",
    "new_classifier",
    "promotion",
    "retrain",
    "train_model",
]

DEFAULT_HORIZON = 4
DEFAULT_HISTORY = timedelta(days=365)
"""Training reads this much history before ``until`` (the recent regime; and a year of hourly
candles of two assets trains in seconds)."""
MIN_TRAIN_ROWS = 200
MIN_TEST_ROWS = 50
CLASSIFIER_PARAMS: dict[str, Any] = {
    "n_estimators": 60,
    "max_depth": 3,
    "learning_rate": 0.08,
    "subsample": 0.7,
    "min_samples_leaf": 40,
    "random_state": 0,
}
"""Stochastic gradient boosting (deterministic for its seed). Prediction is one compiled pass
over the trees: well under a millisecond per decision, no thread pool involved."""


def new_classifier() -> Pipeline:
    """Missing features (volume unknown) are imputed as 0 — "usual volume" for a ratio."""
    return Pipeline(
        [
            (
                "impute",
                SimpleImputer(strategy="constant", fill_value=0.0, keep_empty_features=True),
            ),
            ("model", GradientBoostingClassifier(**CLASSIFIER_PARAMS)),
        ]
    )


def _candles(
    app: App, until: datetime, symbols: Sequence[str] | None, since: datetime | None = None
) -> dict[str, pd.DataFrame]:
    with app.db.read() as session:
        assets = asset_rows.symbols(session, enabled_only=symbols is None)
        wanted = None if symbols is None else [s.strip().upper() for s in symbols]
        if wanted is not None:
            known = {symbol for _, symbol in assets}
            unknown = [s for s in wanted if s not in known]
            if unknown:
                raise ValueError(f"unknown asset(s): {', '.join(unknown)}")
            assets = [(i, s) for i, s in assets if s in wanted]
        frames: dict[str, pd.DataFrame] = {}
        for asset_id, symbol in assets:
            rows = asset_rows.candle_series(session, asset_id, until, since)
            if not rows:
                continue
            frames[symbol] = pd.DataFrame(
                {
                    "high": [float(r.high) for r in rows],
                    "low": [float(r.low) for r in rows],
                    "close": [float(r.close) for r in rows],
                    "volume": [np.nan if r.volume is None else float(r.volume) for r in rows],
                },
                index=pd.DatetimeIndex([r.close_time for r in rows], name="close_time"),
                dtype="float64",
            )
    return frames


def labelled_rows(frame: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """Features, label (close rises over ``horizon`` candles) and the label's end time, for
    rows with complete features and a known future close within ``frame``."""
    features = feature_frame(frame)
    close = frame["close"].to_numpy()
    future = np.full(len(close), np.nan)
    future[: len(close) - horizon] = close[horizon:]
    label_end = pd.Series(frame.index, index=frame.index).shift(-horizon)
    data = features.copy()
    data["label"] = (future > close).astype(int)
    data["label_end"] = label_end
    keep = complete_rows(features) & ~np.isnan(future)
    return data[keep]


def train_model(
    app: App,
    until: datetime,
    *,
    symbols: Sequence[str] | None = None,
    horizon: int = DEFAULT_HORIZON,
    name: str = DEFAULT_MODEL_NAME,
    test_fraction: float = 0.2,
    history: timedelta | None = DEFAULT_HISTORY,
    promote: bool | None = None,
) -> TrainReport:
    """Train on candles closed before ``until`` (and, with ``history``, not longer before it
    than that), evaluate on the latest held-out window, store the model in the database and
    return the report. ``promote``: None applies the promotion rule (module docstring),
    True promotes, False stores a candidate. ``ValueError`` when that version is stored."""
    started = time.perf_counter()
    until = ensure_utc(until, field="until")
    check_name(name)
    _check_options(horizon, test_fraction, history)
    version = f"{until.strftime('%Y%m%dT%H%M%SZ')}-h{horizon}"
    with app.db.read() as session:
        if ml_models.find(session, name, version) is not None:
            raise ValueError(f"model {name}@{version} is already stored (versions are immutable)")
    frames = _candles(app, until, symbols, None if history is None else until - history)
    train, test = _split(frames, until, horizon, test_fraction)
    model = new_classifier()
    features = list(FEATURES)
    model.fit(train[features].to_numpy(), train["label"].to_numpy())
    scores = _evaluate(model, test, list(frames))
    created = app.clock.now()
    new = _new_model(
        model, name, version, until, horizon, history, list(frames), train, test, scores
    )
    promoted, reason, digest = _store(app, new, until, promote, created)
    (log.info if promoted else log.warning)(
        "model %s@%s %s: %s", name, version, "promoted" if promoted else "not promoted", reason
    )
    return TrainReport(
        name=name,
        version=version,
        sha256=digest,
        status=ml_models.PROMOTED if promoted else ml_models.CANDIDATE,
        reason=reason,
        trained_until=until,
        horizon=horizon,
        symbols=list(frames),
        train_rows=len(train),
        test_rows=len(test),
        train_start=new.train_start,
        train_end=new.train_end,
        test_start=new.test_start,
        test_end=new.test_end,
        accuracy=scores.accuracy,
        precision=scores.precision,
        up_rate=scores.up_rate,
        baseline_accuracy=max(scores.up_rate, 1.0 - scores.up_rate),
        predicted_up=scores.up_calls,
        seconds=time.perf_counter() - started,
        per_symbol=scores.per_symbol,
    )


def _new_model(
    model: Pipeline,
    name: str,
    version: str,
    until: datetime,
    horizon: int,
    history: timedelta | None,
    symbols: list[str],
    train: pd.DataFrame,
    test: pd.DataFrame,
    scores: _Scores,
) -> ml_models.NewModel:
    """The fitted model with its windows, features, metrics and metadata, ready to store."""
    features = list(FEATURES)
    extra = _windows_and_metrics(train, test, scores)
    info = {
        "schemaVersion": SCHEMA_VERSION,
        "historyDays": None if history is None else history / timedelta(days=1),
        "label": f"close after {horizon} candles > close now",
        "symbols": symbols,
        "trainWindow": extra["trainWindow"],
        "testWindow": extra["testWindow"],
        "classifier": extra["classifier"],
        "sklearnVersion": extra["sklearnVersion"],
    }
    return ml_models.NewModel(
        name=name,
        version=version,
        artifact=dump_model(model),
        trained_until=until,
        train_start=train.index.min().to_pydatetime(),
        train_end=train.index.max().to_pydatetime(),
        test_start=test.index.min().to_pydatetime(),
        test_end=test.index.max().to_pydatetime(),
        horizon=horizon,
        features=features,
        metrics=extra["metrics"],
        info=info,
    )


def _store(
    app: App, new: ml_models.NewModel, until: datetime, promote: bool | None, created: datetime
) -> tuple[bool, str, str]:
    """Store the model, promoted or as a candidate (``promote``: see :func:`train_model`);
    (promoted?, why, the artifact's SHA-256)."""
    margin = app.settings.ml_promote_margin
    with app.db.write() as session:
        current = ml_models.promoted(session, new.name)
        if promote is None:
            promoted, reason = promotion(new.metrics, until, current, margin)
        elif promote:
            promoted, reason = True, "promoted on request"
        else:
            promoted, reason = False, "stored without promotion on request"
        row = ml_models.add(
            session,
            new,
            created_at=created,
            status=ml_models.PROMOTED if promoted else ml_models.CANDIDATE,
            reason=reason,
        )
        digest = row.sha256
    return promoted, reason, digest


def _check_options(horizon: int, test_fraction: float, history: timedelta | None) -> None:
    if horizon < 1:
        raise ValueError("horizon must be at least 1 candle")
    if not 0.05 <= test_fraction <= 0.5:
        raise ValueError("test fraction must be between 0.05 and 0.5")
    if history is not None and history <= timedelta(0):
        raise ValueError("history must be positive (or None for all stored candles)")


def _split(
    frames: dict[str, pd.DataFrame], until: datetime, horizon: int, test_fraction: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training rows, held-out rows): the latest ``test_fraction`` of decision times held
    out, training rows whose label window reaches into it purged."""
    parts = []
    for symbol, frame in frames.items():
        rows = labelled_rows(frame, horizon)
        rows["symbol"] = symbol
        parts.append(rows)
    data = pd.concat(parts) if parts else pd.DataFrame()
    if data.empty:
        raise ValueError(
            f"no candles before {until.isoformat()} to train on: ingest candles first "
            "(`python -m race demo` loads the bundled sample)"
        )
    data = data.sort_index(kind="stable")
    times = np.sort(data.index.unique())
    cutoff = pd.Timestamp(times[int(len(times) * (1.0 - test_fraction))])
    train = data[data["label_end"] < cutoff]
    test = data[data.index >= cutoff]
    if len(train) < MIN_TRAIN_ROWS or len(test) < MIN_TEST_ROWS:
        raise ValueError(
            f"not enough candles before {until.isoformat()} to train: {len(train)} training and "
            f"{len(test)} held-out rows (need {MIN_TRAIN_ROWS} and {MIN_TEST_ROWS})"
        )
    if train["label"].nunique() < 2:
        raise ValueError("the training window has only one label class: use more history")
    return train, test


def _windows_and_metrics(
    train: pd.DataFrame, test: pd.DataFrame, scores: _Scores
) -> dict[str, Any]:
    """The artifact metadata's windows, classifier and metrics (after ``symbols``)."""

    def iso(value: Any) -> str:
        return pd.Timestamp(value).isoformat()

    metrics = {
        "accuracy": round(scores.accuracy, 6),
        "precision": None if scores.precision is None else round(scores.precision, 6),
        "upRate": round(scores.up_rate, 6),
        "baselineAccuracy": round(max(scores.up_rate, 1.0 - scores.up_rate), 6),
        "predictedUp": scores.up_calls,
        "trainRows": len(train),
        "testRows": len(test),
        "perSymbol": scores.per_symbol,
    }
    return {
        "trainWindow": [iso(train.index.min()), iso(train.index.max())],
        "testWindow": [iso(test.index.min()), iso(test.index.max())],
        "classifier": {"type": "GradientBoostingClassifier", **CLASSIFIER_PARAMS},
        "sklearnVersion": sklearn.__version__,
        "metrics": metrics,
    }


@dataclass(frozen=True)
class _Scores:
    accuracy: float
    precision: float | None
    up_rate: float
    up_calls: int
    per_symbol: dict[str, dict[str, Any]]


def _evaluate(model: Pipeline, test: pd.DataFrame, symbols: Sequence[str]) -> _Scores:
    """The fitted model's scores on the held-out rows, overall and per symbol."""
    predicted = model.predict(test[list(FEATURES)].to_numpy())
    actual = test["label"].to_numpy()
    up_calls = int(np.sum(predicted == 1))
    per_symbol = {
        symbol: {
            "rows": int(mask.sum()),
            "accuracy": float(np.mean(predicted[mask] == actual[mask])),
        }
        for symbol in symbols
        if (mask := (test["symbol"] == symbol).to_numpy()).any()
    }
    return _Scores(
        accuracy=float(np.mean(predicted == actual)),
        precision=float(np.sum((predicted == 1) & (actual == 1)) / up_calls) if up_calls else None,
        up_rate=float(np.mean(actual)),
        up_calls=up_calls,
        per_symbol=per_symbol,
    )
