"""An in-process gateway with its health endpoint, for the endpoint and browser tests:
a CNC machine that answers and an energy meter that does not."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from firmware_sim.sim import Simulator, write_yaml

from gateway.app import Gateway
from gateway.config import load_config
from tests.support.servers import Mosquitto


@contextlib.asynccontextmanager
async def health_gateway(tmp_path: Path, sim: Simulator, broker: Mosquitto,
                         gw_id: str) -> AsyncIterator[Gateway]:
    sim.add_profile_device("cnc", "acme/cnc-vmc850", port=0)
    sim.add_profile_device("gone", "voltmeter/em340-3ph", port=0)
    await sim.start()
    await sim.tcp["gone"].stop()  # a device that does not answer
    cfg = sim.gateway_config(gw_id, mqtt_port=broker.port, store={"kind": "memory"},
                             health={"port": 0})
    for d in cfg["devices"]:  # type: ignore[attr-defined]
        d["connection"].update({"timeout": "200ms", "retries": 0})
    write_yaml(tmp_path / "gateway.yaml", cfg)
    gw = Gateway(load_config(tmp_path / "gateway.yaml"))
    task = asyncio.create_task(gw.run())
    try:
        for _ in range(200):
            if gw.health and gw.health.port and gw.stats.devices["cnc"].polls >= 2 \
                    and gw.stats.published:
                break
            await asyncio.sleep(0.05)
        assert gw.health is not None
        yield gw
    finally:
        gw.stop()
        await asyncio.wait_for(task, 15)
