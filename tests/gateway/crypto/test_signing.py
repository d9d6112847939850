"""Payload signatures: both algorithms, every kind of refusal, and hypothesis over
batches (a signed payload verifies; any change to the signed bytes does not)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.crypto.signing import (
    Signer,
    TrustedKey,
    Verifier,
    generate_key,
    load_private,
    load_public,
    load_signer,
    split,
)
from gateway.errors import KeyFileError
from gateway.model import Batch, Quality
from gateway.wire.encode import decode_batch, encode_batch


def keypair(tmp_path: Path, alg: str = "ed25519", name: str = "sign") -> tuple[Signer, Path]:
    key = tmp_path / f"{name}.key"
    pub = generate_key(key, alg)  # type: ignore[arg-type]
    return Signer(load_private(key), f"{name}-1"), pub


def payload(values: dict[str, object] | None = None, gw: str = "gw1") -> bytes:
    return encode_batch(Batch(gw, "press-1", "p@1", 1795450000000, values or {"t": 21.5},
                              {"temp2": (Quality.BAD, "timeout")}, "running", seq=7))


@pytest.mark.parametrize("alg", ["ed25519", "ecdsa-p256"])
def test_sign_and_verify(tmp_path: Path, alg: str) -> None:
    signer, pub = keypair(tmp_path, alg)
    raw = payload()
    signed = signer.sign(raw)
    doc = orjson.loads(signed)  # still one JSON object; readers that do not verify
    assert doc["sig"].startswith("sign-1:") and decode_batch(signed)["p"] == {"t": 21.5}
    assert len(signed) - len(raw) < 110
    v = Verifier({"sign-1": TrustedKey(load_public(pub))}, require=True)
    message, kid = v.check(signed)
    assert message == raw and kid == "sign-1"


def test_refusals(tmp_path: Path) -> None:
    signer, pub = keypair(tmp_path)
    other, _ = keypair(tmp_path, name="other")
    v = Verifier({"sign-1": TrustedKey(load_public(pub), frozenset({"gw1"}))}, require=True)
    signed = signer.sign(payload())
    with pytest.raises(ValueError, match="unsigned payload"):
        v.check(payload())
    with pytest.raises(ValueError, match="bad signature"):
        v.check(signed.replace(b"21.5", b"99.5"))  # tampered value
    with pytest.raises(ValueError, match="unknown key id 'other-1'"):
        v.check(other.sign(payload()))
    forged = Signer(other.key, "sign-1").sign(payload())  # right id, wrong key
    with pytest.raises(ValueError, match="bad signature"):
        v.check(forged)
    with pytest.raises(ValueError, match="malformed"):
        v.check(payload()[:-1] + b',"sig":"nocolon"}')
    # the key may sign for gw1 only
    _, kid = v.check(signer.sign(payload(gw="gw2")))
    assert not v.allowed(kid, "gw2") and v.allowed(kid, "gw1")
    # not required: unsigned passes, signed ones are still checked
    lax = Verifier(v.keys, require=False)
    assert lax.check(payload()) == (payload(), None)
    with pytest.raises(ValueError, match="bad signature"):
        lax.check(signed.replace(b"21.5", b"99.5"))


def test_a_value_that_looks_like_a_signature_is_not_one(tmp_path: Path) -> None:
    signer, pub = keypair(tmp_path)
    tricky = payload({"sig": 'x","sig":"a:b', "note": ',"sig":"k:AAAA"}'})
    assert split(tricky) is None  # quotes inside strings are escaped
    v = Verifier({"sign-1": TrustedKey(load_public(pub))}, require=True)
    assert v.check(signer.sign(tricky))[0] == tricky


def test_load_signer_checks_mode_and_algorithm(tmp_path: Path) -> None:
    key = tmp_path / "sign.key"
    generate_key(key, "ecdsa-p256")
    assert load_signer(key, "k1", "ecdsa-p256").algorithm == "ecdsa-p256"
    with pytest.raises(KeyFileError, match=r"is an ecdsa-p256 key but signing\.algorithm is "
                       r"ed25519"):
        load_signer(key, "k1", "ed25519")
    key.chmod(0o640)
    with pytest.raises(KeyFileError, match="accessible to other users"):
        load_signer(key, "k1", "ecdsa-p256")
    junk = tmp_path / "junk.key"
    junk.write_text("hello")
    junk.chmod(0o600)
    with pytest.raises(KeyFileError, match="not an unencrypted PEM private key"):
        load_signer(junk, "k1", "ed25519")
    with pytest.raises(KeyFileError, match="key id"):
        Signer(load_private(key), "bad id!")


values = st.dictionaries(
    st.text(min_size=1, max_size=12),
    st.one_of(st.integers(-2**53, 2**53), st.floats(allow_nan=False, allow_infinity=False),
              st.booleans(), st.text(max_size=30)), max_size=8)


@settings(max_examples=150, deadline=None)
@given(values=values, pos=st.integers(min_value=0), bit=st.integers(0, 7))
def test_hypothesis_signed_verifies_and_any_flip_is_refused(
    tmp_path_factory: pytest.TempPathFactory, values: dict[str, object], pos: int, bit: int
) -> None:
    global _KEYS
    if _KEYS is None:
        _KEYS = keypair(tmp_path_factory.mktemp("k"))
    signer, pub = _KEYS
    v = Verifier({"sign-1": TrustedKey(load_public(pub))}, require=True)
    raw = payload(values)
    signed = signer.sign(raw)
    assert v.check(signed) == (raw, "sign-1")
    i = pos % (len(raw) - 1)  # any byte of the signed message but its closing brace
    flipped = signed[:i] + bytes([signed[i] ^ (1 << bit)]) + signed[i + 1:]
    with pytest.raises(ValueError):
        v.check(flipped)


_KEYS: tuple[Signer, Path] | None = None


def test_the_gateway_stores_signed_batches_and_refuses_an_open_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.app import Gateway
    from gateway.cli import main
    from gateway.config import load_config

    conf = tmp_path / "gateway.yaml"
    conf.write_text("version: 1\ngateway: {id: gw1}\nstore: {kind: memory}\n"
                    "health: {enabled: false}\n"
                    "signing: {key_file: sign.key, key_id: gw1-1, algorithm: ecdsa-p256}\n")
    assert main(["certs", "signing-key", "-c", str(conf)]) == 0

    async def one_batch() -> bytes:
        gw = Gateway(load_config(conf))
        await gw.store.append(Batch("gw1", "d", "p@1", 1, {"x": 1}))
        (entry,) = await gw.store.peek(1)
        await gw.store.close()
        return entry.payload

    v = Verifier({"gw1-1": TrustedKey(load_public(tmp_path / "sign.pub.pem"))}, require=True)
    assert v.check(asyncio.run(one_batch()))[1] == "gw1-1"
    (tmp_path / "sign.key").chmod(0o644)
    assert main(["run", "-c", str(conf)]) == 1
    assert "sign.key: the signing key is accessible to other users" in capsys.readouterr().err


def test_a_compact_gateway_signs_its_packs(tmp_path: Path) -> None:
    """Issue 18, item 6: compact packs are signable, so require: true covers them."""
    from gateway.app import Gateway
    from gateway.cli import main
    from gateway.config import load_config

    conf = tmp_path / "gateway.yaml"
    conf.write_text("version: 1\ngateway: {id: gw1}\nstore: {kind: memory}\n"
                    "health: {enabled: false}\nuplink: {mqtt: {encoding: compact}}\n"
                    "signing: {key_file: sign.key, key_id: gw1-1, algorithm: ed25519}\n"
                    "devices: [{id: d, profile: acme/cnc-vmc850, connection: "
                    "{kind: modbus-tcp, host: 192.0.2.10}}]\n")
    assert main(["certs", "signing-key", "-c", str(conf)]) == 0

    async def one_pack() -> bytes:
        gw = Gateway(load_config(conf))
        await gw.store.append(Batch("gw1", "d", "acme/cnc-vmc850@1.2", 1,
                                    {"spindle_speed": 1}))
        entries = await gw.store.peek(1)
        await gw.store.close()
        assert gw.uplink is not None
        ((topic, pack),) = gw.uplink.transport.encode(entries, False, False)  # type: ignore[misc]
        assert topic == "edgegw/gw1/pack"
        return pack

    v = Verifier({"gw1-1": TrustedKey(load_public(tmp_path / "sign.pub.pem"))}, require=True)
    pack, kid = v.check_pack(asyncio.run(one_pack()))
    assert kid == "gw1-1" and pack[2] & 2 == 0  # verified, and the flag is off again


def test_a_high_s_ecdsa_signature_is_refused(tmp_path: Path) -> None:
    """Issue 18, item 16: (r, n - s) verifies as well as (r, s); only low S is accepted,
    and the signer only makes low S."""
    from gateway.crypto.signing import _P256_HALF_N, _P256_N, split

    signer, pub = keypair(tmp_path, "ecdsa-p256")
    v = Verifier({signer.key_id: TrustedKey(load_public(pub))}, require=True)
    for i in range(20):
        signed = signer.sign(payload({"x": i}))
        _, kid, sig = split(signed)  # type: ignore[misc]
        s = int.from_bytes(sig[32:], "big")
        assert s <= _P256_HALF_N
        assert v.check(signed)[1] == kid
        flipped = sig[:32] + (_P256_N - s).to_bytes(32, "big")  # the malleable twin
        forged = signed.replace(_b64(sig), _b64(flipped))
        with pytest.raises(ValueError, match="bad signature"):
            v.check(forged)


def _b64(b: bytes) -> bytes:
    import base64

    return base64.urlsafe_b64encode(b).rstrip(b"=")


def test_a_trusted_key_must_list_its_gateways_or_say_any(tmp_path: Path) -> None:
    from gateway.ingest.config import IngestConfig

    base = {"sink": {"kind": "influxdb-v1", "url": "http://127.0.0.1:8086",
                     "database": "edgegw"}}
    with pytest.raises(ValueError, match="gateways"):
        IngestConfig.model_validate({**base, "signatures": {"keys": {
            "k1": {"public_key": "k1.pub.pem"}}}})
    fleet = IngestConfig.model_validate({**base, "signatures": {"keys": {
        "k1": {"public_key": "k1.pub.pem", "gateways": "any"}}}})
    assert fleet.signatures is not None and fleet.signatures.keys["k1"].allowed() is None
