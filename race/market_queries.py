"""Small read queries about stored candles, shared by the CLI, the API and the timers
(their SQL lives in :mod:`race.store.reads.market`)."""

from __future__ import annotations

from race.store.reads.market import newest_close

__all__ = ["newest_close"]
