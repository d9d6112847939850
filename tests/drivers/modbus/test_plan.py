"""Request coalescing plans, table-driven."""

from __future__ import annotations

import pytest

from drivers.modbus.plan import plan_reads
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
