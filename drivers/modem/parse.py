"""Parsers for the answers of a cellular module's AT port: pure functions, text in,
numbers out, each with golden cases in tests/drivers/modem/golden.yaml.

Standard (3GPP TS 27.007): ``+CSQ`` (RSSI, BER), ``+CESQ`` (LTE RSRQ/RSRP, and with
Rel-15 modules the NR SS-RSRQ/SS-RSRP/SS-SINR), ``+CREG``/``+CEREG``/``+C5GREG``
(registration and access technology), ``+CGSN`` (IMEI), ``+ICCID``/``+QCCID``/``+CCID``.
Vendor: the Quectel RM50xQ family's ``+QENG: "servingcell"`` report (LTE, NR5G-SA, and
the two-line EN-DC form), the richest source of band, cell and SINR.

Unknown values ("not known or not detectable": 99, 255) become None. An answer that
does not parse raises ParseError with the line; the monitor logs it and goes on.
"""

from __future__ import annotations

import re

from gateway.errors import DataError
from gateway.model import LinkSample


class ParseError(DataError):
    """An AT answer that is not what the command should return."""


#: <AcT> of +CREG/+CEREG/+C5GREG -> access technology
ACT = {0: "GSM", 2: "UTRAN", 3: "GSM", 4: "UTRAN", 5: "UTRAN", 6: "UTRAN",
       7: "LTE", 8: "LTE", 9: "LTE", 10: "LTE-5GC", 11: "NR-5GC", 12: "NG-RAN",
       13: "EN-DC"}
#: <stat> of the registration commands
REG = {0: "not registered", 1: "home", 2: "searching", 3: "denied", 4: "unknown",
       5: "roaming", 6: "home (SMS only)", 7: "roaming (SMS only)", 8: "emergency only",
       9: "home (CSFB not preferred)", 10: "roaming (CSFB not preferred)",
       11: "emergency only"}


def _payload(text: str, prefix: str) -> list[str]:
    """The comma-separated fields after ``prefix:`` on the first line that has it."""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith(prefix + ":"):
            return [f.strip().strip('"') for f in line[len(prefix) + 1:].split(",")]
    raise ParseError(f"no {prefix} line in {text.strip()[:80]!r}")


def _int(s: str, what: str) -> int:
    try:
        return int(s)
    except ValueError:
        raise ParseError(f"{what}: {s!r} is not a number") from None


def csq(text: str) -> LinkSample:
    """``+CSQ: <rssi>,<ber>``: rssi 0..31 -> -113..-51 dBm (2 dB steps), 99 unknown."""
    f = _payload(text, "+CSQ")
    if len(f) < 2:
        raise ParseError(f"+CSQ wants 2 fields, got {f}")
    rssi, ber = _int(f[0], "rssi"), _int(f[1], "ber")
    if not (0 <= rssi <= 31 or rssi == 99) or not (0 <= ber <= 7 or ber == 99):
        raise ParseError(f"+CSQ out of range: {f}")
    return LinkSample(rssi_dbm=None if rssi == 99 else -113.0 + 2 * rssi,
                      ber=None if ber == 99 else ber)


