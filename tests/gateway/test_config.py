"""Config validation: every error named with file, path and expected value."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import load_config
from gateway.durations import parse_duration
from gateway.errors import ConfigError

GOOD = """
gateway: {id: gw-hall1}
uplink: {mqtt: {host: 127.0.0.1, port: 1883}}
devices:
  - id: cnc-01
    profile: acme/cnc-vmc850
    connection: {kind: modbus-tcp, host: 127.0.0.1, port: 15020}
    poll: {fast: 500ms}
  - id: meter-01
    profile: voltmeter/em340-3ph
    connection: {kind: modbus-rtu, port: /dev/ttyUSB0, baudrate: 19200, unit_id: 3}
    workarounds: {inter_request_delay: 20ms}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "gateway.yaml"
    p.write_text(text)
    return p


def problems(tmp_path: Path, text: str) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as ei:
        load_config(write(tmp_path, text))
    return ei.value.problems


def test_good_config_loads_with_overrides(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, GOOD))
    cnc, meter = loaded.devices
    assert cnc.poll_periods == {"fast": 0.5, "slow": 10.0}
    assert cnc.workarounds.max_registers_per_read == 100  # from the profile
    assert meter.workarounds.inter_request_delay == pytest.approx(0.02)  # from the device


@pytest.mark.parametrize(("patch", "where", "says"), [
    (("port: 15020", "port: 70000"), "devices[0].connection.port", "less than or equal to 65535"),
    (("kind: modbus-tcp", "kind: modbus-udp"), "devices[0].connection", "modbus-tcp"),
    (("id: gw-hall1", "id: 'gw hall/1'"), "gateway.id", "letters, digits"),
    (("poll: {fast: 500ms}", "poll: {fast: soon}"), "devices[0].poll.fast", "duration"),
    (("poll: {fast: 500ms}", "pol: {fast: 1s}"), "devices[0].pol", "unknown field"),
    (("poll: {fast: 500ms}", "poll: {turbo: 1s}"), "devices[0].poll", "unknown poll group"),
    (("acme/cnc-vmc850", "acme/nope"), "devices[0].profile", "profile not found"),
    (("{inter_request_delay: 20ms}", "{max_registers_per_read: 300}"),
     "devices[1].workarounds.max_registers_per_read", "less than or equal to 125"),
    (("id: meter-01", "id: cnc-01"), "devices", "duplicate device id"),
])
def test_each_error_names_file_path_and_expectation(
    tmp_path: Path, patch: tuple[str, str], where: str, says: str
) -> None:
    found = problems(tmp_path, GOOD.replace(*patch, 1))
    text = "\n".join(f"{loc}: {msg}" for loc, msg in found)
    assert str(tmp_path / "gateway.yaml") in text
    assert where in text
    assert says in text


def test_all_errors_are_reported_at_once(tmp_path: Path) -> None:
    bad = GOOD.replace("port: 15020", "port: 0").replace("baudrate: 19200", "baudrate: 1")
    found = problems(tmp_path, bad)
    assert len(found) == 2


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    found = problems(tmp_path, "gateway: {id: x\ndevices: [")
    assert ":2:" in found[0][0] or ":3:" in found[0][0]
    assert "invalid YAML" in found[0][1]


def test_check_config_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(write(tmp_path, GOOD))]) == 0
    assert "ok (2 device(s)" in capsys.readouterr().out
    assert main(["check-config", str(write(tmp_path, GOOD.replace("15020", "-1")))]) == 1
    err = capsys.readouterr().err
    assert "devices[0].connection.port: Input should be greater than or equal to 1" in err


def test_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["check-config", str(tmp_path / "nope.yaml")]) == 1
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "seconds"), [
    ("250ms", 0.25), ("1s", 1.0), ("1.5s", 1.5), ("5m", 300.0), ("2h", 7200.0), ("7d", 604800.0),
    (3, 3.0),
])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["fast", "-1s", "1w", True])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_example_configs_are_valid() -> None:
    examples = sorted((Path(__file__).parents[2] / "examples").glob("gateway*.yaml"))
    assert examples
    for path in examples:
        load_config(path)


