"""The ingest's configuration: settings it would not honour are refused (issue 18)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.ingest.config import load_ingest_config

SINK = "sink: {kind: influxdb-v1, url: 'http://127.0.0.1:8086', database: edgegw}\n"


@pytest.mark.parametrize(("line", "says"), [
    ("qos: 0", "qos: not used by the ingest: it always subscribes with QoS 1"),
    ("max_inflight: 5", "max_inflight: not used by the ingest"),
    ("status_interval: 10s", "status_interval: not used by the ingest"),
])
def test_a_gateway_only_mqtt_setting_is_refused(tmp_path: Path, line: str, says: str) -> None:
    f = tmp_path / "ingest.yaml"
    f.write_text(f"version: 1\nmqtt:\n  {line}\n{SINK}")
    with pytest.raises(ConfigError) as e:
        load_ingest_config(f)
    assert str(f) in str(e.value) and "mqtt" in str(e.value) and says in str(e.value)


def test_the_example_config_loads() -> None:
    root = Path(__file__).resolve().parents[2]
    assert load_ingest_config(root / "examples" / "ingest.yaml").config.mqtt.qos == 1
