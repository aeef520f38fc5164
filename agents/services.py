"""What agents share: the long-lived pieces the composition root builds once and every
agent factory receives (clients, limiters, breakers, the clock, the settings)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from race.clock import Clock, SystemClock
from race.settings import Settings
from race.store.database import Database


@dataclass
class AgentServices:
    """Shared, long-lived pieces agents use (clients, limiters, breakers), built once."""

    settings: Settings
    clock: Clock = field(default_factory=SystemClock)
    shared: dict[str, Any] = field(default_factory=dict)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    """Where settings named by agent params live (a remote model's ``api_key_setting``)."""
    db: Database | None = None
    """The app's database (the ML agent reads its stored models there)."""
