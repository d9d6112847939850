"""Client certificates are created once; only listed server certificates are trusted."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509

from drivers.opcua.pki import TrustList, UntrustedCertificate, ensure_certificate, fingerprint


def test_certificate_created_once_with_private_key_0600(tmp_path: Path) -> None:
    cert, key = tmp_path / "own" / "cert.der", tmp_path / "own" / "key.pem"
    der = ensure_certificate(cert, key, "urn:edgegw:gw1", "edgegw gw1")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    c = x509.load_der_x509_certificate(der)
    san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "urn:edgegw:gw1" in san.get_values_for_type(x509.UniformResourceIdentifier)
    assert ensure_certificate(cert, key, "urn:edgegw:gw1", "edgegw gw1") == der  # kept


def test_trust_list_accepts_listed_and_rejects_others(tmp_path: Path) -> None:
    good = ensure_certificate(tmp_path / "a.der", tmp_path / "a.pem", "urn:a", "a", server=True)
    other = ensure_certificate(tmp_path / "b.der", tmp_path / "b.pem", "urn:b", "b", server=True)
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    (trusted / "a.der").write_bytes(good)
    tl = TrustList([trusted], rejected_dir=tmp_path / "rejected")
    tl.check(good, "opc.tcp://a")
    with pytest.raises(UntrustedCertificate) as ei:
        tl.check(other, "opc.tcp://b")
    msg = str(ei.value)
    assert "opc.tcp://b" in msg and "not trusted" in msg and "CN=b" in msg
    saved = list((tmp_path / "rejected").iterdir())
    assert len(saved) == 1 and saved[0].read_bytes() == other
    assert fingerprint(other)[:16] in saved[0].name
    # the integrator moves it into the trust list: trusted from the next check on
    saved[0].rename(trusted / saved[0].name)
    tl.check(other, "opc.tcp://b")


def test_empty_trust_list_trusts_nothing(tmp_path: Path) -> None:
    der = ensure_certificate(tmp_path / "a.der", tmp_path / "a.pem", "urn:a", "a")
    with pytest.raises(UntrustedCertificate, match="not trusted"):
        TrustList([tmp_path / "missing"]).check(der, "x")
