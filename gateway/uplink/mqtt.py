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
import bisect
import contextlib
import logging
import re
import ssl
import time
from collections.abc import Awaitable, Callable

import aiomqtt
import orjson

from gateway import __version__
from gateway.backoff import Backoff
from gateway.compact import CompactError, Schemas, encode_pack, pack_topic
from gateway.config import GatewayMqtt, TlsConfig
from gateway.encode import status_topic
from gateway.stats import GatewayStats
from gateway.store import Entry, Store
from gateway.uplink.link import MQTT_OVERHEAD, Budget, LinkQuality, RadioState
from gateway.uplink.sparkplug import REBIRTH, SparkplugSession, read_metrics

log = logging.getLogger("edgegw.uplink")
# aiomqtt warns about every publish beyond 10 pending; many in flight is our design
_client_log = logging.getLogger("edgegw.uplink.client")
_client_log.setLevel(logging.ERROR)


class _LastError(logging.Handler):
    """The MQTT client's last socket error (a TLS alert from the broker arrives there,
    while the connect itself only times out): said in the uplink's own warning."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.message: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.message = record.getMessage()
        tls = tls_reason(self.message)
        if tls is not None:  # at once: the connect itself only fails at its timeout
            log.warning("mqtt: the TLS session failed: %s", tls)


_client_errors = _LastError()
_client_log.addHandler(_client_errors)
_client_log.propagate = False  # said once, in the uplink's warning, with what it means

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
SENT, YIELDED, FAILED = 0, 1, 2
#: records read from the store per pack round (several packs when over pack.max_bytes)
PACK_RECORDS = 2000


class MqttUplink:
    def __init__(self, cfg: GatewayMqtt, gateway_id: str, store: Store, stats: GatewayStats,
                 status_extra: Callable[[], dict[str, object]] | None = None,
                 schemas: Schemas | None = None,
                 point_types: dict[str, list[tuple[str | None, bool]]] | None = None,
                 sign_pack: Callable[[bytes], bytes] | None = None) -> None:
        self.cfg = cfg
        self._sign_pack = sign_pack
        self.gateway_id = gateway_id
        self.store = store
        store.fast_lane = True  # the urgent lane is sent first (see _pump)
        self.stats = stats
        self.status_extra = status_extra or (dict)
        self.topic_status = status_topic(cfg.topic_prefix, gateway_id)
        self.topic_seen = f"{cfg.topic_prefix}/{gateway_id}/seen"
        self._since_ms = 0  # when the current (or last) broker session began
        self.topic_pack = pack_topic(cfg.topic_prefix, gateway_id)
        self.compact = cfg.encoding == "compact"
        self.spb: SparkplugSession | None = None
        if cfg.encoding == "sparkplug":
            sp = cfg.sparkplug
            self.spb = SparkplugSession(sp.group_id, sp.node_id or gateway_id,
                                        schemas or Schemas(), point_types or {})
        self._rebirth = False
        self._live_from = 0
        rp = cfg.radio
        self.radio = RadioState(rp.poor_rsrp_dbm, rp.poor_sinr_db, rp.factor, rp.compression,
                                rp.falling_db, rp.falling_window)
        #: the modem's latest link sample (set by the gateway when a modem is configured)
        self.radio_sample: Callable[[], object | None] | None = None
        self.link = LinkQuality(slow=cfg.slow_publish)
        b = cfg.budget
        self.budget = Budget(b.bytes_per_s, b.burst or b.bytes_per_s) if b else None
        self._backoff = Backoff(cfg.reconnect.initial, cfg.reconnect.max, cfg.reconnect.jitter)
        self._stopping = False
        self._drained = asyncio.Event()
        self._status_now = asyncio.Event()

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
        return orjson.dumps(doc)

    def _seen(self) -> bytes:
        """``<prefix>/<gw>/seen`` (retained): when the gateway was last seen online. The
        last will replaces the retained status at a crash; this one stays."""
        return orjson.dumps({"v": 1, "gw": self.gateway_id, "ts": int(time.time() * 1000),
                             "since": self._since_ms})

    async def _publish_status(self, client: aiomqtt.Client) -> None:
        await client.publish(self.topic_status, self._status(True), qos=1, retain=True)
        await client.publish(self.topic_seen, self._seen(), qos=1, retain=True)

    def _will(self) -> aiomqtt.Will:
        if self.spb is not None:  # NDEATH with this connect's bdSeq
            topic, body = self.spb.connect()
            return aiomqtt.Will(topic, body, qos=1, retain=False)
        return aiomqtt.Will(self.topic_status,
                            self._status(False, "connection lost", ts=self._since_ms),
                            qos=1, retain=True)

    def _client(self) -> aiomqtt.Client:
        cfg = self.cfg
        self._since_ms = int(time.time() * 1000)
        return aiomqtt.Client(
            cfg.host, cfg.port,
            identifier=cfg.client_id or f"edgegw-{self.gateway_id}",
            logger=_client_log,
            username=cfg.username, password=cfg.password(),
            keepalive=cfg.keepalive,
            will=self._will(),
            tls_context=tls_context(cfg.tls) if cfg.tls is not None else None,
            max_inflight_messages=cfg.max_inflight,
            clean_session=True,
            timeout=10,
        )

    # -- running -----------------------------------------------------------------------
    async def run(self) -> None:
        """Connect, publish, reconnect: forever, until :meth:`stop` has drained the store."""
        while not self._stopping:
            _client_errors.message = None
            try:
                await self._session()
            except* aiomqtt.MqttError as eg:
                delay = self._backoff.next()
                why = str(eg.exceptions[0])
                tls = tls_reason(why) or tls_reason(_client_errors.message)
                if tls is not None and tls not in why:
                    why = f"{why} ({tls})"
                elif tls is None and _client_errors.message:
                    why = f"{why} ({_client_errors.message})"
                log.warning("mqtt: %s; reconnecting in %.1f s (%d batches waiting)",
                            why, delay, self.store.stats.entries)
                await asyncio.sleep(delay)

    async def _session(self) -> None:
        async with self._client() as client:
            self.stats.mqtt_connects += 1
            self.stats.uplink_connected = True
            self._backoff.reset()
            log.info("mqtt: connected to %s:%d", self.cfg.host, self.cfg.port)
            try:
                await self._publish_status(client)
                if self.spb is not None:
                    topic, body = self.spb.nbirth()
                    await client.publish(topic, body, qos=self.cfg.qos)
                    await client.subscribe(self.spb.topic("NCMD"), qos=1)
                await self._pump(client)
            finally:
                self.stats.uplink_connected = False
            with contextlib.suppress(aiomqtt.MqttError):
                await client.publish(self.topic_seen, self._seen(), qos=1, retain=True,
                                     timeout=2)
                await client.publish(self.topic_status, self._status(False, "stopped"),
                                     qos=1, retain=True, timeout=2)

    def _messages(self, entries: list[Entry]) -> list[list[Entry]]:
        """Entries grouped into messages: one each (JSON), or packs up to
        ``pack.max_bytes`` (compact)."""
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

    def _encode(self, msg: list[Entry]) -> list[tuple[str, bytes]]:
        """The MQTT messages for one group of entries, in order (Sparkplug: a DBIRTH may
        come first, an offline device becomes a DDEATH, or nothing at all)."""
        if self.spb is not None:
            e = msg[0]
            try:
                return self.spb.record(e.payload, self.gateway_id, e.seq <= self._live_from)
            except CompactError as exc:
                log.error("sparkplug: batch %d cannot be sent (%s); dropped", e.seq, exc)
                st = self.store.stats
                st.dropped += 1
                st.dropped_by["unsendable"] = st.dropped_by.get("unsendable", 0) + 1
                return []
        if not self.compact:
            return [(msg[0].topic, msg[0].payload)]
        level = self.radio.compression if self.radio.poor else self.cfg.pack.compression
        pack = encode_pack([e.payload for e in msg], level)
        return [(self.topic_pack, pack if self._sign_pack is None else self._sign_pack(pack))]

    async def _pump(self, client: aiomqtt.Client) -> None:
        """Publish until stopping and drained; an MqttError ends the session.

        Order: the store's urgent lane (alarm and state batches) at once, then live
        entries (newer than the session's start), then bulk batches held back while the
        radio was poor, then the backlog, each in sequence order. Ordinary data waits
        for the budget (when one is set) and, compact, up to the pack delay after its
        read time for others to share its message; an urgent batch interrupts both
        waits. While the radio is poor (``radio.defer_bulk``), bulk batches are passed
        over and remembered; they stay in the store (a new session starts from the
        oldest entry anyway)."""
        sem = asyncio.Semaphore(self.cfg.max_inflight)
        qos = self.cfg.qos
        store, stats, link, budget = self.store, self.stats, self.link, self.budget
        urgent_ready = store.urgent_ready
        failed = False
        sent_urgent: set[int] = set()  # sent through the fast lane: skipped by the others
        deferred: set[int] = set()  # bulk batches passed over while the radio was poor
        defer_bulk = self.cfg.radio.defer_bulk and self.radio_sample is not None
        hold = False  # holding bulk back now

        async def send(msg: list[Entry], topic: str, payload: bytes, last: bool) -> None:
            nonlocal failed
            t0 = time.monotonic()
            try:
                await client.publish(topic, payload, qos=qos)
            except aiomqtt.MqttError:
                stats.publish_errors += 1
                link.failed()
                failed = True
                raise
            finally:
                sem.release()
            took = time.monotonic() - t0
            link.sample(took)
            stats.messages += 1
            stats.publish_seconds += took
            stats.bytes_sent += len(payload) + len(topic)
            if last:
                stats.published += len(msg)
                for e in msg:
                    await store.ack(e.seq)

        async def publish(msg: list[Entry], urgent: bool = False) -> int:
            """Start the publishes of one message: SENT; YIELDED when ordinary data gave
            way to urgent data; FAILED when a publish failed (the session is ending).
            Tasks start in creation order, so paho queues the parts in order."""
            # JSON and compact encode first and charge what goes on the wire; Sparkplug
            # estimates, since encoding it spends a seq number
            parts = self._encode(msg) if self.spb is None else None
            if budget is not None and not urgent:
                size = (sum(len(t) + len(p) for t, p in parts) if parts is not None
                        else sum(len(e.payload) for e in msg)) + MQTT_OVERHEAD
                if not await budget.take(size, urgent_ready):
                    return YIELDED
            if parts is None:
                parts = self._encode(msg)
            if not parts:
                for e in msg:
                    await store.ack(e.seq)
                return SENT
            if budget is not None and urgent:
                budget.charge(sum(len(p) + len(t) + MQTT_OVERHEAD for t, p in parts))
            for k, (topic, payload) in enumerate(parts):
                await sem.acquire()
                if failed:  # the TaskGroup is shutting down with the MqttError
                    return FAILED
                tg.create_task(send(msg, topic, payload, k == len(parts) - 1),
                               name="mqtt-publish")
            return SENT

        async def rebirth() -> int:
            assert self.spb is not None
            self._rebirth = False
            for topic, payload in self.spb.rebirth():
                await sem.acquire()
                if failed:
                    return FAILED
                tg.create_task(send([], topic, payload, False), name="mqtt-rebirth")
            return SENT

        def fresh(entries: list[Entry]) -> list[Entry]:
            if sent_urgent:
                entries = [e for e in entries if e.seq not in sent_urgent]
            if hold:
                held = [e.seq for e in entries if e.bulk]
                if held:
                    deferred.update(held)
                    entries = [e for e in entries if not e.bulk]
            elif deferred:  # a cursor sends these itself (it stopped short of them before)
                deferred.difference_update(e.seq for e in entries)
            return entries

        def passed(seq: int) -> bool:
            return seq <= live_cur if seq > live_from else seq <= back_cur

        async def drain() -> int:
            """Send the oldest held-back bulk batches (up to n) still in the store that
            the cursors have passed (one that stopped short sends the rest itself)."""
            want = [s for s in sorted(deferred) if passed(s)][:n]
            wanted = set(want)
            found: list[Entry] = []
            i = 0
            while i < len(want):
                chunk = await store.peek(n, after=want[i] - 1, before=want[-1] + 1)
                if not chunk:
                    break
                found += [e for e in chunk if e.seq in wanted]
                i = bisect.bisect_right(want, chunk[-1].seq)
            for msg in self._messages(found):
                r = await publish(msg)
                if r != SENT:
                    return r
                deferred.difference_update(e.seq for e in msg)
            deferred.difference_update(want)  # the rest is gone (store limits)
            return SENT

        n = PACK_RECORDS if self.compact else self.cfg.max_inflight
        # the fast lane is for fresh alarms: what queued while disconnected goes out with
        # the backlog, in order
        store.urgent.clear()
        live_from = self._live_from = store.last_seq
        live_cur, back_cur = live_from, 0
        backlog = store.stats.entries
        t0 = time.monotonic()
        if backlog:
            log.info("mqtt: replaying %d stored batch(es), live data first", backlog)
        async with asyncio.TaskGroup() as tg:
            status = tg.create_task(self._status_loop(client), name="mqtt-status")
            commands = (tg.create_task(self._commands(client), name="sparkplug-ncmd")
                        if self.spb is not None else None)
            while not (self._stopping and store.stats.entries == 0):
                urgent_ready.clear()
                factor = self.delay_factor()
                hold = defer_bulk and self.radio.poor and not self._stopping
                self.radio.deferred = len(deferred)
                if self._rebirth and await rebirth() == FAILED:
                    return
                if store.urgent:
                    now = [store.urgent.popleft() for _ in range(len(store.urgent))]
                    sent_urgent.update(e.seq for e in now)
                    stats.urgent += len(now)
                    for msg in self._messages(now):
                        if await publish(msg, urgent=True) == FAILED:
                            return
                live = await store.peek(n, after=live_cur)
                if self.compact and live and not self._stopping and len(live) < n:
                    delay = self.cfg.pack.max_delay * factor
                    linger = live[0].ts_ms / 1000 + delay - time.time()
                    if linger > 0:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(urgent_ready.wait(), min(linger, delay))
                        if urgent_ready.is_set():
                            continue
                        live = await store.peek(n, after=live_cur)
                back: list[Entry] = []
                if len(live) < n and back_cur < live_from:
                    back = await store.peek(n - len(live), after=back_cur,
                                            before=live_from + 1)
                    if not back:
                        back_cur = live_from
                        if backlog:
                            log.info("mqtt: backlog of %d batch(es) sent in %.1f s",
                                     backlog, time.monotonic() - t0)
                drainable = not hold and deferred and any(passed(s) for s in deferred)
                if not live and not back and not drainable:
                    with contextlib.suppress(TimeoutError):  # re-check stopping now and then
                        await asyncio.wait_for(store.wait(live_cur),
                                               0.2 if self._stopping else 1.0)
                    continue
                live_cur, r = await self._send_all(publish, fresh(live), live, live_cur)
                if r == SENT and drainable:
                    r = await drain()
                if r == SENT:
                    back_cur, r = await self._send_all(publish, fresh(back), back, back_cur)
                if r == FAILED:
                    return
                if sent_urgent:  # forget what both cursors have passed
                    sent_urgent = {s for s in sent_urgent
                                   if s > live_cur or back_cur < s <= live_from}
            status.cancel()
            if commands is not None:
                commands.cancel()

    async def _commands(self, client: aiomqtt.Client) -> None:
        """Sparkplug NCMD: ``Node Control/Rebirth`` = true asks for every birth again."""
        async for m in client.messages:
            body = m.payload if isinstance(m.payload, bytes) else b""
            try:
                metrics = read_metrics(body)
            except ValueError as exc:
                log.warning("sparkplug: unreadable NCMD on %s: %s", m.topic, exc)
                continue
            for mt in metrics:
                if mt.get(1) == REBIRTH.encode() and mt.get(14) == 1:
                    log.info("sparkplug: rebirth requested")
                    self._rebirth = True
                    self.store.urgent_ready.set()

    def delay_factor(self) -> float:
        """Pack delay multiplier: the larger of what the PUBACK times and the radio say."""
        r = self.radio
        if self.radio_sample is not None:
            was = r.poor
            if r.judge(self.radio_sample()) != was:
                log.warning("uplink: radio %s%s", "poor: " if r.poor else "good again",
                            r.reason if r.poor else "; packs back to normal")
        return max(self.link.factor, r.factor if r.poor else 1.0)

    async def _send_all(self, publish: Callable[[list[Entry]], Awaitable[int]],
                        entries: list[Entry], seen: list[Entry],
                        cursor: int) -> tuple[int, int]:
        """Publish ``entries`` (``seen`` without the ones the fast lane sent) in order;
        the new cursor and SENT, or the cursor where it stopped and why."""
        for msg in self._messages(entries):
            r = await publish(msg)
            if r != SENT:
                return cursor, r
            cursor = msg[-1].seq
        return (seen[-1].seq if seen else cursor), SENT

    async def _status_loop(self, client: aiomqtt.Client) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._status_now.wait(), self.cfg.status_interval)
            self._status_now.clear()
            await self._publish_status(client)

    def refresh_status(self) -> None:
        """Publish the status now (something in it changed), not at the next interval."""
        self._status_now.set()

    def stop(self) -> None:
        """Ask :meth:`run` to publish what is queued, then the offline status, and return.
        The caller bounds the wait (a dead broker never drains)."""
        self._stopping = True


def tls_context(tls: TlsConfig) -> ssl.SSLContext:
    """The TLS context of an MQTT connection (the gateway's uplink, the ingest)."""
    ctx = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    if tls.cert_file and tls.key_file:
        ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
