"""End to end with OPC UA machines: simulated asyncua servers -> `edgegw run` (polling
and subscriptions, one secured with its notifications gathered) -> mosquitto ->
subscriber; a server restart in the middle of a subscription is reported as a gap and
the stream resumes."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
from firmware_sim.sim import Simulator, write_yaml

from tests.e2e.harness import GatewayProcess, write_config
from tests.mqtt_sub import Subscriber
from tests.support.servers import Mosquitto

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def _merged(docs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for d in docs:
        out.update(d["p"])
    return out


async def test_opcua_machines_poll_subscribe_and_survive_a_server_restart(
    tmp_path: Path, broker: Mosquitto, gateway: GatewayProcess
) -> None:
    sim = Simulator(0.1, pki=tmp_path / "simpki")
    sim.add_profile_device("cnc-ua", "acme/cnc-ua500", seed=1, secure=True)
    sim.add_profile_device("imm-ua", "moldtech/imm-ua-e77", seed=2)
    async with sim:
        sim.devices["cnc-ua"].set_state("running")
        write_config(sim, gateway.config, broker)
        import yaml

        cfg = yaml.safe_load(gateway.config.read_text())
        cfg["pipeline"] = {"heartbeat": "2s"}
        for d in cfg["devices"]:
            d["connection"]["mode"] = "subscribe"
            if d["id"] == "imm-ua":
                d["connection"]["mode"] = "poll"
            else:  # notifications read at the ticks of a shared clock (drivers/opcua/gate.py)
                d["connection"]["gather"] = "150ms"
        write_yaml(gateway.config, cfg)
        # commissioning: the gateway's certificate is created on first start; the server
        # trusts it once the integrator copies it into the server's trust list
        async with Subscriber(broker.port) as sub:
            gateway.start()
            await sub.wait_for(lambda: bool(sub.data("imm-ua")), 30, "data from the polled IMM")
            own = tmp_path / "pki" / "own" / "cert.der"
            await sub.wait_for(own.is_file, 10, "the gateway's certificate")
            (tmp_path / "simpki" / "trusted").mkdir(parents=True, exist_ok=True)
            shutil.copy(own, tmp_path / "simpki" / "trusted" / "gw.der")
            await sub.wait_for(lambda: any(d.get("p") for d in sub.data("cnc-ua")), 30,
                               "data from the subscribed, secured CNC")
            await sub.wait_for(lambda: len(_merged(sub.data("cnc-ua"))) == 24, 10,
                               "every CNC point")
            cnc = _merged(sub.data("cnc-ua"))
            assert cnc["serial_number"] == "UA500-2024-0815"
            assert cnc["program_running"] is True and cnc["spindle_speed"] > 1000
            assert sub.data("cnc-ua")[-1]["state"] == "running"
            imm = _merged(sub.data("imm-ua"))
            assert len(imm) == 25 and imm["mould_id"] == "M-5520-A"
            # an enumeration by its name, an array as a JSON array
            assert imm["machine_mode"] == "AUTOMATIC"
            assert len(imm["injection_pressure_curve"]) == 16
            before = len(sub.data("cnc-ua"))
            imm_before = len(sub.data("imm-ua"))

            # the CNC's server restarts mid-subscription: a gap (offline + reason) is
            # reported, then the stream resumes on new subscriptions
            await sim.opcua["cnc-ua"].restart()
            await sub.wait_for(
                lambda: any(d.get("state") == "offline" for d in sub.data("cnc-ua")[before:]),
                20, "the gap reported as offline")
            gap = next(d for d in sub.data("cnc-ua")[before:] if d.get("state") == "offline")
            assert gap["err"]
            # the other machine is not affected
            await sub.wait_for(lambda: len(sub.data("imm-ua")) >= imm_before + 2, 10,
                               "the IMM still delivering")
            await sub.wait_for(
                lambda: sub.data("cnc-ua")[-1].get("state") == "running"
                and sub.data("cnc-ua")[-1]["seq"] > gap["seq"], 30, "the stream resumed")
            # a bad StatusCode on one node: that point alone turns bad
            sim.set_fault("imm-ua", "bad:cushion")
            await sub.wait_for(lambda: any("cushion" in d.get("q", {})
                                           for d in sub.data("imm-ua")), 15, "cushion bad")
            bad = next(d for d in sub.data("imm-ua") if "cushion" in d.get("q", {}))
            assert bad["q"]["cushion"] == ["bad", "BadSensorFailure"]
            assert bad["p"]["cushion"] is None
            # heartbeat in subscription mode: a value that never changes is still
            # re-reported (the gateway reads each group once per half heartbeat)
            await sub.wait_for(lambda: sum("serial_number" in d["p"]
                                           for d in sub.data("cnc-ua")) >= 3, 10,
                               "serial_number re-reported by the heartbeat")
        assert gateway.signal(signal.SIGTERM) == 0


async def test_a_server_refusing_our_certificate_at_the_channel(
    tmp_path: Path, broker: Mosquitto, gateway: GatewayProcess
) -> None:
    """As open62541 and many PLCs do: OpenSecureChannel answered with a ServiceFault
    (asyncua raises a bare AssertionError). ``read`` exits 2 with the reason; ``run``
    reports the device offline with it, never 'starting', and heals once trusted."""
    from tests.e2e.harness import run_cli

    sim = Simulator(0.1, pki=tmp_path / "simpki")
    sim.add_profile_device("plc", "acme/cnc-ua500", seed=1, secure=True, refuse_at="channel")
    async with sim:
        write_config(sim, gateway.config, broker)
        own = tmp_path / "pki" / "own" / "cert.der"
        code, out, err = await run_cli("read", "-c", str(gateway.config), "plc")
        assert code == 2, out + err
        assert "the server does not trust our certificate" in err, err
        assert str(own) in err and "Traceback" not in err
        async with Subscriber(broker.port) as sub:
            gateway.start()
            await sub.wait_for(lambda: any(d.get("state") == "offline"
                                           for d in sub.data("plc")), 20, "plc offline")
            offline = next(d for d in sub.data("plc") if d.get("state") == "offline")
            assert "does not trust our certificate" in offline["err"]
            await sub.wait_for(lambda: sub.status() and sub.status()[-1]["devices"]["plc"][
                "state"] == "offline", 10, "status: plc offline")
            (tmp_path / "simpki" / "trusted").mkdir(parents=True, exist_ok=True)
            shutil.copy(own, tmp_path / "simpki" / "trusted" / "gw.der")
            await sub.wait_for(lambda: any(d.get("p") for d in sub.data("plc")), 40,
                               "data once the server trusts the gateway")
        assert gateway.signal(signal.SIGTERM) == 0
    log = gateway.log.read_text()
    assert "Traceback" not in log and "unexpected error" not in log
