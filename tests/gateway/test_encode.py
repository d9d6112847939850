from __future__ import annotations

import orjson
import pytest

from gateway.model import Batch, Quality
from gateway.wire.encode import decode_batch, encode_batch


def test_json_v1_fields() -> None:
    b = Batch("gw1", "cnc-01", "acme/cnc@1", 1763900000123, {"speed": 1200, "temp": None},
              {"temp": (Quality.BAD, "timeout")}, "running", {"device": "88.1.2/X"}, seq=42,
              group="fast")
    doc = orjson.loads(encode_batch(b))
    assert doc == {
        "v": 1, "gw": "gw1", "dev": "cnc-01", "prof": "acme/cnc@1", "seq": 42,
        "ts": 1763900000123, "grp": "fast", "state": "running", "ids": {"device": "88.1.2/X"},
        "p": {"speed": 1200, "temp": None}, "q": {"temp": ["bad", "timeout"]},
    }
    assert decode_batch(encode_batch(b))["seq"] == 42


def test_offline_batch_carries_error() -> None:
    doc = orjson.loads(encode_batch(Batch("g", "d", "p", 1, {}, state="offline", error="x")))
    assert doc["err"] == "x" and doc["p"] == {} and "q" not in doc


def test_decode_rejects_other_versions() -> None:
    with pytest.raises(ValueError, match="v1"):
        decode_batch(b'{"v": 9}')


def test_source_timestamps_travel_as_st() -> None:
    from gateway.model import Batch
    from gateway.wire.encode import decode_batch, encode_batch

    b = Batch("gw", "d", "p@1", 20_000, {"a": 1.0, "b": 2.0}, src={"b": 17_250})
    doc = decode_batch(encode_batch(b))
    assert doc["st"] == {"b": 17_250}
    assert "st" not in decode_batch(encode_batch(Batch("gw", "d", "p@1", 1, {"a": 1.0})))


def test_a_payload_holds_only_its_own_bytes() -> None:
    """orjson returns its whole output buffer (32 KiB for a small document); a payload
    kept in the store must cost its length, not that (ijl/orjson#483)."""
    import tracemalloc

    b = Batch("gw1", "d1", "bench/r100", 1763900000123, {f"r{i}": i * 7 for i in range(99)})
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [encode_batch(b) for _ in range(200)]
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    size = len(kept[0])
    assert held < 200 * (size + 200), f"{held / 200:.0f} bytes held per {size}-byte payload"
