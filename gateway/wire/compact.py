"""The compact binary payload (v2): a batch as a few bytes per reported point, and packs
of many batches (several poll cycles and devices) in one compressed MQTT message.

Byte by byte in docs/wire-format.md ("Compact format"). In short:

- a **record** is one batch: sequence number and time as varints, device and profile as
  strings, a 4-byte schema hash, then each reported point as its *index* in the
  profile's point list (delta to the previous index) and a tagged value. Floats are sent
  as the decimal the gateway would print (``123.4`` is mantissa 1234, 1 decimal), so they
  decode to exactly the same float; ints as zigzag varints.
- a **pack** is ``0xED 0x02 flags`` and a body holding records; flag 1 means the body is
  zlib-compressed. Records of the same device in one pack repeat most bytes, which zlib
  removes.

A record decodes to the same document as the JSON v1 payload (``decode_batch``), so
the ingest and the line protocol do not care which format arrived. The backend maps
indexes back to names with the same profile (``vendor/model`` at ``version``); the
schema hash (CRC-32 of the point names) catches a profile that changed without a new
version, and such a record is refused with that reason, not misread.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.errors import DataError
from gateway.model import Batch, Quality, Value

RECORD = b"\xec\x02"
PACK = b"\xed\x02"
F_ZLIB = 1
F_SIG = 2  # signed: key id and signature follow the flags (docs/wire-format.md)
_F_GRP, _F_STATE, _F_IDS, _F_QUAL, _F_ERR, _F_ST = 1, 2, 4, 8, 16, 32
T_NULL, T_FALSE, T_TRUE, T_INT, T_F64, T_STR, T_ARR = 0, 1, 2, 3, 4, 5, 6
T_DEC = 0x10  # 0x10 + e: a float with e decimals (0..15), zigzag mantissa
_QUALITY = ("good", "uncertain", "bad")
_F64 = struct.Struct("<d")
_U32 = struct.Struct("<I")


class CompactError(DataError):
    """A record or pack that cannot be decoded (or a schema that does not match)."""


@dataclass(frozen=True, slots=True)
class Schema:
    """A profile's point list: index <-> name, and its hash."""

    profile: str  # vendor/model@version, as in the payload's prof
    names: tuple[str, ...]
    index: dict[str, int]
    hash: int

    @classmethod
    def of(cls, profile: str, names: Sequence[str]) -> Schema:
        names = tuple(names)
        return cls(profile, names, {n: i for i, n in enumerate(names)},
                   zlib.crc32("\n".join(names).encode()))


# -- varints -------------------------------------------------------------------------------
def _uv(out: bytearray, n: int) -> None:
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _zz(out: bytearray, n: int) -> None:
    _uv(out, (n << 1) if n >= 0 else ((-n) << 1) - 1)


def _s(out: bytearray, s: str) -> None:
    b = s.encode()
    _uv(out, len(b))
    out += b


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos

    def uv(self) -> int:
        buf, pos = self.buf, self.pos
        shift = n = 0
        while True:
            try:
                b = buf[pos]
            except IndexError:
                raise CompactError("truncated varint") from None
            pos += 1
            n |= (b & 0x7F) << shift
            if b < 0x80:
                self.pos = pos
                return n
            shift += 7
            if shift > 630:  # no value of ours needs 90 bytes
                raise CompactError("varint too long")

    def zz(self) -> int:
        n = self.uv()
        return (n >> 1) if not n & 1 else -((n + 1) >> 1)

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.buf):
            raise CompactError("truncated")
        b = self.buf[self.pos:end]
        self.pos = end
        return b

    def s(self) -> str:
        try:
            return self.take(self.uv()).decode()
        except UnicodeDecodeError as exc:
            raise CompactError(f"bad text: {exc}") from None

    def u8(self) -> int:
        return self.take(1)[0]

    def count(self, each: int, what: str) -> int:
        """A count of items that take at least ``each`` bytes each: bounded by the bytes
        actually left, so a forged count cannot make a loop run longer than the data."""
        n = self.uv()
        if n * each > len(self.buf) - self.pos:
            raise CompactError(f"{n} {what} claimed in {len(self.buf) - self.pos} bytes")
        return n


