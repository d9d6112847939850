"""The ingest as a competing consumer of a clustered broker's replicated queue (AMQP).

RabbitMQ's MQTT plugin routes what the gateways publish to the ``amq.topic`` exchange,
with the topic's ``/`` and ``.`` swapped (``edgegw/gw-1/press.1/data`` ->
``edgegw.gw-1.press/1.data``). Every ingest worker declares the same durable quorum
queue (replicated by Raft on the cluster's nodes), binds it to the topics the MQTT
subscriptions would have taken, and consumes from it with a prefetch window: the broker
hands each message to one worker, and gives a message a worker did not acknowledge
(it died, or lost its connection) to another. A worker acknowledges only after InfluxDB
accepted the message's lines (the same path as over MQTT: IngestService._take, flush),
and a message written twice lands on the same points (series and time stamp): exactly
once in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlsplit, urlunsplit

import aio_pika
import aiormq
from aio_pika.abc import AbstractIncomingMessage

from gateway.backoff import Backoff

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from gateway.ingest.config import IngestConfig


class Ingest(Protocol):
    """What the consumer uses of the ingest service (gateway/ingest/service.py)."""

    cfg: IngestConfig
    topics: list[str]
    connected: asyncio.Event
    _stopping: bool
    _pending: Any

    def _take(self, m: Delivered) -> Coroutine[Any, Any, None] | None: ...
    async def flush(self) -> None: ...
    async def _timer(self) -> None: ...
    def _reset_session(self) -> None: ...

log = logging.getLogger("edgegw.ingest")

EXCHANGE = "amq.topic"  # where RabbitMQ's MQTT plugin publishes
_SWAP = str.maketrans("/.", "./")
ERRORS = (OSError, ConnectionError, asyncio.TimeoutError, aiormq.exceptions.AMQPError,
          aio_pika.exceptions.AMQPException)


def routing_key(topic_filter: str) -> str:
    """An MQTT topic filter as the binding key of the routed messages."""
    return topic_filter.translate(_SWAP).replace("+", "*")


def topic_of(key: str) -> str:
    """A routed message's key back to its MQTT topic."""
    return key.translate(_SWAP)


@dataclass(slots=True)
class Delivered:
    """A delivery as IngestService._take reads a message."""

    topic: str
    payload: bytes
    mid: int


class AmqpConsumer:
    def __init__(self, service: Ingest) -> None:
        self.svc = service
        cfg = service.cfg.amqp
        assert cfg is not None
        self.cfg = cfg
        self.keys = [routing_key(t) for t in service.topics]
        self._node = 0
        self._next_mid = 0
        self._deliveries: dict[int, AbstractIncomingMessage] = {}
        self._acks: set[asyncio.Task[Any]] = set()

    @property
    def where(self) -> str:
        u = urlsplit(self.cfg.urls[self._node])
        return f"{u.hostname}:{u.port or 5672}"

    def _url(self) -> str:
        """The node's URL with the password (read now, never logged)."""
        u = urlsplit(self.cfg.urls[self._node])
        pw = self.cfg.password()
        if pw is None or u.username is None:
            return self.cfg.urls[self._node]
        user, _, where = u.netloc.rpartition("@")  # where as written ([v6]:port too)
        netloc = f"{user}:{quote(pw, safe='')}@{where}"
        return urlunsplit((u.scheme, netloc, u.path, u.query, u.fragment))

    def ack(self, mid: int) -> None:
        msg = self._deliveries.pop(mid, None)
        if msg is None:  # from a connection that is gone: the broker gives it again
            return
        task = asyncio.get_running_loop().create_task(msg.ack())
        self._acks.add(task)
        task.add_done_callback(self._acked)

    def _acked(self, task: asyncio.Task[Any]) -> None:
        self._acks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("ingest: amqp: an ack was lost with its connection: %s",
                      task.exception())

    async def run(self) -> None:
        svc = self.svc
        backoff = Backoff(svc.cfg.mqtt.reconnect.initial, svc.cfg.mqtt.reconnect.max)
        while not svc._stopping:
            try:
                conn = await aio_pika.connect(self._url(), timeout=10)
            except ERRORS as exc:
                delay = backoff.next()
                log.warning("ingest: amqp: %s unreachable (%s); the next node in %.1f s",
                            self.where, exc, delay)
                self._node = (self._node + 1) % len(self.cfg.urls)
                await asyncio.sleep(delay)
                continue
            try:
                async with conn:
                    await self._session(conn, backoff)
            except ERRORS as exc:
                log.warning("ingest: amqp: session with %s ended: %s", self.where, exc)
            finally:
                svc.connected.clear()
                # what was not acknowledged comes again, to this worker or another
                svc._reset_session()
                self._deliveries.clear()
            if not svc._stopping:
                self._node = (self._node + 1) % len(self.cfg.urls)
                await asyncio.sleep(backoff.next())

    async def _session(self, conn: aio_pika.abc.AbstractConnection, backoff: Backoff) -> None:
        svc = self.svc
        channel = await conn.channel()
        await channel.set_qos(prefetch_count=self.cfg.prefetch)
        queue = await channel.declare_queue(
            self.cfg.queue, durable=True, arguments={"x-queue-type": "quorum"})
        for key in self.keys:
            await queue.bind(EXCHANGE, routing_key=key)
        backoff.reset()
        svc.connected.set()
        log.info("ingest: consuming queue %s on %s (AMQP, %d keys, prefetch %d)",
                 self.cfg.queue, self.where, len(self.keys), self.cfg.prefetch)
        async with asyncio.TaskGroup() as tg:
            timer = tg.create_task(svc._timer(), name="ingest-timer")
            try:
                async with queue.iterator() as it:
                    async for msg in it:
                        await self._take(msg)
                        if svc._stopping:
                            await svc.flush()
                            return
            finally:
                timer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await timer

    async def _take(self, msg: AbstractIncomingMessage) -> None:
        svc = self.svc
        self._next_mid += 1
        mid = self._next_mid
        self._deliveries[mid] = msg
        pack = svc._take(Delivered(topic_of(msg.routing_key or ""), msg.body, mid))
        if pack is not None:
            await pack
        if svc._pending.lines >= svc.cfg.batch.max_lines:
            await svc.flush()  # backpressure: nothing new is taken until written
