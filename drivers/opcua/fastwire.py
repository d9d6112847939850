"""The two services on the hot path, encoded and decoded with ``struct``: Read (polling)
and Publish (subscriptions). OPC UA Part 6 (binary encoding) and Part 4 (the services'
parameters), as asyncua implements them.

Measured (bench/README.md, issue 20): with asyncua's generic, reflective codec a poll of
500 nodes spent about a quarter of its CPU encoding the same ReadRequest again (a
ReadValueId and a NodeId object per node) and two fifths decoding the ReadResponse (a
DataValue, a Variant, a StatusCode and a datetime per value); a subscription's
PublishRequest/PublishResponse round cost about 0.7 ms of the client's CPU whatever the
number of values in it. Here:

* a request's parameters are encoded once (:func:`read_body`) and sent as they are,
  through asyncua's own channel (its secure channel, chunking, request ids and request
  header stay asyncua's): :class:`Precoded` is a request whose body asyncua's encoder
  copies as bytes (``EdgegwRawBody`` in its ``Primitives`` table, as fastdecode.py
  registers a decoder);
* the common shape of the answers (scalar built-in values, no diagnostics) is decoded in
  one pass into plain tuples; any other shape (arrays, structures, diagnostic infos, an
  unexpected field) is handed to asyncua's decoder, so nothing is ever lost.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from struct import error as struct_error
from struct import unpack_from
from typing import Any

from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua import ua_binary

from drivers.opcua import fastdecode
from drivers.opcua.fastdecode import Unhandled, Value

#: the binary encoding ids (four-byte NodeIds in namespace 0) of the messages handled here
READ_RESPONSE = ua.ObjectIds.ReadResponse_Encoding_DefaultBinary
PUBLISH_RESPONSE = ua.ObjectIds.PublishResponse_Encoding_DefaultBinary
DATA_CHANGE = ua.ObjectIds.DataChangeNotification_Encoding_DefaultBinary


class EdgegwRawBody(bytes):
    """Bytes asyncua's encoder writes as they are (a precoded body)."""


class _RawPacker:
    @staticmethod
    def pack(b: bytes) -> bytes:
        return b


ua_binary.Primitives.EdgegwRawBody = _RawPacker()


class EdgegwFastHeader:
    """A RequestHeader as asyncua's client fills it in (token, handle, timeout hint),
    encoded with ``struct`` (measured: asyncua's reflective encoder made this header,
    with a datetime and a NodeId object per request, 6 % of a subscribing gateway's CPU).
    No diagnostics asked, no audit entry, no additional header, as asyncua sends."""

    __slots__ = ("AuthenticationToken", "RequestHandle", "TimeoutHint")

    def __init__(self) -> None:
        self.AuthenticationToken: ua.NodeId = ua.NodeId()
        self.RequestHandle = 0
        self.TimeoutHint = 0


_EPOCH_OFFSET = 116_444_736_000_000_000  # 1601-01-01 to 1970-01-01, in 100 ns
_TAIL = struct.Struct("<qIIiI")


#: each session's token, encoded once: id -> (token, its bytes)
_tokens: dict[int, tuple[Any, bytes]] = {}


def header_bytes(token: ua.NodeId, handle: int, timeout_ms: int) -> bytes:
    """A RequestHeader: the session's token, now, the handle, no diagnostics, no audit
    entry, the timeout hint, no additional header."""
    hit = _tokens.get(id(token))
    if hit is None or hit[0] is not token:
        if len(_tokens) > 1024:
            _tokens.clear()
        hit = _tokens[id(token)] = (token, ua_binary.nodeid_to_binary(token))
    now = time.time_ns() // 100 + _EPOCH_OFFSET
    return hit[1] + _TAIL.pack(now, handle, 0, -1, timeout_ms) \
        + b"\x00\x00\x00"  # AdditionalHeader: null NodeId, no body


class _HeaderPacker:
    @staticmethod
    def pack(h: EdgegwFastHeader) -> bytes:
        return header_bytes(h.AuthenticationToken, h.RequestHandle, h.TimeoutHint)


ua_binary.Primitives.EdgegwFastHeader = _HeaderPacker()


@dataclass(slots=True)
class Request:
    """A request whose parameters are already encoded; asyncua fills in the request
    header and frames it as it frames its own requests."""

    TypeId: EdgegwRawBody
    RequestHeader: EdgegwFastHeader
    Body: EdgegwRawBody


def request(encoding_id: int, body: bytes) -> Request:
    """A request of the service whose binary encoding id is ``encoding_id``."""
    return Request(EdgegwRawBody(struct.pack("<BBH", 1, 0, encoding_id)), EdgegwFastHeader(),
                   EdgegwRawBody(body))


