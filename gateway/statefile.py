"""A small JSON state file written atomically (production.json, trace.json): what a
service carries over a restart, per device (``{"v": 1, "saved": ..., "machines": {device
id: state}}``). A crash while writing leaves the previous file."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("edgegw.state")


class StateFile:
    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self.what = what  # for the log: "production state", ...

    def load(self) -> dict[str, Any] | None:
        """The saved document, or None (none yet, or unreadable: said in the log)."""
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.error("%s %s unreadable (%s): starting afresh; the time since it was "
                      "written counts as unknown", self.what, self.path, exc)
            return None
        return doc if isinstance(doc, dict) else None

    def machines(self) -> dict[str, Any]:
        """Each device's saved state (empty: none saved, or unreadable)."""
        doc = self.load()
        machines = doc.get("machines") if doc is not None else None
        return machines if isinstance(machines, dict) else {}

    @staticmethod
    def text(saved: dict[str, Any], current: dict[str, Any]) -> str | None:
        """The document of the devices' states (``current`` over ``saved``: those not
        running now keep what they had), or None when there is nothing to keep."""
        if not saved and not current:
            return None
        return json.dumps({"v": 1, "saved": time.time(), "machines": {**saved, **current}},
                          separators=(",", ":"))

    def write(self, text: str) -> None:
        tmp = self.path.with_suffix(".tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            log.error("%s not saved to %s: %s", self.what, self.path, exc)
