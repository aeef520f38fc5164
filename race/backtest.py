"""Backtests (docs/races.md): a NEW race of kind ``backtest`` per run, its rules the
settings' with the asked changes applied (frozen at creation), its participants the named
agents (default: every active agent that calls no outside provider), replayed with the
backfill machinery (:func:`race.races.engine_for`) and resumable from its cursor.

Shared by ``python -m race backtest`` (:mod:`race.cli.backtest`) and ``POST
/api/admin/races`` (:mod:`race.api.admin_races`): every check of a request is here, each a
:class:`BacktestError` (a ``ValueError``) naming what is wrong."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from race.domain import jobs
from race.domain.model import Provider
from race.domain.race import Race, RaceKind, RaceRules
from race.domain.timeutil import ensure_utc, format_interval, grid
from race.races import RaceError, create_race, engine_for, find_race
from race.store import races as race_rows
from race.usecases.guards import check_backfill_interval

if TYPE_CHECKING:
    from race.bootstrap import App
    from race.store.tables import AgentRow
    from race.usecases.reports import BackfillReport

NAME_MAX = 100
"""The races table's name column."""


class BacktestError(RaceError):
    """A backtest that cannot be started or resumed; the message says which and why."""


class NetworkAgentRefused(BacktestError):
    """A participant that calls an outside provider (an LLM), not allowed here."""


class NoParticipants(BacktestError):
    """No agent would take part."""


@dataclass(frozen=True)
class BacktestRequest:
    """What a backtest is asked with (None: the settings' value)."""

    start: datetime
    end: datetime
    interval: timedelta = timedelta(hours=1)
    agents: tuple[str, ...] | None = None
    """Names or ids (None: every active agent that calls no outside provider)."""
    name: str | None = None
    fee: Decimal | None = None
    slippage_bps: Decimal | None = None
    max_position: Decimal | None = None
    max_order: Decimal | None = None
    starting_capital: Decimal | None = None
    include_llm: bool = False


@dataclass(frozen=True)
class Participant:
    id: int
    name: str
    provider: Provider
    model: str | None
    params: dict[str, object]
    calls_provider: bool


@dataclass(frozen=True)
class BacktestPlan:
    """A checked request: the race to create and who takes part."""

    name: str
    start: datetime
    end: datetime
    interval: timedelta
    rules: RaceRules
    starting_capital: Decimal
    universe: tuple[str, ...]
    participants: tuple[Participant, ...]
    cycles: int

    @property
    def network_agents(self) -> list[Participant]:
        return [p for p in self.participants if p.calls_provider]


def _check(
    value: Decimal | None,
    what: str,
    *,
    low: Decimal,
    high: Decimal | None = None,
    low_open: bool = False,
) -> Decimal | None:
    if value is None:
        return None
    if not value.is_finite():
        raise BacktestError(f"{what} must be a finite number, got {value}")
    too_low = value <= low if low_open else value < low
    if too_low or (high is not None and value > high):
        bound = f"{'>' if low_open else '≥'} {low}" + (f" and ≤ {high}" if high is not None else "")
        raise BacktestError(f"{what} must be {bound}, got {value}")
    return value


def rules_of(app: App, request: BacktestRequest) -> tuple[RaceRules, Decimal]:
    """The settings' rules and starting capital with the request's changes applied."""
    rules = RaceRules.of(app.settings.costs, app.settings.limits)
    changes: dict[str, Decimal] = {}
    checked = (
        ("fee_rate", request.fee, "fee", Decimal(0), Decimal("0.5"), False),
        ("slippage_bps", request.slippage_bps, "slippage (bps)", Decimal(0), Decimal(5000), False),
        (
            "max_position_fraction",
            request.max_position,
            "max position (a fraction of equity)",
            Decimal(0),
            Decimal(1),
            True,
        ),
        ("max_order_notional", request.max_order, "max order (USD)", Decimal(0), None, True),
    )
    for field, value, what, low, high, low_open in checked:
        found = _check(value, what, low=low, high=high, low_open=low_open)
        if found is not None:
            changes[field] = found
    capital = _check(
        request.starting_capital, "starting capital (USD)", low=Decimal(0), low_open=True
    )
    if capital is not None and capital > Decimal("1e15"):
        raise BacktestError(f"starting capital (USD) must be at most 1e15, got {capital}")
    return replace(rules, **changes), capital or app.settings.starting_capital


