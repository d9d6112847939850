"""The connection models of the 5G module: ``modem-at`` (its AT port) and ``modem-mm``
(ModemManager), with the identifier carrier and the reset policy."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.common import Strict
from gateway.durations import Duration


class CarrierConfig(Strict):
    """An active identifier carrier: the gateway's identifier code in the module's SIM
    (drivers/modem/carrier.py)."""

    kind: str = Field(
        description="sim-file (AT+CRSM READ BINARY of an EF), sim-applet (an applet over a "
        "logical channel: AT+CCHO/CGLA/CCHC), or a plugin's name (entry point group "
        "edgegw.carriers)")
    file_id: int | None = Field(default=None, ge=0, le=0xFFFF, description="sim-file: "
                                "the EF's id, e.g. 0x6FF0 or \"6FF0\"")
    length: int = Field(default=64, ge=1, le=255, description="sim-file: bytes to read")
    path: str | None = Field(
        default=None, pattern=r"^([0-9A-Fa-f]{4})+$", description="sim-file: the EF's path, e.g. "
        "3F007FFF")
    aid: str | None = Field(
        default=None, pattern=r"^([0-9A-Fa-f]{2}){5,16}$", description="sim-applet: the applet's "
        "AID (hex)")
    apdu: str = Field(
        default="80CA00FE00", pattern=r"^([0-9A-Fa-f]{2}){4,}$", description="sim-applet: the "
        "command APDU (GET DATA by default)")
    options: dict[str, str | int | bool] = Field(
        default_factory=dict, description="a plugin carrier's own settings")

    @field_validator("file_id", mode="before")
    @classmethod
    def _hex(cls, v: object) -> object:
        if isinstance(v, str):
            try:
                return int(v.removeprefix("0x").removeprefix("0X"), 16)
            except ValueError:
                raise ValueError(f"{v!r} is not a hex file id such as 6FF0") from None
        return v

    @model_validator(mode="after")
    def _needs(self) -> CarrierConfig:
        if self.kind == "sim-file" and self.file_id is None:
            raise ValueError("a sim-file carrier needs file_id (the EF's id, e.g. 6FF0)")
        if self.kind == "sim-applet" and self.aid is None:
            raise ValueError("a sim-applet carrier needs aid (the applet's AID, hex)")
        return self


class ModemReset(Strict):
    """Reset the module when the link stays dead (gateway/linkwatch.py)."""

    after: Duration = Field(
        default=600.0, ge=30, description="dead this long (not registered, or no broker "
        "connection) before a reset")
    max_per_hour: int = Field(
        default=2, ge=1, le=6, description="at most this many resets in any hour; then the gateway "
        "waits (never a reset loop)")
    action: Literal["radio", "module"] = Field(
        default="radio", description="radio: radio off and on (AT+CFUN=0/1, mmcli power state "
        "low/on); module: restart the module (AT+CFUN=1,1, mmcli --reset)")


class ModemAt(Strict):
    """The 5G module's AT port (drivers/modem/at.py)."""

    kind: Literal["modem-at"] = Field(description="the 5G module through its AT port")
    port: str = Field(
        description="the module's AT port, e.g. /dev/ttyUSB2 or /dev/serial/by-id/...-if02-port0")
    baudrate: int = Field(default=115200, ge=300, description="bits per second")
    timeout: Duration = Field(default=2.0, description="per AT command")
    vendor_commands: bool = Field(
        default=True, description="also ask vendor reports (Quectel AT+QENG); a refused one is not "
        "asked again")
    carrier: CarrierConfig | None = Field(
        default=None, description="read the gateway's identifier code from the SIM (an active "
        "identifier carrier) at connect")
    reset: ModemReset | None = Field(
        default=None, description="reset a module whose link stays dead (off by default)")


class ModemMm(Strict):
    """The module through ModemManager (``mmcli --output-json``; drivers/modem/mm.py)."""

    kind: Literal["modem-mm"] = Field(description="the 5G module through ModemManager")
    modem: str = Field(
        default="any", description="mmcli's -m argument: an index, a D-Bus path, or 'any'")
    mmcli: str = Field(default="mmcli", description="the mmcli executable")
    timeout: Duration = Field(default=5.0, description="per mmcli call")
    reset: ModemReset | None = Field(
        default=None, description="reset a module whose link stays dead (off by default)")
