"""Race bundles (docs/races.md, "Export and re-score"): one self-describing, gzip'd JSON file
that holds what a third party needs to re-score a race without our database — the race and
its rules, the participants (secrets scrubbed), the candles with a SHA-256 per asset series,
every decision with its recorded answer, every trade and snapshot, and the leaderboard.

:func:`export_race` builds the document, :func:`write_bundle` writes it and
:func:`read_bundle` reads one back, checked (:class:`BundleError` for anything malformed);
:mod:`race.rescore` replays it."""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from race.domain.model import Provider
from race.domain.race import Race
from race.domain.timeutil import iso
from race.leaderboard import standings
from race.races import find_race
from race.store.tables import AgentRow, Asset, CandleRow, DecisionRow, EquitySnapshotRow, TradeRow
from race.whatif import source_cycles

if TYPE_CHECKING:
    from race.bootstrap import App

FORMAT = "ai-trading-race/race-bundle"
VERSION = 1
CANDLE_COLUMNS = (
    "close_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume_24h",
    "interval_seconds",
)
DESCRIPTION: dict[str, str] = {
    "format, version": "this file's format; a reader refuses a version it does not know",
    "race": "kind, name, start/end (ISO-8601 UTC), interval_seconds, starting_capital, rules "
    "(fee, slippage, risk limits; decimals as strings), universe, and the market view the "
    "cycles were built with (context_candles, max_price_age_seconds)",
    "participants": "agents by id: name, provider, kind, model, strategy, instructions, params "
    "(secrets scrubbed)",
    "candles": "per asset, in the race's asset order: symbol, name, rows (columns in "
    "candle_columns; decimals as strings) and sha256 = SHA-256 of the rows as compact JSON "
    '(separators "," and ":")',
    "decisions": "every decision row (race_id left out): the judged step and the recorded "
    "answer (raw_output, proposed_orders, fallback, tokens, cost...) a replay asks again",
    "trades": "every trade row, with its asset's symbol",
    "snapshots": "every equity snapshot row",
    "leaderboard": "per agent: rank, final_equity, return_pct, trades, fees_paid",
}
MONEY = {
    "quantity",
    "reference_price",
    "price",
    "notional",
    "fee",
    "slippage_cost",
    "realized_pnl",
    "total_value",
    "cash_value",
    "positions_value",
    "unrealized_pnl",
    "final_equity",
    "fees_paid",
}
"""Fields compared as decimals (their text differs between database engines)."""


class BundleError(ValueError):
    """A bundle that cannot be read or trusted; the message says why, in one line."""


