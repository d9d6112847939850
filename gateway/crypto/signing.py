"""Payload signatures: every batch is signed once, when it is stored, so what the
gateway sends after an outage is exactly what it signed at the time.

Wire form (docs/wire-format.md, "Signed payloads"): the signed payload is the unsigned
JSON object with one last member added, ``"sig":"<key id>:<signature>"``, the signature
in unpadded base64url. The signed message is the unsigned payload, byte for byte:
strip ``,"sig":"…"`` from the end and put back the closing brace. A reader that does not
verify still reads an ordinary payload (it ignores ``sig``).

The algorithm is never taken from the message (that is how JWT verifiers were fooled):
the verifier knows each key id's public key, and the key's type decides the algorithm.
``ed25519``: 64-byte Ed25519 signature. ``ecdsa-p256``: ECDSA over SHA-256 on P-256,
64 bytes r||s (as in JWS ES256).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from gateway.crypto.files import require_private, write_private
from gateway.errors import KeyFileError

Algorithm = Literal["ed25519", "ecdsa-p256"]
ALGORITHMS: tuple[Algorithm, ...] = ("ed25519", "ecdsa-p256")
KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_FIELD = b',"sig":"'
_ECDSA = ec.ECDSA(hashes.SHA256())
#: the order of P-256; a signature's S above half of it is refused (malleable form)
_P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_P256_HALF_N = _P256_N // 2

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey


def _b64(b: bytes) -> bytes:
    return base64.urlsafe_b64encode(b).rstrip(b"=")


def _unb64(b: bytes) -> bytes:
    return base64.urlsafe_b64decode(b + b"=" * (-len(b) % 4))


def algorithm_of(key: PrivateKey | PublicKey) -> Algorithm:
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(key.curve, ec.SECP256R1):
        return "ecdsa-p256"
    raise KeyFileError(f"EC curve {key.curve.name} is not supported (use P-256 or Ed25519)")


def generate_key(path: Path, algorithm: Algorithm = "ed25519") -> Path:
    """Create a signing key (PEM, mode 0600) and its public key beside it
    (``<name>.pub.pem``); returns the public key's path. Refuses to overwrite."""
    key: PrivateKey = (ed25519.Ed25519PrivateKey.generate() if algorithm == "ed25519"
                       else ec.generate_private_key(ec.SECP256R1()))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    write_private(path, pem)
    pub = public_path(path)
    pub.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return pub


def public_path(private: Path) -> Path:
    name = private.name.removesuffix(".pem").removesuffix(".key")
    return private.with_name(f"{name}.pub.pem")


def _read_key(path: Path, what: str, form: str, parse: Callable[[bytes], object],
              kinds: tuple[type, ...], use: str) -> object:
    try:
        key = parse(path.read_bytes())
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the {what}: {exc.strerror}") from None
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not {form} ({exc})") from None
    if not isinstance(key, kinds):
        raise KeyFileError(f"{path}: a {type(key).__name__} cannot {use} payloads; "
                           "use Ed25519 or EC P-256")
    algorithm_of(key)  # type: ignore[arg-type]
    return key


def load_private(path: Path) -> PrivateKey:
    return cast(PrivateKey, _read_key(
        path, "signing key", "an unencrypted PEM private key",
        lambda b: serialization.load_pem_private_key(b, password=None),
        (ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey), "sign"))


def load_public(path: Path) -> PublicKey:
    return cast(PublicKey, _read_key(
        path, "public key", "a PEM public key", serialization.load_pem_public_key,
        (ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey), "verify"))


class Signer:
    def __init__(self, key: PrivateKey, key_id: str) -> None:
        if not KEY_ID.fullmatch(key_id):
            raise KeyFileError(f"key id {key_id!r}: use 1-64 of A-Z a-z 0-9 . _ -")
        self.key = key
        self.key_id = key_id
        self.algorithm = algorithm_of(key)
        self._head = _FIELD + key_id.encode() + b":"

    def signature(self, message: bytes) -> bytes:
        k = self.key
        if isinstance(k, ed25519.Ed25519PrivateKey):
            return k.sign(message)
        r, s = decode_dss_signature(k.sign(message, _ECDSA))
        if s > _P256_HALF_N:
            s = _P256_N - s  # low S (BIP 62 style): the one form verifiers accept
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def sign_pack(self, pack: bytes) -> bytes:
        """A compact pack, signed (gateway.wire.compact.sign_pack)."""
        from gateway.wire.compact import sign_pack

        return sign_pack(pack, self.key_id, self.signature)

    def sign(self, payload: bytes) -> bytes:
        if not payload.endswith(b"}"):
            raise ValueError("only a JSON object payload can be signed")
        return payload[:-1] + self._head + _b64(self.signature(payload)) + b'"}'


