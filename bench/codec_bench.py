"""CPU of the payload encoders, per 1000 points reported (in process, no I/O).

    .venv/bin/python -m bench.codec_bench

Batches like the wire bench's (``bench/r100`` profile, half the registers drifting): 20
points per batch (the clock and the registers that moved), 20 batches per pack."""

from __future__ import annotations

import random
import time

from gateway.model import Batch
from gateway.wire.compact import Schema, encode_pack, encode_record
from gateway.wire.encode import encode_batch

NAMES = ["t"] + [f"r{i}" for i in range(2, 100)]
SCHEMA = Schema.of("bench/r100@1", NAMES)


def batches(n: int) -> list[Batch]:
    rng = random.Random(1)
    out = []
    for i in range(n):
        moved = rng.sample(NAMES[1:50], 19)
        values: dict[str, int | float | bool | str | None] = {"t": 1795450000000 + i * 1000}
        values.update({k: 1000 + rng.randrange(-30, 30) for k in moved})
        out.append(Batch("wire", f"bench-{i % 20:03d}", "bench/r100@1", 1795450000000 + i,
                         values, seq=1795450000000000 + i))
    return out


def main() -> None:
    bs = batches(20_000)
    points = sum(b.point_count for b in bs)
    t = time.process_time()
    for b in bs:
        encode_batch(b)
    json_s = time.process_time() - t
    t = time.process_time()
    recs = [encode_record(b, SCHEMA) for b in bs]
    rec_s = time.process_time() - t
    t = time.process_time()
    packs = [encode_pack(recs[i:i + 20]) for i in range(0, len(recs), 20)]
    pack_s = time.process_time() - t
    per = 1000 / points
    print(f"{len(bs)} batches, {points} points")
    print(f"  json v1 encode          {json_s * per:.5f} CPU-s per 1000 points")
    print(f"  compact records         {rec_s * per:.5f} CPU-s per 1000 points")
    print(f"  packs (zlib 6, 20/pack) {pack_s * per:.5f} CPU-s per 1000 points")
    print(f"  compact total           {(rec_s + pack_s) * per:.5f} CPU-s per 1000 points, "
          f"{sum(map(len, packs)) / points:.2f} bytes/point reported")


if __name__ == "__main__":
    main()
