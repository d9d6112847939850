"""End to end: simulator -> gateway (a real `edgegw run` process) -> mosquitto -> subscriber."""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from firmware_sim.sim import Simulator

from tests.e2e.harness import GatewayProcess, run_cli, start_sim, write_config
from tests.mqtt_sub import Subscriber
from tests.support.servers import Mosquitto, free_port

pytestmark = pytest.mark.e2e


async def test_values_arrive_and_match_the_simulator(
    sim: Simulator, broker: Mosquitto, gateway: GatewayProcess
) -> None:
    await start_sim(sim)
    sim.devices["dev0"].set_state("running")  # type: ignore[union-attr]
    write_config(sim, gateway.config, broker)
    async with Subscriber(broker.port) as sub:
        gateway.start()
        await sub.wait_for(lambda: all(sub.data(f"dev{i}") for i in range(3)), 20,
                           "data from every device")
        await asyncio.sleep(1.0)
    first = sub.data("dev0")[0]
    assert first["v"] == 1 and first["gw"] == "gw-e2e" and first["prof"] == "acme/cnc-vmc850@1.2"
    merged: dict[str, Any] = {}
    for d in sub.data("dev0"):
        merged.update(d["p"])
    assert merged["program_number"] == 4711
    assert merged["program_name"] == "O4711-FLANGE"
    assert merged["cycle_time"] == pytest.approx(19.87)
    assert merged["cycle_active"] is True
    assert sub.data("dev0")[-1]["state"] == "running"
    press: dict[str, Any] = {}
    for d in sub.data("dev1"):
        press.update(d["p"])
    assert press["green_tyre_code"] == "TYRE-2026-000123"
    assert press["interlocks.steam_ok"] is True
    assert abs(first["ts"] / 1000 - time.time()) < 30
    seqs = [d["seq"] for d in sub.data()]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    online = [s for s in sub.status() if s["status"] == "online"]
    assert online and set(online[-1]["devices"]) == {"dev0", "dev1", "dev2"}
    assert gateway.signal(signal.SIGTERM) == 0


async def test_dead_and_silent_devices_do_not_slow_the_others(
    sim: Simulator, broker: Mosquitto, gateway: GatewayProcess
) -> None:
    await start_sim(sim, 4)
    write_config(sim, gateway.config, broker, pipeline={"report": "always"})
    async with Subscriber(broker.port) as sub:
        gateway.start()
        await sub.wait_for(lambda: all(sub.data(f"dev{i}") for i in range(4)), 20, "all devices")
        await asyncio.sleep(1.0)

        def rate(dev: str, since: float) -> float:
            n = sum(1 for m in sub.messages if m.at >= since and m.topic.endswith("/data")
                    and m.doc["dev"] == dev and m.doc.get("grp") in ("fast", "process"))
            return n / (time.monotonic() - since)

        t0 = time.monotonic()
        await asyncio.sleep(3.0)
        before = {d: rate(d, t0) for d in ("dev2", "dev3")}
        sim.set_fault("dev0", "drop")  # killed: connection closed, no reconnect
        await sim.tcp["dev0"].stop()
        sim.set_fault("dev1", "silence")  # alive, but never answers
        t1 = time.monotonic()
        await sub.wait_for(
            lambda: any(d.get("state") == "offline" for d in sub.data("dev0")), 10, "dev0 offline")
        await sub.wait_for(
            lambda: any(d.get("state") == "offline" for d in sub.data("dev1")), 10, "dev1 offline")
        await asyncio.sleep(3.0)
        after = {d: rate(d, t1) for d in ("dev2", "dev3")}
    for d in ("dev2", "dev3"):
        assert before[d] == pytest.approx(5.0, rel=0.25), before  # 200 ms polls
        assert after[d] == pytest.approx(before[d], rel=0.2), (before, after)
    offline = next(d for d in sub.data("dev0") if d.get("state") == "offline")
    assert offline["err"] and offline["p"] == {}
    status = sub.status()[-1]
    assert status["devices"]["dev0"]["state"] == "offline"
    assert status["devices"]["dev2"]["state"] == "online"


async def test_device_recovers_after_outage(
    sim: Simulator, broker: Mosquitto, gateway: GatewayProcess
) -> None:
    await start_sim(sim, 1)
    write_config(sim, gateway.config, broker)
    async with Subscriber(broker.port) as sub:
        gateway.start()
        await sub.wait_for(lambda: sub.data("dev0"), 20, "first data")
        sim.set_fault("dev0", "silence")
        await sub.wait_for(lambda: sub.data("dev0")[-1].get("state") == "offline", 10, "offline")
        n = len(sub.data("dev0"))
        sim.set_fault("dev0", "none")

        def reported_again() -> set[str]:
            return {k for d in sub.data("dev0")[n:] for k in d["p"]}

        # every point is reported again after an outage (both poll groups), unchanged or not
        await sub.wait_for(lambda: {"program_number", "program_name"} <= reported_again(), 15,
                           "every point again")
    assert sub.data("dev0")[-1]["state"] != "offline"


