"""Managing what races: the asset universe and the agents (each with its portfolio)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from race.clock import Clock
from race.domain.model import Provider
from race.domain.money import ZERO
from race.store import agents as agent_rows
from race.store import assets as asset_rows
from race.store.database import Database
from race.store.tables import AgentRow, Asset

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
        row = asset_rows.by_symbol(session, symbol)
        if row is not None:
            if row.coingecko_id != coingecko_id:
                raise UniverseError(
                    f"{symbol} already exists with CoinGecko id {row.coingecko_id!r}"
                )
            row.enabled = row.enabled or enabled
            return row, False
        row = asset_rows.insert(
            session,
            symbol=symbol,
            coingecko_id=coingecko_id,
            name=name or KNOWN_NAMES.get(coingecko_id, coingecko_id.title()),
            enabled=enabled,
            now=clock.now(),
        )
        return row, True


def set_asset_enabled(db: Database, symbol: str, enabled: bool) -> Asset:
    with db.write() as session:
        row = asset_rows.by_symbol(session, symbol.strip().upper())
        if row is None:
            raise UniverseError(f"unknown asset {symbol!r}")
        row.enabled = enabled
        return row


def list_assets(db: Database) -> list[Asset]:
    with db.read() as session:
        return asset_rows.all_assets(session)


@dataclass(frozen=True)
class NewAgent:
    name: str
    provider: Provider
    model: str | None = None
    strategy: str = ""
    instructions: str = ""
    params: Mapping[str, Any] | None = None


def agent_name(text: str) -> str:
    """A valid agent name: trimmed, 1-100 printable characters (no tabs, newlines or
    other control characters: they break tables), and not only digits (an id)."""
    name = text.strip()
    if not name or len(name) > 100:
        raise UniverseError("agent name must be 1-100 characters")
    bad = next((ch for ch in name if not ch.isprintable()), None)
    if bad is not None:
        raise UniverseError(
            f"agent name {name!r} holds the control character {bad!r} (U+{ord(bad):04X}): "
            "names are printable text on one line"
        )
    if name.isdigit():
        raise UniverseError(f"agent name {name!r} is only digits: it would read as an agent id")
    return name


def find_agent(session: Session, ref: str | int) -> AgentRow:
    """The agent named ``ref`` (any case) or with id ``ref``; UniverseError otherwise."""
    text_ref = str(ref).strip()
    row: AgentRow | None = None
    if text_ref.isdigit():
        row = agent_rows.by_id(session, int(text_ref))
    elif text_ref:
        row = agent_rows.by_name(session, text_ref)
    if row is None:
        raise UniverseError(
            f"unknown agent {text_ref!r}: give its name or id (see `python -m race agents list`)"
        )
    return row


def add_agent(
    db: Database, new: NewAgent, starting_capital: Decimal, clock: Clock, *, exist_ok: bool = False
) -> tuple[AgentRow, bool]:
    """Create an agent with its portfolio (and empty stats) in one transaction."""
    name = agent_name(new.name)
    if starting_capital <= ZERO:
        raise UniverseError("starting capital must be positive")
    params = dict(new.params or {})
    with db.write() as session:
        existing = agent_rows.by_name(session, name)
        if existing is not None:
            if exist_ok:
                return existing, False
            raise UniverseError(
                f"an agent named {existing.name!r} (id {existing.id}) already exists: names "
                "are unique regardless of case"
            )
        row = agent_rows.insert(
            session,
            name=name,
            provider=new.provider.value,
            model=new.model,
            strategy=new.strategy[:500],
            instructions=new.instructions,
            params=params,
            starting_capital=starting_capital,
            now=clock.now(),
        )
        return row, True


def set_agent_active(db: Database, ref: str | int, active: bool) -> AgentRow:
    """Enable or disable the agent named ``ref`` or with id ``ref``."""
    with db.write() as session:
        row = find_agent(session, ref)
        row.is_active = active
        return row


@dataclass(frozen=True)
class RemovedAgent:
    id: int
    name: str
    decisions: int
    trades: int
    snapshots: int


def remove_agent(db: Database, ref: str | int, *, force: bool = False) -> RemovedAgent:
    """Delete an agent with its portfolio, stats and equity snapshots, in one transaction.
    An agent that has decided is refused unless ``force``: then its decisions, trades and
    positions go too (all or nothing)."""
    with db.write() as session:
        row = find_agent(session, ref)
        agent_id = row.id
        history = agent_rows.history(session, agent_id)
        decisions, trades = history.decisions, history.trades
        if decisions and not force:
            raise UniverseError(
                f"agent {row.name!r} (id {agent_id}) has {decisions} decision(s) and "
                f"{trades} trade(s): `agents disable` stops it and keeps its history; "
                "`agents remove --force` deletes it with its history"
            )
        removed = RemovedAgent(agent_id, row.name, decisions, trades, history.snapshots)
        agent_rows.delete_with_history(session, agent_id)
        return removed


def list_agents(db: Database) -> list[AgentRow]:
    with db.read() as session:
        return agent_rows.all_agents(session)
