"""Store throughput on this machine's disk: append + ack of real encoded batches.

    .venv/bin/python -m bench.store_bench [--batches 20000] [--points 100]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from pathlib import Path

from gateway.encode import encode_batch
from gateway.model import Batch
from gateway.store import BoundedStore, Limits
from gateway.store.memory import MemoryStore
from gateway.store.sqlite import SqliteStore


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def measure(store: BoundedStore, batches: int, points: int) -> tuple[float, float]:
    values = {f"r{i}": i * 7 for i in range(points)}
    cpu0, t0 = _cpu(), time.perf_counter()
    for i in range(batches):
        b = Batch("bench", f"bench-{i % 100:03d}", "bench/r100@1", 1_795_000_000_000 + i,
                  values)
        await store.append(b)
        for e in await store.peek(1):
            await store.ack(e.seq)
    return _cpu() - cpu0, time.perf_counter() - t0


async def main_async(batches: int, points: int) -> None:
    limits = Limits(10**7, 10**10)

    def enc(b: Batch) -> tuple[str, bytes]:
        return f"edgegw/bench/{b.device}/data", encode_batch(b)

    with tempfile.TemporaryDirectory(prefix="edgegw-store-") as tmp:
        results = {}
        for name, store in [("memory", MemoryStore(enc, limits)),
                            ("sqlite", SqliteStore(Path(tmp) / "spool.db", enc, limits))]:
            cpu, wall = await measure(store, batches, points)
            await store.close()
            results[name] = cpu
            print(f"{name:7} {batches / wall:9.0f} batches/s  {batches * points / wall:11.0f} "
                  f"samples/s  {1000 * cpu / (batches * points) * 1000:7.3f} CPU-ms per "
                  f"1000 samples (append + peek + ack, encoding included)")
        extra = (results["sqlite"] - results["memory"]) / (batches * points) * 1000
        print(f"the durable store adds {extra * 1000:.4f} CPU-ms per 1000 samples")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batches", type=int, default=20000)
    ap.add_argument("--points", type=int, default=99)
    a = ap.parse_args()
    asyncio.run(main_async(a.batches, a.points))


if __name__ == "__main__":
    main()
