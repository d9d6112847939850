"""The Modbus TCP link (drivers/modbus/tcp.py): against pymodbus's own server, which nobody
on this project wrote, and against a scripted server that misbehaves as devices and
TCP-to-RTU gateways do (late answers, garbage, answers cut into pieces, another unit id,
a dropped connection)."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator, Callable

import pytest
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.modbus.link import NoResponse
from drivers.modbus.tcp import TcpLink
from gateway.errors import DeviceUnreachable, ProtocolError
from tests.support.servers import free_port

pytestmark = pytest.mark.component

MBAP = struct.Struct(">HHHB")


@pytest.fixture
async def pymodbus_server() -> AsyncIterator[int]:
    hr = [SimData(0, values=list(range(100, 120)), datatype=DataType.REGISTERS)]
    ir = [SimData(0, values=[7, 8, 9], datatype=DataType.REGISTERS)]
    co = [SimData(0, values=[True, False, True, True, False, False, False, False, True],
                  datatype=DataType.BITS)]
    di = [SimData(0, values=[False, True], datatype=DataType.BITS)]
    port = free_port()
    server = ModbusTcpServer(SimDevice(1, simdata=(co, di, hr, ir)),
                             address=("127.0.0.1", port))
    task = asyncio.create_task(server.serve_forever())
    for _ in range(100):
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            break
        except OSError:
            await asyncio.sleep(0.02)
    yield port
    await server.shutdown()
    task.cancel()


async def test_reads_and_writes_against_pymodbus(pymodbus_server: int) -> None:
    link = TcpLink("127.0.0.1", pymodbus_server, timeout=1.0, retries=0)
    await link.connect()
    assert await link.read("holding", 0, 3, 1) == struct.pack(">3H", 100, 101, 102)
    assert await link.read("input", 1, 2, 1) == struct.pack(">2H", 8, 9)
    coils = await link.read("coil", 0, 9, 1)
    assert isinstance(coils, bytes) and coils[0] == 0b00001101 and coils[1] & 1 == 1
    di = await link.read("discrete", 0, 2, 1)
    assert isinstance(di, bytes) and di[0] & 0b11 == 0b10
    assert await link.read("holding", 500, 2, 1) == 2  # unmapped: exception 2
    assert await link.write_registers(4, [4711, 42], 1) is None
    assert await link.read("holding", 4, 2, 1) == struct.pack(">2H", 4711, 42)
    assert await link.write_coil(1, True, 1) is None
    coils = await link.read("coil", 0, 2, 1)
    assert isinstance(coils, bytes) and coils[0] & 0b11 == 0b11
    link.close()
    assert not link.connected


# -- a scripted server ----------------------------------------------------------------------
class Scripted:
    """Answers each request through ``answer(n, tid, pdu, writer)`` (n counts requests)."""

    def __init__(self, answer: Callable[[int, int, int, bytes, asyncio.StreamWriter],
                                        object]) -> None:
        self.answer = answer
        self.requests = 0
        self.port = free_port()
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Scripted:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _client(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while True:
                tid, _, length, unit = MBAP.unpack(await r.readexactly(7))
                pdu = await r.readexactly(length - 1)
                self.requests += 1
                res = self.answer(self.requests, tid, unit, pdu, w)
                if asyncio.iscoroutine(res):
                    await res
                await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            w.close()


def frame(tid: int, unit: int, pdu: bytes) -> bytes:
    return MBAP.pack(tid, 0, len(pdu) + 1, unit) + pdu


def registers(*values: int) -> bytes:
    return bytes((3, 2 * len(values))) + struct.pack(f">{len(values)}H", *values)


async def test_a_late_answer_is_never_paired_with_the_next_request() -> None:
    async def answer(n: int, tid: int, unit: int, pdu: bytes, w: asyncio.StreamWriter) -> None:
        if n == 1:  # too slow: answered after the client gave up (and asked again)
            await asyncio.sleep(0.3)
        w.write(frame(tid, unit, registers(n)))

    async with Scripted(answer) as srv:
        link = TcpLink("127.0.0.1", srv.port, timeout=0.2, retries=1)
        await link.connect()
        t0 = time.monotonic()
        # request 1 times out, request 2 (the retry) is answered only after request 1's
        # late answer: that one carries the old transaction id and is dropped
        assert await link.read("holding", 0, 1, 1) == struct.pack(">H", 2)
        assert time.monotonic() - t0 < 1.0
        assert await link.read("holding", 0, 1, 1) == struct.pack(">H", 3)
        link.close()


async def test_silence_is_no_response_after_every_retry() -> None:
    async with Scripted(lambda *a: None) as srv:
        link = TcpLink("127.0.0.1", srv.port, timeout=0.1, retries=2)
        await link.connect()
        t0 = time.monotonic()
        with pytest.raises(NoResponse, match=r"within 0.1 s x 3"):
            await link.read("holding", 0, 4, 1)
        assert 0.25 < time.monotonic() - t0 < 1.0
        assert srv.requests == 3
        link.close()


async def test_garbage_fails_the_request_at_once_and_the_next_one_reads() -> None:
    def answer(n: int, tid: int, unit: int, pdu: bytes, w: asyncio.StreamWriter) -> None:
        w.write(b"\x13\x37\xde\xad\xbe\xef\x00\x01\x02" if n == 1 else
                frame(tid, unit, registers(42)))

    async with Scripted(answer) as srv:
        link = TcpLink("127.0.0.1", srv.port, timeout=1.0, retries=0)
        await link.connect()
        t0 = time.monotonic()
        with pytest.raises(ProtocolError, match="not a Modbus TCP frame"):
            await link.read("holding", 0, 1, 1)
        assert time.monotonic() - t0 < 0.5  # not a timeout
        assert await link.read("holding", 0, 1, 1) == struct.pack(">H", 42)
        link.close()


async def test_an_answer_in_pieces_another_unit_and_a_short_one() -> None:
    async def answer(n: int, tid: int, unit: int, pdu: bytes, w: asyncio.StreamWriter) -> None:
        if n == 1:  # byte by byte, as a slow serial gateway forwards it
            for b in frame(tid, unit, registers(1, 2, 3)):
                w.write(bytes((b,)))
                await w.drain()
                await asyncio.sleep(0.001)
        elif n == 2:  # a TCP-to-RTU gateway answering as unit 0
            w.write(frame(tid, 0, registers(5)))
        elif n == 3:  # byte count 4, but 2 bytes of data
            w.write(frame(tid, unit, bytes((3, 4, 0, 1))))
        else:  # the answer to another function
            w.write(frame(tid, unit, bytes((4, 2, 0, 1))))

    async with Scripted(answer) as srv:
        link = TcpLink("127.0.0.1", srv.port, timeout=1.0, retries=0)
        await link.connect()
        assert await link.read("holding", 0, 3, 7) == struct.pack(">3H", 1, 2, 3)
        assert await link.read("holding", 0, 1, 7) == struct.pack(">H", 5)
        with pytest.raises(ProtocolError, match="byte count 4 with 2 data bytes"):
            await link.read("holding", 0, 2, 7)
        with pytest.raises(ProtocolError, match="function code 4 to a request with 3"):
            await link.read("holding", 0, 1, 7)
        link.close()


async def test_a_dropped_connection_is_unreachable_and_reconnects() -> None:
    def answer(n: int, tid: int, unit: int, pdu: bytes, w: asyncio.StreamWriter) -> None:
        if n == 1:
            w.close()
        else:
            w.write(frame(tid, unit, registers(9)))

    async with Scripted(answer) as srv:
        link = TcpLink("127.0.0.1", srv.port, timeout=1.0, retries=0)
        await link.connect()
        with pytest.raises(DeviceUnreachable, match="connection lost"):
            await link.read("holding", 0, 1, 1)
        assert not link.connected
        await link.connect()
        assert await link.read("holding", 0, 1, 1) == struct.pack(">H", 9)
        link.close()


async def test_nobody_listening_is_unreachable() -> None:
    link = TcpLink("127.0.0.1", free_port(), timeout=1.0, retries=0)
    with pytest.raises(DeviceUnreachable, match="connect failed"):
        await link.connect()
