"""CPU cost per batch of payload signing and spool encryption (edgegw's own code paths).

    .venv/bin/python bench/crypto_bench.py

A batch here is a typical 20-point Modbus batch (about 500 bytes of JSON)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from gateway.crypto.signing import (
    Signer,
    TrustedKey,
    Verifier,
    generate_key,
    load_private,
    load_public,
)
from gateway.crypto.spool import SpoolCipher
from gateway.model import Batch
from gateway.wire.encode import encode_batch

N = 5000


def per_call(fn, n: int = N) -> float:  # type: ignore[no-untyped-def]
    t = time.process_time()
    for i in range(n):
        fn(i)
    return (time.process_time() - t) / n * 1e6


def main() -> None:
    payload = encode_batch(Batch("gw1", "press-01", "acme/press@1", 1795450000000,
                                 {f"point_{i:02d}": 1234.5 + i for i in range(20)}, seq=1))
    print(f"batch: {len(payload)} bytes of JSON, {N} iterations, CPU time (process_time)")
    with tempfile.TemporaryDirectory() as d:
        for alg in ("ed25519", "ecdsa-p256"):
            key = Path(d) / f"{alg}.key"
            pub = generate_key(key, alg)
            s = Signer(load_private(key), "k1")
            v = Verifier({"k1": TrustedKey(load_public(pub))}, require=True)
            signed = s.sign(payload)
            print(f"  sign   {alg:11} {per_call(lambda _, s=s: s.sign(payload)):7.1f} us/batch "
                  f"(+{len(signed) - len(payload)} bytes)")
            us = per_call(lambda _, v=v, m=signed: v.check(m))
            print(f"  verify {alg:11} {us:7.1f} us/batch")
    c = SpoolCipher(bytes(32))
    sealed = c.seal(1, "edgegw/gw1/press-01/data", payload)
    print(f"  seal   aes-256-gcm {per_call(lambda i: c.seal(i, 'edgegw/gw1/x/data', payload)):7.1f}"
          " us/batch (+29 bytes on disk)")
    print(f"  open   aes-256-gcm "
          f"{per_call(lambda _: c.open(1, 'edgegw/gw1/press-01/data', sealed)):7.1f} us/batch")


if __name__ == "__main__":
    main()
