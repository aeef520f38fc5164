"""Routers that install flat: :class:`AreaRouter` is an :class:`~fastapi.APIRouter` that
also records each route it declares, so :meth:`AreaRouter.install` can declare the same
routes on the app itself, as if they had been written there (``app.routes`` lists them,
the app's default responses and settings apply). FastAPI's ``include_router`` (0.165 on)
instead adds the router as one lazily resolved branch, which ``app.routes`` does not list
route by route."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, FastAPI


class AreaRouter(APIRouter):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.declared: list[tuple[str, Callable[..., Any], dict[str, Any]]] = []

    def add_api_route(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        self.declared.append((path, endpoint, kwargs))
        super().add_api_route(path, endpoint, **kwargs)

    def install(self, api: FastAPI) -> None:
        """Declare every route of this router on ``api``, with its tags and dependencies."""
        for path, endpoint, kwargs in self.declared:
            options = dict(kwargs)
            options["tags"] = [*self.tags, *(kwargs.get("tags") or [])]
            options["dependencies"] = [*self.dependencies, *(kwargs.get("dependencies") or [])]
            api.router.add_api_route(path, endpoint, **options)
