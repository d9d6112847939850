"""NodeId strings and browse paths resolve by namespace URI (unit)."""

from __future__ import annotations

import pytest
from asyncua import ua

from drivers.opcua.address import AddressError, browse_path, parse_node
from gateway.profiles import OpcuaSettings

NS = ["http://opcfoundation.org/UA/", "urn:server", "urn:pad", "urn:acme:cnc"]


def test_nsu_follows_the_namespace_index() -> None:
    assert parse_node("nsu=urn:acme:cnc;s=Identification.SerialNumber", NS) == \
        ua.NodeId("Identification.SerialNumber", 3)
    assert parse_node("ns=2;i=17", NS) == ua.NodeId(17, 2)
    assert parse_node("i=85", NS) == ua.NodeId(85, 0)


@pytest.mark.parametrize(("text", "says"), [
    ("nsu=urn:other;s=X", "not on this server"),
    ("hello", "not a NodeId"),
])
def test_bad_node_ids(text: str, says: str) -> None:
    with pytest.raises(AddressError, match=says):
        parse_node(text, NS)


def test_browse_path_uses_aliases_and_default_namespace() -> None:
    s = OpcuaSettings(namespaces={"cnc": "urn:acme:cnc"})
    bp = browse_path("Machine/cnc:Spindle/0:Speed", s, NS)
    names = [(e.TargetName.Name, e.TargetName.NamespaceIndex) for e in bp.RelativePath.Elements]
    assert names == [("Machine", 3), ("Spindle", 3), ("Speed", 0)]
    assert bp.StartingNode == ua.NodeId(85, 0)


@pytest.mark.parametrize(("path", "says"), [
    ("x:Machine/Speed", "unknown namespace alias 'x'"),
])
def test_bad_browse_paths(path: str, says: str) -> None:
    with pytest.raises(AddressError, match=says):
        browse_path(path, OpcuaSettings(namespaces={"cnc": "urn:acme:cnc"}), NS)


def test_alias_missing_on_server() -> None:
    with pytest.raises(AddressError, match="alias 'm'"):
        browse_path("Machine/X", OpcuaSettings(namespaces={"m": "urn:gone"}), NS)
