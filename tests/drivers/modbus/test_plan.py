"""Request coalescing plans, table-driven."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.modbus.plan import Refusal, Refusals, atoms, plan_reads, split
from gateway.errors import ConfigError
from gateway.profiles import ModbusPoint, Profile, Workarounds


def pts(*spec: tuple[str, int, str]) -> list[ModbusPoint]:
    out = []
    for i, (table, addr, typ) in enumerate(spec):
        kw: dict[str, object] = {"count": 4} if typ == "string" else {}
        out.append(ModbusPoint(name=f"p{i}", table=table, address=addr, type=typ, **kw))
    return out


H, IN, C, D = "holding", "input", "coil", "discrete"

CASES = [
    # (name, points, workarounds, expected [(table, start, count, n_points)])
    ("adjacent merge", pts((H, 0, "uint16"), (H, 1, "uint16"), (H, 2, "uint32")), {},
     [(H, 0, 4, 3)]),
    ("gap within max_gap", pts((H, 0, "uint16"), (H, 10, "uint16")), {"max_gap": 9},
     [(H, 0, 11, 2)]),
    ("gap beyond max_gap", pts((H, 0, "uint16"), (H, 10, "uint16")), {"max_gap": 8},
     [(H, 0, 1, 1), (H, 10, 1, 1)]),
    ("no gap filling", pts((H, 0, "uint16"), (H, 2, "uint16"), (H, 3, "uint16")),
     {"no_gap_filling": True}, [(H, 0, 1, 1), (H, 2, 2, 2)]),
    ("125 register limit", pts((H, 0, "uint16"), (H, 124, "uint16"), (H, 125, "uint16")),
     {"max_gap": 124}, [(H, 0, 125, 2), (H, 125, 1, 1)]),
    ("max registers per read", pts((H, 0, "uint32"), (H, 2, "uint32"), (H, 4, "uint32")),
     {"max_registers_per_read": 4}, [(H, 0, 4, 2), (H, 4, 2, 1)]),
    ("tables never mix", pts((H, 0, "uint16"), (IN, 1, "uint16"), (C, 0, "bool"), (D, 0, "bool")),
     {}, [(H, 0, 1, 1), (IN, 1, 1, 1), (C, 0, 1, 1), (D, 0, 1, 1)]),
    ("bits bridge 16x max_gap", pts((C, 0, "bool"), (C, 100, "bool"), (C, 300, "bool")),
     {"max_gap": 7}, [(C, 0, 101, 2), (C, 300, 1, 1)]),
    ("unsorted input", pts((H, 5, "uint16"), (H, 0, "uint16")), {}, [(H, 0, 6, 2)]),
    ("overlap (bits of a register)", [
        ModbusPoint(name="w", table=H, address=3, type="bitfield"),
        ModbusPoint(name="w.b0", table=H, address=3, type="bool", bit=0),
    ], {}, [(H, 3, 1, 2)]),
    ("string spans", pts((H, 0, "string"), (H, 4, "uint16")), {}, [(H, 0, 5, 2)]),
]


@pytest.mark.parametrize(("name", "points", "wa", "expected"), CASES, ids=[c[0] for c in CASES])
def test_plan(name: str, points: list[ModbusPoint], wa: dict[str, object],
              expected: list[tuple[str, int, int, int]]) -> None:
    prof = Profile(vendor="t", model="t", points=points)
    blocks = plan_reads(points, prof, Workarounds.model_validate(wa))
    assert [(b.table, b.start, b.count, len(b.points)) for b in blocks] == expected


def test_one_based_addresses_shift_the_wire_address() -> None:
    points = pts((H, 1, "uint16"), (H, 2, "uint16"))
    prof = Profile(vendor="t", model="t", points=points)
    (block,) = plan_reads(points, prof, Workarounds(one_based_addresses=True))
    assert (block.start, block.wire_start, block.count) == (1, 0, 2)


def test_one_based_rejects_address_zero() -> None:
    points = pts((H, 0, "uint16"))
    prof = Profile(vendor="t", model="t", points=points)
    with pytest.raises(ConfigError, match="address 0"):
        plan_reads(points, prof, Workarounds(one_based_addresses=True))


def test_point_larger_than_read_limit() -> None:
    points = [ModbusPoint(name="s", table=H, address=0, type="string", count=10)]
    prof = Profile(vendor="t", model="t", points=points)
    with pytest.raises(ConfigError, match="max_registers_per_read"):
        plan_reads(points, prof, Workarounds(max_registers_per_read=8))


# -- learned refusals: a request that contains a refused range is never planned -------



def _plan(points: list[ModbusPoint], refused: list[tuple[str, int, int]],
          **wa: object) -> list[tuple[str, int, int]]:
    prof = Profile(vendor="t", model="t", points=points)
    rs = Refusals()
    for t, s, c in refused:
        rs.add(Refusal(t, s, c))
    return [(b.table, b.start, b.count)
            for b in plan_reads(points, prof, Workarounds.model_validate(wa), rs)]


def test_a_refused_block_splits_at_its_widest_gap() -> None:
    points = pts((IN, 0, "int32"), (IN, 2, "int32"), (IN, 12, "int32"), (IN, 20, "int32"))
    assert _plan(points, []) == [(IN, 0, 22)]
    # 0-21 refused: the widest gap (4..11) is where an unmapped register most likely is
    assert _plan(points, [(IN, 0, 22)]) == [(IN, 0, 4), (IN, 12, 10)]
    assert _plan(points, [(IN, 0, 22), (IN, 12, 10)]) == [(IN, 0, 4), (IN, 12, 2), (IN, 20, 2)]


def test_a_block_without_gaps_is_halved() -> None:
    points = pts(*[(H, i, "uint16") for i in range(10)])
    assert _plan(points, [(H, 0, 10)]) == [(H, 0, 5), (H, 5, 5)]


def test_refusals_elsewhere_or_on_another_table_change_nothing() -> None:
    points = pts((H, 0, "uint16"), (H, 5, "uint16"))
    assert _plan(points, [(IN, 0, 6), (H, 1, 10), (H, 100, 2)]) == [(H, 0, 6)]


def test_one_value_is_never_split() -> None:
    points = [ModbusPoint(name="w", table=H, address=3, type="bitfield"),
              ModbusPoint(name="w.b0", table=H, address=3, type="bool", bit=0),
              ModbusPoint(name="f", table=H, address=3, type="uint32")]
    assert len(atoms(points)) == 1
    assert _plan(points, [(H, 3, 2)]) == [(H, 3, 2)]
    prof = Profile(vendor="t", model="t", points=points)
    (block,) = plan_reads(points, prof, Workarounds())
    assert not block.splittable and split(block, prof, Workarounds()) is None


def test_one_based_profiles_learn_wire_addresses() -> None:
    points = pts((H, 1, "uint16"), (H, 9, "uint16"))
    assert _plan(points, [(H, 0, 9)], one_based_addresses=True) == [(H, 1, 1), (H, 9, 1)]
    assert _plan(points, [(H, 1, 9)], one_based_addresses=True) == [(H, 1, 9)]


def test_refusals_keep_only_the_smallest_facts() -> None:
    rs = Refusals()
    assert rs.add(Refusal(H, 0, 100))
    assert rs.add(Refusal(H, 40, 20))  # inside: the bigger one says nothing more
    assert [(r.start, r.count) for r in rs] == [(40, 20)]
    assert not rs.add(Refusal(H, 30, 50))  # contains a known one: nothing new
    assert rs.blocks(H, 40, 20) and rs.blocks(H, 0, 125) and not rs.blocks(H, 41, 20)


@st.composite
def _layout(draw: st.DrawFn) -> tuple[list[ModbusPoint], list[tuple[str, int, int]]]:
    addrs = sorted(draw(st.sets(st.integers(0, 300), min_size=1, max_size=40)))
    types = [draw(st.sampled_from(["uint16", "int32", "float64"])) for _ in addrs]
    points = [ModbusPoint(name=f"p{i}", table=H, address=a, type=t)
              for i, (a, t) in enumerate(zip(addrs, types, strict=True))]
    refused = draw(st.lists(st.tuples(st.just(H), st.integers(0, 300), st.integers(1, 60)),
                            max_size=8))
    return points, refused


@settings(max_examples=300, deadline=None)
@given(_layout(), st.integers(0, 20), st.integers(4, 125))
def test_plans_avoid_refusals_and_serve_every_point_once(
        layout: tuple[list[ModbusPoint], list[tuple[str, int, int]]], gap: int,
        limit: int) -> None:
    points, refused = layout
    prof = Profile(vendor="t", model="t", points=points)
    rs = Refusals()
    for t, s, c in refused:
        rs.add(Refusal(t, s, c))
    blocks = plan_reads(points, prof, Workarounds(max_gap=gap, max_registers_per_read=limit),
                        rs)
    served = [p.name for b in blocks for p in b.points]
    assert sorted(served) == sorted(p.name for p in points)
    for b in blocks:
        assert b.count <= limit
        assert all(b.start <= p.address and p.address + p.size <= b.start + b.count
                   for p in b.points)
        # a block still holding a refused range is one value: nothing smaller to ask
        assert not b.splittable or not rs.blocks(b.table, b.wire_start, b.count)
