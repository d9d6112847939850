"""Shipped profiles are complete and realistic; bad profiles get clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.profiles import (
    ModbusPoint,
    OpcuaPoint,
    Profile,
    default_profile_dirs,
    list_profiles,
    load_profile,
    load_profile_file,
)

#: machine profiles: not the bench's generated ones, nor the fleet simulator's virtual
#: device (edgegw-sim/fleet: a counter and a temperature, no machine behind it)
ALL = [n for n in list_profiles(default_profile_dirs())
       if not n.startswith(("bench/", "edgegw-sim/"))]
SHIPPED = [n for n in ALL if load_profile(n, default_profile_dirs()).protocol == "modbus"]
OPCUA = [n for n in ALL if load_profile(n, default_profile_dirs()).protocol == "opcua"]
SERIAL = [n for n in ALL if load_profile(n, default_profile_dirs()).protocol == "serial"]


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


def test_serial_profiles_cover_every_framing_and_mode() -> None:
    profs = [load_profile(n, default_profile_dirs()) for n in SERIAL]
    assert {p.serial.framing.kind for p in profs if p.serial} >= {"line", "delimited"}
    assert {p.serial.mode for p in profs if p.serial} == {"listen", "request"}
    assert {p.serial.parser for p in profs if p.serial} == {"regex", "binary"}
    assert any(getattr(pt, "context", None) == "product" for p in profs for pt in p.points)


SERIAL_HEAD = "schema: 1\nvendor: v\nmodel: m\nprotocol: serial\n"


@pytest.mark.parametrize(("body", "says"), [
    ("serial: {framing: {kind: line}, parser: regex, pattern: '(?P<w>\\d+)'}\n"
     "points: [{name: weight}]", "the pattern has no group (?P<weight>...)"),
    ("serial: {framing: {kind: line}, parser: regex}\npoints: [{name: w}]", "needs 'pattern'"),
    ("serial: {framing: {kind: line}, parser: regex, pattern: '(?P<w'}\npoints: [{name: w}]",
     "pattern: missing"),
    ("serial: {framing: {kind: delimited}, parser: binary}\npoints: [{name: w, at: 0}]",
     "needs 'start'"),
    ("serial: {framing: {kind: fixed}, parser: binary}\npoints: [{name: w, at: 0}]",
     "needs 'length'"),
    ("serial: {framing: {kind: line}, parser: binary}\npoints: [{name: w}]", "needs 'at'"),
    ("serial: {framing: {kind: line}, parser: regex, pattern: '(?P<w>x)', mode: request}\n"
     "points: [{name: w}]", "needs 'request'"),
    ("points: [{name: w}]", "needs the 'serial' section"),
    ("serial: {framing: {kind: line}, parser: regex, pattern: '(?P<w>x)'}\n"
     "points: [{name: w, type: float64, context: product}]", "has type 'string'"),
])
def test_bad_serial_profiles(tmp_path: Path, body: str, says: str) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(SERIAL_HEAD + body + "\n")
    with pytest.raises(ConfigError) as ei:
        load_profile_file(f)
    assert says in str(ei.value)


@pytest.mark.parametrize(("point", "says"), [
    ("{name: a, table: coil, address: 0, type: uint16}", "must have type 'bool'"),
    ("{name: a, table: holding, address: 0, type: bool}", "needs 'bit'"),
    ("{name: a, table: holding, address: 0, type: string}", "needs 'count'"),
    ("{name: a, table: input, address: 0, access: rw}", "read-only"),
    ("{name: a, table: holding, address: 65535, type: uint32}", "past address 65535"),
    ("{name: a, table: holding, address: 0, type: float16}", "float32"),
    ("{name: a b, table: holding, address: 0}", "point names"),
    ("{name: a, table: holding, address: 0, deadband: {absolute: 1, percent: 2}}", "exactly one"),
    ("{name: a, table: holding, address: 0, context: product}", "has type 'string'"),
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


def test_bit_labels_are_points_and_must_be_unique() -> None:
    base = {"vendor": "t", "model": "m", "points": [
        {"name": "w", "table": "holding", "address": 0, "type": "bitfield",
         "bits": {0: "a", 1: {"name": "b"}}}]}
    Profile.model_validate(base)
    dup = {**base, "points": [*base["points"],  # type: ignore[list-item]
                              {"name": "w.a", "table": "holding", "address": 1}]}
    with pytest.raises(ValueError, match=r"duplicate point name 'w\.a'"):
        Profile.model_validate(dup)
    bad = {**base, "points": [{"name": "w", "table": "holding", "address": 0,
                               "type": "bitfield", "bits": {16: "x"}}]}
    with pytest.raises(ValueError, match="0-15"):
        Profile.model_validate(bad)