def _participant(row: AgentRow) -> Participant:
    from agents.registry import PROVIDER_NAMES, kind_of

    known = row.provider in PROVIDER_NAMES
    provider = Provider(row.provider) if known else Provider.MOCK
    network = not known or kind_of(provider, row.model).calls_provider
    return Participant(row.id, row.name, provider, row.model, dict(row.params or {}), network)


def participants(app: App, refs: Sequence[str] | None, include_llm: bool) -> list[Participant]:
    """The named agents (any case, or ids), or every active one (only those that call no
    outside provider unless ``include_llm``)."""
    from race.store import agents as agent_rows
    from race.universe import UniverseError, find_agent

    with app.db.read() as session:
        if refs is None:
            found = [_participant(find_agent(session, a.id)) for a in agent_rows.active(session)]
            return [p for p in found if include_llm or not p.calls_provider]
        chosen: dict[int, Participant] = {}
        for ref in refs:
            try:
                row = find_agent(session, ref)
            except UniverseError as exc:
                raise BacktestError(str(exc)) from None
            if not row.is_active:
                raise BacktestError(
                    f"agent {row.name!r} is disabled (`python -m race agents enable` it first)"
                )
            chosen[row.id] = _participant(row)
    refused = [p.name for p in chosen.values() if p.calls_provider]
    if refused and not include_llm:
        raise NetworkAgentRefused(
            f"agent(s) {', '.join(refused)} call a paid or remote provider (LLM): only "
            "`python -m race backtest --include-llm` replays them"
        )
    return sorted(chosen.values(), key=lambda p: p.id)


def default_name(app: App, start: datetime, end: datetime, interval: timedelta) -> str:
    """``backtest <start>..<end> every <interval> #N``: the first N not taken."""
    base = (
        f"backtest {start:%Y-%m-%d %H:%M}..{end:%Y-%m-%d %H:%M} every {format_interval(interval)}"
    )
    with app.db.read() as session:
        number = 1
        while race_rows.by_name(session, f"{base} #{number}") is not None:
            number += 1
    return f"{base} #{number}"


def _name(app: App, request: BacktestRequest) -> str:
    if request.name is None:
        return default_name(app, request.start, request.end, request.interval)
    name = request.name.strip()
    if not name or not name.isprintable() or len(name) > NAME_MAX or name.isdigit():
        raise BacktestError(
            f"name must be printable text on one line, not only digits, at most {NAME_MAX} "
            "characters"
        )
    with app.db.read() as session:
        if race_rows.by_name(session, name) is not None:
            raise BacktestError(f"a race named {name!r} already exists")
    return name


def plan_backtest(app: App, request: BacktestRequest) -> BacktestPlan:
    """The request checked: range, interval, numbers, name, participants, candles."""
    start = ensure_utc(request.start, field="start")
    end = ensure_utc(request.end, field="end")
    if end < start:
        raise BacktestError(f"end {end.isoformat()} is before start {start.isoformat()}")
    now = app.clock.now()
    if end > now:
        raise BacktestError(
            f"end {end.isoformat()} is in the future (now {now.isoformat()}): a backtest "
            "replays only times that have passed"
        )
    interval = check_backfill_interval(request.interval)
    rules, capital = rules_of(app, request)
    times = grid(start, end, interval)
    if not times:
        raise BacktestError(
            f"no decision time every {format_interval(interval)} from {start.isoformat()} to "
            f"{end.isoformat()}"
        )
    app.engine.require_candles(times[0], times[-1])
    chosen = participants(app, request.agents, request.include_llm)
    if not chosen:
        raise NoParticipants(
            "no agent to race: no active agent that calls no outside provider "
            "(name agents with --agents, or add --include-llm)"
        )
    return BacktestPlan(
        name=_name(app, request),
        start=start,
        end=end,
        interval=interval,
        rules=rules,
        starting_capital=capital,
        universe=tuple(symbol for symbol, _ in app.settings.asset_universe),
        participants=tuple(chosen),
        cycles=len(times),
    )


