"""Counters the gateway exposes in its status topic and on /metrics."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class DeviceStats:
    state: str = "starting"
    polls: int = 0
    points: int = 0
    read_errors: int = 0
    missed_ticks: int = 0
    reconnects: int = 0
    last_error: str | None = None
    last_ok: float = 0.0  # wall-clock time of the last successful read
    read_seconds: float = 0.0  # total time spent in reads (polls): mean = / polls
    beat: float = 0.0  # monotonic time of the last poll cycle, delivery or connect attempt


@dataclass(slots=True)
class GatewayStats:
    devices: dict[str, DeviceStats] = field(default_factory=dict)
    published: int = 0  # batches acknowledged by the broker
    messages: int = 0  # MQTT data messages acknowledged (compact: one pack, many batches)
    publish_errors: int = 0
    mqtt_connects: int = 0
    uplink_connected: bool = False
    bytes_sent: int = 0  # payload + topic of acknowledged publishes
    publish_seconds: float = 0.0  # total time from publish to its PUBACK
    urgent: int = 0  # alarm/state batches sent through the fast lane
    reloads: int = 0  # config reloads applied
    reload_errors: int = 0  # reloads refused (invalid config; the old one kept running)

    def device(self, dev: str) -> DeviceStats:
        st = self.devices.get(dev)
        if st is None:
            st = self.devices[dev] = DeviceStats()
        return st
