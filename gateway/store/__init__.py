"""The store contract: where batches wait until the broker acknowledged them.

``append(batch) -> seq`` encodes the batch, gives it the next sequence number and keeps
it; ``peek(n, after)`` returns the oldest entries not yet acknowledged (with a sequence
number greater than ``after``), waiting until there is at least one; ``ack(seq)``
removes one entry for good (unknown or already dropped sequence numbers are ignored).
Every backend is bounded and drops by an explicit, counted policy when full.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gateway.model import Batch


@dataclass(slots=True, frozen=True)
class Entry:
    seq: int
    topic: str
    payload: bytes
    ts_ms: int


@dataclass(slots=True)
class StoreStats:
    appended: int = 0
    acked: int = 0
    dropped: int = 0  # batches discarded by the full-store policy
    entries: int = 0
    bytes: int = 0


Encoder = Callable[[Batch], tuple[str, bytes]]


class Store(Protocol):
    stats: StoreStats

    async def append(self, batch: Batch) -> int: ...

    async def peek(self, n: int, after: int = 0) -> list[Entry]: ...

    async def ack(self, seq: int) -> None: ...

    async def close(self) -> None: ...
