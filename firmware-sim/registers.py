"""Register memory of one simulated device and the Modbus PDU handler over it.

Independent of the gateway's codec on purpose: tests of the gateway decode what this
module encodes, so the two implementations check each other.
"""

from __future__ import annotations

import struct

from gateway.profiles import ModbusPoint, ModbusQuirks, Profile, modbus_points

CODES = {
    "int16": "h", "uint16": "H", "bitfield": "H", "int32": "i", "uint32": "I",
    "float32": "f", "int64": "q", "uint64": "Q", "float64": "d",
}
LIMITS = {
    "int16": (-(2**15), 2**15 - 1), "uint16": (0, 2**16 - 1), "bitfield": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1), "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1), "uint64": (0, 2**64 - 1),
}

ILLEGAL_FUNCTION, ILLEGAL_ADDRESS, ILLEGAL_VALUE = 1, 2, 3


def encode(point: ModbusPoint, profile: Profile, value: object) -> bytes:
    """Wire bytes (register order) of ``value`` for a register point."""
    byte_order = point.byte_order or profile.byte_order
    word_order = point.word_order or profile.word_order
    if point.type == "string":
        raw = str(value).encode("latin-1")[: 2 * point.size].ljust(2 * point.size, b"\0")
        words = [raw[i : i + 2] for i in range(0, len(raw), 2)]
    else:
        code = CODES[point.type]
        if code in "fd":
            num: float | int = float(value)  # type: ignore[arg-type]
        else:
            lo, hi = LIMITS[point.type]
            num = min(max(int(value), lo), hi)  # type: ignore[call-overload]
        raw = struct.pack(">" + code, num)
        words = [raw[i : i + 2] for i in range(0, len(raw), 2)]
        if word_order == "little":
            words.reverse()
    if byte_order == "little":
        words = [w[::-1] for w in words]
    return b"".join(words)


