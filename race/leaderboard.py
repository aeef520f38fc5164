"""The standings, read from the stored per-agent stats (never recomputed from the whole
equity curve on a read)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from race.domain.money import HUNDRED, ZERO
from race.store.reads.standings import AgentRecord, agent_records


@dataclass(frozen=True)
class Standing:
    rank: int
    agent_id: int
    name: str
    provider: str
    model: str | None
    strategy: str
    is_active: bool
    created_at: datetime
    starting_capital: Decimal
    current_value: Decimal
    return_pct: float
    max_drawdown_pct: float
    sharpe: float | None
    sortino: float | None
    volatility_pct: float | None
    total_trades: int
    winning_trades: int
    losing_trades: int
    fees_paid: Decimal
    decisions: int
    fallbacks: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: Decimal
    last_updated: datetime | None
    degraded: bool = False

    @property
    def total_return(self) -> Decimal:
        return self.current_value - self.starting_capital

    @property
    def win_rate_pct(self) -> float | None:
        closed = self.winning_trades + self.losing_trades
        return self.winning_trades / closed * 100 if closed else None

    @property
    def fallback_rate(self) -> float | None:
        return self.fallbacks / self.decisions if self.decisions else None


def standing_fields(record: AgentRecord) -> dict[str, Any]:
    """A :class:`Standing`'s fields (all but the rank) from what the store holds: an agent
    without a snapshot yet is worth its starting capital."""
    stats = record.stats
    starting = record.starting_capital
    has_value = stats is not None and stats.snapshot_count > 0
    current = stats.current_value if stats is not None and has_value else starting
    return dict(
        agent_id=record.agent_id,
        name=record.name,
        provider=record.provider,
        model=record.model,
        strategy=record.strategy,
        is_active=record.is_active,
        created_at=record.created_at,
        starting_capital=starting,
        current_value=current,
        return_pct=float((current - starting) / starting * HUNDRED) if starting else 0.0,
        max_drawdown_pct=stats.max_drawdown_pct if stats else 0.0,
        sharpe=stats.sharpe if stats else None,
        sortino=stats.sortino if stats else None,
        volatility_pct=stats.volatility_pct if stats else None,
        total_trades=stats.total_trades if stats else 0,
        winning_trades=stats.winning_trades if stats else 0,
        losing_trades=stats.losing_trades if stats else 0,
        fees_paid=stats.fees_paid if stats else ZERO,
        decisions=stats.decisions if stats else 0,
        fallbacks=stats.fallbacks if stats else 0,
        prompt_tokens=stats.prompt_tokens if stats else 0,
        completion_tokens=stats.completion_tokens if stats else 0,
        cost_usd=stats.cost_usd if stats else ZERO,
        last_updated=stats.last_captured_at if stats else None,
        degraded=stats.degraded if stats else False,
    )


def ranked(records: list[AgentRecord]) -> list[Standing]:
    """The standings: by current value (descending), then agent id; ranks from 1."""
    rows = [standing_fields(record) for record in records]
    rows.sort(key=lambda r: (-r["current_value"], r["agent_id"]))
    return [Standing(rank=i + 1, **r) for i, r in enumerate(rows)]


def standings(
    session: Session, *, include_inactive: bool = True, race_id: int | None = None
) -> list[Standing]:
    """The standings of the race (default: the live race)."""
    return ranked(agent_records(session, include_inactive=include_inactive, race_id=race_id))


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def render_table(rows: list[Standing]) -> str:
    headers = (
        "#",
        "Agent",
        "Provider",
        "Equity (USD)",
        "Return %",
        "Max DD %",
        "Sharpe",
        "Trades",
        "Fees (USD)",
    )
    body = [
        (
            str(r.rank),
            r.name,
            r.provider,
            f"{r.current_value:,.2f}",
            f"{r.return_pct:+.2f}",
            f"{r.max_drawdown_pct:.2f}",
            _fmt(r.sharpe, ".2f"),
            str(r.total_trades),
            f"{r.fees_paid:,.2f}",
        )
        for r in rows
    ]
    widths = [
        max(len(h), *(len(row[i]) for row in body)) if body else len(h)
        for i, h in enumerate(headers)
    ]
    right = {0, 3, 4, 5, 6, 7, 8}

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    out = [line(headers), "  ".join("-" * w for w in widths)]
    out.extend(line(row) for row in body)
    if not body:
        out.append("(no agents yet: run `python -m race demo` or `python -m race agents add`)")
    return "\n".join(out)
