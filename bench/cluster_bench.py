"""Scale-out benchmark (issue 23): a 3-node RabbitMQ cluster (scripts/cluster), a fleet
of simulated gateways (firmware_sim.fleet) publishing through its MQTT listeners, and W
ingest workers consuming its quorum queue into influxd, for W = 1, 2, 4 (the same
cluster, the queue drained between runs).

For each W: batches/s the fleet got PUBACKed (offered load the cluster took), rows/s
InfluxDB received in the window (what the workers wrote), the backlog left in the queue
at the end, the p99 age of a batch when InfluxDB accepted it (end-to-end latency: the
fleet's time stamp to the write, from the workers' /metrics), and the CPU of each part
(workers, broker nodes, fleet, influxd) as % of one core. On a 2-core machine everything
shares the same two cores: the table says which part used them.

    .venv/bin/python -m bench.cluster_bench --gateways 20 --devices 10 --period 0.1 \\
        --duration 20 --workers 1,2,4
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import yaml
from firmware_sim.fleet import PROFILE, Fleet

from tests.support.servers import Influxd, influxd

ROOT = Path(__file__).resolve().parents[1]
MEAS = PROFILE.split("@")[0]
BASE = 1500  # port offset for the cluster (scripts/cluster)


def cluster(*args: str, workdir: Path) -> None:
    subprocess.run([str(ROOT / "scripts" / "cluster"), *args, str(workdir)], check=True,
                   env={**os.environ, "EDGEGW_CLUSTER_PORT_BASE": str(BASE)}, timeout=300)


def worker(work: Path, name: str, db: Influxd) -> subprocess.Popen[bytes]:
    (work / "amqp.pass").write_text("guest\n")
    cfg = work / f"{name}.yaml"
    cfg.write_text(yaml.safe_dump({
        "mqtt": {"topic_prefix": "edgegw"},
        "amqp": {"urls": [f"amqp://guest@127.0.0.1:{25670 + BASE + n}/" for n in (1, 2, 3)],
                 "password_file": str(work / "amqp.pass"), "prefetch": 2000},
        "sink": {"kind": "influxdb-v1", "url": db.url, "database": "edgegw"},
        "batch": {"max_lines": 5000, "max_interval": "500ms"},
        "dead_letter": str(work / f"{name}-dead.jsonl"), "health": {"port": 0}}))
    log = (work / f"{name}.log").open("ab")
    return subprocess.Popen([sys.executable, "-m", "gateway.cli", "ingest", "-c", str(cfg)],
                            cwd="/", stdout=log, stderr=subprocess.STDOUT)


def rows(db: Influxd) -> int:
    try:
        series = db.query(f'SELECT count("n") FROM "{MEAS}"', "edgegw")
    except (OSError, RuntimeError):
        return 0
    return int(series[0]["values"][0][1]) if series else 0  # type: ignore[index]


def queue_depth(workdir: Path) -> int:
    node = f"edgegw1@{os.uname().nodename.split('.')[0]}"
    out = subprocess.run(
        ["/usr/lib/rabbitmq/bin/rabbitmqctl", "-n", node, "list_queues", "name", "messages",
         "--quiet", "--no-table-headers"], check=False, capture_output=True, text=True,
        timeout=30,
        env={**os.environ, "HOME": str(workdir), "ERL_EPMD_PORT": str(24369 + BASE)})
    for line in out.stdout.splitlines():
        parts = line.split()
        if parts and parts[0] == "edgegw-ingest":
            return int(parts[1])
    return 0


def age_p99(work: Path, names: list[str]) -> float | None:
    """The largest p99 data age (batch time stamp -> InfluxDB) the workers report."""
    import re
    import urllib.request

    out = []
    for name in names:
        m = re.search(r"ingest health endpoint on http://127\.0\.0\.1:(\d+)/",
                      (work / f"{name}.log").read_text())
        if m is None:
            continue
        with urllib.request.urlopen(f"http://127.0.0.1:{m.group(1)}/metrics", timeout=5) as r:
            q = re.search(r'edgegw_ingest_data_age_seconds\{quantile="0.99"\} ([0-9.e+-]+)',
                          r.read().decode())
        if q is not None:
            out.append(float(q.group(1)))
    return max(out) if out else None


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            continue
    return total


def beams() -> list[int]:
    return [p.pid for p in psutil.process_iter(["name", "cmdline"])
            if p.info["name"] == "beam.smp" and "edgegw" in " ".join(p.info["cmdline"] or [])]


async def one(work: Path, db: Influxd, n_workers: int, a: argparse.Namespace) -> dict[str, Any]:
    ws = [worker(work, f"w{n_workers}-{i}", db) for i in range(n_workers)]
    for _ in range(150):
        if all("consuming queue" in (work / f"w{n_workers}-{i}.log").read_text()
               for i in range(n_workers)):
            break
        await asyncio.sleep(0.2)
    fleet = Fleet([("127.0.0.1", 21880 + BASE + n) for n in (1, 2, 3)], a.gateways, a.devices,
                  a.period, name=f"w{n_workers}", compact=a.encoding == "compact")
    me = os.getpid()
    b_pids, w_pids = beams(), [w.pid for w in ws]
    c0 = {"broker": cpu_of(b_pids), "workers": cpu_of(w_pids), "fleet": cpu_of([me]),
          "influxd": cpu_of([db.proc.pid]) if db.proc else 0.0}
    r0, t0 = rows(db), time.monotonic()
    run = asyncio.create_task(fleet.run())
    await asyncio.sleep(a.duration)
    r1, t1 = rows(db), time.monotonic()
    c1 = {"broker": cpu_of(b_pids), "workers": cpu_of(w_pids), "fleet": cpu_of([me]),
          "influxd": cpu_of([db.proc.pid]) if db.proc else 0.0}
    backlog = queue_depth(work / "cluster")
    p99 = age_p99(work, [f"w{n_workers}-{i}" for i in range(n_workers)])
    fleet.stop.set()
    await run
    delivered = sum(c.batches for c in fleet.produced().values())
    for _ in range(600):  # drain, for the next run
        if queue_depth(work / "cluster") == 0:
            break
        await asyncio.sleep(0.5)
    for w in ws:
        w.terminate()
        w.wait(30)
    el = t1 - t0
    return {"workers": n_workers, "offered/s": round(a.gateways * a.devices / a.period),
            "delivered/s": round(delivered / (el + 0.5)), "written/s": round((r1 - r0) / el),
            "messages/s": round(delivered / (el + 0.5) / (a.devices if a.encoding ==
                                                         "compact" else 1)),
            "backlog": backlog, "age p99 s": p99,
            **{f"cpu {k} %": round(100 * (c1[k] - c0[k]) / el) for k in c0}}


async def main_async(a: argparse.Namespace) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="edgegw-clbench-") as tmp:
        work = Path(tmp)
        cluster("up", workdir=work / "cluster")
        try:
            (work / "influx").mkdir()
            with influxd(work / "influx") as db:
                return [await one(work, db, int(w), a) for w in a.workers.split(",")]
        finally:
            cluster("down", workdir=work / "cluster")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gateways", type=int, default=20)
    ap.add_argument("--devices", type=int, default=10)
    ap.add_argument("--period", type=float, default=0.1)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--encoding", choices=["json", "compact"], default="json",
                    help="a JSON message per batch, or a compact pack per gateway and period")
    a = ap.parse_args()
    results = asyncio.run(main_async(a))
    keys = list(results[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + " --- |" * len(keys))
    for r in results:
        print("| " + " | ".join(str(r[k]) for k in keys) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