def create_backtest(app: App, plan: BacktestPlan, status: str = jobs.RUNNING) -> Race:
    """The new race of ``plan``, its participants each with a portfolio (one transaction)."""
    new = race_rows.NewRace(
        name=plan.name,
        kind=RaceKind.BACKTEST,
        start=plan.start,
        end=plan.end,
        interval_seconds=int(plan.interval.total_seconds()),
        starting_capital=plan.starting_capital,
        rules=plan.rules,
        universe=list(plan.universe),
        status=status,
    )
    return create_race(app.db, new, [p.id for p in plan.participants], app.clock)


def resumable(app: App, ref: str) -> Race:
    """The backtest race ``ref`` (name or id), to resume; :class:`BacktestError` else."""
    race = find_race(app.db, ref)
    if race.kind is not RaceKind.BACKTEST:
        raise BacktestError(
            f"race {race.name!r} is a {race.kind.value} race, not a backtest: only "
            "backtests resume with --resume"
        )
    _range(race)
    return race


def _range(race: Race) -> tuple[datetime, datetime, timedelta]:
    if race.end is None or not race.interval_seconds:
        raise BacktestError(f"race {race.name!r} has no end or interval recorded")
    return race.start, race.end, timedelta(seconds=race.interval_seconds)


def resume_plan(app: App, race: Race) -> BacktestPlan:
    """What resuming ``race`` runs: its participants over the cycles it has not written."""
    from race.universe import find_agent

    start, end, interval = _range(race)
    with app.db.read() as session:
        ids = race_rows.participants(session, race.id)
        chosen = tuple(_participant(find_agent(session, agent_id)) for agent_id in ids)
        done = race_rows.counts(session, race.id).cycles
    return BacktestPlan(
        name=race.name,
        start=start,
        end=end,
        interval=interval,
        rules=race.rules or RaceRules.of(app.settings.costs, app.settings.limits),
        starting_capital=race.starting_capital or app.settings.starting_capital,
        universe=tuple(race.universe or ()),
        participants=chosen,
        cycles=max(0, len(grid(start, end, interval)) - done),
    )


def race_agents(app: App, race: Race) -> list[int]:
    with app.db.read() as session:
        return race_rows.participants(session, race.id)


def set_status(app: App, race: Race, status: str) -> None:
    with app.db.write() as session:
        race_rows.set_status(session, race.id, status)


async def run_backtest(
    app: App,
    race: Race,
    *,
    on_progress: Callable[[int, int], None] | None = None,
    max_seconds: float | None = None,
) -> BackfillReport:
    """Replay ``race`` from its cursor (everything committed so far stays) with its
    participants; its status ``completed`` once the range is done."""
    start, end, interval = _range(race)
    set_status(app, race, jobs.RUNNING)
    report = await engine_for(app, race).backfill(
        start,
        end,
        interval,
        on_progress=on_progress,
        max_seconds=max_seconds,
        agent_ids=race_agents(app, race),
    )
    if report.finished:
        set_status(app, race, jobs.COMPLETED)
    return report


def backtest_job(app: App, race: Race) -> int:
    """The backfill job of ``race`` (queued), for a job runner to work."""
    start, end, interval = _range(race)
    return engine_for(app, race).backfill_job(start, end, interval, race_agents(app, race))


class RaceJobEngine:
    """A backtest race's engine for a job runner (:func:`race.jobs.run_backfill_chunk`):
    its backfill moves the race's status with it (running, completed, failed)."""

    def __init__(self, app: App, race: Race) -> None:
        self.app = app
        self.race = race
        self.engine = engine_for(app, race)

    async def backfill(self, *args: Any, **kwargs: Any) -> BackfillReport:
        set_status(self.app, self.race, jobs.RUNNING)
        try:
            report = await self.engine.backfill(*args, **kwargs)
        except Exception:
            set_status(self.app, self.race, jobs.FAILED)
            raise
        if report.finished:
            set_status(self.app, self.race, jobs.COMPLETED)
        return report


def runner_engine(app: App, race_id: int) -> RaceJobEngine | None:
    """The engine a job runner works a job of race ``race_id`` with: backtests only."""
    with app.db.read() as session:
        race = race_rows.get(session, race_id)
    if race is None or race.kind is not RaceKind.BACKTEST:
        return None
    return RaceJobEngine(app, race)
