"""Bad input, tried on purpose (hypothesis): config files, Modbus responses off the
wire, MQTT payloads into the ingest, OPC UA values of unexpected types. Nothing may
raise anything but the project's own, handled errors."""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.base import DriverContext
from drivers.modbus.driver import ModbusDriver
from drivers.opcua.values import to_value
from gateway.config import load_config
from gateway.errors import ConfigError, DeviceUnreachable
from gateway.influx.lineproto import PayloadError, batch_lines
from gateway.wire.encode import decode_batch
from tests.helpers import device, tcp

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                    st.floats(allow_nan=True), st.text(max_size=20))
values = st.recursive(scalars, lambda c: st.one_of(
    st.lists(c, max_size=4), st.dictionaries(st.text(max_size=10), c, max_size=4)),
    max_leaves=12)
KEYS = ["gateway", "id", "uplink", "mqtt", "host", "port", "devices", "profile",
        "connection", "kind", "modbus-tcp", "opcua", "serial", "endpoint", "store", "policy",
        "pipeline", "heartbeat", "identifiers", "node", "url", "health", "writes", "poll"]
config_like = st.recursive(
    st.one_of(scalars, st.sampled_from(KEYS)),
    lambda c: st.one_of(st.lists(c, max_size=4),
                        st.dictionaries(st.sampled_from(KEYS), c, max_size=5)),
    max_leaves=20)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=config_like)
def test_config_files_fail_only_with_config_errors(tmp_path: Path, doc: Any) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(doc))
    problems: list[str] = []
    try:
        load_config(path)
    except ConfigError as exc:
        problems = exc.lines()
    # either it is a (surprisingly) valid config, or every problem names the file
    assert all(str(path) in line for line in problems)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200))
def test_config_bytes_fail_only_with_config_errors(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_bytes(raw)
    with contextlib.suppress(ConfigError):
        load_config(path)


@settings(max_examples=500, deadline=None)
@given(doc=st.one_of(values, st.dictionaries(
    st.sampled_from(["v", "gw", "dev", "prof", "seq", "ts", "p", "q", "ids", "st", "state",
                     "err", "grp"]), values, max_size=13)))
def test_ingest_payloads_fail_only_with_payload_errors(doc: Any) -> None:
    payload = json.dumps(doc).encode()  # also big integers and NaN, as a sender may
    try:
        lines = batch_lines(decode_batch(payload))
    except (PayloadError, ValueError):
        return
    assert all(isinstance(x, str) and "\n" not in x for x in lines)


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=120))
def test_ingest_raw_bytes(raw: bytes) -> None:
    with contextlib.suppress(PayloadError, ValueError):
        batch_lines(decode_batch(raw))


@given(v=st.one_of(values, st.binary(), st.dates(), st.complex_numbers(), st.sets(scalars)))
def test_opcua_values_of_unexpected_types(v: Any) -> None:
    why = ""
    try:
        to_value(v)
    except TypeError as exc:
        why = str(exc)
    assert not why or "unsupported value type" in why or "not supported" in why \
        or "multi-dimensional" in why


# -- Modbus responses off the wire -------------------------------------------------------
def _answers() -> st.SearchStrategy[bytes | str]:
    """What a broken device sends back for one request (tid: the request's)."""
    return st.one_of(
        st.binary(min_size=0, max_size=30),                      # line noise
        st.just("wrong-tid"), st.just("short"), st.just("long"),
        st.just("bad-length"), st.just("wrong-function"), st.just("exception"),
        st.just("silence"),
    )


def _respond(req: bytes, how: bytes | str, rng_bytes: bytes = b"\x01\x02") -> bytes:
    tid, _, _, unit, fc = struct.unpack(">HHHBB", req[:8])
    count = struct.unpack(">H", req[10:12])[0]
    good = bytes([fc, 2 * count]) + b"\x00\x07" * count

    def mbap(pdu: bytes, t: int = tid, length: int | None = None) -> bytes:
        return struct.pack(">HHHB", t, 0, len(pdu) + 1 if length is None else length,
                           unit) + pdu

    if isinstance(how, bytes):
        return how
    return {
        "wrong-tid": mbap(good, (tid + 1) & 0xFFFF),
        "short": mbap(good[: max(2, len(good) // 2)]),
        "long": mbap(good + b"\xff\xff"),
        "bad-length": mbap(good, length=300),
        "wrong-function": mbap(bytes([fc ^ 0x05]) + good[1:]),
        "exception": mbap(bytes([fc | 0x80, 2])),
        "silence": b"",
    }[how]


@pytest.mark.component
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=st.lists(_answers(), min_size=1, max_size=3))
def test_modbus_responses_never_crash_the_driver(script: list[bytes | str]) -> None:
    async def run() -> None:
        answers = list(script)

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while answers:
                    req = await reader.readexactly(12)
                    out = _respond(req, answers.pop(0))
                    if out:
                        writer.write(out)
                        await writer.drain()
                await reader.read()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        dev = device("d", "acme/cnc-vmc850", tcp(port, timeout=0.2))
        drv = ModbusDriver(dev, DriverContext())
        points = tuple(p for p in dev.profile.expanded_points()
                       if getattr(p, "table", "") == "holding")[:3]
        try:
            await drv.connect()
            for _ in range(len(script)):
                try:
                    readings = await drv.read(points)
                except DeviceUnreachable:
                    await drv.close()
                    try:
                        await drv.connect()
                    except DeviceUnreachable:
                        break
                    continue
                for r in readings:
                    assert len(r.values) == len(r.points)
                    assert r.error is not None or all(v is not None for v in r.values)
        finally:
            await drv.close()
            server.close()
            await server.wait_closed()

    asyncio.run(run())
