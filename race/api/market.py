"""``/api/market/prices``: each asset's latest price and its last 24 hours."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from race.api import models as m
from race.api import queries as q
from race.api._requests import ApiError
from race.api.context import Context
from race.api.errors import ERRORS
from race.api.routing import AreaRouter

router = AreaRouter(tags=["market"])


@router.get("/api/market/prices", response_model=list[m.MarketPrice], responses=ERRORS)
def get_prices(context: Context) -> list[m.MarketPrice]:
    with context.reading() as session:
        return q.market_prices(session)


@router.get("/api/market/prices/{symbol}", response_model=m.MarketPrice, responses=ERRORS)
def get_price(
    symbol: Annotated[str, Path(max_length=16, pattern=r"^[A-Za-z0-9]{1,16}$")],
    context: Context,
) -> m.MarketPrice:
    clean = symbol.strip()
    with context.reading() as session:
        asset = q.asset_by_symbol(session, clean)
        price = None if asset is None else q.market_price(session, asset)
    if price is None:
        raise ApiError(404, f"no prices for {clean.upper()}")
    return price
