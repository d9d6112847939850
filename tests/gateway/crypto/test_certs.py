"""``edgegw certs``: the gateway's key and CSR, what `show` prints, and the expiry
warnings in the log, the status topic and /metrics."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from gateway.cli import main
from gateway.config import load_config
from gateway.crypto.certs import read_cert
from gateway.crypto.watch import CertWatch
from tests.pki import TestCA


def _config(tmp_path: Path, extra: str = "") -> Path:
    p = tmp_path / "gateway.yaml"
    p.write_text(f"version: 1\ngateway: {{id: gw-hall1, site: hall-1}}\n{extra}")
    return p


def test_init_makes_a_private_key_and_a_csr_with_the_gateway_id(tmp_path: Path) -> None:
    conf = _config(tmp_path)
    assert main(["certs", "init", "-c", str(conf)]) == 0
    key = tmp_path / "pki" / "gateway.key"
    assert key.stat().st_mode & 0o777 == 0o600
    csr = x509.load_pem_x509_csr(key.with_suffix(".csr").read_bytes())
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "gw-hall1"
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:edgegw:gw-hall1"]
    pub = csr.public_key()
    assert isinstance(pub, ec.EllipticCurvePublicKey) and pub.curve.name == "secp256r1"
    # again: the same key, a new CSR (renewal keeps the key unless --new-key)
    before = key.read_bytes()
    assert main(["certs", "init", "-c", str(conf)]) == 0
    assert key.read_bytes() == before
    assert main(["certs", "init", "-c", str(conf), "--new-key", "--key-type", "rsa-2048"]) == 0
    assert key.read_bytes() != before
    rsa_csr = x509.load_pem_x509_csr(key.with_suffix(".csr").read_bytes())
    assert isinstance(rsa_csr.public_key(), rsa.RSAPublicKey)
    assert key.stat().st_mode & 0o777 == 0o600


def test_init_writes_the_configured_mqtt_key_file(tmp_path: Path) -> None:
    conf = _config(tmp_path, "uplink:\n  mqtt:\n    tls: {cert_file: tls/gw.crt, "
                   "key_file: tls/gw.key, ca_file: tls/ca.crt}\n")
    assert main(["certs", "init", "-c", str(conf)]) == 0
    assert (tmp_path / "tls" / "gw.key").is_file()
    assert (tmp_path / "tls" / "gw.csr").is_file()


def test_show_prints_expiry_and_fingerprint_and_fails_on_expired(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = TestCA(tmp_path / "ca")
    cert, key = ca.issue("gw-hall1", days=10)
    conf = _config(tmp_path, f"uplink:\n  mqtt:\n    tls: {{cert_file: {cert}, key_file: {key}, "
                   f"ca_file: {ca.path}}}\n")
    assert main(["certs", "show", "-c", str(conf)]) == 0
    out = capsys.readouterr().out
    assert "uplink.mqtt.tls.cert_file" in out and "uplink.mqtt.tls.ca_file" in out
    assert "CN=gw-hall1" in out and "(9 days)" in out
    assert "expires in 9 day(s)" in out  # the 30-day warning
    assert read_cert("x", cert).sha256 in out
    old, _ = ca.issue("old", expired=True)
    assert main(["certs", "show", "-c", str(conf), str(old)]) == 1
    assert "EXPIRED" in capsys.readouterr().out
    (tmp_path / "junk.crt").write_text("not a certificate")
    assert main(["certs", "show", "-c", str(conf), str(tmp_path / "junk.crt")]) == 1
    assert "not a certificate" in capsys.readouterr().out


def test_watch_warns_in_the_log_30_days_ahead(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ca = TestCA(tmp_path / "ca")
    cert, key = ca.issue("gw-hall1", days=20)
    conf = _config(tmp_path, f"uplink:\n  mqtt:\n    tls: {{cert_file: {cert}, key_file: {key}, "
                   f"ca_file: {ca.path}}}\n")
    watch = CertWatch(load_config(conf))
    with caplog.at_level(logging.WARNING):
        warnings = watch.check()
    assert len(warnings) == 1
    assert "uplink.mqtt.tls.cert_file" in warnings[0] and "expires in 19 day(s)" in warnings[0]
    assert "expires in 19 day(s)" in caplog.text
    # a fresh certificate: no warning
    cert2, _ = ca.issue("gw-hall1", days=400)
    cert.write_bytes(cert2.read_bytes())
    assert watch.check() == []


def test_key_commands_refuse_to_overwrite_and_need_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = _config(tmp_path)
    assert main(["certs", "signing-key", "-c", str(conf)]) == 1
    assert "signing is not configured" in capsys.readouterr().err
    conf = _config(tmp_path, "signing: {key_file: k/sign.key, key_id: gw-hall1-1}\n"
                   "store: {encryption_key_file: k/spool.key}\n")
    assert main(["certs", "signing-key", "-c", str(conf)]) == 0
    out = capsys.readouterr().out
    assert "gw-hall1-1:" in out and "public_key: sign.pub.pem" in out
    assert main(["certs", "signing-key", "-c", str(conf)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["certs", "spool-key", "-c", str(conf)]) == 0
    assert (tmp_path / "k" / "spool.key").stat().st_mode & 0o777 == 0o600
    assert main(["certs", "spool-key", "-c", str(conf)]) == 1


def test_expiry_warning_goes_into_the_status_topic(tmp_path: Path) -> None:
    from gateway.app import Gateway

    ca = TestCA(tmp_path / "ca")
    cert, key = ca.issue("gw-hall1", days=5)
    conf = _config(tmp_path, f"uplink:\n  mqtt:\n    tls: {{cert_file: {cert}, key_file: {key}, "
                   f"ca_file: {ca.path}}}\nstore: {{kind: memory}}\n")
    gw = Gateway(load_config(conf))
    assert "certs" not in gw._status_topic()
    gw.certs.check()
    (line,) = gw._status_topic()["certs"]  # type: ignore[misc]
    assert "uplink.mqtt.tls.cert_file" in line and "expires in 4 day(s)" in line
