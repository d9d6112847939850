"""The spool's SQL on this machine's disk, without the gateway: CPU per batch of the
statements the live path runs (1.2 KB payload, WAL, synchronous=NORMAL, a PASSIVE
checkpoint every 1000 batches), and of variants.

    .venv/bin/python -m bench.spool_sql [--batches 5000]
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import tempfile

PAYLOAD = os.urandom(1200)
INSERT = "INSERT INTO spool VALUES (?,?,?,?,?,?)"
SELECT = "SELECT seq, topic, payload, ts, bulk FROM spool WHERE seq > ? ORDER BY seq LIMIT ?"
DELETE = "DELETE FROM spool WHERE seq = ? RETURNING length(payload), points"


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run(label: str, n: int, pragmas: tuple[str, ...] = (), selects: int = 0) -> None:
    with tempfile.TemporaryDirectory() as d:
        db = sqlite3.connect(f"{d}/spool.db", isolation_level=None)
        for p in ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL",
                  "PRAGMA wal_autocheckpoint=0", *pragmas):
            db.execute(p)
        db.execute("CREATE TABLE spool (seq INTEGER PRIMARY KEY, topic TEXT, payload BLOB, "
                   "ts INTEGER, points INTEGER, bulk INTEGER)")
        t0 = cpu()
        for i in range(n):
            db.execute(INSERT, (i, "t/x", PAYLOAD, 0, 99, 0))
            for _ in range(selects):
                list(db.execute(SELECT, (i - 1, 16)))
            db.execute(DELETE, (i,)).fetchone()
            if i % 1000 == 999:
                db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        us = 1e6 * (cpu() - t0) / n
        db.close()
    print(f"{label:55s} {us:6.1f} us CPU per batch")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=5000)
    n = ap.parse_args().batches
    run("insert + delete (one transaction each)", n)
    run("insert + 2 selects + delete (the live path today)", n, selects=2)
    run("insert + delete, locking_mode=EXCLUSIVE", n, ("PRAGMA locking_mode=EXCLUSIVE",))


if __name__ == "__main__":
    main()
