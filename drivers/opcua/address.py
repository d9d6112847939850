"""Resolve profile addresses (NodeId strings, browse paths) to the server's NodeIds.

Namespace *indexes* are the server's choice and may change between firmware versions;
namespace *URIs* do not. So a profile names namespaces by URI (``nsu=`` in a NodeId, or
an alias from ``opcua.namespaces`` in a browse path), and the indexes are looked up in
the server's NamespaceArray at every connect. Browse paths are translated in one
TranslateBrowsePathsToNodeIds call per 100 paths.
"""

from __future__ import annotations

from collections.abc import Sequence

from asyncua import Client, ua

from gateway.errors import DataError
from gateway.profiles import OpcuaPoint, OpcuaSettings

_HIERARCHICAL = ua.NodeId(ua.ObjectIds.HierarchicalReferences)


class AddressError(DataError):
    """A point's address cannot be resolved on this server."""


def parse_node(text: str, ns_array: Sequence[str]) -> ua.NodeId:
    """``ns=2;s=X``, ``nsu=<uri>;s=X`` or ``i=85`` as a NodeId of this server."""
    try:
        node = ua.NodeId.from_string(text)
    except (ua.UaStringParsingError, ValueError) as exc:
        raise AddressError(f"not a NodeId: {text!r} ({exc})") from None
    if isinstance(node, ua.ExpandedNodeId) and node.NamespaceUri:
        uri = node.NamespaceUri
        if uri not in ns_array:
            raise AddressError(f"namespace {uri!r} is not on this server")
        return ua.NodeId(node.Identifier, ns_array.index(uri), node.NodeIdType)
    return ua.NodeId(node.Identifier, node.NamespaceIndex, node.NodeIdType)


def browse_path(path: str, settings: OpcuaSettings, ns_array: Sequence[str]) -> ua.BrowsePath:
    """``Machine/Spindle/Speed`` (or ``cnc:Machine/...``) from ``settings.root``."""
    aliases = settings.namespaces
    default = next(iter(aliases), None)
    elements = []
    for seg in path.strip("/").split("/"):
        alias, sep, name = seg.partition(":")
        if not sep:
            alias, name = default or "0", seg
        if alias.isdigit():
            index = int(alias)
        elif alias in aliases:
            uri = aliases[alias]
            if uri not in ns_array:
                raise AddressError(f"namespace {uri!r} (alias {alias!r}) is not on this server")
            index = ns_array.index(uri)
        else:
            raise AddressError(f"unknown namespace alias {alias!r} in path {path!r}; "
                               f"the profile defines {sorted(aliases)}")
        el = ua.RelativePathElement()
        el.ReferenceTypeId = _HIERARCHICAL
        el.IsInverse = False
        el.IncludeSubtypes = True
        el.TargetName = ua.QualifiedName(name, index)
        elements.append(el)
    bp = ua.BrowsePath()
    bp.StartingNode = parse_node(settings.root, ns_array)
    bp.RelativePath = ua.RelativePath()
    bp.RelativePath.Elements = elements
    return bp


async def resolve(client: Client, points: Sequence[OpcuaPoint],
                  settings: OpcuaSettings) -> dict[str, ua.NodeId | str]:
    """Point name -> NodeId, or -> the reason it could not be resolved."""
    ns_array = await client.get_namespace_array()
    out: dict[str, ua.NodeId | str] = {}
    paths: list[tuple[str, ua.BrowsePath]] = []
    for p in points:
        try:
            if p.node is not None:
                out[p.name] = parse_node(p.node, ns_array)
            else:
                assert p.path is not None
                paths.append((p.name, browse_path(p.path, settings, ns_array)))
        except AddressError as exc:
            out[p.name] = str(exc)
    for i in range(0, len(paths), 100):
        chunk = paths[i : i + 100]
        results = await client.uaclient.translate_browsepaths_to_nodeids([bp for _, bp in chunk])
        for (name, bp), res in zip(chunk, results, strict=True):
            if res.StatusCode.is_good() and res.Targets:
                t = res.Targets[0].TargetId
                out[name] = ua.NodeId(t.Identifier, t.NamespaceIndex, t.NodeIdType)
            else:
                out[name] = await _not_found(client, bp, res.StatusCode.name)
    return out


async def _not_found(client: Client, bp: ua.BrowsePath, status: str) -> str:
    """Why a browse path did not resolve, naming the first segment that is not there
    (its prefixes translated in one request)."""
    elements = bp.RelativePath.Elements
    prefixes = []
    for k in range(1, len(elements)):
        sub = ua.BrowsePath()
        sub.StartingNode = bp.StartingNode
        sub.RelativePath = ua.RelativePath()
        sub.RelativePath.Elements = elements[:k]
        prefixes.append(sub)
    found = 0
    if prefixes:
        results = await client.uaclient.translate_browsepaths_to_nodeids(prefixes)
        for res in results:
            if not (res.StatusCode.is_good() and res.Targets):
                break
            found += 1
    seg = elements[found].TargetName
    parent = "/".join(e.TargetName.Name for e in elements[:found]) or \
        f"the root {bp.StartingNode.to_string()}"
    return (f"browse path not found: no {seg.NamespaceIndex}:{seg.Name} below {parent} "
            f"({status})")
