"""The gateway's TLS identity: its key and CSR, and what every configured certificate
says about itself (subject, expiry, fingerprint), for ``edgegw certs`` and the
expiry warnings in the log, the status topic and /metrics."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from gateway.config import LoadedConfig
from gateway.crypto.files import write_private
from gateway.errors import KeyFileError

KeyType = Literal["ec-p256", "rsa-2048"]
#: a certificate this close to its end (days) is warned about
WARN_DAYS = 30


def default_key_path(loaded: LoadedConfig) -> Path:
    tls = loaded.config.uplink.mqtt.tls
    if tls is not None and tls.key_file is not None:
        return loaded.resolve(tls.key_file)
    return loaded.resolve(Path("pki/gateway.key"))


def init(loaded: LoadedConfig, key_path: Path, key_type: KeyType = "ec-p256",
         new_key: bool = False) -> tuple[Path, Path, bool]:
    """Make the gateway's key (unless one exists and not ``new_key``) and a CSR for it
    with the gateway id as CN and ``urn:edgegw:<id>`` as URI SAN.
    Returns ``(key path, csr path, key created)``."""
    created = new_key or not key_path.exists()
    if created:
        key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = (
            ec.generate_private_key(ec.SECP256R1()) if key_type == "ec-p256"
            else rsa.generate_private_key(public_exponent=65537, key_size=2048))
        write_private(key_path, key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()), overwrite=new_key)
    else:
        loaded_key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        if not isinstance(loaded_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise KeyFileError(f"{key_path}: a {type(loaded_key).__name__} cannot make a "
                               "TLS client certificate request; use --new-key")
        key = loaded_key
    gw = loaded.config.gateway
    names = [x509.NameAttribute(NameOID.COMMON_NAME, gw.id)]
    if gw.site:
        names.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, gw.site))
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name(names))
           .add_extension(x509.SubjectAlternativeName(
               [x509.UniformResourceIdentifier(f"urn:edgegw:{gw.id}")]), critical=False)
           .sign(key, hashes.SHA256()))
    csr_path = key_path.with_suffix(".csr")
    csr_path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return key_path, csr_path, created


@dataclass(frozen=True, slots=True)
class CertInfo:
    where: str  # the config field, e.g. uplink.mqtt.tls.cert_file
    path: Path
    subject: str = ""
    issuer: str = ""
    not_after: dt.datetime | None = None
    sha256: str = ""
    problem: str | None = None  # unreadable, not a certificate

    def days_left(self, now: dt.datetime | None = None) -> float | None:
        if self.not_after is None:
            return None
        now = now or dt.datetime.now(dt.UTC)
        return (self.not_after - now).total_seconds() / 86400

    def verdict(self, now: dt.datetime | None = None) -> str | None:
        """What is wrong with it ("expires in 9 day(s) ..."), or None."""
        if self.problem is not None:
            return self.problem
        days = self.days_left(now)
        assert days is not None
        assert self.not_after is not None
        if days < 0:
            return f"EXPIRED on {self.not_after:%Y-%m-%d}"
        if days < WARN_DAYS:
            return (f"expires in {int(days)} day(s), on {self.not_after:%Y-%m-%d}: "
                    "renew it (edgegw certs init)")
        return None

    def warning(self, now: dt.datetime | None = None) -> str | None:
        """A line for the log and the status topic, or None if all is well."""
        v = self.verdict(now)
        if v is None:
            return None
        who = f" ({self.subject})" if self.subject else ""
        return f"{self.where}: {self.path}{who}: {v}"


def read_cert(where: str, path: Path) -> CertInfo:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return CertInfo(where, path, problem=f"cannot read: {exc.strerror}")
    try:
        cert = (x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data
                else x509.load_der_x509_certificate(data))
    except ValueError as exc:
        return CertInfo(where, path, problem=f"not a certificate ({exc})")
    fp = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    return CertInfo(where, path, cert.subject.rfc4514_string(), cert.issuer.rfc4514_string(),
                    cert.not_valid_after_utc, ":".join(fp[i:i + 2] for i in range(0, 64, 2)))


def public_key_fingerprint(path: Path) -> str:
    """SHA-256 of a private or public key's SubjectPublicKeyInfo (colon hex)."""
    data = path.read_bytes()
    if b"PRIVATE KEY" in data:
        pub = serialization.load_pem_private_key(data, None).public_key()
    else:
        pub = serialization.load_pem_public_key(data)
    der = pub.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    fp = hashlib.sha256(der).hexdigest().upper()
    return ":".join(fp[i:i + 2] for i in range(0, 64, 2))
