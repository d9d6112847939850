"""Log formats: text (default) or JSON lines, with the device id on every line logged
from a device's tasks.

The device id travels in a context variable that each device supervisor sets at its
start; asyncio copies the context into the tasks it creates, so every line logged while
handling that device (driver, pipeline, scheduler, fault log) carries ``device``
without threading it through every call.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging

current_device: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "edgegw_device", default=None)


class DeviceFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "device"):
            record.device = current_device.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "msg": record.getMessage(),
        }
        device = getattr(record, "device", None)
        if device:
            doc["device"] = device
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def setup(level: str, fmt: str = "text") -> None:
    """Configure the root logger (replacing earlier handlers)."""
    handler = logging.StreamHandler()
    handler.addFilter(DeviceFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
