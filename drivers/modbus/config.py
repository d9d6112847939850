"""The connection models of a Modbus device: ``modbus-tcp`` and ``modbus-rtu``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.common import Strict
from gateway.durations import Duration


class ModbusTcp(Strict):
    kind: Literal["modbus-tcp"] = Field(description="Modbus TCP")
    host: str = Field(description="the device, or a TCP-to-RTU gateway")
    port: int = Field(default=502, ge=1, le=65535, description="TCP port")
    unit_id: int = Field(
        default=1, ge=0, le=255, description="unit id (0-255; a TCP-to-RTU gateway routes by it)")
    timeout: Duration = Field(default=1.0, description="per request")
    retries: int = Field(
        default=1, ge=0, le=10, description="retries per request after a timeout: a dead device "
        "costs timeout x (retries + 1) per cycle")


class ModbusRtu(Strict):
    kind: Literal["modbus-rtu"] = Field(description="Modbus RTU; devices on one port share the bus")
    port: str = Field(description="serial device, e.g. /dev/ttyUSB0 or /dev/serial/by-id/...")
    baudrate: int = Field(default=9600, ge=300, le=4_000_000, description="bits per second")
    parity: Literal["N", "E", "O"] = Field(default="N", description="N, E or O")
    stopbits: Literal[1, 2] = Field(default=1, description="1 or 2")
    bytesize: Literal[7, 8] = Field(default=8, description="7 or 8")
    unit_id: int = Field(
        default=1, ge=1, le=247, description="the device's unit id on the line (1-247)")
    timeout: Duration = Field(default=1.0, description="per request")
    retries: int = Field(default=1, ge=0, le=10, description="retries per request after a timeout")
