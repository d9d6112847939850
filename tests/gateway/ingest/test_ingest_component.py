"""Ingest against real servers: mosquitto, influxd 1.x, victoria-metrics (v2 write API);
a small fake HTTP server only for error answers a real server does not give here."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import pytest

from gateway.crypto.signing import Signer, generate_key, load_private
from gateway.ingest.config import IngestConfig, LoadedIngest
from gateway.ingest.service import IngestService
from gateway.model import Batch, Quality
from gateway.wire.encode import encode_batch
from tests.support.servers import Influxd, Mosquitto, VictoriaMetrics

pytestmark = pytest.mark.component

TS = 1795450000000


def loaded(tmp_path: Path, port: int, sink: dict[str, Any], share_group: str | None = None,
           mqtt: dict[str, Any] | None = None, **kw: Any) -> LoadedIngest:
    cfg = IngestConfig.model_validate({
        "mqtt": {"port": port, "client_id": f"ingest-{tmp_path.name}",
                 "reconnect": {"initial": "100ms", "max": "500ms"}, "share_group": share_group,
                 **(mqtt or {})},
        "sink": sink, "batch": {"max_lines": 50, "max_interval": "200ms",
                                "retry": {"initial": "100ms", "max": "500ms"}},
        **kw,
    })
    return LoadedIngest(tmp_path / "ingest.yaml", cfg)


def payload(seq: int, dev: str = "cnc-01", ts: int = TS, **p: Any) -> bytes:
    values = p or {"speed": 8000 + seq, "temp": 20.5 + seq, "door": seq % 2 == 0}
    q = {"bad1": (Quality.BAD, "timeout")} if seq == 3 else {}
    return encode_batch(Batch("gw1", dev, "acme/cnc-vmc850@1.2", ts + seq * 1000, values, q,
                              "running", {"device": f"88.118.8/{dev}"}, seq=seq))


@contextlib.asynccontextmanager
async def ingest(svc: IngestService) -> AsyncIterator[IngestService]:
    task = asyncio.create_task(svc.run())
    await asyncio.wait_for(svc.connected.wait(), 10)
    try:
        yield svc
    finally:
        svc.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def publish(port: int, messages: list[tuple[str, bytes]]) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as c:
        for topic, body in messages:
            await c.publish(topic, body, qos=1)


async def until(pred: Any, timeout: float = 15.0, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what or pred}")
        await asyncio.sleep(0.05)


T = "edgegw/gw1/cnc-01/data"


async def test_influxd_v1_values_tags_timestamps_exact(
    broker: Mosquitto, influx: Influxd, tmp_path: Path
) -> None:
    svc = IngestService(loaded(tmp_path, broker.port, {"kind": "influxdb-v1", "url": influx.url,
                                                       "database": "edgegw"}))
    async with ingest(svc):
        await publish(broker.port, [(T, payload(i)) for i in range(1, 6)])
        await until(lambda: svc.stats.written_batches == 5, what="5 batches written")
    (series,) = influx.query('SELECT * FROM "acme/cnc-vmc850"', "edgegw")
    cols = series["columns"]
    rows = [dict(zip(cols, v, strict=True)) for v in series["values"]]  # type: ignore[arg-type]
    assert [r["time"] for r in rows] == [TS + i * 1000 for i in range(1, 6)]
    first = rows[0]
    assert first["speed"] == 8001 and first["temp"] == 21.5 and first["door"] is False
    assert first["gateway"] == "gw1" and first["device"] == "cnc-01"
    assert first["id_device"] == "88.118.8/cnc-01" and first["profile_version"] == "1.2"
    assert first["state"] == "running"
    (q,) = influx.query("SELECT * FROM edgegw_quality", "edgegw")
    assert q["values"][0][1:] == ["cnc-01", "gw1", "bad1", "timeout"]  # type: ignore[index]


async def test_victoria_metrics_v2_write_api(
    broker: Mosquitto, vm: VictoriaMetrics, tmp_path: Path
) -> None:
    svc = IngestService(loaded(tmp_path, broker.port, {
        "kind": "influxdb-v2", "url": vm.url, "org": "plant-a", "bucket": "edgegw"}))
    async with ingest(svc):
        await publish(broker.port, [(T, payload(i)) for i in range(1, 4)])
        await until(lambda: svc.stats.written_batches == 3, what="3 batches written")
    speed = vm.export('{__name__="acme/cnc-vmc850_speed"}')
    assert len(speed) == 1
    assert speed[0]["values"] == [8001, 8002, 8003]
    assert speed[0]["timestamps"] == [TS + 1000, TS + 2000, TS + 3000]
    labels = speed[0]["metric"]
    assert labels["device"] == "cnc-01" and labels["gateway"] == "gw1"  # type: ignore[index]


async def test_duplicates_are_written_once(
    broker: Mosquitto, influx: Influxd, tmp_path: Path
) -> None:
    svc = IngestService(loaded(tmp_path, broker.port, {"kind": "influxdb-v1", "url": influx.url,
                                                       "database": "edgegw"}))
    async with ingest(svc):
        msgs = [(T, payload(i)) for i in range(1, 6)]
        await publish(broker.port, msgs + msgs[:3])  # a replay after a reconnect
        await until(lambda: svc.stats.written_batches + svc.stats.duplicates == 8)
    assert svc.stats.duplicates == 3
    (s,) = influx.query('SELECT count(speed) FROM "acme/cnc-vmc850"', "edgegw")
    assert s["values"][0][1] == 5  # type: ignore[index]


async def test_garbage_goes_to_dead_letters_and_the_stream_continues(
    broker: Mosquitto, influx: Influxd, tmp_path: Path
) -> None:
    svc = IngestService(loaded(tmp_path, broker.port, {"kind": "influxdb-v1", "url": influx.url,
                                                       "database": "edgegw"},
                               max_payload=4096))
    bad = [b"{not json", b'{"v": 9, "gw": "x"}', b"\xff\xfe\x00garbage",
           orjson.dumps({"v": 1, "gw": "g", "dev": "d", "prof": "p", "seq": 1, "ts": "x",
                         "p": {}}),
           b'{"v":1,"pad":"' + b"x" * 5000 + b'"}']
    async with ingest(svc):
        await publish(broker.port, [(T, payload(1)), *[(T, b) for b in bad], (T, payload(2))])
        await until(lambda: svc.stats.written_batches == 2 and svc.stats.dead_letters == 5)
    lines = [orjson.loads(x) for x in (tmp_path / "dead-letter.jsonl").read_bytes().splitlines()]
    reasons = [x["reason"] for x in lines]
    assert any("cannot decode" in r for r in reasons)
    assert any("too large" in r for r in reasons)
    assert any("ts must be" in r for r in reasons)
    assert any("payload_b64" in x for x in lines)


async def test_influxdb_down_holds_messages_then_writes_them_once(
    broker: Mosquitto, influx: Influxd, tmp_path: Path
) -> None:
    svc = IngestService(loaded(tmp_path, broker.port, {"kind": "influxdb-v1", "url": influx.url,
                                                       "database": "edgegw"}))
    async with ingest(svc):
        await publish(broker.port, [(T, payload(1))])
        await until(lambda: svc.stats.written_batches == 1)
        influx.stop()
        await publish(broker.port, [(T, payload(i)) for i in range(2, 30)])
        await until(lambda: svc.stats.retries >= 2, what="retries while the database is down")
        assert svc.stats.written_batches == 1
        influx.start()
        await until(lambda: svc.stats.written_batches == 29, 20, "all written after restart")
    (s,) = influx.query('SELECT count(speed) FROM "acme/cnc-vmc850"', "edgegw")
    assert s["values"][0][1] == 29  # type: ignore[index]


# -- error answers from a fake server ------------------------------------------------------
class FakeInflux:
    """Answers /write with scripted statuses; records the bodies it accepted."""

    def __init__(self, script: list[tuple[int, dict[str, str]]]) -> None:
        self.script = script
        self.accepted: list[bytes] = []
        self.requests = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests += 1
                status, headers = outer.script.pop(0) if outer.script else (204, {})
                if status == 400 and b"speed=8004i" not in body:
                    status = 204  # only a body with the poisoned batch is refused
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                if status == 204:
                    outer.accepted.append(body)
                elif status != 204:
                    self.wfile.write(b'{"error":"scripted"}')

            def log_message(self, *a: object) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def fake() -> Iterator[Any]:
    servers: list[FakeInflux] = []

    def make(script: list[tuple[int, dict[str, str]]]) -> FakeInflux:
        servers.append(FakeInflux(script))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


@pytest.mark.parametrize(("script", "min_requests"), [
    ([(401, {}), (401, {})], 3),
    ([(429, {"Retry-After": "0.2"})], 2),
    ([(503, {}), (500, {})], 3),
    ([(413, {})], 3),  # split in two halves
])
async def test_error_answers_are_retried_or_split(
    broker: Mosquitto, tmp_path: Path, fake: Any, script: list[tuple[int, dict[str, str]]],
    min_requests: int,
) -> None:
    srv = fake(script)
    svc = IngestService(loaded(tmp_path, broker.port, {"kind": "influxdb-v1", "url": srv.url,
                                                       "database": "x",
                                                       "create_database": False}))
    async with ingest(svc):
        await publish(broker.port, [(T, payload(i)) for i in range(1, 6)])
        await until(lambda: svc.stats.written_batches == 5, what="all written")
    assert srv.requests >= min_requests
    assert svc.stats.dead_letters == 0


async def test_400_isolates_the_bad_message(broker: Mosquitto, tmp_path: Path,
                                            fake: Any) -> None:
    srv = fake([(400, {})] * 10)
    svc = IngestService(loaded(tmp_path, broker.port, {"kind": "influxdb-v1", "url": srv.url,
                                                       "database": "x",
                                                       "create_database": False}))
    async with ingest(svc):
        await publish(broker.port, [(T, payload(i)) for i in range(1, 9)])
        await until(lambda: svc.stats.written_batches + svc.stats.dead_letters == 8)
    assert svc.stats.dead_letters == 1 and svc.stats.written_batches == 7
    (rec,) = [orjson.loads(x) for x in (tmp_path / "dead-letter.jsonl").read_bytes().splitlines()]
    assert rec["reason"].startswith("rejected by the database: HTTP 400")
    assert orjson.loads(rec["payload"])["seq"] == 4


async def test_shared_subscription_splits_the_load(
    broker: Mosquitto, influx: Influxd, tmp_path: Path
) -> None:
    sink = {"kind": "influxdb-v1", "url": influx.url, "database": "edgegw"}
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir()
    b_dir.mkdir()
    a = IngestService(loaded(a_dir, broker.port, sink))
    b = IngestService(loaded(b_dir, broker.port, sink))
    for svc in (a, b):
        object.__setattr__(svc.cfg.mqtt, "share_group", "g")
        svc.topics = ["$share/g/edgegw/+/+/data"]
    async with ingest(a), ingest(b):
        await publish(broker.port, [(T, payload(i)) for i in range(1, 41)])
        await until(lambda: a.stats.written_batches + b.stats.written_batches == 40)
    assert a.stats.written_batches > 0 and b.stats.written_batches > 0
    (s,) = influx.query('SELECT count(speed) FROM "acme/cnc-vmc850"', "edgegw")
    assert s["values"][0][1] == 40  # type: ignore[index]


async def test_live_table_reads_states_and_key_values_back(
    broker: Mosquitto, influx: Influxd, tmp_path: Path
) -> None:
    from gateway.ingest.live import snapshot

    svc = IngestService(loaded(tmp_path, broker.port, {"kind": "influxdb-v1", "url": influx.url,
                                                       "database": "edgegw"}))
    now = int(__import__("time").time() * 1000)
    doc = encode_batch(Batch("gw1", "cnc-01", "acme/cnc-vmc850@1.2", now,
                             {"spindle_speed": 8000, "spindle_load": 41.5}, state="running",
                             seq=1))
    async with ingest(svc):
        await publish(broker.port, [(T, doc)])
        await until(lambda: svc.stats.written_batches == 1)
    ((dev, state, age, shown),) = snapshot(influx.url, "edgegw")
    assert (dev, state) == ("cnc-01", "running") and 0 <= age < 10_000
    assert shown[:2] == ["spindle_speed=8000", "spindle_load=41.5"]


def signing_ingest(tmp_path: Path, broker: Mosquitto, influx: Influxd
                   ) -> tuple[IngestService, Signer, Signer]:
    """An ingest with require: true and two keys: gw1's (for gw1) and gw9's (for gw9)."""
    keys = tmp_path / "keys"
    generate_key(keys / "gw1.key", "ed25519")
    generate_key(keys / "gw9.key", "ecdsa-p256")
    gw1 = Signer(load_private(keys / "gw1.key"), "gw1-2026")
    gw9 = Signer(load_private(keys / "gw9.key"), "gw9-2026")
    svc = IngestService(loaded(
        tmp_path, broker.port, {"kind": "influxdb-v1", "url": influx.url, "database": "edgegw"},
        signatures={"require": True, "keys": {
            "gw1-2026": {"public_key": "keys/gw1.pub.pem", "gateways": ["gw1"]},
            "gw9-2026": {"public_key": "keys/gw9.pub.pem", "gateways": ["gw9"]}}}))
    return svc, gw1, gw9


async def test_signatures_required_dead_letters_unsigned_and_tampered(
    broker: Mosquitto, influx: Influxd, tmp_path: Path
) -> None:
    svc, gw1, gw9 = signing_ingest(tmp_path, broker, influx)
    good = [gw1.sign(payload(i)) for i in (1, 2, 5)]
    bad = [payload(3),  # unsigned
           gw1.sign(payload(4)).replace(b'"speed":8004', b'"speed":9999'),  # tampered
           gw9.sign(payload(6))]  # gw9's key, but the batch says gw1
    async with ingest(svc):
        await publish(broker.port, [(T, b) for b in [good[0], *bad, *good[1:]]])
        await until(lambda: svc.stats.written_batches == 3 and svc.stats.dead_letters == 3,
                    what="3 written, 3 dead letters")
    assert svc.stats.refused_signatures == 3
    reasons = [orjson.loads(x)["reason"] for x in
               (tmp_path / "dead-letter.jsonl").read_bytes().splitlines()]
    assert reasons == ["unsigned payload (signatures are required)",
                       "bad signature for key id 'gw1-2026' (tampered, or signed with another "
                       "key)", "key id 'gw9-2026' may not sign for gateway 'gw1'"]
    (s,) = influx.query('SELECT speed FROM "acme/cnc-vmc850"', "edgegw")
    assert [v[1] for v in s["values"]] == [8001, 8002, 8005]  # type: ignore[index]


async def test_compact_pack_records_written_and_bad_ones_dead_lettered(
    broker: Mosquitto, influx: Influxd, tmp_path: Path
) -> None:
    from gateway.profiles import default_profile_dirs, load_profile
    from gateway.wire.compact import Schema, encode_pack, encode_record

    prof = load_profile("acme/cnc-vmc850", default_profile_dirs())
    schema = Schema.of("acme/cnc-vmc850@1.2", [p.name for p in prof.expanded_points()])
    assert prof.version == "1.2"

    def rec(seq: int, profile: str = "acme/cnc-vmc850@1.2") -> bytes:
        b = Batch("gw1", "cnc-01", profile, TS + seq * 1000, {"spindle_speed": 8000 + seq},
                  state="running", seq=seq)
        return encode_record(b, schema)

    svc = IngestService(loaded(tmp_path, broker.port, {"kind": "influxdb-v1", "url": influx.url,
                                                       "database": "edgegw"}))
    good = encode_pack([rec(1), rec(2), rec(3, "nobody/unknown@1"), rec(4)])
    async with ingest(svc):
        await publish(broker.port, [("edgegw/gw1/pack", good),
                                    ("edgegw/gw1/pack", b"\xed\x02\x01garbage"),
                                    ("edgegw/gw1/pack", encode_pack([rec(5), rec(1)]))])
        await until(lambda: svc.stats.written_batches == 4 and svc.stats.dead_letters == 2
                    and svc.stats.duplicates == 1, what="4 written, 2 dead, 1 duplicate")
        assert not svc._parts  # every pack acknowledged once all its records settled
    (s,) = influx.query('SELECT spindle_speed FROM "acme/cnc-vmc850"', "edgegw")
    assert [v[1] for v in s["values"]] == [8001, 8002, 8004, 8005]  # type: ignore[index]
    reasons = [orjson.loads(x)["reason"] for x in
               (tmp_path / "dead-letter.jsonl").read_bytes().splitlines()]
    assert any("unknown profile 'nobody/unknown@1'" in r for r in reasons)
    assert any("cannot decode the pack" in r for r in reasons)


async def test_arrays_and_enumerations_land_in_influxd(
    broker: Mosquitto, influx: Influxd, tmp_path: Path
) -> None:
    """An OPC UA array point is one field per element (name[i]); an enumeration a string."""
    svc = IngestService(loaded(tmp_path, broker.port, {"kind": "influxdb-v1", "url": influx.url,
                                                       "database": "edgegw"}))
    body = payload(1, curve=(125.4, 371.5, 603.25), valves=(True, False), mode="SETUP")
    async with ingest(svc):
        await publish(broker.port, [(T, body)])
        await until(lambda: svc.stats.written_batches == 1, what="the batch written")
    (series,) = influx.query('SELECT * FROM "acme/cnc-vmc850"', "edgegw")
    row = dict(zip(series["columns"], series["values"][0], strict=True))  # type: ignore[arg-type]
    assert row["curve[0]"] == 125.4 and row["curve[2]"] == 603.25
    assert row["valves[0]"] is True and row["valves[1]"] is False
    assert row["mode"] == "SETUP"


async def test_a_forged_unsigned_batch_cannot_shadow_the_signed_one(
    broker: Mosquitto, influx: Influxd, tmp_path: Path
) -> None:
    """Issue 18, item 8: with require: false a forged unsigned batch with the next seq
    made the authentic signed one a silent duplicate; and a payload's gateway was
    trusted over the topic's."""
    generate_key(tmp_path / "keys" / "gw1.key", "ed25519")
    gw1 = Signer(load_private(tmp_path / "keys" / "gw1.key"), "gw1-2026")
    svc = IngestService(loaded(
        tmp_path, broker.port, {"kind": "influxdb-v1", "url": influx.url, "database": "edgegw"},
        signatures={"require": False, "keys": {
            "gw1-2026": {"public_key": "keys/gw1.pub.pem", "gateways": ["gw1"]}}}))
    forged = payload(7, speed=66666)  # unsigned, the next seq
    authentic = gw1.sign(payload(7))
    other_gw = payload(8).replace(b'"gw":"gw1"', b'"gw":"gw2"')  # on gw1's topic
    async with ingest(svc):
        await publish(broker.port, [(T, forged)])
        await until(lambda: svc.stats.written_batches == 1, what="the forgery written")
        await publish(broker.port, [(T, authentic), (T, forged), (T, other_gw)])
        await until(lambda: svc.stats.written_batches == 2 and svc.stats.dead_letters == 1
                    and svc.stats.duplicates == 1, what="authentic written over it")
    (s,) = influx.query('SELECT speed FROM "acme/cnc-vmc850"', "edgegw")
    assert [v[1] for v in s["values"]] == [8007]  # type: ignore[index]  # the signed value
    (reason,) = [orjson.loads(x)["reason"] for x in
                 (tmp_path / "dead-letter.jsonl").read_bytes().splitlines()]
    assert "do not match the topic" in reason


