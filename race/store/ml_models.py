"""The ``ml_models`` table: store, find, promote and roll back trained models (on a
SQLAlchemy session). The artifact bytes are read only when a model is loaded
(:func:`artifact_of`); every other query leaves them out.

Statuses: ``candidate`` (stored, never promoted), ``promoted`` (at most one per name: the
model the agent decides with), ``retired`` (promoted once, then replaced), ``rolled_back``
(promoted once, then rolled back from: a later rollback never restores it).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, select, update
from sqlalchemy.orm import Session, defer

from race.store.tables import MLModelRow

CANDIDATE = "candidate"
PROMOTED = "promoted"
RETIRED = "retired"
ROLLED_BACK = "rolled_back"
STATUSES = (CANDIDATE, PROMOTED, RETIRED, ROLLED_BACK)
REASON_CHARS = 2000


class ModelNotFound(LookupError):
    """No stored model of that name and version."""


@dataclass(frozen=True)
class NewModel:
    """What a trained model is stored with."""

    name: str
    version: str
    artifact: bytes
    trained_until: datetime
    train_start: datetime
    train_end: datetime
    test_start: datetime
    test_end: datetime
    horizon: int
    features: Sequence[str]
    metrics: Mapping[str, Any]
    info: Mapping[str, Any]


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, ±inf) replaced by ``None`` and NUL
    characters removed from strings: PostgreSQL refuses both in JSON and text."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, Mapping):
        return {json_safe(str(k)): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return json_safe(value.item())
    return value


def _text(value: str | None) -> str | None:
    return None if value is None else value.replace("\x00", "")[:REASON_CHARS]


def add(
    session: Session, model: NewModel, *, created_at: datetime, status: str, reason: str | None
) -> MLModelRow:
    """Store a model. ``ValueError`` when that name and version is already stored (versions
    are immutable); a ``promoted`` status demotes the current one (see :func:`promote`)."""
    if status not in (CANDIDATE, PROMOTED):
        raise ValueError(f"a new model is stored as candidate or promoted, not {status!r}")
    if find(session, model.name, model.version) is not None:
        raise ValueError(
            f"model {model.name}@{model.version} is already stored (versions are immutable)"
        )
    row = MLModelRow(
        name=model.name,
        version=model.version,
        artifact=model.artifact,
        sha256=sha256_of(model.artifact),
        size_bytes=len(model.artifact),
        trained_until=model.trained_until,
        train_start=model.train_start,
        train_end=model.train_end,
        test_start=model.test_start,
        test_end=model.test_end,
        horizon=model.horizon,
        features=json_safe(list(model.features)),
        metrics=json_safe(dict(model.metrics)),
        info=json_safe(dict(model.info)),
        status=CANDIDATE,
        reason=_text(reason),
        created_at=created_at,
    )
    session.add(row)
    session.flush()
    if status == PROMOTED:
        promote(session, model.name, model.version, at=created_at, reason=reason)
    return row


def _listing() -> Any:
    return select(MLModelRow).options(defer(MLModelRow.artifact))


def find(session: Session, name: str, version: str) -> MLModelRow | None:
    """The model's row without its artifact bytes (loaded on access only)."""
    return session.scalar(_listing().where(MLModelRow.name == name, MLModelRow.version == version))


def by_version(session: Session, version: str, name: str | None = None) -> MLModelRow:
    """The model of that version (of ``name``, or of any name when it is unambiguous)."""
    query = _listing().where(MLModelRow.version == version)
    if name is not None:
        query = query.where(MLModelRow.name == name)
    rows = list(session.scalars(query))
    if not rows:
        raise ModelNotFound(f"no stored model version {version!r}")
    if len(rows) > 1:
        names = ", ".join(sorted(r.name for r in rows))
        raise ModelNotFound(f"version {version!r} exists for several models ({names}): name one")
    return rows[0]


def listing(session: Session, name: str | None = None) -> list[MLModelRow]:
    """Stored models (without their bytes), by name, newest training cut-off first."""
    query = _listing().order_by(
        MLModelRow.name, MLModelRow.trained_until.desc(), MLModelRow.id.desc()
    )
    if name is not None:
        query = query.where(MLModelRow.name == name)
    return list(session.scalars(query))


def promoted(session: Session, name: str) -> MLModelRow | None:
    return session.scalar(_listing().where(MLModelRow.name == name, MLModelRow.status == PROMOTED))


def usable(session: Session, name: str, at: datetime) -> MLModelRow | None:
    """The model the agent decides with at ``at``: the promoted one when it was trained on
    data before ``at``; otherwise (a replay of the past) the latest-promoted model that
    was, among those promoted once and not rolled back from. Never a model of ``at``'s
    future."""
    # One query per decision (the ML agent asks at every one): the promoted model sorts
    # first when it qualifies, else the latest-promoted of the others.
    return session.scalar(
        _listing()
        .where(
            MLModelRow.name == name,
            MLModelRow.status.in_((PROMOTED, RETIRED)),
            MLModelRow.trained_until <= at,
        )
        .order_by(
            case((MLModelRow.status == PROMOTED, 0), else_=1),
            MLModelRow.promoted_at.desc(),
            MLModelRow.id.desc(),
        )
        .limit(1)
    )


def artifact_of(session: Session, model_id: int) -> tuple[bytes, str] | None:
    """(artifact bytes, stored sha256) of a model."""
    row = session.execute(
        select(MLModelRow.artifact, MLModelRow.sha256).where(MLModelRow.id == model_id)
    ).first()
    return None if row is None else (bytes(row[0]), row[1])


def promote(
    session: Session, name: str, version: str, *, at: datetime, reason: str | None = None
) -> MLModelRow:
    """Make ``version`` the promoted model of ``name``; the one it replaces is ``retired``."""
    row = find(session, name, version)
    if row is None:
        raise ModelNotFound(f"no stored model {name}@{version}")
    session.execute(
        update(MLModelRow)
        .where(MLModelRow.name == name, MLModelRow.status == PROMOTED, MLModelRow.id != row.id)
        .values(status=RETIRED)
    )
    row.status = PROMOTED
    row.promoted_at = at
    if reason is not None:
        row.reason = _text(reason)
    session.flush()
    return row


def rollback(session: Session, name: str, *, reason: str) -> tuple[MLModelRow, MLModelRow]:
    """Back to the previously promoted model of ``name``: the current one becomes
    ``rolled_back``, the latest-promoted ``retired`` one is promoted again (its
    ``promoted_at`` kept, so successive rollbacks walk back through the history).
    Returns (the model rolled back from, the model now promoted); ``LookupError`` when
    there is no current or no previous one."""
    current = promoted(session, name)
    if current is None:
        raise ModelNotFound(f"no promoted model {name!r} to roll back from")
    previous = session.scalar(
        _listing()
        .where(MLModelRow.name == name, MLModelRow.status == RETIRED)
        .order_by(MLModelRow.promoted_at.desc(), MLModelRow.id.desc())
        .limit(1)
    )
    if previous is None:
        raise ModelNotFound(
            f"{name}@{current.version} is the only model of {name!r} ever promoted: "
            "nothing to roll back to"
        )
    current.status = ROLLED_BACK
    current.reason = _text(reason)
    session.flush()
    previous.status = PROMOTED
    session.flush()
    return current, previous


def names(session: Session) -> list[str]:
    return list(session.scalars(select(MLModelRow.name).distinct().order_by(MLModelRow.name)))
