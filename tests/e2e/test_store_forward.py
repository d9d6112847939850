"""Store-and-forward fault tests, end to end: simulator -> `edgegw run` (durable spool) ->
mosquitto -> subscriber. Every batch gets the next sequence number when it is stored, so
a gap in the sequence numbers received is a lost batch."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from firmware_sim.sim import Simulator

from tests.e2e.harness import GatewayProcess, start_sim, write_config
from tests.mqtt_sub import Subscriber
from tests.proxy import Proxy
from tests.support.servers import Mosquitto

pytestmark = pytest.mark.e2e

OUTAGE = 30.0  # seconds, as the issue asks


def data(sub: Subscriber) -> list[dict[str, Any]]:
    return sub.data()


def unique_seqs(sub: Subscriber) -> set[int]:
    """Every batch's seq: device data and the machines' production records share the
    spool (subscribe to ``+/+`` for both)."""
    return {d["seq"] for d in [*sub.data(), *sub.production()]}


def assert_contiguous(seqs: set[int], lo: int, hi: int) -> None:
    missing = set(range(lo, hi + 1)) - seqs
    assert not missing, f"{len(missing)} batches lost, e.g. {sorted(missing)[:5]}"


def status_store(sub: Subscriber) -> dict[str, Any]:
    return sub.status()[-1].get("store", {}) if sub.status() else {}


async def test_broker_outage_loses_nothing_and_replays_in_order(
    sim: Simulator, persistent_broker: Mosquitto, gateway: GatewayProcess
) -> None:
    await start_sim(sim, 3)
    write_config(sim, gateway.config, persistent_broker, pipeline={"report": "always"})
    async with Subscriber(persistent_broker.port, "edgegw/gw-e2e/+/+",
                          session="fault-test-1") as sub:
        gateway.start()
        await sub.wait_for(lambda: len(data(sub)) > 20, 20, "live data")
        persistent_broker.stop()
        t_down = time.time()
        await asyncio.sleep(OUTAGE)
        t_up = time.time()
        persistent_broker.start()
        await asyncio.sleep(3.0)  # live data after the outage, while the backlog drains
        gateway.signal(signal.SIGTERM)  # drains what is left, then exits
        seqs = unique_seqs(sub)
        await sub.wait_for(lambda: max(unique_seqs(sub)) - min(unique_seqs(sub)) + 1
                           == len(unique_seqs(sub)), 20, "every batch")
    seqs = unique_seqs(sub)
    assert_contiguous(seqs, min(seqs), max(seqs))
    during = [d for d in data(sub) if t_down * 1000 < d["ts"] < t_up * 1000]
    assert len({d["seq"] for d in during}) >= 3 * OUTAGE / 0.2 * 0.9  # ~5 polls/s/device
    for dev in ("dev0", "dev1", "dev2"):  # the replayed backlog arrives in order per device
        replayed = [d["seq"] for d in during if d["dev"] == dev]
        assert replayed == sorted(replayed)


async def test_sigkill_and_restart_lose_nothing_stored(
    sim: Simulator, persistent_broker: Mosquitto, gateway: GatewayProcess, tmp_path: Path
) -> None:
    await start_sim(sim, 2)
    write_config(sim, gateway.config, persistent_broker, pipeline={"report": "always"})
    async with Subscriber(persistent_broker.port, "edgegw/gw-e2e/+/+",
                          session="fault-test-2") as sub:
        gateway.start()
        await sub.wait_for(lambda: len(data(sub)) > 10, 20, "live data")
        persistent_broker.stop()  # build a backlog in the spool
        await asyncio.sleep(2.0)
        gateway.signal(signal.SIGKILL)
        db = sqlite3.connect(tmp_path / "spool.db")
        last_stored = db.execute("SELECT seq FROM sqlite_sequence").fetchone()[0]
        backlog = db.execute("SELECT count(*) FROM spool").fetchone()[0]
        db.close()
        assert backlog > 5
        persistent_broker.start()
        gateway.start()
        first = min(unique_seqs(sub))
        await sub.wait_for(lambda: set(range(first, last_stored + 1)) <= unique_seqs(sub), 30,
                           "everything stored before the kill")
        await sub.wait_for(lambda: max(unique_seqs(sub)) > last_stored, 10,
                           "new data: polling went on after the restart")


async def test_slow_broker_and_cut_connections(
    sim: Simulator, broker: Mosquitto, gateway: GatewayProcess
) -> None:
    await start_sim(sim, 3)
    async with Proxy(broker.port, delay=0.02) as proxy:
        write_config(sim, gateway.config, proxy.port, pipeline={"report": "always"})
        async with Subscriber(broker.port, "edgegw/gw-e2e/+/+") as sub:
            gateway.start()
            await sub.wait_for(lambda: len(data(sub)) > 10, 20, "live data")
            for _ in range(4):  # cut mid-publish, several times
                await asyncio.sleep(1.5)
                proxy.cut()
            await asyncio.sleep(2.0)
            gateway.signal(signal.SIGTERM)
            await sub.wait_for(lambda: max(unique_seqs(sub)) - min(unique_seqs(sub)) + 1
                               == len(unique_seqs(sub)), 20, "every batch")
    by_seq: dict[int, bytes] = {}
    for m in sub.messages:
        seq = m.doc["seq"]
        assert by_seq.setdefault(seq, m.raw) == m.raw, f"seq {seq} sent with other content"
    assert proxy.cuts >= 4


async def test_spool_byte_cap_policy_and_exact_drop_count(
    sim: Simulator, persistent_broker: Mosquitto, gateway: GatewayProcess
) -> None:
    await start_sim(sim, 1)
    write_config(sim, gateway.config, persistent_broker, pipeline={"report": "always"},
                 store={"max_bytes": 20000,
                        "policy": "drop-oldest"})
    async with Subscriber(persistent_broker.port, "edgegw/gw-e2e/#",
                          session="fault-test-4") as sub:
        gateway.start()
        await sub.wait_for(lambda: len(data(sub)) > 5, 20, "live data")
        persistent_broker.stop()
        await asyncio.sleep(6.0)  # ~30 batches of ~1.3 kB into a 20 kB spool
        persistent_broker.start()
        await sub.wait_for(lambda: status_store(sub).get("dropped", 0) > 0
                           and status_store(sub).get("entries") == 0, 20, "drained")
        gateway.signal(signal.SIGTERM)  # drains, then publishes 'offline'
        await sub.wait_for(lambda: sub.status()[-1]["status"] == "offline", 10, "offline")

        def dropped() -> int:  # the counter only grows: take its last value
            return max(st["store"]["dropped"] for st in sub.status() if "store" in st)

        def missing() -> set[int]:
            seqs = unique_seqs(sub)
            return set(range(min(seqs), max(seqs) + 1)) - seqs

        await sub.wait_for(lambda: len(missing()) == dropped(), 10,
                           "received + dropped = everything stored")
    seqs = unique_seqs(sub)
    gone = missing()
    assert dropped() == len(gone) > 0
    last_online = [st for st in sub.status() if "store" in st][-1]["store"]
    assert last_online["dropped_by"] == {"full": len(gone)}
    missing_ = gone
    kept_after = [q for q in seqs if q > min(missing_)]
    assert max(missing_) < min(kept_after), "drop-oldest: only the oldest were dropped"


async def test_device_disappears_and_comes_back(
    sim: Simulator, broker: Mosquitto, gateway: GatewayProcess
) -> None:
    await start_sim(sim, 2)
    write_config(sim, gateway.config, broker)
    port = sim.port_of("dev0")
    async with Subscriber(broker.port) as sub:
        gateway.start()
        await sub.wait_for(lambda: sub.data("dev0"), 20, "first data")
        await sim.tcp["dev0"].stop()  # the device is switched off: port closed
        await sub.wait_for(lambda: sub.data("dev0")[-1].get("state") == "offline", 10, "offline")
        n = len(sub.data("dev0"))
        await asyncio.sleep(1.0)
        await sim.tcp["dev0"].start()  # switched on again, same address
        assert sim.port_of("dev0") == port
        await sub.wait_for(lambda: len(sub.data("dev0")) > n
                           and sub.data("dev0")[-1].get("state") != "offline", 20, "back")
    assert gateway.proc is not None and gateway.proc.poll() is None  # never restarted
