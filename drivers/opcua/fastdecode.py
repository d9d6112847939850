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
from struct import Struct, calcsize, unpack_from
from struct import error as struct_error
from typing import Any

from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua import ua_binary

from gateway.errors import DataError

#: seconds from 1601-01-01 (OPC UA DateTime epoch) to 1970-01-01
EPOCH_1601 = 11644473600
#: built-in scalar VariantType numbers -> (struct format, size)
SCALARS: dict[int, tuple[str, int]] = {
    1: ("<?", 1), 2: ("<b", 1), 3: ("<B", 1), 4: ("<h", 2), 5: ("<H", 2), 6: ("<i", 4),
    7: ("<I", 4), 8: ("<q", 8), 9: ("<Q", 8), 10: ("<f", 4), 11: ("<d", 8),
}
FLOAT = 10
#: one value: (value, StatusCode, source time in epoch seconds or None, VariantType number)
Value = tuple[Any, int, float | None, int]


class Unhandled(DataError):
    """A shape the fast path does not decode: use asyncua's decoder."""


@dataclass(slots=True)
class FastDataChange:
    """A decoded DataChangeNotification: ``(client handle, value, StatusCode, source
    time in epoch seconds or None, VariantType number)`` per monitored item, or the
    items as columns when they all have one shape."""

    items: list[tuple[int, Any, int, float | None, int]]
    columns: Columns | None = None


@dataclass(slots=True)
class Columns:
    """A run of DataValues of one shape (the same encoding mask and scalar type), decoded
    column by column: what a bulk read of like nodes, or a notification of like items,
    is (one ``struct`` call for all of them)."""

    vtype: int  # the VariantType number (0: no value)
    values: list[Any]
    status: tuple[int, ...] | None  # StatusCodes (None: not encoded, all Good)
    ticks: tuple[int, ...] | None  # source times as OPC UA DateTime (None: not encoded)
    handles: tuple[int, ...] | None  # ClientHandles (monitored items only)

    def times(self, now: float) -> list[float]:
        """The source times in epoch seconds (``now`` where a value has none)."""
        ticks = self.ticks
        if ticks is None:
            return [now] * len(self.values)
        distinct = set(ticks)
        if len(distinct) * 4 > len(ticks):
            return [t / 1e7 - EPOCH_1601 if t > 0 else now for t in ticks]
        # values sampled together share their time: convert each time once
        conv = {t: t / 1e7 - EPOCH_1601 if t > 0 else now for t in distinct}
        return list(map(conv.__getitem__, ticks))


#: element formats of uniform runs, by (handle?, mask, vtype, count)
_UNIFORM: dict[tuple[bool, int, int, int], tuple[Struct, int, int]] = {}


def uniform(data: bytes, pos: int, n: int, handle: bool) -> tuple[Columns, int] | None:
    """``n`` DataValues at ``pos`` (each after a ClientHandle when ``handle``), if they all
    have the shape of the first and a fixed size: the columns and the position after
    them; None otherwise (decode value by value)."""
    if n <= 1:
        return None
    first = pos + (4 if handle else 0)
    mask = data[first]
    if mask & 0xC0 or mask & 0x30:  # picoseconds, or bits no DataValue has
        return None
    vtype = data[first + 1] if mask & 0x01 else 0
    if vtype not in SCALARS and vtype != 0:
        return None  # a string (variable size), an array, a structure
    key = (handle, mask, vtype, n)
    cached = _UNIFORM.get(key)
    if cached is None:
        elem = ("I" if handle else "") + "B"
        if mask & 0x01:
            elem += "B" + (SCALARS[vtype][0][1] if vtype else "")
        elem += ("I" if mask & 0x02 else "") + ("q" if mask & 0x04 else "") + \
            ("q" if mask & 0x08 else "")
        if pos + calcsize("<" + elem) * n > len(data):
            return None  # (a count the bytes cannot hold: garbage)
        fmt = Struct("<" + elem * n)
        if len(_UNIFORM) > 256:
            _UNIFORM.clear()
        cached = _UNIFORM[key] = (fmt, fmt.size // n, len(elem))
    fmt, size, k = cached
    end = pos + fmt.size
    off = 4 if handle else 0
    # every element has the first one's mask and variant type
    if end > len(data) or data[pos + off:end:size] != bytes((mask,)) * n or \
            (mask & 0x01 and data[pos + off + 1:end:size] != bytes((vtype,)) * n):
        return None
    flat = fmt.unpack_from(data, pos)
    i = 1 if handle else 0  # the mask's column
    col = i + 1
    values: list[Any]
    if mask & 0x01:
        col += 1  # the variant type byte
        if vtype:
            values = list(flat[col::k])
            col += 1
        else:
            values = [None] * n
    else:
        values = [None] * n
    status = ticks = None
    if mask & 0x02:
        status = flat[col::k]
        col += 1
    if mask & 0x04:
        ticks = flat[col::k]
    return Columns(vtype, values, status, ticks, flat[0::k] if handle else None), end


def data_value(data: bytes, pos: int) -> tuple[Value, int]:
    """One DataValue (Part 6, 5.2.2.17) whose value is a built-in scalar (or none), and
    the position after it; Unhandled for any other shape."""
    mask = data[pos]
    pos += 1
    value: Any = None
    vtype = status = 0
    ts = None
    if mask & 0x01:
        enc = data[pos]
        pos += 1
        if enc & 0xC0:
            raise Unhandled  # an array, or dimensions
        vtype = enc
        fmt = SCALARS.get(vtype)
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
            raise Unhandled
    if mask & 0x02:
        (status,) = unpack_from("<I", data, pos)
        pos += 4
    if mask & 0x04:
        (t,) = unpack_from("<q", data, pos)
        pos += 8
        ts = t / 1e7 - EPOCH_1601 if t > 0 else None
    if mask & 0x10:
        pos += 2
    if mask & 0x08:
        pos += 8
    if mask & 0x20:
        pos += 2
    if mask & 0xC0:
        raise Unhandled
    return (value, status, ts, vtype), pos


def decode(data: bytes) -> FastDataChange | None:
    """The notification, or None when it has a shape this fast path does not handle."""
    try:
        (n,) = unpack_from("<i", data, 0)
        pos = 4
        run = uniform(data, pos, n, True)
        if run is not None:
            columns, pos = run
            (nd,) = unpack_from("<i", data, pos)
            if nd > 0 or pos + 4 != len(data):
                return None
            return FastDataChange([], columns)
        items: list[tuple[int, Any, int, float | None, int]] = []
        append = items.append
        for _ in range(n):
            (handle,) = unpack_from("<I", data, pos)
            (value, status, ts, vtype), pos = data_value(data, pos + 4)
            append((handle, value, status, ts, vtype))
        (nd,) = unpack_from("<i", data, pos)
        pos += 4
    except (Unhandled, IndexError, UnicodeDecodeError, ValueError, struct_error):
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
