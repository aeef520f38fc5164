"""Bulk inserts through the driver's ``executemany``, bulk reads through the driver's
``fetchall``, and id allocation for big batches."""

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
    converters: tuple[tuple[int, Any, bool], ...]
    """(position in ``keys``, bind processor, shared) of every column that has one. A
    shared column's values are often one object repeated (times, JSON): converted once."""
    order: Any
    """Values in ``keys`` order → the driver's positional order (None: they already are in
    it; see ``named``)."""
    named: bool
    """The driver takes named parameters (a dict per row)."""
    keys: tuple[str, ...]


_INSERTS: dict[tuple[str, str, tuple[str, ...]], _InsertPlan] = {}
_SHARED_TYPES = (JSON, UTCDateTime)


_OMITTABLE: dict[str, frozenset[str]] = {}


def _omittable(table: Any) -> frozenset[str]:
    """Columns an ``INSERT`` may leave out when a row's value is NULL: nullable, without a
    default of either kind (leaving one out stores exactly the NULL binding it would)."""
    found = _OMITTABLE.get(table.name)
    if found is None:
        found = _OMITTABLE[table.name] = frozenset(
            column.key
            for column in table.columns
            if column.nullable
            and column.default is None
            and column.server_default is None
            and not column.primary_key
        )
    return found


def _plan(dialect: Any, table: Any, keys: tuple[str, ...]) -> _InsertPlan:
    compiled = table.insert().compile(dialect=dialect, column_keys=list(keys))
    converters = []
    for index, key in enumerate(keys):
        column_type = table.c[key].type
        processor = column_type.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None:
            converters.append((index, processor, isinstance(column_type, _SHARED_TYPES)))
    order = None
    if compiled.positional:
        positions = [keys.index(name) for name in compiled.positiontup]
        if positions != list(range(len(keys))):
            order = operator.itemgetter(*positions)
    return _InsertPlan(compiled.string, tuple(converters), order, not compiled.positional, keys)


def bulk_insert(session: Session, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    """``INSERT`` many rows through the driver's ``executemany``, with each column's own bind
    processing (fixed-scale money, UTC datetimes, JSON) but without SQLAlchemy's per-row
    parameter machinery: several times faster for the big batches a replay writes. Every row
    must have the same keys (at least two). Values shared by many rows (a cycle's time, its
    market conditions, empty lists) are converted once per call."""
    if not rows:
        return
    keys = tuple(rows[0])
    pick = operator.itemgetter(*keys)
    insert_values(session, table, keys, [pick(row) for row in rows])


def insert_values(
    session: Session, table: Any, keys: tuple[str, ...], rows: Sequence[Sequence[Any]]
) -> None:
    """:func:`bulk_insert` of rows given as tuples of values in ``keys`` order (no dict per
    row: the hot path of a replay's decisions and snapshots)."""
    if not rows:
        return
    # Column by column: one comprehension per converted column instead of a loop over the
    # converters for every row.
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True))
    omittable, count = _omittable(table), len(rows)
    empty = {
        i for i, key in enumerate(keys) if key in omittable and columns[i].count(None) == count
    }
    if empty and len(keys) - len(empty) >= 2:
        # A column NULL in every row is left out: it is stored as NULL all the same (it has
        # no default), and the driver binds nothing for it (binding a None costs a lookup).
        keys = tuple(key for i, key in enumerate(keys) if i not in empty)
        columns = [column for i, column in enumerate(columns) if i not in empty]
    connection = session.connection()
    cache_key = (connection.dialect.name, table.name, keys)
    plan = _INSERTS.get(cache_key)
    if plan is None:
        plan = _INSERTS[cache_key] = _plan(connection.dialect, table, keys)
    for i, processor, shared in plan.converters:
        columns[i] = _shared(columns[i], processor) if shared else _each(columns[i], processor)
    params: list[Any]
    if plan.named:
        params = [dict(zip(keys, values, strict=True)) for values in zip(*columns, strict=True)]
    else:
        if plan.order is not None:
            columns = list(plan.order(columns))
        params = list(zip(*columns, strict=True))
    connection.exec_driver_sql(plan.sql, params)


def _each(values: Sequence[Any], processor: Any) -> list[Any]:
    return [None if value is None else processor(value) for value in values]


def _shared(values: Sequence[Any], processor: Any) -> list[Any]:
    """A column whose values are often one object repeated (times, JSON), converted once
    per object: equal-but-distinct empty containers share a key; other objects go by
    identity (they stay alive in the caller's rows for the whole call, so ids are not
    reused)."""
    memo: dict[Any, Any] = {}
    out: list[Any] = []
    append = out.append
    for value in values:
        if value is None:
            append(None)
            continue
        marker = id(value) if value or isinstance(value, datetime) else (type(value), 0)
        converted = memo.get(marker)
        if converted is None:
            converted = memo[marker] = processor(value)
        append(converted)
    return out


def select_values(session: Session, statement: Any) -> list[tuple[Any, ...]]:
    """The rows of a Core ``SELECT`` of columns as plain tuples, each value through its
    column's own result processing (fixed-scale money, UTC datetimes): on SQLite fetched by
    the driver and converted column by column, several times faster than SQLAlchemy's
    result rows for the year of candles a replay loads; elsewhere through SQLAlchemy (the
    driver's column types decide its processing there)."""
    connection = session.connection()
    dialect = connection.dialect
    compiled = statement.compile(dialect=dialect) if dialect.name == "sqlite" else None
    if compiled is None or compiled.post_compile_params or compiled.literal_execute_params:
        # Other databases, and statements rendered at execution (``IN`` lists): SQLAlchemy.
        return [tuple(row) for row in connection.execute(statement)]
    values = compiled.construct_params()
    for name, value in values.items():
        bind = compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
        if bind is not None and value is not None:
            values[name] = bind(value)
    arguments: Any = (
        tuple(values[name] for name in compiled.positiontup or ())
        if compiled.positional
        else values
    )
    fetched = connection.exec_driver_sql(compiled.string, arguments).fetchall()
    if not fetched:
        return []
    columns: list[Sequence[Any]] = list(zip(*fetched, strict=True))
    for i, column in enumerate(statement.selected_columns):
        process = column.type.dialect_impl(dialect).result_processor(dialect, None)
        if process is not None:
            columns[i] = [process(value) for value in columns[i]]
    return list(zip(*columns, strict=True))


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