class RegisterMap:
    """The four Modbus tables of one device; registers kept as big-endian bytes."""

    def __init__(self, profile: Profile | None, size: int = 0, strict: bool = False,
                 quirks: ModbusQuirks | None = None) -> None:
        points = modbus_points(profile.expanded_points()) if profile else []
        self.profile = profile
        # a profile written with one-based addresses puts register N at wire address N-1
        self.shift = 1 if profile and profile.workarounds.one_based_addresses else 0
        reg_end = {"holding": size, "input": size, "coil": size, "discrete": size}
        self.mapped: dict[str, bytearray] = {}
        for p in points:
            reg_end[p.table] = max(reg_end[p.table], p.address - self.shift + p.size)
        self.regs = {t: bytearray(2 * reg_end[t]) for t in ("holding", "input")}
        self.bits = {t: bytearray(reg_end[t]) for t in ("coil", "discrete")}
        self.strict = strict
        if strict:
            self.mapped = {t: bytearray(n) for t, n in reg_end.items()}
            for p in points:
                at = p.address - self.shift
                self.mapped[p.table][at : at + p.size] = b"\1" * p.size
        sim = profile.simulation if profile else None
        self.quirks = quirks or (sim.modbus if sim else ModbusQuirks())
        #: wire addresses that are the 2nd..nth register of a multi-register value
        self.inner: dict[str, set[int]] = {"holding": set(), "input": set()}
        for p in points:
            if p.table in self.inner and p.size > 1:
                at = p.address - self.shift
                self.inner[p.table].update(range(at + 1, at + p.size))

    # -- values ----------------------------------------------------------------------
    def set_point(self, point: ModbusPoint, value: object) -> None:
        assert self.profile is not None
        address = point.address - self.shift
        if point.table in ("coil", "discrete"):
            self.bits[point.table][address] = 1 if value else 0
            return
        mem = self.regs[point.table]
        at = 2 * address
        if point.type == "bool":
            byte_order = point.byte_order or self.profile.byte_order
            reg = int.from_bytes(mem[at : at + 2], "big" if byte_order == "big" else "little")
            reg = reg | (1 << (point.bit or 0)) if value else reg & ~(1 << (point.bit or 0))
            mem[at : at + 2] = reg.to_bytes(2, "big" if byte_order == "big" else "little")
            return
        mem[at : at + 2 * point.size] = encode(point, self.profile, value)

    def get_raw(self, table: str, address: int, count: int) -> bytes:
        return bytes(self.regs[table][2 * address : 2 * (address + count)])

    # -- Modbus PDUs -----------------------------------------------------------------
    def _check(self, table: str, address: int, count: int) -> int:
        """0 when the device serves this request, else the exception code it answers."""
        size = len(self.regs[table]) // 2 if table in self.regs else len(self.bits[table])
        q = self.quirks
        limit = q.max_bits if table in self.bits else q.max_registers
        if limit is not None and count > limit:
            return q.too_long_exception
        if address + count > size:
            return ILLEGAL_ADDRESS
        if self.strict and 0 in self.mapped[table][address : address + count]:
            return ILLEGAL_ADDRESS
        end = address + count
        for r in q.unmapped:
            if r.table == table and r.start - self.shift < end and address < r.end - self.shift:
                return ILLEGAL_ADDRESS
        inner = self.inner.get(table)
        if q.whole_values and inner and (address in inner or end in inner):
            return ILLEGAL_ADDRESS  # starts, or stops, inside a value
        return 0

    def handle(self, pdu: bytes) -> bytes:
        """Answer one request PDU (function code + data) with a response PDU."""
        if not pdu:
            return bytes([0x80, ILLEGAL_FUNCTION])
        fc = pdu[0]
        try:
            return self._dispatch(fc, pdu)
        except (struct.error, IndexError):
            return bytes([fc | 0x80, ILLEGAL_VALUE])

    def _dispatch(self, fc: int, pdu: bytes) -> bytes:  # noqa: C901 - one branch per Modbus function code and exception, as the spec lists them
        if fc in (3, 4):
            address, count = struct.unpack_from(">HH", pdu, 1)
            table = "holding" if fc == 3 else "input"
            if not 1 <= count <= 125:
                return bytes([fc | 0x80, ILLEGAL_VALUE])
            if code := self._check(table, address, count):
                return bytes([fc | 0x80, code])
            data = self.regs[table][2 * address : 2 * (address + count)]
            return bytes((fc, 2 * count)) + data
        if fc in (1, 2):
            address, count = struct.unpack_from(">HH", pdu, 1)
            table = "coil" if fc == 1 else "discrete"
            if not 1 <= count <= 2000:
                return bytes([fc | 0x80, ILLEGAL_VALUE])
            if code := self._check(table, address, count):
                return bytes([fc | 0x80, code])
            bits = self.bits[table][address : address + count]
            packed = bytearray((count + 7) // 8)
            for i, b in enumerate(bits):
                if b:
                    packed[i >> 3] |= 1 << (i & 7)
            return bytes((fc, len(packed))) + bytes(packed)
        if fc == 5:
            address, value = struct.unpack_from(">HH", pdu, 1)
            if value not in (0xFF00, 0):
                return bytes([fc | 0x80, ILLEGAL_VALUE])
            if code := self._check("coil", address, 1):
                return bytes([fc | 0x80, code])
            self.bits["coil"][address] = 1 if value else 0
            return pdu[:5]
        if fc == 6:
            address = struct.unpack_from(">H", pdu, 1)[0]
            if code := self._check("holding", address, 1):
                return bytes([fc | 0x80, code])
            self.regs["holding"][2 * address : 2 * address + 2] = pdu[3:5]
            return pdu[:5]
        if fc == 16:
            address, count, nbytes = struct.unpack_from(">HHB", pdu, 1)
            if not 1 <= count <= 123 or nbytes != 2 * count or len(pdu) < 6 + nbytes:
                return bytes([fc | 0x80, ILLEGAL_VALUE])
            if code := self._check("holding", address, count):
                return bytes([fc | 0x80, code])
            self.regs["holding"][2 * address : 2 * (address + count)] = pdu[6 : 6 + nbytes]
            return pdu[:5]
        if fc == 15:
            address, count, nbytes = struct.unpack_from(">HHB", pdu, 1)
            if not 1 <= count <= 1968 or nbytes != (count + 7) // 8:
                return bytes([fc | 0x80, ILLEGAL_VALUE])
            if code := self._check("coil", address, count):
                return bytes([fc | 0x80, code])
            packed_in = pdu[6 : 6 + nbytes]
            for i in range(count):
                self.bits["coil"][address + i] = (packed_in[i >> 3] >> (i & 7)) & 1
            return pdu[:5]
        return bytes([fc | 0x80, ILLEGAL_FUNCTION])
