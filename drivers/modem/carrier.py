"""Active identifier carriers: the gateway's identifier code stored in the module or SIM.

An *active identifier carrier* keeps the identifier-resolution code of the thing it sits
in (here: the gateway) in the cellular module's UICC, next to the subscriber's keys, so
the code travels with the SIM and cannot be edited on the SD card. The gateway reads it
at connect, over the module's AT port, with the 3GPP TS 27.007 SIM access commands:

- ``sim-file``: a transparent elementary file, ``AT+CRSM=176,<file id>,0,0,<length>``
  (READ BINARY; ``+CRSM: <sw1>,<sw2>,"<hex>"``, 144,0 is success);
- ``sim-applet``: an applet, through a logical channel: ``AT+CCHO="<AID>"`` opens it,
  ``AT+CGLA=<channel>,<length>,"<APDU>"`` sends the command APDU (GET DATA by default) and
  ``AT+CCHC=<channel>`` closes it; the answer ends with the status word, 9000 is success.

The content is the code as BER-TLV (tag ``80``, a one- or two-byte length, UTF-8) or as
plain UTF-8 text padded with ``FF`` or ``00``; either way it must be a valid Handle code
(``88.<node>.<enterprise>/<suffix>``).

The plugin point: a carrier is anything with ``kind`` and ``async read(port) -> str``.
Besides the two built in, a package can provide one through the ``edgegw.carriers``
entry point group: a callable taking the ``carrier`` config section (a
:class:`CarrierConfig`, whose ``options`` hold the plugin's own settings) and returning
the carrier.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from drivers.modem.errors import AtError, CarrierError
from gateway.identifiers.codes import CodeError, normalise

if TYPE_CHECKING:
    from drivers.modem.at import AtPort, IdentifierCarrier
    from drivers.modem.config import CarrierConfig

log = logging.getLogger("edgegw.modem")
ENTRY_POINTS = "edgegw.carriers"
_CRSM = re.compile(r'^\+CRSM:\s*(\d+)\s*,\s*(\d+)\s*(?:,\s*"?([0-9A-Fa-f]*)"?)?$')
_CCHO = re.compile(r'^(?:\+CCHO:\s*)?(\d+)$')
_CGLA = re.compile(r'^\+CGLA:\s*(\d+)\s*,\s*"?([0-9A-Fa-f]*)"?$')


def decode_code(data: bytes) -> str:
    """The identifier code in a carrier's content: BER-TLV tag 80, or padded text."""
    if data[:1] == b"\x80" and len(data) >= 2:
        n, start = data[1], 2
        if n == 0x81 and len(data) >= 3:
            n, start = data[2], 3
        elif n > 0x7F:
            raise CarrierError(f"unsupported TLV length byte {n:#04x}")
        value = data[start:start + n]
        if len(value) != n:
            raise CarrierError(f"TLV says {n} bytes, the content holds {len(value)}")
    else:
        value = data.split(b"\xff", 1)[0].split(b"\x00", 1)[0]
    try:
        text = value.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise CarrierError(f"the content is not text: {data[:24].hex()}") from None
    if not text:
        raise CarrierError("the carrier is empty")
    try:
        return normalise(text)
    except CodeError as exc:
        raise CarrierError(f"the carrier holds {text[:60]!r}, not an identifier code: "
                           f"{exc}") from None


def crsm_data(text: str) -> bytes:
    """The data of a successful ``+CRSM`` answer."""
    for line in text.splitlines():
        m = _CRSM.match(line.strip())
        if m:
            sw1, sw2 = int(m[1]), int(m[2])
            if (sw1, sw2) != (144, 0) and sw1 not in (145, 146):  # 91xx/92xx: success too
                raise CarrierError(f"the SIM refused the read: status {sw1:02X}{sw2:02X} "
                                   f"({_status_word(sw1, sw2)})")
            return bytes.fromhex(m[3] or "")
    raise CarrierError(f"no +CRSM answer in {text.strip()[:80]!r}")


