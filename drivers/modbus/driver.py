"""Modbus TCP/RTU driver: coalesced reads, explicit timeouts, one lock per serial bus."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException

from drivers.base import DriverContext
from drivers.modbus.codec import RegisterSpec, encode_registers
from drivers.modbus.plan import BIT_TABLES, Block, plan_reads
from gateway.config import Device, ModbusRtu, ModbusTcp
from gateway.errors import DeviceUnreachable, ProtocolError, WriteRejected
from gateway.model import Reading, Value
from gateway.profiles import ModbusPoint, Point, modbus_points

# pymodbus logs every timeout at ERROR; the gateway logs device faults itself, once
# per fault with a rate-limited summary, so silence the library below CRITICAL.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

EXCEPTION_NAMES = {
    1: "illegal function", 2: "illegal data address", 3: "illegal data value",
    4: "server device failure", 5: "acknowledge", 6: "server device busy",
    8: "memory parity error", 10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
_READS = {
    "holding": "read_holding_registers", "input": "read_input_registers",
    "coil": "read_coils", "discrete": "read_discrete_inputs",
}

Client = AsyncModbusTcpClient | AsyncModbusSerialClient


@dataclass
class Bus:
    """One physical link: a TCP connection, or a serial line shared by several unit ids."""

    client: Client
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def close(self) -> None:
        self.client.close()


def _make_bus(conn: ModbusTcp | ModbusRtu) -> Bus:
    # reconnect_delay=0 turns pymodbus' own reconnect loop off: the gateway owns it.
    if isinstance(conn, ModbusTcp):
        return Bus(AsyncModbusTcpClient(
            conn.host, port=conn.port, timeout=conn.timeout, retries=conn.retries,
            reconnect_delay=0,
        ))
    return Bus(AsyncModbusSerialClient(
        conn.port, baudrate=conn.baudrate, parity=conn.parity, stopbits=conn.stopbits,
        bytesize=conn.bytesize, timeout=conn.timeout, retries=conn.retries,
        reconnect_delay=0,
    ))


def exception_reason(code: int) -> str:
    return f"modbus exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')})"


class ModbusDriver:
    """Driver for one Modbus device (TCP connection or unit id on a serial bus)."""

    streaming = False

    def __init__(self, device: Device, ctx: DriverContext) -> None:
        self.device = device
        conn = device.config.connection
        assert isinstance(conn, ModbusTcp | ModbusRtu)
        self._conn = conn
        self._wa = device.workarounds
        self._unit = self._wa.unit_id if self._wa.unit_id is not None else conn.unit_id
        if isinstance(conn, ModbusRtu):
            key: object = ("modbus-rtu", conn.port)  # devices on one line share the bus
            bus = ctx.shared.get(key)
            if bus is None:
                bus = ctx.shared[key] = _make_bus(conn)
            assert isinstance(bus, Bus)
            self._bus = bus
        else:
            self._bus = _make_bus(conn)
        self._plans: dict[int, tuple[Sequence[Point], list[Block]]] = {}
        self._delay = self._wa.inter_request_delay

    @property
    def connected(self) -> bool:
        return bool(self._bus.client.connected)

    async def connect(self) -> None:
        if self.connected:
            return
        async with self._bus.lock:
            if self.connected:
                return
            try:
                ok = await self._bus.client.connect()
            except (OSError, ModbusException) as exc:
                raise DeviceUnreachable(f"connect failed: {exc}") from exc
            if not ok:
                raise DeviceUnreachable(f"connect failed: {self._describe()}")

    def _describe(self) -> str:
        conn = self._conn
        if isinstance(conn, ModbusTcp):
            return f"{conn.host}:{conn.port} unit {self._unit}"
        return f"{conn.port} unit {self._unit}"

    def plan(self, points: Sequence[Point]) -> list[Block]:
        cached = self._plans.get(id(points))
        if cached is None or cached[0] is not points:
            cached = (points, plan_reads(modbus_points(points), self.device.profile, self._wa))
            self._plans[id(points)] = cached
        return cached[1]

    async def read(self, points: Sequence[Point]) -> list[Reading]:
        out: list[Reading] = []
        for block in self.plan(points):
            out.append(await self._read_block(block))
        return out

    async def _request(self, table: str, wire: int, count: int) -> object:
        method = getattr(self._bus.client, _READS[table])
        async with self._bus.lock:
            try:
                resp = await method(wire, count=count, device_id=self._unit)
            except ConnectionException as exc:
                raise DeviceUnreachable(f"connection lost: {exc}") from exc
            except ModbusException as exc:
                # no answer within timeout x (retries + 1), or an unusable frame
                if not self.connected or "No response" in str(exc):
                    raise DeviceUnreachable(f"no response: {self._describe()}") from exc
                raise ProtocolError(f"bad response: {exc}") from exc
            finally:
                if self._delay:
                    await asyncio.sleep(self._delay)
        return resp

    async def _read_block(self, block: Block) -> Reading:
        try:
            resp = await self._request(block.table, block.wire_start, block.count)
        except ProtocolError as exc:
            return Reading(block.names, [None] * len(block.points), time.time(), exc.reason)
        ts = time.time()
        if resp.isError():  # type: ignore[attr-defined]
            reason = exception_reason(resp.exception_code)  # type: ignore[attr-defined]
            return Reading(block.names, [None] * len(block.points), ts, reason)
        try:
            if block.table in BIT_TABLES:
                bits = resp.bits  # type: ignore[attr-defined]
                if len(bits) < block.count:
                    raise ValueError(f"short response: {len(bits)} of {block.count} bits")
                values: list[Value] = [bool(bits[o]) for o in block.bit_offsets]
            else:
                assert block.decoder is not None
                values = block.decoder.decode(resp.registers)  # type: ignore[attr-defined]
        except (ValueError, IndexError, UnicodeError) as exc:
            return Reading(
                block.names, [None] * len(block.points), ts, f"decode error: {exc}"
            )
        return Reading(block.names, values, ts)

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
        client = self._bus.client
        try:
            async with self._bus.lock:
                if point.table == "coil":
                    if not isinstance(raw, bool | int) or raw not in (0, 1):
                        raise WriteRejected(f"coil '{point.name}' takes true/false or 0/1")
                    resp = await client.write_coil(wire, bool(raw), device_id=self._unit)
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
                    resp = await client.write_registers(wire, regs, device_id=self._unit)
        except ConnectionException as exc:
            raise DeviceUnreachable(f"connection lost: {exc}") from exc
        except ModbusException as exc:
            raise DeviceUnreachable(f"no response: {exc}") from exc
        if resp.isError():
            raise ProtocolError(exception_reason(resp.exception_code))

    async def close(self) -> None:
        # A serial bus is shared by several unit ids: one silent unit must not take the
        # line from the others, so the bus is closed by DriverContext.close() at shutdown.
        if isinstance(self.device.config.connection, ModbusTcp):
            self._bus.close()
