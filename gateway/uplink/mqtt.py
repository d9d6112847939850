"""MQTT uplink: the MQTT transport of the delivery engine (:mod:`gateway.uplink.engine`),
with birth/death status and the three encodings, over the gateway's own MQTT 3.1.1 client
(:mod:`gateway.uplink.mqttwire`; why not paho on this path is written there).

A part is one MQTT message (topic, payload), published with the configured QoS; a part is
acknowledged after the broker's PUBACK. Publishes go on the wire in the order they were
started, so the engine keeps ``max_inflight`` of them in flight, each without a task of
its own (:meth:`MqttSession.start`). Each session publishes the retained online status
(and a Sparkplug NBIRTH), refreshes the status every ``status_interval`` and, on a clean
stop, says ``offline: stopped``; the last will says ``connection lost``. Any MQTT error
becomes a :class:`TransportError` that says what it means (a TLS alert from the broker, a
refused CONNACK, a broker that stopped answering).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable

from gateway import __version__
from gateway.common import tls_context
from gateway.config import GatewayMqtt
from gateway.stats import GatewayStats
from gateway.store import Entry, Store, StoreStats
from gateway.uplink.engine import Engine, Policy
from gateway.uplink.link import MQTT_OVERHEAD, LinkQuality, RadioState
from gateway.uplink.mqttwire import MqttClient, MqttError, Will
from gateway.uplink.sparkplug import REBIRTH, SparkplugSession, read_metrics
from gateway.uplink.transport import Done, TransportError
from gateway.wire.compact import CompactError, Schemas, encode_pack, pack_topic
from gateway.wire.encode import dumps, status_topic

log = logging.getLogger("edgegw.uplink")

#: OpenSSL reason codes -> what they mean for the gateway's config
_TLS_REASONS = {
    "TLSV1_ALERT_UNKNOWN_CA": "the broker does not trust the CA that signed our client "
    "certificate (uplink.mqtt.tls.cert_file)",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "the broker says our client certificate has "
    "expired (edgegw certs show)",
    "TLSV1_ALERT_CERTIFICATE_EXPIRED": "the broker says our client certificate has expired",
    "SSLV3_ALERT_CERTIFICATE_REVOKED": "the broker says our client certificate is revoked",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the broker refused our client certificate",
    "TLSV1_ALERT_ACCESS_DENIED": "the broker denied access to our client certificate",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the broker requires a client certificate "
    "(uplink.mqtt.tls.cert_file and key_file)",
    "CERTIFICATE_VERIFY_FAILED": "we do not trust the broker's certificate "
    "(uplink.mqtt.tls.ca_file)",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "the broker refused the TLS handshake (a client "
    "certificate required, or no common protocol version or cipher)",
    "WRONG_VERSION_NUMBER": "the port does not speak TLS (a plain MQTT listener?)",
}


def tls_reason(message: str | None) -> str | None:
    """``[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca (...)`` -> the alert and what
    it means, or None when ``message`` is not a TLS error."""
    m = re.search(r"\[SSL: ([A-Z0-9_]+)\] ([^(]+)", message or "")
    if m is None:
        return None
    code, text = m.group(1), m.group(2).strip()
    meaning = _TLS_REASONS.get(code)
    return f"TLS: {text}" + (f": {meaning}" if meaning else "")
#: records read from the store per pack round (several packs when over pack.max_bytes)
PACK_RECORDS = 2000

#: one MQTT message
Part = tuple[str, bytes]


def _explain(exc: MqttError) -> str:
    """An MQTT error with what a TLS alert in it means for the config."""
    why = str(exc)
    tls = tls_reason(why)
    return f"{why} ({tls})" if tls is not None else why


class MqttTransport:
    """MQTT as a transport: JSON (a message per batch), compact (packs) or Sparkplug B."""

    name = "mqtt"
    overhead = MQTT_OVERHEAD

    def __init__(self, cfg: GatewayMqtt, gateway_id: str, store_stats: StoreStats,
                 status_extra: Callable[[], dict[str, object]] | None = None,
                 schemas: Schemas | None = None,
                 point_types: dict[str, list[tuple[str | None, bool]]] | None = None,
                 sign_pack: Callable[[bytes], bytes] | None = None) -> None:
        self.cfg = cfg
        self.gateway_id = gateway_id
        self._store_stats = store_stats
        self._sign_pack = sign_pack
        self.status_extra = status_extra or (dict)
        self.topic_status = status_topic(cfg.topic_prefix, gateway_id)
        self.topic_seen = f"{cfg.topic_prefix}/{gateway_id}/seen"
        self.topic_pack = pack_topic(cfg.topic_prefix, gateway_id)
        #: order commands (docs/production.md): each payload is handed to
        #: ``on_command`` (set by the gateway when a machine has a production section)
        self.topic_cmd = f"{cfg.topic_prefix}/{gateway_id}/cmd/order"
        self.on_command: Callable[[bytes], None] | None = None
        self._since_ms = 0  # when the current (or last) broker session began
        self._node = 0  # index in cfg.endpoints() of the broker node used last
        self.broker = "{}:{}".format(*cfg.endpoints()[0])  # the node connected to (or last)
        self.compact = cfg.encoding == "compact"
        self.spb: SparkplugSession | None = None
        if cfg.encoding == "sparkplug":
            sp = cfg.sparkplug
            self.spb = SparkplugSession(sp.group_id, sp.node_id or gateway_id,
                                        schemas or Schemas(), point_types or {})
        self.max_inflight = cfg.max_inflight
        self.round_size = PACK_RECORDS if self.compact else cfg.max_inflight
        self.linger = cfg.pack.max_delay if self.compact else 0.0
        self.encode_spends = self.spb is not None
        self._rebirth = False
        self.status_now = asyncio.Event()

    # -- status ------------------------------------------------------------------------
    def _status(self, online: bool, reason: str | None = None, *,
                ts: int | None = None) -> bytes:
        """The status document: ``ts`` when it was made, ``since`` when this broker
        session began; offline ones say why (``stopped``, or ``connection lost`` in the
        last will, whose ``ts`` is the connect time: the will is fixed at connect)."""
        doc: dict[str, object] = {
            "v": 1, "gw": self.gateway_id, "status": "online" if online else "offline",
            "ts": int(time.time() * 1000) if ts is None else ts, "since": self._since_ms,
        }
        if reason is not None:
            doc["reason"] = reason
        if online:
            doc["version"] = __version__
            doc["interval"] = self.cfg.status_interval
            doc.update(self.status_extra())
        return dumps(doc)

    def _seen(self) -> bytes:
        """``<prefix>/<gw>/seen`` (retained): when the gateway was last seen online. The
        last will replaces the retained status at a crash; this one stays."""
        return dumps({"v": 1, "gw": self.gateway_id, "ts": int(time.time() * 1000),
                      "since": self._since_ms})

    async def publish_status(self, client: MqttClient) -> None:
        await client.publish(self.topic_status, self._status(True), qos=1, retain=True)
        await client.publish(self.topic_seen, self._seen(), qos=1, retain=True)

    def _will(self) -> Will:
        if self.spb is not None:  # NDEATH with this connect's bdSeq
            topic, body = self.spb.connect()
            return Will(topic, body, qos=1, retain=False)
        return Will(self.topic_status, self._status(False, "connection lost", ts=self._since_ms),
                    qos=1, retain=True)

    # -- the transport contract --------------------------------------------------------
    async def _connect(self) -> MqttClient:
        """A connection to the broker: with several nodes (``hosts``), the one used last
        first, then each other in turn (a dead node is passed over at once, not after a
        backoff); TransportError when none takes it."""
        cfg = self.cfg
        nodes = cfg.endpoints()
        errors: list[str] = []
        for k in range(len(nodes)):
            i = (self._node + k) % len(nodes)
            host, port = nodes[i]
            try:
                client = await MqttClient.open(
                    host, port, client_id=cfg.client_id or f"edgegw-{self.gateway_id}",
                    keepalive=cfg.keepalive, will=self._will(), username=cfg.username,
                    password=cfg.password(),
                    tls=tls_context(cfg.tls) if cfg.tls is not None else None, within=10.0)
            except MqttError as exc:
                if len(nodes) == 1:
                    raise TransportError(_explain(exc)) from exc
                errors.append(_explain(exc))
                continue
            if i != self._node:
                log.warning("mqtt: failed over to broker node %s:%d (%d of %d)", host, port,
                            i + 1, len(nodes))
            self._node = i
            self.broker = f"{host}:{port}"
            return client
        raise TransportError(f"no broker node takes the connection: {'; '.join(errors)}")

    async def open(self) -> MqttSession:
        cfg = self.cfg
        self._since_ms = int(time.time() * 1000)
        client = await self._connect()
        session = MqttSession(self, client)
        log.info("mqtt: connected to %s", self.broker)
        try:
            await self.publish_status(client)
            if self.spb is not None:
                topic, body = self.spb.nbirth()
                await client.publish(topic, body, qos=cfg.qos)
                await client.subscribe(self.spb.topic("NCMD"), qos=1)
            # QoS 0: the session is clean, so a command sent while the link is down is
            # lost at any QoS; and a broker cluster keeps a QoS 1 subscription in a
            # durable queue on one node (RabbitMQ 3.10), which, when that node dies,
            # refuses the session on every other node (found by the cluster e2e test)
            elif self.on_command is not None and \
                    await client.subscribe(self.topic_cmd, qos=0) >= 0x80:
                log.warning("mqtt: the broker refused the subscription to %s: order "
                            "commands over MQTT are not received (check its ACL)",
                            self.topic_cmd)
        except MqttError as exc:
            await session.close(clean=False)
            raise TransportError(_explain(exc)) from exc
        return session

    def group(self, entries: list[Entry]) -> list[list[Entry]]:
        """One message per batch (JSON, Sparkplug), or packs up to ``pack.max_bytes``
        (compact)."""
        if not self.compact:
            return [[e] for e in entries]
        limit = self.cfg.pack.max_bytes
        out: list[list[Entry]] = [[]]
        size = 0
        for e in entries:
            if out[-1] and size + len(e.payload) > limit:
                out.append([])
                size = 0
            out[-1].append(e)
            size += len(e.payload)
        return out if out[0] else []

    def encode(self, msg: list[Entry], backlog: bool, poor: bool) -> list[Part]:
        """The MQTT messages for one group of entries, in order (Sparkplug: a DBIRTH may
        come first, an offline device becomes a DDEATH, or nothing at all)."""
        if self.spb is not None:
            e = msg[0]
            try:
                return self.spb.record(e.payload, self.gateway_id, backlog)
            except CompactError as exc:
                log.error("sparkplug: batch %d cannot be sent (%s); dropped", e.seq, exc)
                st = self._store_stats
                st.dropped += 1
                st.dropped_by["unsendable"] = st.dropped_by.get("unsendable", 0) + 1
                return []
        if not self.compact:
            return [(msg[0].topic, msg[0].payload)]
        level = self.cfg.radio.compression if poor else self.cfg.pack.compression
        pack = encode_pack([e.payload for e in msg], level)
        return [(self.topic_pack, pack if self._sign_pack is None else self._sign_pack(pack))]

    def size(self, part: Part) -> int:
        return len(part[0]) + len(part[1])

    def extras(self) -> list[Part]:
        if not self._rebirth or self.spb is None:
            return []
        self._rebirth = False
        return self.spb.rebirth()

    def ask_rebirth(self) -> None:
        self._rebirth = True


class MqttSession:
    """One broker connection."""

    def __init__(self, transport: MqttTransport, client: MqttClient) -> None:
        self.t = transport
        self.client = client
        self._qos = transport.cfg.qos

    async def send(self, part: Part) -> int:
        try:
            await self.client.publish(part[0], part[1], qos=self._qos)
        except MqttError as exc:
            raise TransportError(_explain(exc)) from exc
        return 0

    def start(self, part: Part, done: Done) -> bool:
        """Publish without waiting: ``done`` is called from the PUBACK (the error when
        the connection fails first; :meth:`background` then raises it)."""
        self.client.publish_nowait(part[0], part[1], self._qos, done)
        return True

    async def background(self, wake: Callable[[], None]) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._watch(), name="mqtt-keepalive")
            tg.create_task(self._status_loop(), name="mqtt-status")
            if self.t.spb is not None:
                tg.create_task(self._commands(wake), name="sparkplug-ncmd")
            elif self.t.on_command is not None:
                tg.create_task(self._orders(self.t.on_command), name="mqtt-order-commands")

    async def _orders(self, handle: Callable[[bytes], None]) -> None:
        """Order commands on ``<prefix>/<gateway>/cmd/order``, handed on as they come."""
        while True:
            m = await self.client.messages.get()
            if m.topic == self.t.topic_cmd:
                handle(m.payload)

    async def _watch(self) -> None:
        try:
            await self.client.watch()
        except MqttError as exc:
            raise TransportError(_explain(exc)) from exc

    async def _status_loop(self) -> None:
        now = self.t.status_now
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(now.wait(), self.t.cfg.status_interval)
            now.clear()
            try:
                await self.t.publish_status(self.client)
            except MqttError as exc:
                raise TransportError(_explain(exc)) from exc

    async def _commands(self, wake: Callable[[], None]) -> None:
        """Sparkplug NCMD: ``Node Control/Rebirth`` = true asks for every birth again."""
        while True:
            m = await self.client.messages.get()
            try:
                metrics = read_metrics(m.payload)
            except ValueError as exc:
                log.warning("sparkplug: unreadable NCMD on %s: %s", m.topic, exc)
                continue
            for mt in metrics:
                if mt.get(1) == REBIRTH.encode() and mt.get(14) == 1:
                    log.info("sparkplug: rebirth requested")
                    self.t.ask_rebirth()
                    wake()

    async def close(self, clean: bool) -> None:
        t, client = self.t, self.client
        if clean:  # stopped: say so (the will is for a lost connection)
            with contextlib.suppress(MqttError):
                await client.publish(t.topic_seen, t._seen(), qos=1, retain=True, within=2)
                await client.publish(t.topic_status, t._status(False, "stopped"), qos=1,
                                     retain=True, within=2)
            await client.disconnect()
        else:
            client.abort()


class MqttUplink(Engine[Part]):
    """The MQTT uplink: the delivery engine over :class:`MqttTransport`, with the policy
    from ``uplink.mqtt`` (reconnect backoff, budget, radio, slow publishes)."""

    def __init__(self, cfg: GatewayMqtt, gateway_id: str, store: Store, stats: GatewayStats,
                 status_extra: Callable[[], dict[str, object]] | None = None,
                 schemas: Schemas | None = None,
                 point_types: dict[str, list[tuple[str | None, bool]]] | None = None,
                 sign_pack: Callable[[bytes], bytes] | None = None) -> None:
        self.cfg = cfg
        self.mqtt = MqttTransport(cfg, gateway_id, store.stats, status_extra, schemas,
                                  point_types, sign_pack)
        self.spb = self.mqtt.spb
        rp = cfg.radio
        super().__init__(self.mqtt, store, stats, Policy.of(
            cfg.reconnect, cfg.budget,
            link=LinkQuality(slow=cfg.slow_publish),
            radio=RadioState(rp.poor_rsrp_dbm, rp.poor_sinr_db, rp.factor, rp.compression,
                             rp.falling_db, rp.falling_window),
            defer_bulk=rp.defer_bulk))

    def refresh_status(self) -> None:
        """Publish the status now (something in it changed), not at the next interval."""
        self.mqtt.status_now.set()
