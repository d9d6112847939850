"""A restart against a backlog on the ingest's persistent session (issue 18, item 3).

mosquitto 2.0.11, resuming a session with a backlog, sends far more than the client's
Receive Maximum once acknowledgements flow; the SUBACK comes only after the backlog. The
ingest used to buffer it all (1.1 GB RSS for 250,000 messages) and time out its
SUBSCRIBE every 10 s, reconnecting for ever without progress. bench/ingest_bench.py
runs the same with 250,000 messages (figures in bench/README.md)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from gateway.ingest.service import IngestService
from tests.gateway.ingest.test_ingest_component import loaded, payload, publish, until
from tests.support.servers import Influxd, Mosquitto

pytestmark = pytest.mark.component

BACKLOG = 6000
WINDOW = 100


async def test_a_backlog_drains_with_bounded_memory_and_no_reconnect(
        broker: Mosquitto, influx: Influxd, tmp_path: Path) -> None:
    cfg = loaded(tmp_path, broker.port, {"kind": "influxdb-v1", "url": influx.url,
                                         "database": "edgegw"},
                 mqtt={"receive_maximum": WINDOW})
    first = IngestService(cfg)  # creates the persistent session, then goes away
    task = asyncio.create_task(first.run())
    await asyncio.wait_for(first.connected.wait(), 10)
    first.stop()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await publish(broker.port, [(f"edgegw/gw1/press-{i % 7}/data",
                                 payload(i, dev=f"press-{i % 7}")) for i in range(BACKLOG)])
    svc = IngestService(cfg)
    reconnects = 0
    connect = svc._client

    def counting(version: str):  # type: ignore[no-untyped-def]
        nonlocal reconnects
        reconnects += 1
        return connect(version)

    svc._client = counting  # type: ignore[method-assign]
    task = asyncio.create_task(svc.run())
    try:
        await until(lambda: svc.stats.written_batches >= BACKLOG, 120, "the backlog written")
        await asyncio.wait_for(svc.connected.wait(), 10)  # the SUBACK came, after it all
    finally:
        svc.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert reconnects == 1  # one session: no SUBSCRIBE timeout, no reconnect
    assert svc.stats.written_batches == BACKLOG and svc.stats.duplicates == 0
    gate = svc.gate
    assert gate is not None
    # the broker sent more than the window (the gate stopped reading), yet no more than
    # one read's worth over the window ever waited in memory
    assert gate.pauses >= 1 and gate.peak <= WINDOW + 10, (gate.pauses, gate.peak)
    (series,) = influx.query('SELECT count("speed") FROM "acme/cnc-vmc850"', "edgegw")
    assert series["values"][0][1] == BACKLOG  # type: ignore[index]
