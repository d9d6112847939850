"""One benchmark run: start broker, simulator (bench mode) and gateway as separate
processes, subscribe, and measure delivery, gateway CPU and memory, latency and bytes.

Latency: bench devices hold their last update time (ms, uint32) in registers 0-1; the
subscriber computes receive time minus that value, which includes the probe's age (up
to one simulator update interval, 100 ms) plus the gateway's and broker's delay. The
added latency is receive time minus the gateway's read time (the payload's ``ts``):
what edgegw and the broker add after the device answered.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiomqtt
import orjson
import psutil
from firmware_sim.servers import mosquitto

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@dataclass
class Result:
    devices: int
    registers: int
    period_ms: int
    duration_s: float
    points_expected_per_s: float
    points_delivered_per_s: float
    delivered_pct: float  # points received / points of every poll tick (gaps counted)
    gateway_cpu_s_per_1000_points: float
    gateway_cpu_pct_of_one_core: float
    gateway_peak_rss_mb: float
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    added_latency_p50_ms: float
    added_latency_p99_ms: float
    bytes_per_point: float
    missed_ticks: int
    messages: int


class Counter:
    def __init__(self) -> None:
        self.points = 0
        self.messages = 0
        self.bytes = 0
        self.latencies: list[int] = []
        self.added: list[int] = []  # receive time - gateway read time: what edgegw adds
        self.ts: dict[str, list[int]] = {}  # per device: gateway read times (ms)
        self.incomplete = 0  # messages that lacked some of the device's points
        self.counting = False
        self.missed_ticks = 0

    async def run(self, port: int, ready: asyncio.Event) -> None:
        async with aiomqtt.Client("127.0.0.1", port, max_queued_incoming_messages=0) as c:
            await c.subscribe("edgegw/#", qos=1)
            ready.set()
            async for m in c.messages:
                payload = m.payload if isinstance(m.payload, bytes) else b""
                doc = orjson.loads(payload)
                topic = str(m.topic)
                if topic.endswith("/status"):
                    devs = doc.get("devices", {})
                    self.missed_ticks = sum(d.get("missed_ticks", 0) for d in devs.values())
                    continue
                if not self.counting:
                    continue
                now_full = int(time.time() * 1000)
                now = now_full & 0xFFFFFFFF
                p = doc["p"]
                self.messages += 1
                self.points += len(p)
                self.ts.setdefault(doc["dev"], []).append(doc["ts"])
                self.added.append(now_full - doc["ts"])
                self.bytes += len(payload) + len(topic) + 5  # + MQTT fixed header, ids
                t = p.get("t")
                if t is not None:
                    self.latencies.append((now - t) % 2**32)


def pct(values: list[int], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return float(s[min(len(s) - 1, int(q * len(s)))])


def peak_rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def run(devices: int, registers: int, period_ms: int, duration: float,
              warmup: float, slots: int | None = None) -> Result:
    with tempfile.TemporaryDirectory(prefix="edgegw-bench-") as tmp, \
            mosquitto(Path(tmp)) as broker:
        work = Path(tmp)
        cfg = work / "gateway.yaml"
        sim = subprocess.Popen(
            [str(BIN / "edgegw-sim"), "bench", "-D", str(devices), "-R", str(registers),
             "--poll", f"{period_ms}ms", "--port", "0", "--write-config", str(cfg),
             "--mqtt-port", str(broker.port), "--gateway-id", "bench"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert sim.stdout is not None
        for line in sim.stdout:
            if "simulator ready" in line:
                break
        else:
            raise RuntimeError("simulator did not start:\n" + line)
        if slots is not None:
            text = cfg.read_text().replace("pipeline:\n", f"pipeline:\n  poll_slots: {slots}\n")
            cfg.write_text(text)
        counter = Counter()
        ready = asyncio.Event()
        sub = asyncio.create_task(counter.run(broker.port, ready))
        await ready.wait()
        with (work / "gateway.log").open("wb") as gw_log:
            gw = subprocess.Popen(
                [str(BIN / "edgegw"), "run", "-c", str(cfg), "--log-level", "WARNING"],
                stdout=gw_log, stderr=subprocess.STDOUT)
        proc = psutil.Process(gw.pid)
        try:
            await asyncio.sleep(warmup)
            counter.counting = True
            cpu0 = sum(proc.cpu_times()[:2])
            t0 = time.monotonic()
            await asyncio.sleep(duration)
            counter.counting = False
            elapsed = time.monotonic() - t0
            cpu = sum(proc.cpu_times()[:2]) - cpu0
            rss = peak_rss_mb(gw.pid)
        finally:
            gw.terminate()
            gw.wait(15)
            sim.terminate()
            sim.wait(15)
            sub.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await sub
        if gw.returncode not in (0, -15):
            print((work / "gateway.log").read_text()[-3000:], file=sys.stderr)
        # a poll that never arrived shows as a gap of two or more periods between reads
        missing = sum(
            max(0, round((b - a) / period_ms) - 1)
            for ts in counter.ts.values() for a, b in itertools.pairwise(ts)
        )
        polls = counter.messages + missing
        expected_points = polls * (registers - 1)
        expected = devices * (registers - 1) * 1000 / period_ms
        delivered = counter.points / elapsed
        return Result(
            devices, registers, period_ms, round(elapsed, 1), round(expected, 1),
            round(delivered, 1), round(100 * counter.points / max(1, expected_points), 3),
            round(cpu / max(1, counter.points) * 1000, 5), round(100 * cpu / elapsed, 1),
            round(rss, 1), pct(counter.latencies, 0.5), pct(counter.latencies, 0.99),
            float(max(counter.latencies, default=0)),
            pct(counter.added, 0.5), pct(counter.added, 0.99),
            round(counter.bytes / max(1, counter.points), 2), counter.missed_ticks,
            counter.messages,
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-D", "--devices", type=int, default=100)
    ap.add_argument("-R", "--registers", type=int, default=100)
    ap.add_argument("-P", "--period-ms", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--slots", type=int, default=None,
                    help="pipeline.poll_slots for the gateway (default: the gateway's default)")
    ap.add_argument("--json", type=Path, help="also append the result to this JSON-lines file")
    a = ap.parse_args()
    r = asyncio.run(run(a.devices, a.registers, a.period_ms, a.duration, a.warmup, a.slots))
    print(f"\nworkload D={r.devices} R={r.registers} P={r.period_ms} ms"
          f"{f' slots={a.slots}' if a.slots else ''}, "
          f"{r.duration_s} s measured (cpu count {os.cpu_count()})")
    for k, v in asdict(r).items():
        print(f"  {k:34} {v}")
    if a.json:
        with a.json.open("a") as f:
            f.write(json.dumps(asdict(r)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
