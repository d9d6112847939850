"""MQTT over TLS with mutual authentication, against a real mosquitto that requires a
client certificate from the test CA: the happy path, and each way it must fail with a
clear error (wrong CA, expired client certificate, wrong host name, no certificate)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import GatewayMqtt
from gateway.stats import GatewayStats
from gateway.uplink.mqtt import MqttUplink
from tests.gateway.uplink.test_mqtt_uplink import fill, make_store, running
from tests.mqtt_sub import Subscriber
from tests.pki import TestCA
from tests.support.servers import Mosquitto, free_port

pytestmark = [pytest.mark.component, pytest.mark.timeout(60)]


@pytest.fixture
def pki(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path / "pki")


@pytest.fixture
def tls_broker(tmp_path: Path, pki: TestCA) -> Iterator[Mosquitto]:
    cert, key = pki.issue("broker", server=True, hosts=("127.0.0.1",))
    m = Mosquitto(free_port(), tmp_path, tls={"port": free_port(), "cafile": str(pki.path),
                                              "certfile": str(cert), "keyfile": str(key)})
    m.start()
    yield m
    m.stop()


def tls_cfg(broker: Mosquitto, ca: Path, cert: Path | None, key: Path | None,
            host: str = "127.0.0.1") -> GatewayMqtt:
    assert broker.tls is not None
    tls: dict[str, object] = {"ca_file": str(ca)}
    if cert is not None:
        tls.update(cert_file=str(cert), key_file=str(key))
    return GatewayMqtt.model_validate({"host": host, "port": broker.tls["port"], "tls": tls,
                                      "reconnect": {"initial": "100ms", "max": "300ms"}})


async def test_mutual_tls_delivers(tls_broker: Mosquitto, pki: TestCA) -> None:
    cert, key = pki.issue("gw-hall1")
    store = make_store()
    await fill(store, 5)
    uplink = MqttUplink(tls_cfg(tls_broker, pki.path, cert, key), "gw", store, GatewayStats())
    async with Subscriber(tls_broker.port, "edgegw/gw/+/data") as sub, running(uplink):
        await sub.wait_for(lambda: len(sub.data()) == 5, 10, "5 batches over TLS")
    assert store.stats.entries == 0


async def _refused(broker: Mosquitto, cfg: GatewayMqtt, caplog: pytest.LogCaptureFixture,
                   wait: float = 1.5) -> str:
    store = make_store()
    await fill(store, 1)
    stats = GatewayStats()
    uplink = MqttUplink(cfg, "gw", store, stats)
    with caplog.at_level(logging.WARNING, logger="edgegw.uplink"):
        async with running(uplink):
            await asyncio.sleep(wait)
    assert stats.published == 0 and store.stats.entries == 1  # nothing lost, nothing sent
    # the uplink's reconnect warnings, with the MQTT client's socket error in them
    return "\n".join(r.getMessage() for r in caplog.records if r.name == "edgegw.uplink")


async def test_server_signed_by_another_ca_is_refused(
    tls_broker: Mosquitto, pki: TestCA, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    other = TestCA(tmp_path / "other", "another CA")
    cert, key = pki.issue("gw")
    msg = await _refused(tls_broker, tls_cfg(tls_broker, other.path, cert, key), caplog)
    assert "certificate verify failed" in msg


async def test_expired_client_certificate_is_refused(
    tls_broker: Mosquitto, pki: TestCA, caplog: pytest.LogCaptureFixture
) -> None:
    cert, key = pki.issue("gw-old", expired=True)
    msg = await _refused(tls_broker, tls_cfg(tls_broker, pki.path, cert, key), caplog)
    assert "certificate expired" in msg  # the broker's TLS alert, logged; retried later


async def test_wrong_host_name_is_refused(
    tls_broker: Mosquitto, pki: TestCA, caplog: pytest.LogCaptureFixture
) -> None:
    cert, key = pki.issue("gw")
    # the broker's certificate is for 127.0.0.1, not for the name "localhost"
    cfg = tls_cfg(tls_broker, pki.path, cert, key, host="localhost")
    msg = await _refused(tls_broker, cfg, caplog)
    assert "mismatch" in msg or "doesn't match" in msg or "not valid for" in msg, msg


async def test_no_client_certificate_is_refused(
    tls_broker: Mosquitto, pki: TestCA, caplog: pytest.LogCaptureFixture
) -> None:
    msg = await _refused(tls_broker, tls_cfg(tls_broker, pki.path, None, None), caplog)
    assert "certificate required" in msg or "handshake failure" in msg, msg


async def test_key_and_csr_from_certs_init_signed_by_the_ca_connect(
    tls_broker: Mosquitto, pki: TestCA, tmp_path: Path
) -> None:
    """The commissioning path: `edgegw certs init` makes the key and CSR, the
    operator's CA signs the CSR, the gateway connects with it."""
    from gateway.cli import main

    conf = tmp_path / "gateway.yaml"
    conf.write_text("version: 1\ngateway: {id: gw-hall1}\n")
    assert main(["certs", "init", "-c", str(conf)]) == 0
    key = tmp_path / "pki" / "gateway.key"
    cert = pki.sign_csr(key.with_suffix(".csr"))
    store = make_store()
    await fill(store, 3)
    uplink = MqttUplink(tls_cfg(tls_broker, pki.path, cert, key), "gw", store, GatewayStats())
    async with Subscriber(tls_broker.port, "edgegw/gw/+/data") as sub, running(uplink):
        await sub.wait_for(lambda: len(sub.data()) == 3, 10, "3 batches over TLS")


async def test_client_certificate_from_another_ca_is_refused_with_the_reason(
    tls_broker: Mosquitto, pki: TestCA, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The broker refuses our certificate (TLS 1.3: after the handshake, with an alert
    the client reads only later): the log says so, not just 'timed out'."""
    other = TestCA(tmp_path / "other", "another CA")
    cert, key = other.issue("gw")
    msg = await _refused(tls_broker, tls_cfg(tls_broker, pki.path, cert, key), caplog)
    assert "TLS: tlsv1 alert unknown ca: the broker does not trust the CA that signed our " \
        "client certificate" in msg, msg


async def test_the_ingest_uses_mutual_tls_too(tls_broker: Mosquitto, pki: TestCA,
                                              tmp_path: Path) -> None:
    """mqtt.tls in ingest.yaml is honoured (the TLS listener refuses anything else)."""
    from gateway.ingest.service import IngestService
    from tests.gateway.ingest.test_ingest_component import T, ingest, loaded, payload

    assert tls_broker.tls is not None
    cert, key = pki.issue("ingest")

    class Sink:
        bodies: list[bytes] = []

        async def write(self, body: bytes) -> None:
            self.bodies.append(body)

        async def close(self) -> None:
            return None

    sink = Sink()
    cfg = loaded(tmp_path, int(tls_broker.tls["port"]), {"kind": "influxdb-v1",
                                                         "database": "edgegw"},
                 mqtt={"tls": {"ca_file": str(pki.path), "cert_file": str(cert),
                               "key_file": str(key)}})
    svc = IngestService(cfg, sink)
    async with ingest(svc):
        assert svc.protocol == "5"
        import aiomqtt

        async with aiomqtt.Client("127.0.0.1", tls_broker.port) as c:  # the plain listener
            await c.publish(T, payload(1), qos=1)
        for _ in range(100):
            if svc.stats.written_batches:
                break
            await asyncio.sleep(0.05)
    assert svc.stats.written_batches == 1 and b"speed=8001i" in sink.bodies[0]
