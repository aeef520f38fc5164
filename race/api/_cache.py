"""A small, thread-safe cache of serialised responses, each stored with the version of
the data it was built from: a lookup with another version is a miss, so a response never
outlives a change to its data (the caller reads the version from the database on every
request). Bounded by the total size of the bodies it holds, least recently used first out."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable


class VersionedCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, tuple[Hashable, bytes]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, version: Hashable) -> bytes | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None or found[0] != version:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return found[1]

    def put(self, key: Hashable, version: Hashable, body: bytes) -> None:
        if len(body) > self.max_bytes:
            return
        with self._lock:
            previous = self._entries.pop(key, None)
            if previous is not None:
                self._size -= len(previous[1])
            self._entries[key] = (version, body)
            self._size += len(body)
            while self._size > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._size -= len(dropped)

    @property
    def size(self) -> int:
        """Bytes held."""
        return self._size

    def __len__(self) -> int:
        return len(self._entries)
