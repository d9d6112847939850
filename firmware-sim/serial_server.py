"""Simulated serial devices on ptys, framed and encoded by their profile.

Each device gets a pty; its port is a symlink (``<dir>/<device id>``) to the pty's slave
side, like a ``/dev/serial/by-id/`` name: when the device is "unplugged" (fault
``drop``) the pty is closed and the link removed; when the fault clears, a new pty
(another ``/dev/pts/N``) appears under the same link, as a USB adapter that comes back as
another ttyUSBn.

Listen devices send a frame every ``simulation.every`` (0: only when a value changes, a
barcode reader); request devices answer the profile's ``request``. A frame is the
profile's ``simulation.template`` formatted with the point values, by point name or
regex group name (a point with a ``map`` is written as its map's key) for regex
profiles, or the points packed at their ``at`` positions for binary ones, then framed
(delimiters, length, checksum).

Faults: ``garbage`` (noise bytes before frames), ``short`` (frames cut in half),
``badsum`` (one byte of each frame flipped: the checksum fails), ``silence`` (nothing
sent), ``slow:DELAY`` (answers late), ``drop`` (the port disappears).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import struct
import time
from pathlib import Path

from firmware_sim.machine import SimDevice
from firmware_sim.pty import close_pty, open_pty

from drivers.serial.framing import encode_frame
from gateway.profiles import BINARY_CODES, SerialPoint, SerialSettings

log = logging.getLogger("edgegw.sim.serial")


class SerialSimServer:
    def __init__(self, dev: SimDevice, link: Path, seed: int = 0) -> None:
        ss = dev.profile.serial
        assert ss is not None
        self.dev = dev
        self.ss: SerialSettings = ss
        self.link = link
        self.points = [p for p in dev.profile.points if isinstance(p, SerialPoint)]
        self.rng = random.Random(seed)
        self.fd = -1
        self._slave = -1
        self.slave_path = ""
        self._inbuf = b""
        self._next_emit = 0.0
        self._last_sent: tuple[object, ...] | None = None
        self.frames_sent = 0
        self.plugs = 0  # times the port (re)appeared
        self._tasks: set[asyncio.Task[None]] = set()
        sim = dev.profile.simulation
        self.every = sim.every if sim else 1.0
        self.template = sim.template if sim else None

    # -- the port ------------------------------------------------------------------------
    async def start(self) -> None:
        if self.fd >= 0:
            return
        self.fd, self._slave, self.slave_path = open_pty(self.link)
        asyncio.get_running_loop().add_reader(self.fd, self._readable)
        self.plugs += 1

    async def stop(self) -> None:
        """Unplug: the pty goes away, a reader on it gets an I/O error."""
        if self.fd < 0:
            return
        close_pty(self.fd, self._slave, self.link)
        self.fd = self._slave = -1
        for t in self._tasks:
            t.cancel()

    def _send(self, data: bytes) -> None:
        if self.fd < 0:
            return
        with contextlib.suppress(BlockingIOError, OSError):  # nobody reading: bytes lost
            os.write(self.fd, data)

    # -- frames --------------------------------------------------------------------------
    def payload(self) -> bytes:
        values = self.dev.values
        if self.ss.parser == "binary":
            size = max((p.at or 0) + (p.length or struct.calcsize(BINARY_CODES.get(p.type, "B")))
                       for p in self.points)
            buf = bytearray(size)
            for p in self.points:
                v = values.get(p.name, 0)
                if p.type == "string":
                    raw = str(v).encode("latin-1")[: p.length or 0]
                    buf[p.at or 0 : (p.at or 0) + len(raw)] = raw
                    continue
                order = ">" if p.byte_order == "big" else "<"
                struct.pack_into(order + BINARY_CODES[p.type], buf, p.at or 0, v)
            return bytes(buf)
        fields: dict[str, object] = {}
        for p in self.points:
            v = values.get(p.name)
            if p.map:
                v = next((k for k, mv in p.map.items() if mv == v), next(iter(p.map)))
            fields[p.name] = fields[p.regex_group] = v
        assert self.template is not None
        return self.template.format(**fields).encode(self.ss.encoding)

    def frame(self) -> bytes:
        frame = encode_frame(self.ss.framing, self.payload())
        kind = self.dev.fault.kind
        if kind == "garbage":
            frame = self.rng.randbytes(self.rng.randint(1, 8)) + frame
        elif kind == "short":
            frame = frame[: max(1, len(frame) // 2)]
        elif kind == "badsum":
            i = self.rng.randrange(len(frame) - 1) if len(frame) > 1 else 0
            flipped = bytearray(frame)
            flipped[i] ^= 0x04
            frame = bytes(flipped)
        return frame

    # -- behaviour -----------------------------------------------------------------------
    async def publish(self) -> None:
        """Called after every model step: plug/unplug, and a listen device's frames."""
        fault = self.dev.fault.kind
        if fault == "drop":
            await self.stop()
            return
        if self.fd < 0:
            await self.start()
        if self.ss.mode != "listen" or fault == "silence":
            return
        now = time.monotonic()
        if self.every > 0:
            if now < self._next_emit:
                return
            self._next_emit = max(now, self._next_emit + self.every)
        else:
            current = tuple(self.dev.values.get(p.name) for p in self.points)
            if current == self._last_sent:
                return
            self._last_sent = current
        self._send(self.frame())
        self.frames_sent += 1

    def _readable(self) -> None:
        try:
            self._inbuf += os.read(self.fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # the reader closed the port; keep serving when it reopens
        if self.ss.mode != "request":
            self._inbuf = b""
            return
        request = self.ss.request_bytes()
        while (i := self._inbuf.find(request)) >= 0:
            self._inbuf = self._inbuf[i + len(request) :]
            t = asyncio.create_task(self._answer())
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)
        self._inbuf = self._inbuf[-len(request) :]

    async def _answer(self) -> None:
        fault = self.dev.fault
        if fault.kind == "silence":
            return
        if fault.kind == "slow":
            await asyncio.sleep(fault.delay)
        self._send(self.frame())
        self.frames_sent += 1
