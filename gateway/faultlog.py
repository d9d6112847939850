"""Log a repeating fault once, then a rate-limited summary; count everything."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass


@dataclass(slots=True)
class _Fault:
    message: str
    first: float
    count: int = 1
    reported: int = 1


class FaultLog:
    """``fault(key, msg)`` logs the first occurrence of ``key`` at WARNING and counts the
    rest; ``summary()`` logs one line per fault that repeated since the last summary;
    ``clear(key)`` logs the recovery. Keys are e.g. ``(device, block, reason)``."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0) -> None:
        self.log = logger
        self.interval = interval
        self._faults: dict[object, _Fault] = {}
        self.total = 0

    def fault(self, key: object, message: str) -> None:
        self.total += 1
        f = self._faults.get(key)
        if f is None:
            self._faults[key] = _Fault(message, time.monotonic())
            self.log.warning("%s", message)
        else:
            f.count += 1
            f.message = message

    def clear(self, key: object, message: str) -> None:
        f = self._faults.pop(key, None)
        if f is not None:
            self.log.info("%s (after %d fault(s) in %.0f s)", message, f.count,
                          time.monotonic() - f.first)

    def summary(self) -> None:
        """Called every ``interval`` seconds by the gateway's fault-summary task."""
        for f in self._faults.values():
            if f.count > f.reported:
                self.log.warning("%s (repeated %d times in the last %.0f s, %d in all)",
                                 f.message, f.count - f.reported, self.interval, f.count)
                f.reported = f.count

    @property
    def active(self) -> int:
        return len(self._faults)
