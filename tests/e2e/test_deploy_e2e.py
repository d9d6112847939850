"""Run the way systemd runs it: working directory '/', every path in the config
relative to the config file (secrets, TLS files), checked by check-config first."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from firmware_sim.sim import Simulator, write_yaml

from tests.e2e.harness import GatewayProcess, run_cli
from tests.mqtt_sub import Subscriber
from tests.support.servers import Mosquitto, free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def auth_broker(tmp_path: Path) -> Mosquitto:
    m = Mosquitto(free_port(), tmp_path, users={"gw": "mqtt-pw", "sub": "sub-pw"})
    m.start()
    yield m  # type: ignore[misc]
    m.stop()


async def test_relative_secret_files_work_from_root_and_are_checked(
    sim: Simulator, auth_broker: Mosquitto, gateway: GatewayProcess, tmp_path: Path,
) -> None:
    sim.add_profile_device("cnc", "acme/cnc-vmc850", port=0)
    sim.add_profile_device("ua", "acme/cnc-ua500", port=0, users={"op": "ua-pw"})
    await sim.start()
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "mqtt.pass").write_text("mqtt-pw\n")
    (secrets / "ua.pass").write_text("ua-pw\n")
    for f in secrets.iterdir():
        f.chmod(0o600)
    cfg = sim.gateway_config("gw-deploy", mqtt_port=auth_broker.port,
                             health={"enabled": False})
    cfg["uplink"]["mqtt"].update(  # type: ignore[index]
        {"username": "gw", "password_file": "secrets/mqtt.pass",
         "reconnect": {"initial": "200ms", "max": "1s"}})
    for d in cfg["devices"]:  # type: ignore[attr-defined]
        if d["connection"]["kind"] == "opcua":
            d["connection"].update({"username": "op", "password_file": "secrets/ua.pass",
                                    "timeout": "2s"})
    write_yaml(gateway.config, cfg)

    code, out, err = await run_cli("check-config", "-c", str(gateway.config), cwd="/")
    assert code == 0 and "ok" in out and "warning" not in err, err
    async with Subscriber(auth_broker.port, username="sub", password="sub-pw") as sub:
        gateway.start()
        await sub.wait_for(lambda: sub.data("cnc") and sub.data("ua"), 30,
                           "data from both devices, through a password-protected broker")
    assert gateway.signal(signal.SIGTERM) == 0
    assert "Traceback" not in gateway.log.read_text()

    # a missing secret is an error that names the field, for check-config and for run
    (secrets / "ua.pass").unlink()
    code, _, err = await run_cli("check-config", "-c", str(gateway.config), cwd="/")
    assert code == 1
    assert "devices[1].connection.password_file" in err and "does not exist" in err, err
    assert str(secrets / "ua.pass") in err
    code, _, err = await run_cli("run", "-c", str(gateway.config), cwd="/")
    assert code == 1 and "devices[1].connection.password_file" in err
    (secrets / "ua.pass").write_text("ua-pw\n")
    (secrets / "ua.pass").chmod(0o644)
    code, _, err = await run_cli("check-config", "-c", str(gateway.config), cwd="/")
    assert code == 0 and "readable by every user" in err
