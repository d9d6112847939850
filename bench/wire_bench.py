"""Bytes on the wire per point read, JSON versus the compact encoding, in one run.

    .venv/bin/python -m bench.wire_bench                 # D=20 R=100 P=1000 ms, 65 s each
    .venv/bin/python -m bench.wire_bench -D 20 -R 100 -P 1000 --duration 65

For each encoding: mosquitto, the simulator in bench mode with ``--changing half-slow``
(half the registers drift slowly, half never change), and ``edgegw run`` with report by
exception (deadband 0, so the backend can rebuild every value read: an unreported value
is unchanged since the last report) and the default 60 s heartbeat. The gateway talks to
the broker through a counting TCP proxy: every byte of every MQTT packet, both ways
(CONNECT, PUBLISH, PUBACK, PINGREQ ...), is counted. Points read come from the gateway's
own /metrics (``edgegw_device_points_total``). The window starts after a warm-up (the
first full report) and lasts ``--duration`` seconds, so a 65 s window includes one
heartbeat of every point.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
import yaml

from bench.bench import BIN, start_sim, wait_ready
from tests.support.servers import mosquitto


class CountingProxy:
    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = 0
        self.up = 0  # gateway -> broker
        self.down = 0  # broker -> gateway
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in self._writers:
            w.transport.abort()
        await asyncio.sleep(0.1)

    async def _client(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection("127.0.0.1", self.upstream)
        self._writers |= {w, uw}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    if up:
                        self.up += len(data)
                    else:
                        self.down += len(data)
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(r, uw, True), pipe(ur, w, False))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def points_read(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        body = r.read().decode()
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in body.splitlines()
               if line.startswith("edgegw_device_points_total{"))


@dataclass
class WireResult:
    encoding: str
    devices: int
    registers: int
    period_ms: int
    window_s: float
    points_read: int
    wire_bytes: int
    bytes_per_point: float
    bytes_per_s: float
    gateway_cpu_s_per_1000: float
    peak_rss_mb: float


async def one(encoding: str, devices: int, registers: int, period_ms: int,
              warmup: float, duration: float) -> WireResult:
    with tempfile.TemporaryDirectory(prefix="edgegw-wire-") as tmp, \
            mosquitto(Path(tmp)) as broker:
        work = Path(tmp)
        cfg_path = work / "gateway.yaml"
        proxy = CountingProxy(broker.port)
        await proxy.start()
        sim = start_sim("bench", "-D", str(devices), "-R", str(registers),
                        "--poll", f"{period_ms}ms", "--port", "0", "--changing", "half-slow",
                        "--write-config", str(cfg_path), "--mqtt-port", str(proxy.port),
                        "--gateway-id", "wire")
        wait_ready(sim)
        cfg = yaml.safe_load(cfg_path.read_text())
        cfg["pipeline"] = {"report": "change", "heartbeat": "60s"}
        cfg["uplink"]["mqtt"]["encoding"] = encoding
        health = free_port()
        cfg["health"] = {"port": health}
        cfg_path.write_text(yaml.safe_dump(cfg))
        with (work / "gateway.log").open("wb") as log:
            gw = subprocess.Popen([str(BIN / "edgegw"), "run", "-c", str(cfg_path),
                                   "--log-level", "WARNING"], stdout=log,
                                  stderr=subprocess.STDOUT)
        try:
            await asyncio.sleep(warmup)
            proc = psutil.Process(gw.pid)
            cpu0 = sum(proc.cpu_times()[:2])
            p0 = await asyncio.to_thread(points_read, health)
            b0 = proxy.up + proxy.down
            t0 = time.monotonic()
            await asyncio.sleep(duration)
            elapsed = time.monotonic() - t0
            p1 = await asyncio.to_thread(points_read, health)
            wire = proxy.up + proxy.down - b0
            cpu = sum(proc.cpu_times()[:2]) - cpu0
            with open(f"/proc/{gw.pid}/status") as f:
                rss = next(int(x.split()[1]) / 1024 for x in f if x.startswith("VmHWM:"))
        finally:
            gw.terminate()
            gw.wait(15)
            sim.terminate()
            sim.wait(15)
            await proxy.close()
        n = p1 - p0
        return WireResult(encoding, devices, registers, period_ms, round(elapsed, 1), n, wire,
                          round(wire / max(1, n), 3), round(wire / elapsed),
                          round(cpu / max(1, n) * 1000, 5), round(rss, 1))


async def main_async(a: argparse.Namespace) -> list[WireResult]:
    return [await one(enc, a.devices, a.registers, a.period_ms, a.warmup, a.duration)
            for enc in a.encodings]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-D", "--devices", type=int, default=20)
    ap.add_argument("-R", "--registers", type=int, default=100)
    ap.add_argument("-P", "--period-ms", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=65.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--encodings", nargs="+", default=["json", "compact"])
    a = ap.parse_args()
    print(f"{'encoding':9} {'points read':>11} {'wire bytes':>11} {'B/point':>8} "
          f"{'B/s':>8} {'CPU-s/1000':>10} {'RSS MB':>7}")
    for r in asyncio.run(main_async(a)):
        print(f"{r.encoding:9} {r.points_read:>11} {r.wire_bytes:>11} {r.bytes_per_point:>8} "
              f"{r.bytes_per_s:>8} {r.gateway_cpu_s_per_1000:>10} {r.peak_rss_mb:>7}")
        print("  " + str(asdict(r)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
