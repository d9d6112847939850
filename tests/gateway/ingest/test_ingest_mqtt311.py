"""The ingest against a broker that speaks only MQTT 3.1.1 (amqtt, a third-party broker):
it falls back from v5, keeps a persistent session (clean session off) with manual
acknowledgements, so what arrives while it is away is written once when it is back; a
permanent CONNACK refusal is an error with its meaning; ``ingest --check`` contacts the
broker and the database."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.ingest.service import BrokerRefused, IngestService
from tests.gateway.ingest.test_ingest_component import T, ingest, loaded, payload, publish, until
from tests.support.servers import Amqtt, Influxd, Mosquitto, free_port

pytestmark = [pytest.mark.component, pytest.mark.timeout(120)]


@pytest.fixture
def amqtt(tmp_path: Path) -> Iterator[Amqtt]:
    # amqtt keeps no messages for anonymous sessions, persistent or not: users log in
    (tmp_path / "amqtt").mkdir()
    b = Amqtt(free_port(), tmp_path / "amqtt", users={"ingest": "in-pw", "gw": "gw-pw"})
    b.start()
    yield b
    b.stop()


async def _publish311(port: int, messages: list[tuple[str, bytes]]) -> None:
    import aiomqtt

    async with aiomqtt.Client("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V311,
                              username="gw", password="gw-pw") as c:
        for topic, body in messages:
            await c.publish(topic, body, qos=1)


def _sink(influx: Influxd) -> dict[str, object]:
    return {"kind": "influxdb-v1", "url": influx.url, "database": "edgegw"}


def _login(tmp_path: Path) -> dict[str, str]:
    pw = tmp_path / "ingest.pass"
    pw.write_text("in-pw\n")
    pw.chmod(0o600)
    return {"username": "ingest", "password_file": str(pw)}


async def test_falls_back_to_311_and_loses_nothing_while_away(
        amqtt: Amqtt, influx: Influxd, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "edgegw.ingest")
    cfg = loaded(tmp_path, amqtt.port, _sink(influx), mqtt=_login(tmp_path))
    svc = IngestService(cfg)
    async with ingest(svc):
        assert svc.protocol == "3.1.1"
        await _publish311(amqtt.port, [(T, payload(i)) for i in range(1, 6)])
        await until(lambda: svc.stats.written_batches == 5, what="5 batches written")
    # amqtt drops a v5 CONNECT with properties without a CONNACK: 3.1.1 is tried at once
    assert any("using MQTT 3.1.1" in r.getMessage() for r in caplog.records)
    # away: the broker keeps the persistent session's messages
    await _publish311(amqtt.port, [(T, payload(i)) for i in range(6, 16)])
    svc = IngestService(cfg)
    async with ingest(svc):
        await until(lambda: svc.stats.written_batches == 10, what="the 10 sent while away")
    (series,) = influx.query('SELECT count(speed) FROM "acme/cnc-vmc850"', "edgegw")
    assert series["values"][0][1] == 15  # type: ignore[index]


async def test_unacknowledged_messages_come_again_on_a_311_session(
        broker: Mosquitto, influx: Influxd, tmp_path: Path) -> None:
    """Acknowledged only after the database has them: an ingest stopped while its write
    fails (no database yet) gets them again on its 3.1.1 session (mosquitto, held to
    3.1.1: amqtt 0.12 drops a QoS 1 message that is not acknowledged within 5 s or
    before a disconnect, see docs/ingest.md)."""
    dead = {"kind": "influxdb-v1", "url": f"http://127.0.0.1:{free_port()}",
            "database": "edgegw"}
    v3 = {"protocol": "3.1.1"}
    svc = IngestService(loaded(tmp_path, broker.port, dead, mqtt=v3))
    async with ingest(svc):
        assert svc.protocol == "3.1.1"
        await publish(broker.port, [(T, payload(i)) for i in range(1, 4)])
        await until(lambda: svc.stats.received >= 3 and svc.stats.retries >= 1,
                    what="received, the write failing")
        assert svc.stats.written_batches == 0
    svc = IngestService(loaded(tmp_path, broker.port, _sink(influx), mqtt=v3))
    async with ingest(svc):
        await until(lambda: svc.stats.written_batches == 3, what="redelivered and written")
    (series,) = influx.query('SELECT count(speed) FROM "acme/cnc-vmc850"', "edgegw")
    assert series["values"][0][1] == 3  # type: ignore[index]


async def test_a_shared_subscription_needs_v5(amqtt: Amqtt, influx: Influxd,
                                              tmp_path: Path) -> None:
    svc = IngestService(loaded(tmp_path, amqtt.port, _sink(influx), share_group="g",
                               mqtt=_login(tmp_path)))
    with pytest.raises(BrokerRefused, match=r"does not speak MQTT v5 .*, which mqtt.share_group"):
        await asyncio.wait_for(svc.run(), 20)


async def test_bad_credentials_are_an_error_with_their_meaning(
        tmp_path: Path, influx: Influxd) -> None:
    (tmp_path / "b").mkdir()
    b = Amqtt(free_port(), tmp_path / "b", users={"ingest": "right"})
    b.start()
    try:
        (tmp_path / "pw").write_text("wrong\n")
        (tmp_path / "pw").chmod(0o600)
        svc = IngestService(loaded(tmp_path, b.port, _sink(influx), mqtt={
            "protocol": "3.1.1", "username": "ingest", "password_file": str(tmp_path / "pw")}))
        # both answer a wrong password with 'not authorized' (3.1.1 code 5, v5 135)
        with pytest.raises(BrokerRefused, match=r"refused the connection \(MQTT 3\.1\.1\): "
                           r"CONNACK 135: not authorized: a wrong user name or password"):
            await asyncio.wait_for(svc.run(), 20)
    finally:
        b.stop()
    m = Mosquitto(free_port(), tmp_path, users={"ingest": "right"})
    m.start()
    try:
        svc = IngestService(loaded(tmp_path, m.port, _sink(influx), mqtt={
            "username": "ingest", "password_file": str(tmp_path / "pw")}))
        with pytest.raises(BrokerRefused, match=r"\(MQTT 5\): CONNACK 135: not authorized"):
            await asyncio.wait_for(svc.run(), 20)
    finally:
        m.stop()


async def _check(cfg_path: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "ingest", "--check", "-c", str(cfg_path),
        cwd="/", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_check_contacts_the_broker_and_the_database(
        amqtt: Amqtt, broker: Mosquitto, influx: Influxd, tmp_path: Path) -> None:
    import yaml

    def write(port: int, url: str, **mqtt: str) -> Path:
        path = tmp_path / "ingest.yaml"
        path.write_text(yaml.safe_dump({"mqtt": {"port": port, **mqtt}, "sink": {
            "kind": "influxdb-v1", "url": url, "database": "edgegw"}}))
        return path

    code, out = await _check(write(amqtt.port, influx.url, **_login(tmp_path)))
    assert code == 0, out
    assert f"broker 127.0.0.1:{amqtt.port}: ok: MQTT 3.1.1 (" in out
    assert f"database influxdb-v1 {influx.url}: ok: InfluxDB 1." in out
    code, out = await _check(write(broker.port, influx.url))
    assert code == 0 and "ok: MQTT 5; subscribed to edgegw/+/+/data" in out, out
    code, out = await _check(write(free_port(), f"http://127.0.0.1:{free_port()}"))
    assert code == 2, out
    assert "broker 127.0.0.1:" in out and "FAILED: cannot connect" in out
    assert "database influxdb-v1" in out and out.count("FAILED") == 2
