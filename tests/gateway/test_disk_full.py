"""A full disk, for real: a small tmpfs filled to ENOSPC (issue 18, item 4).

Acknowledged batches used to stay undeletable on a full disk (SQLite needs room in its
WAL to delete), so once the link was back every new batch was dropped; after a restart
"cannot open the spool" was fatal. Now a reserve beside the spool is released when the
disk is full, and a spool that cannot be opened at all leaves the gateway running on a
memory store that says why."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from firmware_sim.sim import Simulator, write_yaml

from gateway.app import Gateway
from gateway.config import check_files, load_config
from gateway.store import Limits
from gateway.store.memory import MemoryStore
from gateway.store.sqlite import Reserve, SqliteStore
from tests.gateway.test_health import get
from tests.gateway.test_store_contract import batch, encode
from tests.support.servers import Mosquitto
from tests.tmpfs import tmpfs

pytestmark = [pytest.mark.component, pytest.mark.timeout(60)]


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 12 MiB tmpfs of its own."""
    with tmpfs(tmp_path / "fs", "12m") as mnt:
        yield mnt


def fill(fs: Path, name: str = "filler") -> Path:
    """Write until the filesystem is full (ENOSPC)."""
    path = fs / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (65536, 4096, 512):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return path


def store(fs: Path, policy: str = "drop-newest") -> SqliteStore:
    return SqliteStore(fs / "spool.db", encode, Limits(10**6, 10**9, 0.0, policy),
                       sync_interval=0.2)  # type: ignore[arg-type]


async def test_acked_batches_are_deleted_and_writing_resumes_on_a_full_disk(
        small_fs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Reserve, "RETRY", 0.0)
    s = store(small_fs)
    assert s.reserve.ok and (small_fs / "spool.db.reserve").exists()
    for _ in range(50):
        await s.append(batch(points=50))
    filler = fill(small_fs)
    for _ in range(2000):  # the link is down: the spool fills what is left
        await s.append(batch(points=50))
        if s.stats.degraded:
            break
    assert s.stats.degraded and s.stats.degraded.startswith("disk full")
    for _ in range(20):
        await s.append(batch(points=50))
    dropped = s.stats.dropped_by["disk_full"]
    assert dropped >= 20
    for e in await s.peek(10**6):  # the link is back: the broker takes the backlog
        s.ack(e.seq)
    assert s.stats.entries == 0 and not s.reserve.ok  # the deletes needed the reserve
    for _ in range(20):  # and the space they freed takes new batches again
        await s.append(batch(points=50))
    assert s.stats.dropped_by["disk_full"] == dropped and s.stats.entries == 20
    assert s.stats.degraded is None
    filler.unlink()  # space is back: the reserve is made again
    await s.append(batch())
    assert s.reserve.ok and (small_fs / "spool.db.reserve").exists()
    await s.close()


async def test_the_spool_opens_after_a_restart_on_a_full_disk(small_fs: Path) -> None:
    s = store(small_fs)
    seqs = [await s.append(batch()) for _ in range(30)]
    await s.close()
    fill(small_fs)
    s = store(small_fs)  # was: StoreError "cannot open the spool"
    assert [e.seq for e in await s.peek(100)] == seqs
    await s.close()


async def test_a_gateway_whose_spool_cannot_open_polls_publishes_and_says_why(
        small_fs: Path, tmp_path: Path, sim: Simulator, broker: Mosquitto) -> None:
    fill(small_fs)  # full before the gateway ever ran: no spool, no reserve
    sim.add_profile_device("cnc", "acme/cnc-vmc850", port=0)
    await sim.start()
    cfg = sim.gateway_config("gw-full", mqtt_port=broker.port, health={"port": 0},
                             store={"kind": "sqlite", "path": str(small_fs / "spool.db")})
    write_yaml(tmp_path / "gateway.yaml", cfg)
    loaded = load_config(tmp_path / "gateway.yaml")
    # check-config says so (it said ok)
    assert any("KiB free for" in w and "store.path" in w for w in check_files(loaded))
    gw = Gateway(loaded)
    assert isinstance(gw.store, MemoryStore)
    task = asyncio.create_task(gw.run())
    try:
        for _ in range(200):
            if gw.health and gw.health.port and gw.stats.published >= 2:
                break
            await asyncio.sleep(0.05)
        assert gw.stats.published >= 2  # live data flows
        assert gw.health is not None
        code, _, body = await asyncio.to_thread(get, gw.health.port, "/healthz")
        h = json.loads(body)
        assert code == 503 and h["status"] == "degraded"
        assert "cannot open the spool" in h["store_degraded"]
        assert "memory store" in h["store_degraded"]
    finally:
        gw.stop()
        await asyncio.wait_for(task, 15)
