"""The ingest's /healthz and /metrics (issue 18, item 13: every dead-letter reason is
counted where monitoring can see it)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from gateway.ingest.health import IngestHealth
from gateway.ingest.service import IngestService
from tests.gateway.ingest.test_ingest_component import T, ingest, loaded, payload, publish, until
from tests.gateway.test_health import get
from tests.support.servers import Influxd, Mosquitto

pytestmark = pytest.mark.component


async def test_healthz_and_metrics_count_what_the_ingest_did(
        broker: Mosquitto, influx: Influxd, tmp_path: Path) -> None:
    svc = IngestService(loaded(tmp_path, broker.port, {"kind": "influxdb-v1",
                                                       "url": influx.url, "database": "edgegw"}))
    health = IngestHealth(svc, "127.0.0.1", 0)
    await health.start()
    try:
        code, _, body = await asyncio.to_thread(get, health.port, "/healthz")
        assert code == 503 and json.loads(body)["connected"] is False  # not yet subscribed
        async with ingest(svc):
            await publish(broker.port, [(T, payload(1)), (T, b"garbage"), (T, payload(1))])
            await until(lambda: svc.stats.written_batches == 1 and svc.stats.duplicates == 1
                        and svc.stats.dead_letters == 1, what="1 written, 1 dup, 1 dead")
            code, _, body = await asyncio.to_thread(get, health.port, "/healthz")
            h = json.loads(body)
            assert code == 200 and h["status"] == "ok" and h["written_batches"] == 1
            assert h["dead_letters_by_reason"] == {"cannot decode": 1}
            _, ctype, metrics = await asyncio.to_thread(get, health.port, "/metrics")
        assert ctype.startswith("text/plain; version=0.0.4")
        assert "edgegw_ingest_written_batches_total 1" in metrics
        assert "edgegw_ingest_duplicates_total 1" in metrics
        assert 'edgegw_ingest_dead_letters_total{reason="cannot decode"} 1' in metrics
        assert "edgegw_ingest_connected 1.0" in metrics
        # how old the batch was when InfluxDB took it (from its time stamp)
        age = re.search(r'edgegw_ingest_data_age_seconds\{quantile="0.99"\} ([0-9.e+-]+)',
                        metrics)
        assert age is not None and 0 <= float(age.group(1)) == h["data_age_seconds"]["0.99"]
    finally:
        await health.close()
