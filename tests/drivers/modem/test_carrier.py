"""Active identifier carriers: decoding the SIM's answers (unit), reading the code from
the simulated module's UICC over its AT port (component), the plugin point, and the
gateway registering its code with IMEI and ICCID."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from firmware_sim.modem import SimModem

from drivers.modem import carrier as carrier_mod
from drivers.modem.at import AtModem, AtPort
from drivers.modem.carrier import (
    CarrierError,
    SimApplet,
    SimFile,
    cgla_data,
    crsm_data,
    decode_code,
    make_carrier,
)
from drivers.modem.config import CarrierConfig

CODE = "88.118.8/GW-HALL3-01"


# -- decoding -------------------------------------------------------------------------------
@pytest.mark.parametrize("data", [
    bytes([0x80, len(CODE)]) + CODE.encode() + b"\xff" * 10,  # TLV, padded
    bytes([0x80, 0x81, len(CODE)]) + CODE.encode(),  # TLV, two-byte length
    CODE.encode() + b"\xff" * 8,  # plain text, FF padding
    CODE.encode() + b"\x00" * 8,  # plain text, 00 padding
])
def test_decode_code_forms(data: bytes) -> None:
    assert decode_code(data) == CODE


def test_decode_normalises_the_prefix() -> None:
    assert decode_code(b"88.118.8/GW-1") == "88.118.8/GW-1"


@pytest.mark.parametrize(("data", "message"), [
    (b"\xff" * 16, "empty"),
    (b"\x80\x05ab", "TLV says 5 bytes"),
    (b"\x80\x82\x01\x00", "unsupported TLV length"),
    (b"hello world", "not an identifier code"),
    (b"\xc3\x28abc", "not text"),
])
def test_decode_rejects_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(CarrierError, match=message):
        decode_code(data)


def test_crsm_answers() -> None:
    assert crsm_data('+CRSM: 144,0,"8003414243"\r\nOK') == b"\x80\x03ABC"
    with pytest.raises(CarrierError, match=r"9404.*file not found"):
        crsm_data("+CRSM: 148,4\r\nOK")
    with pytest.raises(CarrierError, match="no \\+CRSM answer"):
        crsm_data("+CME ERROR: 10")


def test_cgla_answers() -> None:
    assert cgla_data('+CGLA: 10,"414243 9000"'.replace(" ", "")) == b"ABC"
    with pytest.raises(CarrierError, match=r"6A82.*not found"):
        cgla_data('+CGLA: 4,"6A82"')
    with pytest.raises(CarrierError, match="without a status word"):
        cgla_data('+CGLA: 2,"90"')


def test_config_needs_what_the_kind_needs() -> None:
    with pytest.raises(ValueError, match="needs file_id"):
        CarrierConfig.model_validate({"kind": "sim-file"})
    with pytest.raises(ValueError, match="needs aid"):
        CarrierConfig.model_validate({"kind": "sim-applet"})
    assert CarrierConfig.model_validate({"kind": "sim-file", "file_id": "6FF0"}).file_id \
        == 0x6FF0


def test_unknown_kind_names_the_built_in_ones() -> None:
    with pytest.raises(CarrierError, match="sim-file, sim-applet; installed plugins"):
        make_carrier(CarrierConfig.model_validate({"kind": "nfc-tag"}))


def test_plugin_carrier_through_the_entry_point_group(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    class Fixed:
        kind = "fixed"

        def __init__(self, cfg: CarrierConfig) -> None:
            self.code = str(cfg.options["code"])

        async def read(self, port: object) -> str:
            return self.code

    ep = SimpleNamespace(name="fixed", load=lambda: Fixed)
    monkeypatch.setattr(carrier_mod, "entry_points",
                        lambda group: [ep] if group == "edgegw.carriers" else [])
    c = make_carrier(CarrierConfig.model_validate({"kind": "fixed",
                                                   "options": {"code": CODE}}))
    assert isinstance(c, Fixed) and c.code == CODE


# -- against the simulated module -------------------------------------------------------------
@pytest.fixture
async def modem(tmp_path: Path) -> AsyncIterator[SimModem]:
    m = SimModem(tmp_path / "ttyModem", carrier=CODE)
    await m.start()
    yield m
    await m.stop()


@pytest.mark.component
@pytest.mark.timeout(30)
@pytest.mark.parametrize("carrier", [SimFile(SimModem.CARRIER_FILE),
                                     SimApplet(SimModem.CARRIER_AID)],
                         ids=["sim-file", "sim-applet"])
async def test_identity_reads_the_carrier(modem: SimModem, carrier: object) -> None:
    at = AtModem(AtPort(str(modem.link), timeout=1.0), carrier=carrier)  # type: ignore[arg-type]
    await at.open()
    try:
        ident = await at.identity()
    finally:
        await at.close()
    assert (ident.imei, ident.iccid, ident.identifier) == (SimModem.IMEI, SimModem.ICCID,
                                                           CODE)
    if isinstance(carrier, SimApplet):  # the logical channel was closed again
        assert [c for c in modem.commands if c.startswith("AT+CC")] == [
            f'AT+CCHO="{SimModem.CARRIER_AID}"', "AT+CCHC=1"]


@pytest.mark.component
@pytest.mark.timeout(30)
async def test_a_carrier_that_cannot_be_read_is_logged_once_and_the_modem_works(
    modem: SimModem, caplog: pytest.LogCaptureFixture
) -> None:
    at = AtModem(AtPort(str(modem.link), timeout=1.0), carrier=SimFile(0x6FAA))
    await at.open()
    try:
        with caplog.at_level(logging.WARNING, logger="edgegw.modem"):
            first = await at.identity()
            second = await at.identity()
        assert first.identifier is None and second.identifier is None
        assert first.imei == SimModem.IMEI
        assert caplog.text.count("9404 (file not found)") == 1
        assert (await at.sample()).registered is True
    finally:
        await at.close()


@pytest.mark.component
@pytest.mark.timeout(30)
async def test_applet_missing_from_the_sim(tmp_path: Path) -> None:
    m = SimModem(tmp_path / "ttyModem")  # no carrier in this SIM
    await m.start()
    at = AtModem(AtPort(str(m.link), timeout=1.0), carrier=SimApplet(SimModem.CARRIER_AID))
    await at.open()
    try:
        assert (await at.identity()).identifier is None
    finally:
        await at.close()
        await m.stop()


def test_an_unknown_carrier_kind_is_a_config_error(tmp_path: Path) -> None:
    from firmware_sim.sim import write_yaml

    from drivers.base import DriverContext
    from drivers.registry import driver_for
    from gateway.config import load_config
    from gateway.errors import ConfigError

    write_yaml(tmp_path / "gateway.yaml", {"gateway": {"id": "gw"}, "devices": [
        {"id": "modem", "profile": "edgegw/modem", "connection": {
            "kind": "modem-at", "port": "/dev/ttyUSB2", "carrier": {"kind": "nfc-tag"}}}]})
    dev = load_config(tmp_path / "gateway.yaml").devices[0]
    with pytest.raises(ConfigError, match=r"device modem: connection\.carrier\.kind: no "
                       r"identifier carrier of kind 'nfc-tag'"):
        driver_for(dev, DriverContext("gw", tmp_path, tmp_path))
