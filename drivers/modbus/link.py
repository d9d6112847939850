"""The two links a Modbus driver talks over: Modbus TCP (our own MBAP client) and a serial
line (pymodbus's RTU client), behind one small interface.

A read answers with the data bytes of the response (big-endian registers, or the packed
bits of a coil/discrete read, least significant bit first), or with the exception code
the device answered. A link raises :class:`NoResponse` when the device did not answer
within ``timeout x (retries + 1)``, ``DeviceUnreachable`` when the connection is gone and
``ProtocolError`` for an answer that is not a well-formed response to the request.

Why Modbus TCP is ours and not pymodbus's (measured, bench/README.md, issue 20): the
MBAP framing is a 7-byte header; pymodbus's transaction layer around it (a lock, a
future and a ``wait_for`` timer task per request, a framer, a PDU object decoding
register by register) cost more CPU per poll than decoding the registers themselves.
Here a request is one write and one future; the answer's bytes go to the block decoder
as they are. pymodbus keeps what it does well: RTU framing and timing on serial lines
(``drivers/modbus/rtu.py``, imported only when a serial device is configured).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from gateway.errors import DeviceUnreachable

#: the read function code of each table
READ_FC = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
WRITE_COIL, WRITE_REGISTERS = 5, 16


class NoResponse(DeviceUnreachable):
    """No answer within timeout x (retries + 1)."""


class Link(Protocol):
    lock: asyncio.Lock

    @property
    def connected(self) -> bool: ...

    async def connect(self) -> None:
        """Open the connection; DeviceUnreachable when it cannot."""

    async def read(self, table: str, address: int, count: int, unit: int) -> bytes | int:
        """The response's data bytes, or the exception code the device answered."""

    async def write_coil(self, address: int, value: bool, unit: int) -> int | None:
        """None when written, else the exception code."""

    async def write_registers(self, address: int, values: list[int], unit: int) -> int | None:
        """None when written, else the exception code."""

    def close(self) -> None: ...


def pack_bits(bits: list[bool]) -> bytes:
    """Bits as a coil/discrete response carries them: eight per byte, LSB first."""
    out = bytearray((len(bits) + 7) // 8)
    for i, b in enumerate(bits):
        if b:
            out[i >> 3] |= 1 << (i & 7)
    return bytes(out)
