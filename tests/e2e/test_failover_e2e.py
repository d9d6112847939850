"""A clustered broker's nodes as `uplink.mqtt.hosts`: when the node the gateway publishes
to goes away, it fails over to the next at once and loses nothing. Two mosquittos stand
for two nodes (a cluster shares what they receive; here a subscriber on each does):
every batch's sequence number arrives at one of them.

A node is stopped with SIGTERM, which makes mosquitto save what it acknowledged: a
single mosquitto killed with SIGKILL loses messages it had acknowledged (PUBACK is not
durable there), which is the broker's durability, not the gateway's; that needs a
replicated broker (issue 23's cluster)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
import yaml
from firmware_sim.sim import Simulator

from tests.e2e.harness import GatewayProcess, start_sim, write_config
from tests.mqtt_sub import Subscriber
from tests.support.servers import Mosquitto, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def kill(node: Mosquitto) -> None:
    node.stop()  # SIGTERM: the node goes away, keeping what it acknowledged


async def test_the_gateway_fails_over_between_broker_nodes_and_loses_nothing(
        sim: Simulator, gateway: GatewayProcess, tmp_path: Path) -> None:
    nodes = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        m = Mosquitto(free_port(), tmp_path / name, persistent=True)
        m.start()
        nodes.append(m)
    a, b = nodes
    try:
        await start_sim(sim, 2)
        write_config(sim, gateway.config, a, pipeline={"report": "always"})
        cfg = yaml.safe_load(gateway.config.read_text())
        mqtt = cfg["uplink"]["mqtt"]
        del mqtt["port"]
        mqtt.pop("host", None)
        mqtt["hosts"] = [f"127.0.0.1:{a.port}", f"localhost:{b.port}"]
        gateway.config.write_text(yaml.safe_dump(cfg))
        async with Subscriber(a.port, "edgegw/gw-e2e/+/+", session="fo-a") as sa, \
                Subscriber(b.port, "edgegw/gw-e2e/+/+", session="fo-b") as sb:
            gateway.start()
            await sa.wait_for(lambda: len(sa.data()) > 20, 20, "data at node a")
            kill(a)
            await sb.wait_for(lambda: len(sb.data()) > 20, 10, "data at node b, at once")
            a.start()  # a comes back; then b dies: back to a
            await asyncio.sleep(2.0)  # the subscriber is back on a (it retries every 0.1 s)
            kill(b)
            n = len(sa.data())
            await sa.wait_for(lambda: len(sa.data()) > n + 20, 10, "data at node a again")
            assert gateway.signal(signal.SIGTERM) == 0
            seqs = {d["seq"] for s in (sa, sb) for d in [*s.data(), *s.production()]}
        lo, hi = min(seqs), max(seqs)
        missing = set(range(lo, hi + 1)) - seqs
        assert not missing, f"{len(missing)} batches lost, e.g. {sorted(missing)[:5]}"
        log = gateway.log.read_text()
        assert log.count("failed over to broker node") >= 2
    finally:
        for m in nodes:
            if m.proc is not None:
                m.stop()
