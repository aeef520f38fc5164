"""``GET /api/models``: the ML agent's stored models, read-only (training, promotion and
rollback are ``python -m race ml …``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from pydantic import BaseModel, ConfigDict

from race.api.context import Context
from race.api.errors import ERRORS
from race.api.routing import AreaRouter
from race.store.reads.ml_models import models

router = AreaRouter(tags=["models"])


class StoredModel(BaseModel):
    """One stored model (docs/api.md, ``StoredModel``)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str
    version: str
    status: str
    promoted: bool
    reason: str | None
    sha256: str
    sizeBytes: int
    trainedUntil: str
    trainWindow: list[str]
    testWindow: list[str]
    horizon: int
    features: list[str]
    metrics: dict[str, object]
    heldOutEdge: float | None
    createdAt: str
    promotedAt: str | None


@router.get("/api/models", response_model=list[StoredModel], responses=ERRORS)
def get_models(
    context: Context,
    name: Annotated[str | None, Query(max_length=100)] = None,
) -> list[StoredModel]:
    with context.reading() as session:
        return [StoredModel(**view) for view in models(session, name)]
