"""Request coalescing: merge adjacent and near points of one table into few reads.

Points are sorted by address and packed greedily into blocks of at most
``max_registers_per_read`` registers (``max_bits_per_read`` bits for coils/discrete
inputs), bridging gaps of up to ``max_gap`` registers (``16 * max_gap`` bits). With
``no_gap_filling`` only touching or overlapping points share a read, for devices that
reject reads over unmapped addresses. ``one_based_addresses`` shifts every request by
-1, for profiles copied from manuals that number registers from 1.

Devices refuse some coalesced reads (an unmapped register inside a bridged gap, more
registers than they serve per request, a long read answered too late). Such a refusal
is a fact about the device: a request that *contains* a refused range is refused too.
:class:`Refusals` holds those facts, and :func:`plan_reads` never plans a request that
contains one: such a block is split (:func:`split`) until no part does. The split is
deterministic, so a plan is a pure function of the points, the workarounds and the
refusals; the driver learns refusals at run time and persists them
(``drivers/modbus/learn.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from drivers.modbus.codec import RegisterBlockDecoder, RegisterSpec
from gateway.errors import ConfigError
from gateway.profiles import ModbusPoint, Profile, Workarounds

BIT_TABLES = ("coil", "discrete")
#: the read function code of each table
FUNCTION_CODES = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}


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
    #: more than one value (or group of overlapping values): can be split
    splittable: bool = False

    def __post_init__(self) -> None:
        self.names = tuple(p.name for p in self.points)
        self.splittable = len(atoms(self.points)) > 1

    @property
    def function_code(self) -> int:
        return FUNCTION_CODES[self.table]

    @property
    def unit(self) -> str:
        return "bits" if self.table in BIT_TABLES else "registers"

    def describe(self) -> str:
        """``holding 100-119 (fc 3)``: the request as the device sees it (wire addresses)."""
        last = self.wire_start + self.count - 1
        span = f"{self.wire_start}" if self.count == 1 else f"{self.wire_start}-{last}"
        return f"{self.table} {span} (fc {self.function_code})"


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request the device refused: wire addresses ``start`` .. ``start + count - 1``."""

    table: str
    start: int
    count: int
    reason: str = ""

    @property
    def end(self) -> int:
        return self.start + self.count

    def within(self, table: str, start: int, count: int) -> bool:
        """Whether this refused range lies inside the request ``(table, start, count)``."""
        return table == self.table and start <= self.start and self.end <= start + count

    def describe(self) -> str:
        span = f"{self.start}" if self.count == 1 else f"{self.start}-{self.end - 1}"
        return f"{self.table} {span} (fc {FUNCTION_CODES[self.table]}, {self.count})"


@dataclass(slots=True)
class Refusals:
    """The refused requests of one device (its learned request limits)."""

    items: list[Refusal] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Refusal]:
        return iter(self.items)

    def add(self, r: Refusal) -> bool:
        """Record ``r``; False when an already known refusal lies inside it (nothing new)."""
        if self.blocks(r.table, r.start, r.count):
            return False
        # a refusal inside the new one makes the new one redundant, and the new one makes
        # redundant every known refusal that contains it
        self.items = [k for k in self.items if not r.within(k.table, k.start, k.count)]
        self.items.append(r)
        self.items.sort(key=lambda k: (k.table, k.start, k.count))
        return True

    def blocks(self, table: str, start: int, count: int) -> bool:
        """Whether the request ``(table, start, count)`` contains a refused range."""
        return any(r.within(table, start, count) for r in self.items)


def atoms(points: Sequence[ModbusPoint]) -> list[list[ModbusPoint]]:
    """Points in address order, grouped so that overlapping points (a bitfield and its
    bits, a word read both whole and as a value) stay in one group: a request never
    splits a group."""
    out: list[list[ModbusPoint]] = []
    end = -1
    for p in sorted(points, key=lambda p: (p.address, p.size)):
        if out and p.address < end:
            out[-1].append(p)
            end = max(end, p.address + p.size)
        else:
            out.append([p])
            end = p.address + p.size
    return out


def plan_reads(points: Iterable[ModbusPoint], profile: Profile, wa: Workarounds,
               refused: Refusals | None = None) -> list[Block]:
    """Coalesce ``points`` into read blocks, table by table, in address order; a block
    that would contain a refused range is split until none does."""
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
    if refused:
        blocks = [b for blk in blocks for b in avoid(blk, refused, profile, wa)]
    return blocks


def avoid(block: Block, refused: Refusals, profile: Profile, wa: Workarounds) -> list[Block]:
    """``block``, split (recursively) until no part contains a refused range."""
    if not refused.blocks(block.table, block.wire_start, block.count):
        return [block]
    parts = split(block, profile, wa)
    if parts is None:
        return [block]  # one value: nothing smaller to ask for
    return [b for part in parts for b in avoid(part, refused, profile, wa)]


def split(block: Block, profile: Profile, wa: Workarounds) -> tuple[Block, Block] | None:
    """Two smaller requests that together serve ``block``'s points, or None when the block
    is one value (or overlapping values). It splits at the widest gap between values
    (an unmapped register is most likely there); a block without gaps is halved."""
    groups = atoms(block.points)
    if len(groups) < 2:
        return None
    starts = [g[0].address for g in groups]
    ends = [max(p.address + p.size for p in g) for g in groups]
    middle = block.start + block.count / 2

    def score(i: int) -> tuple[int, float]:  # cut before groups[i]
        return starts[i] - ends[i - 1], -abs(starts[i] - middle)

    cut = max(range(1, len(groups)), key=score)
    left = [p for g in groups[:cut] for p in g]
    right = [p for g in groups[cut:] for p in g]
    return (_block(block.table, starts[0], ends[cut - 1], left, profile, wa),
            _block(block.table, starts[cut], max(ends[cut:]), right, profile, wa))


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
