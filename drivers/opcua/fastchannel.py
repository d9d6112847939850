"""The hot path's requests framed and answered without asyncua's chunk objects, on a
secure channel without security (SecurityPolicy None).

Measured (bench/README.md, issue 20): with the request and response bodies already
coded by ``struct`` (fastwire.py), a subscription's notification still cost about a
third of the gateway's CPU in asyncua's channel: a MessageChunk, a SequenceHeader and a
SymmetricAlgorithmHeader built and coded reflectively for each request, the answer's
headers decoded the same way into a Message, a Buffer copy, a ``wait_for`` and a second
decode of its TypeId (the ServiceFault check).

Without security a message chunk is 24 bytes of header (OPC UA Part 6, 6.7.2: "MSG",
"F", size, SecureChannelId, TokenId, SequenceNumber, RequestId) and the body, so here:

* :meth:`FastChannel.send` frames a single-chunk request with ``struct``, taking its
  request id, request handle and sequence number from asyncua's own counters (they are
  one sequence with asyncua's requests), and waits on a future that asyncua's
  ``_callbackmap`` holds, so a lost connection fails it as it fails asyncua's;
* the protocol's ``data_received`` first looks for answers to those requests: a whole
  final chunk with the channel's id and token and the next sequence number is handed to
  its future as bytes; anything else (a partial chunk, another token, a message of
  asyncua's, an error) goes to asyncua's parser unchanged, which enforces the rules.

With a security policy, or an asyncua whose internals are not the ones this was written
against, the channel is not installed and requests go through ``send_request``.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable
from struct import unpack_from
from typing import Any

from asyncua import Client, ua
from asyncua.client.ua_client import UaClientState, UASocketProtocol
from asyncua.common.utils import Buffer
from asyncua.crypto.security_policies import SecurityPolicyNone

from drivers.opcua import fastwire
from drivers.opcua.fastwire import header_bytes

_HEAD = struct.Struct("<3sBIIIII")  # "MSG", chunk type, size, channel, token, seq, request
_HEAD_SIZE = _HEAD.size  # 24
_FINAL = ord("F")
_TYPE = struct.Struct("<BBH")
SERVICE_FAULT = ua.ObjectIds.ServiceFault_Encoding_DefaultBinary
_WRAP = (1 << 32) - 1024


class FastChannel:
    """Lean request/response framing on one asyncua protocol (one TCP connection)."""

    def __init__(self, protocol: UASocketProtocol, state: Callable[[], UaClientState]) -> None:
        self.protocol = protocol
        self.state = state
        self.conn = protocol._connection
        self.ours: set[int] = set()  # request ids sent here, not yet answered
        self.heard = -1e18  # time.monotonic() of the last answer taken here
        self._asyncua_received = protocol.data_received
        protocol.data_received = self._received
        limits = self.conn._limits
        self.max_body = limits.max_send_buffer - _HEAD_SIZE if limits.max_send_buffer else 1 << 31

    @classmethod
    def attach(cls, client: Client) -> FastChannel | None:
        """The channel of ``client``'s connection (installed once per connection), or None
        when this connection has security or asyncua's internals are not as expected."""
        protocol = client.uaclient.protocol
        if protocol is None:
            return None
        existing = getattr(protocol, "edgegw_fast", None)
        if existing is not None:
            return existing  # type: ignore[no-any-return]
        try:
            conn = protocol._connection
            usable = (isinstance(conn.security_policy, SecurityPolicyNone)
                      and isinstance(protocol._callbackmap, dict)
                      and isinstance(protocol._request_id, int)
                      and isinstance(protocol._request_handle, int)
                      and isinstance(conn._sequence_number, int)
                      and isinstance(conn._incoming_parts, list)
                      and hasattr(conn, "_peer_sequence_number"))
        except AttributeError:
            usable = False
        channel = cls(protocol, lambda: client.uaclient.state) if usable else None
        protocol.edgegw_fast = channel
        return channel

    def usable(self) -> bool:
        return self.protocol.transport is not None and self.state() is UaClientState.CONNECTED

    def send(self, encoding_id: int, body: bytes,
             timeout: float) -> tuple[int, asyncio.Future[Any]] | None:
        """Send one request (its parameters coded in ``body``): its request id and the
        future of its answer (the body from its TypeId on: bytes, or asyncua's Buffer
        when asyncua's parser took it), or None when it does not fit in one chunk (then
        send it the usual way). ``timeout`` (s) goes into the request header (0: none)."""
        p = self.protocol
        conn = self.conn
        transport = p.transport
        if transport is None:
            raise ConnectionError("not connected")
        p.revolve_security_token()
        token = conn.security_token
        p._request_handle += 1
        payload = b"".join((_TYPE.pack(1, 0, encoding_id),
                            header_bytes(p.authentication_token, p._request_handle,
                                         int(timeout * 1000)),
                            body))
        if len(payload) > self.max_body:
            p._request_handle -= 1
            return None
        seq = conn._sequence_number + 1
        if seq >= 1 << 32:
            seq = 1
        conn._sequence_number = seq
        req = p._request_id = p._request_id + 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        p._callbackmap[req] = future
        self.ours.add(req)
        transport.write(_HEAD.pack(b"MSG", _FINAL, _HEAD_SIZE + len(payload), token.ChannelId,
                                   token.TokenId, seq, req) + payload)
        return req, future

    def forget(self, req: int) -> None:
        """A request answered by asyncua's parser, timed out or cancelled."""
        self.ours.discard(req)
        self.protocol._callbackmap.pop(req, None)

    def _received(self, data: bytes) -> None:
        p = self.protocol
        if not self.ours:
            self._asyncua_received(data)
            return
        if p.receive_buffer:  # the rest of a message begun in an earlier read
            data = p.receive_buffer + data
            p.receive_buffer = None
        conn = self.conn
        pos = 0
        end = len(data)
        ours = self.ours
        callbacks = p._callbackmap
        while end - pos >= _HEAD_SIZE:
            kind, chunk, size, channel, token, seq, req = _HEAD.unpack_from(data, pos)
            if (kind != b"MSG" or chunk != _FINAL or req not in ours or end - pos < size
                    or size > conn._limits.max_recv_buffer or conn._incoming_parts):
                break
            sec = conn.security_token
            if channel != sec.ChannelId or token != sec.TokenId:
                break  # a renewed token, a wrong channel: asyncua's rules
            last = conn._peer_sequence_number
            if last is not None and seq != last + 1 and not (seq < 1024 and last >= _WRAP):
                break  # asyncua raises and closes the connection, as the spec says
            conn._peer_sequence_number = seq
            ours.discard(req)
            future = callbacks.pop(req, None)
            if future is not None and not future.done():
                future.set_result(data[pos + _HEAD_SIZE : pos + size])
            pos += size
        if pos:
            self.heard = time.monotonic()
        if pos < end:
            self._asyncua_received(data[pos:] if pos else data)


