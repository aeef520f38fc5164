"""The in-process ML agent (provider ``CustomML``) and its versioned model artifacts.

A model is trained by :func:`race.ml_service.train_model` (``python -m race ml train --until
ISO``) and saved as ``{RACE_ML_ARTIFACT_DIR}/{name}/{version}/`` with ``model.joblib`` and
``metrics.json``. At decision time T the agent uses the newest artifact trained on data
before T — never one trained on T's future — and HOLDs with the reason when there is none
or it is older than ``RACE_ML_MAX_ARTIFACT_AGE``.

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

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
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
from race.domain.timeutil import parse_iso
from race.settings import Settings

DEFAULT_MODEL_NAME = "direction-gb"
SCHEMA_VERSION = 1
MODEL_FILE = "model.joblib"
METRICS_FILE = "metrics.json"
PARAMS = (
    "buy_threshold",
    "sell_threshold",
    "max_fraction",
    "full_confidence",
    "rebalance_band",
    "assets",
)


@dataclass(frozen=True)
class ArtifactInfo:
    name: str
    version: str
    path: Path
    trained_until: datetime
    created_at: datetime | None
    horizon: int
    features: tuple[str, ...]
    metadata: dict[str, Any]

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self.metadata.get("metrics", {}))


class ArtifactStore:
    """The versions of one model name under the artifact directory."""

    def __init__(self, root: str | os.PathLike[str], name: str = DEFAULT_MODEL_NAME) -> None:
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise AgentConfigError(f"model name {name!r} must be a plain name like 'direction-gb'")
        self.root = Path(root)
        self.name = name
        self.directory = self.root / name

    def list(self) -> list[ArtifactInfo]:
        """Readable versions, oldest training cut-off first (unreadable ones are skipped)."""
        if not self.directory.is_dir():
            return []
        found = []
        for entry in self.directory.iterdir():
            meta_path = entry / METRICS_FILE
            if not entry.is_dir() or not (entry / MODEL_FILE).is_file():
                continue
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
                found.append(
                    ArtifactInfo(
                        name=self.name,
                        version=entry.name,
                        path=entry,
                        trained_until=parse_iso(meta["trainedUntil"]),
                        created_at=parse_iso(meta["createdAt"]) if meta.get("createdAt") else None,
                        horizon=int(meta["horizon"]),
                        features=tuple(meta["features"]),
                        metadata=meta,
                    )
                )
            except (OSError, ValueError, KeyError, TypeError):
                continue
        found.sort(key=lambda a: (a.trained_until, a.version))
        return found

    def select(self, at: datetime, max_age: timedelta) -> ArtifactInfo | str:
        """The newest version trained on data before ``at``, or why there is none usable."""
        versions = self.list()
        if not versions:
            return (
                f"no trained model {self.name!r} in {self.directory}: run "
                "`python -m race ml train --until ISO`"
            )
        usable = [a for a in versions if a.trained_until <= at]
        if not usable:
            return (
                f"no model {self.name!r} trained before {at.isoformat()} (the oldest uses data "
                f"up to {versions[0].trained_until.isoformat()}: using it would look ahead)"
            )
        chosen = usable[-1]
        if at - chosen.trained_until > max_age:
            return (
                f"model {self.name}@{chosen.version} is stale: trained on data up to "
                f"{chosen.trained_until.isoformat()}, more than {max_age} before "
                f"{at.isoformat()}; retrain it"
            )
        if tuple(chosen.features) != FEATURES:
            return f"model {self.name}@{chosen.version} was trained on other features; retrain it"
        return chosen

    def save(self, version: str, model: Any, metadata: Mapping[str, Any]) -> ArtifactInfo:
        """Write a version atomically (a temporary directory renamed into place)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / version
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=self.directory))
        try:
            joblib.dump(model, staging / MODEL_FILE)
            (staging / METRICS_FILE).write_text(
                json.dumps(dict(metadata), indent=2, sort_keys=True), encoding="utf-8"
            )
            if final.exists():
                shutil.rmtree(final)
            staging.rename(final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        saved = [a for a in self.list() if a.version == version]
        if not saved:
            raise RuntimeError(f"artifact {final} was written but cannot be read back")
        return saved[0]


def confidence_scale(confidence: float, full_confidence: float) -> Decimal:
    """How much of the full order size a signal of this confidence earns:
    ``min(1, confidence / full_confidence)`` (0 for no confidence)."""
    if full_confidence <= 0:
        raise ValueError(f"full_confidence must be > 0, got {full_confidence}")
    return Decimal(str(min(1.0, max(0.0, confidence) / full_confidence)))


def load_model(info: ArtifactInfo, shared: dict[str, Any]) -> Any:
    """The fitted estimator of a version, loaded once per process (keyed by path and mtime)."""
    path = info.path / MODEL_FILE
    key = f"ml.model:{path.resolve()}:{path.stat().st_mtime_ns}"
    model = shared.get(key)
    if model is None:
        model = joblib.load(path)
        shared[key] = model
    return model


class MLAgent:
    """Scikit-learn direction classifier over candle features; in-process and deterministic."""

    in_process = True

    def __init__(self, spec: AgentSpec, settings: Settings, shared: dict[str, Any]) -> None:
        params = dict(spec.params)
        reject_unknown(params, PARAMS, what="CustomML agents")
        self.spec = spec
        self.store = ArtifactStore(settings.ml_artifact_dir, spec.model or DEFAULT_MODEL_NAME)
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

    async def decide(self, context: AgentContext) -> AgentAnswer:
        chosen = self.store.select(context.cycle_time, self.max_age)
        if isinstance(chosen, str):
            return AgentAnswer.fallback(chosen, model=self.store.name)
        label = f"{chosen.name}@{chosen.version}"
        try:
            model = load_model(chosen, self.shared)
        except Exception as exc:
            return AgentAnswer.fallback(
                f"model {label} cannot be loaded: {exc.__class__.__name__}: {exc}"[:500],
                model=label,
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
                "ML: no prediction possible — " + "; ".join(notes), model=label, details=details
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
