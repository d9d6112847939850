"""A simulated 5G module's AT port on a pty: answers the commands edgegw's modem monitor
sends, with a signal that follows a scenario (good -> interference -> loss ->
recovery), and can answer garbage or fall silent.

Commands: ``AT``, ``ATE0``, ``AT+CGSN``, ``AT+ICCID``, ``AT+CSQ``, ``AT+CESQ``,
``AT+CEREG?``, ``AT+C5GREG?``, ``AT+QENG="servingcell"`` (Quectel RM50xQ EN-DC form),
``AT+QGDCNT?``, and the SIM access of an active identifier carrier (``carrier``: the
gateway's code in the UICC): ``AT+CRSM`` READ BINARY of EF ``6FF0`` (and of EF_ICCID
``2FE2``, BCD as on a real card), ``AT+CCHO`` / ``AT+CGLA`` / ``AT+CCHC`` with the
applet ``CARRIER_AID`` (GET DATA ``80CA00FE00``). The code is stored as BER-TLV tag 80,
padded with FF. ``AT+CFUN=0`` / ``AT+CFUN=1`` turn the radio off and on, ``AT+CFUN=1,1``
restarts the module. Anything else is ``ERROR``. Faults (``fault``): ``garbage`` (noise
instead of answers), ``silence`` (no answer), ``stuck`` (not registered whatever the
signal, until the radio is turned off and on or the module restarts: a hung attach, as
real modules do after long outages).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from firmware_sim.pty import close_pty, open_pty


@dataclass(frozen=True, slots=True)
class Radio:
    """Signal at one moment: LTE and NR legs of an EN-DC link."""

    rsrp: float = -85.0
    rsrq: float = -9.0
    sinr: float = 18.0
    nr_rsrp: float = -90.0
    nr_sinr: float = 15.0
    registered: bool = True


GOOD = Radio()
INTERFERENCE = Radio(rsrp=-108.0, rsrq=-16.0, sinr=-2.0, nr_rsrp=-115.0, nr_sinr=-5.0)
LOST = Radio(rsrp=-140.0, rsrq=-19.5, sinr=-20.0, nr_rsrp=-156.0, nr_sinr=-23.0,
             registered=False)
#: the default scenario: (seconds from start, radio)
SCENARIO: list[tuple[float, Radio]] = [(0, GOOD), (20, INTERFERENCE), (40, LOST), (50, GOOD)]


class SimModem:
    IMEI = "867698040123456"
    ICCID = "89860121801234567890"
    CARRIER_FILE = 0x6FF0
    CARRIER_AID = "A000000863454447570001"
    CARRIER_APDU = "80CA00FE00"

    def __init__(self, link: Path, scenario: list[tuple[float, Radio]] | None = None,
                 carrier: str | None = None) -> None:
        self.link = link
        #: the identifier code held in the simulated UICC (None: no carrier applet/file)
        self.carrier = carrier
        self._channels: set[int] = set()
        self.radio_off = False
        self.resets: list[str] = []  # AT+CFUN commands received
        self.scenario = scenario or [(0, GOOD)]
        self.fault = ""
        self.fd = self._slave = -1
        self.slave_path = ""
        self._t0 = 0.0
        self._buf = b""
        self.commands: list[str] = []
        self.radio_override: Radio | None = None

    def radio(self) -> Radio:
        if self.fault == "stuck" or self.radio_off:
            return LOST
        if self.radio_override is not None:
            return self.radio_override
        now = time.monotonic() - self._t0
        current = self.scenario[0][1]
        for at, r in self.scenario:
            if now >= at:
                current = r
        return current

    async def start(self) -> None:
        self.fd, self._slave, self.slave_path = open_pty(self.link)
        self._t0 = time.monotonic()
        asyncio.get_running_loop().add_reader(self.fd, self._readable)

    async def stop(self) -> None:
        if self.fd < 0:
            return
        close_pty(self.fd, self._slave, self.link)
        self.fd = self._slave = -1

    def _readable(self) -> None:
        try:
            self._buf += os.read(self.fd, 4096)
        except (BlockingIOError, InterruptedError, OSError):
            return
        while b"\r" in self._buf:
            line, _, self._buf = self._buf.partition(b"\r")
            cmd = line.strip(b"\n ").decode("ascii", "replace")
            if cmd:
                self.commands.append(cmd)
                self._reply(cmd)

    def _send(self, text: str) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self.fd, text.encode())

    def _reply(self, cmd: str) -> None:
        if self.fault == "silence":
            return
        if self.fault == "garbage":
            self._send("\r\n+CSQ: ,,\x00\xff\r\n~~~\r\n")
            return
        body = self.answer(cmd.upper())
        self._send("\r\nERROR\r\n" if body is None else f"{body}\r\nOK\r\n")

    def answer(self, cmd: str) -> str | None:
        r = self.radio()
        if cmd in ("AT", "ATE0"):
            return ""
        if cmd == "AT+CGSN":
            return f"\r\n{self.IMEI}\r\n"
        if cmd == "AT+ICCID":
            return f"\r\n+ICCID: {self.ICCID}\r\n"
        if cmd == "AT+CSQ":
            rssi = max(0, min(31, round((r.rsrp + 30 + 113) / 2))) if r.registered else 99
            return f"\r\n+CSQ: {rssi},99\r\n"
        if cmd == "AT+CESQ":
            rsrq = max(0, min(34, round((r.rsrq + 19.5) * 2)))
            rsrp = max(0, min(97, round(r.rsrp + 140)))
            ss_rsrp = max(0, min(127, round(r.nr_rsrp + 156)))
            ss_sinr = max(0, min(127, round((r.nr_sinr + 23) * 2)))
            if not r.registered:
                return "\r\n+CESQ: 99,99,255,255,255,255,255,255,255\r\n"
            return f"\r\n+CESQ: 99,99,255,255,{rsrq},{rsrp},255,{ss_rsrp},{ss_sinr}\r\n"
        if cmd == "AT+CEREG?":
            return ('\r\n+CEREG: 2,1,"4E21","1A2D003",13\r\n' if r.registered
                    else "\r\n+CEREG: 2,2\r\n")
        if cmd == "AT+C5GREG?":
            return "\r\n+C5GREG: 2,0\r\n"
        if cmd == "AT+QGDCNT?":
            up = int((time.monotonic() - self._t0) * 1000)  # 1 kB/s up, 3 kB/s down
            return f"\r\n+QGDCNT: {up},{3 * up}\r\n"
        if cmd in ("AT+CFUN=0", "AT+CFUN=1", "AT+CFUN=1,1"):
            self.resets.append(cmd)
            self.radio_off = cmd == "AT+CFUN=0"
            if self.fault == "stuck":
                self.fault = ""  # the re-attach works
            return ""
        if cmd.startswith(("AT+CRSM=", "AT+CCHO=", "AT+CGLA=", "AT+CCHC=")):
            return self._sim_access(cmd)
        if cmd == 'AT+QENG="SERVINGCELL"':
            if not r.registered:
                return '\r\n+QENG: "servingcell","SEARCH"\r\n'
            return ('\r\n+QENG: "servingcell","NOCONN"\r\n'
                    f'+QENG: "LTE","FDD",262,01,1A2D003,301,6300,20,3,3,4E21,{r.rsrp:.0f},'
                    f'{r.rsrq:.0f},-64,{r.sinr:.0f},10,-,22\r\n'
                    f'+QENG: "NR5G-NSA",262,01,812,{r.nr_rsrp:.0f},{r.nr_sinr:.0f},-12,'
                    '643296,78,12,1\r\n')
        return None

    # -- the UICC: an active identifier carrier --------------------------------------------
    def carrier_content(self, size: int = 64) -> bytes:
        """The carrier EF / applet data: BER-TLV tag 80 with the code, FF padding."""
        code = (self.carrier or "").encode()
        return (bytes([0x80, len(code)]) + code).ljust(size, b"\xff")

    def _sim_access(self, cmd: str) -> str | None:
        name, _, args = cmd.partition("=")
        parts = [a.strip().strip('"') for a in args.split(",")]
        if name == "AT+CRSM":
            if len(parts) < 5 or parts[0] != "176":
                return "\r\n+CRSM: 109,0\r\n"  # 6D00: only READ BINARY here
            fid, length = int(parts[1]), int(parts[4] or 0)
            if fid == 0x2FE2:  # EF_ICCID: BCD, nibbles swapped
                digits = self.ICCID.ljust(20, "F")
                data = "".join(digits[i + 1] + digits[i] for i in range(0, 20, 2))
                return f'\r\n+CRSM: 144,0,"{data[: 2 * length]}"\r\n'
            if fid == self.CARRIER_FILE and self.carrier:
                data = self.carrier_content()[:length].hex().upper()
                return f'\r\n+CRSM: 144,0,"{data}"\r\n'
            return "\r\n+CRSM: 148,4\r\n"  # 9404: file not found
        if name == "AT+CCHO":
            if not self.carrier or parts[0] != self.CARRIER_AID:
                return None  # no such application: ERROR
            channel = max(self._channels, default=0) + 1
            self._channels.add(channel)
            return f"\r\n{channel}\r\n"
        if name == "AT+CCHC":
            self._channels.discard(int(parts[0] or 0))
            return ""
        # AT+CGLA=<channel>,<length>,"<apdu>"
        if len(parts) < 3 or int(parts[0] or 0) not in self._channels:
            return None
        if parts[2] != self.CARRIER_APDU:
            return '\r\n+CGLA: 4,"6D00"\r\n'
        data = self.carrier_content().rstrip(b"\xff").hex().upper() + "9000"
        return f'\r\n+CGLA: {len(data)},"{data}"\r\n'
