"""The radio degrades, sending adapts: a simulated 5G module on a pty (AT port) is a
device of an in-process gateway beside a CNC machine and an energy meter, compact
encoding. Good signal, then interference (packs grow: fewer, larger messages, asserted
from the gateway's own state and /metrics; the meter's bulk counters wait in the store),
loss (registration lost: the modem's state changes), recovery (the held counters
follow); the module falling silent makes only the modem device offline. Nothing is
lost. The SIM is an active identifier carrier: the gateway reads its code from the
applet, registers it at the (fake) identifier node with IMEI and ICCID, and shows them
in its status."""

from __future__ import annotations

import asyncio
import re
import urllib.request
from pathlib import Path

import pytest
from firmware_sim.idnode import FakeIdNode
from firmware_sim.modem import GOOD, INTERFERENCE, LOST, SimModem
from firmware_sim.sim import Simulator, write_yaml

from gateway.app import Gateway
from gateway.config import load_config
from tests.mqtt_sub import Subscriber
from tests.support.servers import Mosquitto

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]
GW_CODE = "88.118.8/GW-RADIO-01"


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


async def test_sending_adapts_to_the_radio_and_loses_nothing(
    tmp_path: Path, sim: Simulator, broker: Mosquitto
) -> None:
    modem = SimModem(tmp_path / "ttyModem", carrier=GW_CODE)
    node = FakeIdNode({"edgegw": "123456"})
    node.start()
    (tmp_path / "node.pass").write_text("123456\n")
    await modem.start()
    sim.add_profile_device("cnc", "acme/cnc-vmc850", port=0)
    sim.add_profile_device("meter", "voltmeter/em340-3ph", port=0)
    await sim.start()
    cfg = sim.gateway_config("gw-radio", mqtt_port=broker.port, health={"port": 0},
                             pipeline={"report": "always"})
    cfg["uplink"]["mqtt"].update(  # type: ignore[index]
        encoding="compact", pack={"max_delay": "250ms"})
    cfg["devices"][0]["poll"] = {"fast": "200ms", "slow": "1s"}  # type: ignore[index]
    cfg["devices"][1]["poll"] = {"realtime": "500ms", "energy": "500ms"}  # type: ignore[index]
    cfg["devices"].append({"id": "modem", "profile": "edgegw/modem",  # type: ignore[attr-defined]
                           "poll": {"radio": "300ms"},
                           "connection": {"kind": "modem-at", "port": str(modem.link),
                                          "timeout": "500ms",
                                          "carrier": {"kind": "sim-applet",
                                                      "aid": SimModem.CARRIER_AID}}})
    cfg["identifiers"] = {"node": {"url": node.url, "username": "edgegw",
                                   "password_file": str(tmp_path / "node.pass")},
                          "retry": {"initial": "200ms", "max": "1s"}}
    write_yaml(tmp_path / "gateway.yaml", cfg)
    gw = Gateway(load_config(tmp_path / "gateway.yaml"))
    task = asyncio.create_task(gw.run())
    try:
        async with Subscriber(broker.port, "edgegw/gw-radio/#") as sub:
            def modem_docs() -> list[dict[str, object]]:
                return sub.data("modem")

            def energy() -> int:  # the meter's bulk batches received
                return sum("energy_import" in d["p"] for d in sub.data("meter"))

            await sub.wait_for(lambda: any(d["p"].get("rsrp") == -85.0 for d in modem_docs())
                               and any("imei" in d["p"] for d in modem_docs()),
                               20, "the modem's link values and identity")
            first = {k: v for d in modem_docs() for k, v in d["p"].items()}
            assert first["imei"] == SimModem.IMEI and first["iccid"] == SimModem.ICCID
            assert first["tech"] == "NR5G-NSA" and first["band"] == "B20"
            assert modem_docs()[-1]["state"] == "connected"
            await sub.wait_for(lambda: GW_CODE in node.records, 10, "the gateway's code")
            values = {v["index"]: v["data"]["value"] for v in node.records[GW_CODE]["value"]}
            assert values == {1001: "1.0", 2001: SimModem.IMEI, 2002: SimModem.ICCID,
                              2003: "gw-radio"}
            await sub.wait_for(lambda: any("ids" in d for d in sub.status()), 10,
                               "ids in the status")
            ids = next(d["ids"] for d in sub.status() if "ids" in d)
            assert ids == {"gateway": GW_CODE, "imei": SimModem.IMEI, "iccid": SimModem.ICCID}
            await asyncio.sleep(1.0)
            # the good rate over a fixed window of its own (measured up to the moment the
            # gateway saw the interference it was a pack or two: noise under CI load)
            n0, t0 = len(sub.packs), asyncio.get_running_loop().time()
            await asyncio.sleep(3.0)
            good_rate = (len(sub.packs) - n0) / (asyncio.get_running_loop().time() - t0)

            modem.radio_override = INTERFERENCE
            await sub.wait_for(lambda: gw.uplink.radio.poor, 10, "the gateway to see it")  # type: ignore[union-attr]
            assert gw.health is not None
            body = await asyncio.to_thread(metrics, gw.health.port)
            assert "edgegw_uplink_radio_poor 1.0" in body
            assert 'edgegw_modem_rsrp_dbm{device="modem"} -108.0' in body
            assert 'edgegw_modem_registered{device="modem"} 1.0' in body
            assert 'band="B20"' in body and 'tech="NR5G-NSA"' in body
            n1, t1 = len(sub.packs), asyncio.get_running_loop().time()
            await asyncio.sleep(1.0)  # what was in flight when the signal fell arrives
            e1, m1 = energy(), len(sub.data("meter"))
            await asyncio.sleep(3.0)
            poor_rate = (len(sub.packs) - n1) / (asyncio.get_running_loop().time() - t1)
            print(f"packs/s: good signal {good_rate:.2f}, poor signal {poor_rate:.2f}")
            assert poor_rate < good_rate / 2, (good_rate, poor_rate)  # bigger, fewer packs
            assert energy() == e1 > 0, "bulk counters were sent on a poor signal"
            assert len(sub.data("meter")) > m1  # the meter's process data still flows
            held = gw.uplink.radio.deferred  # type: ignore[union-attr]
            assert held >= 4, held
            body = await asyncio.to_thread(metrics, gw.health.port)
            shown = re.search(r"^edgegw_uplink_bulk_held_batches (\S+)$", body, re.M)
            assert shown and float(shown[1]) >= 4, shown

            modem.radio_override = LOST
            await sub.wait_for(lambda: modem_docs()[-1].get("state") == "no_service", 10,
                               "registration lost")
            modem.radio_override = GOOD
            await sub.wait_for(lambda: not gw.uplink.radio.poor  # type: ignore[union-attr]
                               and modem_docs()[-1].get("state") == "connected", 10,
                               "recovery")
            await sub.wait_for(lambda: energy() >= e1 + held, 10, "the held counters")
            await sub.wait_for(lambda: gw.uplink.radio.deferred == 0, 5,  # type: ignore[union-attr]
                               "nothing held")
            modem.fault = "silence"
            await sub.wait_for(lambda: modem_docs()[-1].get("state") == "offline", 10,
                               "the modem device offline")
            n = len(sub.data("cnc"))
            await sub.wait_for(lambda: len(sub.data("cnc")) > n + 3, 5, "the CNC unaffected")
            gw.stop()
            await asyncio.wait_for(task, 15)
            await asyncio.sleep(0.5)
        seqs = sorted({d["seq"] for d in sub.data()})
        assert seqs == list(range(seqs[0], seqs[-1] + 1)), "a batch was lost"
    finally:
        gw.stop()
        if not task.done():
            await asyncio.wait_for(task, 15)
        await modem.stop()
        node.stop()
