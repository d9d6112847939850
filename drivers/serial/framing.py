"""Frames out of a serial byte stream, checksums verified; and frames for the simulator.

:class:`Framer` is fed whatever bytes arrive (any split, any noise) and returns the
payloads of complete frames whose checksum holds. A frame with a bad checksum, an
overlong frame or bytes outside any frame are counted (``Framer.counts``) and dropped;
the stream resynchronises at the next delimiter (line framing: the next terminator;
delimited: the next start byte; fixed: one byte further). The payload is what is
between the delimiters, without length byte and checksum.

:func:`encode_frame` is the inverse, used by the simulator and by the tests.
"""

from __future__ import annotations

from collections import Counter

from gateway.profiles import Checksum, Framing

TERMINATORS = {"CR": b"\r", "LF": b"\n", "CRLF": b"\r\n"}


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS (polynomial 0xA001 reflected, initial 0xFFFF)."""
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def checksum_value(kind: str, data: bytes) -> int:
    if kind == "lrc":
        return (-sum(data)) & 0xFF
    if kind == "sum":
        return sum(data) & 0xFF
    if kind == "xor":
        x = 0
        for b in data:
            x ^= b
        return x
    return crc16(data)


def checksum_bytes(cs: Checksum, data: bytes) -> bytes:
    """The checksum as it appears on the wire (after ``cs.separator`` for hex)."""
    v = checksum_value(cs.kind, data)
    if cs.encoding == "hex":
        digits = 4 if cs.kind == "crc16" else 2
        return cs.separator.encode("latin-1") + f"{v:0{digits}X}".encode("ascii")
    return v.to_bytes(2, "little") if cs.kind == "crc16" else bytes([v])


def checksum_size(cs: Checksum) -> int:
    if cs.encoding == "hex":
        return len(cs.separator.encode("latin-1")) + (4 if cs.kind == "crc16" else 2)
    return 2 if cs.kind == "crc16" else 1


def encode_frame(f: Framing, payload: bytes) -> bytes:
    """A complete frame around ``payload`` (the simulator's side)."""
    body = payload
    if f.kind == "delimited" and f.length_byte:
        body = bytes([len(payload)]) + payload
    if f.checksum is not None:
        body += checksum_bytes(f.checksum, body)
    if f.kind == "line":
        return body + TERMINATORS[f.terminator]
    if f.kind == "fixed":
        return body
    assert f.start is not None
    return bytes([f.start]) + body + (bytes([f.end]) if f.end is not None else b"")


class Framer:
    """Incremental deframer for one device's byte stream."""

    def __init__(self, f: Framing) -> None:
        self.f = f
        self.buf = bytearray()
        self.counts: Counter[str] = Counter()  # bad_checksum, overlong, noise (bytes)
        self._cs = checksum_size(f.checksum) if f.checksum else 0
        self._term = TERMINATORS[f.terminator]
        self._skip_to_terminator = False  # line: an overlong line's tail is still coming
        self._sliding = False  # fixed: looking for the frame boundary again

    def feed(self, data: bytes) -> list[bytes]:
        self.buf += data
        if self.f.kind == "line":
            return self._lines()
        if self.f.kind == "fixed":
            return self._fixed()
        return self._delimited()

    def reset(self) -> None:
        self.buf.clear()

    # -- checks --------------------------------------------------------------------------
    def _check(self, body: bytes) -> bytes | None:
        """``body`` without its checksum, or None when the checksum fails."""
        cs = self.f.checksum
        if cs is None:
            return body
        if len(body) < self._cs:
            return None
        data, got = body[: -self._cs], body[-self._cs :]
        if checksum_bytes(cs, data).upper() != got.upper():
            return None
        return data

    def _verified(self, body: bytes) -> bytes | None:
        checked = self._check(body)
        if checked is None:
            self.counts["bad_checksum"] += 1
        return checked

    # -- framings ------------------------------------------------------------------------
    def _lines(self) -> list[bytes]:
        out: list[bytes] = []
        term, limit = self._term, self.f.max_length
        while True:
            i = self.buf.find(term)
            if i < 0:
                if len(self.buf) > limit:  # no terminator in sight: drop, resync later
                    self.counts["overlong"] += 1
                    self.counts["noise"] += len(self.buf)
                    self.buf.clear()
                    self._skip_to_terminator = True
                return out
            line = bytes(self.buf[:i])
            del self.buf[: i + len(term)]
            if self._skip_to_terminator:
                self._skip_to_terminator = False
                self.counts["noise"] += len(line)
                continue
            if self.f.terminator == "CRLF":
                line = line.replace(b"\r", b"")  # a stray CR never belongs to the text
            elif self.f.terminator == "LF":
                line = line.rstrip(b"\r")
            if not line.strip():
                continue
            if len(line) > limit:
                self.counts["overlong"] += 1
                self.counts["noise"] += len(line)
                continue
            payload = self._verified(line)
            if payload is not None:
                out.append(payload)
        return out

    def _fixed(self) -> list[bytes]:
        out: list[bytes] = []
        n = self.f.length or 1
        while len(self.buf) >= n:
            payload = self._check(bytes(self.buf[:n]))
            if payload is None:  # slide one byte: the frame boundary is elsewhere
                if not self._sliding:
                    self.counts["bad_checksum"] += 1
                    self._sliding = True
                self.counts["noise"] += 1
                del self.buf[:1]
                continue
            self._sliding = False
            out.append(payload)
            del self.buf[:n]
        return out

    def _delimited(self) -> list[bytes]:
        out: list[bytes] = []
        f = self.f
        assert f.start is not None
        start, end, limit = f.start, f.end, f.max_length
        while True:
            i = self.buf.find(bytes([start]))
            if i < 0:
                self.counts["noise"] += len(self.buf)
                self.buf.clear()
                return out
            if i:
                self.counts["noise"] += i
                del self.buf[:i]
            if f.length_byte:
                if len(self.buf) < 2:
                    return out
                n = self.buf[1]
                total = 2 + n + self._cs + (1 if end is not None else 0)
                if len(self.buf) < total:
                    return out
                frame = bytes(self.buf[1:total])
                if end is not None and frame[-1] != end:
                    self.counts["bad_frame"] += 1
                    del self.buf[:1]
                    continue
                body = frame[:-1] if end is not None else frame
                del self.buf[:total]
                checked = self._verified(body)
                if checked is not None:
                    out.append(checked[1:])
                continue
            assert end is not None
            j = self.buf.find(bytes([end]), 1)
            if j < 0:
                if len(self.buf) > limit:
                    self.counts["overlong"] += 1
                    self.counts["noise"] += len(self.buf)
                    self.buf.clear()
                return out
            nxt = self.buf.find(bytes([start]), 1, j)
            if nxt > 0:  # a new start before the end: the first frame was cut short
                self.counts["truncated"] += 1
                self.counts["noise"] += nxt
                del self.buf[:nxt]
                continue
            body = bytes(self.buf[1:j])
            del self.buf[: j + 1]
            if len(body) > limit:
                self.counts["overlong"] += 1
                self.counts["noise"] += len(body) + 2
                continue
            checked = self._verified(body)
            if checked is not None:
                out.append(checked)