def split(payload: bytes) -> tuple[bytes, str, bytes] | None:
    """``(message, key id, signature)`` of a signed payload, None if it is unsigned.

    The ``sig`` member is the object's last one, so the last ``,"sig":"`` is it: inside
    a JSON string a quote is always escaped, so the pattern cannot come from a value.
    Raises ValueError for a ``sig`` member that is not ``<key id>:<base64url>``."""
    if not payload.endswith(b'"}'):
        return None
    i = payload.rfind(_FIELD)
    if i < 0:
        return None
    value = payload[i + len(_FIELD):-2]
    kid, colon, sig = value.partition(b":")
    if not colon or not kid:
        raise ValueError("malformed signature member (want \"<key id>:<signature>\")")
    try:
        raw = _unb64(sig)
    except ValueError:
        raise ValueError("malformed signature (not base64url)") from None
    return payload[:i] + b"}", kid.decode("ascii", "replace"), raw


@dataclass(frozen=True, slots=True)
class TrustedKey:
    key: PublicKey
    gateways: frozenset[str] | None = None  # None: any gateway may use this key


class Verifier:
    """Checks signed payloads against known public keys (by key id)."""

    def __init__(self, keys: dict[str, TrustedKey], require: bool) -> None:
        self.keys = keys
        self.require = require

    def check(self, payload: bytes) -> tuple[bytes, str | None]:
        """The message to decode and the key id that signed it (None: unsigned and
        allowed). Raises ValueError saying why the payload is refused."""
        parts = split(payload)
        if parts is None:
            if self.require:
                raise ValueError("unsigned payload (signatures are required)")
            return payload, None
        message, kid, sig = parts
        return message, self._verified(message, kid, sig)

    def check_pack(self, payload: bytes) -> tuple[bytes, str | None]:
        """A compact pack: the unsigned pack to decode and the key id that signed it
        (None: unsigned and allowed). Raises ValueError saying why it is refused."""
        from gateway.wire.compact import split_pack

        parts = split_pack(payload)
        if parts is None:
            if self.require:
                raise ValueError("unsigned pack (signatures are required)")
            return payload, None
        pack, message, kid, sig = parts
        return pack, self._verified(message, kid, sig)

    def _verified(self, message: bytes, kid: str, sig: bytes) -> str | None:
        trusted = self.keys.get(kid)
        if trusted is None:
            if self.require or self.keys:
                raise ValueError(f"signed with unknown key id {kid!r}")
            return None
        if not verify(trusted.key, message, sig):
            raise ValueError(f"bad signature for key id {kid!r} (tampered, or signed "
                             "with another key)")
        return kid

    def allowed(self, kid: str | None, gateway: str) -> bool:
        if kid is None:
            return True
        allowed = self.keys[kid].gateways
        return allowed is None or gateway in allowed


def verify(key: PublicKey, message: bytes, sig: bytes) -> bool:
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(sig, message)
        else:
            if len(sig) != 64:
                return False
            r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
            if s > _P256_HALF_N:  # (r, n - s) verifies too: only low S is one signature
                return False
            der = encode_dss_signature(r, s)
            key.verify(der, message, _ECDSA)
    except InvalidSignature:
        return False
    return True


def verifier_from_files(entries: Iterable[tuple[str, Path, Iterable[str] | None]],
                        require: bool) -> Verifier:
    keys = {kid: TrustedKey(load_public(path), None if gws is None else frozenset(gws))
            for kid, path, gws in entries}
    return Verifier(keys, require)


def load_signer(path: Path, key_id: str, algorithm: Algorithm) -> Signer:
    """The gateway's signer from ``signing:``; the key must be private (0600) and of
    the configured algorithm."""
    require_private(path, "signing key")
    key = load_private(path)
    found = algorithm_of(key)
    if found != algorithm:
        raise KeyFileError(f"{path}: is an {found} key but signing.algorithm is {algorithm}")
    return Signer(key, key_id)