async def test_a_batch_with_more_points_than_its_profile_is_refused(
    broker: Mosquitto, influx: Influxd, tmp_path: Path
) -> None:
    """Issue 18, item 14: one message could add 50,000 field keys to a measurement."""
    svc = IngestService(loaded(tmp_path, broker.port, {"kind": "influxdb-v1", "url": influx.url,
                                                       "database": "edgegw"}))
    wide = payload(1, **{f"f{i}": i for i in range(50_000)})  # the shipped cnc profile
    unknown = encode_batch(Batch("gw1", "cnc-01", "nobody/else@1", TS, {
        f"f{i}": i for i in range(1001)}, seq=2))
    async with ingest(svc):
        await publish(broker.port, [(T, wide), (T, unknown), (T, payload(3))])
        await until(lambda: svc.stats.written_batches == 1 and svc.stats.dead_letters == 2,
                    what="1 written, 2 dead letters")
    reasons = [orjson.loads(x)["reason"] for x in
               (tmp_path / "dead-letter.jsonl").read_bytes().splitlines()]
    assert "50000 points in one batch of profile 'acme/cnc-vmc850@1.2', which declares" \
        in reasons[0]
    assert "which this ingest does not know (at most 1000" in reasons[1]
    assert influx.query('SHOW FIELD KEYS FROM "acme/cnc-vmc850"', "edgegw")[0][
        "values"] == [["door", "boolean"], ["speed", "integer"], ["state", "string"],
                      ["temp", "float"]]  # type: ignore[index]
