"""The lean request channel (drivers/opcua/fastchannel.py): against asyncua's own server
(component: its requests interleave with asyncua's on one connection, faults raise as
asyncua raises them, answers that arrive together or in pieces), and its framing rules
on a protocol fed by hand (unit: what it does not take goes to asyncua's parser)."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asyncua import Client, Server, ua
from asyncua.client.ua_client import UASocketProtocol

from drivers.opcua import fastchannel, fastdecode, fastwire
from drivers.opcua.read import _READ_REQUEST, read_chunk
from drivers.opcua.session import _probe_when_quiet

N = 40


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _server(values: list[float]) -> tuple[Server, str, list[Any]]:
    """asyncua's server (not started yet), its URL, and one Double variable per value."""
    server = Server()
    await server.init()
    url = f"opc.tcp://127.0.0.1:{_free_port()}/"
    server.set_endpoint(url)
    ns = await server.register_namespace("urn:edgegw:test")
    obj = await server.nodes.objects.add_object(ns, "M")
    nodes = [await obj.add_variable(ns, f"v{i}", ua.Variant(v, ua.VariantType.Double))
             for i, v in enumerate(values)]
    return server, url, nodes


@pytest.fixture
async def server_and_client() -> AsyncIterator[tuple[Server, Client, list[Any]]]:
    server, url, nodes = await _server([i * 1.5 for i in range(N)])
    async with server:
        client = Client(url, timeout=2)
        await client.connect()
        try:
            yield server, client, nodes
        finally:
            await client.disconnect()


def _body(nodes: list[Any]) -> bytes:
    rvs = []
    for n in nodes:
        rv = ua.ReadValueId()
        rv.NodeId = n.nodeid
        rv.AttributeId = ua.AttributeIds.Value
        rvs.append(rv)
    return fastwire.read_body(rvs)


async def test_requests_interleave_with_asyncuas_own(
        server_and_client: tuple[Server, Client, list[Any]]) -> None:
    _, client, nodes = server_and_client
    channel = fastchannel.FastChannel.attach(client)
    assert channel is not None and channel.usable()
    body = _body(nodes)
    to_asyncua: list[bytes] = []
    parse = channel._asyncua_received
    channel._asyncua_received = lambda data: (to_asyncua.append(data), parse(data))[1]
    for round_ in range(30):
        await nodes[round_ % N].write_value(float(round_))
        before = len(to_asyncua)
        chunk = await read_chunk(client, body)  # the lean channel
        assert len(to_asyncua) == before  # answered without asyncua's parser
        assert isinstance(chunk, fastdecode.Columns)
        assert chunk.values[round_ % N] == float(round_)
        # asyncua's own request on the same connection, between ours
        n = len(to_asyncua)
        assert await client.get_node(nodes[round_ % N].nodeid).read_value() == float(round_)
        assert len(to_asyncua) == n + 1
    assert not channel.ours and not client.uaclient.protocol._callbackmap


async def test_answers_arriving_together(
        server_and_client: tuple[Server, Client, list[Any]]) -> None:
    _, client, nodes = server_and_client
    channel = fastchannel.FastChannel.attach(client)
    assert channel is not None
    seen: list[bytes] = []
    received = channel._received

    def spy(data: bytes) -> None:
        seen.append(data)
        received(data)

    client.uaclient.protocol.data_received = spy  # type: ignore[method-assign]
    bodies = [_body(nodes[i:]) for i in range(20)]
    chunks = await asyncio.gather(*(read_chunk(client, b) for b in bodies))
    for i, chunk in enumerate(chunks):
        assert isinstance(chunk, fastdecode.Columns)
        assert chunk.values == [j * 1.5 for j in range(i, N)]
    assert not channel.ours


async def test_a_service_fault_raises_its_status(
        server_and_client: tuple[Server, Client, list[Any]]) -> None:
    _, client, _ = server_and_client
    with pytest.raises(ua.UaStatusCodeError) as err:
        await fastchannel.request(client, ua.ObjectIds.PublishRequest_Encoding_DefaultBinary,
                                  fastwire.publish_body([]), wait=0)
    assert err.value.code == ua.StatusCodes.BadNoSubscription
    # the connection goes on
    assert await client.nodes.server_state.read_value() == ua.ServerState.Running


async def test_a_request_too_large_for_one_chunk_goes_through_asyncua(
        server_and_client: tuple[Server, Client, list[Any]]) -> None:
    _, client, nodes = server_and_client
    channel = fastchannel.FastChannel.attach(client)
    assert channel is not None
    channel.max_body = 100  # a server with a small receive buffer
    chunk = await read_chunk(client, _body(nodes))
    assert isinstance(chunk, fastdecode.Columns) and len(chunk.values) == N
    assert not channel.ours


async def test_a_lost_connection_fails_the_waiting_request(
        server_and_client: tuple[Server, Client, list[Any]]) -> None:
    _, client, _ = server_and_client
    protocol = client.uaclient.protocol
    waiting = asyncio.ensure_future(fastchannel.request(
        client, ua.ObjectIds.PublishRequest_Encoding_DefaultBinary, fastwire.publish_body([]),
        wait=0))
    await asyncio.sleep(0)
    protocol.connection_lost(ConnectionResetError("reset by peer"))
    with pytest.raises((ConnectionError, ua.UaStatusCodeError)):
        await waiting