def plain(value: Any) -> Any:
    """A column's value as JSON: decimals as exact strings, times as ISO-8601 UTC."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return iso(value)
    return value


def row_dict(row: Any, skip: Sequence[str] = ("race_id",)) -> dict[str, Any]:
    return {c.key: plain(getattr(row, c.key)) for c in row.__table__.columns if c.key not in skip}


def series_hash(rows: list[list[Any]]) -> str:
    return hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()


def _race(race: Race, app: App) -> dict[str, Any]:
    age = app.settings.max_price_age
    return {
        "id": race.id,
        "name": race.name,
        "kind": race.kind.value,
        "start": iso(race.start),
        "end": iso(race.end),
        "interval_seconds": race.interval_seconds,
        "starting_capital": plain(race.starting_capital),
        "rules": None if race.rules is None else race.rules.to_json(),
        "universe": None if race.universe is None else list(race.universe),
        "status": race.status,
        "source_race_id": race.source_race_id,
        "context_candles": app.settings.context_candles,
        "max_price_age_seconds": None if age is None else age.total_seconds(),
    }


def _participants(session: Session, race_id: int, app: App) -> list[dict[str, Any]]:
    from agents.registry import AgentUnavailable, kind_of
    from race.store import races as race_rows

    scrub = app.settings.secret_policy().redact_value
    found = []
    ids = race_rows.participants(session, race_id)
    for row in session.scalars(select(AgentRow).where(AgentRow.id.in_(ids)).order_by(AgentRow.id)):
        try:
            kind = kind_of(Provider(row.provider), row.model).name
        except (ValueError, AgentUnavailable):
            kind = "unknown"
        found.append(
            {
                "id": row.id,
                "name": row.name,
                "provider": row.provider,
                "kind": kind,
                "model": row.model,
                "strategy": scrub(row.strategy),
                "instructions": scrub(row.instructions),
                "params": scrub(row.params or {}),
            }
        )
    return found


def _assets(session: Session, race: Race) -> list[Asset]:
    query = select(Asset).order_by(Asset.id)
    if race.universe:
        query = query.where(Asset.symbol.in_(list(race.universe)))
    else:
        query = query.where(Asset.enabled)
    return list(session.scalars(query))


def _candles(
    session: Session, race: Race, first: datetime, last: datetime, depth: int
) -> list[dict[str, Any]]:
    """Per asset: the ``depth`` candles before ``first`` (the first view's history) and every
    candle closed from ``first`` to ``last``."""
    columns = [getattr(CandleRow, name) for name in CANDLE_COLUMNS]
    series = []
    for asset in _assets(session, race):
        mine = select(*columns).where(CandleRow.asset_id == asset.id)
        head = session.execute(
            mine.where(CandleRow.close_time < first)
            .order_by(CandleRow.close_time.desc())
            .limit(depth)
        ).all()
        body = session.execute(
            mine.where(CandleRow.close_time >= first, CandleRow.close_time <= last).order_by(
                CandleRow.close_time
            )
        ).all()
        rows = [[plain(v) for v in row] for row in [*reversed(head), *body]]
        series.append(
            {
                "symbol": asset.symbol,
                "name": asset.name,
                "coingecko_id": asset.coingecko_id,
                "sha256": series_hash(rows),
                "rows": rows,
            }
        )
    return series


def export_race(app: App, ref: str) -> dict[str, Any]:
    """The bundle of race ``ref`` (by name or id), as a JSON-ready document."""
    race = find_race(app.db, ref)
    times = source_cycles(app.db, race.id)
    with app.db.read() as session:
        symbols = {a.id: a.symbol for a in session.scalars(select(Asset))}
        candles = (
            _candles(session, race, times[0], times[-1], app.settings.context_candles)
            if times
            else []
        )

        def rows(table: Any, order: Any, skip: Sequence[str] = ("race_id",)) -> list[Any]:
            query = select(table).where(table.race_id == race.id).order_by(*order)
            return [row_dict(row, skip) for row in session.scalars(query)]

        trades = rows(TradeRow, (TradeRow.id,))
        for trade in trades:
            trade["asset"] = symbols.get(trade["asset_id"])
        return {
            "format": FORMAT,
            "version": VERSION,
            "description": DESCRIPTION,
            "candle_columns": list(CANDLE_COLUMNS),
            "race": _race(race, app),
            "participants": _participants(session, race.id, app),
            "candles": candles,
            "decisions": rows(DecisionRow, (DecisionRow.agent_id, DecisionRow.cycle_time)),
            "trades": trades,
            "snapshots": rows(EquitySnapshotRow, (EquitySnapshotRow.id,), ("race_id",)),
            "leaderboard": leaderboard(session, race.id),
        }


def leaderboard(session: Session, race_id: int) -> list[dict[str, Any]]:
    return [
        {
            "agent_id": s.agent_id,
            "name": s.name,
            "rank": s.rank,
            "final_equity": plain(s.current_value),
            "return_pct": s.return_pct,
            "trades": s.total_trades,
            "fees_paid": plain(s.fees_paid),
        }
        for s in standings(session, race_id=race_id)
    ]


def write_bundle(document: dict[str, Any], path: Path) -> int:
    """Write the bundle (gzip'd JSON); its size in bytes."""
    data = gzip.compress(json.dumps(document, separators=(",", ":")).encode(), mtime=0)
    path.write_bytes(data)
    return len(data)


def read_bundle(path: Path) -> dict[str, Any]:
    """The bundle's document, its format and version checked (:class:`BundleError`)."""
    try:
        document = json.loads(gzip.decompress(path.read_bytes()))
    except FileNotFoundError:
        raise BundleError(f"no bundle at {path}") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise BundleError(f"{path} is not a gzip'd race bundle ({exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path} does not hold JSON ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise BundleError(f"{path} is not a race bundle (no format {FORMAT!r})")
    if document.get("version") != VERSION:
        raise BundleError(
            f"{path} is a race bundle of version {document.get('version')!r}; "
            f"this program reads version {VERSION}"
        )
    return document
