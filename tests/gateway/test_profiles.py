"""Shipped profiles are complete and realistic; bad profiles get clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.profiles import (
    ModbusPoint,
    OpcuaPoint,
    default_profile_dirs,
    list_profiles,
    load_profile,
    load_profile_file,
)

ALL = [n for n in list_profiles(default_profile_dirs()) if not n.startswith("bench/")]
SHIPPED = [n for n in ALL if load_profile(n, default_profile_dirs()).protocol == "modbus"]
OPCUA = [n for n in ALL if load_profile(n, default_profile_dirs()).protocol == "opcua"]


def test_at_least_four_profiles() -> None:
    assert len(SHIPPED) >= 4


@pytest.mark.parametrize("name", SHIPPED)
def test_profile_is_rich(name: str) -> None:
    prof = load_profile(name, default_profile_dirs())
    assert len(prof.points) >= 15
    tables = {p.table for p in prof.points if isinstance(p, ModbusPoint)}
    assert tables == {"holding", "input", "coil", "discrete"}
    assert len({p.type for p in prof.points}) >= 5
    mb = [p for p in prof.points if isinstance(p, ModbusPoint)]
    orders = {prof.word_order_of(p) for p in mb if p.size > 1 and p.type != "string"}
    assert orders == {"big", "little"}, "both word orders appear"
    assert prof.state is not None and prof.state.rules
    assert any(p.access == "rw" for p in prof.points)


def test_at_least_two_opcua_profiles() -> None:
    assert len(OPCUA) >= 2


@pytest.mark.parametrize("name", OPCUA)
def test_opcua_profile_is_rich(name: str) -> None:
    prof = load_profile(name, default_profile_dirs())
    assert len(prof.points) >= 20
    assert all(isinstance(p, OpcuaPoint) for p in prof.points)
    assert prof.opcua is not None and prof.opcua.namespaces
    assert len({p.type for p in prof.points}) >= 4
    assert any(p.access == "rw" for p in prof.points)
    assert prof.state is not None and prof.state.rules
    assert all(p.unit for p in prof.points if p.type in ("float32", "float64"))


@pytest.mark.parametrize(("points", "says"), [
    ("[{name: a, path: M/A, node: 'ns=2;s=A'}]", "exactly one of 'node'"),
    ("[{name: a}]", "exactly one of 'node'"),
    ("[{name: a, path: M//A}]", "browse path"),
    ("[{name: a, path: M/A, type: string, deadband: {absolute: 1}}]", "numeric"),
    ("[{name: a, table: holding, address: 0}]", "addresses points by 'node' or 'path'"),
])
def test_bad_opcua_points(tmp_path: Path, points: str, says: str) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(f"schema: 1\nvendor: v\nmodel: m\nprotocol: opcua\npoints: {points}\n")
    with pytest.raises(ConfigError) as ei:
        load_profile_file(f)
    text = str(ei.value)
    assert "points[0]" in text and ".modbus" not in text and ".opcua" not in text
    assert says in text


@pytest.mark.parametrize(("point", "says"), [
    ("{name: a, table: coil, address: 0, type: uint16}", "must have type 'bool'"),
    ("{name: a, table: holding, address: 0, type: bool}", "needs 'bit'"),
    ("{name: a, table: holding, address: 0, type: string}", "needs 'count'"),
    ("{name: a, table: input, address: 0, access: rw}", "read-only"),
    ("{name: a, table: holding, address: 65535, type: uint32}", "past address 65535"),
    ("{name: a, table: holding, address: 0, type: float16}", "float32"),
    ("{name: a b, table: holding, address: 0}", "point names"),
    ("{name: a, table: holding, address: 0, deadband: {absolute: 1, percent: 2}}", "exactly one"),
])
def test_bad_points(tmp_path: Path, point: str, says: str) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(f"schema: 1\nvendor: v\nmodel: m\npoints:\n  - {point}\n")
    with pytest.raises(ConfigError) as ei:
        load_profile_file(f)
    text = str(ei.value)
    assert "points[0]" in text
    assert says in text


def test_state_rules_must_name_known_points(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("schema: 1\nvendor: v\nmodel: m\n"
                 "state: {rules: [{state: running, when: {point: speed, gt: 0}}]}\n"
                 "points: [{name: a, table: holding, address: 0}]\n")
    with pytest.raises(ConfigError, match=r"unknown point\(s\) \['speed'\]"):
        load_profile_file(f)


def test_unknown_schema_version(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("schema: 7\nvendor: v\nmodel: m\n"
                 "points: [{name: a, table: holding, address: 0}]\n")
    with pytest.raises(ConfigError, match="schema 1, not 7"):
        load_profile_file(f)


def test_bitfield_bits_expand_to_bool_points() -> None:
    prof = load_profile("acme/cnc-vmc850", default_profile_dirs())
    names = [p.name for p in prof.expanded_points()]
    assert "status_word.door_closed" in names
