"""The admin key: who may call ``/api/admin/*`` (checked by :class:`AdminGate
<race.api.middleware.AdminGate>` before anything else, and by the Functions host)."""

from __future__ import annotations

import hmac
from typing import Any

from fastapi.security import APIKeyHeader

from race.api._requests import ApiError

ADMIN_PREFIX = "/api/admin"

ADMIN_KEY_HEADER = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="equal to RACE_ADMIN_KEY (admin endpoints are disabled without it)",
)


def authorize_admin(settings: Any, presented: str | bytes | None) -> None:
    """Admin calls need ``X-API-Key`` equal to ``RACE_ADMIN_KEY`` (constant-time compare):
    401 when missing or wrong; 403 when no key is configured (admin disabled, never open)."""
    configured = settings.admin_key
    if configured is None or not configured.get_secret_value():
        raise ApiError(403, "admin endpoints are disabled: set RACE_ADMIN_KEY to enable them")
    if isinstance(presented, str):
        presented = presented.encode("utf-8", "surrogateescape")
    if presented is None or not hmac.compare_digest(
        presented, configured.get_secret_value().encode("utf-8")
    ):
        raise ApiError(401, "missing or wrong X-API-Key")
