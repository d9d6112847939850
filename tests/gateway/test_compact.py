"""The compact v2 format: every batch decodes to exactly the JSON v1 document
(hypothesis), packs round-trip, and bad input is a CompactError, never a crash."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.model import Batch, Quality
from gateway.wire.compact import (
    CompactError,
    Schema,
    Schemas,
    decode_pack,
    decode_record,
    encode_pack,
    encode_record,
)
from gateway.wire.encode import encode_batch

NAMES = [f"p{i}" for i in range(40)] + ["status.lube_ok", "recipe"]
SCHEMA = Schema.of("acme/test@1.0", NAMES)
SCHEMAS = Schemas([SCHEMA])

floats = st.floats(allow_nan=False, allow_infinity=False)
scalars = st.one_of(st.booleans(), st.integers(-2**63, 2**64 - 1), floats,
                    floats.map(lambda f: round(f, 2)), st.text(max_size=20))
# a one-dimensional array (OPC UA): a tuple in the gateway, a list once decoded
values = st.one_of(st.none(), scalars, st.lists(scalars, max_size=20).map(tuple))
names = st.sampled_from(NAMES)
batches = st.builds(
    Batch, gateway=st.just("gw1"), device=st.text(min_size=1, max_size=12),
    profile=st.just("acme/test@1.0"), ts_ms=st.integers(1, 2**45),
    values=st.dictionaries(names, values, max_size=42),
    quality=st.dictionaries(names, st.tuples(st.sampled_from([Quality.UNCERTAIN,
                                                              Quality.BAD]), st.text())),
    state=st.none() | st.sampled_from(["running", "offline"]),
    ids=st.dictionaries(st.sampled_from(["device", "product"]), st.text(max_size=30)),
    seq=st.integers(1, 2**62), group=st.sampled_from(["", "fast"]),
    error=st.none() | st.text(), src=st.dictionaries(names, st.integers(1, 2**45)))


def as_json(b: Batch) -> dict[str, Any]:
    return orjson.loads(encode_batch(b))


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b and type(a) is type(b)


@settings(max_examples=400, deadline=None)
@given(b=batches)
def test_a_record_decodes_to_the_json_document(b: Batch) -> None:
    doc = decode_record(encode_record(b, SCHEMA), "gw1", SCHEMAS)
    want = as_json(b)
    assert same(doc, want), (doc, want)


@settings(max_examples=100, deadline=None)
@given(bs=st.lists(batches, max_size=20), level=st.sampled_from([0, 1, 6]))
def test_packs_round_trip(bs: list[Batch], level: int) -> None:
    recs = [encode_record(b, SCHEMA) for b in bs]
    assert decode_pack(encode_pack(recs, level)) == recs


def test_floats_are_sent_as_their_decimal() -> None:
    b = Batch("gw1", "d", "acme/test@1.0", 1, {"p0": 123.4, "p1": 8027, "p2": -0.5,
                                                "p3": 1e300, "p4": -0.0, "p5": 20.0})
    rec = encode_record(b, SCHEMA)
    doc = decode_record(rec, "gw1", SCHEMAS)
    assert same(doc["p"], b.values)
    # 123.4 -> tag 0x11 + zigzag(1234) (2 bytes); 8027 -> tag + 2 bytes
    assert len(rec) < 2 + 1 + 1 + 2 + 14 + 4 + 1 + 1 + 6 * 2 + 3 + 3 + 2 + 9 + 9 + 2


@pytest.mark.parametrize("bad", [b"", b"\xec", b"\xec\x02\x01", b"\xec\x03" + b"\x00" * 20,
                                 b"\xec\x02\x01\x01\x01d\x0dacme/test@1.0\x00\x00\x00\x00"])
def test_bad_records(bad: bytes) -> None:
    with pytest.raises(CompactError):
        decode_record(bad, "gw1", SCHEMAS)


def test_schema_mismatch_and_unknown_profile_are_refused() -> None:
    b = Batch("gw1", "d", "acme/test@1.0", 1, {"p0": 1})
    other = Schemas([Schema.of("acme/test@1.0", ["x", *NAMES])])
    with pytest.raises(CompactError, match="schema hash differs"):
        decode_record(encode_record(b, SCHEMA), "gw1", other)
    with pytest.raises(CompactError, match="unknown profile"):
        decode_record(encode_record(b, SCHEMA), "gw1", Schemas())


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=200))
def test_garbage_is_a_compact_error(raw: bytes) -> None:
    for data in (raw, b"\xec\x02" + raw, b"\xed\x02\x00" + raw, b"\xed\x02\x01" + raw):
        with contextlib.suppress(CompactError):
            decode_record(data, "gw1", SCHEMAS)
        with contextlib.suppress(CompactError):
            decode_pack(data)
