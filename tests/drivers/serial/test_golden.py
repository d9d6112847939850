"""Golden cases (Telegraf style): ``cases/<name>/input.bin`` through the profile's framer
and parser must give ``expected.json``: the samples, how many frames were rejected by
the parser, and the framer's counters. Each case is fed whole, byte by byte, and in
uneven chunks: the result must not depend on how the bytes arrived."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from drivers.serial.framing import Framer
from drivers.serial.parse import FrameRejected, Parser
from gateway.profiles import SerialPoint, default_profile_dirs, load_profile

CASES = sorted(p for p in (Path(__file__).parent / "cases").iterdir() if p.is_dir())


def run_case(profile_name: str, data: bytes, chunks: list[int]) -> dict[str, Any]:
    prof = load_profile(profile_name, default_profile_dirs())
    assert prof.serial is not None
    points = [p for p in prof.points if isinstance(p, SerialPoint)]
    framer, parser = Framer(prof.serial.framing), Parser(prof.serial, points)
    samples: list[dict[str, Any]] = []
    rejected = 0
    pos = 0
    k = 0
    while pos < len(data):
        n = chunks[k % len(chunks)]
        k += 1
        for payload in framer.feed(data[pos : pos + n]):
            try:
                values, problems = parser.parse(payload)
            except FrameRejected:
                rejected += 1
                continue
            assert not problems, problems
            samples.append(dict(zip((p.name for p in points), values, strict=True)))
        pos += n
    return {"samples": samples, "rejected": rejected, "counts": dict(framer.counts)}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@pytest.mark.parametrize("chunks", [[1 << 20], [1], [3, 7, 1, 64]],
                         ids=["whole", "bytes", "uneven"])
def test_golden(case: Path, chunks: list[int]) -> None:
    spec = json.loads((case / "case.json").read_text())
    expected = json.loads((case / "expected.json").read_text())
    got = run_case(spec["profile"], (case / "input.bin").read_bytes(), chunks)
    assert _approx(got["samples"]) == _approx(expected["samples"])
    assert got["rejected"] == expected["rejected"]
    assert got["counts"] == expected["counts"]


def _approx(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: round(v, 4) if isinstance(v, float) else v for k, v in s.items()}
            for s in samples]
