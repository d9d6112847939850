"""The store contract and its shared policy: where batches wait until the broker
acknowledged them.

``append(batch) -> seq`` encodes the batch, gives it the next sequence number and keeps
it (for a durable backend: on disk, committed, before it returns);
``on_urgent`` (set by the uplink's delivery engine) is called with each alarm or state
batch (``Batch.priority``) as it is appended, so the engine can send it before anything
else; it is stored like every batch and acknowledged the same way (no urgent queue is
kept beside it: the engine's urgent lane holds what it has not sent yet). A backend may
keep its newest ``TAIL`` entries in memory too, so that ``peek`` and ``wait`` at the live
cursor do not read back what was just written.
``Entry.bulk`` marks a batch of bulk-priority points only (kept with the entry, also
across restarts), which the uplink may hold back while the radio is poor.
``peek(n, after, before)`` returns up to ``n`` of the oldest entries with
``after < seq < before`` without waiting; ``wait(after)`` returns once an entry newer
than ``after`` exists; ``ack(seq)`` removes one entry for good (unknown or already
dropped sequence numbers are ignored).

Every backend is bounded (entries, bytes, age). When an append does not fit, the
policy decides: ``drop-oldest`` (default) deletes the oldest entries, ``drop-newest``
discards the new one, ``block-readers`` makes the append wait until acks free room (the
device pollers then miss ticks, which are counted). Every dropped batch and sample is
counted by reason and reported in the status topic. The policy lives here, once; the
backends only store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from gateway.errors import StoreError
from gateway.httpserve import Family
from gateway.model import BULK, STATE, Batch

log = logging.getLogger("edgegw.store")


@dataclass(slots=True, frozen=True)
class Entry:
    seq: int
    topic: str
    payload: bytes
    ts_ms: int
    bulk: bool = False


@dataclass(slots=True)
class StoreStats:
    appended: int = 0
    acked: int = 0
    entries: int = 0
    bytes: int = 0
    dropped: int = 0  # batches discarded, all reasons
    dropped_points: int = 0  # samples in those batches
    dropped_by: dict[str, int] = field(default_factory=dict)  # reason -> batches
    degraded: str | None = None  # e.g. "disk full" while appends fail
    durable: bool = False

    # -- Reporter (gateway/services.py) -----------------------------------------------
    def status(self) -> dict[str, object]:
        return {"store": {"entries": self.entries, "bytes": self.bytes, "dropped": self.dropped,
                          "dropped_points": self.dropped_points, "dropped_by": self.dropped_by,
                          "degraded": self.degraded, "durable": self.durable}}

    def metrics(self) -> list[Family]:
        return [
            Family("store_batches", "gauge", "batches waiting for the uplink",
                   [({}, self.entries)]),
            Family("store_bytes", "gauge", "bytes waiting for the uplink", [({}, self.bytes)]),
            Family("store_dropped_batches_total", "counter", "batches dropped, by reason",
                   [({"reason": k}, v) for k, v in sorted(self.dropped_by.items())]
                   or [({"reason": "none"}, 0)]),
            Family("store_degraded", "gauge", "1 while the store cannot write (e.g. disk full)",
                   [({}, 1.0 if self.degraded else 0.0)]),
        ]


Encoder = Callable[[Batch], tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Limits:
    max_batches: int
    max_bytes: int
    max_age: float = 0.0  # seconds; 0 = no age cap
    policy: str = "drop-oldest"


class Store(Protocol):
    stats: StoreStats
    on_urgent: Callable[[Entry], None] | None

    @property
    def last_seq(self) -> int: ...

    async def append(self, batch: Batch) -> int: ...

    async def peek(self, n: int, after: int = 0, before: int | None = None) -> list[Entry]: ...

    async def wait(self, after: int) -> None: ...

    def ack(self, seq: int) -> None: ...

    async def close(self) -> None: ...


class StoreFull(StoreError):
    """The backend cannot take more data right now (disk full)."""


def initial_seq(persisted: int = 0) -> int:
    """Sequence numbers start at the boot time in microseconds (or after the last
    persisted one, if the clock went back), so that they keep rising across restarts
    and the backend can drop duplicates by (gateway, seq). A gateway publishes far
    fewer than 10^6 batches per second."""
    return max(persisted, time.time_ns() // 1000)


class BoundedStore(ABC):
    """Sequence numbers, caps, drop policies and counts; backends implement storage."""

    AGE_CHECK_INTERVAL = 1.0
    #: how many of the newest stored entries are also kept in memory (0: none), so that
    #: the uplink's live cursor is served without reading back what was just written
    TAIL = 0

    def __init__(self, encode: Encoder, limits: Limits) -> None:
        self._encode = encode
        self.limits = limits
        self.stats = StoreStats()
        self._seq = 0
        self._last_inserted = 0  # newest seq actually stored (drops excluded)
        self._new = asyncio.Event()
        self._room = asyncio.Event()
        self._warned: set[str] = set()
        self._next_age_check = 0.0
        #: why this store stands in for the configured one (set by the gateway when the
        #: spool cannot be opened): the status stays degraded with it
        self.fallback: str | None = None
        self._made_room_at = -1e9  # monotonic time old batches last made room on a full disk
        #: called with each alarm/state batch as it is stored (the uplink's urgent lane)
        self.on_urgent: Callable[[Entry], None] | None = None
        #: the newest stored entries, in seq order: every stored entry newer than
        #: ``_tail_floor`` is here (None: not known yet, ask the backend)
        self._tail: dict[int, Entry] = {}
        self._tail_floor: int | None = None

    # -- primitives of a backend ---------------------------------------------------------
    @abstractmethod
    def _insert(self, seq: int, topic: str, payload: bytes, ts_ms: int, points: int,
                bulk: bool) -> None:
        """Keep one entry (raise StoreFull when out of space)."""

    @abstractmethod
    def _oldest(self, n: int) -> list[tuple[int, int, int]]:
        """``(seq, bytes, points)`` of the n oldest entries."""

    @abstractmethod
    def _delete(self, seq: int) -> tuple[int, int] | None:
        """Remove one entry; ``(bytes, points)`` or None if it was not there."""

    @abstractmethod
    def _select(self, n: int, after: int, before: int | None) -> list[Entry]: ...

    @abstractmethod
    def _expire(self, cutoff_ms: int) -> tuple[int, int, int]:
        """Remove entries older than cutoff: ``(batches, bytes, points)``."""

    # -- the contract --------------------------------------------------------------------
    @property
    def last_seq(self) -> int:
        return self._seq

    async def append(self, batch: Batch) -> int:
        self._seq += 1
        batch.seq = seq = self._seq
        topic, payload = self._encode(batch)
        self._check_age()
        if not await self._make_room(len(payload), batch.point_count):
            return seq
        await self._keep(Entry(seq, topic, payload, batch.ts_ms, batch.priority == BULK),
                         batch.point_count, batch.priority <= STATE)
        return seq

    async def _keep(self, entry: Entry, points: int, urgent: bool) -> None:
        """Store ``entry`` before returning (a backend may commit the entries of one
        event-loop turn together, and wait for that)."""
        self._keep_now(entry, points, urgent)

    def _keep_now(self, entry: Entry, points: int, urgent: bool) -> bool:
        """Insert ``entry`` at once, under the disk-full policy, and announce it; False
        when it was dropped (counted)."""
        seq, topic, payload, ts_ms, bulk = entry.seq, entry.topic, entry.payload, \
            entry.ts_ms, entry.bulk
        try:
            self._insert(seq, topic, payload, ts_ms, points, bulk)
        except StoreFull as exc:
            if self.stats.degraded in (None, self.fallback):
                self.stats.degraded = f"disk full: {exc}"
                log.error("store: cannot write (%s): %s, counted, until space is free "
                          "again", exc, "the oldest batches are dropped for new ones"
                          if self.limits.policy == "drop-oldest" else
                          "new batches are dropped")
            # the disk stays full (degraded) while old batches make room for new ones
            if not (self.limits.policy == "drop-oldest" and
                    self._make_room_on_disk(seq, topic, payload, ts_ms, points, bulk)):
                self._count_drop("disk_full", 1, points)
                return False
        else:
            self._writing()
        self._kept(entry, urgent)
        return True

    def _writing(self) -> None:
        """An insert worked: after old batches made room the disk is still full: degraded
        (and quiet) until an ack frees space or a minute passes without making room."""
        if self.stats.degraded != self.fallback and \
                time.monotonic() - self._made_room_at > 60.0:
            log.warning("store: writing again after: %s", self.stats.degraded)
            self.stats.degraded = self.fallback

    def _kept(self, entry: Entry, urgent: bool) -> None:
        """Count a stored entry and hand it to the uplink (the tail, the urgent lane)."""
        st = self.stats
        st.entries += 1
        st.bytes += len(entry.payload)
        st.appended += 1
        self._last_inserted = entry.seq
        if self.TAIL:
            self._remember(entry)
        if urgent and self.on_urgent is not None:
            self.on_urgent(entry)  # never bulk: bulk is the lowest priority
        self._new.set()

    def _make_room_on_disk(self, seq: int, topic: str, payload: bytes, ts_ms: int,
                           points: int, bulk: bool) -> bool:
        """Disk full under drop-oldest: delete the oldest batches, 16 at a time (counted
        as ``disk_full``; a page is reused once all its rows are gone), until the new one
        fits; at most 256. False when it still does not fit."""
        self._made_room_at = time.monotonic()
        for _ in range(16):
            oldest = self._oldest(16)
            if not oldest:
                return False
            for old, _, _ in oldest:
                self._drop(old, "disk_full")
            try:
                self._insert(seq, topic, payload, ts_ms, points, bulk)
            except StoreFull:
                continue
            return True
        return False

    async def _make_room(self, size: int, points: int) -> bool:
        lim = self.limits
        st = self.stats

        def full() -> bool:
            return st.entries >= lim.max_batches or st.bytes + size > lim.max_bytes

        if not full():
            return True
        if lim.policy == "drop-newest":
            self._count_drop("full", 1, points)
            return False
        if lim.policy == "block-readers":
            self._warn_once("block", "store full: device polling waits for the broker "
                            "to take data (missed polls are counted per device)")
            while full() and st.entries:
                self._room.clear()
                await self._room.wait()
            return True
        while full() and st.entries:  # drop-oldest
            for seq, _, _ in self._oldest(64):
                if not full():
                    break
                self._drop(seq, "full")
        return True

    def _remember(self, entry: Entry) -> None:
        tail = self._tail
        if not tail:  # nothing stored is newer than the entries before this one
            self._tail_floor = entry.seq - 1
        tail[entry.seq] = entry
        if len(tail) > self.TAIL:
            oldest = next(iter(tail))
            del tail[oldest]
            self._tail_floor = oldest

    def _in_tail(self, after: int) -> bool:
        """Whether every stored entry newer than ``after`` is in the tail."""
        return self._tail_floor is not None and after >= self._tail_floor

    def _drop(self, seq: int, reason: str) -> bool:
        """Delete one stored batch as dropped, counted under ``reason``; False when it
        was not there or could not be deleted."""
        self._tail.pop(seq, None)
        found = self._delete(seq)
        if found is None:
            return False
        self.stats.entries -= 1
        self.stats.bytes -= found[0]
        self._count_drop(reason, 1, found[1])
        return True

    def _count_drop(self, reason: str, batches: int, points: int) -> None:
        st = self.stats
        st.dropped += batches
        st.dropped_points += points
        st.dropped_by[reason] = st.dropped_by.get(reason, 0) + batches
        self._warn_once(reason, f"store: dropping batches ({reason}, policy "
                        f"{self.limits.policy}); counts are in the status topic")

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", message)

    def _check_age(self) -> None:
        if not self.limits.max_age:
            return
        now = time.monotonic()
        if now < self._next_age_check:
            return
        self._next_age_check = now + self.AGE_CHECK_INTERVAL
        cutoff = int((time.time() - self.limits.max_age) * 1000)
        n, nbytes, points = self._expire(cutoff)
        if n:
            self._tail.clear()  # which ones expired is the backend's: ask it again
            self._tail_floor = None
            self.stats.entries -= n
            self.stats.bytes -= nbytes
            self._count_drop("age", n, points)
            self._room.set()

    async def peek(self, n: int, after: int = 0, before: int | None = None) -> list[Entry]:
        if not self._in_tail(after):
            return self._select(n, after, before)
        out: list[Entry] = []
        for seq, entry in self._tail.items():
            if seq > after:
                if (before is not None and seq >= before) or len(out) == n:
                    break
                out.append(entry)
        return out

    def _any_after(self, after: int) -> bool:
        if self._in_tail(after):
            return bool(self._tail) and next(reversed(self._tail)) > after
        return bool(self._select(1, after, None))

    async def wait(self, after: int) -> None:
        # nothing newer than `after` was ever stored: no need to ask the backend
        while self._last_inserted <= after or not self._any_after(after):
            self._new.clear()
            await self._new.wait()

    def _delete_later(self, seq: int) -> bool:
        """Remove an acknowledged entry some time soon (with others, in one go); False
        when the backend deletes at once (:meth:`_delete`)."""
        return False

    def ack(self, seq: int) -> None:
        entry = self._tail.pop(seq, None)
        # an entry of the tail is stored, and its size known: it may leave with others
        found = (len(entry.payload), 0) if entry is not None and self._delete_later(seq) \
            else self._delete(seq)
        if found is not None:
            self.stats.entries -= 1
            self.stats.bytes -= found[0]
            self.stats.acked += 1
            self._made_room_at = -1e9  # the uplink frees space
            self._room.set()
            if not self.stats.entries:
                self._warned.discard("full")
                self._warned.discard("block")

    async def close(self) -> None:
        return None
