"""What a Modbus device refused, remembered across restarts.

The driver learns refused requests at run time (``plan.Refusals``) and keeps them in
``<state dir>/modbus/<device id>.json``, so a restart plans the split requests at once
instead of asking the device the refused ones again. The file names the endpoint it was
learned from (``host:port unit N`` or ``port unit N``): pointed at another device, the
driver starts afresh. A file that cannot be read is set aside with a warning, never a
reason not to run.

.. code-block:: json

    {"v": 1, "device": "meter-1", "endpoint": "10.0.0.7:502 unit 1",
     "refused": [{"table": "input", "start": 0, "count": 64,
                  "reason": "modbus exception 2 (illegal data address)",
                  "learned": "2026-12-02T08:15:00Z"}]}
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path

from drivers.modbus.plan import FUNCTION_CODES, Refusal, Refusals

log = logging.getLogger("edgegw.modbus")
VERSION = 1


class LearnedLimits:
    """One device's refusals and where they are kept (``path`` None: memory only)."""

    def __init__(self, path: Path | None, device: str, endpoint: str) -> None:
        self.path = path
        self.device = device
        self.endpoint = endpoint
        self.refused = Refusals()
        self.learned: dict[Refusal, str] = {}  # refusal -> when (ISO 8601, UTC)
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, UnicodeError, ValueError) as exc:
            self._set_aside(path, f"cannot be read ({exc})")
            return
        try:
            if doc.get("v") != VERSION:
                raise ValueError(f"version {doc.get('v')!r}")
            if doc.get("endpoint") != self.endpoint:
                log.info("device %s: the request limits in %s were learned from %s, not %s: "
                         "learning afresh", self.device, path, doc.get("endpoint"),
                         self.endpoint)
                return
            for item in doc["refused"]:
                table, start, count = item["table"], item["start"], item["count"]
                if table not in FUNCTION_CODES or not all(
                        isinstance(v, int) and not isinstance(v, bool) for v in (start, count)) \
                        or not (0 <= start <= 65535 and 1 <= count <= 2000):
                    raise ValueError(f"bad entry {item!r}")
                r = Refusal(table, start, count, str(item.get("reason", "")))
                if self.refused.add(r):
                    self.learned[r] = str(item.get("learned", ""))
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            self.refused = Refusals()
            self.learned.clear()
            self._set_aside(path, f"is not a request-limits file ({exc})")

    def _set_aside(self, path: Path, why: str) -> None:
        bad = path.with_suffix(".bad")
        with contextlib.suppress(OSError):
            path.replace(bad)
        log.warning("device %s: %s %s; moved to %s, learning afresh", self.device, path,
                    why, bad.name)

    def add(self, r: Refusal) -> bool:
        """Remember ``r`` (and save); False when it tells nothing new."""
        if not self.refused.add(r):
            return False
        self.learned = {k: v for k, v in self.learned.items() if k in self.refused.items}
        self.learned[r] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.save()
        return True

    def forget(self) -> None:
        """Drop everything learned (after a firmware update that mapped the holes)."""
        self.refused = Refusals()
        self.learned.clear()
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def save(self) -> None:
        if self.path is None:
            return
        doc = {"v": VERSION, "device": self.device, "endpoint": self.endpoint,
               "refused": [{"table": r.table, "start": r.start, "count": r.count,
                            "reason": r.reason, "learned": self.learned.get(r, "")}
                           for r in self.refused]}
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
            tmp.replace(self.path)
        except OSError as exc:  # a read-only or full disk: keep it in memory, say so
            log.warning("device %s: cannot save the learned request limits to %s: %s "
                        "(kept until the next restart)", self.device, self.path,
                        exc.strerror or exc)
            with contextlib.suppress(OSError):
                tmp.unlink()
