"""The AT backend: commands over the module's AT port (pyserial-asyncio-fast).

One command at a time: write ``<cmd>\\r``, collect lines until a final result code
(``OK``, ``ERROR``, ``+CME ERROR: n``, ``+CMS ERROR: n``) or the timeout. Unsolicited
lines that arrive meanwhile stay in the answer; the parsers take the line with their
prefix. A vendor command the module refuses (``ERROR``) is not asked again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Protocol

import serial_asyncio_fast

from drivers.modem.errors import AtError, CarrierError
from drivers.modem.parse import (
    ParseError,
    cesq,
    csq,
    iccid,
    imei,
    qeng_servingcell,
    qgdcnt,
    registration,
)
from gateway.model import LinkSample

log = logging.getLogger("edgegw.modem")
FINAL = ("OK", "ERROR", "+CME ERROR", "+CMS ERROR", "NO CARRIER")
#: seconds the radio stays off in a ``radio`` reset
RADIO_OFF_S = 2.0


@dataclass(frozen=True, slots=True)
class Identity:
    imei: str | None
    iccid: str | None
    #: the gateway's identifier code from an active identifier carrier (SIM), if any
    identifier: str | None = None


class AtPort:
    def __init__(self, path: str, baudrate: int = 115200, timeout: float = 2.0) -> None:
        self.path = path
        self.baudrate = baudrate
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        try:
            self._reader, self._writer = await serial_asyncio_fast.open_serial_connection(
                url=self.path, baudrate=self.baudrate)
        except (OSError, ValueError) as exc:
            raise AtError(f"{self.path}: cannot open the AT port: {exc}") from None

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            # a module that stopped reading must not hold the close (and the gateway's stop)
            with contextlib.suppress(OSError, ConnectionError, TimeoutError):
                await asyncio.wait_for(self._writer.wait_closed(), 2.0)
        self._reader = self._writer = None

    async def command(self, cmd: str) -> str:
        """The answer's lines (final result included); raises AtError."""
        if self._reader is None or self._writer is None:
            raise AtError("the AT port is not open")
        async with self._lock:
            r, w = self._reader, self._writer
            stale = getattr(r, "_buffer", None)  # a late answer to a timed-out command
            if stale:
                stale.clear()
            w.write(cmd.encode("ascii") + b"\r")
            lines: list[str] = []
            loop = asyncio.get_running_loop()
            end = loop.time() + self.timeout
            try:
                while True:
                    raw = await asyncio.wait_for(r.readline(), max(0.0, end - loop.time()))
                    if not raw:
                        raise AtError(f"{cmd}: the AT port closed")
                    line = raw.decode("ascii", "replace").strip()
                    if not line or line == cmd:  # blank lines, the echo
                        continue
                    lines.append(line)
                    if line.startswith(FINAL):
                        break
            except TimeoutError:
                raise AtError(f"{cmd}: no answer within {self.timeout:.1f} s") from None
            except OSError as exc:
                raise AtError(f"{cmd}: {exc}") from None
        if lines[-1] != "OK":
            raise AtError(f"{cmd}: {lines[-1]}")
        return "\n".join(lines)


class ModemBackend(Protocol):
    """What the modem driver needs from a backend (AT commands, ModemManager)."""

    kind: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def identity(self) -> Identity: ...

    async def sample(self) -> LinkSample: ...

    async def reset(self, action: str) -> None:
        """``radio``: radio off and on again (re-attach); ``module``: restart it."""
        ...


class IdentifierCarrier(Protocol):
    """Where the gateway's identifier code is kept on the module (a SIM file, an applet:
    ``drivers/modem/carrier.py``)."""

    kind: str

    async def read(self, port: AtPort) -> str:
        """The identifier code held by the carrier (normalised); raises CarrierError."""
        ...


class AtModem:
    """Link samples and identity over AT commands."""

    kind = "at"

    def __init__(self, port: AtPort, vendor_commands: bool = True,
                 carrier: IdentifierCarrier | None = None) -> None:
        self.port = port
        self.carrier = carrier
        self._skip: set[str] = set()  # commands the module refused
        self._warned: set[str] = set()
        self._vendor = vendor_commands

    async def open(self) -> None:
        await self.port.open()
        await self.port.command("ATE0")

    async def close(self) -> None:
        await self.port.close()

    async def identity(self) -> Identity:
        imei_v = iccid_v = None
        with contextlib.suppress(AtError, ParseError):
            imei_v = imei(await self.port.command("AT+CGSN"))
        for cmd in ("AT+ICCID", "AT+QCCID", "AT+CCID"):
            try:
                iccid_v = iccid(await self.port.command(cmd))
                break
            except (AtError, ParseError):
                continue
        return Identity(imei_v, iccid_v, await self._carrier_code())

    async def reset(self, action: str) -> None:
        """``radio``: ``AT+CFUN=0``, then ``AT+CFUN=1``; ``module``: ``AT+CFUN=1,1`` (the
        AT port goes away while the module restarts: the device reconnects)."""
        if action == "module":
            await self.port.command("AT+CFUN=1,1")
            return
        await self.port.command("AT+CFUN=0")
        await asyncio.sleep(RADIO_OFF_S)
        await self.port.command("AT+CFUN=1")

    async def _carrier_code(self) -> str | None:
        """The carrier's code; a carrier that cannot be read is logged (once per
        reason) and the modem works on without it."""
        if self.carrier is None:
            return None
        try:
            code = await self.carrier.read(self.port)
        except CarrierError as exc:
            key = f"carrier:{exc}"
            if key not in self._warned:
                self._warned.add(key)
                log.warning("modem: the identifier carrier (%s) cannot be read: %s",
                            self.carrier.kind, exc)
            return None
        log.info("modem: identifier carrier (%s) holds %s", self.carrier.kind, code)
        return code

    async def sample(self) -> LinkSample:
        """One round: the richest report first, then the standard ones; a command that
        fails or answers garbage is logged (once per kind) and skipped."""
        s = LinkSample()
        rounds = [("AT+CSQ", csq), ("AT+CESQ", cesq),
                  ("AT+CEREG?", lambda t: registration(t, "+CEREG")),
                  ("AT+C5GREG?", lambda t: registration(t, "+C5GREG"))]
        if self._vendor:
            rounds += [('AT+QENG="servingcell"', qeng_servingcell), ("AT+QGDCNT?", qgdcnt)]
        answered = False
        for cmd, parser in rounds:
            if cmd in self._skip:
                continue
            try:
                text = await self.port.command(cmd)
            except AtError as exc:
                if "ERROR" in str(exc) and "no answer" not in str(exc):
                    self._skip.add(cmd)
                    log.info("modem: %s is not supported here (%s); not asked again", cmd,
                             exc)
                    continue
                raise
            answered = True
            try:
                part = parser(text)
            except ParseError as exc:
                if cmd not in self._warned:
                    self._warned.add(cmd)
                    log.warning("modem: cannot read the answer to %s: %s", cmd, exc)
                continue
            if cmd.startswith("AT+C5GREG") and part.registered is False \
                    and s.registration is not None:
                continue  # not on 5GC (EN-DC or LTE): keep the EPS registration
            s.merge(part)
        if not answered:
            raise AtError("the module answered none of the link commands")
        return s
