"""The collaborators every use case takes: the unit of work, settings, clock, telemetry,
the deciding pipeline and the health policy. Built once by :class:`race.engine.RaceEngine`."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from race.clock import Clock
from race.secrets import SecretPolicy
from race.settings import Settings
from race.store import repository as repo
from race.store.unit_of_work import UnitOfWork
from race.telemetry import Telemetry
from race.usecases.deciding import Deciding

log = logging.getLogger("race.engine")
"""The use cases log as ``race.engine``, the name their lines have always had."""


@dataclass
class Deps:
    uow: UnitOfWork
    settings: Settings
    clock: Clock
    telemetry: Telemetry
    deciding: Deciding
    health: repo.HealthPolicy
    race_id: int | None = None
    """The race the use cases act on (None: the live race)."""

    @property
    def policy(self) -> SecretPolicy:
        """The secrets policy as it stands (an agent's own key joins it when it is built)."""
        return self.deciding.policy

    def redact(self, text: str) -> str:
        return self.deciding.policy.redact(text)