def heard_within(client: Client, seconds: float) -> bool:
    """Whether ``client``'s connection answered a request of the lean channel within the
    last ``seconds`` (it is alive: a poll's Read, a Publish's data or keep-alive)."""
    protocol = client.uaclient.protocol
    channel = getattr(protocol, "edgegw_fast", None) if protocol is not None else None
    return channel is not None and time.monotonic() - channel.heard < seconds


def fault(body: bytes) -> int | None:
    """The service result of a ServiceFault answer, or None for any other answer."""
    if len(body) >= 20 and body[0] == 1 and body[1] == 0 \
            and unpack_from("<H", body, 2)[0] == SERVICE_FAULT:
        return int(unpack_from("<I", body, 16)[0])  # after TypeId, Timestamp, RequestHandle
    return None


async def request(client: Client, encoding_id: int, body: bytes, *,
                  wait: float | None = None) -> bytes:
    """One request (``body``: its parameters, coded) on the lean channel when it can
    carry it, else through asyncua's ``send_request``. The answer's body from its TypeId;
    a ServiceFault raises its status, as ``send_request`` does. ``wait``: seconds to
    wait for the answer, also the request's timeout hint; None is the protocol's
    (asyncua's client timeout), 0 waits without limit (a Publish the server holds)."""
    protocol = client.uaclient.protocol
    if protocol is None:
        raise ConnectionError("not connected")
    if wait is None:
        wait = protocol.timeout
    channel = FastChannel.attach(client)
    sent = channel.send(encoding_id, body, wait) if channel and channel.usable() else None
    if sent is None:
        data = await protocol.send_request(fastwire.request(encoding_id, body), wait)
        return bytes(data.read(len(data)))
    assert channel is not None
    req, future = sent
    try:
        raw = await asyncio.wait_for(future, wait) if wait else await future
    finally:
        channel.forget(req)
    if isinstance(raw, Buffer):
        raw = raw.read(len(raw))
    code = fault(raw)
    if code is not None:
        raise ua.UaStatusCodeError(code)
    return bytes(raw)
