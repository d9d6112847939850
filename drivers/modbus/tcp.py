"""Modbus TCP client: MBAP framing (Modbus Messaging on TCP/IP Implementation Guide
V1.0b, section 3.1.3) over one asyncio connection, one request at a time.

A request is one write and one future; its timer is the only other object. The answer
is matched by transaction id; an answer to an earlier request that timed out (a late
one) is dropped, never paired with the current request. Bytes that are not a Modbus TCP
frame (protocol id not 0, a length no PDU has) fail the request waiting now with a
``ProtocolError`` and are discarded: the next request starts on a clean buffer. An answer
with another unit id is accepted (TCP-to-RTU gateways and devices that answer as unit 0
or 255 do so).
"""

from __future__ import annotations

import asyncio
import struct
from typing import cast

from drivers.modbus.link import READ_FC, WRITE_COIL, WRITE_REGISTERS, NoResponse
from gateway.errors import DeviceUnreachable, ProtocolError

_MBAP = struct.Struct(">HHHB")
_READ = struct.Struct(">BHH")  # function code, address, count
_WRITE_COIL = struct.Struct(">BHH")
#: a PDU is at most 253 bytes; the MBAP length counts the unit id too
MAX_LENGTH = 254


class _Connection(asyncio.Protocol):
    """One TCP connection of a link; a closed one's late callbacks reach nothing."""

    def __init__(self, link: TcpLink) -> None:
        self.link = link
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # (uvloop's is not a subclass)

    def data_received(self, data: bytes) -> None:
        if self.link._conn is self:
            self.link._received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.link._conn is self:
            self.link._closed(exc)


class TcpLink:
    """One Modbus TCP connection (a device, or a TCP-to-RTU gateway for several units)."""

    def __init__(self, host: str, port: int, timeout: float, retries: int) -> None:
        self.host, self.port = host, port
        self.timeout = timeout
        self.retries = retries
        self.lock = asyncio.Lock()
        self._conn: _Connection | None = None
        self._buf = bytearray()
        self._tid = 0
        #: the request waiting for its answer: (transaction id, future)
        self._waiting: tuple[int, asyncio.Future[bytes]] | None = None

    def _where(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        return self._conn is not None

    async def connect(self) -> None:
        if self._conn is not None:
            return
        loop = asyncio.get_running_loop()
        self._buf.clear()
        try:
            async with asyncio.timeout(self.timeout):
                _, conn = await loop.create_connection(lambda: _Connection(self),
                                                       self.host, self.port)
        except TimeoutError:
            raise DeviceUnreachable(f"connect failed: {self._where()}: no answer within "
                                    f"{self.timeout:g} s") from None
        except OSError as exc:
            raise DeviceUnreachable(f"connect failed: {self._where()}: "
                                    f"{exc.strerror or exc}") from exc
        self._conn = conn

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and conn.transport is not None:
            conn.transport.abort()
        self._fail(DeviceUnreachable(f"connection lost: {self._where()}: closed"))

    def _closed(self, exc: Exception | None) -> None:
        self._conn = None
        self._fail(DeviceUnreachable(
            f"connection lost: {self._where()}: {exc or 'closed by the device'}"))

    def _fail(self, exc: Exception) -> None:
        w, self._waiting = self._waiting, None
        if w is not None and not w[1].done():
            w[1].set_exception(exc)

    def _received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        while len(buf) >= 7:
            tid, proto, length, _unit = _MBAP.unpack_from(buf)
            if proto != 0 or not 2 <= length <= MAX_LENGTH:
                buf.clear()
                self._fail(ProtocolError(
                    f"bad response: not a Modbus TCP frame (protocol id {proto}, length "
                    f"{length})"))
                return
            end = 6 + length
            if len(buf) < end:
                return
            pdu = bytes(buf[7:end])
            del buf[:end]
            w = self._waiting
            if w is not None and w[0] == tid:  # else: a late answer to a request given up
                self._waiting = None
                if not w[1].done():
                    w[1].set_result(pdu)

    # -- requests ------------------------------------------------------------------------
    async def _request(self, unit: int, pdu: bytes) -> bytes:
        """Send ``pdu`` (asked again after each timeout, up to ``retries`` times) and
        return the answer's PDU."""
        loop = asyncio.get_running_loop()
        for _ in range(self.retries + 1):
            conn = self._conn
            if conn is None or conn.transport is None:
                raise DeviceUnreachable(f"connection lost: {self._where()}")
            t = conn.transport
            self._tid = tid = (self._tid + 1) & 0xFFFF
            fut: asyncio.Future[bytes] = loop.create_future()
            self._waiting = (tid, fut)
            self._buf.clear()  # what is left belongs to a request given up
            t.write(_MBAP.pack(tid, 0, len(pdu) + 1, unit) + pdu)
            timer = loop.call_later(self.timeout, _expire, fut)
            try:
                return await fut
            except TimeoutError:
                continue
            finally:
                timer.cancel()
                if self._waiting is not None and self._waiting[1] is fut:
                    self._waiting = None
        raise NoResponse(f"no response: {self._where()} unit {unit} within "
                         f"{self.timeout:g} s x {self.retries + 1}")

    async def read(self, table: str, address: int, count: int, unit: int) -> bytes | int:
        fc = READ_FC[table]
        answer = await self._request(unit, _READ.pack(fc, address, count))
        code = _check(answer, fc)
        if code is not None:
            return code
        if len(answer) < 2 or answer[1] != len(answer) - 2:
            raise ProtocolError(f"bad response: byte count {answer[1] if len(answer) > 1 else '-'}"
                                f" with {max(0, len(answer) - 2)} data bytes")
        return answer[2:]

    async def write_coil(self, address: int, value: bool, unit: int) -> int | None:
        answer = await self._request(unit, _WRITE_COIL.pack(
            WRITE_COIL, address, 0xFF00 if value else 0))
        return _check(answer, WRITE_COIL)

    async def write_registers(self, address: int, values: list[int], unit: int) -> int | None:
        n = len(values)
        pdu = struct.pack(f">BHHB{n}H", WRITE_REGISTERS, address, n, 2 * n, *values)
        return _check(await self._request(unit, pdu), WRITE_REGISTERS)


def _expire(fut: asyncio.Future[bytes]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


def _check(answer: bytes, fc: int) -> int | None:
    """The exception code of an exception answer, None for a normal one; ProtocolError
    for an answer to another function."""
    if not answer:
        raise ProtocolError("bad response: empty PDU")
    if answer[0] == fc:
        return None
    if answer[0] == fc | 0x80:
        if len(answer) < 2:
            raise ProtocolError("bad response: exception without its code")
        return answer[1]
    raise ProtocolError(f"bad response: function code {answer[0]} to a request with {fc}")
