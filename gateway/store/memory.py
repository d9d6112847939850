"""Bounded in-memory store. Fast, but loses its content on restart: use for tests, or
where losing a backlog on power loss is acceptable. The durable spool replaces it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict

from gateway.model import Batch
from gateway.store import Encoder, Entry, StoreStats

log = logging.getLogger("edgegw.store")


def initial_seq() -> int:
    """Sequence numbers start at the boot time in microseconds, so that they keep
    increasing across restarts (a gateway publishes far fewer than 10^6 batches per
    second) and the backend can drop duplicates by (gateway, seq)."""
    return time.time_ns() // 1000


class MemoryStore:
    def __init__(self, encode: Encoder, max_batches: int, max_bytes: int,
                 policy: str = "drop-oldest", first_seq: int | None = None) -> None:
        self._encode = encode
        self._max_batches = max_batches
        self._max_bytes = max_bytes
        self._policy = policy
        self._entries: OrderedDict[int, Entry] = OrderedDict()
        self._seq = initial_seq() if first_seq is None else first_seq
        self._event = asyncio.Event()
        self.stats = StoreStats()
        self._warned = False

    async def append(self, batch: Batch) -> int:
        self._seq += 1
        batch.seq = seq = self._seq
        topic, payload = self._encode(batch)
        size = len(payload)
        st = self.stats
        if st.entries >= self._max_batches or st.bytes + size > self._max_bytes:
            if self._policy == "drop-newest":
                self._drop(1)
                return seq
            while self._entries and (
                st.entries >= self._max_batches or st.bytes + size > self._max_bytes
            ):
                _, old = self._entries.popitem(last=False)
                st.entries -= 1
                st.bytes -= len(old.payload)
                self._drop(1)
        self._entries[seq] = Entry(seq, topic, payload, batch.ts_ms)
        st.entries += 1
        st.bytes += size
        st.appended += 1
        self._event.set()
        return seq

    def _drop(self, n: int) -> None:
        self.stats.dropped += n
        if not self._warned:
            self._warned = True
            log.warning("store full (%d batches, %d bytes): policy %s drops batches; "
                        "the count is in the status topic", self.stats.entries,
                        self.stats.bytes, self._policy)

    async def peek(self, n: int, after: int = 0) -> list[Entry]:
        while True:
            out: list[Entry] = []
            for seq, e in self._entries.items():  # oldest first
                if seq > after:
                    out.append(e)
                    if len(out) >= n:
                        break
            if out:
                return out
            self._event.clear()
            await self._event.wait()

    async def ack(self, seq: int) -> None:
        e = self._entries.pop(seq, None)
        if e is not None:
            self.stats.entries -= 1
            self.stats.bytes -= len(e.payload)
            self.stats.acked += 1
            if self._warned and self.stats.entries < self._max_batches // 2:
                self._warned = False

    async def close(self) -> None:
        return None
