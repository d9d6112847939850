"""The store contract, run against every store backend (memory and the durable spool)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import pytest

from gateway.crypto.spool import SpoolCipher
from gateway.model import BULK, Batch
from gateway.store import BoundedStore, Entry, Limits
from gateway.store.memory import MemoryStore
from gateway.store.sqlite import SqliteStore

Make = Callable[..., BoundedStore]


def encode(b: Batch) -> tuple[str, bytes]:
    return f"t/{b.device}", f"{b.device}:{b.seq}".encode() + b"x" * 90  # ~95 bytes


def batch(dev: str = "d", ts_ms: int = 0, points: int = 1) -> Batch:
    return Batch("gw", dev, "p@1", ts_ms or 10**13, {f"p{i}": i for i in range(points)})


KEY = bytes(range(32))


@pytest.fixture(params=["memory", "sqlite", "sqlite-encrypted", "sqlite-untailed"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Make:
    def build(max_batches: int = 1000, max_bytes: int = 10**9, policy: str = "drop-oldest",
              max_age: float = 0.0) -> BoundedStore:
        limits = Limits(max_batches, max_bytes, max_age, policy)
        if request.param == "memory":
            return MemoryStore(encode, limits)
        cipher = SpoolCipher(KEY) if request.param == "sqlite-encrypted" else None
        s = SqliteStore(tmp_path / "spool.db", encode, limits, sync_interval=0.2,
                        cipher=cipher)
        if request.param == "sqlite-untailed":
            s.TAIL = 0  # every read from the file, none from the tail in memory
        return s

    return build


async def test_append_peek_ack_in_order(make: Make) -> None:
    s = make()
    seqs = [await s.append(batch()) for _ in range(5)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5 and s.last_seq == seqs[-1]
    assert [e.seq for e in await s.peek(10)] == seqs
    assert [e.seq for e in await s.peek(2, after=seqs[1])] == seqs[2:4]
    assert [e.seq for e in await s.peek(10, after=seqs[0], before=seqs[3])] == seqs[1:3]
    s.ack(seqs[0])
    s.ack(seqs[2])  # out of order ack
    assert [e.seq for e in await s.peek(10)] == [seqs[1], seqs[3], seqs[4]]
    assert s.stats.entries == 3
    e = (await s.peek(1))[0]
    assert e.topic == "t/d" and e.payload.startswith(f"d:{seqs[1]}".encode())
    await s.close()


async def test_bulk_flag_is_kept_with_the_entry(make: Make) -> None:
    s = make()
    b = batch()
    b.priority = BULK
    lane: list[Entry] = []
    s.on_urgent = lane.append
    seqs = [await s.append(batch()), await s.append(b), await s.append(batch())]
    assert [e.bulk for e in await s.peek(10)] == [False, True, False]
    assert [e.seq for e in await s.peek(10) if e.bulk] == [seqs[1]]
    assert not lane  # bulk is never in the fast lane
    await s.close()


async def test_ack_of_unknown_seq_is_ignored(make: Make) -> None:
    s = make()
    seq = await s.append(batch())
    s.ack(seq + 100)
    s.ack(seq)
    s.ack(seq)
    assert s.stats.entries == 0 and s.stats.acked == 1 and s.stats.bytes == 0
    await s.close()


async def test_wait_returns_when_newer_data_exists(make: Make) -> None:
    s = make()
    old = await s.append(batch())
    waiter = asyncio.create_task(s.wait(old))
    await asyncio.sleep(0.02)
    assert not waiter.done()
    await s.append(batch())
    await asyncio.wait_for(waiter, 1)
    await s.close()


async def test_drop_oldest_counts_batches_and_samples(make: Make) -> None:
    s = make(max_batches=10)
    seqs = [await s.append(batch(points=3)) for _ in range(15)]
    assert s.stats.dropped == 5 and s.stats.dropped_points == 15
    assert s.stats.dropped_by == {"full": 5}
    assert [e.seq for e in await s.peek(100)] == seqs[5:]
    await s.close()


async def test_drop_newest_counts(make: Make) -> None:
    s = make(max_batches=10, policy="drop-newest")
    seqs = [await s.append(batch()) for _ in range(15)]
    assert s.stats.dropped == 5
    assert [e.seq for e in await s.peek(100)] == seqs[:10]
    await s.close()


async def test_block_readers_waits_for_acks(make: Make) -> None:
    s = make(max_batches=3, policy="block-readers")
    seqs = [await s.append(batch()) for _ in range(3)]
    blocked = asyncio.create_task(s.append(batch()))
    await asyncio.sleep(0.05)
    assert not blocked.done()
    s.ack(seqs[0])
    new = await asyncio.wait_for(blocked, 1)
    assert [e.seq for e in await s.peek(10)] == [*seqs[1:], new]
    assert s.stats.dropped == 0
    await s.close()


async def test_byte_cap(make: Make) -> None:
    s = make(max_bytes=1000)  # each entry is ~110 bytes
    for _ in range(20):
        await s.append(batch())
    assert s.stats.bytes <= 1000
    assert s.stats.dropped == 20 - s.stats.entries > 0
    await s.close()


async def test_age_cap(make: Make) -> None:
    s = make(max_age=60.0)
    now_ms = int(__import__("time").time() * 1000)
    for _ in range(4):
        await s.append(batch(ts_ms=now_ms - 3_600_000))  # an hour old
    s._next_age_check = 0.0
    fresh = await s.append(batch(ts_ms=now_ms))
    assert [e.seq for e in await s.peek(10)] == [fresh]
    assert s.stats.dropped_by == {"age": 4}
    await s.close()


async def test_concurrent_producer_consumer(make: Make) -> None:
    s = make()
    got: list[int] = []

    async def consume() -> None:
        while len(got) < 300:
            after = got[-1] if got else 0
            await s.wait(after)
            for e in await s.peek(7, after=after):
                got.append(e.seq)
                s.ack(e.seq)

    consumer = asyncio.create_task(consume())
    sent = []
    for i in range(300):
        sent.append(await s.append(batch()))
        if i % 13 == 0:
            await asyncio.sleep(0)
    await asyncio.wait_for(consumer, 10)
    assert got == sent and s.stats.entries == 0
    await s.close()


async def test_sequence_numbers_keep_rising_across_restarts(make: Make) -> None:
    a = make()
    last = await a.append(batch())
    await a.close()
    b = make()
    assert await b.append(batch()) > last
    await b.close()


# -- durable backend only -----------------------------------------------------------------
def sqlite_store(path: Path, **kw: object) -> SqliteStore:
    limits = Limits(kw.pop("max_batches", 1000), kw.pop("max_bytes", 10**9),  # type: ignore[arg-type]
                    0.0, kw.pop("policy", "drop-oldest"))  # type: ignore[arg-type]
    return SqliteStore(path, encode, limits, **kw)  # type: ignore[arg-type]


async def test_restart_replays_unacked_in_order(tmp_path: Path) -> None:
    s = sqlite_store(tmp_path / "spool.db")
    seqs = [await s.append(batch()) for _ in range(10)]
    for q in seqs[:4]:
        s.ack(q)
    await s.close()
    s2 = sqlite_store(tmp_path / "spool.db")
    assert s2.stats.entries == 6
    assert [e.seq for e in await s2.peek(100)] == seqs[4:]
    assert await s2.append(batch()) > seqs[-1]
    await s2.close()


def rows(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT count(*) FROM spool").fetchone()[0])
    finally:
        db.close()


async def test_acknowledged_batches_leave_the_file_together(tmp_path: Path) -> None:
    """Acks count at once; the rows go in one statement, DELETE_EVERY after the first ack
    (or at DELETE_MAX, or before the table is read); a crash in between sends them again."""
    path = tmp_path / "spool.db"
    s = sqlite_store(path, sync_interval=0)
    s.DELETE_EVERY = 0.2
    seqs = [await s.append(batch()) for _ in range(10)]
    for q in seqs[:6]:
        s.ack(q)
    assert s.stats.entries == 4 and s.stats.acked == 6
    assert rows(path) == 10  # not yet deleted
    s2 = sqlite_store(path)  # a crash now: those six come back (sent again, deduplicated)
    assert s2.stats.entries == 10
    await s2.close()
    await asyncio.sleep(0.3)
    assert rows(path) == 4
    s.ack(seqs[6])
    assert [e.seq for e in await s.peek(100, after=0, before=seqs[-1])] == seqs[7:9]
    assert rows(path) == 3  # a read of the file deletes what is acknowledged first
    s.ack(seqs[6])  # twice: counted once
    assert s.stats.entries == 3 and s.stats.acked == 7
    s.DELETE_MAX = 2
    s.ack(seqs[7])
    s.ack(seqs[8])
    assert rows(path) == 1  # DELETE_MAX reached
    await s.close()


async def test_the_appends_of_one_turn_are_committed_together(tmp_path: Path) -> None:
    """Devices that answer together append together: one transaction, and each append
    returns only once it is committed (another connection sees every row)."""
    path = tmp_path / "spool.db"
    s = sqlite_store(path, sync_interval=0)
    commits = 0
    real = s._commit

    def counted() -> None:
        nonlocal commits
        commits += 1
        real()

    s._commit = counted  # type: ignore[method-assign]
    seqs = await asyncio.gather(*(s.append(batch(f"d{i}")) for i in range(20)))
    assert commits == 1 and rows(path) == 20 and s.stats.entries == 20
    assert [e.seq for e in await s.peek(100)] == sorted(seqs)
    await s.append(batch())
    assert commits == 2 and rows(path) == 21
    await s.close()


CHILD = textwrap.dedent("""
    import asyncio, sys
    sys.path.insert(0, {root!r})
    from tests.gateway.test_store_contract import batch, sqlite_store
    async def main():
        s = sqlite_store(__import__("pathlib").Path({path!r}), sync_interval=3600,
                         max_batches=10**7)
        for i in range(1000000):
            seq = await s.append(batch())
            if i % 3 == 0:
                s.ack(seq)
            print(seq, flush=True)   # acknowledged to the reader as stored
    asyncio.run(main())
