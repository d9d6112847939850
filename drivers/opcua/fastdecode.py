"""A fast path for decoding DataChangeNotifications, the bulk of a subscription's input.

Measured (bench/opcua_bench.py, 10 servers x 500 nodes, 100 ms): asyncua's generic,
reflective decoder took about half of the gateway's CPU in subscription mode, building a
Variant, a StatusCode and a datetime per value that the driver turns straight back into
plain numbers. This module decodes the common shape of a DataChangeNotification body
(scalar built-in values, StatusCode, source timestamp, no diagnostics) with ``struct``
into plain tuples, and hands anything else (arrays, structures, diagnostic infos,
trailing bytes) back to asyncua's decoder, so nothing is ever lost.

asyncua looks decoders up by class name in its ``Primitives`` table and by binary
encoding id in ``extension_objects_by_typeid``; :func:`install` registers this decoder
for DataChangeNotification_Encoding_DefaultBinary (811) in this process. Only the edgegw
driver consumes these notifications (it does not use asyncua's Subscription class).
"""

from __future__ import annotations

from dataclasses import dataclass
from struct import error as struct_error
from struct import unpack_from
from typing import Any

from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua import ua_binary

#: seconds from 1601-01-01 (OPC UA DateTime epoch) to 1970-01-01
_EPOCH_1601 = 11644473600
_SCALARS: dict[int, tuple[str, int]] = {
    1: ("<?", 1), 2: ("<b", 1), 3: ("<B", 1), 4: ("<h", 2), 5: ("<H", 2), 6: ("<i", 4),
    7: ("<I", 4), 8: ("<q", 8), 9: ("<Q", 8), 10: ("<f", 4), 11: ("<d", 8),
}
FLOAT = 10


@dataclass(slots=True)
class FastDataChange:
    """A decoded DataChangeNotification: ``(client handle, value, StatusCode, source
    time in epoch seconds or None, VariantType number)`` per monitored item."""

    items: list[tuple[int, Any, int, float | None, int]]


def decode(data: bytes) -> FastDataChange | None:  # noqa: C901 - the hot path: one pass over a binary notification; calls per value cost more
    """The notification, or None when it has a shape this fast path does not handle."""
    try:
        (n,) = unpack_from("<i", data, 0)
        pos = 4
        items: list[tuple[int, Any, int, float | None, int]] = []
        append = items.append
        for _ in range(n):
            handle, mask = unpack_from("<IB", data, pos)
            pos += 5
            value: Any = None
            vtype = status = 0
            ts = None
            if mask & 0x01:
                enc = data[pos]
                pos += 1
                if enc & 0xC0:
                    return None  # array or dimensions
                vtype = enc
                fmt = _SCALARS.get(vtype)
                if fmt is not None:
                    (value,) = unpack_from(fmt[0], data, pos)
                    pos += fmt[1]
                elif vtype == 12:  # String
                    (length,) = unpack_from("<i", data, pos)
                    pos += 4
                    if length >= 0:
                        value = data[pos : pos + length].decode("utf-8")
                        pos += length
                elif vtype != 0:
                    return None
            if mask & 0x02:
                (status,) = unpack_from("<I", data, pos)
                pos += 4
            if mask & 0x04:
                (t,) = unpack_from("<q", data, pos)
                pos += 8
                ts = t / 1e7 - _EPOCH_1601 if t > 0 else None
            if mask & 0x10:
                pos += 2
            if mask & 0x08:
                pos += 8
            if mask & 0x20:
                pos += 2
            if mask & 0xC0:
                return None
            append((handle, value, status, ts, vtype))
        (nd,) = unpack_from("<i", data, pos)
        pos += 4
    except (IndexError, UnicodeDecodeError, ValueError, struct_error):
        return None
    if nd > 0 or pos != len(data):
        return None
    return FastDataChange(items)


class EdgegwDataChangeNotification:
    """Registered in asyncua's tables in place of DataChangeNotification's decoder."""


class _Decoder:
    @staticmethod
    def unpack(buf: Buffer) -> Any:
        raw = buf.read(len(buf))
        fast = decode(raw)
        if fast is not None:
            return fast
        return ua_binary.struct_from_binary(ua.DataChangeNotification, Buffer(raw))


def install() -> None:
    """Use the fast path for every DataChangeNotification decoded in this process."""
    key = next(k for k, cls in ua.extension_objects_by_typeid.items()
               if cls is ua.DataChangeNotification or cls is EdgegwDataChangeNotification)
    ua_binary.Primitives.EdgegwDataChangeNotification = _Decoder()
    ua.extension_objects_by_typeid[key] = EdgegwDataChangeNotification
