"""A simulated 5G module's AT port on a pty: answers the commands edgegw's modem monitor
sends, with a signal that follows a scenario (good -> interference -> loss ->
recovery), and can answer garbage or fall silent.

Commands: ``AT``, ``ATE0``, ``AT+CGSN``, ``AT+ICCID``, ``AT+CSQ``, ``AT+CESQ``,
``AT+CEREG?``, ``AT+C5GREG?``, ``AT+QENG="servingcell"`` (Quectel RM50xQ EN-DC form);
anything else is ``ERROR``. Faults (``fault``): ``garbage`` (noise instead of answers),
``silence`` (no answer).
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

    def __init__(self, link: Path, scenario: list[tuple[float, Radio]] | None = None) -> None:
        self.link = link
        self.scenario = scenario or [(0, GOOD)]
        self.fault = ""
        self.fd = self._slave = -1
        self.slave_path = ""
        self._t0 = 0.0
        self._buf = b""
        self.commands: list[str] = []
        self.radio_override: Radio | None = None

    def radio(self) -> Radio:
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
        if cmd == 'AT+QENG="SERVINGCELL"':
            if not r.registered:
                return '\r\n+QENG: "servingcell","SEARCH"\r\n'
            return ('\r\n+QENG: "servingcell","NOCONN"\r\n'
                    f'+QENG: "LTE","FDD",262,01,1A2D003,301,6300,20,3,3,4E21,{r.rsrp:.0f},'
                    f'{r.rsrq:.0f},-64,{r.sinr:.0f},10,-,22\r\n'
                    f'+QENG: "NR5G-NSA",262,01,812,{r.nr_rsrp:.0f},{r.nr_sinr:.0f},-12,'
                    '643296,78,12,1\r\n')
        return None
