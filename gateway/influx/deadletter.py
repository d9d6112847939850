"""Dead letters: payloads that cannot be decoded or that InfluxDB rejects, one JSON line
each with the time, topic, reason and payload (UTF-8 text, or base64 if it is not text),
so one bad message never blocks the stream and nothing disappears without a trace.

Bounded: past ``max_bytes`` the file is rotated (``dead-letter.jsonl.1`` ... ``.<keep>``,
the oldest dropped), so a flood of bad messages cannot fill the disk. Every dead letter
is counted by reason (``by_reason``: the reason with quoted names and numbers taken out);
the first of each reason is logged, then every 1000th of it."""

from __future__ import annotations

import base64
import logging
import re
import time
from pathlib import Path

import orjson

log = logging.getLogger("edgegw.ingest")


_VARYING = re.compile(r"'[^']*'|\"[^\"]*\"|\d+")


def reason_kind(reason: str) -> str:
    """The reason without what varies (names, numbers): a bounded set of kinds."""
    return _VARYING.sub("_", reason.split(":", 1)[0] if ": " in reason else reason)[:80]


class DeadLetters:
    MAX_KINDS = 256  # reason kinds counted; more are counted as "other"

    def __init__(self, path: Path, max_payload_kept: int = 65536,
                 max_bytes: int = 64 << 20, keep: int = 3) -> None:
        self.path = path
        self.count = 0
        self.rotations = 0
        self.by_reason: dict[str, int] = {}
        self._max = max_payload_kept
        self._max_bytes = max_bytes
        self._keep = keep
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = path.open("ab")
        self._size = self._f.tell()

    def add(self, topic: str, payload: bytes, reason: str) -> None:
        self.count += 1
        kind = reason_kind(reason)
        if kind not in self.by_reason and len(self.by_reason) >= self.MAX_KINDS:
            kind = "other"
        n = self.by_reason[kind] = self.by_reason.get(kind, 0) + 1
        kept = payload[: self._max]
        try:
            body: dict[str, object] = {"payload": kept.decode("utf-8")}
        except UnicodeDecodeError:
            body = {"payload_b64": base64.b64encode(kept).decode()}
        rec = {"ts": int(time.time() * 1000), "topic": topic, "reason": reason,
               "bytes": len(payload), **body}
        line = orjson.dumps(rec) + b"\n"
        if self._size + len(line) > self._max_bytes and self._size:
            self._rotate()
        self._f.write(line)
        self._f.flush()
        self._size += len(line)
        if n == 1 or n % 1000 == 0:
            log.warning("ingest: dead letter #%d (%s; %d of this kind) from %s -> %s",
                        self.count, reason[:300], n, topic, self.path)

    def _rotate(self) -> None:
        self._f.close()
        for i in range(self._keep, 0, -1):
            src = self.path if i == 1 else self.path.with_name(f"{self.path.name}.{i - 1}")
            if src.exists():
                src.replace(self.path.with_name(f"{self.path.name}.{i}"))
        self._f = self.path.open("ab")
        self._size = 0
        self.rotations += 1
        if self.rotations == 1 or self.rotations % 100 == 0:
            log.warning("ingest: dead-letter file %s reached %d MiB: rotated (%d kept)",
                        self.path, self._max_bytes >> 20, self._keep)

    def close(self) -> None:
        self._f.close()
