"""The gateway's MQTT 3.1.1 client (gateway/uplink/mqttwire.py): packet encoding, reading
packets however the bytes arrive, and against brokers nobody here wrote: mosquitto
(passwords, the will), amqtt (a broker that speaks only 3.1.1) and a broker that stops
answering."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.uplink.mqttwire import (
    PUBACK,
    MqttClient,
    MqttError,
    Will,
    _length,
    connect_packet,
    publish_packet,
    remaining_length,
)
from tests.support.servers import Amqtt, Mosquitto, free_port


@given(st.integers(min_value=0, max_value=268_435_455))
def test_remaining_length_round_trips(n: int) -> None:
    enc = remaining_length(n)
    assert 1 <= len(enc) <= 4
    assert _length(bytearray(enc), 0, len(enc)) == (n, len(enc))
    assert _length(bytearray(enc[:-1]), 0, len(enc) - 1) == (-1, 0)  # not all here yet


def test_packets_as_the_standard_lays_them_out() -> None:
    # 3.1.2: "MQTT", level 4, flags: user, password, will retain, will QoS 1, will, clean
    pkt = connect_packet("gw", 30, True, Will("s", b"x", 1, True), "u", "p")
    assert pkt[:2] == b"\x10\x1a"  # 10 bytes of variable header, 16 of payload
    assert pkt[2:10] == b"\x00\x04MQTT\x04" + bytes((0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02,))
    assert pkt[10:12] == b"\x00\x1e"
    assert pkt[12:] == b"\x00\x02gw\x00\x01s\x00\x01x\x00\x01u\x00\x01p"
    assert publish_packet(b"\x00\x01t", b"ab", 1, False, 7) == b"\x32\x07\x00\x01t\x00\x07ab"
    assert publish_packet(b"\x00\x01t", b"ab", 0, True, 0) == b"\x31\x05\x00\x01tab"


class _Sink(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.sent = bytearray()
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.sent += data

    def is_closing(self) -> bool:
        return self.closing

    def abort(self) -> None:
        self.closing = True


async def test_pubacks_however_the_bytes_arrive() -> None:
    """PUBACKs cut anywhere, several in one read, a PINGRESP and a long remaining length
    between them: every publish is told once, in any order."""
    c = MqttClient(keepalive=30)
    c.connection_made(_Sink())
    told: list[tuple[int, BaseException | None]] = []
    for i in range(5):
        c.publish_nowait("t", b"x" * 200, 1, lambda e, i=i: told.append((i, e)))
    incoming = b"\x30" + remaining_length(2 + 1 + 200) + b"\x00\x01t" + b"y" * 200
    stream = b"".join(bytes((PUBACK, 2)) + struct.pack(">H", pid) for pid in (2, 1)) \
        + b"\xd0\x00" + incoming + b"".join(bytes((PUBACK, 2)) + struct.pack(">H", pid)
                                          for pid in (3, 5, 4))
    for b in stream:
        c.data_received(bytes((b,)))
    assert sorted(told) == [(i, None) for i in range(5)]
    assert c.messages.get_nowait().payload == b"y" * 200
    c.data_received(bytes((PUBACK, 2, 0, 9)))  # an unknown packet id: ignored
    assert len(told) == 5


async def test_a_lost_connection_tells_every_waiting_publish() -> None:
    c = MqttClient(keepalive=30)
    c.connection_made(_Sink())
    told: list[BaseException | None] = []
    for _ in range(3):
        c.publish_nowait("t", b"x", 1, told.append)
    c.connection_lost(ConnectionResetError("reset by peer"))
    assert len(told) == 3 and all(isinstance(e, MqttError) and "reset by peer" in str(e)
                                  for e in told)
    c.publish_nowait("t", b"x", 1, told.append)  # after the loss: told at once
    assert len(told) == 4
    with pytest.raises(MqttError):
        await c.watch()


@pytest.fixture
def auth_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    m = Mosquitto(free_port(), tmp_path, users={"gw": "gw-pw", "sub": "sub-pw"})
    m.start()
    yield m
    m.stop()


@pytest.mark.component
async def test_mosquitto_password_will_and_refusal(auth_broker: Mosquitto) -> None:
    with pytest.raises(MqttError, match=r"refused the connection: 5 \(not authorised\)"):
        await MqttClient.open("127.0.0.1", auth_broker.port, client_id="x",
                              username="gw", password="wrong")
    async with aiomqtt.Client("127.0.0.1", auth_broker.port, username="sub",
                              password="sub-pw") as sub:
        await sub.subscribe("gw/#", qos=1)
        c = await MqttClient.open("127.0.0.1", auth_broker.port, client_id="gw1",
                                  username="gw", password="gw-pw",
                                  will=Will("gw/status", b"lost", 1, False))
        await c.publish("gw/a", b"1")
        c.abort()  # no DISCONNECT: the broker publishes the will
        got = []
        async with asyncio.timeout(10):
            async for m in sub.messages:
                got.append((str(m.topic), m.payload))
                if len(got) == 2:
                    break
        assert got == [("gw/a", b"1"), ("gw/status", b"lost")]


@pytest.mark.component
async def test_amqtt_a_3_1_1_only_broker(tmp_path: Path) -> None:
    b = Amqtt(free_port(), tmp_path, users={"gw": "gw-pw"})
    b.start()
    try:
        c = await MqttClient.open("127.0.0.1", b.port, client_id="gw", username="gw",
                                  password="gw-pw")
        assert await c.subscribe("cmd/#", qos=1) == 1
        done: list[BaseException | None] = []
        for i in range(200):
            c.publish_nowait(f"data/{i % 7}", b"%d" % i, 1, done.append)
        await c.publish("cmd/x", b"hello")  # to ourselves, through the broker
        async with asyncio.timeout(10):
            msg = await c.messages.get()
        assert (msg.topic, msg.payload) == ("cmd/x", b"hello")
        assert done == [None] * 200
        await c.disconnect()
    finally:
        b.stop()


@pytest.mark.component
async def test_a_broker_that_stops_answering_is_given_up() -> None:
    """CONNACK, then silence (a half-open connection over a dead radio link): the
    publishes' acknowledgements never come, and watch() says so within the ack timeout."""
    async def hung(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.read(1024)
        w.write(b"\x20\x02\x00\x00")
        await asyncio.sleep(30)

    server = await asyncio.start_server(hung, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        c = await MqttClient.open("127.0.0.1", port, client_id="gw", within=0.6)
        told: list[BaseException | None] = []
        c.publish_nowait("t", b"x", 1, told.append)
        with pytest.raises(MqttError, match=r"no PUBACK for 1 s \(1 publish"):
            async with asyncio.timeout(5):
                await c.watch()
        assert len(told) == 1 and isinstance(told[0], MqttError)
    finally:
        server.close()
