"""The gateway's MQTT 3.1.1 client: one connection, publish with a callback per PUBACK.

Why not paho (through aiomqtt) on this path, measured (bench/README.md, issue 20): paho
is written for its own select loop; driven from asyncio, each QoS 1 publish cost a write
to paho's wake-up socketpair, a thread-safe call (a write to the event loop's self-pipe),
an ``add_writer``/``remove_writer`` pair and the send, then three ``recv`` calls for the
4-byte PUBACK (paho reads a packet's header byte by byte), and aiomqtt awaits each
PUBACK with ``asyncio.wait_for`` (a task and a timer per message). Here a publish is
bytes appended to a buffer that is written once per event-loop turn, and the PUBACKs of a
read are parsed from it in one pass, each calling its sender's callback directly.

It speaks exactly what the uplink needs of MQTT 3.1.1 (OASIS standard, section numbers
below): CONNECT with will, user name and password, keepalive and a clean session;
PUBLISH at QoS 0 and 1 (retained or not); SUBSCRIBE at QoS 1 and incoming PUBLISHes
(Sparkplug commands); PINGREQ; DISCONNECT. Brokers that speak only 3.1.1 (RabbitMQ, NATS,
aedes, amqtt) and 5.0 brokers alike accept it. The backend's ingest, which needs MQTT 5
(shared subscriptions, flow control), keeps aiomqtt.

A connection that fails says why in :class:`MqttError`: the TLS alert, the CONNACK's
refusal, the broker that stopped answering pings or acknowledgements.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from gateway.errors import UplinkError

#: called once per QoS 1 publish: None when the broker acknowledged it, else the error
#: that ended the connection first
Done = Callable[[BaseException | None], None]

CONNECT, CONNACK, PUBLISH, PUBACK = 0x10, 0x20, 0x30, 0x40
SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT = 0x82, 0x90, 0xC0, 0xD0, 0xE0
#: CONNACK return codes (3.2.2.3)
REFUSALS = {
    1: "unacceptable protocol version", 2: "client identifier rejected",
    3: "server unavailable", 4: "bad user name or password", 5: "not authorised",
}
_PINGREQ = bytes((PINGREQ, 0))
_DISCONNECT = bytes((DISCONNECT, 0))
_H = struct.Struct(">H")


class MqttError(UplinkError):
    """The connection failed or was refused; the message says why."""


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


@dataclass(frozen=True, slots=True)
class Message:
    """A PUBLISH the broker sent us (a subscription's)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


def remaining_length(n: int) -> bytes:
    """The variable-length encoding of a packet's remaining length (2.2.3)."""
    if n < 128:
        return bytes((n,))
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | 0x80 if n else digit)
        if not n:
            return bytes(out)


