"""The health endpoint of a running gateway: /healthz, /metrics, the status page, and
requests it must survive."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from firmware_sim.sim import Simulator, write_yaml

from gateway.app import Gateway
from gateway.config import load_config
from tests.gateway.health_gateway import health_gateway
from tests.support.servers import Mosquitto

pytestmark = [pytest.mark.component, pytest.mark.timeout(60)]


def get(port: int, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


async def raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()
    out = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return out


async def test_health_metrics_and_status_page(tmp_path: Path, sim: Simulator,
                                              broker: Mosquitto) -> None:
    async with health_gateway(tmp_path, sim, broker, "gw-health") as gw:
        assert gw.health is not None
        port = gw.health.port
        code, ctype, body = await asyncio.to_thread(get, port, "/healthz")
        h = json.loads(body)
        assert code == 200 and ctype.startswith("application/json")
        assert h["status"] == "ok" and h["devices"] == 2 and h["devices_online"] == 1
        assert h["uplink_connected"] is True

        code, ctype, body = await asyncio.to_thread(get, port, "/metrics")
        assert code == 200 and ctype.startswith("text/plain; version=0.0.4")
        assert 'edgegw_device_up{device="cnc"} 1.0' in body
        assert 'edgegw_device_up{device="gone"} 0.0' in body
        assert "# TYPE edgegw_device_polls_total counter" in body
        assert "edgegw_uplink_connected 1.0" in body
        assert "# TYPE edgegw_modbus_refused_ranges gauge" in body  # the drivers' own
        assert 'edgegw_modbus_requests_per_cycle{device="cnc"}' in body
        polls = next(ln for ln in body.splitlines()
                     if ln.startswith('edgegw_device_polls_total{device="cnc"}'))
        assert int(float(polls.split()[-1])) >= 2
        for line in body.splitlines():  # every sample line is "name{labels} number"
            if not line.startswith("#"):
                float(line.rsplit(" ", 1)[1])

        code, ctype, page = await asyncio.to_thread(get, port, "/")
        assert code == 200 and "text/html" in ctype
        assert 'http-equiv="refresh"' in page and "<td>cnc</td>" in page
        assert "spindle_speed=" in page and "offline" in page  # values; the dead device

        assert (await asyncio.to_thread(get, port, "/nope"))[0] == 404
        assert (await raw(port, b"garbage\r\n\r\n")).startswith(b"HTTP/1.1 400")
        assert (await raw(port, b"POST /healthz HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405")
        assert (await raw(port, b"GET /he")).startswith(b"HTTP/1.1 400")  # cut short
        assert (await asyncio.to_thread(get, port, "/healthz"))[0] == 200  # still serving


async def test_a_taken_port_does_not_stop_the_gateway(tmp_path: Path, sim: Simulator,
                                                      broker: Mosquitto) -> None:
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    taken = blocker.sockets[0].getsockname()[1]
    sim.add_profile_device("cnc", "acme/cnc-vmc850", port=0)
    await sim.start()
    write_yaml(tmp_path / "gateway.yaml", sim.gateway_config(
        "gw", mqtt_port=broker.port, store={"kind": "memory"}, health={"port": taken}))
    gw = Gateway(load_config(tmp_path / "gateway.yaml"))
    task = asyncio.create_task(gw.run())
    for _ in range(100):
        if gw.stats.devices.get("cnc") and gw.stats.devices["cnc"].polls:
            break
        await asyncio.sleep(0.05)
    assert gw.health is None and gw.stats.devices["cnc"].polls
    gw.stop()
    await asyncio.wait_for(task, 15)
    blocker.close()


async def test_a_flood_of_idle_connections_is_bounded_and_healthz_still_answers(
        tmp_path: Path, sim: Simulator, broker: Mosquitto,
        caplog: pytest.LogCaptureFixture) -> None:
    """Issue 18, item 11: 1,100 idle connections used up the 1,024 descriptors and wrote
    6 MB of tracebacks in 45 s."""
    import resource

    from gateway.httpserve import MAX_CONNECTIONS

    async with health_gateway(tmp_path, sim, broker, "gw-flood") as gw:
        assert gw.health is not None
        port = gw.health.port
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        n = min(600, soft // 2 - 100)  # our own client ends count against the limit too
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(n)]
        await asyncio.sleep(0.2)
        assert gw.health.active <= MAX_CONNECTIONS
        assert gw.health.refused >= n - MAX_CONNECTIONS
        code, _, body = await asyncio.to_thread(get, port, "/healthz")  # not locked out
        assert code == 200 and json.loads(body)["status"] == "ok"
        _, _, metrics = await asyncio.to_thread(get, port, "/metrics")
        assert "edgegw_health_refused_connections_total" in metrics
        for _, w in idle:
            w.close()
        warnings = [r for r in caplog.records if "connections at once" in r.getMessage()]
        assert len(warnings) == 1 and not any(r.exc_info for r in caplog.records)
