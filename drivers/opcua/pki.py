"""Application certificates and the trust list for OPC UA secure channels.

An OPC UA application (the gateway as a client, the simulator as a server) proves its
identity with an RSA key and an X.509 certificate whose SubjectAltName carries its
application URI. :func:`ensure_certificate` creates a self-signed pair on first run with
``cryptography`` (the key file is written 0600). :class:`TrustList` decides whether a
peer's certificate is trusted: only certificates present in the trust list are, there is
no trust-on-first-use; a rejected certificate is saved to ``rejected/`` beside the trust
directory so an integrator can inspect it and move it in.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.crypto.files import write_private
from gateway.errors import DeviceUnreachable


class UntrustedCertificate(DeviceUnreachable):
    """The peer's certificate is not in the trust list (or not valid now): the device
    stays offline and is retried, so adding the certificate to the list heals it."""


def fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def ensure_certificate(cert_path: Path, key_path: Path, app_uri: str, common_name: str,
                       *, server: bool = False, days: int = 3650) -> bytes:
    """Return the DER certificate at ``cert_path``, creating key and certificate when
    either is missing (an existing pair is never overwritten)."""
    if cert_path.is_file() and key_path.is_file():
        return cert_path.read_bytes() if cert_path.suffix == ".der" else \
            x509.load_pem_x509_certificate(cert_path.read_bytes()).public_bytes(
                serialization.Encoding.DER)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    host = socket.gethostname()
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edgegw"),
    ])
    now = dt.datetime.now(dt.UTC)
    alt: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(app_uri), x509.DNSName(host), x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    usage = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if server:
        usage.append(ExtendedKeyUsageOID.SERVER_AUTH)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=True, key_encipherment=True,
            data_encipherment=True, key_agreement=False, key_cert_sign=True,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    write_private(key_path, pem, overwrite=True)
    cert_path.write_bytes(der)
    return der


def _load_der(path: Path) -> bytes | None:
    data = path.read_bytes()
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)
        x509.load_der_x509_certificate(data)
        return data
    except ValueError:
        return None


class TrustList:
    """Trusted peer certificates: files (DER or PEM) and directories of them."""

    def __init__(self, locations: list[Path], rejected_dir: Path | None = None) -> None:
        self.locations = locations
        self.rejected_dir = rejected_dir

    def fingerprints(self) -> set[str]:
        found: set[str] = set()
        for loc in self.locations:
            files = sorted(p for p in loc.iterdir() if p.is_file()) if loc.is_dir() else \
                [loc] if loc.is_file() else []
            for f in files:
                der = _load_der(f)
                if der is not None:
                    found.add(fingerprint(der))
        return found

    def check(self, der: bytes, who: str) -> None:
        """Raise UntrustedCertificate unless ``der`` is in the list and valid today."""
        cert = x509.load_der_x509_certificate(der)
        fp = fingerprint(der)
        subject = cert.subject.rfc4514_string()
        now = dt.datetime.now(dt.UTC)
        if fp not in self.fingerprints():
            saved = ""
            if self.rejected_dir is not None:
                self.rejected_dir.mkdir(parents=True, exist_ok=True)
                path = self.rejected_dir / f"{fp[:16]}.der"
                path.write_bytes(der)
                saved = f"; saved to {path}: after checking it, move it into the trust list"
            where = ", ".join(str(p) for p in self.locations) or "(empty trust list)"
            raise UntrustedCertificate(
                f"{who}: server certificate not trusted ({subject}, SHA-256 {fp[:32]}...), "
                f"trust list: {where}{saved}")
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise UntrustedCertificate(
                f"{who}: server certificate {subject} is not valid now (valid "
                f"{cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d})")
