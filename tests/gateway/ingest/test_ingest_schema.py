"""Identifier codes and awkward names against a real influxd (issue 18, items 5 and 7).

Unique per-product codes used to be tags: past InfluxDB's max-values-per-tag every later
batch was refused. A code ending in a backslash (the shipped code reader allows it) made
its batch unparseable; a newline in a point name was not escaped, and such a rejected
message still wrote some of its lines."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.ingest.service import IngestService
from gateway.model import Batch, Quality
from gateway.wire.encode import encode_batch
from tests.gateway.ingest.test_ingest_component import TS, ingest, loaded, publish, until
from tests.support.servers import Influxd, Mosquitto, free_port

pytestmark = pytest.mark.component

LIMIT = 20  # influxd's max-values-per-tag, lowered from 100,000
CODES = [f"88.118.8/TYRE-{i:04d}" for i in range(3 * LIMIT)] + [
    "88.118.8/TYRE-BS\\", "88.118.8/TYRE a,b=c", "88.118.8/TYRE-\\,x"]
PRESS = "edgegw/gw1/press-07/data"


@pytest.fixture
def small_influx(tmp_path: Path) -> Iterator[Influxd]:
    (tmp_path / "influx").mkdir()
    s = Influxd(free_port(), tmp_path / "influx")
    s.max_values_per_tag = LIMIT
    s.start()
    try:
        yield s
    finally:
        s.stop()


def press(seq: int, code: str, **values: object) -> bytes:
    return encode_batch(Batch("gw1", "press-07", "acme/press@1", TS + seq * 1000,
                              values or {"temp": 150.5 + seq}, {}, "curing",
                              {"device": "88.118.8/PRESS-07", "product": code}, seq=seq))


async def test_product_codes_are_fields_and_every_batch_lands(
        broker: Mosquitto, small_influx: Influxd, tmp_path: Path) -> None:
    svc = IngestService(loaded(tmp_path, broker.port, {
        "kind": "influxdb-v1", "url": small_influx.url, "database": "edgegw"}))
    async with ingest(svc):
        await publish(broker.port, [(PRESS, press(i + 1, c)) for i, c in enumerate(CODES)])
        await until(lambda: svc.stats.written_batches == len(CODES), 30, "all written")
    assert svc.stats.dead_letters == 0
    (series,) = small_influx.query('SELECT id_product, id_device FROM "acme/press"', "edgegw")
    got = [row[1] for row in series["values"]]  # type: ignore[index]
    assert got == CODES  # exact, backslashes and all
    assert {row[2] for row in series["values"]} == {"88.118.8/PRESS-07"}  # type: ignore[index]
    (keys,) = small_influx.query('SHOW TAG KEYS FROM "acme/press"', "edgegw")
    tags = {k[0] for k in keys["values"]}  # type: ignore[index]
    assert "id_device" in tags and "id_product" not in tags  # bounded sets only


async def test_a_message_with_an_unwritable_name_is_dead_lettered_whole(
        broker: Mosquitto, small_influx: Influxd, tmp_path: Path) -> None:
    svc = IngestService(loaded(tmp_path, broker.port, {
        "kind": "influxdb-v1", "url": small_influx.url, "database": "edgegw"}))
    bad = encode_batch(Batch("gw1", "press-07", "acme/press@1", TS, {"temp": 1.0, "x\ny": 2},
                             {"valve": (Quality.BAD, "timeout")}, "curing",
                             {"device": "88.118.8/PRESS-07"}, seq=1))
    async with ingest(svc):
        await publish(broker.port, [(PRESS, bad), (PRESS, press(2, CODES[0]))])
        await until(lambda: svc.stats.written_batches == 1 and svc.stats.dead_letters == 1,
                    15, "one written, one dead letter")
    (series,) = small_influx.query('SELECT count(temp) FROM "acme/press"', "edgegw")
    assert series["values"][0][1] == 1  # type: ignore[index]
    assert small_influx.query("SELECT * FROM edgegw_quality", "edgegw") == []  # none of it
    dead = [json.loads(line) for line in (tmp_path / "dead-letter.jsonl").read_text()
            .splitlines()]
    assert len(dead) == 1 and "control character" in dead[0]["reason"]