# -- values --------------------------------------------------------------------------------
def _value(out: bytearray, v: Value) -> None:
    if v is None:
        out.append(T_NULL)
    elif v is True:
        out.append(T_TRUE)
    elif v is False:
        out.append(T_FALSE)
    elif isinstance(v, int):
        out.append(T_INT)
        _zz(out, v)
    elif isinstance(v, float):
        r = repr(v)
        dot = r.find(".")
        if dot < 0 or "e" in r or len(r) - dot - 1 > 15 or r == "-0.0":  # inf, 1e+20 ...
            out.append(T_F64)
            out += _F64.pack(v)
        else:
            e = len(r) - dot - 1
            if r.endswith(".0"):
                e = 0
                r = r[:-2]
            out.append(T_DEC + e)
            _zz(out, int(r.replace(".", "")))
    elif isinstance(v, str):
        out.append(T_STR)
        _s(out, v)
    elif isinstance(v, tuple | list):
        out.append(T_ARR)
        _uv(out, len(v))
        for x in v:
            if isinstance(x, tuple | list):
                raise TypeError("cannot encode an array inside an array")
            _value(out, x)
    else:
        raise TypeError(f"cannot encode a {type(v).__name__}")


def _read_value(r: _Reader) -> Any:
    """A value as JSON decodes it (an array as a list)."""
    t = r.u8()
    if t == T_ARR:
        n = r.uv()
        if n > len(r.buf) - r.pos:  # every element takes at least one byte
            raise CompactError(f"array of {n} elements in a shorter record")
        out = []
        for _ in range(n):
            x = _read_value(r)
            if isinstance(x, list):
                raise CompactError("an array inside an array")
            out.append(x)
        return out
    if t == T_INT:
        return r.zz()
    if t >= T_DEC:
        e = t - T_DEC
        if e > 15:
            raise CompactError(f"unknown value tag {t:#x}")
        return float(f"{r.zz()}e-{e}")
    if t == T_NULL:
        return None
    if t == T_TRUE:
        return True
    if t == T_FALSE:
        return False
    if t == T_F64:
        return float(_F64.unpack(r.take(8))[0])
    if t == T_STR:
        return r.s()
    raise CompactError(f"unknown value tag {t:#x}")


# -- records -------------------------------------------------------------------------------
def encode_record(b: Batch, schema: Schema) -> bytes:
    out = bytearray(RECORD)
    _uv(out, b.seq)
    _uv(out, b.ts_ms)
    _s(out, b.device)
    _s(out, b.profile)
    out += _U32.pack(schema.hash)
    flags = ((_F_GRP if b.group else 0) | (_F_STATE if b.state is not None else 0)
             | (_F_IDS if b.ids else 0) | (_F_QUAL if b.quality else 0)
             | (_F_ERR if b.error is not None else 0) | (_F_ST if b.src else 0))
    out.append(flags)
    if b.group:
        _s(out, b.group)
    if b.state is not None:
        _s(out, b.state)
    if b.ids:
        _uv(out, len(b.ids))
        for kind, code in b.ids.items():
            _s(out, kind)
            _s(out, code)
    index = schema.index
    items = sorted((index[k], v) for k, v in b.values.items())
    _uv(out, len(items))
    prev = -1
    for i, v in items:
        _uv(out, i - prev - 1)
        prev = i
        _value(out, v)
    if b.quality:
        _uv(out, len(b.quality))
        for k, (q, reason) in b.quality.items():
            _uv(out, index[k])
            out.append(int(q))
            _s(out, reason)
    if b.error is not None:
        _s(out, b.error)
    if b.src:
        _uv(out, len(b.src))
        for k, t in b.src.items():
            _uv(out, index[k])
            _zz(out, t - b.ts_ms)
    return bytes(out)


