"""The driver contract and the explicit driver registry.

A driver connects to one device (or one bus shared by several devices), reads lists of
profile points and returns typed :class:`~gateway.model.Reading` objects, one per
request it made. It decodes bytes to values; it does not scale, filter or publish.
Failures are the project's own errors: :class:`~gateway.errors.DeviceUnreachable`
when the device cannot be reached at all (the scheduler then reconnects with backoff),
a reading with ``error`` set when one request failed but the device is alive.
The gateway owns scheduling, reconnects and backoff; drivers never retry on their own
beyond the protocol-level retries configured for them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from gateway.config import Device
from gateway.model import Reading, Value
from gateway.profiles import Point


class Driver(Protocol):
    @property
    def connected(self) -> bool: ...

    async def connect(self) -> None:
        """Open the connection; raise DeviceUnreachable on failure."""

    async def read(self, points: Sequence[Point]) -> list[Reading]:
        """Read ``points`` (pass the same sequence object each cycle; plans are cached)."""

    async def write(self, point: Point, value: Value) -> None:
        """Write one ``rw`` point (value in engineering units, before scaling)."""

    async def close(self) -> None:
        """Drop the connection (the scheduler calls connect() again later); never raises."""


class Closable(Protocol):
    def close(self) -> None: ...


class DriverContext:
    """Resources shared between the drivers of one gateway (e.g. serial buses)."""

    def __init__(self) -> None:
        self.shared: dict[object, Closable] = {}

    def close(self) -> None:
        for res in self.shared.values():
            res.close()
        self.shared.clear()


DriverFactory = Callable[[Device, DriverContext], Driver]


def driver_for(device: Device, ctx: DriverContext) -> Driver:
    """Build the driver for a device's connection kind (explicit registry, no scanning)."""
    from drivers.modbus.driver import ModbusDriver

    registry: dict[str, DriverFactory] = {
        "modbus-tcp": ModbusDriver,
        "modbus-rtu": ModbusDriver,
    }
    return registry[device.config.connection.kind](device, ctx)
