"""What the server says each node is, against the profile: DataType and ValueRank (a
disagreement is warned once per point: ``type: bool`` on an Int32 node would yield 2),
the names of enumeration points, and the type names of structures."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence

from asyncua import Client, ua

from gateway.profiles import OpcuaPoint

#: the VariantType a profile's ``type`` means
DECLARED: dict[str, ua.VariantType] = {
    "bool": ua.VariantType.Boolean, "int16": ua.VariantType.Int16,
    "uint16": ua.VariantType.UInt16, "int32": ua.VariantType.Int32,
    "uint32": ua.VariantType.UInt32, "int64": ua.VariantType.Int64,
    "uint64": ua.VariantType.UInt64, "float32": ua.VariantType.Float,
    "float64": ua.VariantType.Double, "string": ua.VariantType.String,
}
Warn = Callable[[str, str], None]


async def inspect(client: Client, points: Sequence[OpcuaPoint],
                  ids: Mapping[str, ua.NodeId | str], max_per_read: int,
                  warn: Warn) -> dict[str, dict[int, str]]:
    """Check each resolved node (warnings through ``warn``); the enumeration points'
    names: point -> value -> name (from the server, or the profile)."""
    nodes = [(p, nid) for p in points if isinstance(nid := ids.get(p.name), ua.NodeId)]
    results = await _attributes(client, [nid for _, nid in nodes], max_per_read)
    enums: dict[str, dict[int, str]] = {}
    dtnames: dict[str, str] = {}  # a DataType that is not built in: its BrowseName
    for k, (p, _) in enumerate(nodes):
        dtype = results[2 * k].Value.Value if results[2 * k].Value is not None else None
        rank = results[2 * k + 1].Value.Value if results[2 * k + 1].Value is not None \
            else None
        if not isinstance(dtype, ua.NodeId):
            continue
        builtin = dtype.NamespaceIndex == 0 and isinstance(dtype.Identifier, int) \
            and 1 <= dtype.Identifier <= 25
        if not builtin:
            with contextlib.suppress(ua.UaError):
                qn = await client.get_node(dtype).read_browse_name()
                dtnames[p.name] = qn.Name
        shown = ua.VariantType(dtype.Identifier).name if builtin else \
            dtnames.get(p.name, dtype.to_string())
        if p.enumerated:
            enums[p.name] = await enum_names(client, p, dtype, shown, warn)
        elif p.type is not None and (not builtin or
                                     dtype.Identifier != DECLARED[p.type].value):
            warn(p.name, f"declared type {p.type}, but the node's DataType is "
                 f"{shown}: values arrive as the server sends them (fix 'type' in "
                 "the profile)")
        if isinstance(rank, int):
            _check_rank(p, rank, warn)
    return enums


async def _attributes(client: Client, nids: list[ua.NodeId],
                      max_per_read: int) -> list[ua.DataValue]:
    """DataType and ValueRank of each node, in that order."""
    attrs: list[ua.ReadValueId] = []
    for nid in nids:
        for attr in (ua.AttributeIds.DataType, ua.AttributeIds.ValueRank):
            rv = ua.ReadValueId()
            rv.NodeId = nid
            rv.AttributeId = attr
            attrs.append(rv)
    results: list[ua.DataValue] = []
    for i in range(0, len(attrs), max_per_read):
        params = ua.ReadParameters()
        params.NodesToRead = attrs[i : i + max_per_read]
        results += await client.uaclient.read(params)
    return results


def _check_rank(p: OpcuaPoint, rank: int, warn: Warn) -> None:
    if rank > 1:
        warn(p.name, f"the node holds a {rank}-dimensional array (ValueRank "
             f"{rank}): not supported, only one-dimensional arrays")
    elif p.array and rank == -1:
        warn(p.name, "declared array: true, but the node is a scalar (ValueRank -1)")
    elif not p.array and rank in (0, 1):
        warn(p.name, f"the node holds an array (ValueRank {rank}): declare "
             "array: true in the profile")


async def enum_names(client: Client, p: OpcuaPoint, dtype: ua.NodeId, shown: str,
                     warn: Warn) -> dict[int, str]:
    if isinstance(p.enum, dict):
        return dict(p.enum)
    names: dict[int, str] = {}
    dt_node = client.get_node(dtype)
    with contextlib.suppress(ua.UaError):
        for child in await dt_node.get_properties():
            qn = await child.read_browse_name()
            if qn.Name == "EnumStrings":
                texts = await child.read_value()
                names = {i: str(t.Text) for i, t in enumerate(texts or [])}
            elif qn.Name == "EnumValues":
                for ev in await child.read_value() or []:
                    names[int(ev.Value)] = str(ev.DisplayName.Text)
    if not names:  # OPC UA 1.04 servers may give only the DataTypeDefinition
        with contextlib.suppress(ua.UaError):
            definition = await dt_node.read_data_type_definition()
            for f in getattr(definition, "Fields", None) or []:
                names[int(f.Value)] = str(f.Name)
    if not names:
        warn(p.name, f"enum: true, but the node's DataType {shown} has no "
             "EnumStrings, EnumValues or EnumDefinition: give the names in the "
             "profile (enum: {0: Stopped, 1: Running}); values are sent as their "
             "digits")
    return names
