"""Optional services are isolated from polling and the uplink, and /healthz says when a
device is not being polled (issue 18, item 2: a registrar failure used to cancel the
devices while /healthz still said ok)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from firmware_sim.sim import Simulator

import gateway.services
from gateway.app import Gateway
from tests.gateway.health_gateway import health_gateway
from tests.gateway.identifiers.test_service import until
from tests.gateway.test_health import get
from tests.support.servers import Mosquitto

pytestmark = [pytest.mark.component, pytest.mark.timeout(60)]


async def test_a_failing_service_is_restarted_and_devices_keep_polling(
        tmp_path: Path, sim: Simulator, broker: Mosquitto,
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0

    async def broken(self: Gateway) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("reply item is not an object")

    monkeypatch.setattr(Gateway, "_summaries", broken)
    monkeypatch.setattr(gateway.services, "SERVICE_BACKOFF", (0.05, 0.1))
    async with health_gateway(tmp_path, sim, broker, "gw-isolated") as gw:
        assert gw.health is not None
        await until(lambda: calls >= 3)
        polls = gw.stats.devices["cnc"].polls
        await until(lambda: gw.stats.devices["cnc"].polls >= polls + 2)  # still polling
        published = gw.stats.published
        await until(lambda: gw.stats.published > published)  # and publishing
        code, _, body = await asyncio.to_thread(get, gw.health.port, "/healthz")
        h = json.loads(body)
        assert code == 503 and h["status"] == "degraded", h
        failed = h["services_failed"]["fault-summary"]
        assert failed["failures"] >= 3 and "not an object" in failed["last_error"]
        assert h["devices_stalled"] == []
        _, _, metrics = await asyncio.to_thread(get, gw.health.port, "/metrics")
        assert 'edgegw_service_failures_total{service="fault-summary"}' in metrics


async def test_healthz_is_not_ok_while_a_device_is_not_polled(
        tmp_path: Path, sim: Simulator, broker: Mosquitto) -> None:
    async with health_gateway(tmp_path, sim, broker, "gw-stalled") as gw:
        assert gw.health is not None
        code, _, body = await asyncio.to_thread(get, gw.health.port, "/healthz")
        assert code == 200 and json.loads(body)["devices_stalled"] == []
        gw.devices.tasks["cnc"].cancel()  # what a failure in the old task group did
        await asyncio.sleep(0.1)
        code, _, body = await asyncio.to_thread(get, gw.health.port, "/healthz")
        h = json.loads(body)
        assert code == 503 and h["status"] == "degraded" and h["devices_stalled"] == ["cnc"]
        # a device whose task runs but whose cycles stopped (a hung read) counts too
        runner = next(r for r in gw.devices.runners if r.device.id == "gone")
        assert runner.stall_after is not None
        runner.stall_after = 0.0  # as if its last cycle were longer ago than allowed
        _, _, body = await asyncio.to_thread(get, gw.health.port, "/healthz")
        assert json.loads(body)["devices_stalled"] == ["cnc", "gone"]
