"""Mark to market: an equity snapshot of every active portfolio between decision cycles."""

from __future__ import annotations

from datetime import datetime

from race.domain.step import equity_point
from race.domain.timeutil import ensure_utc
from race.store import repository as repo
from race.usecases.deps import Deps, log
from race.usecases.guards import stale_reason


def mark(deps: Deps, at: datetime) -> tuple[int, str | None]:
    """Mark every active portfolio to market at ``at``: how many snapshots were written
    (existing ones are kept), and why nothing was marked when the market view at ``at`` is
    stale (no asset with a price younger than ``RACE_MAX_PRICE_AGE``: no snapshot is
    written, the reason is logged and returned)."""
    at = ensure_utc(at)
    with deps.uow.read() as session:
        assets = {a.symbol: a.id for a in repo.enabled_assets(session)}
        specs = repo.active_agents(session)
        states = repo.portfolio_states(session, [s.id for s in specs], deps.race_id)
        last = repo.latest_snapshot_times(session, list(states), deps.race_id)
        view = repo.market_view(session, at, assets, 1, None)
    stale = stale_reason(view, at, deps.settings.max_price_age) if states else None
    if stale is not None:
        log.warning("mark to market at %s skipped: %s", at.isoformat(), stale)
        return 0, stale
    marks = []
    for agent_id, state in states.items():
        if state.as_of is not None and state.as_of > at:
            continue
        previous = last.get(agent_id)
        if previous is not None and previous >= at:
            continue
        marks.append((state, equity_point(at, state.portfolio, view)))
    if not marks:
        return 0, None

    def write() -> int:
        with deps.uow.write() as session:
            current = repo.portfolio_states(session, [s.agent_id for s, _ in marks], deps.race_id)
            fresh = [(s, p) for s, p in marks if current[s.agent_id].version == s.version]
            return repo.write_marks(session, fresh)

    return deps.uow.run(write, f"mark to market at {at.isoformat()}"), None