async def test_the_watchdog_probes_only_a_quiet_connection() -> None:
    server = Server()
    await server.init()
    url = f"opc.tcp://127.0.0.1:{_free_port()}/"
    server.set_endpoint(url)
    ns = await server.register_namespace("urn:edgegw:test")
    node = await (await server.nodes.objects.add_object(ns, "M")).add_variable(ns, "v", 1.0)
    async with server:
        client = Client(url, timeout=2, watchdog_intervall=0.3)
        _probe_when_quiet(client)
        await client.connect()
        try:
            probes = 0
            state = client.nodes.server_state
            read = state.read_value

            async def counted() -> Any:
                nonlocal probes
                probes += 1
                return await read()

            state.read_value = counted  # type: ignore[method-assign]
            body = _body([node])
            for _ in range(15):  # 1.5 s of polls every 100 ms: alive, no probe
                await read_chunk(client, body)
                await asyncio.sleep(0.1)
            assert probes == 0
            await asyncio.sleep(1.2)  # quiet: probed at the ticks
            assert probes >= 2
        finally:
            await client.disconnect()


async def test_reads_go_on_across_secure_channel_renewals() -> None:
    """The channel's token is renewed (here every 0.75 s of a 1 s lifetime): answers
    under the new token go through asyncua's parser until it takes the token, then the
    lean channel's again; no read fails and no answer is lost."""
    server, url, (node, other) = await _server([1.0, 2.0])
    async with server:
        client = Client(url, timeout=2)
        client.secure_channel_timeout = 1000
        await client.connect()
        try:
            tokens = set()
            body = _body([node, other])
            for i in range(40):  # 2.8 s
                await node.write_value(float(i))
                chunk = await read_chunk(client, body)
                assert isinstance(chunk, fastdecode.Columns)
                assert chunk.values == [float(i), 2.0]
                tokens.add(client.uaclient.protocol._connection.security_token.TokenId)
                await asyncio.sleep(0.07)
            assert len(tokens) >= 3  # renewed at least twice
            channel = fastchannel.FastChannel.attach(client)
            assert channel is not None and not channel.ours
        finally:
            await client.disconnect()


# -- framing, on a protocol fed by hand ------------------------------------------------------

class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


class _State:
    def __init__(self, protocol: UASocketProtocol) -> None:
        self.uaclient = self
        self.protocol = protocol
        from asyncua.client.ua_client import UaClientState
        self.state = UaClientState.CONNECTED


def _protocol() -> tuple[UASocketProtocol, _Transport, fastchannel.FastChannel]:
    p = UASocketProtocol(timeout=1)
    t = _Transport()
    p.connection_made(t)  # type: ignore[arg-type]
    p._connection.security_token.ChannelId = 7
    p._connection.security_token.TokenId = 3
    ch = fastchannel.FastChannel.attach(_State(p))  # type: ignore[arg-type]
    assert ch is not None
    return p, t, ch


def _answer(req: int, seq: int, body: bytes, channel: int = 7, token: int = 3) -> bytes:
    return struct.pack("<3sBIIIII", b"MSG", ord("F"), 24 + len(body), channel, token, seq,
                       req) + body


async def test_a_request_is_one_single_chunk_with_asyncuas_counters() -> None:
    p, t, ch = _protocol()
    p._request_id, p._connection._sequence_number = 41, 99
    sent = ch.send(_READ_REQUEST, b"\x00" * 10, 2.5)
    assert sent is not None
    req, _ = sent
    kind, chunk, size, channel, token, seq, rid = struct.unpack_from("<3sBIIIII", t.written[0])
    assert (kind, chunk, size, channel, token, seq, rid) == (
        b"MSG", ord("F"), len(t.written[0]), 7, 3, 100, 42)
    assert req == 42 and p._request_id == 42 and p._connection._sequence_number == 100
    assert struct.unpack_from("<BBH", t.written[0], 24) == (1, 0, _READ_REQUEST)


async def test_an_answer_in_pieces_and_two_in_one_read() -> None:
    p, _, ch = _protocol()
    sent = [ch.send(_READ_REQUEST, b"", 1) for _ in range(3)]
    (r1, f1), (r2, f2), (r3, f3) = sent  # type: ignore[misc]
    a1 = _answer(r1, 5, b"first")
    for i in range(0, len(a1), 7):  # seven bytes at a time
        p.data_received(a1[i:i + 7])
    assert f1.result() == b"first"
    p.data_received(_answer(r2, 6, b"second") + _answer(r3, 7, b"third"))
    assert (f2.result(), f3.result()) == (b"second", b"third")
    assert p._connection._peer_sequence_number == 7 and not ch.ours and not p._callbackmap


@pytest.mark.parametrize("bad", [
    {"seq": 9},  # a sequence number skipped
    {"channel": 8},  # another channel
])
async def test_what_breaks_the_rules_goes_to_asyncua(bad: dict[str, int]) -> None:
    p, t, ch = _protocol()
    p._connection._peer_sequence_number = 4
    sent = ch.send(_READ_REQUEST, b"", 1)
    assert sent is not None
    req, future = sent
    p.data_received(_answer(req, **{"seq": 5, "body": b"x", **bad}))
    assert not (future.done() and not future.exception())  # never answered with it
    assert t.closed  # asyncua's parser refused it and closed the connection


async def test_a_connection_with_security_is_left_to_asyncua() -> None:
    p = UASocketProtocol(timeout=1)
    p._connection.security_policy = object()  # type: ignore[assignment]
    assert fastchannel.FastChannel.attach(_State(p)) is None  # type: ignore[arg-type]
    assert p.data_received.__func__ is UASocketProtocol.data_received  # type: ignore[attr-defined]
