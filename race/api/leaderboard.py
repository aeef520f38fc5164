"""``/api/leaderboard``: the standings, ranked by current value."""

from __future__ import annotations

from race.api import models as m
from race.api import queries
from race.api.context import Context, RaceParam, race_key
from race.api.errors import ERRORS
from race.api.routing import AreaRouter

router = AreaRouter(tags=["leaderboard"])


@router.get("/api/leaderboard", response_model=list[m.LeaderboardEntry], responses=ERRORS)
def get_leaderboard(context: Context, race: RaceParam = None) -> list[m.LeaderboardEntry]:
    """The standings, each with its analytics (intervals, PSR, P(beat buy-and-hold),
    behaviour, cost efficiency, contamination, rank significance) as extra keys: those
    cached, refreshed within the request when small, else in the background
    (``analyticsAsOf`` says as of when; null before the first computation). ``race``:
    the race (default: the live race)."""
    with context.reading() as session:
        race_id = race_key(session, race)
        analyser = context.analyser_for(race_id)
        return queries.leaderboard(session, analyser, context.app.db, race_id)