async def test_exception_codes_mark_quality_bad_and_gateway_keeps_running(
    sim: Simulator, broker: Mosquitto, gateway: GatewayProcess
) -> None:
    await start_sim(sim, 2)
    write_config(sim, gateway.config, broker)
    async with Subscriber(broker.port) as sub:
        gateway.start()
        await sub.wait_for(lambda: sub.data("dev0") and sub.data("dev1"), 20, "first data")
        sim.set_fault("dev0", "exception:4")
        await sub.wait_for(lambda: any("program_number" in d.get("q", {})
                                       for d in sub.data("dev0")), 10, "bad quality")
        n1 = len(sub.data("dev1"))
        await asyncio.sleep(1.5)
        assert len(sub.data("dev1")) > n1
    bad = next(d for d in sub.data("dev0") if "program_number" in d.get("q", {}))
    assert bad["q"]["program_number"] == [
        "bad", "modbus exception 4 (server device failure) at holding 0-4 (fc 3)"]
    assert bad["p"]["program_number"] is None
    assert gateway.proc is not None and gateway.proc.poll() is None


async def test_sigkill_leaves_the_last_will(
    sim: Simulator, broker: Mosquitto, gateway: GatewayProcess
) -> None:
    await start_sim(sim, 1)
    write_config(sim, gateway.config, broker)
    async with Subscriber(broker.port, "edgegw/gw-e2e/status") as sub:
        gateway.start()
        await sub.wait_for(lambda: len([s for s in sub.status() if s["status"] == "online"])
                           >= 2, 20, "two online statuses (status_interval 1 s)")
        gateway.signal(signal.SIGKILL)
        killed = time.time() * 1000
        await sub.wait_for(lambda: sub.status()[-1]["status"] == "offline", 60, "last will")
    online = [s for s in sub.status() if s["status"] == "online"]
    will = sub.status()[-1]
    assert will["reason"] == "connection lost"
    assert will["since"] == online[-1]["since"] == will["ts"]  # the will is made at connect
    assert online[-1]["ts"] > online[-1]["since"] and online[-1]["interval"] == 1.0
    # the retained 'seen' survives the will: when the gateway was last seen online
    async with Subscriber(broker.port, "edgegw/gw-e2e/seen") as seen:
        await seen.wait_for(lambda: seen.messages, 10, "the retained seen message")
    last = seen.messages[-1].doc
    assert seen.messages[-1].retain and last["since"] == will["since"]
    assert online[-1]["ts"] <= last["ts"] <= killed


async def test_overrunning_polls_are_skipped_and_counted(
    sim: Simulator, broker: Mosquitto, gateway: GatewayProcess
) -> None:
    """Overload is visible: skipped polls are counted in the status topic and /metrics
    and logged once, and what was read is delivered."""
    await start_sim(sim, 1)
    health = free_port()
    write_config(sim, gateway.config, broker, health={"port": health})  # 200 ms polls
    sim.set_fault("dev0", "slow:250ms")  # answers in time, but every cycle overruns
    async with Subscriber(broker.port) as sub:
        gateway.start()
        await sub.wait_for(
            lambda: any(s.get("devices", {}).get("dev0", {}).get("missed_ticks", 0) > 3
                        for s in sub.status()), 20, "missed ticks in the status topic")
        body = await asyncio.to_thread(_metrics, health)
    assert sub.data("dev0"), "slow device still delivers"
    missed = [float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
              if line.startswith('edgegw_device_missed_ticks_total{device="dev0"')]
    assert missed and missed[0] > 3, body
    assert gateway.signal(signal.SIGTERM) == 0
    log = gateway.log.read_text()
    assert log.count("overran its period 0.2s; skipped") == 1, log  # once, not per poll
    assert "device dev0: poll group" in log


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return str(r.read().decode())


async def test_cli_read_and_write(sim: Simulator, broker: Mosquitto, tmp_path: Path) -> None:
    await start_sim(sim, 2)
    cfg = tmp_path / "gateway.yaml"
    write_config(sim, cfg, broker)
    code, _, err = await run_cli("write", "-c", str(cfg), "dev1", "platen_temp_setpoint", "171.5")
    assert code == 1 and "device writes are disabled" in err  # off unless the config says
    write_config(sim, cfg, broker, writes={"enabled": True})
    code, out, _ = await run_cli("read", "-c", str(cfg), "dev0")
    assert code == 0
    assert "program_name                   O4711-FLANGE" in out
    assert "cycle_time                     19.87 s" in out
    assert "operating_hours                12873." in out and "e+" not in out  # full precision
    assert "(state)" in out  # every point the state rules use was read
    code, out, _ = await run_cli("read", "-c", str(cfg), "dev0", "program_number")
    assert code == 0 and "4711" in out and "(state)" not in out  # one point: no guess
    code, out, err = await run_cli("write", "-c", str(cfg), "dev1", "platen_temp_setpoint",
                                   "171.5")
    assert code == 0 and "ok" in out
    assert "write by " in err and "dev1.platen_temp_setpoint = 171.5" in err  # who, what
    code, out, _ = await run_cli("read", "-c", str(cfg), "dev1", "platen_temp_setpoint")
    assert "171.5 degC" in out
    code, _, err = await run_cli("write", "-c", str(cfg), "dev1", "press_step", "3")
    assert code == 2 and "read-only" in err
    code, _, err = await run_cli("read", "-c", str(cfg), "nope")
    assert code == 1 and "no device 'nope'" in err
    sim.set_fault("dev0", "silence")
    code, _, err = await run_cli("read", "-c", str(cfg), "dev0")
    assert code == 2 and "no response" in err
