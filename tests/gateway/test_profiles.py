"""Shipped profiles are complete and realistic; bad profiles get clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.profiles import default_profile_dirs, list_profiles, load_profile, load_profile_file

SHIPPED = [n for n in list_profiles(default_profile_dirs()) if not n.startswith("bench/")]


def test_at_least_four_profiles() -> None:
    assert len(SHIPPED) >= 4


@pytest.mark.parametrize("name", SHIPPED)
def test_profile_is_rich(name: str) -> None:
    prof = load_profile(name, default_profile_dirs())
    assert len(prof.points) >= 15
    assert {p.table for p in prof.points} == {"holding", "input", "coil", "discrete"}
    assert len({p.type for p in prof.points}) >= 5
    orders = {prof.word_order_of(p) for p in prof.points if p.size > 1 and p.type != "string"}
    assert orders == {"big", "little"}, "both word orders appear"
    assert prof.state is not None and prof.state.rules
    assert any(p.access == "rw" for p in prof.points)


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
