"""Store throughput on this machine's disk: append + ack of real encoded batches.

    .venv/bin/python -m bench.store_bench [--batches 20000] [--points 100]
    .venv/bin/python -m bench.store_bench --raw   # the spool backend choice: SQLite WAL
                                                  # vs the floor of an append-only log
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from pathlib import Path

from gateway.model import Batch
from gateway.store import BoundedStore, Limits
from gateway.store.memory import MemoryStore
from gateway.store.sqlite import SqliteStore
from gateway.wire.encode import encode_batch


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def measure(store: BoundedStore, batches: int, points: int) -> tuple[float, float]:
    values = {f"r{i}": i * 7 for i in range(points)}
    cpu0, t0 = _cpu(), time.perf_counter()
    last = store.last_seq
    for i in range(batches):
        b = Batch("bench", f"bench-{i % 100:03d}", "bench/r100@1", 1_795_000_000_000 + i,
                  values)
        await store.append(b)
        if i % 4 == 3:
            await asyncio.sleep(0)  # the loop turns (timers run) as in the gateway
        for e in await store.peek(1, after=last):  # the uplink's live cursor
            store.ack(e.seq)
            last = e.seq
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


def raw(n: int = 20000, size: int = 1300) -> None:
    """CPU per batch (append + ack) of the candidate spool designs, without our code."""
    import os
    import sqlite3
    import struct
    import zlib

    payload = os.urandom(size)
    create = "CREATE TABLE s(seq INTEGER PRIMARY KEY, topic TEXT, payload BLOB, ts INTEGER)"

    def sqlite_db(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(create)
        return db

    def per_op(path: Path) -> None:
        db = sqlite_db(path)
        for i in range(n):
            db.execute("INSERT INTO s VALUES(?,?,?,?)", (i, "edgegw/gw/dev/data", payload, i))
            db.execute("DELETE FROM s WHERE seq=?", (i,))

    def grouped(path: Path) -> None:
        db = sqlite_db(path)
        for i in range(0, n, 10):
            rows = [(j, "edgegw/gw/dev/data", payload, j) for j in range(i, i + 10)]
            db.execute("BEGIN")
            db.executemany("INSERT INTO s VALUES(?,?,?,?)", rows)
            db.execute("COMMIT")
            db.execute("BEGIN")
            db.executemany("DELETE FROM s WHERE seq=?", [(r[0],) for r in rows])
            db.execute("COMMIT")

    def segment_log(path: Path) -> None:
        hdr = struct.Struct("<IIQq")
        with path.open("ab", buffering=0) as f:
            for i in range(n):
                rec = b"edgegw/gw/dev/data" + payload
                f.write(hdr.pack(len(rec), zlib.crc32(rec), i, i) + rec)
                if i % 100 == 0:  # a persisted ack cursor, every 100 records
                    path.with_suffix(".ack").write_bytes(struct.pack("<Q", i))

    with tempfile.TemporaryDirectory(prefix="edgegw-raw-") as tmp:
        cases = [("sqlite WAL, commit per operation", per_op),
                 ("sqlite WAL, commits grouped by 10", grouped),
                 ("segment log floor (one write per record)", segment_log)]
        for i, (name, fn) in enumerate(cases):
            c0, t0 = _cpu(), time.perf_counter()
            fn(Path(tmp) / f"case{i}")
            cpu, wall = _cpu() - c0, time.perf_counter() - t0
            print(f"{name:42} {1e6 * cpu / n:6.1f} us CPU per batch, {n / wall:9.0f} batches/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batches", type=int, default=20000)
    ap.add_argument("--points", type=int, default=99)
    ap.add_argument("--raw", action="store_true", help="compare the spool designs themselves")
    a = ap.parse_args()
    if a.raw:
        raw(a.batches)
        return
    asyncio.run(main_async(a.batches, a.points))


if __name__ == "__main__":
    main()
