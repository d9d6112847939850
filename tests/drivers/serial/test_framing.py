"""Checksums against published vectors; the framer never crashes and never yields a
frame whose checksum is wrong, whatever bytes arrive (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.serial.framing import Framer, checksum_bytes, checksum_value, encode_frame
from gateway.profiles import Checksum, Framing


def test_crc16_modbus_vector() -> None:
    # read holding registers 0..9 of unit 1: the CRC on the wire is C5 CD
    frame = bytes.fromhex("01030000000A")
    assert checksum_bytes(Checksum(kind="crc16"), frame) == bytes.fromhex("C5CD")


def test_lrc_modbus_ascii_vector() -> None:
    # ":0103006B0003" + LRC 8E (Modbus over serial line spec, 6.2.1)
    assert checksum_value("lrc", bytes.fromhex("0103006B0003")) == 0x8E


@pytest.mark.parametrize(("kind", "data", "value"), [
    ("xor", b"GPGLL,5300.97914,N,00259.98174,E,125926,A", 0x28),  # an NMEA sentence
    ("sum", b"\x01\x02\xff", 0x02),
])
def test_xor_and_sum(kind: str, data: bytes, value: int) -> None:
    assert checksum_value(kind, data) == value


FRAMINGS = {
    "line-xor-hex": Framing(kind="line", terminator="CRLF", max_length=40,
                            checksum=Checksum(kind="xor", encoding="hex", separator="*")),
    "line-lrc": Framing(kind="line", terminator="CR", max_length=40,
                        checksum=Checksum(kind="lrc", encoding="hex")),
    "stx-len-crc": Framing(kind="delimited", start=2, end=3, length_byte=True,
                           checksum=Checksum(kind="crc16"), max_length=40),
    "stx-etx-sum": Framing(kind="delimited", start=2, end=3, checksum=Checksum(kind="sum"),
                           max_length=40),
    "fixed-crc": Framing(kind="fixed", length=8, checksum=Checksum(kind="crc16")),
}


def _good(f: Framing, payload: bytes) -> bool:
    """Whether ``payload`` is a valid payload for the framing (re-encodes and re-checks)."""
    return Framer(f).feed(encode_frame(f, payload)) == [payload]


@pytest.mark.parametrize("name", FRAMINGS)
@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), cut=st.integers(min_value=1, max_value=17))
def test_random_bytes_never_crash_nor_pass_a_bad_checksum(name: str, data: bytes,
                                                          cut: int) -> None:
    f = FRAMINGS[name]
    framer = Framer(f)
    out = []
    for i in range(0, len(data), cut):
        out += framer.feed(data[i : i + cut])
    for payload in out:
        # every frame that came out carried a checksum that matches its content
        assert _good(f, payload)
        assert len(payload) <= f.max_length


@pytest.mark.parametrize("name", FRAMINGS)
@settings(max_examples=200, deadline=None)
@given(payloads=st.lists(st.binary(min_size=1, max_size=6), min_size=1, max_size=5),
       flip=st.integers(min_value=0, max_value=10_000))
def test_a_damaged_frame_is_dropped_and_lines_resynchronise(
    name: str, payloads: list[bytes], flip: int
) -> None:
    f = FRAMINGS[name]
    if f.kind == "line":  # text lines: no terminator bytes inside a payload
        payloads = [p.replace(b"\r", b"a").replace(b"\n", b"b") for p in payloads]
    if f.kind == "fixed":
        payloads = [(p * 6)[:6] for p in payloads]
    frames = [encode_frame(f, p) for p in payloads]
    # one frame gets one bit flipped somewhere: it never comes out as a valid frame
    k = flip % len(frames)
    victim = bytearray(frames[k])
    victim[flip % len(victim)] ^= 1 << (flip % 8)
    got = Framer(f).feed(b"".join(frames[:k]) + bytes(victim) + b"".join(frames[k + 1 :]))
    for payload in got:
        assert _good(f, payload)
    term = frames[k][-2:] if f.terminator == "CRLF" else frames[k][-1:]
    if f.kind == "line" and bytes(victim).endswith(term) and \
            not any(c in victim[: -len(term)] for c in b"\r\n"):
        # text lines resynchronise at the next terminator: every other line survives
        # (unless the flip hit the terminator itself, which merges two lines)
        intact = [p for i, p in enumerate(payloads) if i != k]
        # (a flip of a hex digit's case bit leaves the frame valid and unchanged)
        assert got in (intact, payloads)
    # binary STX framing has no byte stuffing: after a damaged start byte, a 0x02 inside
    # the data can be taken for a start and cost the next frame too; it is still never
    # passed on with a wrong checksum
