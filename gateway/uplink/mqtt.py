"""MQTT uplink over aiomqtt: QoS 1, bounded in-flight publishes, birth/death status.

The store is the queue: this task peeks the oldest unacknowledged entries, publishes up
to ``max_inflight`` of them concurrently (paho writes them to the socket in sequence
order) and acknowledges each entry to the store only after the broker's PUBACK. On any
MQTT error every in-flight publish is abandoned, the client reconnects with backoff and
publishing restarts from the oldest unacknowledged entry (at-least-once delivery; the
backend drops duplicates by gateway id + sequence number).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable

import aiomqtt
import orjson

from gateway import __version__
from gateway.backoff import Backoff
from gateway.compact import encode_pack, pack_topic
from gateway.config import GatewayMqtt
from gateway.encode import status_topic
from gateway.stats import GatewayStats
from gateway.store import Entry, Store

log = logging.getLogger("edgegw.uplink")
# aiomqtt warns about every publish beyond 10 pending; many in flight is our design
_client_log = logging.getLogger("edgegw.uplink.client")
_client_log.setLevel(logging.ERROR)
#: records read from the store per pack round (several packs when over pack.max_bytes)
PACK_RECORDS = 2000


class MqttUplink:
    def __init__(self, cfg: GatewayMqtt, gateway_id: str, store: Store, stats: GatewayStats,
                 status_extra: Callable[[], dict[str, object]] | None = None) -> None:
        self.cfg = cfg
        self.gateway_id = gateway_id
        self.store = store
        self.stats = stats
        self.status_extra = status_extra or (dict)
        self.topic_status = status_topic(cfg.topic_prefix, gateway_id)
        self.topic_pack = pack_topic(cfg.topic_prefix, gateway_id)
        self._backoff = Backoff(cfg.reconnect.initial, cfg.reconnect.max, cfg.reconnect.jitter)
        self._stopping = False
        self._drained = asyncio.Event()

    # -- status ------------------------------------------------------------------------
    def _status(self, online: bool) -> bytes:
        doc: dict[str, object] = {
            "v": 1, "gw": self.gateway_id, "status": "online" if online else "offline",
            "ts": int(time.time() * 1000),
        }
        if online:
            doc["version"] = __version__
            doc.update(self.status_extra())
        return orjson.dumps(doc)

    def _client(self) -> aiomqtt.Client:
        cfg = self.cfg
        tls_context = None
        if cfg.tls is not None:
            tls_context = ssl.create_default_context(
                cafile=str(cfg.tls.ca_file) if cfg.tls.ca_file else None
            )
            if cfg.tls.cert_file and cfg.tls.key_file:
                tls_context.load_cert_chain(str(cfg.tls.cert_file), str(cfg.tls.key_file))
            if cfg.tls.insecure_skip_verify:
                tls_context.check_hostname = False
                tls_context.verify_mode = ssl.CERT_NONE
        return aiomqtt.Client(
            cfg.host, cfg.port,
            identifier=cfg.client_id or f"edgegw-{self.gateway_id}",
            logger=_client_log,
            username=cfg.username, password=cfg.password(),
            keepalive=cfg.keepalive,
            will=aiomqtt.Will(self.topic_status, self._status(False), qos=1, retain=True),
            tls_context=tls_context,
            max_inflight_messages=cfg.max_inflight,
            clean_session=True,
            timeout=10,
        )

    # -- running -----------------------------------------------------------------------
    async def run(self) -> None:
        """Connect, publish, reconnect: forever, until :meth:`stop` has drained the store."""
        while not self._stopping:
            try:
                await self._session()
            except* aiomqtt.MqttError as eg:
                delay = self._backoff.next()
                log.warning("mqtt: %s; reconnecting in %.1f s (%d batches waiting)",
                            eg.exceptions[0], delay, self.store.stats.entries)
                await asyncio.sleep(delay)

    async def _session(self) -> None:
        async with self._client() as client:
            self.stats.mqtt_connects += 1
            self.stats.uplink_connected = True
            self._backoff.reset()
            log.info("mqtt: connected to %s:%d", self.cfg.host, self.cfg.port)
            try:
                await client.publish(self.topic_status, self._status(True), qos=1,
                                     retain=True)
                if self.cfg.encoding == "compact":
                    await self._pump_packs(client)
                else:
                    await self._pump(client)
            finally:
                self.stats.uplink_connected = False
            with contextlib.suppress(aiomqtt.MqttError):
                await client.publish(self.topic_status, self._status(False), qos=1,
                                     retain=True, timeout=2)

    async def _pump(self, client: aiomqtt.Client) -> None:
        """Publish until stopping and drained; an MqttError ends the session."""
        sem = asyncio.Semaphore(self.cfg.max_inflight)
        qos = self.cfg.qos
        store = self.store
        stats = self.stats
        failed = False

        async def send(e: Entry) -> None:
            nonlocal failed
            t0 = time.monotonic()
            try:
                await client.publish(e.topic, e.payload, qos=qos)
            except aiomqtt.MqttError:
                stats.publish_errors += 1
                failed = True
                raise
            finally:
                sem.release()
            stats.published += 1
            stats.messages += 1
            stats.publish_seconds += time.monotonic() - t0
            stats.bytes_sent += len(e.payload) + len(e.topic)
            await store.ack(e.seq)

        # Live first: entries newer than the session's start go out before the backlog,
        # which fills the remaining in-flight capacity in sequence order.
        n = self.cfg.max_inflight
        live_from = store.last_seq
        live_cur, back_cur = live_from, 0
        backlog = store.stats.entries
        t0 = time.monotonic()
        if backlog:
            log.info("mqtt: replaying %d stored batch(es), live data first", backlog)
        async with asyncio.TaskGroup() as tg:
            status = tg.create_task(self._status_loop(client), name="mqtt-status")
            while not (self._stopping and store.stats.entries == 0):
                live = await store.peek(n, after=live_cur)
                back: list[Entry] = []
                if len(live) < n and back_cur < live_from:
                    back = await store.peek(n - len(live), after=back_cur, before=live_from + 1)
                    if not back:
                        back_cur = live_from
                        if backlog:
                            log.info("mqtt: backlog of %d batch(es) sent in %.1f s", backlog,
                                     time.monotonic() - t0)
                if not live and not back:
                    with contextlib.suppress(TimeoutError):  # re-check stopping now and then
                        await asyncio.wait_for(store.wait(live_cur),
                                               0.2 if self._stopping else 1.0)
                    continue
                for e in live:
                    await sem.acquire()
                    if failed:  # the TaskGroup is shutting down with the MqttError
                        return
                    tg.create_task(send(e), name="mqtt-publish")
                    live_cur = e.seq
                for e in back:
                    await sem.acquire()
                    if failed:
                        return
                    tg.create_task(send(e), name="mqtt-publish")
                    back_cur = e.seq
            status.cancel()

    async def _pump_packs(self, client: aiomqtt.Client) -> None:
        """Compact encoding: many stored records per message. Live records wait up to
        ``pack.max_delay`` after their read time for others to share the message (one
        timer, not a wake-up per record); backlog after an outage goes out at once, in
        full packs, after the live data. A pack is acknowledged record by record after
        its PUBACK."""
        pc = self.cfg.pack
        sem = asyncio.Semaphore(self.cfg.max_inflight)
        qos = self.cfg.qos
        store, stats, topic = self.store, self.stats, self.topic_pack
        failed = False

        async def send(entries: list[Entry]) -> None:
            nonlocal failed
            t0 = time.monotonic()
            payload = encode_pack([e.payload for e in entries], pc.compression)
            try:
                await client.publish(topic, payload, qos=qos)
            except aiomqtt.MqttError:
                stats.publish_errors += 1
                failed = True
                raise
            finally:
                sem.release()
            stats.published += len(entries)
            stats.messages += 1
            stats.publish_seconds += time.monotonic() - t0
            stats.bytes_sent += len(payload) + len(topic)
            for e in entries:
                await store.ack(e.seq)

        def packs(entries: list[Entry]) -> list[list[Entry]]:
            out: list[list[Entry]] = [[]]
            size = 0
            for e in entries:
                if out[-1] and size + len(e.payload) > pc.max_bytes:
                    out.append([])
                    size = 0
                out[-1].append(e)
                size += len(e.payload)
            return out if out[0] else []

        n = PACK_RECORDS
        live_from = store.last_seq
        live_cur, back_cur = live_from, 0
        async with asyncio.TaskGroup() as tg:
            status = tg.create_task(self._status_loop(client), name="mqtt-status")
            while not (self._stopping and store.stats.entries == 0):
                live = await store.peek(n, after=live_cur)
                if live and not self._stopping and len(live) < n:
                    linger = live[0].ts_ms / 1000 + pc.max_delay - time.time()
                    if linger > 0:
                        await asyncio.sleep(min(linger, pc.max_delay))
                        live = await store.peek(n, after=live_cur)
                back: list[Entry] = []
                if len(live) < n and back_cur < live_from:
                    back = await store.peek(n - len(live), after=back_cur, before=live_from + 1)
                    if not back:
                        back_cur = live_from
                if not live and not back:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(store.wait(live_cur),
                                               0.2 if self._stopping else 1.0)
                    continue
                for chunk in packs(live):
                    await sem.acquire()
                    if failed:
                        return
                    tg.create_task(send(chunk), name="mqtt-publish-pack")
                    live_cur = chunk[-1].seq
                for chunk in packs(back):
                    await sem.acquire()
                    if failed:
                        return
                    tg.create_task(send(chunk), name="mqtt-publish-pack")
                    back_cur = chunk[-1].seq
            status.cancel()

    async def _status_loop(self, client: aiomqtt.Client) -> None:
        while True:
            await asyncio.sleep(self.cfg.status_interval)
            await client.publish(self.topic_status, self._status(True), qos=1, retain=True)

    def stop(self) -> None:
        """Ask :meth:`run` to publish what is queued, then the offline status, and return.
        The caller bounds the wait (a dead broker never drains)."""
        self._stopping = True
