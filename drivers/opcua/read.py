"""Polling: read plans (a poll group's nodes in chunks of MaxNodesPerRead) and the
decoding of DataValues into values, qualities and source times."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from asyncua import Client, ua
from asyncua.common.utils import Buffer
from asyncua.ua import ua_binary

from drivers.opcua import fastchannel, fastdecode, fastwire
from drivers.opcua.values import epoch, quality_of, to_value
from gateway.model import Quality, Value
from gateway.profiles import Point

_FLOAT = ua.VariantType.Float
_READ_REQUEST = ua.ObjectIds.ReadRequest_Encoding_DefaultBinary


@dataclass(slots=True)
class ReadPlan:
    names: tuple[str, ...]
    chunks: list[tuple[int, list[ua.ReadValueId]]]  # (first index, nodes)
    missing: dict[int, str]  # index -> why the node is not resolved
    #: each chunk's ReadParameters, encoded once (fastwire.py)
    bodies: list[bytes]


def plan(points: Sequence[Point], ids: Mapping[str, ua.NodeId | str],
         max_per_read: int) -> ReadPlan:
    nodes: list[ua.ReadValueId] = []
    missing: dict[int, str] = {}
    for i, p in enumerate(points):
        nid = ids.get(p.name, "not an OPC UA point")
        if isinstance(nid, str):
            missing[i] = nid
            nid = ua.NodeId(0, 0)  # placeholder keeps indexes aligned; never read
        rv = ua.ReadValueId()
        rv.NodeId = nid
        rv.AttributeId = ua.AttributeIds.Value
        nodes.append(rv)
    chunks = [(i, nodes[i : i + max_per_read]) for i in range(0, len(nodes), max_per_read)]
    return ReadPlan(tuple(p.name for p in points), chunks, missing,
                    [fastwire.read_body(c) for _, c in chunks])


Chunk = list[fastdecode.Value] | fastdecode.Columns | list[ua.DataValue]


async def read_chunk(client: Client, body: bytes) -> Chunk:
    """One Read of a precoded chunk, through the session's channel: the values as
    tuples (fastwire.py), or as asyncua's DataValues when the answer has a shape the
    fast path does not decode. Raises what asyncua's read raises."""
    raw = await fastchannel.request(client, _READ_REQUEST, body)
    fast = fastwire.decode_read(raw)
    if fast is None:
        response = ua_binary.struct_from_binary(ua.ReadResponse, Buffer(raw))
        response.ResponseHeader.ServiceResult.check()
        return list(response.Results)
    result, values = fast
    if result & 0x80000000:
        raise ua.UaStatusCodeError(result)
    return values


def decode_columns(cols: fastdecode.Columns, first: int, values: list[Value],
                   status: dict[int, tuple[Quality, str]], times: list[float] | None,
                   now: float) -> None:
    """Append a uniform run of values (fastdecode.Columns); record non-good quality."""
    vals = cols.values
    if cols.vtype == fastdecode.FLOAT:  # a Float has 7 significant digits
        vals = [float(f"{v:.7g}") for v in vals]
    if cols.status is not None and any(cols.status):
        for j, code in enumerate(cols.status):
            q = quality_of(code) if code else None
            if q is not None:
                status[first + j] = q
                if q[0] is Quality.BAD:
                    vals[j] = None
    values.extend(vals)
    if times is not None:
        times.extend(cols.times(now))


def decode_fast(item: fastdecode.Value, i: int, values: list[Value],
                status: dict[int, tuple[Quality, str]], times: list[float], now: float) -> None:
    """Append one value decoded by the fast path; record non-good quality at ``i``."""
    v, code, ts, vtype = item
    times.append(now if ts is None else ts)
    if code:
        q = quality_of(code)
        if q is not None:
            status[i] = q
            if q[0] is Quality.BAD:
                values.append(None)
                return
    # a Float has 7 significant digits; drop binary noise
    values.append(float(f"{v:.7g}") if vtype == fastdecode.FLOAT else v)


def decode(dv: ua.DataValue, i: int, values: list[Value], status: dict[int, tuple[Quality, str]],
           times: list[float], now: float) -> bool:
    """Append one DataValue's value and source time; record non-good quality at ``i``.
    True when the value is an array."""
    t = epoch(dv.SourceTimestamp)
    times.append(now if t is None else t)
    sc = dv.StatusCode
    q = quality_of(sc.value) if sc is not None else None
    var = dv.Value
    v = var.Value if var is not None else None
    if var is not None and var.VariantType is _FLOAT and v is not None:
        # a Float has 7 significant digits; drop binary noise
        v = [float(f"{x:.7g}") for x in v] if isinstance(v, list) else float(f"{v:.7g}")
    if q is not None:
        status[i] = q
        if q[0] is Quality.BAD:
            values.append(None)
            return False
    try:
        value = to_value(v)
    except TypeError as exc:
        values.append(None)
        status[i] = (Quality.BAD, f"unsupported OPC UA value: {exc}")
        return False
    values.append(value)
    return value.__class__ is tuple


def name_enums(enums: Mapping[str, dict[int, str]], names: Sequence[str],
               values: list[Value], status: dict[int, tuple[Quality, str]]) -> None:
    """Enumeration values as their names; a number without a name as its digits,
    quality uncertain."""
    for j, name in enumerate(names):
        table = enums.get(name)
        if table is None:
            continue
        v = values[j]
        if isinstance(v, int) and not isinstance(v, bool):
            text = table.get(v)
            if text is None:
                values[j] = str(v)
                status.setdefault(j, (Quality.UNCERTAIN, f"no name for enumeration value {v}"))
            else:
                values[j] = text
