"""A digest of everything a replay writes (decisions, trades, equity snapshots), to compare
runs row for row."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import select

from race.store.database import Database
from race.store.tables import DecisionRow, EquitySnapshotRow, TradeRow


def _rows(db: Database, table: Any, order: tuple[Any, ...]) -> list[dict[str, Any]]:
    with db.read() as session:
        result = session.execute(select(table.__table__).order_by(*order))
        return [dict(row._mapping) for row in result]


def table_rows(db: Database) -> dict[str, list[dict[str, Any]]]:
    return {
        "decisions": _rows(db, DecisionRow, (DecisionRow.agent_id, DecisionRow.cycle_time)),
        "trades": _rows(db, TradeRow, (TradeRow.agent_id, TradeRow.executed_at, TradeRow.sequence)),
        "snapshots": _rows(
            db, EquitySnapshotRow, (EquitySnapshotRow.agent_id, EquitySnapshotRow.captured_at)
        ),
    }


def digest(db: Database) -> str:
    payload = json.dumps(table_rows(db), sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()
