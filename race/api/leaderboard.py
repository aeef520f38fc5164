"""``/api/leaderboard``: the standings, ranked by current value."""

from __future__ import annotations

from race.api import models as m
from race.api import queries
from race.api.context import Context
from race.api.errors import ERRORS
from race.api.routing import AreaRouter

router = AreaRouter(tags=["leaderboard"])


@router.get("/api/leaderboard", response_model=list[m.LeaderboardEntry], responses=ERRORS)
def get_leaderboard(context: Context) -> list[m.LeaderboardEntry]:
    """The standings, each with its analytics (intervals, PSR, P(beat buy-and-hold),
    behaviour, cost efficiency, contamination, rank significance) as extra keys: those
    cached, refreshed within the request when small, else in the background
    (``analyticsAsOf`` says as of when; null before the first computation)."""
    with context.reading() as session:
        return queries.leaderboard(session, context.analyser, context.app.db)