def cgla_data(text: str) -> bytes:
    """The response data of a ``+CGLA`` answer, without its status word 9000."""
    for line in text.splitlines():
        m = _CGLA.match(line.strip())
        if m:
            raw = bytes.fromhex(m[2]) if len(m[2]) % 2 == 0 else b""
            if len(raw) < 2:
                raise CarrierError(f"a +CGLA answer without a status word: {line.strip()!r}")
            sw1, sw2 = raw[-2], raw[-1]
            if (sw1, sw2) != (0x90, 0x00):
                raise CarrierError(f"the applet answered status {sw1:02X}{sw2:02X} "
                                   f"({_status_word(sw1, sw2)})")
            return raw[:-2]
    raise CarrierError(f"no +CGLA answer in {text.strip()[:80]!r}")


def _status_word(sw1: int, sw2: int) -> str:
    known = {0x6A82: "file or application not found", 0x6982: "security status not "
             "satisfied", 0x6D00: "instruction not supported", 0x6E00: "class not "
             "supported", 0x6A88: "referenced data not found", 0x9408: "file type "
             "inconsistent", 0x9404: "file not found"}
    return known.get(sw1 << 8 | sw2, "see ISO 7816-4")


async def _command(port: AtPort, cmd: str) -> str:
    try:
        return await port.command(cmd)
    except AtError as exc:
        raise CarrierError(str(exc)) from None


class SimFile:
    """The code in a transparent EF of the SIM (``AT+CRSM`` READ BINARY)."""

    kind = "sim-file"

    def __init__(self, file_id: int, length: int = 64, path: str | None = None) -> None:
        self.file_id, self.length, self.path = file_id, length, path

    async def read(self, port: AtPort) -> str:
        cmd = f"AT+CRSM=176,{self.file_id},0,0,{self.length}"
        if self.path:
            cmd += f',,"{self.path}"'
        return decode_code(crsm_data(await _command(port, cmd)))


class SimApplet:
    """The code held by an applet of the UICC, over a logical channel (CCHO/CGLA/CCHC)."""

    kind = "sim-applet"

    def __init__(self, aid: str, apdu: str = "80CA00FE00") -> None:
        self.aid, self.apdu = aid.upper(), apdu.upper()

    async def read(self, port: AtPort) -> str:
        answer = await _command(port, f'AT+CCHO="{self.aid}"')
        channel = next((m[1] for line in answer.splitlines()
                        if (m := _CCHO.match(line.strip()))), None)
        if channel is None:
            raise CarrierError(f"no channel number in {answer.strip()[:80]!r}")
        try:
            data = cgla_data(await _command(
                port, f'AT+CGLA={channel},{len(self.apdu)},"{self.apdu}"'))
        finally:
            try:
                await port.command(f"AT+CCHC={channel}")
            except AtError as exc:
                log.warning("modem: closing logical channel %s: %s", channel, exc)
        return decode_code(data)


def _builtin(cfg: CarrierConfig) -> IdentifierCarrier:
    if cfg.kind == "sim-file":
        assert cfg.file_id is not None
        return SimFile(cfg.file_id, cfg.length, cfg.path)
    assert cfg.aid is not None
    return SimApplet(cfg.aid, cfg.apdu)


BUILTIN = ("sim-file", "sim-applet")


def plugins() -> dict[str, Callable[[CarrierConfig], IdentifierCarrier]]:
    """Carriers provided by installed packages (entry point group ``edgegw.carriers``)."""
    return {ep.name: ep.load() for ep in entry_points(group=ENTRY_POINTS)}


def make_carrier(cfg: CarrierConfig) -> IdentifierCarrier:
    if cfg.kind in BUILTIN:
        return _builtin(cfg)
    found = plugins()
    if cfg.kind not in found:
        raise CarrierError(f"no identifier carrier of kind {cfg.kind!r}: built in are "
                           f"{', '.join(BUILTIN)}; installed plugins: "
                           f"{', '.join(sorted(found)) or 'none'}")
    return found[cfg.kind](cfg)
