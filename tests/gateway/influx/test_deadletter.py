"""The dead-letter file is bounded and every reason is counted (issue 18, item 13)."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest

from gateway.influx.deadletter import DeadLetters, reason_kind


def test_rotates_past_its_size_and_counts_every_reason(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "dead-letter.jsonl"
    d = DeadLetters(path, max_bytes=64 * 1024, keep=2)
    with caplog.at_level(logging.WARNING, "edgegw.ingest"):
        for i in range(3000):
            d.add("edgegw/gw1/pack", b"x" * 100, f"cannot decode the pack: {i} records "
                  f"claimed in {i + 5} bytes")
            d.add("edgegw/gw1/d/data", b"{}", f"key id 'k{i}' may not sign for gateway 'gw9'")
    d.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["dead-letter.jsonl", "dead-letter.jsonl.1", "dead-letter.jsonl.2"]
    assert all((tmp_path / f).stat().st_size <= 64 * 1024 for f in files)
    assert d.count == 6000 and d.rotations > 2
    assert d.by_reason == {"cannot decode the pack": 3000,
                           "key id _ may not sign for gateway _": 3000}
    logged = [r.getMessage() for r in caplog.records if "dead letter #" in r.getMessage()]
    assert len(logged) == 2 + 2 * 3  # the first of each kind, then every 1000th
    last = orjson.loads(path.read_bytes().splitlines()[-1])
    assert last["reason"] == "key id 'k2999' may not sign for gateway 'gw9'"


def test_reason_kinds_are_bounded() -> None:
    assert reason_kind("payload of 123 bytes is too large") == \
        "payload of _ bytes is too large"
    assert reason_kind("rejected by the database: field type conflict") == \
        "rejected by the database"
