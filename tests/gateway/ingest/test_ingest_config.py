"""The ingest's configuration: settings it would not honour are refused (issue 18)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.ingest.config import load_ingest_config
from tests.tmpfs import read_only, tmpfs

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
    root = Path(__file__).resolve().parents[3]
    assert load_ingest_config(root / "examples" / "ingest.yaml").config.mqtt.qos == 1


def test_the_dead_letter_file_defaults_to_the_state_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 18, item 10: under the shipped unit the example's dead-letter file landed in
    the read-only /etc/edgegw, and --check passed. A real read-only mount stands in for
    ProtectSystem=strict (root ignores file modes, not a read-only filesystem)."""
    from gateway.ingest.check import _writable

    with tmpfs(tmp_path / "etc", "1m") as etc:
        root = Path(__file__).resolve().parents[3]
        (etc / "ingest.yaml").write_text((root / "examples" / "ingest.yaml").read_text())
        read_only(etc)
        state = tmp_path / "state"
        state.mkdir()
        monkeypatch.delenv("STATE_DIRECTORY", raising=False)
        beside = load_ingest_config(etc / "ingest.yaml").dead_letter
        assert beside == etc / "dead-letter.jsonl"
        refused = _writable(beside)
        assert not refused.ok and "not writable" in refused.detail
        monkeypatch.setenv("STATE_DIRECTORY", str(state))
        loaded = load_ingest_config(etc / "ingest.yaml")
        assert loaded.dead_letter == state / "dead-letter.jsonl"
        assert _writable(loaded.dead_letter).ok
