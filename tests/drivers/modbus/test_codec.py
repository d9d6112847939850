"""Decoding every data type in every byte/word order: golden cases and properties."""

from __future__ import annotations

import math
import struct

import pytest
from firmware_sim.registers import encode as sim_encode
from hypothesis import given
from hypothesis import strategies as st

from drivers.modbus.codec import RegisterBlockDecoder, RegisterSpec, encode_registers
from gateway.profiles import ModbusPoint, Profile


def regs(hexstr: str) -> list[int]:
    raw = bytes.fromhex(hexstr)
    return list(struct.unpack(f">{len(raw) // 2}H", raw))


# (type, byte_order, word_order, wire bytes as hex, expected value)
GOLDEN = [
    ("uint16", "big", "big", "1234", 0x1234),
    ("uint16", "little", "big", "3412", 0x1234),
    ("int16", "big", "big", "fff6", -10),
    ("int16", "little", "little", "f6ff", -10),
    ("uint32", "big", "big", "12345678", 0x12345678),
    ("uint32", "big", "little", "56781234", 0x12345678),
    ("uint32", "little", "big", "34127856", 0x12345678),
    ("uint32", "little", "little", "78563412", 0x12345678),
    ("int32", "big", "big", "fffffffe", -2),
    ("int32", "big", "little", "fffeffff", -2),
    ("float32", "big", "big", "41460000", 12.375),
    ("float32", "big", "little", "00004146", 12.375),
    ("float32", "little", "big", "46410000", 12.375),
    ("float32", "little", "little", "00004641", 12.375),
    ("int64", "big", "big", "fffffffffffffffb", -5),
    ("uint64", "big", "big", "0001000200030004", 0x0001000200030004),
    ("uint64", "big", "little", "0004000300020001", 0x0001000200030004),
    ("float64", "big", "big", "400921fb54442d18", math.pi),
    ("float64", "big", "little", "2d185444 21fb4009".replace(" ", ""), math.pi),
    ("float64", "little", "little", "182d4454fb210940", math.pi),
    ("bitfield", "big", "big", "00a5", 0xA5),
]


@pytest.mark.parametrize(("typ", "bo", "wo", "wire", "expected"),
                         [g for g in GOLDEN if g[4] is not None])
def test_golden_decode(typ: str, bo: str, wo: str, wire: str, expected: object) -> None:
    size = len(wire) // 4
    dec = RegisterBlockDecoder(size, [RegisterSpec(typ, 0, size, bo, wo)])
    assert dec.decode_registers(regs(wire)) == [expected]


@pytest.mark.parametrize(("bo", "wire", "text"), [
    ("big", "4142434400000000", "ABCD"),
    ("little", "4241444300000000", "ABCD"),
    ("big", "4142432000000000", "ABC"),  # space padding stripped
])
def test_strings(bo: str, wire: str, text: str) -> None:
    dec = RegisterBlockDecoder(4, [RegisterSpec("string", 0, 4, bo)])
    assert dec.decode_registers(regs(wire)) == [text]


@pytest.mark.parametrize(("bo", "wire", "bit", "expected"), [
    ("big", "0001", 0, True), ("big", "0001", 8, False), ("big", "8000", 15, True),
    ("little", "0100", 0, True), ("little", "0080", 15, True), ("little", "0001", 0, False),
])
def test_register_bits(bo: str, wire: str, bit: int, expected: bool) -> None:
    dec = RegisterBlockDecoder(1, [RegisterSpec("bool", 0, 1, bo, bit=bit)])
    assert dec.decode_registers(regs(wire)) == [expected]


def test_block_fast_path_with_gaps_and_strings() -> None:
    specs = [RegisterSpec("uint16", 0, 1), RegisterSpec("float32", 3, 2),
             RegisterSpec("string", 5, 2), RegisterSpec("int16", 9, 1)]
    dec = RegisterBlockDecoder(10, specs)
    assert dec._fast is not None
    block = regs("0007" + "0000" * 2 + "41460000" + "4f4b0000" + "0000" * 2 + "ffff")
    assert dec.decode_registers(block) == [7, 12.375, "OK", -1]


def test_short_block_is_an_error() -> None:
    dec = RegisterBlockDecoder(4, [RegisterSpec("uint32", 2, 2)])
    with pytest.raises(ValueError, match="short response"):
        dec.decode_registers([1, 2, 3])


TYPES = ["int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"]
RANGES = {"int16": 15, "int32": 31, "int64": 63}


def _value_for(typ: str, data: st.DataObject) -> int | float:
    if typ.startswith("float"):
        width = 32 if typ == "float32" else 64
        return data.draw(st.floats(allow_nan=False, allow_infinity=False, width=width))
    bits = int(typ.removeprefix("u").removeprefix("int"))
    if typ.startswith("u"):
        return data.draw(st.integers(0, 2**bits - 1))
    return data.draw(st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1))


@given(data=st.data(), typ=st.sampled_from(TYPES), bo=st.sampled_from(["big", "little"]),
       wo=st.sampled_from(["big", "little"]))
def test_roundtrip_against_simulator_encoder(data: st.DataObject, typ: str, bo: str,
                                             wo: str) -> None:
    """The simulator's independent encoder and the gateway's decoder agree, and so does
    the gateway's own encoder for writes."""
    value = _value_for(typ, data)
    point = ModbusPoint(name="x", table="holding", address=0, type=typ, byte_order=bo,
                        word_order=wo)
    profile = Profile(vendor="t", model="t", points=[point])
    wire = sim_encode(point, profile, value)
    spec = RegisterSpec(typ, 0, point.size, bo, wo)
    registers = list(struct.unpack(f">{point.size}H", wire))
    assert RegisterBlockDecoder(point.size, [spec]).decode_registers(registers) == [value]
    assert encode_registers(spec, value) == registers


@given(st.lists(st.tuples(st.sampled_from(TYPES), st.integers(0, 3)), min_size=1, max_size=8),
       st.data())
def test_fast_and_slow_paths_agree(layout: list[tuple[str, int]], data: st.DataObject) -> None:
    specs, pos = [], 0
    for typ, gap in layout:
        pos += gap
        size = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}.get(typ, 4)
        specs.append(RegisterSpec(typ, pos, size))
        pos += size
    block = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=pos, max_size=pos))
    fast = RegisterBlockDecoder(pos, specs)
    assert fast._fast is not None
    slow = RegisterBlockDecoder(pos, [*specs])
    slow._fast = None
    slow._slow = [(2 * s.offset, 2 * (s.offset + s.size), s.decoder()) for s in specs]
    a, b = fast.decode_registers(block), slow.decode_registers(block)
    def nan_safe(vals: list[object]) -> list[object]:
        return ["nan" if isinstance(x, float) and math.isnan(x) else x for x in vals]

    assert nan_safe(a) == nan_safe(b)


def test_encode_rejects_out_of_range_and_fractions() -> None:
    with pytest.raises(ValueError, match="out of range"):
        encode_registers(RegisterSpec("uint16", 0, 1), 70000)
    with pytest.raises(ValueError, match="whole number"):
        encode_registers(RegisterSpec("int32", 0, 2), 1.5)
    with pytest.raises(ValueError, match="read-modify-write"):
        encode_registers(RegisterSpec("bool", 0, 1, bit=3), True)
