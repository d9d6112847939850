"""The scheduler never leaves a device 'starting': a driver failing in a way nobody
expected (a library's AssertionError) makes the device offline with the reason, and the
gateway keeps supervising it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from firmware_sim.sim import Simulator, write_yaml

from drivers.base import Driver, DriverContext
from drivers.registry import driver_for
from gateway import app
from gateway.config import Device, load_config
from tests.support.servers import Mosquitto

pytestmark = pytest.mark.component


class _Broken:
    """A real driver whose connect fails with an unexpected exception, ``fails`` times."""

    def __init__(self, inner: Driver, fails: int) -> None:
        self.inner = inner
        self.fails = fails
        self.streaming = False

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def connect(self) -> None:
        if self.fails:
            self.fails -= 1
            raise AssertionError("library bug")
        await self.inner.connect()


async def test_an_unexpected_connect_failure_is_offline_with_the_reason(
        tmp_path: Path, sim: Simulator, broker: Mosquitto,
        monkeypatch: pytest.MonkeyPatch) -> None:
    sim.add_profile_device("cnc", "acme/cnc-vmc850", port=0)
    await sim.start()
    cfg = sim.gateway_config("gw-sched", mqtt_port=broker.port, store={"kind": "memory"},
                             health={"enabled": False})
    # devices reconnect with the uplink's backoff
    cfg["uplink"]["mqtt"]["reconnect"] = {"initial": "100ms", "max": "200ms"}  # type: ignore[index]
    write_yaml(tmp_path / "gateway.yaml", cfg)

    def broken(dev: Device, ctx: DriverContext) -> Driver:
        return _Broken(driver_for(dev, ctx), fails=3)  # type: ignore[return-value]

    monkeypatch.setattr(app, "driver_for", broken)
    gw = app.Gateway(load_config(tmp_path / "gateway.yaml"))
    task = asyncio.create_task(gw.run())
    st = gw.stats.devices
    try:
        for _ in range(100):
            await asyncio.sleep(0.05)
            if "cnc" in st and st["cnc"].state == "offline":
                break
        assert st["cnc"].state == "offline"
        assert st["cnc"].last_error == "internal error: AssertionError: library bug"
        for _ in range(200):  # supervised on: online once the driver connects
            await asyncio.sleep(0.05)
            if st["cnc"].state == "online" and st["cnc"].polls:
                break
        assert st["cnc"].state == "online"
    finally:
        gw.stop()
        await asyncio.wait_for(task, 10)
