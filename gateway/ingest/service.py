"""``edgegw ingest``: MQTT -> InfluxDB, exactly once in the database.

- Subscribes to ``<prefix>/<gateway>/+/data`` (and ``+/production``, ``pack``) on a
  persistent MQTT v5 session: while ingest is down, the broker keeps the messages.
  Several ingest processes split the load by gateway lists, or with a shared
  subscription (``mqtt.share_group``; see its caveat in the config reference: mosquitto
  forgets shared subscriptions when it restarts).
- Acknowledges a message (PUBACK, manual) only after InfluxDB accepted the write that
  contains it, or after it went to the dead-letter file. A crash or a lost connection
  before that makes the broker deliver it again.
- Exactly once in the database: duplicates (a gateway's replay, a redelivery) are
  dropped by (gateway, seq) within a window of recent batches; any duplicate that gets
  past the window rewrites the same points with the same timestamps, which InfluxDB
  stores once (a point is identified by measurement, tags and time).
- Batches of up to ``batch.max_lines`` lines or ``batch.max_interval`` seconds. On 5xx,
  429 (Retry-After honoured), timeouts or a dead server it retries the same batch with
  backoff and reads nothing new meanwhile: the broker holds the rest (backpressure, with
  memory bounded by ``receive_maximum``). 413 splits the batch; 400 bisects it to find
  the bad message(s), which go to the dead-letter file with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
import time
from collections import OrderedDict
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.backoff import Backoff
from gateway.errors import EdgegwError
from gateway.influx.deadletter import DeadLetters
from gateway.influx.lineproto import batch_lines
from gateway.influx.sinks import Sink, describe, make_sink
from gateway.influx.writer import BatchWriter
from gateway.ingest.config import IngestMqtt, LoadedIngest
from gateway.ingest.connack import UNSUPPORTED_PROTOCOL, code_of, meaning
from gateway.ingest.flow import ReadGate
from gateway.ingest.stats import IngestStats
from gateway.wire.compact import PACK, CompactError, decode_pack, decode_record, split_pack
from gateway.wire.encode import decode_batch

if TYPE_CHECKING:
    from gateway.ingest.amqp import AmqpConsumer, Delivered

log = logging.getLogger("edgegw.ingest")
#: records of a compact pack decoded between two turns of the event loop
PACK_STEP = 256
#: points in one batch of a profile the ingest does not know, at most
MAX_UNKNOWN_POINTS = 1000


class BrokerRefused(EdgegwError):
    """The broker refuses the connection in a way trying again cannot mend."""


def _tls(m: IngestMqtt) -> ssl.SSLContext | None:
    if m.tls is None:
        return None
    from gateway.common import tls_context

    return tls_context(m.tls)


@dataclass(slots=True)
class _Msg:
    mid: int
    topic: str
    payload: bytes
    key: tuple[str, int]
    lines: list[str]
    verified: bool = False  # signed by a trusted key
    ts_ms: int = 0  # the batch's time stamp (its age when written: IngestStats.ages)


@dataclass
class _Pending:
    msgs: list[_Msg] = field(default_factory=list)
    keys: dict[tuple[str, int], bool] = field(default_factory=dict)  # -> verified
    lines: int = 0
    since: float = 0.0


class IngestService:
    def __init__(self, loaded: LoadedIngest, sink: Sink | None = None) -> None:
        self.cfg = loaded.config
        self.sink = sink or make_sink(self.cfg.sink)
        self.verifier = loaded.verifier()
        self.dead = DeadLetters(loaded.dead_letter)
        self.stats = IngestStats()
        #: recently written (gateway, seq) -> whether that batch was verified
        self._seen: OrderedDict[tuple[str, int], bool] = OrderedDict()
        self._pending = _Pending()
        self._lock = asyncio.Lock()
        self._stopping = False
        self._paho: object | None = None
        self._node = 0  # index in mqtt.endpoints() of the broker node to use
        self._amqp: AmqpConsumer | None = None  # the AMQP source (cfg.amqp), when running
        #: the current session's flow control (None before the first connect)
        self.gate: ReadGate | None = None
        self.protocol: str | None = None  # the MQTT version of the current session
        m = self.cfg.mqtt
        share = f"$share/{m.share_group}/" if m.share_group else ""
        self.topics = [f"{share}{m.topic_prefix}/{gw}/+/{kind}" for kind in ("data", "production")
                       for gw in m.gateways] + [
            f"{share}{m.topic_prefix}/{gw}/pack" for gw in m.gateways]
        self.schemas = loaded.schemas()
        self._id_tags = frozenset(self.cfg.id_tags)
        #: profile -> the points it declares (0: a profile this ingest does not know)
        self._points: dict[str, int] = {}
        self._parts: dict[int, int] = {}  # pack mid -> records not yet settled
        self.connected = asyncio.Event()
        self._writer: BatchWriter[_Msg] = BatchWriter(
            self.sink, self.cfg.batch.retry, lambda m: m.lines, self._on_written, self._reject,
            self._count_retry)

    # -- MQTT --------------------------------------------------------------------------
    def _client(self, version: str) -> aiomqtt.Client:
        """A client on a persistent session: v5 (clean start off, session expiry,
        receive maximum) or 3.1.1 (clean session off)."""
        m = self.cfg.mqtt
        if version == "5":
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = int(m.session_expiry)
            props.ReceiveMaximum = m.receive_maximum
            client = aiomqtt.Client(
                *self.broker, identifier=m.client_id or "edgegw-ingest",
                username=m.username, password=m.password(), keepalive=m.keepalive,
                protocol=aiomqtt.ProtocolVersion.V5, clean_start=False, properties=props,
                # auto, before v5 is known to work: a 3.1.1-only broker may never answer
                timeout=5 if m.protocol == "auto" and self.protocol is None else 10,
                tls_context=_tls(m),
            )
        else:
            client = aiomqtt.Client(
                *self.broker, identifier=m.client_id or "edgegw-ingest",
                username=m.username, password=m.password(), keepalive=m.keepalive,
                protocol=aiomqtt.ProtocolVersion.V311, clean_session=False,
                timeout=10, tls_context=_tls(m),
            )
        paho = getattr(client, "_client", None)
        if paho is None or not hasattr(paho, "manual_ack_set"):
            raise RuntimeError("this aiomqtt/paho does not offer manual acknowledgements")
        paho.manual_ack_set(True)  # PUBACK only after the database has the data
        self._paho = paho
        # at most receive_maximum messages wait in memory, whatever the broker sends
        self.gate = ReadGate(client, m.receive_maximum)
        return client

    @property
    def broker(self) -> tuple[str, int]:
        """The broker node connected to (or tried next): one of mqtt.endpoints()."""
        nodes = self.cfg.mqtt.endpoints()
        return nodes[self._node % len(nodes)]

    @property
    def where(self) -> str:
        return "{}:{}".format(*self.broker)

    def _next_node(self) -> None:
        """The node did not take the connection: the next one of a cluster, next time."""
        nodes = self.cfg.mqtt.endpoints()
        if len(nodes) > 1:
            self._node = (self._node + 1) % len(nodes)
            log.warning("ingest: mqtt: trying broker node %s next", self.where)

    def _ack(self, mid: int) -> None:
        """Acknowledge a message; a pack once every record in it is settled."""
        left = self._parts.pop(mid, 1) - 1
        if left > 0:
            self._parts[mid] = left
            return
        if self._amqp is not None:
            self._amqp.ack(mid)
            return
        assert self._paho is not None
        self._paho.ack(mid, 1)  # type: ignore[attr-defined]

    def _reset_session(self) -> None:
        """The broker session ended: what it did not acknowledge comes again."""
        self._pending = _Pending()
        self._parts.clear()

    async def run(self) -> None:
        """Consume until stopped; raises BrokerRefused when the broker refuses the
        connection in a way trying again cannot mend (credentials, ACL, version)."""
        log.info("ingest: %s -> %s", ", ".join(self.topics), describe(self.cfg.sink))
        try:
            if self.cfg.amqp is not None:
                from gateway.ingest.amqp import AmqpConsumer

                self._amqp = AmqpConsumer(self)
                await self._amqp.run()
            else:
                await self._consume_mqtt()
        finally:
            await self.sink.close()
            self.dead.close()

    async def _consume_mqtt(self) -> None:
        """Subscribe and consume over MQTT, reconnecting (to the next node of
        ``mqtt.hosts``) until stopped or refused for good."""
        m = self.cfg.mqtt
        backoff = Backoff(m.reconnect.initial, m.reconnect.max)
        version = "3.1.1" if m.protocol == "3.1.1" else "5"
        probing = False  # trying 3.1.1 after a v5 CONNECT got no answer
        while not self._stopping:
            refused: aiomqtt.MqttCodeError | None = None
            session = False
            try:
                async with self._client(version) as client:
                    session = True
                    if probing:
                        self._fell_back()
                        probing = False
                    self.protocol = version
                    await self._session(client, version, backoff)
            except* aiomqtt.MqttError as eg:
                self.connected.clear()
                # unacknowledged messages come again on the next session
                self._reset_session()
                exc = eg.exceptions[0]
                if isinstance(exc, MqttConnectError):
                    refused = exc
                elif not session and m.protocol == "auto" and version == "5":
                    # some 3.1.1-only brokers drop a v5 CONNECT (its properties)
                    # without a CONNACK: try 3.1.1 at once
                    version, probing = "3.1.1", True
                else:
                    if probing:  # neither answered: the network, not the version
                        version, probing = "5", False
                    if not session:
                        self._next_node()
                    delay = backoff.next()
                    log.warning("ingest: mqtt: %s; reconnecting in %.1f s", exc, delay)
                    await asyncio.sleep(delay)
            if refused is not None:
                version = await self._refused(refused, version, backoff)

    def _fell_back(self) -> None:
        """A v5 CONNECT got no answer and 3.1.1 connected: say so, or refuse when the
        config needs v5."""
        m = self.cfg.mqtt
        if m.share_group:
            raise BrokerRefused(
                f"ingest: the broker at {self.where} does not speak MQTT "
                "v5 (no answer to a v5 CONNECT; 3.1.1 works), which "
                "mqtt.share_group (a shared subscription) needs; unset it "
                "(split the load with mqtt.gateways instead)")
        log.warning("ingest: the broker at %s did not answer an MQTT "
                    "v5 CONNECT but speaks 3.1.1: using MQTT 3.1.1 (a "
                    "persistent session, clean session off)", self.where)

    async def _session(self, client: aiomqtt.Client, version: str, backoff: Backoff) -> None:
        """One connected session: consume, subscribe, and consume until it ends."""
        async with asyncio.TaskGroup() as tg:
            timer = tg.create_task(self._timer(), name="ingest-timer")
            # consume before subscribing: a persistent session's stored messages may come
            # first, and some brokers (amqtt) answer the SUBSCRIBE only after they are
            # acknowledged
            consumer = tg.create_task(self._consume(client), name="ingest-consume")
            for topic in self.topics:
                # a resumed session's backlog comes before the SUBACK (mosquitto: all of
                # it): no timeout, the consumer works on meanwhile; a dead link ends the
                # session (keepalive)
                await client.subscribe(topic, qos=1, timeout=math.inf)
            backoff.reset()
            self.connected.set()
            log.info("ingest: subscribed on %s (MQTT %s, persistent session)",
                     self.where, version)
            await consumer
            timer.cancel()

    async def _refused(self, exc: aiomqtt.MqttCodeError, version: str,
                       backoff: Backoff) -> str:
        """After a CONNACK refusal: the version to try next, or BrokerRefused."""
        m = self.cfg.mqtt
        where = f"the broker at {self.where}"
        if code_of(exc.rc) == UNSUPPORTED_PROTOCOL and version == "5" and \
                m.protocol == "auto":
            if m.share_group:
                raise BrokerRefused(f"ingest: {where} does not speak MQTT v5, which "
                                    "mqtt.share_group (a shared subscription) needs; unset "
                                    "it (split the load with mqtt.gateways instead)")
            log.warning("ingest: %s does not speak MQTT v5: using MQTT 3.1.1 (a persistent "
                        "session, clean session off)", where)
            return "3.1.1"
        text, permanent = meaning(exc.rc)
        if permanent:
            raise BrokerRefused(f"ingest: {where} refused the connection (MQTT {version}): "
                                f"{text}")
        delay = backoff.next()
        log.warning("ingest: %s refused the connection: %s; trying again in %.1f s", where,
                    text, delay)
        await asyncio.sleep(delay)
        return version

    def stop(self) -> None:
        self._stopping = True

    async def _consume(self, client: aiomqtt.Client) -> None:
        gate = self.gate
        async for m in client.messages:
            if gate is not None:
                gate.drained()
            pack = self._take(m)
            if pack is not None:
                await pack
            if self._pending.lines >= self.cfg.batch.max_lines:
                await self.flush()  # backpressure: nothing new is read until written
            if self._stopping:
                await self.flush()
                return

    async def _timer(self) -> None:
        interval = self.cfg.batch.max_interval
        while True:
            await asyncio.sleep(interval / 4)
            p = self._pending
            if p.msgs and time.monotonic() - p.since >= interval:
                await self.flush()

    # -- messages ------------------------------------------------------------------------
    def _take(self, m: aiomqtt.Message | Delivered) -> Coroutine[Any, Any, None] | None:
        """Take one message; a compact pack is decoded by the coroutine returned (in
        bounded steps: other work runs in between)."""
        self.stats.received += 1
        topic = str(m.topic)
        payload = m.payload if isinstance(m.payload, bytes | bytearray) else b""
        payload = bytes(payload)
        if len(payload) > self.cfg.max_payload:
            self._dead(m.mid, topic, payload, f"payload of {len(payload)} bytes is too large")
            return None
        if payload[:2] == PACK:
            return self._take_pack(m.mid, topic, payload)
        message, kid = payload, None
        if self.verifier is not None:
            try:
                message, kid = self.verifier.check(payload)
            except ValueError as exc:
                self.stats.refused_signatures += 1
                self._dead(m.mid, topic, payload, str(exc))
                return None
        try:
            doc = decode_batch(message)
            key = (str(doc["gw"]), int(doc["seq"]))
            lines = batch_lines(doc, self._id_tags)
        except (ValueError, KeyError, TypeError) as exc:
            self._dead(m.mid, topic, payload, f"cannot decode: {exc}")
            return None
        bounded = self._within_profile(doc)
        if bounded is not None:
            self._dead(m.mid, topic, payload, bounded)
            return None
        parts = topic.split("/")
        if len(parts) < 4 or parts[-3] != key[0] or parts[-2] != doc["dev"]:
            self._dead(m.mid, topic, payload, f"the payload's gateway/device {key[0]!r}/"
                       f"{str(doc['dev'])!r} do not match the topic {topic!r}")
            return None
        if self.verifier is not None and not self.verifier.allowed(kid, key[0]):
            self.stats.refused_signatures += 1
            self._dead(m.mid, topic, payload,
                       f"key id {kid!r} may not sign for gateway {key[0]!r}")
            return None
        self._queue(_Msg(m.mid, topic, payload, key, lines, kid is not None,
                         _ts(doc)))
        return None

    def _within_profile(self, doc: dict[str, Any]) -> str | None:
        """Why the batch has more points than its profile declares (None: it has not).
        A profile the ingest does not know bounds a batch to MAX_UNKNOWN_POINTS: a key
        holder must not add 50,000 field keys to a measurement with one message. (The
        names are not checked against the profile: a compact record can only carry
        declared ones, and a JSON batch's names are its gateway's.)"""
        prof = str(doc["prof"])
        known = self._points.get(prof)
        if known is None:
            if len(self._points) >= 1024:  # forged profile names must not grow it
                self._points.clear()
            try:
                known = len(self.schemas.get(prof).names)
            except CompactError:
                known = 0  # not known here
            self._points[prof] = known
        n = max(len(doc["p"]), len(doc.get("q") or ()))
        if known and n > known:
            return f"{n} points in one batch of profile {prof!r}, which declares {known}"
        if not known and n > MAX_UNKNOWN_POINTS:
            return (f"{n} points in one batch of profile {prof!r}, which this ingest does "
                    f"not know (at most {MAX_UNKNOWN_POINTS}; give it the profile: "
                    "profiles_dir)")
        return None

    def _queue(self, msg: _Msg) -> None:
        # a duplicate by (gateway, seq), unless it is verified and what came first was
        # not: an unsigned forgery must never make the authentic batch a "duplicate"
        before = self._pending.keys.get(msg.key, self._seen.get(msg.key))
        if before is not None and (before or not msg.verified):
            self.stats.duplicates += 1
            self._ack(msg.mid)
            return
        p = self._pending
        if not p.msgs:
            p.since = time.monotonic()
        p.msgs.append(msg)
        p.keys[msg.key] = msg.verified
        p.lines += len(msg.lines)

    async def _take_pack(self, mid: int, topic: str, payload: bytes) -> None:
        """A compact pack: each record is a batch of its own (deduplicated and written
        alone); the message is acknowledged when all are settled. A pack whose signature
        or structure is bad, or with records that cannot be decoded, is dead-lettered
        once, whole, with the reason (its good records are still written)."""
        parts = topic.split("/")
        gateway = parts[-2] if len(parts) >= 3 else ""
        unsigned, kid = payload, None
        try:
            if self.verifier is not None:
                unsigned, kid = self.verifier.check_pack(payload)
                if not self.verifier.allowed(kid, gateway):
                    raise ValueError(f"key id {kid!r} may not sign for gateway {gateway!r}")
            elif (split := split_pack(payload)) is not None:
                unsigned = split[0]  # signed, but no keys configured: not verified
        except ValueError as exc:
            self.stats.refused_signatures += 1
            self._dead(mid, topic, payload, str(exc))
            return
        try:
            records = decode_pack(unsigned)
        except CompactError as exc:
            self._dead(mid, topic, payload, f"cannot decode the pack: {exc}")
            return
        if not records:
            self._ack(mid)
            return
        self._parts[mid] = len(records)
        self.stats.received += len(records) - 1
        bad: list[str] = []
        for k, rec in enumerate(records):
            if k % PACK_STEP == PACK_STEP - 1:
                await asyncio.sleep(0)  # a large pack must not hold the event loop
                if self._pending.lines >= self.cfg.batch.max_lines:
                    await self.flush()
            try:
                doc = decode_record(rec, gateway, self.schemas)
                lines = batch_lines(doc, self._id_tags)
                msg = _Msg(mid, topic, rec, (gateway, int(doc["seq"])), lines, kid is not None,
                           _ts(doc))
            except (ValueError, KeyError, TypeError) as exc:
                bad.append(str(exc))
                self._ack(mid)  # settled: it is in the pack's dead letter
                continue
            self._queue(msg)
        if bad:
            self.dead.add(topic, payload, f"{len(bad)} of {len(records)} record(s) cannot "
                          f"be decoded; the first: {bad[0]}")
            self.stats.dead_letters += 1

    def _dead(self, mid: int, topic: str, payload: bytes, reason: str) -> None:
        self.dead.add(topic, payload, reason)
        self.stats.dead_letters += 1
        self._ack(mid)

    # -- writing -------------------------------------------------------------------------
    async def flush(self) -> None:
        async with self._lock:
            p, self._pending = self._pending, _Pending()
            if p.msgs:
                await self._write_all(p.msgs)

    async def _write_all(self, msgs: list[_Msg]) -> None:
        """Write msgs; dead-letter the ones InfluxDB rejects; ack every one."""
        await self._writer.write(msgs)
        self.stats.writes = self._writer.writes

    def _count_retry(self) -> None:
        self.stats.retries += 1

    def _on_written(self, msgs: Sequence[_Msg]) -> None:
        for m in msgs:
            self._ack(m.mid)
            self._remember(m.key, m.verified)
        self.stats.written_batches += len(msgs)
        self.stats.written_lines += sum(len(m.lines) for m in msgs)
        now_ms = time.time() * 1000
        self.stats.ages.extend((now_ms - m.ts_ms) / 1000 for m in msgs if m.ts_ms)

    def _reject(self, m: _Msg, reason: str) -> None:
        self._dead(m.mid, m.topic, m.payload, f"rejected by the database: {reason}")

    def _remember(self, key: tuple[str, int], verified: bool) -> None:
        if self.cfg.dedupe_window:
            self._seen[key] = verified or self._seen.get(key, False)
            if len(self._seen) > self.cfg.dedupe_window:
                self._seen.popitem(last=False)


def _ts(doc: dict[str, Any]) -> int:
    ts = doc.get("ts")
    return ts if isinstance(ts, int) and not isinstance(ts, bool) else 0


async def run_ingest(loaded: LoadedIngest) -> None:
    import signal

    svc = IngestService(loaded)
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()

    def on_signal() -> None:
        svc.stop()
        if task is not None:
            task.cancel()  # unacknowledged messages are delivered again next time

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal)
    hc = loaded.config.health
    health = None
    if hc.enabled:
        from gateway.ingest.health import IngestHealth

        health = IngestHealth(svc, hc.host, hc.port)
        try:
            await health.start()
        except OSError as exc:  # the port is taken: run without it, say so
            log.warning("ingest health endpoint %s:%d not started: %s", hc.host, hc.port, exc)
            health = None
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await svc.run()
    finally:
        if health is not None:
            await health.close()
