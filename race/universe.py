"""Managing what races: the asset universe and the agents (each with its portfolio)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from race.clock import Clock
from race.domain.metrics import EquityStats
from race.domain.model import Provider
from race.domain.money import ZERO
from race.store.database import Database
from race.store.tables import AgentRow, AgentStatsRow, Asset, PortfolioRow

KNOWN_NAMES = {
    "bitcoin": "Bitcoin",
    "ethereum": "Ethereum",
    "solana": "Solana",
    "binancecoin": "BNB",
    "ripple": "XRP",
    "cardano": "Cardano",
    "dogecoin": "Dogecoin",
}
_SYMBOL = re.compile(r"^[A-Z0-9]{2,12}$")
_COIN = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


class UniverseError(ValueError):
    """A bad asset or agent definition; the message names the field."""


def add_asset(
    db: Database,
    symbol: str,
    coingecko_id: str,
    clock: Clock,
    name: str | None = None,
    *,
    enabled: bool = True,
) -> tuple[Asset, bool]:
    """Add (or re-enable) an asset. Returns the row and whether it was created."""
    symbol = symbol.strip().upper()
    coingecko_id = coingecko_id.strip().lower()
    if not _SYMBOL.match(symbol):
        raise UniverseError(f"symbol {symbol!r} must be 2-12 letters or digits, e.g. BTC")
    if not _COIN.match(coingecko_id):
        raise UniverseError(f"CoinGecko id {coingecko_id!r} must look like 'bitcoin'")
    with db.write() as session:
        row = session.scalar(select(Asset).where(Asset.symbol == symbol))
        if row is not None:
            if row.coingecko_id != coingecko_id:
                raise UniverseError(
                    f"{symbol} already exists with CoinGecko id {row.coingecko_id!r}"
                )
            row.enabled = row.enabled or enabled
            return row, False
        row = Asset(
            symbol=symbol,
            coingecko_id=coingecko_id,
            name=name or KNOWN_NAMES.get(coingecko_id, coingecko_id.title()),
            enabled=enabled,
            created_at=clock.now(),
        )
        session.add(row)
        session.flush()
        return row, True


def set_asset_enabled(db: Database, symbol: str, enabled: bool) -> Asset:
    with db.write() as session:
        row = session.scalar(select(Asset).where(Asset.symbol == symbol.strip().upper()))
        if row is None:
            raise UniverseError(f"unknown asset {symbol!r}")
        row.enabled = enabled
        return row


def list_assets(db: Database) -> list[Asset]:
    with db.read() as session:
        return list(session.scalars(select(Asset).order_by(Asset.id)))


@dataclass(frozen=True)
class NewAgent:
    name: str
    provider: Provider
    model: str | None = None
    strategy: str = ""
    instructions: str = ""
    params: Mapping[str, Any] | None = None


def add_agent(
    db: Database, new: NewAgent, starting_capital: Decimal, clock: Clock, *, exist_ok: bool = False
) -> tuple[AgentRow, bool]:
    """Create an agent with its portfolio (and empty stats) in one transaction."""
    name = new.name.strip()
    if not name or len(name) > 100:
        raise UniverseError("agent name must be 1-100 characters")
    if starting_capital <= ZERO:
        raise UniverseError("starting capital must be positive")
    params = dict(new.params or {})
    with db.write() as session:
        existing = session.scalar(select(AgentRow).where(AgentRow.name == name))
        if existing is not None:
            if exist_ok:
                return existing, False
            raise UniverseError(f"an agent named {name!r} already exists")
        now = clock.now()
        row = AgentRow(
            name=name,
            provider=new.provider.value,
            model=new.model,
            strategy=new.strategy[:500],
            instructions=new.instructions,
            params=params,
            is_active=True,
            created_at=now,
        )
        session.add(row)
        session.flush()
        session.add(
            PortfolioRow(
                agent_id=row.id,
                cash=starting_capital,
                starting_capital=starting_capital,
                as_of=None,
                version=0,
                created_at=now,
            )
        )
        session.add(
            AgentStatsRow(
                agent_id=row.id,
                equity_state=EquityStats.starting_at(starting_capital).to_state(),
                snapshot_count=0,
                current_value=starting_capital,
                max_drawdown_pct=0.0,
                total_trades=0,
                winning_trades=0,
                losing_trades=0,
                fees_paid=ZERO,
                decisions=0,
                fallbacks=0,
                prompt_tokens=0,
                completion_tokens=0,
                cost_usd=ZERO,
                recent_fallbacks="",
                degraded=False,
            )
        )
        return row, True


def set_agent_active(db: Database, name: str, active: bool) -> AgentRow:
    with db.write() as session:
        row = session.scalar(select(AgentRow).where(AgentRow.name == name))
        if row is None:
            raise UniverseError(f"unknown agent {name!r}")
        row.is_active = active
        return row


def list_agents(db: Database) -> list[AgentRow]:
    with db.read() as session:
        return list(session.scalars(select(AgentRow).order_by(AgentRow.id)))
