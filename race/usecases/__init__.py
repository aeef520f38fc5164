"""The race's use cases, as small modules of plain functions over their collaborators.

:mod:`~race.usecases.deciding` (ask → judge → scrub, the one pipeline),
:mod:`~race.usecases.cycle` (one decision cycle), :mod:`~race.usecases.catch_up`
(scheduled runs), :mod:`~race.usecases.backfill` and :mod:`~race.usecases.replay` (a past
range), :mod:`~race.usecases.marking` (mark to market). Their collaborators travel in one
:class:`~race.usecases.deps.Deps`; :class:`race.engine.RaceEngine` is the facade callers use.
"""
