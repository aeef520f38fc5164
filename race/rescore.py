"""Re-scoring a race bundle (:mod:`race.bundle`) from the bundle alone: into an empty
temporary SQLite database, load the candles (after checking their hashes), create the race
with the bundle's rules, replay every agent from its recorded answers (baselines too: the
bundle is the evidence), then compare the trades, snapshots and leaderboard with the
exported ones."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from agents.recorded import recorded_agent
from race.bundle import (
    CANDLE_COLUMNS,
    MONEY,
    BundleError,
    leaderboard,
    read_bundle,
    row_dict,
    series_hash,
)
from race.clock import Clock
from race.domain import jobs
from race.domain.agent import Agent, AgentSpec
from race.domain.model import Provider
from race.domain.race import RaceKind, RaceRules
from race.domain.recorded import RecordedAnswer
from race.domain.timeutil import parse_iso
from race.engine import RaceEngine
from race.races import create_race
from race.settings import Settings
from race.store import races as race_rows
from race.store.database import Database
from race.store.tables import AgentRow, Asset, CandleRow, EquitySnapshotRow, TradeRow
from race.whatif import replay_cycles

Keyed = dict[tuple[Any, ...], dict[str, Any]]

TRADE_KEY = ("agent_id", "executed_at", "sequence")
TRADE_FIELDS = (
    "side",
    "asset",
    "quantity",
    "reference_price",
    "price",
    "notional",
    "fee",
    "slippage_cost",
    "realized_pnl",
)
SNAPSHOT_KEY = ("agent_id", "captured_at")
SNAPSHOT_FIELDS = ("total_value", "cash_value", "positions_value", "unrealized_pnl", "source")
BOARD_KEY = ("agent_id",)
BOARD_FIELDS = ("rank", "final_equity", "return_pct", "trades", "fees_paid")
TIMES = {"executed_at", "captured_at", "cycle_time"}


@dataclass
class Parsed:
    """A bundle read into typed values (nothing malformed gets past :func:`parse`)."""

    race: race_rows.NewRace
    context_candles: int
    max_price_age: timedelta | None
    participants: list[dict[str, Any]]
    candles: list[tuple[str, str, str, list[dict[str, Any]]]]
    answers: dict[int, dict[datetime, RecordedAnswer]]
    times: list[datetime]
    trades: Keyed
    snapshots: Keyed
    board: Keyed


@dataclass
class Rescored:
    race_name: str
    differences: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def matches(self) -> bool:
        return not self.differences


def _norm(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in MONEY:
        return Decimal(str(value))
    if name in TIMES:
        return parse_iso(str(value))
    return value


def keyed(rows: Sequence[dict[str, Any]], key: Sequence[str], fields: Sequence[str]) -> Keyed:
    out: Keyed = {}
    for row in rows:
        values = {name: _norm(name, row.get(name)) for name in fields}
        values["id"] = row.get("id")
        out[tuple(_norm(name, row[name]) for name in key)] = values
    return out


def _answer(d: dict[str, Any]) -> RecordedAnswer:
    conditions = d.get("market_conditions") or {}
    regime = conditions.get("regime") if isinstance(conditions, dict) else None
    cost = d.get("cost_usd")
    return RecordedAnswer(
        cycle_time=parse_iso(d["cycle_time"]),
        rationale=str(d["rationale"]),
        cited_rules=list(d.get("cited_rules") or []),
        regime=str(d["regime"]),
        market_regime=regime if isinstance(regime, str) else None,
        proposed_orders=list(d.get("proposed_orders") or []),
        fallback=bool(d["fallback"]),
        fallback_reason=d.get("fallback_reason"),
        raw_output=d.get("raw_output"),
        prompt=d.get("prompt"),
        model=d.get("model"),
        latency_ms=d.get("latency_ms"),
        prompt_tokens=d.get("prompt_tokens"),
        completion_tokens=d.get("completion_tokens"),
        cost_usd=None if cost is None else Decimal(str(cost)),
        confidence=d.get("confidence"),
        details=dict(d.get("details") or {}),
        model_version=d.get("model_version"),
        validation_errors=list(d.get("validation_errors") or []),
    )


def _candles(document: dict[str, Any]) -> list[tuple[str, str, str, list[dict[str, Any]]]]:
    """Every series, its hash checked first (:class:`BundleError` naming the asset)."""
    if list(document["candle_columns"]) != list(CANDLE_COLUMNS):
        raise BundleError(f"candle_columns must be {list(CANDLE_COLUMNS)}")
    series = []
    for item in document["candles"]:
        symbol, rows = str(item["symbol"]), item["rows"]
        if series_hash(rows) != item["sha256"]:
            raise BundleError(
                f"candles of {symbol}: SHA-256 mismatch (the bundle says "
                f"{str(item['sha256'])[:12]}…, its rows hash to {series_hash(rows)[:12]}…)"
            )
        parsed = []
        for row in rows:
            values = dict(zip(CANDLE_COLUMNS, row, strict=True))
            parsed.append(
                {
                    "close_time": parse_iso(values["close_time"]),
                    **{
                        k: None if values[k] is None else Decimal(str(values[k]))
                        for k in ("open", "high", "low", "close", "volume", "quote_volume_24h")
                    },
                    "interval_seconds": int(values["interval_seconds"]),
                    "source": "bundle",
                }
            )
        series.append((symbol, str(item["name"]), str(item["coingecko_id"]), parsed))
    return series


def _new_race(race: dict[str, Any]) -> race_rows.NewRace:
    if race["rules"] is None or race["interval_seconds"] is None:
        raise BundleError("the race in the bundle has no rules or interval recorded")
    return race_rows.NewRace(
        name=str(race["name"]),
        kind=RaceKind(race["kind"]),
        start=parse_iso(race["start"]),
        end=None if race["end"] is None else parse_iso(race["end"]),
        interval_seconds=int(race["interval_seconds"]),
        starting_capital=Decimal(str(race["starting_capital"])),
        rules=RaceRules.from_json(race["rules"]),
        universe=race["universe"],
        status=jobs.RUNNING,
    )


def _participant(item: dict[str, Any]) -> dict[str, Any]:
    participant = dict(item)
    participant["id"] = int(participant["id"])
    Provider(participant["provider"])  # ValueError: not a provider
    return participant


def parse(document: dict[str, Any]) -> Parsed:
    """The bundle's contents, typed; :class:`BundleError` for anything malformed."""
    try:
        race = document["race"]
        answers: dict[int, dict[datetime, RecordedAnswer]] = {}
        for decision in document["decisions"]:
            recorded = _answer(decision)
            answers.setdefault(int(decision["agent_id"]), {})[recorded.cycle_time] = recorded
        age = race["max_price_age_seconds"]
        return Parsed(
            race=_new_race(race),
            context_candles=int(race["context_candles"]),
            max_price_age=None if age is None else timedelta(seconds=float(age)),
            participants=[_participant(p) for p in document["participants"]],
            candles=_candles(document),
            answers=answers,
            times=sorted({t for by_time in answers.values() for t in by_time}),
            trades=keyed(document["trades"], TRADE_KEY, TRADE_FIELDS),
            snapshots=keyed(document["snapshots"], SNAPSHOT_KEY, SNAPSHOT_FIELDS),
            board=keyed(document["leaderboard"], BOARD_KEY, (*BOARD_FIELDS, "name")),
        )
    except BundleError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, InvalidOperation, AttributeError) as exc:
        what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise BundleError(f"malformed bundle: {what}"[:300]) from None


