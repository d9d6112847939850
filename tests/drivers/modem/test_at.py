"""The AT backend against the simulated module on a pty: identity, samples as the radio
changes, a refused vendor command, garbage and silence."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from firmware_sim.modem import LOST, SimModem

from drivers.modem.at import AtModem, AtPort
from drivers.modem.errors import AtError

pytestmark = [pytest.mark.component, pytest.mark.timeout(30)]


@pytest.fixture
async def modem(tmp_path: Path) -> AsyncIterator[SimModem]:
    m = SimModem(tmp_path / "ttyModem")
    await m.start()
    yield m
    await m.stop()


async def test_identity_and_link_sample(modem: SimModem) -> None:
    at = AtModem(AtPort(str(modem.link), timeout=1.0))
    await at.open()
    try:
        ident = await at.identity()
        assert ident.imei == SimModem.IMEI and ident.iccid == SimModem.ICCID
        s = await at.sample()
        got = s.as_dict()
        assert got.pop("rx_bytes") == 3 * got.pop("tx_bytes") >= 0  # the data counters
        assert got == {
            "tech": "NR5G-NSA", "registration": "home", "registered": True,
            "rssi_dbm": -64.0, "rsrp_dbm": -85.0, "rsrq_db": -9.0, "sinr_db": 18.0,
            "nr_rsrp_dbm": -90.0, "nr_rsrq_db": -12.0, "nr_sinr_db": 15.0, "band": "B20",
            "cell": "1A2D003", "pci": 301, "arfcn": 6300, "mcc_mnc": "262-01",
            "extra": {"state": "NOCONN", "nr_band": "n78"}}
        modem.radio_override = LOST
        s = await at.sample()
        assert s.registered is False and s.registration == "searching"
        assert s.rsrp_dbm is None
    finally:
        await at.close()


async def test_refused_vendor_command_is_not_asked_again(
    modem: SimModem, caplog: pytest.LogCaptureFixture
) -> None:
    original = modem.answer
    modem.answer = lambda cmd: None if cmd.startswith("AT+QENG") else original(cmd)  # type: ignore[method-assign]
    at = AtModem(AtPort(str(modem.link), timeout=1.0))
    await at.open()
    try:
        with caplog.at_level(logging.INFO, logger="edgegw.modem"):
            s1 = await at.sample()
            n = len(modem.commands)
            await at.sample()
        assert s1.rsrp_dbm == -85.0 and s1.tech == "EN-DC"  # from +CESQ / +CEREG
        assert not any(c.startswith("AT+QENG") for c in modem.commands[n:])
        assert "not supported here" in caplog.text
    finally:
        await at.close()


async def test_garbage_and_silence_are_errors_not_crashes(modem: SimModem) -> None:
    at = AtModem(AtPort(str(modem.link), timeout=0.5))
    await at.open()
    try:
        modem.fault = "garbage"
        with pytest.raises(AtError, match="no answer"):
            await at.sample()
        modem.fault = "silence"
        with pytest.raises(AtError, match="no answer"):
            await at.sample()
        modem.fault = ""
        assert (await at.sample()).registered is True  # back to normal
    finally:
        await at.close()


async def test_missing_port_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AtError, match="cannot open the AT port"):
        await AtModem(AtPort(str(tmp_path / "nope"))).open()
