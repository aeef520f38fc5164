"""Promotion and retraining of the ML agent's models (re-exported by
:mod:`race.ml_service`, whose docstring states the promotion rule and the retraining timer).

:func:`edge` and :func:`promotion` decide whether a newly trained model becomes the promoted
one; :func:`retrain` is the ``retrain_ml`` timer's run for a slot.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from agents.ml import DEFAULT_MODEL_NAME
from race.domain.timeutil import ensure_utc
from race.store import ml_models

if TYPE_CHECKING:
    from race.bootstrap import App

log = logging.getLogger("race.ml")


def edge(metrics: Any) -> float | None:
    """Held-out accuracy minus the always-majority baseline's (None when unknown)."""
    try:
        value = float(metrics["accuracy"]) - float(metrics["baselineAccuracy"])
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def promotion(
    metrics: Any, until: datetime, current: Any | None, margin: float
) -> tuple[bool, str]:
    """(promote?, why) for a new model of held-out ``metrics`` trained before ``until``,
    against the ``current`` promoted model (a row with ``version``, ``trained_until`` and
    ``metrics``) and the margin (module docstring)."""
    new = edge(metrics)
    if new is None:
        return False, "its held-out metrics are incomplete: not promoted"
    if current is None:
        return True, f"the first promoted model of its name (held-out edge {new:+.4f})"
    if current.trained_until > until:
        return False, (
            f"trained on an earlier cut-off than the promoted {current.version} "
            f"({current.trained_until.isoformat()}): not promoted"
        )
    old = edge(current.metrics)
    if old is None:
        return True, f"held-out edge {new:+.4f}; the promoted {current.version} has none"
    if round(new - old + margin, 9) >= 0:  # metrics carry 6 decimals: no float noise
        return True, (
            f"held-out edge {new:+.4f} ≥ {current.version}'s {old:+.4f} − margin {margin:g}"
        )
    return False, (
        f"held-out edge {new:+.4f} < {current.version}'s {old:+.4f} − margin {margin:g}: "
        f"stored, not promoted ({current.version} stays)"
    )


@dataclass(frozen=True)
class RetrainOutcome:
    name: str
    version: str | None
    status: str
    """``promoted``, ``candidate``, ``exists`` (that slot's model is stored) or ``failed``."""
    reason: str


def retrain(app: App, slot: datetime) -> list[RetrainOutcome]:
    """The retraining timer's run for ``slot``: every stored model name (or the default one
    when none is stored) is trained on the candles closed before ``slot`` with the promoted
    model's horizon and assets (all enabled ones when none is promoted), and promoted or
    not by the rule. A repeated slot finds its model
    stored and trains nothing. One name's failure (too few candles…) is logged and does
    not stop the others."""
    # race.ml_service re-exports this module: imported at call time (no import cycle).
    from race.ml_service import DEFAULT_HORIZON, train_model

    slot = ensure_utc(slot, field="slot")
    with app.db.read() as session:
        plans: list[tuple[str, int, list[str] | None]] = []
        for name in ml_models.names(session) or [DEFAULT_MODEL_NAME]:
            current = ml_models.promoted(session, name)
            if current is None:
                plans.append((name, DEFAULT_HORIZON, None))
            else:
                symbols = (current.info or {}).get("symbols")
                plans.append((name, current.horizon, list(symbols) if symbols else None))
    outcomes = []
    for name, horizon, symbols in plans:
        version = f"{slot.strftime('%Y%m%dT%H%M%SZ')}-h{horizon}"
        with app.db.read() as session:
            exists = ml_models.find(session, name, version) is not None
        if exists:
            outcomes.append(RetrainOutcome(name, version, "exists", "already trained"))
            log.info("retrain %s for %s: %s@%s is already stored", name, slot, name, version)
            continue
        try:
            report = train_model(app, slot, name=name, horizon=horizon, symbols=symbols)
        except ValueError as exc:
            log.warning("retrain %s for %s failed: %s", name, slot.isoformat(), exc)
            outcomes.append(RetrainOutcome(name, None, "failed", str(exc)))
            continue
        outcomes.append(RetrainOutcome(name, report.version, report.status, report.reason))
    return outcomes
