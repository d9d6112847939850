"""The systemd notify protocol, over a real unix datagram socket: READY=1 after the
first device cycle, WATCHDOG=1 from the event loop, STOPPING=1; and the unit file
passes systemd-analyze verify."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from firmware_sim.sim import Simulator, write_yaml

from gateway.app import Gateway
from gateway.config import load_config
from gateway.sdnotify import Notifier
from tests.support.servers import Mosquitto

ROOT = Path(__file__).resolve().parents[2]


def test_outside_systemd_everything_is_a_no_op() -> None:
    n = Notifier({})
    assert not n.enabled and n.watchdog_interval is None
    assert not n.ready("x") and not n.watchdog() and not n.sent


def test_abstract_socket_and_watchdog_pid() -> None:
    n = Notifier({"NOTIFY_SOCKET": "@edgegw-test", "WATCHDOG_USEC": "30000000",
                  "WATCHDOG_PID": "1"})
    assert n.address == "\0edgegw-test"
    assert n.watchdog_interval is None  # the watchdog is for another process


def test_a_dead_socket_never_raises(tmp_path: Path) -> None:
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert n.ready("up") is False


@pytest.mark.component
async def test_gateway_notifies_ready_watchdog_and_stopping(
    tmp_path: Path, sim: Simulator, broker: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(sock_path))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # pings every 0.2 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    sim.add_profile_device("cnc", "acme/cnc-vmc850", port=0)
    await sim.start()
    cfg = sim.gateway_config("gw-notify", mqtt_port=broker.port, store={"kind": "memory"})
    write_yaml(tmp_path / "gateway.yaml", cfg)
    gw = Gateway(load_config(tmp_path / "gateway.yaml"))
    task = asyncio.create_task(gw.run())
    got: list[str] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while loop.time() < deadline and (sum(m == "WATCHDOG=1" for m in got) < 3
                                      or not any(m.startswith("READY=1") for m in got)):
        try:
            got.append(sock.recv(4096).decode())
        except BlockingIOError:
            await asyncio.sleep(0.02)
    gw.stop()
    await asyncio.wait_for(task, 15)
    while True:
        try:
            got.append(sock.recv(4096).decode())
        except BlockingIOError:
            break
    sock.close()
    ready = [m for m in got if m.startswith("READY=1")]
    assert len(ready) == 1 and "1/1 devices online" in ready[0]
    assert sum(m == "WATCHDOG=1" for m in got) >= 3
    assert got[-1].startswith("STOPPING=1")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
@pytest.mark.parametrize("name", ["edgegw.service", "edgegw-ingest.service"])
def test_unit_files_verify(tmp_path: Path, name: str) -> None:
    unit = (ROOT / "systemd" / name).read_text()
    assert "NoNewPrivileges=true" in unit and "ProtectSystem=strict" in unit
    # systemd-analyze checks that ExecStart= binaries exist: point them at this checkout
    exe = shutil.which("edgegw") or str(ROOT / ".venv" / "bin" / "edgegw")
    (tmp_path / name).write_text(unit.replace("/opt/edgegw/bin/edgegw", exe))
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(tmp_path / name)],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0 and name not in r.stdout + r.stderr, r.stdout + r.stderr