def read_body(nodes: list[ua.ReadValueId]) -> bytes:
    """ReadParameters (MaxAge 0, source timestamps) for ``nodes``, encoded once."""
    params = ua.ReadParameters()
    params.MaxAge = 0
    params.TimestampsToReturn = ua.TimestampsToReturn.Source
    params.NodesToRead = nodes
    return bytes(ua_binary.struct_to_binary(params))


def publish_body(acks: list[tuple[int, int]]) -> bytes:
    """PublishRequest's parameters: the (subscription id, sequence number) to acknowledge."""
    return struct.pack(f"<i{2 * len(acks)}I", len(acks), *(x for a in acks for x in a))


def _header(data: bytes, encoding_id: int) -> tuple[int, int]:
    """Check the TypeId, skip the ResponseHeader; (ServiceResult, position after it)."""
    if data[0] != 1 or data[1] != 0 or unpack_from("<H", data, 2)[0] != encoding_id:
        raise Unhandled
    # Timestamp, RequestHandle, ServiceResult, ServiceDiagnostics (mask 0: none),
    # StringTable (-1 or 0 strings), AdditionalHeader (null NodeId, no body)
    service_result, diag, strings = unpack_from("<IBi", data, 16)
    if diag or strings > 0 or data[25:28] != b"\x00\x00\x00":
        raise Unhandled
    return service_result, 28


def _end(data: bytes, pos: int) -> None:
    """DiagnosticInfos (none), then nothing."""
    (n,) = unpack_from("<i", data, pos)
    if n > 0 or pos + 4 != len(data):
        raise Unhandled


def decode_read(data: bytes) -> tuple[int, list[Value] | fastdecode.Columns] | None:
    """A ReadResponse: (ServiceResult, the values read: as columns when they all have
    one shape, else one tuple per node), or None when it has a shape this fast path does
    not handle."""
    try:
        result, pos = _header(data, READ_RESPONSE)
        (n,) = unpack_from("<i", data, pos)
        pos += 4
        run = fastdecode.uniform(data, pos, n, False)
        if run is not None:
            columns, pos = run
            _end(data, pos)
            return result, columns
        out: list[Value] = []
        append = out.append
        for _ in range(max(n, 0)):
            dv, pos = fastdecode.data_value(data, pos)
            append(dv)
        _end(data, pos)
    except (Unhandled, IndexError, UnicodeDecodeError, ValueError, struct_error):
        return None
    return result, out


@dataclass(slots=True)
class Published:
    """A PublishResponse: what the driver needs of it."""

    service_result: int
    subscription: int
    sequence: int
    #: DataChangeNotifications (fastdecode.FastDataChange or asyncua's), status changes
    notifications: list[Any]


def decode_publish(data: bytes) -> Published | None:
    """A PublishResponse, or None when it has a shape this fast path does not handle
    (each notification in it is decoded by fastdecode, else by asyncua)."""
    try:
        result, pos = _header(data, PUBLISH_RESPONSE)
        if result & 0x80000000:
            return Published(result, 0, 0, [])
        sub, n = unpack_from("<Ii", data, pos)
        pos += 8 + 4 * max(n, 0)  # AvailableSequenceNumbers
        pos += 1  # MoreNotifications
        seq, _, n = unpack_from("<Iqi", data, pos)
        pos += 16
        notes: list[Any] = []
        for _ in range(max(n, 0)):
            if data[pos] != 1 or data[pos + 1] != 0:
                raise Unhandled
            type_id, enc, size = unpack_from("<HBi", data, pos + 2)
            pos += 9
            if enc != 1:
                raise Unhandled
            body = data[pos : pos + size]
            pos += size
            fast = fastdecode.decode(body) if type_id == DATA_CHANGE else None
            notes.append(fast if fast is not None else _extension(type_id, body))
        (n,) = unpack_from("<i", data, pos)  # Results
        pos += 4 + 4 * max(n, 0)
        _end(data, pos)
    except (Unhandled, IndexError, UnicodeDecodeError, ValueError, struct_error):
        return None
    return Published(result, sub, seq, notes)


def _extension(type_id: int, body: bytes) -> Any:
    cls = ua.extension_objects_by_typeid.get(ua.FourByteNodeId(type_id))
    if cls is None:
        raise Unhandled
    if cls is fastdecode.EdgegwDataChangeNotification:
        cls = ua.DataChangeNotification
    return ua_binary.struct_from_binary(cls, Buffer(body))


def published_by_asyncua(data: bytes) -> Published:
    """The same, by asyncua's decoder (any shape)."""
    resp = ua_binary.struct_from_binary(ua.PublishResponse, Buffer(data))
    p = resp.Parameters
    msg = p.NotificationMessage
    return Published(resp.ResponseHeader.ServiceResult.value, p.SubscriptionId,
                     msg.SequenceNumber, list(msg.NotificationData or []))
