"""Bodies serialised once, as :class:`fastapi.responses.JSONResponse` renders them."""

from __future__ import annotations

import json
from typing import Any


def json_bytes(content: Any) -> bytes:
    """As :class:`JSONResponse` renders ``content``."""
    return json.dumps(
        content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")
