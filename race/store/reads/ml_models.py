"""Reads of the stored ML models (``ml_models``), for ``python -m race ml list/show`` and
``GET /api/models``: every column but the artifact's bytes, camelCase."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from race.store import ml_models
from race.store.tables import MLModelRow


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def held_out_edge(metrics: dict[str, Any]) -> float | None:
    """Held-out accuracy minus the always-majority baseline's: the promotion metric."""
    accuracy, baseline = metrics.get("accuracy"), metrics.get("baselineAccuracy")
    if not isinstance(accuracy, int | float) or not isinstance(baseline, int | float):
        return None
    value = round(float(accuracy) - float(baseline), 6)
    return value if math.isfinite(value) else None


def model_view(row: MLModelRow, *, full: bool = False) -> dict[str, Any]:
    """One model as the CLI and the API show it; ``full`` adds the training metadata."""
    metrics = dict(row.metrics or {})
    view: dict[str, Any] = {
        "name": row.name,
        "version": row.version,
        "status": row.status,
        "promoted": row.status == ml_models.PROMOTED,
        "reason": row.reason,
        "sha256": row.sha256,
        "sizeBytes": int(row.size_bytes),
        "trainedUntil": _iso(row.trained_until),
        "trainWindow": [_iso(row.train_start), _iso(row.train_end)],
        "testWindow": [_iso(row.test_start), _iso(row.test_end)],
        "horizon": row.horizon,
        "features": list(row.features or []),
        "metrics": {k: v for k, v in metrics.items() if k != "perSymbol"},
        "heldOutEdge": held_out_edge(metrics),
        "createdAt": _iso(row.created_at),
        "promotedAt": _iso(row.promoted_at),
    }
    if full:
        view["metrics"] = metrics
        view["info"] = dict(row.info or {})
    return view


def models(session: Session, name: str | None = None) -> list[dict[str, Any]]:
    """Every stored model (of ``name``), by name, newest training cut-off first."""
    return [model_view(row) for row in ml_models.listing(session, name)]