def _string(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    if len(b) > 0xFFFF:
        raise ValueError("an MQTT string holds at most 65535 bytes")
    return _H.pack(len(b)) + b


def connect_packet(client_id: str, keepalive: int, clean_session: bool = True,
                   will: Will | None = None, username: str | None = None,
                   password: str | None = None) -> bytes:
    """CONNECT (3.1): protocol level 4 (3.1.1)."""
    flags = 0x02 if clean_session else 0
    payload = _string(client_id)
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
        payload += _string(will.topic) + _string(will.payload)
    if username is not None:
        flags |= 0x80
        payload += _string(username)
        if password is not None:
            flags |= 0x40
            payload += _string(password)
    body = _string("MQTT") + bytes((4, flags)) + _H.pack(keepalive) + payload
    return bytes((CONNECT,)) + remaining_length(len(body)) + body


def publish_packet(topic: bytes, payload: bytes, qos: int, retain: bool, pid: int) -> bytes:
    """PUBLISH (3.3); ``topic`` already in its length-prefixed form."""
    head = PUBLISH | (qos << 1) | (1 if retain else 0)
    if qos:
        n = len(topic) + 2 + len(payload)
        return b"".join((bytes((head,)), remaining_length(n), topic, _H.pack(pid), payload))
    n = len(topic) + len(payload)
    return b"".join((bytes((head,)), remaining_length(n), topic, payload))


class MqttClient(asyncio.Protocol):
    """One MQTT connection. :meth:`open` connects and waits for the CONNACK; then
    :meth:`publish_nowait` (a callback per PUBACK) or :meth:`publish` (awaits it);
    :meth:`watch` keeps the connection alive and raises when it fails; :meth:`close`."""

    def __init__(self, keepalive: int, ack_timeout: float = 10.0) -> None:
        self.keepalive = keepalive
        #: a publish not acknowledged for this long (while nothing else is) ends the
        #: connection: the broker is gone although the socket is not
        self.ack_timeout = ack_timeout
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._out: list[bytes] = []
        self._inflight: dict[int, Done] = {}
        self._pid = 0
        self._connack: asyncio.Future[int] = self._loop.create_future()
        self._subacks: dict[int, asyncio.Future[int]] = {}
        #: set (with the error) when the connection is gone
        self.closed: asyncio.Future[None] = self._loop.create_future()
        self._error: MqttError | None = None
        self._heard = time.monotonic()  # last packet from the broker
        self._acked = self._heard  # last PUBACK (or the first publish since an idle time)
        self._topics: dict[str, bytes] = {}
        self.messages: asyncio.Queue[Message] = asyncio.Queue(maxsize=1000)

    # -- connecting ----------------------------------------------------------------------
    @classmethod
    async def open(cls, host: str, port: int, *, client_id: str, keepalive: int = 30,
                   clean_session: bool = True, will: Will | None = None,
                   username: str | None = None, password: str | None = None,
                   tls: ssl.SSLContext | None = None, within: float = 10.0) -> MqttClient:
        """Connect and wait for the broker's CONNACK (at most ``within`` seconds, also the
        publishes' ack timeout); MqttError says why it failed."""
        timeout = within
        client = cls(keepalive, ack_timeout=timeout)
        loop = client._loop
        try:
            async with asyncio.timeout(timeout):
                await loop.create_connection(
                    lambda: client, host, port, ssl=tls,
                    server_hostname=host if tls is not None else None)
                client._write(connect_packet(client_id, keepalive, clean_session, will,
                                             username, password))
                code = await asyncio.shield(client._connack)
        except TimeoutError:
            client.abort()
            raise client._error or MqttError(
                f"no CONNACK from {host}:{port} within {timeout:g} s") from None
        except MqttError:
            client.abort()
            raise
        except (OSError, ssl.SSLError) as exc:
            client.abort()
            raise MqttError(f"cannot connect to {host}:{port}: {exc}") from exc
        if code != 0:
            client.abort()
            raise MqttError(f"the broker refused the connection: {code} "
                            f"({REFUSALS.get(code, 'unknown reason')})")
        return client

    # -- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # (uvloop's is not a subclass)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(MqttError(f"connection lost: {exc}" if exc else
                             "the broker closed the connection"))

    def data_received(self, data: bytes) -> None:
        self._heard = now = time.monotonic()
        buf = self._buf
        buf += data
        pos, end = 0, len(buf)
        inflight = self._inflight
        try:  # (what was parsed leaves the buffer even if a callback raised)
            while end - pos >= 2:
                head = buf[pos]
                # the common case first: a PUBACK (4 bytes) or PINGRESP (2 bytes)
                if head == PUBACK and buf[pos + 1] == 2:
                    if end - pos < 4:
                        break
                    done = inflight.pop(buf[pos + 2] << 8 | buf[pos + 3], None)
                    pos += 4
                    self._acked = now
                    if done is not None:
                        done(None)
                    continue
                n, size = _length(buf, pos + 1, end)
                if n < 0:
                    break  # the length is not all here yet
                start = pos + 1 + size
                if end - start < n:
                    break
                body = bytes(buf[start:start + n])
                pos = start + n
                self._packet(head, body)
        except MqttError as exc:
            self._fail(exc)
            self.abort()
        finally:
            del buf[:pos]

    def _packet(self, head: int, body: bytes) -> None:
        kind = head & 0xF0
        if kind == CONNACK and len(body) == 2:
            if not self._connack.done():
                self._connack.set_result(body[1])
        elif kind == PUBACK and len(body) == 2:  # (a PUBACK with a longer length is not)
            done = self._inflight.pop(_H.unpack(body)[0], None)
            self._acked = time.monotonic()
            if done is not None:
                done(None)
        elif kind == PINGRESP:
            pass
        elif kind == SUBACK and len(body) >= 3:
            fut = self._subacks.pop(_H.unpack_from(body)[0], None)
            if fut is not None and not fut.done():
                fut.set_result(body[2])
        elif kind == PUBLISH:
            self._incoming(head, body)
        else:
            raise MqttError(f"unexpected packet from the broker: type {head >> 4}, "
                            f"{len(body)} bytes")

    def _incoming(self, head: int, body: bytes) -> None:
        qos = (head >> 1) & 3
        if len(body) < 2:
            raise MqttError("a PUBLISH from the broker too short for its topic")
        tlen = _H.unpack_from(body)[0]
        pos = 2 + tlen
        if qos:
            if len(body) < pos + 2:
                raise MqttError("a PUBLISH from the broker too short for its packet id")
            pid = _H.unpack_from(body, pos)[0]
            pos += 2
            self._write(bytes((PUBACK, 2)) + _H.pack(pid))
        try:
            topic = body[2:2 + tlen].decode()
        except UnicodeDecodeError:
            raise MqttError("a PUBLISH from the broker with a topic that is not UTF-8") \
                from None
        msg = Message(topic, body[pos:], qos, bool(head & 1))
        try:
            self.messages.put_nowait(msg)
        except asyncio.QueueFull:  # nobody reads them: the oldest goes
            self.messages.get_nowait()
            self.messages.put_nowait(msg)

    # -- sending -------------------------------------------------------------------------
    def _write(self, packet: bytes) -> None:
        """Queue a packet; everything queued in one event-loop turn goes in one write."""
        if not self._out:
            self._loop.call_soon(self._flush)
        self._out.append(packet)

    def _flush(self) -> None:
        out, self._out = self._out, []
        t = self._transport
        if t is not None and not t.is_closing():
            t.write(out[0] if len(out) == 1 else b"".join(out))

    def _next_pid(self) -> int:
        pid = self._pid
        inflight = self._inflight
        for _ in range(0xFFFF):
            pid = pid % 0xFFFF + 1
            if pid not in inflight:
                self._pid = pid
                return pid
        raise MqttError("65535 publishes await their PUBACK")

    def _topic(self, topic: str) -> bytes:
        t = self._topics.get(topic)
        if t is None:
            if len(self._topics) > 4096:
                self._topics.clear()
            t = self._topics[topic] = _string(topic)
        return t

    def publish_nowait(self, topic: str, payload: bytes, qos: int, done: Done,
                       retain: bool = False) -> None:
        """Send one PUBLISH; ``done(None)`` once the broker acknowledged it (at once for
        QoS 0, which has no acknowledgement), ``done(error)`` when the connection fails
        first."""
        if self._error is not None:
            done(self._error)
            return
        if qos:
            pid = self._next_pid()
            if not self._inflight:
                self._acked = time.monotonic()  # the ack timeout runs from now
            self._inflight[pid] = done
        else:
            pid = 0
        self._write(publish_packet(self._topic(topic), payload, qos, retain, pid))
        if not qos:
            done(None)

    async def publish(self, topic: str, payload: bytes, qos: int = 1,
                      retain: bool = False, within: float | None = None) -> None:
        """Send one PUBLISH and wait for its PUBACK (QoS 1), at most ``within`` seconds
        (default: the ack timeout)."""
        fut: asyncio.Future[None] = self._loop.create_future()

        def done(exc: BaseException | None) -> None:
            if not fut.done():
                if exc is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(exc)

        self.publish_nowait(topic, payload, qos, done, retain)
        try:
            async with asyncio.timeout(within or self.ack_timeout):
                await fut
        except TimeoutError:
            raise MqttError(f"no PUBACK within {within or self.ack_timeout:g} s") from None

    async def subscribe(self, topic: str, qos: int = 1) -> int:
        """SUBSCRIBE to one filter; the granted QoS (0x80: refused)."""
        pid = self._next_pid()
        self._inflight[pid] = _ignore  # (reserve the id)
        fut: asyncio.Future[int] = self._loop.create_future()
        self._subacks[pid] = fut
        body = _H.pack(pid) + _string(topic) + bytes((qos,))
        self._write(bytes((SUBSCRIBE,)) + remaining_length(len(body)) + body)
        if self._error is not None:
            raise self._error
        try:
            async with asyncio.timeout(self.ack_timeout):
                return await fut  # failed by _fail() when the connection goes
        except TimeoutError:
            raise MqttError(f"no SUBACK within {self.ack_timeout:g} s") from None
        finally:
            self._inflight.pop(pid, None)
            self._subacks.pop(pid, None)

    # -- staying alive -------------------------------------------------------------------
    async def watch(self) -> None:
        """Ping every keepalive, and raise MqttError when the connection fails: lost, no
        answer to a ping within the keepalive, or publishes unacknowledged for
        ``ack_timeout`` while the broker acknowledges nothing."""
        tick = min(float(self.keepalive), self.ack_timeout) / 2
        last_ping = time.monotonic()
        while True:
            done, _ = await asyncio.wait([self.closed], timeout=tick)
            if done:
                raise self._error or MqttError("connection lost")
            now = time.monotonic()
            if self._inflight and now - self._acked > self.ack_timeout:
                self._fail(MqttError(f"no PUBACK for {now - self._acked:.0f} s "
                                     f"({len(self._inflight)} publish(es) waiting)"))
                self.abort()
                continue
            if now - self._heard > 1.5 * self.keepalive:
                self._fail(MqttError(f"the broker did not answer for "
                                     f"{now - self._heard:.0f} s (keepalive "
                                     f"{self.keepalive} s)"))
                self.abort()
                continue
            if now - last_ping >= 0.75 * self.keepalive:
                last_ping = now
                self._write(_PINGREQ)

    # -- ending --------------------------------------------------------------------------
    def _fail(self, exc: MqttError) -> None:
        if self._error is not None:
            return
        self._error = exc
        if not self._connack.done():
            self._connack.set_exception(exc)
            self._connack.exception()  # retrieved: the opener reports it
        if not self.closed.done():
            self.closed.set_result(None)
        inflight, self._inflight = self._inflight, {}
        for done in inflight.values():
            done(exc)
        for fut in self._subacks.values():
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()
        self._subacks.clear()

    async def disconnect(self, within: float = 2.0) -> None:
        """A clean DISCONNECT (the broker then discards the will), then close."""
        if self._error is None and self._transport is not None:
            self._flush()
            self._transport.write(_DISCONNECT)
            self._transport.close()
            self._fail(MqttError("disconnected"))
            try:
                async with asyncio.timeout(within):
                    await self.closed
            except TimeoutError:
                pass
        self.abort()

    def abort(self) -> None:
        """Drop the connection now (the broker publishes the will)."""
        self._fail(MqttError("connection closed"))
        if self._transport is not None:
            self._transport.abort()


def _ignore(_: BaseException | None) -> None:
    return None


def _length(buf: bytearray, pos: int, end: int) -> tuple[int, int]:
    """The remaining length at ``pos`` and how many bytes encode it; (-1, 0) when it is
    not complete yet. MqttError when it is malformed (more than 4 bytes)."""
    n = mult = 0
    for i in range(4):
        if pos + i >= end:
            return -1, 0
        b = buf[pos + i]
        n += (b & 0x7F) << mult
        if not b & 0x80:
            return n, i + 1
        mult += 7
    raise MqttError("a malformed packet length from the broker")
