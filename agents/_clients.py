"""HTTP clients shared by concurrent calls on one event loop, closed when the last call ends.

An ``AsyncOpenAI`` or ``httpx.AsyncClient`` holds a connection pool tied to the event loop
that opened it. Agents live longer than one ``asyncio.run`` (the engine caches them), so a
client is leased per loop: the agents of one cycle share one client (and its keep-alive
connections), and the last one out closes it — no pool is left behind on a dead loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

C = TypeVar("C")


@dataclass
class _Lease(Generic[C]):
    client: C
    users: int = 0


class SharedClient(Generic[C]):
    """``async with shared.lease() as client:`` — one client per running loop."""

    def __init__(self, factory: Callable[[], C], close: Callable[[C], Awaitable[None]]) -> None:
        self._factory = factory
        self._close = close
        self._leases: dict[asyncio.AbstractEventLoop, _Lease[C]] = {}

    @property
    def open_clients(self) -> int:
        return len(self._leases)

    @asynccontextmanager
    async def lease(self) -> AsyncIterator[C]:
        loop = asyncio.get_running_loop()
        for other in [lp for lp in self._leases if lp.is_closed()]:
            del self._leases[other]  # a loop that died mid-call: its client died with it
        lease = self._leases.get(loop)
        if lease is None:
            lease = _Lease(self._factory())
            self._leases[loop] = lease
        lease.users += 1
        try:
            yield lease.client
        finally:
            lease.users -= 1
            if lease.users == 0 and self._leases.get(loop) is lease:
                del self._leases[loop]
                await self._close(lease.client)