def _load(db: Database, parsed: Parsed, clock: Clock) -> int:
    """The bundle's assets, candles, agents and race into the empty database: its id."""
    now = clock.now()
    with db.write() as session:
        for symbol, name, coin, rows in parsed.candles:
            asset = Asset(symbol=symbol, name=name, coingecko_id=coin, enabled=True, created_at=now)
            session.add(asset)
            session.flush()
            if rows:
                session.execute(insert(CandleRow), [{**r, "asset_id": asset.id} for r in rows])
        for p in parsed.participants:
            session.add(
                AgentRow(
                    id=int(p["id"]),
                    name=str(p["name"]),
                    strategy=str(p.get("strategy") or ""),
                    provider=str(p["provider"]),
                    model=p.get("model"),
                    instructions=str(p.get("instructions") or ""),
                    params=dict(p.get("params") or {}),
                    is_active=True,
                    created_at=now,
                )
            )
    ids = [int(p["id"]) for p in parsed.participants]
    return create_race(db, parsed.race, ids, clock).id


def _builder(parsed: Parsed) -> Callable[[AgentSpec], Agent]:
    def build(spec: AgentSpec) -> Agent:
        return recorded_agent(spec.provider, parsed.answers.get(spec.id, {}), "the bundle")

    return build


def _rescored(db: Database, race_id: int) -> tuple[Keyed, Keyed, Keyed]:
    with db.read() as session:
        symbols = {a.id: a.symbol for a in session.scalars(select(Asset))}
        trades = []
        for row in session.scalars(select(TradeRow).where(TradeRow.race_id == race_id)):
            trades.append({**row_dict(row), "asset": symbols.get(row.asset_id)})
        snapshots = [
            row_dict(row)
            for row in session.scalars(
                select(EquitySnapshotRow).where(EquitySnapshotRow.race_id == race_id)
            )
        ]
        board = leaderboard(session, race_id)
    return (
        keyed(trades, TRADE_KEY, TRADE_FIELDS),
        keyed(snapshots, SNAPSHOT_KEY, SNAPSHOT_FIELDS),
        keyed(board, BOARD_KEY, (*BOARD_FIELDS, "name")),
    )