""")


def test_sigkill_between_append_and_ack_loses_nothing_stored(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    root = str(Path(__file__).resolve().parents[2])
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(root=root, path=str(path))],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    stored = []
    for line in child.stdout:
        stored.append(int(line))
        if len(stored) >= 3000:
            os.kill(child.pid, signal.SIGKILL)
            break
    child.wait()
    s = sqlite_store(path)
    kept = {e.seq for e in asyncio.run(s.peek(10**6))}
    unacked = {q for i, q in enumerate(stored) if i % 3 != 0}
    assert unacked <= kept, f"lost {len(unacked - kept)} stored batches"
    asyncio.run(s.close())


async def test_torn_wal_tail_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    s = sqlite_store(path, sync_interval=3600)  # nothing checkpointed: all in the WAL
    seqs = [await s.append(batch()) for _ in range(50)]
    wal = Path(str(path) + "-wal")
    size = wal.stat().st_size
    data = wal.read_bytes()  # the state a crash leaves: WAL not checkpointed
    s._db.close()
    s._stop.set()
    wal.write_bytes(data[: size - 700])  # tear the last frame
    s2 = sqlite_store(path)
    kept = [e.seq for e in await s2.peek(1000)]
    assert kept == seqs[: len(kept)] and len(kept) >= 45  # only the torn tail is gone
    assert await s2.append(batch()) > seqs[-1]
    await s2.close()


async def test_corrupt_spool_is_moved_aside_and_salvaged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "spool.db"
    s = sqlite_store(path)
    for _ in range(400):
        await s.append(batch())
    await s.close()
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 4096] = os.urandom(4096)  # damage a page
    path.write_bytes(bytes(raw))
    with caplog.at_level(logging.ERROR, "edgegw.store"):
        s2 = sqlite_store(path)
    assert "was damaged" in caplog.text
    assert list(tmp_path.glob("spool.db.corrupt-*"))
    assert 0 < s2.stats.entries < 400  # what could be read was kept
    await s2.append(batch())
    await s2.close()


async def test_not_a_database_never_crash_loops(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    path.write_bytes(b"this is not sqlite" * 100)
    s = sqlite_store(path)
    assert s.stats.entries == 0
    await s.append(batch())
    await s.close()


@pytest.mark.parametrize("policy", ["drop-newest", "drop-oldest"])
async def test_disk_full_degrades_counts_and_recovers(tmp_path: Path, policy: str) -> None:
    s = sqlite_store(tmp_path / "spool.db", policy=policy)
    s._db.execute("PRAGMA max_page_count = 12")  # a 'disk' of 12 pages of 4 KiB
    seqs = [await s.append(batch()) for _ in range(400)]
    assert s.stats.degraded and s.stats.degraded.startswith("disk full")
    assert s.stats.dropped_by["disk_full"] == s.stats.dropped > 0
    assert s.stats.entries + s.stats.dropped == 400
    kept = [e.seq for e in await s.peek(10**6)]
    if policy == "drop-oldest":  # the newest are kept, the oldest made room
        assert kept == seqs[-len(kept):]
    else:
        assert kept == seqs[:len(kept)]
    for seq in kept:
        s.ack(seq)  # the broker takes the backlog: space is free again
    await s.append(batch())
    assert s.stats.degraded is None and s.stats.entries == 1
    await s.close()


def test_spool_file_is_a_plain_sqlite_database(tmp_path: Path) -> None:
    s = sqlite_store(tmp_path / "spool.db")
    asyncio.run(s.append(batch()))
    asyncio.run(s.close())
    db = sqlite3.connect(tmp_path / "spool.db")
    assert db.execute("SELECT count(*) FROM spool").fetchone() == (1,)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_wait_sees_entries_stored_before_a_restart(tmp_path: Path) -> None:
    s = sqlite_store(tmp_path / "spool.db")
    await s.append(batch())
    await s.close()
    s2 = sqlite_store(tmp_path / "spool.db")
    await asyncio.wait_for(s2.wait(0), 1)
    await s2.close()


async def test_bulk_flag_survives_a_restart(tmp_path: Path) -> None:
    s = sqlite_store(tmp_path / "spool.db")
    b = batch()
    b.priority = BULK
    await s.append(batch())
    bulk_seq = await s.append(b)
    await s.close()
    s2 = sqlite_store(tmp_path / "spool.db")
    assert [e.seq for e in await s2.peek(10) if e.bulk] == [bulk_seq]
    await s2.close()


def test_a_spool_of_schema_1_is_upgraded_in_place(tmp_path: Path) -> None:
    """A spool written before the bulk column existed keeps its rows (not bulk)."""
    path = tmp_path / "spool.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT "
               "NULL, payload BLOB NOT NULL, ts INTEGER NOT NULL, points INTEGER NOT NULL)")
    db.execute("INSERT INTO spool VALUES (7, 't/d', x'00', 1, 1)")
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()

    async def check() -> None:
        s = sqlite_store(path)
        assert [(e.seq, e.bulk) for e in await s.peek(10)] == [(7, False)]
        b = batch()
        b.priority = BULK
        seq = await s.append(b)
        assert [(e.seq, e.bulk) for e in await s.peek(10)] == [(7, False), (seq, True)]
        await s.close()

    asyncio.run(check())
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone() == (2,)


def test_a_damaged_spool_of_schema_1_is_salvaged(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT "
               "NULL, payload BLOB NOT NULL, ts INTEGER NOT NULL, points INTEGER NOT NULL)")
    db.executemany("INSERT INTO spool VALUES (?, 't/d', ?, 1, 1)",
                   [(i, b"x" * 90) for i in range(1, 401)])
    db.commit()
    db.close()
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 4096] = os.urandom(4096)
    path.write_bytes(bytes(raw))

    async def check() -> None:
        s = sqlite_store(path)
        got = await s.peek(1000)
        assert 0 < len(got) < 400 and not any(e.bulk for e in got)
        await s.close()

    asyncio.run(check())


async def test_salvage_keeps_every_readable_row_past_a_zeroed_page(tmp_path: Path) -> None:
    """Issue 18, item 9: salvage stopped at the first unreadable row (one zeroed page
    kept 117 of 288 batches although 283 were readable)."""
    import sqlite3

    path = tmp_path / "spool.db"
    s = sqlite_store(path)
    for _ in range(288):
        await s.append(batch(points=40))
    await s.close()
    db = sqlite3.connect(path)
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.close()
    raw = bytearray(path.read_bytes())
    page = 4096 * (pages // 3)  # a leaf page in the first third
    raw[page:page + 4096] = bytes(4096)
    path.write_bytes(bytes(raw))
    s2 = sqlite_store(path)
    lost = 288 - s2.stats.entries
    assert 0 < lost <= 288 // (pages - 2) + 8, (lost, pages)  # about one page's rows
    seqs = [e.seq for e in await s2.peek(10**6)]
    assert seqs == sorted(seqs)
    await s2.close()


async def test_urgent_batches_are_handed_to_the_uplink_and_kept_nowhere_else(
        make: Make) -> None:
    """Issue 19 (found reading): on the InfluxDB route the store's urgent lane was filled
    and never emptied, up to 10,000 payload copies in memory. The store now keeps no lane:
    it hands each alarm/state batch to the uplink's engine (``on_urgent``) as it is stored."""
    from gateway.model import STATE

    s = make()
    b = batch()
    b.priority = STATE
    await s.append(b)  # no uplink listening: nothing is kept beside the store
    assert not hasattr(s, "urgent")
    lane: list[Entry] = []
    s.on_urgent = lane.append  # what the delivery engine sets
    b2 = batch()
    b2.priority = STATE
    seq = await s.append(b2)
    assert [e.seq for e in lane] == [seq]
    assert [e.seq for e in await s.peek(10)][-1] == seq  # stored like every batch
    await s.close()


