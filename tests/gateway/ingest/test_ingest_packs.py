"""Hostile and signed compact packs at the ingest (issue 18, item 6).

A 2.9 KB pack without signatures produced 1.84 GB of dead letters in about 90 s: its
record count and lengths were trusted (zero-length records, each dead-lettered), the
loop held the event loop, SIGTERM was ignored. Compact packs could not be signed, so
``signatures.require`` did not cover them."""

from __future__ import annotations

import time
import zlib
from pathlib import Path

import orjson
import pytest

from gateway.ingest.service import IngestService
from gateway.model import Batch
from gateway.profiles import default_profile_dirs, load_profile
from gateway.wire.compact import (
    F_ZLIB,
    MIN_RECORD,
    PACK,
    CompactError,
    Schema,
    decode_pack,
    encode_pack,
    encode_record,
    sign_pack,
)
from tests.gateway.ingest.test_ingest_component import (
    TS,
    ingest,
    loaded,
    payload,
    publish,
    signing_ingest,
    until,
)
from tests.support.servers import Influxd, Mosquitto


def _uv(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def bomb() -> bytes:
    """A ~3 KB zlib pack: 2^60 records claimed, then ~3 MB of zero-length records."""
    body = _uv(1 << 60) + b"\0" * (3 << 20)
    return PACK + bytes([F_ZLIB]) + zlib.compress(body, 9)


@pytest.mark.parametrize(("pack", "says"), [
    (bomb(), "records claimed"),
    (PACK + b"\0" + _uv(3) + b"\0\0\0" + b"\0" * 60, "a record of 0 bytes"),
    (PACK + b"\0" + _uv(1 << 40), "records claimed"),
])
def test_forged_counts_and_lengths_are_refused_at_once(pack: bytes, says: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(CompactError, match=says):
        decode_pack(pack)
    assert time.monotonic() - t0 < 0.5
    assert len(bomb()) < 4000


def schema_and_rec() -> tuple[Schema, object]:
    prof = load_profile("acme/cnc-vmc850", default_profile_dirs())
    schema = Schema.of("acme/cnc-vmc850@1.2", [p.name for p in prof.expanded_points()])

    def rec(seq: int) -> bytes:
        b = Batch("gw1", "cnc-01", "acme/cnc-vmc850@1.2", TS + seq * 1000,
                  {"spindle_speed": 8000 + seq}, state="running", seq=seq)
        return encode_record(b, schema)

    return schema, rec


async def test_a_bomb_pack_is_one_dead_letter_and_the_ingest_goes_on(
        broker: Mosquitto, influx: Influxd, tmp_path: Path) -> None:
    svc = IngestService(loaded(tmp_path, broker.port, {"kind": "influxdb-v1",
                                                       "url": influx.url, "database": "edgegw"}))
    async with ingest(svc):
        await publish(broker.port, [("edgegw/gw1/pack", bomb()),
                                    ("edgegw/gw1/cnc-01/data", payload(1))])
        await until(lambda: svc.stats.written_batches == 1 and svc.stats.dead_letters == 1,
                    15, "the batch after the bomb written")
    dead = (tmp_path / "dead-letter.jsonl").read_bytes()
    assert len(dead) < 20_000  # one entry: the 3 KB pack, once (was 1.84 GB)
    assert "records claimed" in orjson.loads(dead.splitlines()[0])["reason"]


async def test_signed_packs_are_verified_like_json_batches(
        broker: Mosquitto, influx: Influxd, tmp_path: Path) -> None:
    _, rec = schema_and_rec()
    svc, gw1, gw9 = signing_ingest(tmp_path, broker, influx)
    good = gw1.sign_pack(encode_pack([rec(1), rec(2)]))  # type: ignore[operator]
    tampered = bytearray(gw1.sign_pack(encode_pack([rec(3)], level=0)))  # type: ignore[operator]
    tampered[-3] ^= 1
    unflagged = bytearray(good)
    unflagged[2] &= ~2  # the signature flag cleared: an unsigned pack, refused
    bad = [encode_pack([rec(4)]),  # unsigned
           bytes(tampered),
           gw9.sign_pack(encode_pack([rec(5)])),  # type: ignore[operator]  # gw9 for gw1
           bytes(unflagged)]
    async with ingest(svc):
        await publish(broker.port, [("edgegw/gw1/pack", p) for p in [good, *bad]])
        await until(lambda: svc.stats.written_batches == 2 and svc.stats.dead_letters == 4,
                    15, "2 written, 4 dead letters")
    assert svc.stats.refused_signatures == 4
    reasons = [orjson.loads(x)["reason"] for x in
               (tmp_path / "dead-letter.jsonl").read_bytes().splitlines()]
    assert reasons[:3] == ["unsigned pack (signatures are required)",
                           "bad signature for key id 'gw1-2026' (tampered, or signed with "
                           "another key)", "key id 'gw9-2026' may not sign for gateway 'gw1'"]
    assert reasons[3] == "unsigned pack (signatures are required)"
    (s,) = influx.query('SELECT spindle_speed FROM "acme/cnc-vmc850"', "edgegw")
    assert [v[1] for v in s["values"]] == [8001, 8002]  # type: ignore[index]


def test_sign_pack_covers_the_flag_and_body() -> None:
    signed = sign_pack(encode_pack([b"x" * MIN_RECORD]), "k1", lambda m: m[:8].ljust(64, b"s"))
    assert signed[2] & 2 and signed[3] == 2 and signed[4:6] == b"k1"
