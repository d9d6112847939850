"""Spool encryption at rest: AES-256-GCM per stored batch, so a stolen SD card does not
leak production data.

A sealed payload is ``0x01 | nonce (12) | ciphertext | tag (16)``. A plain payload is
JSON and starts with ``{``, so both can sit in one spool (turning encryption on keeps
the batches already stored; they are sent as they are). The nonce is the batch's
sequence number (8 bytes, unique per spool) and 4 random bytes; the associated data is
the sequence number and the topic, so a sealed row moved to another row or topic does
not open. The key is 32 random bytes in a file of mode 0600, raw or base64 text
(``edgegw certs spool-key``). Keep it off the SD card (a USB key, a TPM-backed
credential through systemd ``LoadCredential=``) or encryption protects nothing.
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
from pathlib import Path

from gateway.crypto.files import require_private, write_private
from gateway.errors import KeyFileError, StoreError

SEALED = b"\x01"
OVERHEAD = 1 + 12 + 16
_SEQ = struct.Struct(">Q")


class SealError(StoreError):
    """A sealed payload that does not open: another key, or damaged on disk."""


class SpoolCipher:
    def __init__(self, key: bytes) -> None:
        # imported here: cryptography costs ~7 MB of RSS, paid only when a key is set
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if len(key) != 32:
            raise ValueError("the spool key is 32 bytes")
        self._aead = AESGCM(key)

    @classmethod
    def from_file(cls, path: Path) -> SpoolCipher:
        require_private(path, "spool key")
        data = path.read_bytes()
        if len(data) != 32:
            try:
                data = base64.b64decode(data.strip(), validate=True)
            except binascii.Error:
                data = b""
        if len(data) != 32:
            raise KeyFileError(f"{path}: a spool key is 32 bytes, raw or base64 (make one "
                               "with: edgegw certs spool-key)")
        return cls(data)

    def seal(self, seq: int, topic: str, payload: bytes) -> bytes:
        nonce = _SEQ.pack(seq) + os.urandom(4)
        return SEALED + nonce + self._aead.encrypt(nonce, payload, _aad(seq, topic))

    def open(self, seq: int, topic: str, blob: bytes) -> bytes:
        """The payload; raises SealError for a wrong key or a damaged row."""
        from cryptography.exceptions import InvalidTag

        try:
            return self._aead.decrypt(blob[1:13], blob[13:], _aad(seq, topic))
        except InvalidTag:
            raise SealError(f"batch {seq} does not decrypt") from None


def _aad(seq: int, topic: str) -> bytes:
    return _SEQ.pack(seq) + topic.encode()


def is_sealed(blob: bytes) -> bool:
    return blob[:1] == SEALED


def generate(path: Path, overwrite: bool = False) -> None:
    write_private(path, base64.b64encode(os.urandom(32)) + b"\n", overwrite)


__all__ = ["OVERHEAD", "SealError", "SpoolCipher", "generate", "is_sealed"]
