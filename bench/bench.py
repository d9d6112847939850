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
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import aiomqtt
import orjson
import psutil

from tests.support.servers import Mosquitto, mosquitto

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
        self.seqs: set[int] = set()  # every data batch seen, counting or not

    async def run(self, port: int, ready: asyncio.Event, session: str | None = None) -> None:
        while True:
            try:
                await self._session(port, ready, session)
            except aiomqtt.MqttError:
                if session is None:
                    raise
                await asyncio.sleep(0.1)  # broker restart: back to the persistent session

    async def _session(self, port: int, ready: asyncio.Event, session: str | None) -> None:
        async with aiomqtt.Client("127.0.0.1", port, identifier=session,
                                  clean_session=session is None,
                                  max_queued_incoming_messages=0) as c:
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
                if not topic.endswith("/data"):  # <gw>/seen at stop, and the like
                    continue
                self.seqs.add(doc["seq"])
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


@dataclass
class Stack:
    broker: Mosquitto
    work: Path
    counter: Counter
    gw: subprocess.Popen[bytes]

    @property
    def spool(self) -> Path:
        return self.work / "spool.db"


def start_sim(*args: str) -> subprocess.Popen[str]:
    """``edgegw-sim <args>`` in its own process (output piped, for :func:`wait_ready`)."""
    return subprocess.Popen([str(BIN / "edgegw-sim"), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_ready(sim: subprocess.Popen[str]) -> None:
    """Until the simulator prints that it is ready; RuntimeError with its last line when
    it ends first."""
    assert sim.stdout is not None
    line = ""
    for line in sim.stdout:
        if "simulator ready" in line:
            return
    raise RuntimeError("simulator did not start:\n" + line)


@contextlib.asynccontextmanager
async def stack(devices: int, registers: int, period_ms: int, slots: int | None = None,
                store: str | None = None, persistent: bool = False) -> AsyncIterator[Stack]:
    """Broker, simulator (bench mode), subscriber and gateway, all on loopback."""
    with tempfile.TemporaryDirectory(prefix="edgegw-bench-") as tmp, \
            mosquitto(Path(tmp), persistent=persistent) as broker:
        work = Path(tmp)
        cfg = work / "gateway.yaml"
        sim = start_sim("bench", "-D", str(devices), "-R", str(registers),
                        "--poll", f"{period_ms}ms", "--port", "0", "--write-config", str(cfg),
                        "--mqtt-port", str(broker.port), "--gateway-id", "bench")
        wait_ready(sim)
        text = cfg.read_text()
        if slots is not None:
            text = text.replace("pipeline:\n", f"pipeline:\n  poll_slots: {slots}\n")
        if store is not None:
            text += f"store:\n  kind: {store}\n"
        cfg.write_text(text)
        counter = Counter()
        ready = asyncio.Event()
        sub = asyncio.create_task(
            counter.run(broker.port, ready, "bench-sub" if persistent else None))
        await ready.wait()
        with (work / "gateway.log").open("wb") as gw_log:
            gw = subprocess.Popen(
                [str(BIN / "edgegw"), "run", "-c", str(cfg), "--log-level", "WARNING"],
                stdout=gw_log, stderr=subprocess.STDOUT)
        try:
            yield Stack(broker, work, counter, gw)
        finally:
            await teardown(gw, [sim], sub, work)


class Counting(Protocol):
    counting: bool


async def measure(pid: int, counter: Counting, warmup: float,
                  duration: float) -> tuple[float, float, float]:
    """After ``warmup``, count for ``duration``: (elapsed s, gateway CPU s, peak RSS MB)."""
    proc = psutil.Process(pid)
    await asyncio.sleep(warmup)
    counter.counting = True
    cpu0 = sum(proc.cpu_times()[:2])
    t0 = time.monotonic()
    await asyncio.sleep(duration)
    counter.counting = False
    elapsed = time.monotonic() - t0
    cpu = sum(proc.cpu_times()[:2]) - cpu0
    return elapsed, cpu, peak_rss_mb(pid)


async def teardown(gw: subprocess.Popen[bytes], sims: Sequence[subprocess.Popen[str]],
                   sub: asyncio.Task[None], work: Path) -> None:
    """Stop the gateway, then the simulators and the subscriber; show the gateway's log
    when it did not exit cleanly."""
    gw.terminate()
    gw.wait(15)
    for s in sims:
        s.terminate()
    for s in sims:
        s.wait(15)
    sub.cancel()
    with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
        await sub
    if gw.returncode not in (0, -15):
        print((work / "gateway.log").read_text()[-3000:], file=sys.stderr)


async def run(devices: int, registers: int, period_ms: int, duration: float,
              warmup: float, slots: int | None = None, store: str | None = None) -> Result:
    async with stack(devices, registers, period_ms, slots, store) as st:
        counter, gw = st.counter, st.gw
        elapsed, cpu, rss = await measure(gw.pid, counter, warmup, duration)
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


@dataclass
class OutageResult:
    devices: int
    registers: int
    period_ms: int
    outage_s: float
    backlog_batches: int
    reconnect_delay_s: float  # broker back -> first message through (gateway backoff)
    drain_s: float  # first message -> backlog complete at the subscriber
    drain_speed_x_realtime: float  # outage / drain: how much faster than it was produced
    delivered_pct: float
    gateway_peak_rss_mb: float
    rss_before_outage_mb: float
    spool_file_mb: float


def _last_stored(spool: Path) -> int:
    db = sqlite3.connect(f"file:{spool}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'spool'").fetchone()
        return int(row[0]) if row else 0
    finally:
        db.close()


async def run_outage(devices: int, registers: int, period_ms: int, outage: float,
                     warmup: float, store: str | None = None) -> OutageResult:
    """Stop the broker for ``outage`` seconds, then time how long the backlog takes to
    arrive at the subscriber (persistent session, so nothing is lost on its side)."""
    async with stack(devices, registers, period_ms, store=store, persistent=True) as st:
        c = st.counter
        await asyncio.sleep(warmup)
        proc = psutil.Process(st.gw.pid)
        rss_before = proc.memory_info().rss / 2**20
        first = min(c.seqs)
        before_down = _last_stored(st.spool)
        st.broker.stop()
        await asyncio.sleep(outage)
        last = _last_stored(st.spool)
        spool_mb = sum(p.stat().st_size for p in st.work.glob("spool.db*")) / 2**20
        seen = len(c.seqs)
        st.broker.start()
        t_up = time.monotonic()
        while len(c.seqs) == seen and time.monotonic() - t_up < 120:
            await asyncio.sleep(0.005)
        t_first = time.monotonic()
        expected = set(range(first, last + 1))
        while not expected <= c.seqs:
            if time.monotonic() - t_up > 10 * outage + 60:
                break
            await asyncio.sleep(0.005)
        drain = time.monotonic() - t_first
        got = len(expected & c.seqs)
        return OutageResult(
            devices, registers, period_ms, outage, last - before_down,
            round(t_first - t_up, 2), round(drain, 2),
            round(outage / max(drain, 1e-3), 1), round(100 * got / len(expected), 3),
            round(peak_rss_mb(st.gw.pid), 1), round(rss_before, 1), round(spool_mb, 1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-D", "--devices", type=int, default=100)
    ap.add_argument("-R", "--registers", type=int, default=100)
    ap.add_argument("-P", "--period-ms", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--slots", type=int, default=None,
                    help="pipeline.poll_slots for the gateway (default: the gateway's default)")
    ap.add_argument("--store", choices=["sqlite", "memory"], default=None,
                    help="store.kind for the gateway (default: the gateway's default, sqlite)")
    ap.add_argument("--outage", type=float, default=0.0, metavar="S",
                    help="instead: stop the broker for S seconds, then time the replay")
    ap.add_argument("--json", type=Path, help="also append the result to this JSON-lines file")
    a = ap.parse_args()
    result: Result | OutageResult
    if a.outage:
        result = asyncio.run(run_outage(a.devices, a.registers, a.period_ms, a.outage,
                                        a.warmup, a.store))
        title = f"outage replay, broker down {a.outage:g} s"
    else:
        result = asyncio.run(run(a.devices, a.registers, a.period_ms, a.duration, a.warmup,
                                 a.slots, a.store))
        title = (f"{f'slots={a.slots} ' if a.slots else ''}"
                 f"{f'store={a.store} ' if a.store else ''}{a.duration:g} s measured")
    report(f"workload D={a.devices} R={a.registers} P={a.period_ms} ms, {title}", result,
           a.json)
    return 0


def report(title: str, result: object, json_path: Path | None) -> None:
    """Print a result's fields under a title; append them to a JSON-lines file."""
    print(f"\n{title} (cpu count {os.cpu_count()})")
    fields = asdict(result)  # type: ignore[call-overload]
    for k, v in fields.items():
        print(f"  {k:34} {v}")
    if json_path:
        with json_path.open("a") as f:
            f.write(json.dumps(fields) + "\n")


if __name__ == "__main__":
    sys.exit(main())
