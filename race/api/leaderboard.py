"""``/api/leaderboard``: the standings, ranked by current value."""

from __future__ import annotations

from race.analysis import ranked_records
from race.api import analysis_views, views
from race.api import models as m
from race.api.context import Context
from race.api.errors import ERRORS
from race.api.routing import AreaRouter
from race.leaderboard import ranked
from race.store.reads.standings import agent_records

router = AreaRouter(tags=["leaderboard"])


@router.get("/api/leaderboard", response_model=list[m.LeaderboardEntry], responses=ERRORS)
def get_leaderboard(context: Context) -> list[m.LeaderboardEntry]:
    """The standings, each with its analytics (intervals, PSR, P(beat buy-and-hold),
    behaviour, cost efficiency, contamination, rank significance) as extra keys: those
    cached, refreshed within the request when small, else in the background
    (``analyticsAsOf`` says as of when; null before the first computation)."""
    with context.reading() as session:
        records = agent_records(session)
        order = ranked_records(records)
        # Small stale work is done now; more is refreshed in the background while the
        # cached figures are served (race/analysis.py): the request never waits for it.
        analyses, steps = context.analyser.for_leaderboard(session, context.app.db, order)
    return [
        views.leaderboard_entry(s).model_copy(
            update=analysis_views.leaderboard_extras(
                analyses.get(s.agent_id), steps.get(s.agent_id)
            )
        )
        for s in ranked(records)
    ]
