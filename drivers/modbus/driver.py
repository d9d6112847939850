"""Modbus TCP/RTU driver: coalesced reads, explicit timeouts, one lock per serial bus.

A coalesced read the device refuses (exception 2 or 3, or no answer to a long read
while a short one is answered) is split in two and the parts are asked at once, in the
same poll, down to the points' own extents (``plan.split``). When some part answers,
the refusal is learned (``plan.Refusals``), logged once with the workaround that would
encode it in the profile, kept in the state directory (``learn.py``) and planned around
from then on; a device that refuses every part (a fault, not its register map) teaches
nothing and is asked the whole block again after ``RETRY_SPLIT`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Sequence

from drivers.base import Device, DriverContext, DriverMetric
from drivers.modbus.codec import RegisterSpec, encode_registers
from drivers.modbus.config import ModbusRtu, ModbusTcp
from drivers.modbus.learn import LearnedLimits
from drivers.modbus.link import Link, NoResponse
from drivers.modbus.plan import BIT_TABLES, Block, Refusal, atoms, plan_reads, split
from drivers.modbus.tcp import TcpLink
from gateway.errors import ProtocolError, WriteRejected
from gateway.model import Reading, Value
from gateway.profiles import ModbusPoint, Point, modbus_points

# pymodbus (the RTU link) logs every timeout at ERROR; the gateway logs device faults
# itself, once per fault with a rate-limited summary, so silence the library below
# CRITICAL.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
log = logging.getLogger("edgegw.modbus")

EXCEPTION_NAMES = {
    1: "illegal function", 2: "illegal data address", 3: "illegal data value",
    4: "server device failure", 5: "acknowledge", 6: "server device busy",
    8: "memory parity error", 10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
#: exception codes that may mean "this request, not these registers": split and retry
SPLIT_ON = frozenset({2, 3})
#: a block whose every part was refused is asked whole for this long before splitting again
RETRY_SPLIT = 60.0


def _make_link(conn: ModbusTcp | ModbusRtu) -> Link:
    if isinstance(conn, ModbusTcp):
        return TcpLink(conn.host, conn.port, conn.timeout, conn.retries)
    from drivers.modbus.rtu import RtuLink  # pymodbus, imported only for serial lines

    return RtuLink(conn)


def exception_reason(code: int) -> str:
    return f"modbus exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')})"


class ModbusDriver:
    """Driver for one Modbus device (TCP connection or unit id on a serial bus)."""

    streaming = False

    def __init__(self, device: Device, ctx: DriverContext) -> None:
        self.device = device
        conn = device.connection
        assert isinstance(conn, ModbusTcp | ModbusRtu)
        self._conn = conn
        self._wa = device.workarounds
        self._unit = self._wa.unit_id if self._wa.unit_id is not None else conn.unit_id
        if isinstance(conn, ModbusRtu):
            key: object = ("modbus-rtu", conn.port)  # devices on one line share the bus
            link = ctx.shared.get(key)
            if link is None:
                link = ctx.shared[key] = _make_link(conn)
            self._link: Link = link  # type: ignore[assignment]
        else:
            self._link = _make_link(conn)
        self._plans: dict[int, tuple[Sequence[Point], list[Block]]] = {}
        self._delay = self._wa.inter_request_delay
        learn_dir = ctx.learn_dir("modbus")
        self.limits = LearnedLimits(
            learn_dir / f"{device.id}.json" if learn_dir else None, device.id, self._describe())
        if self.limits.refused:
            log.info("device %s: %d refused request range(s) learned earlier (%s)",
                     device.id, len(self.limits.refused), self.limits.path)
        #: refusals learned since start (a counter for /metrics)
        self.splits = 0
        #: (table, wire start, count) -> until when a fully refused block is asked whole
        self._hopeless: dict[tuple[str, int, int], float] = {}

    @property
    def connected(self) -> bool:
        return self._link.connected

    async def connect(self) -> None:
        if self.connected:
            return
        async with self._link.lock:
            if not self.connected:
                await self._link.connect()

    def _describe(self) -> str:
        conn = self._conn
        if isinstance(conn, ModbusTcp):
            return f"{conn.host}:{conn.port} unit {self._unit}"
        return f"{conn.port} unit {self._unit}"

    def plan(self, points: Sequence[Point]) -> list[Block]:
        cached = self._plans.get(id(points))
        if cached is None or cached[0] is not points:
            cached = (points, plan_reads(modbus_points(points), self.device.profile, self._wa,
                                         self.limits.refused))
            self._plans[id(points)] = cached
        return cached[1]

    def forget(self) -> None:
        """Drop the learned request limits (``edgegw read --relearn``)."""
        self.limits.forget()
        self._plans.clear()

    async def read(self, points: Sequence[Point]) -> list[Reading]:
        out: list[Reading] = []
        for block in self.plan(points):
            r = await self._read_block(block)
            if isinstance(r, str):  # refused as one request: ask for its parts
                out.extend(await self._read_parts(block, r))
            else:
                out.append(r)
        return out

    async def _read_parts(self, block: Block, reason: str) -> list[Reading]:
        """Read a refused block's parts now, splitting further what is refused too. The
        refusals are learned only when some part answers: a device that refuses every
        part has a fault (or nothing mapped there), which a split plan would not cure;
        such a block is asked whole for ``RETRY_SPLIT`` seconds before the next try."""
        key = (block.table, block.wire_start, block.count)
        if time.monotonic() < self._hopeless.get(key, 0.0):
            return [self._bad(block, f"{reason} at {block.describe()}")]
        refused: list[tuple[Block, str]] = [(block, reason)]
        out: list[Reading] = []
        answered = False

        async def parts(b: Block) -> None:
            nonlocal answered
            halves = split(b, self.device.profile, self._wa)
            assert halves is not None  # only splittable blocks are refused
            for part in halves:
                r = await self._read_block(part)
                if isinstance(r, str):
                    refused.append((part, r))
                    await parts(part)
                else:
                    answered = answered or r.error is None
                    out.append(r)

        await parts(block)
        if not answered:
            self._hopeless[key] = time.monotonic() + RETRY_SPLIT
            return [self._bad(block, f"{reason} at {block.describe()}, and at every part "
                              "of it")]
        self._hopeless.pop(key, None)
        for b, why in refused:
            self._learn(b, why)
        self._plans.clear()  # the next cycle plans around what was learned
        return out

    def _learn(self, block: Block, reason: str) -> None:
        r = Refusal(block.table, block.wire_start, block.count, reason)
        if not self.limits.add(r):
            return
        self.splits += 1
        halves = split(block, self.device.profile, self._wa)
        assert halves is not None
        left, right = halves
        gap = right.start - (left.start + left.count)
        bits = block.table in BIT_TABLES
        # exception 2 over a gap: an unmapped register there; exception 3 (illegal data
        # value) or no answer: too many registers for this device
        if gap > 0 and reason == exception_reason(2):
            hint = (f"max_gap: {(gap - 1) // 16 if bits else gap - 1}" if gap > 1
                    else "no_gap_filling: true")
        else:
            hint = (f"max_{'bits' if bits else 'registers'}_per_read: "
                    f"{max(left.count, right.count)}")
        where = f"kept in {self.limits.path}" if self.limits.path else "until restart"
        log.warning("device %s: refuses %s, %d %s: %s; asking for %s and %s instead from "
                    "now on (%s); to encode it in the profile: workarounds: {%s}",
                    self.device.id, block.describe(), block.count, block.unit, reason,
                    left.describe(), right.describe(), where, hint)

    async def _request(self, table: str, wire: int, count: int) -> bytes | int:
        """The answer's data bytes, or the device's exception code."""
        async with self._link.lock:
            try:
                return await self._link.read(table, wire, count, self._unit)
            finally:
                if self._delay:
                    await asyncio.sleep(self._delay)

    def _bad(self, block: Block, reason: str) -> Reading:
        return Reading(block.names, [None] * len(block.points), time.time(), reason)

    async def _read_block(self, block: Block) -> Reading | str:
        """The block's reading, or (a splittable block the device refused as one request)
        the reason of the refusal."""
        try:
            resp = await self._request(block.table, block.wire_start, block.count)
        except ProtocolError as exc:
            return self._bad(block, exc.reason)
        except NoResponse:
            # a device that answers a short read but not this one refuses long reads
            if not block.splittable or not await self._answers(block):
                raise
            return f"no response within {self._conn.timeout:g} s x {self._conn.retries + 1}"
        ts = time.time()
        if resp.__class__ is int:  # the device answered with an exception
            if resp in SPLIT_ON and block.splittable:
                return exception_reason(resp)
            return self._bad(block, f"{exception_reason(resp)} at {block.describe()}")
        assert isinstance(resp, bytes)
        try:
            if block.table in BIT_TABLES:
                if len(resp) * 8 < block.count:
                    raise ValueError(f"short response: {len(resp) * 8} of {block.count} bits")
                values: list[Value] = [bool(resp[o >> 3] >> (o & 7) & 1)
                                       for o in block.bit_offsets]
            else:
                assert block.decoder is not None
                values = block.decoder.decode(resp)
        except (ValueError, IndexError, UnicodeError, struct.error) as exc:
            return Reading(
                block.names, [None] * len(block.points), ts, f"decode error: {exc}"
            )
        return Reading(block.names, values, ts)

    async def _answers(self, block: Block) -> bool:
        """Whether the device answers a read of the block's first value alone (after the
        whole block timed out); False when it times out too: the device is gone."""
        first = atoms(block.points)[0]
        size = max(p.address + p.size for p in first) - block.start
        try:
            await self._request(block.table, block.wire_start, size)
        except NoResponse:
            return False
        except ProtocolError:
            return True  # an answer, if a bad one
        return True

    async def write(self, point: Point, value: Value) -> None:
        if not isinstance(point, ModbusPoint):
            raise TypeError(f"{point.name} is not a Modbus point")
        if point.access != "rw":
            raise WriteRejected(f"point '{point.name}' is read-only (access: r)")
        wire = point.address - 1 if self._wa.one_based_addresses else point.address
        raw: Value = value
        if point.scaled and not isinstance(value, bool | str):
            raw = (float(value) - point.offset) / point.scale  # type: ignore[arg-type]
            if point.type not in ("float32", "float64"):
                raw = round(raw)
        link = self._link
        async with link.lock:
            if point.table == "coil":
                if not isinstance(raw, bool | int) or raw not in (0, 1):
                    raise WriteRejected(f"coil '{point.name}' takes true/false or 0/1")
                code = await link.write_coil(wire, bool(raw), self._unit)
            else:
                spec = RegisterSpec(
                    point.type, 0, point.size,
                    self.device.profile.byte_order_of(point),
                    self.device.profile.word_order_of(point), point.bit,
                )
                try:
                    regs = encode_registers(spec, raw)
                except (ValueError, TypeError) as exc:
                    raise WriteRejected(f"{point.name}: {exc}") from None
                code = await link.write_registers(wire, regs, self._unit)
        if code is not None:
            raise ProtocolError(exception_reason(code))

    def explain(self, points: Sequence[Point]) -> list[str]:
        lines = []
        for b in self.plan(points):
            last = b.wire_start + b.count - 1
            span = f"{b.wire_start}" if b.count == 1 else f"{b.wire_start}-{last}"
            lines.append(f"fc {b.function_code}  {b.table:8} {span:>11}  {b.count:3} {b.unit:9}  "
                         f"{' '.join(b.names)}")
        return lines

    def explain_limits(self) -> list[str]:
        """What the device refused (learned), and the profile workaround that says it."""
        refused = list(self.limits.refused)
        if not refused:
            return []
        where = self.limits.path or "memory"
        lines = [f"refused by the device, learned ({where}):"]
        lines += [f"  {r.describe()}: {r.reason}  (since {self.limits.learned.get(r) or '?'})"
                  for r in refused]
        return lines

    def metrics(self) -> list[DriverMetric]:
        requests = sum(len(blocks) for _, blocks in self._plans.values())
        return [
            DriverMetric("modbus_requests_per_cycle", "gauge", "read requests of one cycle "
                         "of every poll group, as planned now", requests),
            DriverMetric("modbus_refused_ranges", "gauge", "request ranges the device "
                         "refused, learned and planned around", len(self.limits.refused)),
            DriverMetric("modbus_refusals_learned_total", "counter", "refused requests "
                         "learned since start (each split once)", self.splits),
        ]

    async def close(self) -> None:
        # A serial bus is shared by several unit ids: one silent unit must not take the
        # line from the others, so the bus is closed by DriverContext.close() at shutdown.
        if isinstance(self.device.connection, ModbusTcp):
            self._link.close()
