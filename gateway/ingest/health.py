"""The ingest's monitoring endpoint: ``/healthz`` (JSON; 503 while it is not connected
to the broker) and ``/metrics`` (Prometheus text: messages received, written, duplicates,
dead letters by reason, refused signatures, reads paused by the flow control)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Protocol

from gateway.httpserve import HttpEndpoint, Metrics
from gateway.influx.deadletter import DeadLetters
from gateway.ingest.flow import ReadGate
from gateway.ingest.stats import IngestStats


class Watched(Protocol):
    """What the endpoint reads of the ingest service (and nothing else)."""

    connected: asyncio.Event
    protocol: str | None
    stats: IngestStats
    dead: DeadLetters
    gate: ReadGate | None


class IngestHealth(HttpEndpoint):
    def __init__(self, svc: Watched, host: str, port: int) -> None:
        self.svc = svc
        super().__init__(host, port, {"/healthz": self.healthz, "/metrics": self.metrics},
                         "ingest health endpoint")

    def healthz(self) -> tuple[int, str, str]:
        svc = self.svc
        ok = svc.connected.is_set()
        doc = {"status": "ok" if ok else "degraded", "connected": ok,
               "protocol": svc.protocol,
               **{f.name: getattr(svc.stats, f.name) for f in dataclasses.fields(svc.stats)
                  if f.name != "ages"},
               "data_age_seconds": svc.stats.age_quantiles(),
               "dead_letters_by_reason": svc.dead.by_reason}
        return (200 if ok else 503), "application/json", json.dumps(doc) + "\n"

    def metrics(self) -> tuple[int, str, str]:
        svc, st = self.svc, self.svc.stats
        m = Metrics("edgegw_ingest_")
        m("connected", "gauge", "1 while subscribed at the broker",
          [({}, 1.0 if svc.connected.is_set() else 0.0)])
        for name, value, help_ in (
                ("received_total", st.received, "batches received (a pack's records each)"),
                ("written_batches_total", st.written_batches, "batches now in the database"),
                ("written_lines_total", st.written_lines, "line-protocol lines written"),
                ("writes_total", st.writes, "HTTP writes to the database"),
                ("duplicates_total", st.duplicates, "batches dropped as duplicates"),
                ("retries_total", st.retries, "database writes retried"),
                ("refused_signatures_total", st.refused_signatures,
                 "unsigned (when required), unknown key, bad signature, key not allowed")):
            m(name, "counter", help_, [({}, value)])
        m("dead_letters_total", "counter", "dead letters, by kind of reason",
          [({"reason": k}, v) for k, v in sorted(svc.dead.by_reason.items())] or
          [({"reason": "none"}, 0)])
        q = st.age_quantiles()
        m("data_age_seconds", "gauge", "how old batches were when the database accepted "
          "them (from the gateway's time stamp: clocks must agree), over the last "
          "10,000 batches", [({"quantile": k}, v) for k, v in q.items()]
          or [({"quantile": "0.99"}, 0.0)])
        gate = svc.gate
        m("read_pauses_total", "counter", "times reading stopped: receive_maximum "
          "messages were waiting (the broker sent more than the window)",
          [({}, gate.pauses if gate is not None else 0)])
        return m.text()
