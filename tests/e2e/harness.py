"""End-to-end harness: the gateway as a real `edgegw run` process, simulator configs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from firmware_sim.sim import Simulator, write_yaml

from tests.support.servers import Mosquitto

ROOT = Path(__file__).resolve().parents[2]


class GatewayProcess:
    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "run", "-c", str(self.config)],
                stdout=out, stderr=subprocess.STDOUT, cwd="/", env=env,  # as systemd does
            )

    def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(15)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def start_sim(sim: Simulator, n: int = 3) -> None:
    profiles = ["acme/cnc-vmc850", "presstec/tyre-curing-tc48", "moldtech/imm-h250"]
    for i in range(n):
        sim.add_profile_device(f"dev{i}", profiles[i % 3], port=0, seed=i)
    await sim.start()


def write_config(sim: Simulator, path: Path, broker: Mosquitto | int, **extra: Any) -> None:
    port = broker if isinstance(broker, int) else broker.port
    cfg = sim.gateway_config("gw-e2e", mqtt_port=port, **extra)
    for d in cfg["devices"]:  # type: ignore[attr-defined]
        if d["connection"]["kind"] == "opcua":
            d["connection"]["timeout"] = "1s"
        elif d["connection"]["kind"] != "serial":
            d["connection"].update({"timeout": "300ms", "retries": 0})
        d["poll"] = {g: "200ms" for g in ("fast", "slow", "process", "recipe", "cycle", "info")
                     if g in _groups(d["profile"])}
    cfg["uplink"]["mqtt"]["reconnect"] = {"initial": "200ms", "max": "1s"}  # type: ignore[index]
    cfg["uplink"]["mqtt"]["status_interval"] = "1s"  # type: ignore[index]
    cfg.setdefault("health", {"port": 0})
    write_yaml(path, cfg)


def id_node_config(url: str, tmp: Path, values: list[dict[str, Any]],
                   **extra: Any) -> dict[str, Any]:
    """``identifiers:`` for a (fake) node at ``url``: its password in a file, quick retries."""
    (tmp / "node.pass").write_text("123456\n")
    (tmp / "node.pass").chmod(0o600)
    return {"node": {"url": url, "username": "edgegw",
                     "password_file": str(tmp / "node.pass"), "timeout": "2s"},
            "values": {"product": values},
            "retry": {"initial": "200ms", "max": "1s"}, **extra}


def _groups(profile: str) -> set[str]:
    from gateway.profiles import default_profile_dirs, load_profile

    return set(load_profile(profile, default_profile_dirs()).poll_groups)


async def run_cli(*args: str, cwd: Path | str = "/") -> tuple[int, str, str]:
    """``edgegw ARGS`` as a process: (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", *args, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