SERIAL = GOOD + """
  - id: scanner-1
    profile: scanfast/bcr-200
    connection: {kind: serial, port: [/dev/serial/by-id/usb-scanner, /dev/ttyUSB1]}
    context_for: [cnc-01]
"""


def test_serial_device_with_product_context(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, SERIAL))
    scanner = loaded.devices[2]
    assert scanner.config.context_for == ["cnc-01"]
    conn = scanner.config.connection
    assert conn.kind == "serial" and conn.ports == ["/dev/serial/by-id/usb-scanner",
                                                    "/dev/ttyUSB1"]


@pytest.mark.parametrize(("patch", "where", "says"), [
    (("context_for: [cnc-01]", "context_for: [press-9]"), "devices[2].context_for",
     "not other devices"),
    (("profile: scanfast/bcr-200", "profile: weightec/scale-ws300"), "devices[2].context_for",
     "no point with 'context"),
    (("kind: serial, port:", "kind: serial, stopbits: 3, port:"), "devices[2].connection.stopbits",
     "1, 1.5 or 2"),
    (("kind: serial, port: [/dev/serial/by-id/usb-scanner, /dev/ttyUSB1]",
      "kind: modbus-rtu, port: /dev/ttyUSB1"), "devices[2].connection.kind", "cannot talk to"),
])
def test_serial_config_errors(tmp_path: Path, patch: tuple[str, str], where: str,
                              says: str) -> None:
    found = problems(tmp_path, SERIAL.replace(*patch, 1))
    text = "\n".join(f"{loc}: {msg}" for loc, msg in found)
    assert where in text and says in text, text


def test_check_config_warns_about_world_readable_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "mqtt.pass"
    secret.write_text("s3cret\n")
    secret.chmod(0o644)
    mqtt = f"uplink: {{mqtt: {{username: gw, password_file: {secret}}}}}"
    path = write(tmp_path, GOOD.replace("uplink: {mqtt: {host: 127.0.0.1, port: 1883}}", mqtt))
    assert main(["check-config", str(path)]) == 0
    err = capsys.readouterr().err
    assert "uplink.mqtt.password_file" in err and "readable by every user" in err
    assert "chmod 600" in err and "s3cret" not in err
    secret.chmod(0o600)
    assert main(["check-config", str(path)]) == 0
    assert "warning" not in capsys.readouterr().err


