"""Sparkplug B (Eclipse Tahu, Sparkplug 3.0) as an optional northbound encoding.

``uplink.mqtt.encoding: sparkplug`` publishes on ``spBv1.0/<group>/<type>/<node>[/<device>]``:

- ``NDEATH`` is the MQTT will, with the ``bdSeq`` metric; ``NBIRTH`` (seq 0) follows
  every connect with the same ``bdSeq`` and ``Node Control/Rebirth``; bdSeq counts
  connects (0-255).
- ``DBIRTH`` before a device's first data of a session (and after it was offline): every
  point as a metric with its name, an alias, its datatype and its last known value
  (``is_null`` when none yet). ``DDATA`` then carries metrics by alias only.
- ``DDEATH`` when the device goes offline.
- Every payload has the send time and ``seq`` (0-255, one counter per session).
- An ``NCMD`` with ``Node Control/Rebirth`` = true makes the gateway send NBIRTH and
  every DBIRTH again.
- Batches replayed from the store after an outage are marked ``is_historical``.

The store holds compact records (gateway.wire.compact); this module turns them into Sparkplug
payloads when they are sent, because seq, births and aliases belong to one MQTT session.
The protobuf encoding is written here (the few fields used), and tested against Google's
protobuf runtime with the Tahu schema's field numbers.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field
from typing import Any

from gateway.wire.compact import Schema, Schemas, decode_record

NAMESPACE = "spBv1.0"
# Sparkplug datatypes (Payload.DataType in the Tahu schema)
INT8, INT16, INT32, INT64 = 1, 2, 3, 4
UINT8, UINT16, UINT32, UINT64 = 5, 6, 7, 8
FLOAT, DOUBLE, BOOLEAN, STRING = 9, 10, 11, 12
_TYPES = {"int16": INT16, "uint16": UINT16, "int32": INT32, "uint32": UINT32,
          "int64": INT64, "uint64": UINT64, "float32": FLOAT, "float64": DOUBLE,
          "bool": BOOLEAN, "string": STRING, "bitfield": UINT16}
# array datatypes: bytes_value, little-endian packed (Sparkplug 3.0, 6.4.17)
INT8_ARRAY, INT16_ARRAY, INT32_ARRAY, INT64_ARRAY = 22, 23, 24, 25
UINT8_ARRAY, UINT16_ARRAY, UINT32_ARRAY, UINT64_ARRAY = 26, 27, 28, 29
FLOAT_ARRAY, DOUBLE_ARRAY, BOOLEAN_ARRAY, STRING_ARRAY = 30, 31, 32, 33
_ARRAYS = {"int16": INT16_ARRAY, "uint16": UINT16_ARRAY, "int32": INT32_ARRAY,
           "uint32": UINT32_ARRAY, "int64": INT64_ARRAY, "uint64": UINT64_ARRAY,
           "float32": FLOAT_ARRAY, "float64": DOUBLE_ARRAY, "bool": BOOLEAN_ARRAY,
           "string": STRING_ARRAY}
_PACK = {INT8_ARRAY: "b", INT16_ARRAY: "h", INT32_ARRAY: "i", INT64_ARRAY: "q",
         UINT8_ARRAY: "B", UINT16_ARRAY: "H", UINT32_ARRAY: "I", UINT64_ARRAY: "Q",
         FLOAT_ARRAY: "f", DOUBLE_ARRAY: "d"}
REBIRTH = "Node Control/Rebirth"


# -- protobuf, by hand ---------------------------------------------------------------------
def _varint(out: bytearray, n: int) -> None:
    n &= 0xFFFFFFFFFFFFFFFF  # negative ints: two's complement, 10 bytes
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _field_varint(out: bytearray, num: int, n: int) -> None:
    out.append(num << 3)
    _varint(out, n)


def _field_bytes(out: bytearray, num: int, b: bytes) -> None:
    _varint(out, (num << 3) | 2)
    _varint(out, len(b))
    out += b


def metric(alias: int, ts_ms: int, datatype: int, value: Any, *, name: str | None = None,
           historical: bool = False) -> bytes:
    """One Payload.Metric."""
    out = bytearray()
    if name is not None:
        _field_bytes(out, 1, name.encode())
    _field_varint(out, 2, alias)
    _field_varint(out, 3, ts_ms)
    _field_varint(out, 4, datatype)
    if historical:
        _field_varint(out, 5, 1)
    if value is None:
        _field_varint(out, 7, 1)  # is_null
        return bytes(out)
    if datatype >= INT8_ARRAY:
        _field_bytes(out, 16, pack_array(datatype, value))
    elif datatype == BOOLEAN:
        _field_varint(out, 14, 1 if value else 0)
    elif datatype == STRING:
        _field_bytes(out, 15, str(value).encode())
    elif datatype == DOUBLE:
        out.append((13 << 3) | 1)
        out += struct.pack("<d", float(value))
    elif datatype == FLOAT:
        out.append((12 << 3) | 5)
        out += struct.pack("<f", float(value))
    elif datatype in (INT64, UINT64):
        _field_varint(out, 11, int(value))
    else:  # 8-32 bit integers: int_value, a uint32 (two's complement for negatives)
        _field_varint(out, 10, int(value) & 0xFFFFFFFF)
    return bytes(out)


def pack_array(datatype: int, values: Any) -> bytes:
    """An array metric's bytes_value: little-endian packed numbers; a BooleanArray as a
    uint32 count then the bits, most significant first; a StringArray as
    NUL-terminated UTF-8 strings."""
    if not isinstance(values, list | tuple):
        raise TypeError("an array datatype needs a list")
    code = _PACK.get(datatype)
    if code is not None:
        items = [float(x) for x in values] if code in "fd" else [int(x) for x in values]
        return struct.pack(f"<{len(items)}{code}", *items)
    if datatype == BOOLEAN_ARRAY:
        if not all(isinstance(x, bool) for x in values):
            raise TypeError("a BooleanArray holds booleans")
        bits = bytearray((len(values) + 7) // 8)
        for i, x in enumerate(values):
            if x:
                bits[i // 8] |= 0x80 >> (i % 8)
        return struct.pack("<I", len(values)) + bytes(bits)
    if datatype == STRING_ARRAY:
        return b"".join(str(x).encode() + b"\0" for x in values)
    raise TypeError(f"datatype {datatype} is not an array type")


def safe_metric(alias: int, ts_ms: int, datatype: int, value: Any, **kw: Any) -> bytes:
    """A metric whose value does not fit its birth datatype is sent as null."""
    try:
        return metric(alias, ts_ms, datatype, value, **kw)
    except (TypeError, ValueError, OverflowError, struct.error):
        return metric(alias, ts_ms, datatype, None, **kw)


def payload(ts_ms: int, seq: int | None, metrics: list[bytes]) -> bytes:
    """A Payload: timestamp, metrics, seq (NDEATH has none)."""
    out = bytearray()
    _field_varint(out, 1, ts_ms)
    for m in metrics:
        _field_bytes(out, 2, m)
    if seq is not None:
        _field_varint(out, 3, seq)
    return bytes(out)


def read_metrics(data: bytes) -> list[dict[int, Any]]:
    """The metrics of a Payload as {field number: value} (varints and bytes only): enough
    to read an NCMD. Raises ValueError on malformed input."""

    def fields(buf: bytes) -> list[tuple[int, Any]]:
        out: list[tuple[int, Any]] = []
        i = 0
        while i < len(buf):
            key, i = _read_varint(buf, i)
            num, wire = key >> 3, key & 7
            v: Any
            if wire == 0:
                v, i = _read_varint(buf, i)
            elif wire == 2:
                n, i = _read_varint(buf, i)
                v, i = buf[i:i + n], i + n
                if i > len(buf):
                    raise ValueError("truncated")
            elif wire == 1:
                v, i = buf[i:i + 8], i + 8
            elif wire == 5:
                v, i = buf[i:i + 4], i + 4
            else:
                raise ValueError(f"wire type {wire}")
            out.append((num, v))
        return out

    return [dict(fields(v)) for num, v in fields(data) if num == 2]


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("bad varint")
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return n, i
        shift += 7


# -- the session ---------------------------------------------------------------------------
def datatype(point_type: str | None, scaled: bool, value: Any = None) -> int:
    """The Sparkplug datatype of a point: from its profile type (``float64[]`` for an
    array of float64, ``[]`` for an array of undeclared type), else from a value."""
    if point_type is not None and point_type.endswith("[]"):
        base = point_type[:-2]
        if scaled:
            return DOUBLE_ARRAY
        if base:
            return _ARRAYS[base]
        return _array_of(value)
    if scaled:
        return DOUBLE
    if point_type is not None:
        return _TYPES[point_type]
    if isinstance(value, list | tuple):
        return _array_of(value)
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int):
        return INT64
    if isinstance(value, str):
        return STRING
    return DOUBLE


def _refines(current: int, kind: str | None, v: Any) -> bool:
    """Whether value ``v`` tells more than the default datatype of an undeclared type."""
    if current == DOUBLE:
        return isinstance(v, bool | str | list)
    return current == DOUBLE_ARRAY and kind == "[]" and isinstance(v, list) and bool(v) \
        and not isinstance(v[0], float)


def _array_of(value: Any) -> int:
    first = value[0] if isinstance(value, list | tuple) and value else None
    if isinstance(first, bool):
        return BOOLEAN_ARRAY
    if isinstance(first, int):
        return INT64_ARRAY
    if isinstance(first, str):
        return STRING_ARRAY
    return DOUBLE_ARRAY


@dataclass
class _Device:
    schema: Schema
    types: list[int]
    kinds: list[str | None]  # the profile's type of each point (float64[], [] ...)
    #: alias -> (last value, its time in ms)
    values: dict[int, tuple[Any, int]] = field(default_factory=dict)
    born: bool = False


class SparkplugSession:
    """Births, deaths, aliases and seq for one edge node. ``bdseq`` survives reconnects
    (one per connect, 0-255); ``seq`` restarts at every NBIRTH."""

    def __init__(self, group: str, node: str, schemas: Schemas,
                 point_types: dict[str, list[tuple[str | None, bool]]]) -> None:
        self.group = group
        self.node = node
        self.schemas = schemas
        self.point_types = point_types  # profile tag -> (type, scaled) per index
        self.bdseq = -1
        self.seq = 0
        self.devices: dict[str, _Device] = {}

    def topic(self, kind: str, device: str | None = None) -> str:
        base = f"{NAMESPACE}/{self.group}/{kind}/{self.node}"
        return f"{base}/{device}" if device else base

    def _next_seq(self) -> int:
        s = self.seq
        self.seq = (s + 1) % 256
        return s

    def connect(self) -> tuple[str, bytes]:
        """A new session: the NDEATH to register as the will."""
        self.bdseq = (self.bdseq + 1) % 256
        self.seq = 0
        for d in self.devices.values():
            d.born = False
        return self.topic("NDEATH"), payload(
            _now(), None, [metric(0, _now(), UINT64, self.bdseq, name="bdSeq")])

    def nbirth(self) -> tuple[str, bytes]:
        self.seq = 0
        for d in self.devices.values():
            d.born = False
        now = _now()
        return self.topic("NBIRTH"), payload(now, self._next_seq(), [
            metric(0, now, UINT64, self.bdseq, name="bdSeq"),
            metric(1, now, BOOLEAN, False, name=REBIRTH)])

    def _device(self, dev: str, profile: str) -> _Device:
        d = self.devices.get(dev)
        if d is None or d.schema.profile != profile:
            schema = self.schemas.get(profile)
            kinds = self.point_types.get(profile) or [(None, False)] * len(schema.names)
            d = self.devices[dev] = _Device(schema, [datatype(t, s) for t, s in kinds],
                                            [t for t, _ in kinds])
        return d

    def dbirth(self, dev: str) -> tuple[str, bytes]:
        d = self.devices[dev]
        now = _now()
        metrics = []
        for i, name in enumerate(d.schema.names):
            v, t = d.values.get(i, (None, now))
            metrics.append(safe_metric(i, t, d.types[i], v, name=name))
        d.born = True
        return self.topic("DBIRTH", dev), payload(now, self._next_seq(), metrics)

    def rebirth(self) -> list[tuple[str, bytes]]:
        """NBIRTH and a DBIRTH for every device known in this session."""
        out = [self.nbirth()]
        out += [self.dbirth(dev) for dev in self.devices]
        return out

    def record(self, rec: bytes, gateway: str, historical: bool) -> list[tuple[str, bytes]]:
        """The messages for one stored record, in order: a DBIRTH first when the device
        is not born in this session, then DDATA; or DDEATH when it went offline."""
        doc = decode_record(rec, gateway, self.schemas)
        dev = doc["dev"]
        d = self._device(dev, doc["prof"])
        ts = int(doc["ts"])
        index = d.schema.index
        st = doc.get("st", {})
        updates = [(index[name], v, int(st.get(name, ts))) for name, v in doc["p"].items()]
        for i, v, _t in updates:  # an undeclared type: the first value says which
            if _refines(d.types[i], d.kinds[i], v):
                d.types[i] = datatype(None, False, v)
        if doc.get("state") == "offline" and doc.get("err") is not None and not doc["p"]:
            if not d.born:
                return []
            d.born = False
            return [(self.topic("DDEATH", dev), payload(_now(), self._next_seq(), []))]
        out: list[tuple[str, bytes]] = []
        if not d.born:
            for i, v, t in updates:  # the birth carries the values just read
                d.values[i] = (v, t)
            out.append(self.dbirth(dev))
            return out
        metrics = []
        for i, v, t in updates:
            d.values[i] = (v, t)
            metrics.append(safe_metric(i, t, d.types[i], v, historical=historical))
        if metrics:
            out.append((self.topic("DDATA", dev), payload(_now(), self._next_seq(), metrics)))
        return out


def _now() -> int:
    return int(time.time() * 1000)
