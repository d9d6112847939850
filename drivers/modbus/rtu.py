"""The serial link: Modbus RTU through pymodbus's client (one per line, shared by the unit
ids on it), answering as every link does (``drivers/modbus/link.py``)."""

from __future__ import annotations

import asyncio
import struct

from pymodbus.client import AsyncModbusSerialClient
from pymodbus.exceptions import ConnectionException, ModbusException

from drivers.modbus.config import ModbusRtu
from drivers.modbus.link import NoResponse, pack_bits
from gateway.errors import DeviceUnreachable, ProtocolError


class RtuLink:
    """A serial line through pymodbus's RTU client (shared by the unit ids on it)."""

    def __init__(self, conn: ModbusRtu) -> None:
        # reconnect_delay=0 turns pymodbus' own reconnect loop off: the gateway owns it.
        self.client = AsyncModbusSerialClient(
            conn.port, baudrate=conn.baudrate, parity=conn.parity, stopbits=conn.stopbits,
            bytesize=conn.bytesize, timeout=conn.timeout, retries=conn.retries,
            reconnect_delay=0)
        self.lock = asyncio.Lock()
        self.where = conn.port

    @property
    def connected(self) -> bool:
        return bool(self.client.connected)

    async def connect(self) -> None:
        try:
            ok = await self.client.connect()
        except (OSError, ModbusException) as exc:
            raise DeviceUnreachable(f"connect failed: {exc}") from exc
        if not ok:
            raise DeviceUnreachable(f"connect failed: {self.where}")

    async def _call(self, method: str, *args: object, **kw: object) -> object:
        try:
            return await getattr(self.client, method)(*args, **kw)
        except ConnectionException as exc:
            raise DeviceUnreachable(f"connection lost: {exc}") from exc
        except ModbusException as exc:
            # no answer within timeout x (retries + 1), or an unusable frame
            if not self.connected:
                raise DeviceUnreachable(f"connection lost: {self.where}") from exc
            if "No response" in str(exc):
                raise NoResponse(f"no response: {self.where}") from exc
            raise ProtocolError(f"bad response: {exc}") from exc

    async def read(self, table: str, address: int, count: int, unit: int) -> bytes | int:
        method = {"holding": "read_holding_registers", "input": "read_input_registers",
                  "coil": "read_coils", "discrete": "read_discrete_inputs"}[table]
        resp = await self._call(method, address, count=count, device_id=unit)
        if resp.isError():  # type: ignore[attr-defined]
            return int(resp.exception_code)  # type: ignore[attr-defined]
        if table in ("coil", "discrete"):
            return pack_bits(list(resp.bits))  # type: ignore[attr-defined]
        regs = resp.registers  # type: ignore[attr-defined]
        return struct.pack(f">{len(regs)}H", *regs)

    async def write_coil(self, address: int, value: bool, unit: int) -> int | None:
        resp = await self._call("write_coil", address, value, device_id=unit)
        return int(resp.exception_code) if resp.isError() else None  # type: ignore[attr-defined]

    async def write_registers(self, address: int, values: list[int], unit: int) -> int | None:
        resp = await self._call("write_registers", address, values, device_id=unit)
        return int(resp.exception_code) if resp.isError() else None  # type: ignore[attr-defined]

    def close(self) -> None:
        self.client.close()
