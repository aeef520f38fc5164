"""Every error as JSON ``{"message": …}``: the documented error responses, the exception
handlers, and the OpenAPI schema without FastAPI's 422."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from race.api import models as m
from race.api._requests import ApiError
from race.store.database import DatabaseError

log = logging.getLogger("race.api")

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": m.ErrorBody, "description": "bad parameter"},
    404: {"model": m.ErrorBody, "description": "unknown id"},
    503: {"model": m.ErrorBody, "description": "database unreachable"},
}
ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    401: {"model": m.ErrorBody, "description": "missing or wrong X-API-Key"},
    403: {"model": m.ErrorBody, "description": "admin disabled: RACE_ADMIN_KEY is not set"},
    413: {"model": m.ErrorBody, "description": "body too large"},
    415: {"model": m.ErrorBody, "description": "a body not sent as Content-Type: application/json"},
}


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)


_FRIENDLY = {
    "agent_id": "agent id must be a positive integer",
    "job_id": "job id must be a positive integer",
    "symbol": "symbol must be 1 to 16 letters or digits",
}

_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), "a number" if isinstance(value, int | float) else "null")


def describe(exc: RequestValidationError) -> str:
    """A request's validation errors in one line, naming each bad parameter."""
    parts = []
    for error in exc.errors():
        where = [str(p) for p in error.get("loc", ()) if p not in ("query", "path", "body")]
        name = ".".join(where) or "request"
        if tuple(error.get("loc", ())) == ("body",) and error.get("type") in (
            "model_attributes_type",
            "dict_type",
            "model_type",
        ):
            parts.append(f"the body must be a JSON object, got {_json_type(error.get('input'))}")
        elif name in _FRIENDLY:
            parts.append(f"{_FRIENDLY[name]}, got {str(error.get('input'))[:40]!r}")
        else:
            parts.append(f"{name}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(api: FastAPI, unavailable: Callable[[BaseException], ApiError]) -> None:
    """Each error as ``{"message": …}``: 400 for a bad request (never 422), 404 naming an
    unknown endpoint, 503 (via ``unavailable``) for an unreachable database, 500 logged."""

    @api.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message)

    @api.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, describe(exc))

    @api.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error_response(404, f"no such endpoint: {request.url.path[:200]}")
        return error_response(exc.status_code, str(exc.detail))

    @api.exception_handler(DatabaseError)
    async def _database(_: Request, exc: DatabaseError) -> JSONResponse:
        error = unavailable(exc)
        return error_response(error.status, error.message)

    @api.exception_handler(OperationalError)
    async def _unreachable(_: Request, exc: OperationalError) -> JSONResponse:
        error = unavailable(exc)
        return error_response(error.status, error.message)

    @api.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path[:200])
        return error_response(500, "internal error (logged)")


def openapi_without_422(api: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, less the 422 ``{detail}`` response it documents for every route
    with parameters: this API answers a bad request 400 ``{message}`` (documented on each
    route), never 422."""
    if api.openapi_schema is None:
        schema = FastAPI.openapi(api)  # builds and caches it in api.openapi_schema
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                if isinstance(operation, dict):
                    operation.get("responses", {}).pop("422", None)
        components = schema.get("components", {}).get("schemas", {})
        text = json.dumps(schema.get("paths", {}))
        for name in ("HTTPValidationError", "ValidationError"):
            if f"#/components/schemas/{name}" not in text:
                components.pop(name, None)
        api.openapi_schema = schema
    return api.openapi_schema
