"""The in-process ML agent (provider ``CustomML``) and its versioned models.

A model is trained by :func:`race.ml_service.train_model` (``python -m race ml train --until
ISO``, or the retraining timer) and stored in the database (``ml_models``: the artifact's
bytes, its SHA-256, training window, features and metrics), so every instance and process
decides with the same model. At decision time T the agent uses the promoted model of its
name when it was trained on data before T — never one trained on T's future (a replay of
the past uses the latest-promoted one that was) — and HOLDs with the reason when there is
none or it is older than ``RACE_ML_MAX_ARTIFACT_AGE``. Every answer carries the model's
version (``decisions.model_version``).

``RACE_ML_ARTIFACT_DIR`` is only a cache: ``{dir}/cache/{sha256}.joblib``. A cached file is
used only when its bytes hash to the stored SHA-256; a missing or corrupt one is (re)written
from the database.

It predicts the probability that each asset's close rises over the model's horizon, and
turns it into BUY (p ≥ ``buy_threshold``), SELL (p ≤ ``sell_threshold``, when holding) or
HOLD, with confidence ``|p − 0.5| × 2``; the order is sized by that confidence, with
``scale = min(1, confidence / full_confidence)``: a BUY tops the position up to
``max_fraction × scale`` of equity (only when it is below that target by more than
``rebalance_band``, so hourly wobbles of p do not churn fees), a SELL sells ``scale`` of the
holding.

Params (all optional): ``buy_threshold`` (0.55), ``sell_threshold`` (0.45),
``max_fraction`` (0.25), ``full_confidence`` (0.2), ``rebalance_band`` (0.5), ``assets``
(list of symbols).
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from agents.config import AgentConfigError, number, reject_unknown
from agents.features import FEATURES, MIN_CANDLES, latest_features
from race.domain.agent import AgentAnswer, AgentContext, AgentSpec
from race.domain.money import ZERO, quantize_down
from race.settings import Settings
from race.store import ml_models
from race.store.database import Database

log = logging.getLogger("agents.ml")

DEFAULT_MODEL_NAME = "direction-gb"
SCHEMA_VERSION = 1
CACHE_FOLDER = "cache"
PARAMS = (
    "buy_threshold",
    "sell_threshold",
    "max_fraction",
    "full_confidence",
    "rebalance_band",
    "assets",
)


def check_name(name: str) -> str:
    if not name or "/" in name or "\\" in name or name.startswith(".") or len(name) > 100:
        raise AgentConfigError(f"model name {name!r} must be a plain name like 'direction-gb'")
    return name


def dump_model(model: Any) -> bytes:
    """The fitted estimator as the bytes stored in the database."""
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


def model_from_bytes(data: bytes) -> Any:
    return joblib.load(io.BytesIO(data))


@dataclass(frozen=True)
class ArtifactInfo:
    """A stored model, without its bytes."""

    id: int
    name: str
    version: str
    sha256: str
    trained_until: datetime
    created_at: datetime | None
    horizon: int
    features: tuple[str, ...]
    metrics: dict[str, Any]
    status: str

    @classmethod
    def of(cls, row: Any) -> ArtifactInfo:
        return cls(
            id=row.id,
            name=row.name,
            version=row.version,
            sha256=row.sha256,
            trained_until=row.trained_until,
            created_at=row.created_at,
            horizon=row.horizon,
            features=tuple(row.features),
            metrics=dict(row.metrics or {}),
            status=row.status,
        )


class ArtifactCache:
    """The local folder as a cache of artifact bytes keyed by their SHA-256."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.directory = Path(root) / CACHE_FOLDER

    def path(self, sha256: str) -> Path:
        return self.directory / f"{sha256}.joblib"

    def read(self, sha256: str) -> bytes | None:
        """The cached bytes when they hash to ``sha256``; None when missing or corrupt."""
        path = self.path(sha256)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if ml_models.sha256_of(data) != sha256:
            log.warning("cached model %s is corrupt: replaced from the database", path)
            return None
        return data

    def write(self, sha256: str, data: bytes) -> None:
        """Atomically (a temporary file renamed into place); a cache that cannot be written
        is logged and skipped — the database stays the source."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            handle, staging = tempfile.mkstemp(prefix=f".{sha256[:12]}-", dir=self.directory)
            try:
                with os.fdopen(handle, "wb") as out:
                    out.write(data)
                os.replace(staging, self.path(sha256))
            except BaseException:
                Path(staging).unlink(missing_ok=True)
                raise
        except OSError as exc:
            log.warning("model cache %s not written: %s", self.directory, exc)


class ModelStore:
    """The stored versions of one model name (the database), with the local cache."""

    def __init__(self, db: Database, cache_root: str | os.PathLike[str], name: str) -> None:
        self.db = db
        self.name = check_name(name)
        self.cache = ArtifactCache(cache_root)

    def select(self, at: datetime, max_age: timedelta) -> ArtifactInfo | str:
        """The model to decide with at ``at``, or why there is none usable."""
        with self.db.read() as session:
            row = ml_models.usable(session, self.name, at)
            if row is None:
                stored = [
                    r for r in ml_models.listing(session, self.name) if r.promoted_at is not None
                ]
                oldest = min((r.trained_until for r in stored), default=None)
            chosen = None if row is None else ArtifactInfo.of(row)
        if chosen is None:
            if oldest is None:
                return (
                    f"no trained model {self.name!r} promoted in the database: run "
                    "`python -m race ml train --until ISO`"
                )
            return (
                f"no model {self.name!r} trained before {at.isoformat()} (the oldest uses data "
                f"up to {oldest.isoformat()}: using it would look ahead)"
            )
        if at - chosen.trained_until > max_age:
            return (
                f"model {self.name}@{chosen.version} is stale: trained on data up to "
                f"{chosen.trained_until.isoformat()}, more than {max_age} before "
                f"{at.isoformat()}; retrain it"
            )
        if tuple(chosen.features) != FEATURES:
            return f"model {self.name}@{chosen.version} was trained on other features; retrain it"
        return chosen

    def load(self, info: ArtifactInfo, shared: dict[str, Any]) -> Any:
        """The fitted estimator, loaded once per process (keyed by hash): from the cache when
        its bytes hash right, else from the database (and cached)."""
        key = f"ml.model:{info.sha256}"
        model = shared.get(key)
        if model is not None:
            return model
        data = self.cache.read(info.sha256)
        if data is None:
            with self.db.read() as session:
                stored = ml_models.artifact_of(session, info.id)
            if stored is None:
                raise LookupError(f"model {info.name}@{info.version} is no longer stored")
            data, digest = stored
            if ml_models.sha256_of(data) != digest:
                raise ValueError(
                    f"model {info.name}@{info.version}: stored bytes do not match its SHA-256"
                )
            self.cache.write(info.sha256, data)
        model = model_from_bytes(data)
        shared[key] = model
        return model


def confidence_scale(confidence: float, full_confidence: float) -> Decimal:
    """How much of the full order size a signal of this confidence earns:
    ``min(1, confidence / full_confidence)`` (0 for no confidence)."""
    if full_confidence <= 0:
        raise ValueError(f"full_confidence must be > 0, got {full_confidence}")
    return Decimal(str(min(1.0, max(0.0, confidence) / full_confidence)))


class MLAgent:
    """Scikit-learn direction classifier over candle features; in-process and deterministic."""

    in_process = True

    def __init__(
        self,
        spec: AgentSpec,
        settings: Settings,
        shared: dict[str, Any],
        db: Database | None = None,
    ) -> None:
        params = dict(spec.params)
        reject_unknown(params, PARAMS, what="CustomML agents")
        self.spec = spec
        self.name = check_name(spec.model or DEFAULT_MODEL_NAME)
        self.settings = settings
        self._db = db
        self._store: ModelStore | None = None
        self.max_age = settings.ml_max_artifact_age
        self.shared = shared
        self.buy_threshold = number(params, "buy_threshold", 0.55, 0.5, 1.0)
        self.sell_threshold = number(params, "sell_threshold", 0.45, 0.0, 0.5)
        self.max_fraction = Decimal(str(number(params, "max_fraction", 0.25, 0.0, 1.0)))
        self.full_confidence = number(params, "full_confidence", 0.2, 0.01, 1.0)
        self.rebalance_band = Decimal(str(number(params, "rebalance_band", 0.5, 0.0, 1.0)))
        assets = params.get("assets")
        if assets is not None and (
            not isinstance(assets, list) or not all(isinstance(a, str) for a in assets)
        ):
            raise AgentConfigError("param 'assets' must be a list of symbols")
        self.assets = None if assets is None else [a.upper() for a in assets]

    @property
    def store(self) -> ModelStore:
        """The models of this agent's name; the database is the app's, or (an agent built
        outside the composition root) one per process for the settings' URL."""
        if self._store is None:
            db = self._db
            if db is None:
                key = f"ml.db:{self.settings.database_url}"
                db = self.shared.get(key)
                if db is None:
                    db = self.shared[key] = Database(self.settings.database_url)
            self._store = ModelStore(db, self.settings.ml_artifact_dir, self.name)
        return self._store

    async def decide(self, context: AgentContext) -> AgentAnswer:
        try:
            chosen = self.store.select(context.cycle_time, self.max_age)
        except Exception as exc:
            return AgentAnswer.fallback(
                f"model {self.name!r} cannot be looked up: {exc.__class__.__name__}: {exc}"[:500],
                model=self.name,
            )
        if isinstance(chosen, str):
            return AgentAnswer.fallback(chosen, model=self.name)
        label = f"{chosen.name}@{chosen.version}"
        try:
            model = self.store.load(chosen, self.shared)
        except Exception as exc:
            return AgentAnswer.fallback(
                f"model {label} cannot be loaded: {exc.__class__.__name__}: {exc}"[:500],
                model=label,
                model_version=chosen.version,
            )
        rows, ready, notes = self._features(context)
        details: dict[str, Any] = {
            "modelVersion": chosen.version,
            "trainedUntil": chosen.trained_until.isoformat(),
            "horizon": chosen.horizon,
            "heldOut": {
                k: chosen.metrics.get(k) for k in ("accuracy", "precision") if k in chosen.metrics
            },
        }
        if not rows:
            return AgentAnswer.hold(
                "ML: no prediction possible — " + "; ".join(notes),
                model=label,
                model_version=chosen.version,
                details=details,
            )
        probabilities = model.predict_proba(np.vstack(rows))[:, 1]
        orders: list[dict[str, Any]] = []
        signals: dict[str, Any] = {}
        best = 0.0
        for symbol, p_up in zip(ready, probabilities, strict=True):
            p = float(p_up)
            confidence = round(abs(p - 0.5) * 2.0, 6)
            signal, order, note = self._signal(context, symbol, p, confidence, chosen.horizon)
            if order is not None:
                orders.append(order)
                best = max(best, confidence)
            if note:  # a SELL that rounds to nothing goes unmentioned
                notes.append(note)
            signals[symbol] = {"pUp": round(p, 6), "signal": signal, "confidence": confidence}
        details["signals"] = signals
        return AgentAnswer(
            orders=orders,
            reasoning="ML: " + "; ".join(notes),
            model=label,
            confidence=best if orders else max(s["confidence"] for s in signals.values()),
            details=details,
            model_version=chosen.version,
        )

    def _features(self, context: AgentContext) -> tuple[list[Any], list[str], list[str]]:
        """(feature rows, their symbols, notes on the assets that cannot be predicted)."""
        symbols = [s for s in context.allowed_assets if self.assets is None or s in self.assets]
        rows, ready, notes = [], [], []
        for symbol in symbols:
            row = latest_features(context.market.candles.get(symbol, ()))
            if row is None:
                notes.append(f"{symbol}: fewer than {MIN_CANDLES} candles, no prediction")
            elif symbol not in context.market.prices:
                notes.append(f"{symbol}: no fresh price, no prediction")
            else:
                rows.append(row)
                ready.append(symbol)
        return rows, ready, notes

    def _signal(
        self, context: AgentContext, symbol: str, p: float, confidence: float, horizon: int
    ) -> tuple[str, dict[str, Any] | None, str]:
        """(signal, order or None, note) for ``symbol`` whose P(up) is ``p``."""
        if p >= self.buy_threshold:
            return "BUY", *self._buy(context, symbol, p, confidence, horizon)
        if p <= self.sell_threshold:
            held = context.portfolio.quantity(symbol)
            if held <= ZERO:
                return "SELL", None, f"{symbol}: P(up) {p:.3f}, bearish but nothing to sell"
            quantity = quantize_down(held * confidence_scale(confidence, self.full_confidence))
            if quantity <= ZERO:
                return "SELL", None, ""
            order = {"asset": symbol, "side": "SELL", "quantity": quantity}
            return (
                "SELL",
                order,
                (
                    f"{symbol}: P(up {horizon} candles) {p:.3f} → SELL "
                    f"{quantity} of {held} (confidence {confidence:.2f})"
                ),
            )
        return "HOLD", None, f"{symbol}: P(up) {p:.3f}, no edge"

    def _buy(
        self, context: AgentContext, symbol: str, p: float, confidence: float, horizon: int
    ) -> tuple[dict[str, Any] | None, str]:
        """A BUY topping the position up to its target size, sized by confidence."""
        scale = confidence_scale(confidence, self.full_confidence)
        price = context.market.prices[symbol]
        target = context.equity * self.max_fraction * scale
        position = context.portfolio.positions.get(symbol)
        current = context.portfolio.quantity(symbol) * price if position else ZERO
        missing = target - current
        if current > target * (1 - self.rebalance_band):
            return None, f"{symbol}: P(up) {p:.3f}, position near its target size"
        if missing < context.limits.min_order_notional:
            return None, f"{symbol}: P(up) {p:.3f}, already at the target size"
        quantity = quantize_down(missing / price)
        if quantity <= ZERO:
            return None, f"{symbol}: P(up) {p:.3f}, target reached"
        order = {"asset": symbol, "side": "BUY", "quantity": quantity}
        return order, (
            f"{symbol}: P(up {horizon} candles) {p:.3f} → BUY "
            f"{quantity} (confidence {confidence:.2f})"
        )