class Schemas:
    """Profile id -> Schema: what the backend uses to map indexes back to names."""

    def __init__(self, schemas: Iterable[Schema] = ()) -> None:
        from gateway.production.machine import FIELDS  # the gateway's own records

        self._by_profile = {p: Schema.of(p, names) for p, names in FIELDS.items()}
        self._by_profile.update((s.profile, s) for s in schemas)
        self.search: list[Path] = []
        self._missing: set[str] = set()

    def add(self, schema: Schema) -> None:
        self._by_profile[schema.profile] = schema

    def get(self, profile: str) -> Schema:
        s = self._by_profile.get(profile)
        if s is None and self.search and profile not in self._missing:
            s = self._load(profile)
            if s is None:  # not looked up on disk again (until restart; bounded)
                if len(self._missing) >= 1024:
                    self._missing.clear()
                self._missing.add(profile)
        if s is None:
            raise CompactError(f"unknown profile {profile!r} (give the ingest its profile "
                               "folder: profiles_dir)")
        return s

    def _load(self, profile: str) -> Schema | None:
        from gateway.errors import ConfigError
        from gateway.profiles import find_profile, load_profile_file

        name, _, version = profile.rpartition("@")
        base = name.removesuffix(TRACE_SUFFIX)  # a machine type's product records
        try:
            prof = load_profile_file(find_profile(base, self.search))
        except ConfigError:
            return None
        if prof.version != version:
            raise CompactError(f"profile {base} is version {prof.version} here, the record "
                               f"was made with {version}")
        if base != name:
            if prof.trace is None:
                return None
            s = trace_schema_of(profile, prof)
        else:
            s = schema_of(profile, prof)
        self.add(s)
        return s


def schema_of(profile: str, prof: Any) -> Schema:
    return Schema.of(profile, [p.name for p in prof.expanded_points()])


#: a machine type's product records: profile ``<vendor/model>/trace@<version>``
TRACE_SUFFIX = "/trace"


def trace_schema_of(profile: str, prof: Any) -> Schema:
    """The schema of the product records of a profile with a ``trace:`` section."""
    from gateway.trace.spec import record_fields

    return Schema.of(profile, record_fields(prof.trace))


def decode_record(buf: bytes, gateway: str, schemas: Schemas) -> dict[str, Any]:
    """The record as a JSON v1 document (see gateway.wire.encode.decode_batch)."""
    if buf[:2] != RECORD:
        raise CompactError("not a compact v2 record")
    r = _Reader(buf, 2)
    try:
        seq, ts = r.uv(), r.uv()
        dev, prof = r.s(), r.s()
        (h,) = _U32.unpack(r.take(4))
        schema = schemas.get(prof)
        if schema.hash != h:
            raise CompactError(f"profile {prof} here has other points than the gateway's "
                               "(schema hash differs): update the backend's profile")
        names = schema.names
        flags = r.u8()
        doc: dict[str, Any] = {"v": 1, "gw": gateway, "dev": dev, "prof": prof, "seq": seq,
                               "ts": ts}
        if flags & _F_GRP:
            doc["grp"] = r.s()
        if flags & _F_STATE:
            doc["state"] = r.s()
        if flags & _F_IDS:
            doc["ids"] = {r.s(): r.s() for _ in range(r.count(2, "identifier codes"))}
        values: dict[str, Value] = {}
        i = -1
        for _ in range(r.count(2, "values")):
            i += r.uv() + 1
            values[names[i]] = _read_value(r)
        doc["p"] = values
        if flags & _F_QUAL:
            q: dict[str, list[str]] = {}
            for _ in range(r.count(3, "quality entries")):
                name = names[r.uv()]
                q[name] = [_QUALITY[Quality(r.u8())], r.s()]
            doc["q"] = q
        if flags & _F_ERR:
            doc["err"] = r.s()
        if flags & _F_ST:
            doc["st"] = {names[r.uv()]: ts + r.zz()
                         for _ in range(r.count(2, "source timestamps"))}
    except (IndexError, ValueError) as exc:  # an index beyond the schema, a bad quality
        if isinstance(exc, CompactError):
            raise
        raise CompactError(f"malformed record: {exc}") from None
    if r.pos != len(buf):
        raise CompactError(f"{len(buf) - r.pos} trailing byte(s) after the record")
    return doc


