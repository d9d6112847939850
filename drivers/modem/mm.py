"""The ModemManager backend, through ``mmcli --output-json``.

Why mmcli and not D-Bus: a D-Bus client (dbus-next, sdbus) would be a new dependency
and an async D-Bus session to keep alive, for three read calls every few seconds.
``mmcli`` is installed wherever ModemManager is, its JSON output is stable (ModemManager
1.12 and later), and a call costs about 10 ms of a subprocess, which is nothing at a
10 s poll. Use this backend when ModemManager owns the module (it then also holds the
AT ports); use the AT backend on boxes without ModemManager.

Calls: ``mmcli -m <modem> --output-json`` (state, access technologies, registration,
operator, IMEI, SIM path), ``mmcli -m <modem> --signal-get --output-json`` (RSRP, RSRQ,
RSSI, SNR per technology; ``--signal-setup=10`` is sent once at open so the module
refreshes them), ``mmcli -i <sim> --output-json`` (ICCID), ``mmcli -b <bearer>
--output-json`` (the connected bearer's ``stats``: bytes sent and received in this
connection, as the data counters). Values ``--`` are unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from drivers.modem.at import RADIO_OFF_S, Identity
from drivers.modem.errors import ModemError
from drivers.modem.parse import ParseError
from gateway.model import LinkSample

REGISTERED = ("home", "roaming", "home-sms-only", "roaming-sms-only", "home-csfb-not-preferred",
              "roaming-csfb-not-preferred")


def _num(v: Any) -> float | None:
    if v is None or v in ("--", ""):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ParseError(f"{v!r} is not a number") from None


def _modem(doc: Any) -> dict[str, Any]:
    m = doc.get("modem") if isinstance(doc, dict) else None
    if not isinstance(m, dict):
        raise ParseError("not an mmcli modem document (no 'modem' object)")
    return m


def mm_sample(modem_doc: Any, signal_doc: Any | None) -> LinkSample:
    """A LinkSample from ``mmcli -m X -J`` and ``mmcli -m X --signal-get -J``."""
    m = _modem(modem_doc)
    gen = m.get("generic") or {}
    g3 = m.get("3gpp") or {}
    techs = [str(t) for t in gen.get("access-technologies") or []]
    s = LinkSample()
    if "5gnr" in techs:
        s.tech = "NR5G-NSA" if "lte" in techs else "NR5G-SA"
    elif "lte" in techs:
        s.tech = "LTE"
    elif techs:
        s.tech = techs[0].upper()
    reg = g3.get("registration-state")
    if isinstance(reg, str) and reg != "--":
        s.registration = reg
        s.registered = reg in REGISTERED
    op = g3.get("operator-code")
    if isinstance(op, str) and op.isdigit() and len(op) in (5, 6):
        s.mcc_mnc = f"{op[:3]}-{op[3:]}"
    state = gen.get("state")
    if isinstance(state, str):
        s.extra["state"] = state
    quality = (gen.get("signal-quality") or {}).get("value")
    if quality not in (None, "--"):
        s.extra["quality_pct"] = _num(quality)
    if signal_doc is not None:
        sig = _modem(signal_doc).get("signal") or {}
        lte, nr = sig.get("lte") or {}, sig.get("5g") or {}
        s.rsrp_dbm, s.rsrq_db = _num(lte.get("rsrp")), _num(lte.get("rsrq"))
        s.rssi_dbm, s.sinr_db = _num(lte.get("rssi")), _num(lte.get("snr"))
        s.nr_rsrp_dbm, s.nr_rsrq_db = _num(nr.get("rsrp")), _num(nr.get("rsrq"))
        s.nr_sinr_db = _num(nr.get("snr"))
        if s.tech == "NR5G-SA" and s.rsrp_dbm is None:
            s.rsrp_dbm, s.rsrq_db, s.sinr_db = s.nr_rsrp_dbm, s.nr_rsrq_db, s.nr_sinr_db
    return s


def mm_counters(bearer_doc: Any) -> tuple[int | None, int | None]:
    """Bytes sent and received of a connected bearer (``mmcli -b X -J``), or Nones."""
    b = bearer_doc.get("bearer") if isinstance(bearer_doc, dict) else None
    if not isinstance(b, dict) or (b.get("status") or {}).get("connected") != "yes":
        return None, None
    stats = b.get("stats") or {}
    tx, rx = _num(stats.get("bytes-tx")), _num(stats.get("bytes-rx"))
    return (None if tx is None else int(tx)), (None if rx is None else int(rx))


def _bearer(modem_doc: Any) -> str | None:
    bearers = (_modem(modem_doc).get("generic") or {}).get("bearers") or []
    return next((b for b in bearers if isinstance(b, str) and b not in ("", "--")), None)


def mm_identity(modem_doc: Any, sim_doc: Any | None) -> Identity:
    m = _modem(modem_doc)
    imei = (m.get("3gpp") or {}).get("imei") or (m.get("generic") or {}).get(
        "equipment-identifier")
    iccid = None
    if isinstance(sim_doc, dict):
        props = (sim_doc.get("sim") or {}).get("properties") or {}
        iccid = props.get("iccid")
    ok = isinstance(imei, str) and imei.isdigit()
    return Identity(imei if ok else None,
                    iccid if isinstance(iccid, str) and iccid not in ("", "--") else None)


class MmcliModem:
    kind = "modemmanager"

    def __init__(self, modem: str = "any", mmcli: str = "mmcli", timeout: float = 5.0) -> None:
        self.modem = modem
        self.mmcli = mmcli
        self.timeout = timeout
        self._sim: str | None = None

    async def _run(self, *args: str, parse: bool = True) -> Any:
        try:
            proc = await asyncio.create_subprocess_exec(
                self.mmcli, *args, *(("--output-json",) if parse else ()),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        except OSError as exc:
            raise ModemError(f"cannot run {self.mmcli}: {exc.strerror}") from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise ModemError(f"mmcli {' '.join(args)}: no answer within {self.timeout} s")\
                from None
        if proc.returncode != 0:
            why = err.decode(errors="replace").strip() or f"exit {proc.returncode}"
            raise ModemError(f"mmcli {' '.join(args)}: {why}")
        if not parse:
            return None
        try:
            return json.loads(out)
        except ValueError as exc:
            raise ModemError(f"mmcli {' '.join(args)}: not JSON ({exc})") from None

    async def open(self) -> None:
        doc = await self._run("-m", self.modem)
        try:
            sim = _modem(doc).get("generic", {}).get("sim")
        except ParseError as exc:
            raise ModemError(str(exc)) from None
        self._sim = sim if isinstance(sim, str) and sim not in ("", "--") else None
        with contextlib.suppress(ModemError):  # extended signal values, refreshed every 10 s
            await self._run("-m", self.modem, "--signal-setup=10")

    async def close(self) -> None:
        return None

    async def reset(self, action: str) -> None:
        """``radio``: low power, then on (re-attach); ``module``: ``--reset``."""
        if action == "module":
            await self._run("-m", self.modem, "--reset", parse=False)
            return
        await self._run("-m", self.modem, "--set-power-state-low", parse=False)
        await asyncio.sleep(RADIO_OFF_S)
        await self._run("-m", self.modem, "--set-power-state-on", parse=False)

    async def identity(self) -> Identity:
        doc = await self._run("-m", self.modem)
        sim = None
        if self._sim is not None:
            try:
                sim = await self._run("-i", self._sim)
            except ModemError:
                sim = None
        try:
            return mm_identity(doc, sim)
        except ParseError as exc:
            raise ModemError(str(exc)) from None

    async def sample(self) -> LinkSample:
        doc = await self._run("-m", self.modem)
        try:
            sig = await self._run("-m", self.modem, "--signal-get")
        except ModemError:
            sig = None
        try:
            s = mm_sample(doc, sig)
            bearer = _bearer(doc)
        except ParseError as exc:
            raise ModemError(f"mmcli: {exc}") from None
        if bearer is not None:  # the counters are optional: the link values stand alone
            with contextlib.suppress(ModemError, ParseError):
                s.tx_bytes, s.rx_bytes = mm_counters(await self._run("-b", bearer))
        return s
