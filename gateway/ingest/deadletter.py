"""Dead letters: payloads that cannot be decoded or that InfluxDB rejects, one JSON line
each with the time, topic, reason and payload (UTF-8 text, or base64 if it is not text),
so one bad message never blocks the stream and nothing disappears without a trace."""

from __future__ import annotations

import base64
import logging
import time
from pathlib import Path

import orjson

log = logging.getLogger("edgegw.ingest")


class DeadLetters:
    def __init__(self, path: Path, max_payload_kept: int = 65536) -> None:
        self.path = path
        self.count = 0
        self._max = max_payload_kept
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = path.open("ab")

    def add(self, topic: str, payload: bytes, reason: str) -> None:
        self.count += 1
        kept = payload[: self._max]
        try:
            body: dict[str, object] = {"payload": kept.decode("utf-8")}
        except UnicodeDecodeError:
            body = {"payload_b64": base64.b64encode(kept).decode()}
        rec = {"ts": int(time.time() * 1000), "topic": topic, "reason": reason,
               "bytes": len(payload), **body}
        self._f.write(orjson.dumps(rec) + b"\n")
        self._f.flush()
        if self.count == 1 or self.count % 1000 == 0:
            log.warning("ingest: dead letter #%d (%s) from %s -> %s", self.count, reason,
                        topic, self.path)

    def close(self) -> None:
        self._f.close()
