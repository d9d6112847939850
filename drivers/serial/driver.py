"""Serial driver: one device on its own port, framed and parsed by its profile.

*Listen* devices push frames (a scale streaming its weight, a barcode reader, a meter's
binary telegrams): the driver is streaming, every valid frame becomes one reading.
*Request* devices answer a query (a temperature controller): each poll writes the
profile's ``request`` and waits up to ``timeout`` for a valid answer.

A port that vanishes (a USB adapter pulled) or an open that fails raises
DeviceUnreachable: the scheduler marks the device offline and retries with backoff,
trying every configured name of the port (``/dev/serial/by-id/...`` follows the
adapter to its new ttyUSBn). Frames with a bad checksum, overlong frames and frames the
parser rejects are counted (``SerialDriver.counts``), logged once per kind, and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence

import serial
import serial_asyncio_fast
from serial.rs485 import RS485Settings

from drivers.base import Device, DriverContext, DriverMetric
from drivers.serial.config import Serial
from drivers.serial.framing import Framer
from drivers.serial.parse import FrameRejected, Parser
from gateway.errors import DeviceUnreachable, WriteRejected
from gateway.model import Quality, Reading, Value
from gateway.profiles import Point, SerialPoint, SerialSettings

log = logging.getLogger("edgegw.serial")
_LOST = (serial.SerialException, OSError, ConnectionError)


class SerialDriver:
    def __init__(self, device: Device, ctx: DriverContext) -> None:
        conn = device.connection
        assert isinstance(conn, Serial)
        ss = device.profile.serial
        assert ss is not None
        self.device = device
        self.conn = conn
        self.ss: SerialSettings = ss
        self.points = [p for p in device.profile.points if isinstance(p, SerialPoint)]
        self.names = tuple(p.name for p in self.points)
        self.parser = Parser(ss, self.points)
        self.framer = Framer(ss.framing)
        self.streaming = ss.mode == "listen"
        self.counts: Counter[str] = Counter()  # rejected frames, by kind; framer's counts
        self._logged: set[str] = set()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._port = ""
        self._latest: Reading | None = None
        self._consuming = False
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def connect(self) -> None:
        if self.connected:
            return
        await self.close()
        c = self.conn
        errors = []
        for path in c.ports:
            try:
                reader, writer = await serial_asyncio_fast.open_serial_connection(
                    url=path, baudrate=c.baudrate, bytesize=c.bytesize, parity=c.parity,
                    stopbits=c.stopbits)
            except _LOST as exc:
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                errors.append(f"{path}: {why}")
                continue
            if c.rs485:
                try:
                    writer.transport.serial.rs485_mode = RS485Settings()  # type: ignore[attr-defined]
                except (ValueError, OSError) as exc:
                    writer.close()
                    raise DeviceUnreachable(
                        f"{path}: RS-485 mode is not supported by this port ({exc}); use an "
                        "adapter with automatic direction control and rs485: false") from None
            self._reader, self._writer, self._port = reader, writer, path
            self.framer.reset()
            return
        raise DeviceUnreachable("cannot open " + "; ".join(errors))

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            with contextlib.suppress(*_LOST):
                writer.close()

    # -- frames --------------------------------------------------------------------------
    def _reading(self, payload: bytes) -> Reading | None:
        try:
            values, problems = self.parser.parse(payload)
        except FrameRejected as exc:
            self._count("rejected", f"frame rejected: {exc}")
            return None
        status = {i: (Quality.BAD, why) for i, why in problems.items()} if problems else None
        return Reading(self.names, values, time.time(), status=status)

    def _count(self, kind: str, message: str) -> None:
        self.counts[kind] += 1
        if kind not in self._logged:  # once per kind; the counters keep the total
            self._logged.add(kind)
            log.warning("device %s: %s (counted as %r; logged once)",
                        self.device.id, message, kind)

    def _frames(self, data: bytes) -> list[bytes]:
        before = dict(self.framer.counts)
        payloads = self.framer.feed(data)
        for kind, n in self.framer.counts.items():
            if n != before.get(kind, 0):
                self.counts[kind] += n - before.get(kind, 0)
                if kind not in self._logged and kind != "noise":
                    self._logged.add(kind)
                    log.warning("device %s on %s: %s frame dropped (counted; logged once)",
                                self.device.id, self._port, kind.replace("_", " "))
        return payloads

    async def _read_chunk(self, within: float | None) -> bytes:
        """The next bytes; TimeoutError after ``within`` seconds (None: no limit)."""
        reader = self._reader
        if reader is None:
            raise DeviceUnreachable("not connected")
        try:
            if within is None:
                data = await reader.read(4096)
            else:
                data = await asyncio.wait_for(reader.read(4096), within)
        except TimeoutError:  # a subclass of OSError: not a lost port
            raise
        except _LOST as exc:
            raise DeviceUnreachable(f"{self._port}: port lost ({exc})") from None
        if not data:
            raise DeviceUnreachable(f"{self._port}: port closed (unplugged?)")
        return data

    # -- listen mode ---------------------------------------------------------------------
    async def stream(
        self, groups: Mapping[str, tuple[float, Sequence[Point]]]
    ) -> AsyncIterator[tuple[str, list[Reading]]]:
        group = next(iter(groups))
        silence = self.ss.silence
        self._consuming = True
        try:
            while True:
                try:
                    data = await self._read_chunk(silence)
                except TimeoutError:
                    raise DeviceUnreachable(
                        f"{self._port}: no data for {silence:g} s") from None
                for payload in self._frames(data):
                    reading = self._reading(payload)
                    if reading is not None:
                        self._latest = reading
                        yield group, [reading]
        finally:
            self._consuming = False

    # -- polls -----------------------------------------------------------------------------
    async def read(self, points: Sequence[Point]) -> list[Reading]:
        if self.streaming:
            return await self._listen_read()
        return [await self._request()]

    async def _listen_read(self) -> list[Reading]:
        """While streaming: the latest frame's values as of now (the heartbeat's
        refresh); otherwise (a one-off `edgegw read`) wait for the next frame."""
        if self._consuming:
            r = self._latest
            return [] if r is None else [Reading(r.points, r.values, time.time(),
                                                 status=r.status)]
        wait = self.ss.silence or 10.0
        reading, _ = await self._next_reading(wait)
        if reading is None:
            raise DeviceUnreachable(f"{self._port}: no valid frame within {wait:g} s")
        return [reading]

    async def _next_reading(self, within: float) -> tuple[Reading | None, int]:
        """The first valid frame's reading within ``within`` seconds (or None), and how
        many bytes arrived meanwhile."""
        deadline = time.monotonic() + within
        received = 0
        while (left := deadline - time.monotonic()) > 0:
            try:
                data = await self._read_chunk(left)
            except TimeoutError:
                break
            received += len(data)
            for payload in self._frames(data):
                reading = self._reading(payload)
                if reading is not None:
                    return reading, received
        return None, received

    async def _request(self) -> Reading:
        writer = self._writer
        if writer is None:
            raise DeviceUnreachable("not connected")
        timeout = self.ss.timeout
        async with self._lock:
            self.framer.reset()  # a late answer's tail must not prefix this one
            try:
                writer.write(self.ss.request_bytes())
                await writer.drain()
            except _LOST as exc:
                raise DeviceUnreachable(f"{self._port}: port lost ({exc})") from None
            reading, received = await self._next_reading(timeout)
        if reading is not None:
            return reading
        if received:
            return Reading(self.names, [None] * len(self.names), time.time(),
                           f"no valid answer within {timeout:g} s ({received} bytes received)")
        raise DeviceUnreachable(f"{self._port}: no answer within {timeout:g} s")

    async def write(self, point: Point, value: Value) -> None:
        raise WriteRejected(f"{point.name}: serial devices are read-only in this version")

    def explain(self, points: Sequence[Point]) -> list[str]:
        f = self.ss.framing
        names = " ".join(p.name for p in points)
        if self.streaming:
            return [f"listen: every valid {f.kind} frame is one reading: {names}"]
        return [f"request {self.ss.request_bytes()!r}, answer within {self.ss.timeout:g} s "
                f"({f.kind} frame): {names}"]

    def metrics(self) -> list[DriverMetric]:
        return [DriverMetric("serial_frames_rejected_total", "counter", "frames dropped "
                             "(bad checksum, overlong, not parsed)", sum(self.counts.values()))]
