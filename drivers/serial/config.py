"""The connection model of a device with its own serial port (``serial``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from gateway.common import Strict


class Serial(Strict):
    """A device with its own serial port (line/frame protocols from its profile)."""

    kind: Literal["serial"] = Field(description="a device with its own serial port")
    port: str | list[str] = Field(
        description="device path; prefer /dev/serial/by-id/... (follows the adapter to whatever "
        "ttyUSBn it gets); a list is tried in order")
    baudrate: int = Field(default=9600, ge=50, le=4_000_000)
    bytesize: Literal[5, 6, 7, 8] = Field(default=8, description="data bits")
    parity: Literal["N", "E", "O", "M", "S"] = Field(default="N", description="N, E, O, M or S")
    stopbits: float = Field(default=1, description="1, 1.5 or 2")
    rs485: bool = Field(
        default=False, description="kernel RS-485 mode (RTS drives the transceiver), where the "
        "port's driver supports it")

    @field_validator("stopbits")
    @classmethod
    def _stopbits(cls, v: float) -> float:
        if v not in (1, 1.5, 2):
            raise ValueError("stopbits is 1, 1.5 or 2")
        return v

    @property
    def ports(self) -> list[str]:
        return [self.port] if isinstance(self.port, str) else list(self.port)