# -- packs ---------------------------------------------------------------------------------
def encode_pack(records: Sequence[bytes], level: int = 6) -> bytes:
    """Records in one message; zlib when ``level`` > 0 and it is smaller."""
    body = bytearray()
    _uv(body, len(records))
    for rec in records:
        _uv(body, len(rec))
        body += rec
    if level > 0:
        z = zlib.compress(bytes(body), level)
        if len(z) < len(body):
            return PACK + bytes([F_ZLIB]) + z
    return PACK + b"\x00" + bytes(body)


#: the smallest record: magic, seq, ts, device, profile, schema hash, flags, count
MIN_RECORD = 12
#: records in one pack, at most (a gateway's pack holds max_bytes <= 16 MiB of them)
MAX_RECORDS = 100_000
MAX_BODY = (16 << 20) + 1024


def decode_pack(payload: bytes, max_body: int = MAX_BODY) -> list[bytes]:
    """The records of a pack (each still encoded); raises CompactError. Every count and
    length is bounded by the bytes actually present (and the body by ``max_body``
    decompressed), so a forged pack costs at most one pass over its own bytes."""
    if payload[:2] != PACK or len(payload) < 3:
        raise CompactError("not a compact v2 pack")
    flags = payload[2]
    body = payload[3:]
    if flags & F_SIG:
        raise CompactError("a signed pack: verify it first (gateway.wire.compact.split_pack)")
    if flags & F_ZLIB:
        d = zlib.decompressobj()
        try:
            body = d.decompress(body, max_body)
        except zlib.error as exc:
            raise CompactError(f"bad zlib body: {exc}") from None
        if d.unconsumed_tail:
            raise CompactError(f"pack body larger than {max_body} bytes")
    elif flags:
        raise CompactError(f"unknown pack flags {flags:#x}")
    r = _Reader(body)
    n = r.count(MIN_RECORD + 1, "records")
    if n > MAX_RECORDS:
        raise CompactError(f"{n} records in one pack (at most {MAX_RECORDS})")
    out = []
    for _ in range(n):
        size = r.uv()
        if size < MIN_RECORD:
            raise CompactError(f"a record of {size} bytes (at least {MIN_RECORD})")
        out.append(r.take(size))
    if r.pos != len(body):
        raise CompactError("trailing bytes after the pack's records")
    return out


def sign_pack(pack: bytes, key_id: str, signature: Callable[[bytes], bytes]) -> bytes:
    """The pack signed: flag F_SIG, then ``len(key id) | key id | len(sig) | sig``
    before the body. The signed message is the pack with F_SIG set and without that
    block (header and body, byte for byte), so the flag cannot be cleared unnoticed."""
    flags = bytes([pack[2] | F_SIG])
    kid = key_id.encode("ascii")
    sig = signature(PACK + flags + pack[3:])
    return PACK + flags + bytes([len(kid)]) + kid + bytes([len(sig)]) + sig + pack[3:]


def split_pack(payload: bytes) -> tuple[bytes, bytes, str, bytes] | None:
    """``(unsigned pack, signed message, key id, signature)``, or None when the pack is
    not signed; CompactError when the signature block is malformed."""
    if payload[:2] != PACK or len(payload) < 3 or not payload[2] & F_SIG:
        return None
    r = _Reader(payload, 3)
    kid = r.take(r.u8())
    sig = r.take(r.u8())
    body = payload[r.pos:]
    flags = payload[2]
    if not kid:
        raise CompactError("a signed pack without a key id")
    return (PACK + bytes([flags & ~F_SIG]) + body, PACK + bytes([flags]) + body,
            kid.decode("ascii", "replace"), sig)


def pack_topic(prefix: str, gateway: str) -> str:
    return f"{prefix}/{gateway}/pack"
