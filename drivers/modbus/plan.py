"""Request coalescing: merge adjacent and near points of one table into few reads.

Points are sorted by address and packed greedily into blocks of at most
``max_registers_per_read`` registers (``max_bits_per_read`` bits for coils/discrete
inputs), bridging gaps of up to ``max_gap`` registers (``16 * max_gap`` bits). With
``no_gap_filling`` only touching or overlapping points share a read, for devices that
reject reads over unmapped addresses. ``one_based_addresses`` shifts every request by
-1, for profiles copied from manuals that number registers from 1.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from drivers.modbus.codec import RegisterBlockDecoder, RegisterSpec
from gateway.errors import ConfigError
from gateway.profiles import ModbusPoint, Profile, Workarounds

BIT_TABLES = ("coil", "discrete")


@dataclass(slots=True)
class Block:
    """One read request and the points it serves."""

    table: str
    start: int  # address as written in the profile
    count: int  # registers or bits
    points: list[ModbusPoint]
    wire_start: int  # address on the wire (after one-based shift)
    decoder: RegisterBlockDecoder | None = None  # None for bit tables
    bit_offsets: tuple[int, ...] = ()
    names: tuple[str, ...] = ()  # one tuple per block, reused by every Reading

    def __post_init__(self) -> None:
        self.names = tuple(p.name for p in self.points)


def plan_reads(points: Iterable[ModbusPoint], profile: Profile, wa: Workarounds) -> list[Block]:
    """Coalesce ``points`` into read blocks, table by table, in address order."""
    by_table: dict[str, list[ModbusPoint]] = {}
    for p in points:
        by_table.setdefault(p.table, []).append(p)
    blocks: list[Block] = []
    for table in ("holding", "input", "coil", "discrete"):
        pts = sorted(by_table.get(table, []), key=lambda p: (p.address, p.size))
        if not pts:
            continue
        bits = table in BIT_TABLES
        limit = wa.max_bits_per_read if bits else wa.max_registers_per_read
        gap = 0 if wa.no_gap_filling else (wa.max_gap * 16 if bits else wa.max_gap)
        current: list[ModbusPoint] = []
        start = end = 0
        for p in pts:
            if p.size > limit:
                raise ConfigError(
                    [(p.name, f"spans {p.size} registers, more than max_registers_per_read "
                      f"({limit})")]
                )
            p_end = p.address + p.size
            if current and p.address - end <= gap and max(end, p_end) - start <= limit:
                current.append(p)
                end = max(end, p_end)
                continue
            if current:
                blocks.append(_block(table, start, end, current, profile, wa))
            current, start, end = [p], p.address, p_end
        blocks.append(_block(table, start, end, current, profile, wa))
    return blocks


def _block(
    table: str, start: int, end: int, points: list[ModbusPoint], profile: Profile, wa: Workarounds
) -> Block:
    wire = start - 1 if wa.one_based_addresses else start
    if wire < 0:
        raise ConfigError(
            [(points[0].name, "address 0 is invalid with one_based_addresses (first is 1)")]
        )
    block = Block(table, start, end - start, list(points), wire)
    if table in BIT_TABLES:
        block.bit_offsets = tuple(p.address - start for p in points)
    else:
        block.decoder = RegisterBlockDecoder(
            end - start,
            [
                RegisterSpec(
                    type=p.type, offset=p.address - start, size=p.size,
                    byte_order=profile.byte_order_of(p), word_order=profile.word_order_of(p),
                    bit=p.bit,
                )
                for p in points
            ],
        )
    return block
