"""Build gateway devices and drivers for simulated OPC UA servers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from firmware_sim.sim import Simulator, write_yaml

from drivers.base import DriverContext
from drivers.opcua.driver import OpcuaDriver
from gateway.config import Device, load_config
from gateway.profiles import Point


def opcua_driver(sim: Simulator, dev_id: str, tmp: Path, gateway: str = "gw-test",
                 **conn: Any) -> OpcuaDriver:
    cfg = sim.gateway_config(gateway)
    devs = [d for d in cfg["devices"] if d["id"] == dev_id]  # type: ignore[attr-defined]
    devs[0]["connection"].update({"timeout": "2s", **conn})
    cfg["devices"] = devs
    write_yaml(tmp / "gateway.yaml", cfg)
    dev = load_config(tmp / "gateway.yaml").devices[0]
    return OpcuaDriver(dev, DriverContext(gateway, tmp, tmp))


def groups_of(dev: Device) -> dict[str, tuple[float, Sequence[Point]]]:
    out: dict[str, list[Point]] = {}
    for p in dev.profile.expanded_points():
        out.setdefault(dev.profile.group_of(p), []).append(p)
    return {g: (dev.poll_periods[g], tuple(ps)) for g, ps in out.items()}


@contextlib.asynccontextmanager
async def served(tmp: Path, dev_id: str, profile: str, sim_kw: dict[str, Any] | None = None,
                 **conn: Any) -> AsyncIterator[tuple[Simulator, OpcuaDriver]]:
    """A simulator serving one OPC UA machine, and a connected driver for it."""
    async with Simulator(0.05) as sim:
        sim.add_profile_device(dev_id, profile, **(sim_kw or {}))
        await sim.opcua[dev_id].start()
        drv = opcua_driver(sim, dev_id, tmp, **conn)
        await drv.connect()
        try:
            yield sim, drv
        finally:
            await drv.close()