def cesq(text: str) -> LinkSample:
    """``+CESQ: rxlev,ber,rscp,ecno,rsrq,rsrp[,ss_rsrq,ss_rsrp,ss_sinr]``.

    LTE: rsrq 0..34 -> idx/2 - 19.5 dB, rsrp 0..97 -> idx - 140 dBm (the upper edge of
    each reporting range); NR (Rel-15): ss_rsrq 0..127 -> idx/2 - 43 dB, ss_rsrp 0..127
    -> idx - 156 dBm, ss_sinr 0..127 -> idx/2 - 23 dB; 255 = not known."""
    f = _payload(text, "+CESQ")
    if len(f) not in (6, 9):
        raise ParseError(f"+CESQ wants 6 or 9 fields, got {len(f)}")
    v = [_int(x, "+CESQ field") for x in f]
    s = LinkSample()
    rxlev = v[0]
    if 0 <= rxlev <= 63:
        s.rssi_dbm = -110.0 + rxlev
    if v[4] != 255:
        if not 0 <= v[4] <= 34:
            raise ParseError(f"+CESQ rsrq {v[4]} out of range")
        s.rsrq_db = v[4] / 2 - 19.5
    if v[5] != 255:
        if not 0 <= v[5] <= 97:
            raise ParseError(f"+CESQ rsrp {v[5]} out of range")
        s.rsrp_dbm = float(v[5] - 140)
    if len(v) == 9:
        for i, (lo, hi) in zip((6, 7, 8), ((0, 127),) * 3, strict=True):
            if v[i] != 255 and not lo <= v[i] <= hi:
                raise ParseError(f"+CESQ field {i} = {v[i]} out of range")
        if v[6] != 255:
            s.nr_rsrq_db = v[6] / 2 - 43
        if v[7] != 255:
            s.nr_rsrp_dbm = float(v[7] - 156)
        if v[8] != 255:
            s.nr_sinr_db = v[8] / 2 - 23
    return s


def registration(text: str, prefix: str) -> LinkSample:
    """``+CREG/+CEREG/+C5GREG: <n>,<stat>[,<lac>,<ci>[,<AcT>...]]`` (the read form)."""
    f = _payload(text, prefix)
    if len(f) < 2:
        raise ParseError(f"{prefix} wants at least 2 fields, got {f}")
    stat = _int(f[1], "stat")
    if stat not in REG:
        raise ParseError(f"{prefix} stat {stat} unknown")
    s = LinkSample(registration=REG[stat], registered=stat in (1, 5, 6, 7, 9, 10))
    if len(f) >= 4 and f[3]:
        s.cell = f[3].upper()
    if len(f) >= 5 and f[4]:
        act = _int(f[4], "AcT")
        s.tech = ACT.get(act, f"AcT {act}")
    return s


_DIGITS = re.compile(r"^\+?(?:CGSN:\s*)?\"?(\d{14,16})\"?$")
_ICCID = re.compile(r"^(?:\+(?:ICCID|QCCID|CCID):\s*)?\"?([0-9A-Fa-f]{18,22})\"?$")


def imei(text: str) -> str:
    for line in text.splitlines():
        m = _DIGITS.match(line.strip())
        if m:
            return m.group(1)
    raise ParseError(f"no IMEI in {text.strip()[:80]!r}")


def iccid(text: str) -> str:
    for line in text.splitlines():
        m = _ICCID.match(line.strip())
        if m and line.strip() not in ("OK",):
            return m.group(1).upper().rstrip("F")
    raise ParseError(f"no ICCID in {text.strip()[:80]!r}")


def _num(s: str) -> float | None:
    if s in ("", "-", "-32768", "--"):
        return None
    try:
        return float(s)
    except ValueError:
        raise ParseError(f"{s!r} is not a number") from None


