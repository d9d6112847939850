"""End to end with identifiers: a tyre code read by the (serial, simulated) code reader
at a curing press tags the press samples, is registered once at the (fake) secondary
node, and lands as the `id_product` field in InfluxDB through `edgegw ingest` (a field:
one code per tyre is unbounded, and tags are for bounded sets); the
device's own identifier is registered too. The node is down when the first codes are
read: they wait in the durable queue."""

from __future__ import annotations

import asyncio
import shutil
import signal
from pathlib import Path

import pytest
import yaml
from firmware_sim.idnode import FakeIdNode
from firmware_sim.sim import Simulator, write_yaml

from tests.e2e.harness import GatewayProcess, id_node_config, write_config
from tests.e2e.test_ingest_e2e import start_ingest
from tests.mqtt_sub import Subscriber
from tests.support.servers import Mosquitto, influxd

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

PRESS = "presstec/tyre-curing-tc48"


async def test_scanned_codes_tag_register_and_reach_influxdb(
    tmp_path: Path, broker: Mosquitto, gateway: GatewayProcess
) -> None:
    if not shutil.which("influxd"):
        pytest.fail("influxd is not installed: run scripts/test")
    sim = Simulator(0.05, serial_dir=tmp_path / "tty")
    sim.time_scale = 10.0  # a code every second
    sim.add_profile_device("reader", "scanfast/bcr-200")
    sim.add_profile_device("press-07", PRESS, port=0, seed=3)
    node = FakeIdNode({"edgegw": "123456"}, templates={
        "1.0": {2000: "station", 2001: "gateway"}})
    node.fault = "error"  # the node is down at first (HTTP 500)
    (tmp_path / "influx").mkdir()
    with node, influxd(tmp_path / "influx") as db:
        async with sim:
            write_config(sim, gateway.config, broker)
            cfg = yaml.safe_load(gateway.config.read_text())
            for d in cfg["devices"]:
                if d["id"] == "reader":
                    d["context_for"] = ["press-07"]
                else:
                    d["identifier"] = "88.118.8/PRESS-07"
            cfg["identifiers"] = id_node_config(
                node.url, tmp_path, [{"index": 2000, "type": "station", "value": "{device}"},
                                     {"index": 2001, "type": "gateway", "value": "{gateway}"}],
                template_version="1.0")
            write_yaml(gateway.config, cfg)
            ingest = start_ingest(tmp_path, broker, db)
            try:
                async with Subscriber(broker.port) as sub:
                    gateway.start()

                    def products() -> list[str]:
                        return [d["ids"]["product"] for d in sub.data("press-07")
                                if "product" in d.get("ids", {})]

                    await sub.wait_for(lambda: len(set(products())) >= 2, 30,
                                       "press samples tagged with two codes")
                    assert not node.records  # still down: the codes wait
                    node.fault = "none"
                    codes = set(products())
                    await sub.wait_for(lambda: codes <= set(node.records), 20,
                                       "the codes registered")
                    assert all(node.registrations[c] == 1 for c in codes)
                    assert node.registrations["88.118.8/PRESS-07"] == 1
                    code = sorted(codes)[0]
                    values = {v["index"]: v["data"]["value"] for v in node.records[code]["value"]}
                    assert values == {1001: "1.0", 2000: "press-07", 2001: "gw-e2e"}
                    assert all(d["ids"]["device"] == "88.118.8/PRESS-07"
                               for d in sub.data("press-07"))

                    def tagged_in_db() -> set[str]:
                        try:
                            series = db.query(f'SELECT id_product FROM "{PRESS}" '
                                              "WHERE id_product <> ''", "edgegw")
                        except (OSError, RuntimeError):
                            return set()
                        return {str(v[1]) for s in series  # type: ignore[union-attr]
                                for v in s["values"]}  # type: ignore[index]

                    for _ in range(100):
                        if codes <= tagged_in_db():
                            break
                        await asyncio.sleep(0.2)
                    assert codes <= tagged_in_db()
                assert gateway.signal(signal.SIGTERM) == 0
            finally:
                ingest.terminate()
                ingest.wait(10)
