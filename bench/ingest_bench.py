"""Ingest throughput: points/s written to influxd by one `edgegw ingest` process, and its
CPU-s per 1000 points. N gateway messages (99 points each) are queued at the broker for
the ingest's persistent session, then the ingest is started and timed until InfluxDB
holds them all.

    .venv/bin/python -m bench.ingest_bench [--messages 5000] [--batch 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiomqtt
import psutil
from firmware_sim.sim import write_yaml

from gateway.model import Batch
from gateway.wire.encode import encode_batch
from tests.support.servers import influxd, mosquitto

BIN = Path(sys.executable).parent


def start_ingest(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([str(BIN / "edgegw"), "ingest", "-c", str(cfg),
                                 "--log-level", "WARNING"], stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ})


async def main_async(messages: int, batch: int, points: int, limit: float) -> None:
    with tempfile.TemporaryDirectory(prefix="edgegw-ingest-bench-") as tmp:
        work = Path(tmp)
        (work / "influx").mkdir()
        with mosquitto(work) as broker, influxd(work / "influx") as db:
            cfg = work / "ingest.yaml"
            write_yaml(cfg, {
                "mqtt": {"port": broker.port, "client_id": "bench-ingest",
                         "receive_maximum": max(10000, batch * 2)},
                "sink": {"kind": "influxdb-v1", "url": db.url, "database": "edgegw"},
                "batch": {"max_lines": batch, "max_interval": "1s"},
            })
            proc = start_ingest(cfg, work / "ingest.log")  # creates its session
            await asyncio.sleep(2.0)
            proc.terminate()
            proc.wait(10)
            values = {f"r{i}": i for i in range(points)}
            t0 = 1_795_000_000_000
            q0 = time.monotonic()
            quiet = logging.getLogger("bench.publisher")  # aiomqtt warns per pending publish
            quiet.setLevel(logging.ERROR)
            async with aiomqtt.Client("127.0.0.1", broker.port, max_inflight_messages=1000,
                                      logger=quiet) as c:
                for lo in range(0, messages, 500):  # 500 publishes in flight at a time
                    bs = [Batch("bench", f"bench-{i % 100:03d}", "bench/r100@1",
                                t0 + (i // 100) * 1000, values, seq=i + 1)
                          for i in range(lo, min(messages, lo + 500))]
                    await asyncio.gather(*(c.publish(f"edgegw/bench/{b.device}/data",
                                                     encode_batch(b), qos=1) for b in bs))
            print(f"queued {messages} messages for the ingest's session in "
                  f"{time.monotonic() - q0:.1f} s")
            proc = start_ingest(cfg, work / "ingest.log")
            ps = psutil.Process(proc.pid)
            start = time.monotonic()
            cpu0 = 0.0
            n = 0
            rss = 0
            while time.monotonic() - start < limit:
                await asyncio.sleep(0.25)
                with contextlib.suppress(psutil.Error):
                    rss = max(rss, ps.memory_info().rss)
                try:
                    series = db.query('SELECT count("r1") FROM "bench/r100"', "edgegw")
                    n = int(series[0]["values"][0][1]) if series else 0  # type: ignore[index]
                except (OSError, RuntimeError):
                    n = 0
                if n >= messages:
                    break
            elapsed = time.monotonic() - start
            cpu = sum(ps.cpu_times()[:2]) - cpu0
            proc.terminate()
            proc.wait(10)
        total_points = n * points
        print(f"ingest of {messages} messages x {points} points, batches of {batch} lines: "
              f"{n} lines in InfluxDB after {elapsed:.2f} s")
        print(f"  points/s written            {total_points / elapsed:,.0f}")
        print(f"  lines (messages)/s          {n / elapsed:,.0f}")
        print(f"  ingest CPU-s per 1000 points {cpu / max(1, total_points) * 1000:.5f} "
              f"(process start included)")
        print(f"  ingest peak RSS             {rss / 2**20:.0f} MB")
        log = (work / "ingest.log").read_text(errors="replace")
        print(f"  reconnects                  {log.count('reconnecting')}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--points", type=int, default=99)
    ap.add_argument("--limit", type=float, default=300.0, help="give up after (s)")
    a = ap.parse_args()
    asyncio.run(main_async(a.messages, a.batch, a.points, a.limit))


if __name__ == "__main__":
    main()
