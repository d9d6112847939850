"""The one protocol table: a connection kind -> its protocol, its connection model and its
driver.

Each protocol lives in its own folder, ``drivers/<protocol>/``: ``config.py`` (the
connection model, light: pydantic only), ``driver.py`` (the driver), a README. The driver
is imported on demand, when a device of its kind is configured, so a Modbus-only gateway
does not load asyncua (~25 MB). Adding a protocol is a new folder plus its line in
:data:`KINDS` and its model in :data:`drivers.connection.Connection`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drivers.base import Device, Driver, DriverContext


@dataclass(frozen=True, slots=True)
class Kind:
    #: the profile's protocol (``profile.protocol``) a device of this kind needs
    protocol: str
    #: ``module:Class`` of the driver, imported on demand
    driver: str


KINDS: dict[str, Kind] = {
    "modbus-tcp": Kind("modbus", "drivers.modbus.driver:ModbusDriver"),
    "modbus-rtu": Kind("modbus", "drivers.modbus.driver:ModbusDriver"),
    "opcua": Kind("opcua", "drivers.opcua.driver:OpcuaDriver"),
    "serial": Kind("serial", "drivers.serial.driver:SerialDriver"),
    "modem-at": Kind("modem", "drivers.modem.driver:ModemDriver"),
    "modem-mm": Kind("modem", "drivers.modem.driver:ModemDriver"),
}

def protocol_of(kind: str) -> str:
    return KINDS[kind].protocol


def driver_for(device: Device, ctx: DriverContext) -> Driver:
    """Build the driver for a device's connection kind (the table above, no scanning)."""
    kind = device.connection.kind
    entry = KINDS.get(kind)
    if entry is None:
        raise ValueError(f"no driver for connection kind {kind!r}")
    module, _, name = entry.driver.partition(":")
    factory = getattr(importlib.import_module(module), name)
    driver: Driver = factory(device, ctx)
    return driver