def differences(what: str, exported: Keyed, rescored: Keyed, fields: Sequence[str]) -> list[str]:
    """Each row that differs, is missing or is extra, named by its exported id and key."""
    found = []
    for key in sorted(exported.keys() | rescored.keys()):
        mine, theirs = exported.get(key), rescored.get(key)
        label = f"{what} {'' if mine is None else mine['id']} ({_key_text(key)})"
        if theirs is None:
            found.append(f"{label}: exported, but not made by the replay")
        elif mine is None:
            found.append(f"{what} ({_key_text(key)}): made by the replay, not in the bundle")
        else:
            for name in fields:
                if mine.get(name) != theirs.get(name):
                    found.append(
                        f"{label}: {name} exported {mine.get(name)} != rescored {theirs.get(name)}"
                    )
    return found


def _key_text(key: tuple[Any, ...]) -> str:
    return ", ".join(v.isoformat() if isinstance(v, datetime) else f"{v}" for v in key)


def rescore(path: Path, settings: Settings, clock: Clock) -> Rescored:
    """Re-score the bundle at ``path`` into an empty temporary SQLite database."""
    parsed = parse(read_bundle(path))
    result = Rescored(race_name=parsed.race.name)
    with tempfile.TemporaryDirectory(prefix="race-rescore-") as folder:
        url = f"sqlite:///{Path(folder) / 'rescore.db'}"
        db = Database(url)
        try:
            db.upgrade()
            race_id = _load(db, parsed, clock)
            assert parsed.race.rules is not None
            assert parsed.race.interval_seconds is not None
            race_settings = settings.model_copy(
                update={
                    **parsed.race.rules.to_settings(),
                    "database_url": url,
                    "starting_capital": parsed.race.starting_capital,
                    "context_candles": parsed.context_candles,
                    "max_price_age": parsed.max_price_age,
                }
            )
            engine = RaceEngine(db, race_settings, _builder(parsed), clock=clock, race_id=race_id)
            ids = [int(p["id"]) for p in parsed.participants]
            interval = timedelta(seconds=parsed.race.interval_seconds)
            replay_cycles(engine, parsed.times, interval, ids)
            trades, snapshots, board = _rescored(db, race_id)
        finally:
            db.dispose()
    result.differences += differences("trade", parsed.trades, trades, TRADE_FIELDS)
    result.differences += differences("snapshot", parsed.snapshots, snapshots, SNAPSHOT_FIELDS)
    result.differences += differences("leaderboard row", parsed.board, board, BOARD_FIELDS)
    result.counts = {"trades": len(trades), "snapshots": len(snapshots), "agents": len(board)}
    return result