def qeng_servingcell(text: str) -> LinkSample:
    """Quectel ``AT+QENG="servingcell"`` (RM50xQ family), in its three forms:

    - ``+QENG: "servingcell",<state>,"LTE",<is_tdd>,<MCC>,<MNC>,<cellID>,<PCID>,
      <earfcn>,<band>,<UL_bw>,<DL_bw>,<TAC>,<RSRP>,<RSRQ>,<RSSI>,<SINR>,<CQI>,
      <tx_power>,<srxlev>``
    - ``+QENG: "servingcell",<state>,"NR5G-SA",<duplex>,<MCC>,<MNC>,<cellID>,<PCID>,
      <TAC>,<ARFCN>,<band>,<DL_bw>,<RSRP>,<RSRQ>,<SINR>,<scs>,<srxlev>``
    - EN-DC: ``+QENG: "servingcell",<state>`` then a ``+QENG: "LTE",...`` line (the LTE
      fields above) and a ``+QENG: "NR5G-NSA",<MCC>,<MNC>,<PCID>,<RSRP>,<SINR>,<RSRQ>,
      <ARFCN>,<band>,...`` line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("+QENG:")]
    if not lines:
        raise ParseError(f"no +QENG line in {text.strip()[:80]!r}")
    rows = [[f.strip().strip('"') for f in ln[6:].split(",")] for ln in lines]
    s = LinkSample()
    try:
        for r in rows:
            if r[0] == "servingcell":
                if len(r) > 2 and r[2] == "LTE":
                    _lte(s, r[3:])
                elif len(r) > 2 and r[2] == "NR5G-SA":
                    _sa(s, r[3:])
                elif len(r) == 2:
                    s.extra["state"] = r[1]
                else:
                    raise ParseError(f"unknown servingcell form {r[:3]}")
                if len(r) > 1:
                    s.extra["state"] = r[1]
            elif r[0] == "LTE":
                _lte(s, r[1:])
            elif r[0] == "NR5G-NSA":
                _nsa(s, r[1:])
    except IndexError:
        raise ParseError(f"+QENG: too few fields in {lines}") from None
    if s.tech is None and "state" not in s.extra:
        raise ParseError(f"+QENG: no serving cell in {lines}")
    return s  # with only extra.state when searching: no cell to report


def _lte(s: LinkSample, f: list[str]) -> None:
    # is_tdd, MCC, MNC, cellID, PCID, earfcn, band, UL_bw, DL_bw, TAC, RSRP, RSRQ, RSSI, SINR
    s.tech = "LTE" if s.tech is None else s.tech
    s.mcc_mnc = f"{f[1]}-{f[2]}"
    s.cell = f[3].upper()
    s.pci = int(_num(f[4]) or 0)
    s.arfcn = int(_num(f[5]) or 0)
    s.band = f"B{f[6]}"
    s.rsrp_dbm, s.rsrq_db = _num(f[10]), _num(f[11])
    s.rssi_dbm, s.sinr_db = _num(f[12]), _num(f[13])


def _sa(s: LinkSample, f: list[str]) -> None:
    # duplex, MCC, MNC, cellID, PCID, TAC, ARFCN, band, DL_bw, RSRP, RSRQ, SINR
    s.tech = "NR5G-SA"
    s.mcc_mnc = f"{f[1]}-{f[2]}"
    s.cell = f[3].upper()
    s.pci = int(_num(f[4]) or 0)
    s.arfcn = int(_num(f[6]) or 0)
    s.band = f"n{f[7]}"
    s.nr_rsrp_dbm, s.nr_rsrq_db, s.nr_sinr_db = _num(f[9]), _num(f[10]), _num(f[11])
    s.rsrp_dbm, s.rsrq_db, s.sinr_db = s.nr_rsrp_dbm, s.nr_rsrq_db, s.nr_sinr_db


def _nsa(s: LinkSample, f: list[str]) -> None:
    # MCC, MNC, PCID, RSRP, SINR, RSRQ, ARFCN, band
    s.tech = "NR5G-NSA"
    s.nr_rsrp_dbm, s.nr_sinr_db, s.nr_rsrq_db = _num(f[3]), _num(f[4]), _num(f[5])
    s.extra["nr_band"] = f"n{f[7]}"


def qgdcnt(text: str) -> LinkSample:
    """Quectel ``AT+QGDCNT?``: ``+QGDCNT: <bytes_sent>,<bytes_recv>`` since reset."""
    f = _payload(text, "+QGDCNT")
    if len(f) != 2:
        raise ParseError(f"+QGDCNT wants 2 fields, got {f}")
    tx, rx = _int(f[0], "bytes sent"), _int(f[1], "bytes received")
    if tx < 0 or rx < 0:
        raise ParseError(f"+QGDCNT: negative counter {f}")
    return LinkSample(tx_bytes=tx, rx_bytes=rx)
