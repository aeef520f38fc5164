"""A what-if's leaderboard beside its source's (``python -m race whatif``): each agent's
rank and equity in both races, the change and the rank change."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from race.domain.race import Race
from race.leaderboard import standings
from race.store.database import Database


@dataclass(frozen=True)
class RankChange:
    """One agent in both races: its what-if rank and equity beside the source's."""

    rank: int
    source_rank: int | None
    name: str
    source_equity: Decimal | None
    equity: Decimal

    @property
    def change(self) -> Decimal | None:
        return None if self.source_equity is None else self.equity - self.source_equity

    @property
    def moved(self) -> str:
        """``▲n`` (up n places), ``▼n`` (down) or ``=``; ``new`` without a source rank."""
        if self.source_rank is None:
            return "new"
        places = self.source_rank - self.rank
        return "=" if places == 0 else f"▲{places}" if places > 0 else f"▼{-places}"


def compare_standings(db: Database, source_id: int, race_id: int) -> list[RankChange]:
    """The what-if's standings, each agent beside its place in the source race."""
    with db.read() as session:
        before = {s.agent_id: s for s in standings(session, race_id=source_id)}
        after = standings(session, race_id=race_id)
    rows = []
    for standing in after:
        was = before.get(standing.agent_id)
        rows.append(
            RankChange(
                rank=standing.rank,
                source_rank=None if was is None else was.rank,
                name=standing.name,
                source_equity=None if was is None else was.current_value,
                equity=standing.current_value,
            )
        )
    return rows


def missing_from(db: Database, source_id: int, race_id: int) -> list[str]:
    """The source race's agents that have no standing in the other race (by name)."""
    with db.read() as session:
        there = {s.agent_id for s in standings(session, race_id=race_id)}
        return [s.name for s in standings(session, race_id=source_id) if s.agent_id not in there]


def render_comparison(
    rows: Sequence[RankChange],
    source: Race,
    race: Race,
    labels: tuple[str, str] = ("Source", "What-if"),
) -> str:
    """The two leaderboards side by side: rank, agent, source equity, what-if equity, change
    and rank change (``labels``: what the two equity columns are called)."""
    headers = ("#", "Agent", f"{labels[0]} (USD)", f"{labels[1]} (USD)", "Change", "Rank")
    body = [
        (
            str(r.rank),
            r.name,
            "—" if r.source_equity is None else f"{r.source_equity:,.2f}",
            f"{r.equity:,.2f}",
            "—" if r.change is None else f"{r.change:+,.2f}",
            r.moved,
        )
        for r in rows
    ]
    widths = [max([len(h), *(len(row[i]) for row in body)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 1 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    out = [f"race {race.id} ({race.name}) against race {source.id} ({source.name})"]
    out += [line(headers), "  ".join("-" * w for w in widths)]
    out.extend(line(row) for row in body)
    return "\n".join(out)
