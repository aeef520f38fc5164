"""``/api/leaderboard``: the standings, ranked by current value."""

from __future__ import annotations

from race.api import models as m
from race.api import queries as q
from race.api.context import Context
from race.api.errors import ERRORS
from race.api.routing import AreaRouter

router = AreaRouter(tags=["leaderboard"])


@router.get("/api/leaderboard", response_model=list[m.LeaderboardEntry], responses=ERRORS)
def get_leaderboard(context: Context) -> list[m.LeaderboardEntry]:
    with context.reading() as session:
        return q.leaderboard(session)
