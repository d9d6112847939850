"""Spool encryption at rest: nothing readable on disk, the counts unchanged, and a
missing or wrong key refused at start with the data kept."""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path

import orjson
import pytest

from gateway.crypto.spool import OVERHEAD, SpoolCipher
from gateway.errors import KeyFileError, StoreError
from gateway.model import Batch
from gateway.store import Limits
from gateway.store.sqlite import SqliteStore
from gateway.wire.encode import encode_batch

SECRET = "PCR-205-SECRET-RECIPE"


def encode(b: Batch) -> tuple[str, bytes]:
    return f"edgegw/gw/{b.device}/data", encode_batch(b)


def make(path: Path, cipher: SpoolCipher | None) -> SqliteStore:
    return SqliteStore(path, encode, Limits(1000, 10**8), sync_interval=0, cipher=cipher)


def batch(i: int) -> Batch:
    return Batch("gw", "press1", "p@1", 10**13 + i, {"recipe": SECRET, "i": i})


def on_disk(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


async def test_nothing_readable_on_disk_and_sizes_as_without(tmp_path: Path) -> None:
    key = SpoolCipher(bytes(32))
    enc, plain = make(tmp_path / "enc.db", key), make(tmp_path / "plain.db", None)
    for i in range(20):
        await enc.append(batch(i))
        await plain.append(batch(i))
    assert enc.stats.bytes == plain.stats.bytes  # counted as payload bytes
    assert SECRET.encode() in on_disk(tmp_path / "plain.db")
    assert SECRET.encode() not in on_disk(tmp_path / "enc.db")
    got = await enc.peek(100)
    assert [orjson.loads(e.payload)["p"] for e in got] == [
        orjson.loads(e.payload)["p"] for e in await plain.peek(100)]
    for e in got[:5]:
        enc.ack(e.seq)
    assert enc.stats.entries == 15
    await enc.close()
    await plain.close()
    again = make(tmp_path / "enc.db", key)
    left = await again.peek(100)
    assert again.stats.entries == len(left) == 15
    assert again.stats.bytes == sum(len(e.payload) for e in left)
    await again.close()


async def test_missing_or_wrong_key_refused_and_data_kept(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    s = make(path, SpoolCipher(bytes(32)))
    for i in range(3):
        await s.append(batch(i))
    await s.close()
    with pytest.raises(StoreError, match=r"holds encrypted batches: set store\.encryption_key"):
        make(path, None)
    with pytest.raises(StoreError, match="encrypted with another key"):
        make(path, SpoolCipher(b"\x01" * 32))
    s = make(path, SpoolCipher(bytes(32)))  # the right key: all still there
    assert len(await s.peek(10)) == 3
    await s.close()


async def test_turning_encryption_on_keeps_plain_batches(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    s = make(path, None)
    await s.append(batch(1))
    await s.close()
    s = make(path, SpoolCipher(bytes(32)))
    await s.append(batch(2))
    got = await s.peek(10)
    assert [b'"i":1' in e.payload for e in got] == [True, False]
    assert all(SECRET.encode() in e.payload for e in got)
    size = s.stats.bytes
    for e in got:
        s.ack(e.seq)
    assert s.stats.bytes == 0 and size == sum(len(e.payload) for e in got)
    await s.close()


async def test_a_damaged_row_is_dropped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    s = make(path, SpoolCipher(bytes(32)))
    seqs = [await s.append(batch(i)) for i in range(3)]
    db = sqlite3.connect(path)
    blob = db.execute("SELECT payload FROM spool WHERE seq = ?", (seqs[1],)).fetchone()[0]
    db.execute("UPDATE spool SET payload = ? WHERE seq = ?",
               (blob[:-1] + bytes([blob[-1] ^ 1]), seqs[1]))
    # a row moved to another topic does not open either
    db.execute("UPDATE spool SET topic = 'edgegw/gw/other/data' WHERE seq = ?", (seqs[2],))
    db.commit()
    db.close()
    got = await s.peek(10)
    assert [e.seq for e in got] == [seqs[0]]
    assert s.stats.dropped_by == {"unreadable": 2} and s.stats.entries == 1
    await s.close()


def test_key_file_must_be_private_and_32_bytes(tmp_path: Path) -> None:
    k = tmp_path / "spool.key"
    k.write_bytes(base64.b64encode(bytes(32)) + b"\n")
    k.chmod(0o644)
    with pytest.raises(KeyFileError, match=r"accessible to other users.*chmod 600"):
        SpoolCipher.from_file(k)
    k.chmod(0o600)
    SpoolCipher.from_file(k)
    k.write_bytes(bytes(32))  # raw is fine too
    SpoolCipher.from_file(k)
    k.write_bytes(b"short")
    with pytest.raises(KeyFileError, match="32 bytes"):
        SpoolCipher.from_file(k)
    assert OVERHEAD == 29
