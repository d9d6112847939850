"""Direct route: the gateway writes to InfluxDB itself (no broker), from the same durable
store and with the same line-protocol encoder as the backend ingest.

The InfluxDB transport of the delivery engine (:mod:`gateway.uplink.engine`), so this
route has what the MQTT route has: alarm and state batches first, the byte budget,
retry with backoff (``uplink.influx.retry``; Retry-After honoured), acknowledgement
only after InfluxDB accepted the write, and draining on stop. A part is one write of up
to 500 store entries; entries InfluxDB rejects (HTTP 400, found by bisecting the write)
or that cannot be encoded go to the dead-letter file beside the spool and leave the
store. Exactly once: InfluxDB stores a re-sent point once (same measurement, tags and
time).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.config import GatewayInflux
from gateway.httpserve import Family
from gateway.influx.deadletter import DeadLetters
from gateway.influx.lineproto import batch_lines
from gateway.influx.sinks import Retry, describe, make_sink
from gateway.influx.writer import BatchWriter
from gateway.stats import GatewayStats
from gateway.store import Entry, Store
from gateway.uplink.engine import Engine, Policy
from gateway.uplink.link import LinkQuality, RadioState
from gateway.uplink.transport import TransportError
from gateway.wire.encode import decode_batch

log = logging.getLogger("edgegw.uplink")

MAX_ENTRIES_PER_WRITE = 500
#: payload bytes per write at most (with a budget: one burst, so the pace stays even)
MAX_WRITE_BYTES = 1 << 20


@dataclass(slots=True)
class _Item:
    entry: Entry
    lines: list[str]
    error: str | None = None  # could not be encoded: a dead letter


@dataclass(slots=True)
class Write:
    """One HTTP write: the items and the bytes of their line protocol."""

    items: list[_Item]
    nbytes: int


class InfluxTransport:
    name = "influx"
    overhead = 0
    max_inflight = 1  # one write at a time: InfluxDB answers in order anyway
    round_size = MAX_ENTRIES_PER_WRITE
    linger = 0.0
    encode_spends = False

    def __init__(self, cfg: GatewayInflux, dead_letter: Path,
                 max_bytes: int = MAX_WRITE_BYTES) -> None:
        self.cfg = cfg
        self.max_bytes = max_bytes
        self.sink = make_sink(cfg)
        self.dead = DeadLetters(dead_letter)
        self._refused = 0
        self.writer: BatchWriter[_Item] = BatchWriter(
            self.sink, cfg.retry, lambda it: it.lines, self._written, self._rejected)

    def _written(self, items: Sequence[_Item]) -> None:
        pass  # the engine acknowledges the entries after the whole write

    def _rejected(self, it: _Item, reason: str) -> None:
        self._refused += 1
        self.dead.add(it.entry.topic, it.entry.payload, f"rejected by the database: {reason}")

    async def open(self) -> InfluxTransport:
        return self  # HTTP: nothing to hold between writes but the sink's own client

    def group(self, entries: list[Entry]) -> list[list[Entry]]:
        """Writes of up to ``max_bytes`` of payload (at least one entry each)."""
        out: list[list[Entry]] = []
        size = self.max_bytes
        for e in entries:
            if size + len(e.payload) > self.max_bytes:
                out.append([])
                size = 0
            out[-1].append(e)
            size += len(e.payload)
        return out

    def encode(self, msg: list[Entry], backlog: bool, poor: bool) -> list[Write]:
        items = []
        for e in msg:
            try:
                items.append(_Item(e, batch_lines(decode_batch(e.payload))))
            except ValueError as exc:  # cannot happen for our own encoder
                items.append(_Item(e, [], f"cannot encode: {exc}"))
        return [Write(items, sum(len(line) + 1 for it in items for line in it.lines))]

    def size(self, part: Write) -> int:
        return part.nbytes

    def extras(self) -> list[Write]:
        return []

    # -- the session (stateless: the transport is its own session) ----------------------
    async def send(self, part: Write) -> int:
        self._refused = 0
        for it in part.items:
            if it.error is not None:
                self._rejected(it, it.error)
        good = [it for it in part.items if it.error is None]
        try:
            await self.writer.write_once(good)
        except Retry as exc:
            raise TransportError(f"write failed ({exc.reason})", exc.after) from exc
        return self._refused

    def start(self, part: Write, done: Callable[[BaseException | None], None]) -> bool:
        return False  # an HTTP write is awaited (send)

    async def background(self, wake: Callable[[], None]) -> None:
        return None

    async def close(self, clean: bool) -> None:
        return None

    async def shutdown(self) -> None:
        await self.sink.close()
        self.dead.close()


class InfluxUplink(Engine[Write]):
    """The direct InfluxDB uplink: the delivery engine over :class:`InfluxTransport`, with
    the policy from ``uplink.influx`` (retry backoff, budget)."""

    def __init__(self, cfg: GatewayInflux, store: Store, stats: GatewayStats,
                 dead_letter: Path) -> None:
        self.cfg = cfg
        policy = Policy.of(cfg.retry, cfg.budget, LinkQuality(), RadioState())
        burst = policy.budget.burst if policy.budget else MAX_WRITE_BYTES
        self.influx = InfluxTransport(cfg, dead_letter, min(MAX_WRITE_BYTES, int(burst)))
        self.dead = self.influx.dead
        super().__init__(self.influx, store, stats, policy)

    def metrics(self) -> list[Family]:
        """The engine's, and the batches InfluxDB refused (dead letters), by reason."""
        return [*super().metrics(), Family(
            "dead_letters_total", "counter", "batches InfluxDB refused, by reason",
            [({"reason": k}, v) for k, v in sorted(self.dead.by_reason.items())]
            or [({"reason": "none"}, 0)])]

    async def run(self) -> None:
        log.info("uplink: writing directly to %s", describe(self.cfg))
        try:
            await super().run()
        finally:
            await self.influx.shutdown()
