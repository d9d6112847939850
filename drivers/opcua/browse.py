"""Commissioning: walk an OPC UA server's address space, print it, and write a starting
profile for the browsed subtree.

What an integrator needs to write a profile: the namespace table (index -> URI; a
profile names namespaces by URI), every variable's DataType and array shape, its value
in full (as edgegw would send it), its EngineeringUnits and EURange, and whether it is
writable. ``edgegw browse`` prints that; ``--write-profile`` turns the variables found
into a profile (browse paths from the start node, namespace aliases, types, units,
arrays, enumerations, ``access: rw``) to edit and trim.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from asyncua import Client, ua

from drivers.opcua.values import to_value

#: VariantType number -> the profile's type
_PROFILE_TYPE = {
    1: "bool", 4: "int16", 5: "uint16", 6: "int32", 7: "uint32", 8: "int64", 9: "uint64",
    10: "float32", 11: "float64", 12: "string",
}
_WRITE = 0x02  # AccessLevel bit CurrentWrite


@dataclass
class Browsed:
    """One node found: where it is and, for variables, what it holds."""

    level: int
    path: list[ua.QualifiedName]  # browse names from the start node
    nodeid: ua.NodeId
    node_class: ua.NodeClass
    datatype: str = ""  # Double, Int32, or the BrowseName of a non-built-in DataType
    builtin: int = 0  # the built-in type's number (1..25), 0 for others
    enumeration: bool = False
    value_rank: int = -1
    dims: list[int] = field(default_factory=list)
    value: Any = None
    status: str = ""  # a non-good StatusCode's name
    unit: str = ""
    eurange: tuple[float, float] | None = None
    writable: bool = False
    cut: bool = False  # an object not descended into (the depth limit)


async def walk(client: Client, start: ua.NodeId, depth: int) -> list[Browsed]:
    """Every node below ``start`` down to ``depth`` levels, in browse order."""
    out: list[Browsed] = []
    dtypes: dict[ua.NodeId, tuple[str, int, bool]] = {}

    async def visit(node: Any, level: int, path: list[ua.QualifiedName]) -> None:
        for child in await node.get_children(refs=ua.ObjectIds.HierarchicalReferences):
            qn = await child.read_browse_name()
            cls = await child.read_node_class()
            b = Browsed(level, [*path, qn], child.nodeid, cls)
            out.append(b)
            if cls == ua.NodeClass.Variable:
                await _describe(client, child, b, dtypes)
            elif level + 1 < depth:
                await visit(child, level + 1, b.path)
            else:
                b.cut = True

    await visit(client.get_node(start), 0, [])
    return out


async def _describe(client: Client, node: Any, b: Browsed,
                    dtypes: dict[ua.NodeId, tuple[str, int, bool]]) -> None:
    dv = await node.read_data_value(raise_on_bad_status=False)
    if dv.StatusCode is not None and not dv.StatusCode.is_good():
        b.status = dv.StatusCode.name
    b.value = dv.Value.Value if dv.Value is not None else None
    dtype = await node.read_data_type()
    if dtype not in dtypes:
        dtypes[dtype] = await _datatype(client, dtype)
    b.datatype, b.builtin, b.enumeration = dtypes[dtype]
    b.value_rank = await node.read_value_rank()
    if b.value_rank >= 1:
        try:
            b.dims = list(await node.read_array_dimensions() or [])
        except ua.UaError:
            b.dims = []
        if not b.dims or all(d == 0 for d in b.dims):
            b.dims = [len(b.value)] if isinstance(b.value, list) else []
    try:
        level = (await node.read_attribute(ua.AttributeIds.AccessLevel)).Value.Value
        b.writable = bool(int(level or 0) & _WRITE)
    except ua.UaError:
        b.writable = False
    for prop in await node.get_properties():
        name = (await prop.read_browse_name()).Name
        if name not in ("EngineeringUnits", "EURange"):
            continue
        try:
            pv = await prop.read_value()
        except ua.UaError:
            continue
        if name == "EngineeringUnits" and pv is not None:
            b.unit = str(pv.DisplayName.Text or "")
        elif name == "EURange" and pv is not None:
            b.eurange = (float(pv.Low), float(pv.High))


async def _datatype(client: Client, dtype: ua.NodeId) -> tuple[str, int, bool]:
    """(name, built-in type number or 0, is an enumeration) of a DataType node. A
    subtype of a built-in type (Duration, UtcTime, UriString, a vendor's Int32 subtype)
    is read as that type; a subtype of Enumeration (i=29) is an enumeration."""
    if _builtin(dtype):
        return ua.VariantType(dtype.Identifier).name, dtype.Identifier, False
    node = client.get_node(dtype)
    try:
        name = (await node.read_browse_name()).Name
    except ua.UaError:
        return dtype.to_string(), 0, False
    cur = node
    for _ in range(10):  # up the HasSubtype hierarchy
        parents = await cur.get_references(refs=ua.ObjectIds.HasSubtype,
                                           direction=ua.BrowseDirection.Inverse)
        if not parents:
            break
        parent = parents[0].NodeId
        if parent == ua.NodeId(ua.ObjectIds.Enumeration):
            return name, 0, True
        if _builtin(parent):
            return f"{name} ({ua.VariantType(parent.Identifier).name})", parent.Identifier, False
        cur = client.get_node(parent)
    return name, 0, False


def _builtin(dtype: ua.NodeId) -> bool:
    """A built-in DataType of namespace 0 (Boolean=1 ... DiagnosticInfo=25), other than
    Structure (22) and BaseDataType (24, any type)."""
    return dtype.NamespaceIndex == 0 and isinstance(dtype.Identifier, int) \
        and 1 <= dtype.Identifier <= 25 and dtype.Identifier not in (22, 24)


def shape(b: Browsed) -> str:
    """``Double``, ``Double[16]``, ``Double[]`` (one dimension, length unknown),
    ``Int32[4,4]``."""
    if b.value_rank < 1 and not (b.value_rank in (-3, -2, 0) and isinstance(b.value, list)):
        return b.datatype
    if b.dims:
        return f"{b.datatype}[{','.join(str(d) for d in b.dims)}]"
    return f"{b.datatype}[]"


def show(value: Any) -> str:
    """A value in full, as edgegw would send it (JSON text: strings quoted, arrays as
    lists), or what it is when edgegw cannot send it."""
    try:
        v = to_value(value)
    except TypeError as exc:
        return f"({exc})"
    if isinstance(v, float):
        return repr(v)
    return json.dumps(list(v) if isinstance(v, tuple) else v, ensure_ascii=False)


def lines(nodes: list[Browsed], ns_array: list[str], start: str) -> list[str]:
    out = ["namespaces:"]
    out += [f"  {i}  {uri}" for i, uri in enumerate(ns_array)]
    out.append(f"below {start}:")
    for b in nodes:
        qn = b.path[-1]
        text = f"{'  ' * (b.level + 1)}{qn.NamespaceIndex}:{qn.Name}  {b.nodeid.to_string()}"
        if b.node_class == ua.NodeClass.Variable:
            text += f"  {shape(b)}{' (enumeration)' if b.enumeration else ''}"
            text += f" = {show(b.value)}" if not b.status else f"  {b.status}"
            if b.unit:
                text += f"  [{b.unit}]"
            if b.eurange:
                text += f"  EURange {b.eurange[0]:g}..{b.eurange[1]:g}"
            if b.writable:
                text += "  writable"
        else:
            text += f"  ({b.node_class.name})"
            if b.cut and b.node_class == ua.NodeClass.Object:
                text += "  ... (not browsed: raise --depth)"
        out.append(text)
    return out


def _alias(uri: str, taken: set[str]) -> str:
    words = [w for w in re.split(r"[^A-Za-z0-9]+", uri) if w and w.lower() not in
             ("urn", "http", "https", "www", "opc", "ua")]
    base = (words[-1] if words else "ns").lower()[:12] or "ns"
    base = re.sub(r"^[0-9]+", "", base) or "ns"
    alias, n = base, 2
    while alias in taken:
        alias, n = f"{base}{n}", n + 1
    taken.add(alias)
    return alias


def _point_name(path: list[ua.QualifiedName], taken: set[str]) -> str:
    words = [re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", q.Name) for q in path]
    name = "_".join(re.sub(r"[^A-Za-z0-9]+", "_", w).strip("_").lower() for w in words)
    name = re.sub(r"_+", "_", name).strip("_") or "point"
    if name[0].isdigit():
        name = f"p_{name}"
    unique, n = name, 2
    while unique in taken:
        unique, n = f"{name}_{n}", n + 1
    taken.add(unique)
    return unique


def profile(nodes: list[Browsed], ns_array: list[str], start: ua.NodeId,
            vendor: str, model: str) -> tuple[dict[str, Any], list[str]]:
    """A starting profile for the variables found, and the variables left out (why)."""
    aliases: dict[int, str] = {}
    taken_alias: set[str] = set()

    def alias(index: int) -> str:
        if index not in aliases:
            aliases[index] = "0" if index == 0 else _alias(ns_array[index], taken_alias)
        return aliases[index]

    root = start.to_string()
    if start.NamespaceIndex:
        uri = ns_array[start.NamespaceIndex]
        root = f"nsu={uri};" + start.to_string().split(";", 1)[1]
    points: list[dict[str, Any]] = []
    skipped: list[str] = []
    names: set[str] = set()
    for b in nodes:
        if b.node_class != ua.NodeClass.Variable:
            continue
        where = "/".join(q.Name for q in b.path)
        if b.value_rank > 1 or len(b.dims) > 1:
            skipped.append(f"{where}: a {max(b.value_rank, len(b.dims))}-dimensional array")
            continue
        if not b.builtin and not b.enumeration:
            skipped.append(f"{where}: a structure (DataType {b.datatype})")
            continue
        segs = [f"{alias(q.NamespaceIndex)}:{q.Name}" for q in b.path]
        p: dict[str, Any] = {"name": _point_name(b.path, names), "path": "/".join(segs)}
        if b.enumeration:
            p["enum"] = True
        elif b.builtin in _PROFILE_TYPE:
            p["type"] = _PROFILE_TYPE[b.builtin]
        if b.value_rank >= 1 or (b.value_rank in (-3, -2, 0) and isinstance(b.value, list)):
            p["array"] = True
        if b.unit:
            p["unit"] = b.unit
        if b.writable:
            p["access"] = "rw"
        if b.status:
            p["description"] = f"{b.status} when browsed"
        points.append(p)
    namespaces = {a: ns_array[i] for i, a in aliases.items() if i != 0}
    doc: dict[str, Any] = {
        "schema": 1, "vendor": vendor, "model": model, "version": "0.1", "protocol": "opcua",
        "description": f"written by edgegw browse --write-profile from {root}; edit before use",
        "opcua": {"namespaces": namespaces, "root": root},
        "poll_groups": {"default": "1s"},
        "points": points,
    }
    return doc, skipped
