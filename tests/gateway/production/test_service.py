"""The production service: order commands through the inbox (the CLI's path), the state
file across a restart, and the CLI itself."""

from __future__ import annotations

import json
import time
from pathlib import Path

from gateway.cli import main
from gateway.config import Device, DeviceConfig
from gateway.model import Batch
from gateway.production.machine import ORDER_PROFILE, STATE_PROFILE
from gateway.production.orders import Command, put_command, take_commands
from gateway.production.service import STATE_FILE, ProductionService
from gateway.production.spec import ProductionConfig
from gateway.profiles import default_profile_dirs, load_profile


def cnc() -> Device:
    prof = load_profile("acme/cnc-vmc850", default_profile_dirs())
    dc = DeviceConfig.model_validate({"id": "cnc1", "profile": "acme/cnc-vmc850",
                                     "connection": {"kind": "modbus-tcp", "host": "x"}})
    return Device(dc, "acme/cnc-vmc850", prof, prof.workarounds, dict(prof.poll_groups))


def service(tmp_path: Path, out: list[Batch]) -> ProductionService:
    async def append(b: Batch) -> None:
        out.append(b)

    return ProductionService(ProductionConfig(), "gw", tmp_path, append)


async def test_commands_from_the_inbox_and_bad_files(tmp_path: Path) -> None:
    out: list[Batch] = []
    svc = service(tmp_path, out)
    m = svc.machine(cnc())
    assert m is not None
    put_command(tmp_path, Command("start", "cnc1", "PO-7", 50, "88.1.2/P"))
    put_command(tmp_path, Command("start", "nope", "PO-8"))
    (tmp_path / "orders" / "00000000000000000001-1.json").write_text("{not json")
    await svc._commands(time.time())
    orders = [b.values for b in out if b.profile == ORDER_PROFILE]
    assert orders == [{"order": "PO-7", "status": "running", "parts": 0, "good": 0,
                       "scrap": 0, "started": orders[0]["started"], "t_run": 0.0,
                       "product": "88.1.2/P", "planned": 50}]
    assert svc.command_errors == 1  # the unknown device
    assert [p.name for p in (tmp_path / "orders").iterdir()] == [
        "00000000000000000001-1.bad"]  # kept, renamed, logged
    assert take_commands(tmp_path / "orders") == []


async def test_the_state_file_carries_a_restart(tmp_path: Path) -> None:
    out: list[Batch] = []
    svc = service(tmp_path, out)
    m = svc.machine(cnc())
    assert m is not None
    t = time.time()
    m.observe(t, "running", {"part_count": 10})
    m.observe(t + 1, "running", {"part_count": 12})
    svc.save()
    doc = json.loads((tmp_path / STATE_FILE).read_text())
    assert doc["machines"]["cnc1"]["state"] == "running"
    out2: list[Batch] = []
    svc2 = service(tmp_path, out2)
    m2 = svc2.machine(cnc())
    assert m2 is not None
    assert m2.counters == {"part_count": 12}
    assert m2.shift is not None and m2.shift.parts == 2
    # the time the gateway was away is unknown, from the last save
    assert [b.values["state"] for b in svc2._pending if b.profile == STATE_PROFILE] == [
        "unknown"]


def test_the_order_cli(tmp_path: Path, capsys: object) -> None:
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text("gateway: {id: gw}\ndevices:\n  - {id: cnc1, profile: acme/cnc-vmc850, "
                   "connection: {kind: modbus-tcp, host: 127.0.0.1}}\n")
    assert main(["order", "start", "-c", str(cfg), "cnc1", "PO-9", "--quantity", "5"]) == 0
    assert main(["order", "start", "-c", str(cfg), "other", "PO-9"]) == 1
    assert main(["order", "list", "-c", str(cfg)]) == 0
    [cmd] = take_commands(tmp_path / "orders")
    assert cmd == Command("start", "cnc1", "PO-9", 5, None)


async def test_a_resent_start_does_nothing_and_bad_mqtt_commands_are_counted(
        tmp_path: Path) -> None:
    out: list[Batch] = []
    svc = service(tmp_path, out)
    assert svc.machine(cnc()) is not None
    cmd = b'{"action": "start", "device": "cnc1", "order": "PO-1", "quantity": 5}'
    svc.mqtt_command(cmd)
    svc.mqtt_command(cmd)  # sent twice (or retained and seen again at a reconnect)
    svc.mqtt_command(b"{garbage")
    svc.mqtt_command(b'{"action": "start", "device": "cnc1"}')  # no order code
    await svc._commands(time.time())
    assert [b.values["order"] for b in out if b.profile == ORDER_PROFILE] == ["PO-1"]
    assert svc.command_errors == 2