def test_relative_paths_are_beside_the_config_whatever_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "mqtt.pass").write_text("pw\n")
    (tmp_path / "mqtt.pass").chmod(0o600)
    mqtt = ("uplink: {mqtt: {username: gw, password_file: mqtt.pass, "
            "tls: {ca_file: pki/ca.pem}}}")
    path = write(tmp_path, GOOD.replace("uplink: {mqtt: {host: 127.0.0.1, port: 1883}}", mqtt))
    monkeypatch.chdir("/")
    mq = load_config(path).config.uplink.mqtt
    assert mq.password_file == tmp_path / "mqtt.pass" and mq.password() == "pw"
    assert mq.tls is not None and mq.tls.ca_file == tmp_path / "pki" / "ca.pem"
    # a file the config names that is not there: an error naming the field (exit 1)
    assert main(["check-config", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"uplink.mqtt.tls.ca_file: {tmp_path / 'pki' / 'ca.pem'} does not exist" in err


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    """Issue 18, item 12: nested aliases hung check-config and a reload."""
    import time

    rows = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefg", "bcdefgh", strict=True):
        rows.append(f"{name}: &{name} [{','.join([f'*{prev}'] * 9)}]")
    f = tmp_path / "gateway.yaml"
    f.write_text("version: 1\n" + "\n".join(rows) + "\ngateway: {id: [*h,*h,*h,*h]}\n")
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as e:
        load_config(f)
    assert time.monotonic() - t0 < 2.0
    assert "aliases (*name) are not allowed" in str(e.value) and f"{f}:3:" in str(e.value)
    assert "lol" not in str(e.value)  # never the expanded input


def test_the_influx_route_has_its_own_retry_and_devices_their_own_reconnect(
        tmp_path: Path) -> None:
    """Issue 19: the device backoff and the InfluxDB retry were read from
    uplink.mqtt.reconnect, which the InfluxDB route forbids setting."""
    influx = ("uplink: {influx: {kind: influxdb-v1, database: edgegw, "
              "retry: {initial: 2s, max: 1m}, budget: {bytes_per_s: 4000}}}\n"
              "pipeline: {reconnect: {initial: 3s, max: 2m}}")
    cfg = load_config(write(tmp_path, GOOD.replace(
        "uplink: {mqtt: {host: 127.0.0.1, port: 1883}}", influx))).config
    assert cfg.uplink.influx is not None
    assert (cfg.uplink.influx.retry.initial, cfg.uplink.influx.retry.max) == (2.0, 60.0)
    assert cfg.uplink.influx.budget is not None
    assert (cfg.pipeline.reconnect.initial, cfg.pipeline.reconnect.max) == (3.0, 120.0)
    # the old key on this route: refused, naming the new ones
    old = ("uplink: {influx: {kind: influxdb-v1, database: edgegw}, "
           "mqtt: {reconnect: {initial: 2s}}}")
    ((where, says),) = problems(tmp_path, GOOD.replace(
        "uplink: {mqtt: {host: 127.0.0.1, port: 1883}}", old))
    assert where.endswith("gateway.yaml: uplink")
    assert "uplink.influx.retry" in says and "pipeline.reconnect" in says


def test_broker_hosts_of_a_cluster() -> None:
    from gateway.common import MqttConfig

    m = MqttConfig.model_validate({"hosts": ["10.0.0.1", "broker-2:8883", "[fd00::3]:1884"],
                                   "port": 1883})
    assert m.endpoints() == [("10.0.0.1", 1883), ("broker-2", 8883), ("fd00::3", 1884)]
    assert MqttConfig.model_validate({"host": "b", "port": 2}).endpoints() == [("b", 2)]
    for bad, why in ((["b:x"], "host:port with a number"), (["[::1"], "in brackets"),
                     (["b:70000"], "port 1-65535"), ([""], "expected host")):
        with pytest.raises(ValueError, match=why):
            MqttConfig.model_validate({"hosts": bad})
    with pytest.raises(ValueError, match="not both"):
        MqttConfig.model_validate({"host": "a", "hosts": ["b"]})


def test_amqp_urls_of_a_cluster_without_passwords() -> None:
    from gateway.ingest.config import AmqpSource

    ok = AmqpSource.model_validate({"urls": ["amqp://127.0.0.1:5672/", "amqps://ingest@b:5671/"]})
    assert len(ok.urls) == 2
    for bad in ("amqp://ingest:secret@b:5672/", "http://b:5672/"):
        with pytest.raises(ValueError, match="without a password"):
            AmqpSource.model_validate({"urls": [bad]})


def test_amqp_password_goes_into_the_url_of_the_node_in_use(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from gateway.ingest.amqp import AmqpConsumer
    from gateway.ingest.config import AmqpSource

    monkeypatch.setenv("EDGEGW_TEST_AMQP", "s3cr/t@")
    src = AmqpSource.model_validate({
        "urls": ["amqp://ingest@b1:5672/vh", "amqp://ingest@[::1]:5673/", "amqp://b3/"],
        "password_env": "EDGEGW_TEST_AMQP"})
    consumer = AmqpConsumer(SimpleNamespace(  # type: ignore[arg-type]
        cfg=SimpleNamespace(amqp=src), topics=["edgegw/+/+/data"]))
    urls = []
    for node in range(3):
        consumer._node = node
        urls.append(consumer._url())
    assert urls == ["amqp://ingest:s3cr%2Ft%40@b1:5672/vh",
                    "amqp://ingest:s3cr%2Ft%40@[::1]:5673/",
                    "amqp://b3/"]  # no user: no password
    assert consumer.keys == ["edgegw.*.*.data"]
