"""What the commands share: the default config path, finding a configured device and its
points, and a connected driver for one command."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from gateway.config import Device, LoadedConfig
from gateway.errors import ConfigError
from gateway.profiles import Point

if TYPE_CHECKING:
    from drivers.base import Driver

    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

DEFAULT_CONFIG = os.environ.get("EDGEGW_CONFIG", "/etc/edgegw/gateway.yaml")

WithConfig = Callable[[argparse.ArgumentParser], None]


def device(loaded: LoadedConfig, dev_id: str) -> Device:
    for d in loaded.devices:
        if d.id == dev_id:
            return d
    known = ", ".join(d.id for d in loaded.devices) or "none"
    raise ConfigError([(str(loaded.path), f"no device '{dev_id}' (devices: {known})")])


def points(dev: Device, name: str | None) -> list[Point]:
    """Every point of the device's profile, or the one named."""
    pts = dev.profile.expanded_points()
    if name is None:
        return pts
    found = [p for p in pts if p.name == name]
    if not found:
        raise ConfigError([(dev.profile_name, f"no point '{name}' in the profile")])
    return found


@contextlib.asynccontextmanager
async def connected(loaded: LoadedConfig, dev: Device,
                    relearn: bool = False) -> AsyncIterator[Driver]:
    """The device's driver, connected; closed at the end."""
    from drivers.base import DriverContext
    from drivers.modbus.driver import ModbusDriver
    from drivers.registry import driver_for

    ctx = DriverContext(loaded.config.gateway.id, loaded.state_dir, loaded.path.parent)
    drv = driver_for(dev, ctx)
    if relearn and isinstance(drv, ModbusDriver):
        drv.forget()
    try:
        await drv.connect()
        yield drv
    finally:
        await drv.close()
        ctx.close()
