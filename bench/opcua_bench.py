"""OPC UA benchmark: D simulated OPC UA servers x N nodes -> `edgegw run` -> mosquitto.

The simulator (`edgegw-sim opcua-bench`, its own process) updates every 100 ms: node
``t`` holds the update time (ms), and a rotating ``--change`` fraction of the counters
``v001..`` goes up by exactly one. The gateway reads them either by subscription
(monitored items, publishing interval ``--period-ms``) or by polling (bulk reads every
``--period-ms``). A subscriber counts what arrives:

* delivered: subscription mode: counter increments received / increments that happened
  (a counter that jumps by k lost k-1 changes); poll mode: points received / points of
  every poll tick in the window (each server's messages against the window's ticks, one
  tick of tolerance for the window's edges);
* gateway CPU-s per 1000 points (user + system of the `edgegw run` process), peak RSS;
* latency: receive time - ``t`` (includes up to one update interval of the value's age
  in poll mode), and added latency: receive time - the payload's ``ts``.

    .venv/bin/python -m bench.opcua_bench --mode subscribe -D 10 -N 500 -P 100
    .venv/bin/python -m bench.opcua_bench --mode poll -D 10 -N 500 -P 1000
    .venv/bin/python -m bench.opcua_bench --mode subscribe -D 10 -N 500 -P 100 --sim-procs 10
    .venv/bin/python -m bench.opcua_bench --mode subscribe -D 10 -N 500 -P 100 --sim-procs 10 \
        --gather 100

``--sim-procs`` spreads the servers over that many simulator processes: in one process
their publishing timers fire together and the notifications arrive bunched; a process
each publishes on its own clock, as separate machines do. ``--gather MS`` sets every
device's ``connection.gather`` (notifications read together at the ticks of a shared
clock, drivers/opcua/gate.py).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import orjson
import yaml

from bench.bench import BIN, measure, pct, report, start_sim, teardown, wait_ready
from tests.support.servers import mosquitto


@dataclass
class UaResult:
    mode: str
    servers: int
    nodes: int
    period_ms: int
    change: float
    duration_s: float
    points_delivered_per_s: float
    delivered_pct: float
    lost_changes: int
    gateway_cpu_s_per_1000_points: float
    gateway_cpu_pct_of_one_core: float
    gateway_peak_rss_mb: float
    latency_p50_ms: float
    latency_p99_ms: float
    added_latency_p50_ms: float
    added_latency_p99_ms: float
    bytes_per_point: float
    messages: int
    sim_procs: int = 1
    gather_ms: int | None = None


class UaCounter:
    def __init__(self) -> None:
        self.counting = False
        self.points = self.messages = self.bytes = 0
        self.increments = 0  # counter steps seen (sum of deltas), while counting
        self.received_changes = 0  # counter values received, while counting
        self.last: dict[tuple[str, str], int] = {}
        self.latencies: list[int] = []
        self.added: list[int] = []
        self.ts: dict[str, list[int]] = {}

    async def run(self, port: int, ready: asyncio.Event) -> None:
        async with aiomqtt.Client("127.0.0.1", port, max_queued_incoming_messages=0) as c:
            await c.subscribe("edgegw/+/+/data", qos=1)
            ready.set()
            async for m in c.messages:
                payload = m.payload if isinstance(m.payload, bytes) else b""
                doc = orjson.loads(payload)
                dev = doc["dev"]
                p = doc["p"]
                counting = self.counting
                for name, v in p.items():
                    if name == "t" or not isinstance(v, int):
                        continue
                    key = (dev, name)
                    prev = self.last.get(key)
                    self.last[key] = v
                    if counting and prev is not None and v != prev:
                        self.increments += v - prev
                        self.received_changes += 1
                if not counting:
                    continue
                now_full = int(time.time() * 1000)
                self.messages += 1
                self.points += len(p)
                self.bytes += len(payload) + len(str(m.topic)) + 5
                self.ts.setdefault(dev, []).append(doc["ts"])
                self.added.append(now_full - doc["ts"])
                t = p.get("t")
                if isinstance(t, int):
                    self.latencies.append(((now_full & 0xFFFFFFFF) - t) % 2**32)


async def run(mode: str, servers: int, nodes: int, period_ms: int, change: float,
              duration: float, warmup: float, sampling_ms: int | None = None,
              sim_procs: int = 1, gather_ms: int | None = None) -> UaResult:
    with tempfile.TemporaryDirectory(prefix="edgegw-uabench-") as tmp, \
            mosquitto(Path(tmp)) as broker:
        work = Path(tmp)
        cfg = work / "gateway.yaml"
        # the servers, in ``sim_procs`` simulator processes (their devices renamed ua-000..
        # in order, one gateway config)
        split = _split(servers, sim_procs)
        parts = [work / f"sim-{k}.yaml" for k in range(len(split))]
        sims = [start_sim("opcua-bench", "-D", str(n), "-N", str(nodes), "--change",
                          str(change), "--mode", mode, "--poll", f"{period_ms}ms",
                          *(["--sampling", f"{sampling_ms}ms"] if sampling_ms else []),
                          "--write-config", str(part), "--mqtt-port", str(broker.port),
                          "--gateway-id", "uabench")
                for n, part in zip(split, parts, strict=True)]
        try:  # they start side by side
            for sim in sims:
                wait_ready(sim)
        except RuntimeError:
            for s in sims:
                s.terminate()
            raise
        devices: list[dict[str, object]] = []
        doc: dict[str, object] = {}
        for part in parts:
            doc = yaml.safe_load(part.read_text())
            devices += doc["devices"]  # type: ignore[arg-type]
        for i, d in enumerate(devices):
            d["id"] = f"ua-{i:03d}"
            if gather_ms:
                d["connection"]["gather"] = f"{gather_ms}ms"  # type: ignore[index]
        cfg.write_text(yaml.safe_dump({**doc, "devices": devices}, sort_keys=False))
        counter = UaCounter()
        ready = asyncio.Event()
        sub = asyncio.create_task(counter.run(broker.port, ready))
        await ready.wait()
        with (work / "gateway.log").open("wb") as log:
            gw = subprocess.Popen([str(BIN / "edgegw"), "run", "-c", str(cfg),
                                   "--log-level", "WARNING"], stdout=log,
                                  stderr=subprocess.STDOUT)
        try:
            elapsed, cpu, rss = await measure(gw.pid, counter, warmup, duration)
        finally:
            await teardown(gw, sims, sub, work)
    if mode == "subscribe":
        lost = counter.increments - counter.received_changes
        delivered = 100 * counter.received_changes / max(1, counter.increments)
    else:
        # every poll of every server in the window: a server's polls are its messages
        # (report: always); one tick more or less at the window's edges is not a loss
        ticks = round(elapsed * 1000 / period_ms)
        lost = sum(max(0, ticks - 1 - len(counter.ts.get(f"ua-{i:03d}", [])))
                   for i in range(servers)) * nodes
        delivered = 100 * counter.points / max(1, counter.points + lost)
    return UaResult(
        mode, servers, nodes, period_ms, change, round(elapsed, 1),
        round(counter.points / elapsed, 1), round(delivered, 3), lost,
        round(cpu / max(1, counter.points) * 1000, 5), round(100 * cpu / elapsed, 1),
        round(rss, 1), pct(counter.latencies, 0.5), pct(counter.latencies, 0.99),
        pct(counter.added, 0.5), pct(counter.added, 0.99),
        round(counter.bytes / max(1, counter.points), 2), counter.messages, len(sims),
        gather_ms)


def _split(servers: int, procs: int) -> list[int]:
    """``servers`` spread over ``procs`` simulator processes (as evenly as they go)."""
    procs = max(1, min(procs, servers))
    return [servers // procs + (k < servers % procs) for k in range(procs)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["subscribe", "poll"], default="subscribe")
    ap.add_argument("-D", "--servers", type=int, default=10)
    ap.add_argument("-N", "--nodes", type=int, default=500)
    ap.add_argument("-P", "--period-ms", type=int, default=None,
                    help="publishing interval / poll period (default 100 / 1000)")
    ap.add_argument("--sampling-ms", type=int, default=None,
                    help="subscription sampling interval, shorter than the publishing "
                         "interval (every sample queued until the next publish)")
    ap.add_argument("--change", type=float, default=0.1,
                    help="fraction of the counters changing per 100 ms update")
    ap.add_argument("--sim-procs", type=int, default=1,
                    help="simulator processes the servers are spread over (default 1: all "
                         "in one; D: each server its own, publishing on its own clock)")
    ap.add_argument("--gather", type=int, default=None, metavar="MS",
                    help="connection.gather of every device (subscribe mode: notifications "
                    "read together every MS ms)")
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=8.0)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    period = a.period_ms or (100 if a.mode == "subscribe" else 1000)
    r = asyncio.run(run(a.mode, a.servers, a.nodes, period, a.change, a.duration, a.warmup,
                        a.sampling_ms, a.sim_procs, a.gather))
    sampled = f" (sampling {a.sampling_ms} ms)" if a.sampling_ms else ""
    if a.sim_procs > 1:
        sampled += f", {r.sim_procs} simulator processes"
    if a.gather:
        sampled += f", gather {a.gather} ms"
    report(f"OPC UA {a.mode}: {a.servers} servers x {a.nodes} nodes, {period} ms{sampled}, "
           f"{a.duration:g} s measured", r, a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
