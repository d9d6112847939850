"""The local health endpoint: ``/healthz``, ``/metrics`` (Prometheus text format),
``/status.json`` and a small status page (``/``, gateway/health/page.py) that refreshes
itself from it.

Loopback only by default (``health.host``); the HTTP side (bounded requests and
connections) is gateway.httpserve, shared with the ingest. The server renders what its
:class:`Source` (the gateway) reports: the health summary, the device state and the
services' metric families; it never blocks the device tasks.
"""

from __future__ import annotations

import json
import logging
from typing import Protocol

from gateway.health import page
from gateway.httpserve import Family, HttpEndpoint, Metrics

log = logging.getLogger("edgegw.health")


class Source(Protocol):
    def summary(self) -> dict[str, object]:
        """The summary (/healthz): ``status`` is ``ok`` or ``degraded``."""
        ...

    def device_state(self) -> dict[str, dict[str, object]]:
        """Each device's link and machine state, last read and error, latest values."""
        ...

    def families(self) -> list[Family]:
        """Every service's families (gateway/services.py)."""
        ...


class HealthServer(HttpEndpoint):
    def __init__(self, source: Source, host: str, port: int) -> None:
        self.source = source
        super().__init__(host, port, {
            "/healthz": self.healthz, "/metrics": self.metrics, "/": self.page,
            "/status.json": self.status_json,
        }, "health endpoint")

    def healthz(self) -> tuple[int, str, str]:
        h = self.source.summary()
        return (200 if h["status"] == "ok" else 503), "application/json", json.dumps(h) + "\n"

    def status_json(self) -> tuple[int, str, str]:
        return 200, "application/json", json.dumps(
            {**self.source.summary(), "device_state": self.source.device_state()},
            default=str) + "\n"

    def metrics(self) -> tuple[int, str, str]:
        out = Metrics()
        out.add(self.source.families())
        out("health_refused_connections_total", "counter",
            "idle connections to this endpoint closed to make room (too many at once)",
            [({}, self.refused)])
        return out.text()

    def page(self) -> tuple[int, str, str]:
        return 200, "text/html", page.render(self.source.summary(), self.source.device_state())
