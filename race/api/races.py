"""``/api/races``: every race, and one race with its participants and counts
(docs/races.md). Every other read endpoint takes ``?race=ID`` (default: the live race)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from race.api._requests import ApiError
from race.api.context import ID_PATTERN, Context
from race.api.errors import ERRORS
from race.api.models import Model
from race.api.routing import AreaRouter
from race.domain import race as domain
from race.domain.timeutil import iso
from race.store import races as race_rows

router = AreaRouter(tags=["races"])

RaceId = Annotated[
    str, Path(description="race id (a positive integer)", max_length=40, pattern=ID_PATTERN)
]


class RaceRules(Model):
    feeRate: float
    slippageBps: float
    maxPositionFraction: float
    minCashReserve: float
    maxOrderNotional: float
    minOrderNotional: float
    maxOrdersPerCycle: int
    maxOrderQuantity: float


class RaceSummary(Model):
    id: str
    name: str
    kind: str
    isLive: bool
    status: str
    start: str
    end: str | None
    intervalSeconds: int | None
    startingCapital: float | None
    rules: RaceRules | None
    universe: list[str] | None
    sourceRaceId: str | None
    createdAt: str


class RaceCounts(Model):
    participants: int
    decisions: int
    trades: int
    snapshots: int
    cycles: int


class RaceDetail(RaceSummary):
    participants: list[str]
    counts: RaceCounts


def _rules(rules: domain.RaceRules | None) -> RaceRules | None:
    if rules is None:
        return None
    return RaceRules(
        feeRate=float(rules.fee_rate),
        slippageBps=float(rules.slippage_bps),
        maxPositionFraction=float(rules.max_position_fraction),
        minCashReserve=float(rules.min_cash_reserve),
        maxOrderNotional=float(rules.max_order_notional),
        minOrderNotional=float(rules.min_order_notional),
        maxOrdersPerCycle=rules.max_orders_per_cycle,
        maxOrderQuantity=float(rules.max_order_quantity),
    )


def race_summary(race: domain.Race) -> RaceSummary:
    return RaceSummary(
        id=str(race.id),
        name=race.name,
        kind=race.kind.value,
        isLive=race.is_live,
        status=race.status,
        start=iso(race.start) or "",
        end=iso(race.end),
        intervalSeconds=race.interval_seconds,
        startingCapital=None if race.starting_capital is None else float(race.starting_capital),
        rules=_rules(race.rules),
        universe=None if race.universe is None else list(race.universe),
        sourceRaceId=None if race.source_race_id is None else str(race.source_race_id),
        createdAt=iso(race.created_at) or "",
    )


@router.get("/api/races", response_model=list[RaceSummary], responses=ERRORS)
def list_races(context: Context) -> list[RaceSummary]:
    """Every race, by id (the live race is the one with ``isLive``)."""
    with context.reading() as session:
        return [race_summary(race) for race in race_rows.all_races(session)]


@router.get("/api/races/{race_id}", response_model=RaceDetail, responses=ERRORS)
def get_race(race_id: RaceId, context: Context) -> RaceDetail:
    """One race: its rules, universe and status, its participants (agent ids) and how many
    decisions, trades, snapshots and cycles it holds."""
    text = race_id.strip()
    if not text.isdigit() or len(text) > 18 or int(text) <= 0:
        raise ApiError(400, f"race id must be a positive integer, got {race_id[:40]!r}")
    with context.reading() as session:
        race = race_rows.get(session, int(text))
        if race is None:
            raise ApiError(404, f"no race {int(text)}")
        counts = race_rows.counts(session, race.id)
        participants = race_rows.participants(session, race.id)
    return race_detail(race, counts, participants)


def race_detail(
    race: domain.Race, counts: race_rows.RaceCounts, participants: list[int]
) -> RaceDetail:
    """A race with its participants and counts (the API's and ``races show --json``)."""
    return RaceDetail(
        **race_summary(race).model_dump(),
        participants=[str(agent_id) for agent_id in participants],
        counts=RaceCounts(
            participants=counts.participants,
            decisions=counts.decisions,
            trades=counts.trades,
            snapshots=counts.snapshots,
            cycles=counts.cycles,
        ),
    )
