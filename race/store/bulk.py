"""Bulk inserts through the driver's ``executemany`` and id allocation for big batches."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, func, select, text
from sqlalchemy.orm import Session

from race.store.tables import (
    DecisionRow,
)
from race.store.types import UTCDateTime


@dataclass(frozen=True)
class _InsertPlan:
    sql: str
    plain: list[tuple[int, Any]]
    """Columns converted value by value (money, booleans…)."""
    shared: list[tuple[int, Any]]
    """Columns whose values are often one object repeated (times, JSON): converted once."""
    pick: Any
    """Row dict → tuple of values in ``keys`` order."""
    order: Any
    """Values in ``keys`` order → the driver's positional order (None: named parameters)."""
    keys: tuple[str, ...]


_INSERTS: dict[tuple[str, str, tuple[str, ...]], _InsertPlan] = {}
_SHARED_TYPES = (JSON, UTCDateTime)


def _plan(dialect: Any, table: Any, keys: tuple[str, ...]) -> _InsertPlan:
    compiled = table.insert().compile(dialect=dialect, column_keys=list(keys))
    plain, shared = [], []
    for index, key in enumerate(keys):
        column_type = table.c[key].type
        processor = column_type.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None:
            (shared if isinstance(column_type, _SHARED_TYPES) else plain).append((index, processor))
    order = (
        operator.itemgetter(*[keys.index(name) for name in compiled.positiontup])
        if compiled.positional
        else None
    )
    return _InsertPlan(compiled.string, plain, shared, operator.itemgetter(*keys), order, keys)


def bulk_insert(session: Session, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    """``INSERT`` many rows through the driver's ``executemany``, with each column's own bind
    processing (fixed-scale money, UTC datetimes, JSON) but without SQLAlchemy's per-row
    parameter machinery: several times faster for the big batches a replay writes. Every row
    must have the same keys (at least two). Values shared by many rows (a cycle's time, its
    market conditions, empty lists) are converted once per call."""
    if not rows:
        return
    connection = session.connection()
    keys = tuple(rows[0])
    cache_key = (connection.dialect.name, table.name, keys)
    plan = _INSERTS.get(cache_key)
    if plan is None:
        plan = _INSERTS[cache_key] = _plan(connection.dialect, table, keys)
    memo: dict[Any, Any] = {}
    params: list[Any] = []
    for row in rows:
        values = list(plan.pick(row))
        for i, processor in plan.plain:
            value = values[i]
            if value is not None:
                values[i] = processor(value)
        for i, processor in plan.shared:
            value = values[i]
            if value is None:
                continue
            # Equal-but-distinct empty containers share a key; other objects go by identity
            # (they stay alive in ``rows`` for the whole call, so ids are not reused).
            marker = id(value) if value or isinstance(value, datetime) else (type(value), 0)
            converted = memo.get(marker)
            if converted is None:
                converted = memo[marker] = processor(value)
            values[i] = converted
        params.append(
            plan.order(values) if plan.order is not None else dict(zip(keys, values, strict=True))
        )
    connection.exec_driver_sql(plan.sql, params)


def allocate_ids(session: Session, table: type[DecisionRow], count: int) -> list[int] | None:
    """Ids for ``count`` new rows without RETURNING (much faster for big batches): the
    table's sequence on PostgreSQL; on SQLite max + 1, safe because write transactions hold
    the database's write lock (BEGIN IMMEDIATE). Other backends: None (use RETURNING)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        sequence = f"{table.__tablename__}_id_seq"
        return list(
            session.scalars(
                text("SELECT nextval(CAST(:seq AS regclass)) FROM generate_series(1, :n)"),
                {"seq": sequence, "n": count},
            )
        )
    if dialect == "sqlite":
        start = (session.scalar(select(func.max(table.id))) or 0) + 1
        return list(range(start, start + count))
    return None
