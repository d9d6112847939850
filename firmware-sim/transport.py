"""Modbus TCP (MBAP) and RTU framing for simulated devices, with faults applied."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import struct
import termios
import tty
from collections.abc import Callable, Sequence
from typing import Protocol

from firmware_sim.faults import Fault

from drivers.serial.framing import crc16
from gateway.profiles import ModbusQuirks

MBAP = struct.Struct(">HHHB")


class Served(Protocol):
    """What a transport needs from a simulated device."""

    unit_id: int
    fault: Fault
    rng: random.Random
    requests: int
    quirks: ModbusQuirks

    def answer(self, pdu: bytes) -> bytes: ...


def answer_delay(dev: Served, unit: int, pdu: bytes) -> float | None:
    """How long the device takes to answer ``pdu`` sent to ``unit``: None when it never
    answers (a unit id it does not have, a silent fault), else seconds (0: at once)."""
    if dev.fault.kind in ("silence", "drop"):
        return None
    q = dev.quirks
    if unit in q.silent_units:
        return None
    delay = dev.fault.delay if dev.fault.kind == "slow" else 0.0
    if q.slow_reads is not None and len(pdu) >= 5 and pdu[0] in (1, 2, 3, 4) \
            and struct.unpack_from(">H", pdu, 3)[0] > q.slow_reads.over:
        delay += q.slow_reads.delay
    return delay


async def respond(dev: Served, unit: int, pdu: bytes, send: Callable[[bytes], None],
                  frame: Callable[[bytes], bytes]) -> None:
    """Apply the device's quirks and fault to the answer of ``pdu`` and send it (or not)."""
    dev.requests += 1
    delay = answer_delay(dev, unit, pdu)
    if delay is None:
        return
    fault = dev.fault
    response = bytes([pdu[0] | 128, fault.code]) if fault.kind == "exception" else dev.answer(pdu)
    if delay:
        await asyncio.sleep(delay)
        if dev.fault.kind in ("silence", "drop"):
            return
    if fault.kind == "garbage":
        send(fault.garble(frame(response), dev.rng))
        return
    send(frame(fault.garble(response, dev.rng)))


class TcpDeviceServer:
    """One listening port serving one simulated device (any unit id is answered)."""

    def __init__(self, dev: Served, host: str, port: int) -> None:
        self.dev, self.host, self.port = dev, host, port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._client, self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def drop_connections(self) -> None:
        for w in list(self._writers):
            w.close()

    async def stop(self) -> None:
        if self._server:
            self._server.close()
        self.drop_connections()
        if self._server:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        self._server = None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.dev.fault.kind == "drop":
            writer.close()
            return
        self._writers.add(writer)
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                head = await reader.readexactly(7)
                tid, _proto, length, unit = MBAP.unpack(head)
                if length < 2 or length > 254:
                    break  # not Modbus: a real device drops such a peer
                pdu = await reader.readexactly(length - 1)
                if self.dev.fault.kind == "drop":
                    break

                def frame(resp: bytes, tid: int = tid, unit: int = unit) -> bytes:
                    return MBAP.pack(tid, 0, len(resp) + 1, unit) + resp

                coro = respond(self.dev, unit, pdu, writer.write, frame)
                if answer_delay(self.dev, unit, pdu):
                    t = asyncio.create_task(coro)  # keep reading while a reply waits
                    tasks.add(t)
                    t.add_done_callback(tasks.discard)
                else:
                    await coro
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            for t in tasks:
                t.cancel()
            self._writers.discard(writer)
            writer.close()


def rtu_frame(unit: int, pdu: bytes) -> bytes:
    body = bytes([unit]) + pdu
    return body + struct.pack("<H", crc16(body))


def rtu_request_length(buf: bytes) -> int | None:
    """Length of the request frame at the start of ``buf``; None if more bytes needed,
    0 if the function code is unknown (the caller resynchronises)."""
    if len(buf) < 2:
        return None
    fc = buf[1]
    if fc in (1, 2, 3, 4, 5, 6):
        return 8
    if fc in (15, 16):
        return None if len(buf) < 7 else 9 + buf[6]
    return 0


class RtuBusServer:
    """Serves several unit ids on one serial line (a tty path or a pty we create)."""

    def __init__(self, path: str | None, devices: Sequence[Served]) -> None:
        self.path = path
        self.devices = {d.unit_id: d for d in devices}
        self.fd = -1
        self._slave_fd = -1
        self.slave_path: str | None = None
        self._buf = b""
        self.bad_frames = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        if self.path is None:
            self.fd, self._slave_fd = os.openpty()
            self.slave_path = os.ttyname(self._slave_fd)
            tty.setraw(self._slave_fd)
        else:
            self.fd = os.open(self.path, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.fd)
        attrs = termios.tcgetattr(self.fd)
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(self.fd, termios.TCSANOW, attrs)
        os.set_blocking(self.fd, False)
        asyncio.get_running_loop().add_reader(self.fd, self._readable)

    async def stop(self) -> None:
        if self.fd >= 0:
            asyncio.get_running_loop().remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1
        if self._slave_fd >= 0:
            os.close(self._slave_fd)
            self._slave_fd = -1
        for t in self._tasks:
            t.cancel()

    def _send(self, data: bytes) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self.fd, data)

    def _readable(self) -> None:
        try:
            self._buf += os.read(self.fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # peer closed the pty; keep serving when it reopens
        while (n := rtu_request_length(self._buf)) is not None:
            if n == 0:
                self.bad_frames += 1
                self._buf = self._buf[1:]  # resynchronise byte by byte
                continue
            if len(self._buf) < n:
                break
            frame, self._buf = self._buf[:n], self._buf[n:]
            if struct.unpack("<H", frame[-2:])[0] != crc16(frame[:-2]):
                self.bad_frames += 1
                self._buf = b""
                break
            dev = self.devices.get(frame[0])
            if dev is None:
                continue  # another unit's frame: stay silent, as a real device does
            unit = frame[0]
            t = asyncio.create_task(
                respond(dev, unit, frame[1:-2], self._send, functools.partial(rtu_frame, unit))
            )
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)