@pytest.mark.parametrize("tail", [3, 8])  # shorter than the cap (it overflows), longer
async def test_the_tail_in_memory_answers_as_the_file_does(tmp_path: Path, tail: int) -> None:
    """The spool keeps its newest entries in memory for the live cursor: under random
    appends, acks, drops (full, age) and peeks, a spool with a tail answers every peek
    and wait exactly as one that reads everything from the file."""
    import random

    rng = random.Random(7)
    limits = Limits(5, 10**9, 3600.0, "drop-oldest")  # the tail often holds the oldest too
    tailed = SqliteStore(tmp_path / "a.db", encode, limits, sync_interval=0)
    plain = SqliteStore(tmp_path / "b.db", encode, limits, sync_interval=0)
    tailed.TAIL, plain.TAIL = tail, 0
    tailed._seq = plain._seq = 1000
    stored: list[int] = []
    for step in range(2000):
        op = rng.random()
        if op < 0.4:
            b = batch(ts_ms=10**13 + step)
            seq = await tailed.append(b)
            assert seq == await plain.append(batch(ts_ms=10**13 + step))
            stored.append(seq)
        elif op < 0.55 and stored:
            seq = rng.choice(stored[-6:])  # mostly ones still stored, often in the tail
            tailed.ack(seq)
            plain.ack(seq)
        elif op < 0.65:  # the batches stamped more than a few steps ago expire
            cutoff_ms = 10**13 + max(0, step - rng.randint(0, 8))
            now = time.time()  # one clock for both (a loaded machine moves it in between)
            for s in (tailed, plain):
                s._next_age_check = 0.0
                s.limits = Limits(5, 10**9, (now * 1000 - cutoff_ms) / 1000, "drop-oldest")
                with mock.patch("time.time", return_value=now):
                    s._check_age()
                s.limits = limits
        else:
            after = rng.choice([0, *stored[-8:]]) if stored else 0
            n = rng.randint(1, 6)
            before = rng.choice([None, after + rng.randint(1, 6)])
            got = [(e.seq, e.payload) for e in await tailed.peek(n, after, before)]
            want = [(e.seq, e.payload) for e in await plain.peek(n, after, before)]
            assert got == want, (step, after, n, before)
            assert tailed._any_after(after) == plain._any_after(after)
        assert tailed.stats.entries == plain.stats.entries
    assert tailed.stats.dropped_by == plain.stats.dropped_by
    assert set(plain.stats.dropped_by) == {"full", "age"}  # both kinds of drop were tried
    await tailed.close()
    await plain.close()
