"""Direct route: the gateway writes to InfluxDB itself (no broker), from the same durable
store and with the same line-protocol encoder as the backend ingest.

For a gateway that has an HTTP route to InfluxDB. Entries leave the store only after
InfluxDB accepted them; while InfluxDB is unavailable they wait in the spool (retry with
backoff, Retry-After honoured); entries InfluxDB rejects go to the dead-letter file
beside the spool. Exactly once: InfluxDB stores a re-sent point once (same measurement,
tags and time).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.config import Backoff as BackoffConfig
from gateway.encode import decode_batch
from gateway.ingest.deadletter import DeadLetters
from gateway.ingest.lineproto import batch_lines
from gateway.ingest.sinkconfig import InfluxV1, InfluxV2
from gateway.ingest.sinks import describe, make_sink
from gateway.ingest.writer import BatchWriter
from gateway.stats import GatewayStats
from gateway.store import Entry, Store

log = logging.getLogger("edgegw.uplink")

MAX_ENTRIES_PER_WRITE = 500


@dataclass(slots=True)
class _Item:
    entry: Entry
    lines: list[str]


class InfluxUplink:
    def __init__(self, cfg: InfluxV1 | InfluxV2, store: Store, stats: GatewayStats,
                 dead_letter: Path, retry: BackoffConfig) -> None:
        self.cfg = cfg
        self.store = store
        self.stats = stats
        self.dead = DeadLetters(dead_letter)
        self.retry = retry
        self._stopping = False
        self._pending: list[asyncio.Future[None]] = []  # acks of the last write

    def stop(self) -> None:
        self._stopping = True

    async def run(self) -> None:
        sink = make_sink(self.cfg)
        log.info("uplink: writing directly to %s", describe(self.cfg))
        writer: BatchWriter[_Item] = BatchWriter(sink, self.retry, lambda it: it.lines,
                                                 self._written, self._rejected)
        cursor = 0
        try:
            while not (self._stopping and self.store.stats.entries == 0):
                entries = await self.store.peek(MAX_ENTRIES_PER_WRITE, after=cursor)
                if not entries:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.store.wait(cursor),
                                               0.2 if self._stopping else 1.0)
                    continue
                items = []
                for e in entries:
                    try:
                        items.append(_Item(e, batch_lines(decode_batch(e.payload))))
                    except ValueError as exc:  # cannot happen for our own encoder
                        self._rejected(_Item(e, []), f"cannot encode: {exc}")
                await writer.write(items)
                cursor = entries[-1].seq
                for t in self._pending:
                    await t
                self._pending.clear()
        finally:
            await sink.close()
            self.dead.close()

    def _written(self, items: Sequence[_Item]) -> None:
        self.stats.published += len(items)
        self.stats.uplink_connected = True
        for it in items:
            self._pending.append(asyncio.ensure_future(self.store.ack(it.entry.seq)))

    def _rejected(self, it: _Item, reason: str) -> None:
        self.dead.add(it.entry.topic, it.entry.payload, f"rejected by the database: {reason}")
        self._pending.append(asyncio.ensure_future(self.store.ack(it.entry.seq)))
