"""Durable registration and cached resolution against the fake secondary node."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from firmware_sim.idnode import FakeIdNode

from gateway.config import IdentifiersConfig
from gateway.identifiers.client import NodeClient, Record
from gateway.identifiers.queue import RegistrationQueue
from gateway.identifiers.service import Registrar, ResolverCache

pytestmark = [pytest.mark.component, pytest.mark.timeout(60)]

CODES = [f"88.118.8/TYRE-2026-{i:06d}" for i in range(1, 6)]


@pytest.fixture
def node() -> Iterator[FakeIdNode]:
    with FakeIdNode({"edgegw": "123456"}) as n:
        yield n


def cfg(**extra: object) -> IdentifiersConfig:
    return IdentifiersConfig.model_validate({
        "retry": {"initial": "50ms", "max": "200ms", "jitter": 0},
        "values": {"product": [{"index": 2000, "type": "station", "value": "{device}"}]},
        **extra})


def registrar(queue: RegistrationQueue, url: str, c: IdentifiersConfig | None = None) -> Registrar:
    client = NodeClient(url, "edgegw", lambda: "123456", timeout=1.0)
    return Registrar(c or cfg(), queue, client, {"gateway": "gw", "site": ""})


async def until(pred: object, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_codes_wait_while_the_node_is_down_then_register_once(
    tmp_path: Path, node: FakeIdNode
) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    down_url = f"http://127.0.0.1:{s.getsockname()[1]}"
    s.close()
    q = RegistrationQueue(tmp_path / "spool.db")
    reg = registrar(q, down_url)
    for c in CODES:
        assert reg.submit("product", c, device="press-07")
    assert not reg.submit("product", CODES[0], device="press-07")  # queued once
    task = asyncio.create_task(reg.run())
    await until(lambda: all(e.attempts >= 2 for e in q.entries()))
    assert q.counts() == {"pending": 5}
    task.cancel()
    q.close()
    # the gateway restarts; the node is reachable again: nothing was lost
    q2 = RegistrationQueue(tmp_path / "spool.db")
    task = asyncio.create_task(registrar(q2, node.url).run())
    await until(lambda: q2.counts() == {"done": 5})
    task.cancel()
    assert all(node.registrations[c] == 1 for c in CODES)
    assert node.records[CODES[0]]["value"][1]["data"]["value"] == "press-07"
    assert node.calls.count(("POST", "/identityv2/data/batchCreate")) == 1  # one batch
    q2.close()


async def test_a_timeout_is_settled_by_querying_first(tmp_path: Path, node: FakeIdNode) -> None:
    q = RegistrationQueue(tmp_path / "spool.db")
    reg = registrar(q, node.url)
    reg.submit("product", CODES[0], device="p")
    node.fault = "timeout"  # stored, but the answer is a 504
    task = asyncio.create_task(reg.run())
    await until(lambda: q.entries() and q.entries()[0].state == "unknown")
    node.fault = "none"
    await until(lambda: q.counts() == {"done": 1})
    task.cancel()
    assert node.registrations[CODES[0]] == 1  # never sent twice
    assert ("GET", "/identityv2/data/detail") in node.calls
    q.close()


async def test_rate_limit_and_server_errors_are_retried(tmp_path: Path,
                                                        node: FakeIdNode) -> None:
    q = RegistrationQueue(":memory:")
    reg = registrar(q, node.url)
    reg.submit("product", CODES[0])
    reg.submit("product", CODES[1])
    node.fault = "ratelimit"
    task = asyncio.create_task(reg.run())
    await until(lambda: any(e.attempts for e in q.entries()))
    assert "rate limited" in (q.entries()[0].last_error or "")
    node.fault = "error"
    await asyncio.sleep(0.3)
    node.fault = "none"
    await until(lambda: q.counts() == {"done": 2}, 15)
    task.cancel()


@pytest.mark.parametrize("fault", ["nested", "items", "huge", "drip"])
async def test_hostile_answers_are_retried_and_the_registrar_keeps_running(
        fault: str, node: FakeIdNode) -> None:
    """Issue 18, item 2: these answers used to raise out of the registrar and stop the
    gateway's task group; now they are retryable node errors and the codes wait."""
    node.drip_s = 0.05
    q = RegistrationQueue(":memory:")
    reg = registrar(q, node.url)
    reg.submit("product", CODES[0])
    reg.submit("product", CODES[1])
    node.fault = fault
    task = asyncio.create_task(reg.run())
    await until(lambda: all(e.attempts >= 2 for e in q.entries()), 20)
    assert not task.done() and "done" not in q.counts()
    node.fault = "none"
    await until(lambda: q.counts() == {"done": 2}, 15)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 3)  # stops promptly, even after a drip


@pytest.mark.parametrize("n", [1, 2])
async def test_refused_codes_are_kept_with_the_reason(node: FakeIdNode, n: int) -> None:
    node.templates = {"1.0": {2000: "station"}}
    q = RegistrationQueue(":memory:")
    reg = registrar(q, node.url, cfg(template_version="9.9"))  # not a template of the node
    for c in CODES[:n]:
        reg.submit("product", c)
    task = asyncio.create_task(reg.run())
    await until(lambda: q.counts().get("failed") == n)
    task.cancel()
    assert "9.9" in (q.entries()[0].last_error or "")  # the node's reason, kept


async def test_invalid_codes_and_unregistered_kinds_are_not_queued(node: FakeIdNode) -> None:
    q = RegistrationQueue(":memory:")
    reg = registrar(q, node.url, cfg(register=["device"]))
    assert not reg.submit("product", CODES[0])  # product codes not registered here
    assert not reg.submit("device", "88.118.8/CNC 01")  # breaks the grammar
    assert reg.invalid == 1 and q.counts() == {}


async def test_resolver_cache_honours_the_ttl(node: FakeIdNode) -> None:
    client = NodeClient(node.url, "edgegw", lambda: "123456")
    client.register(Record(CODES[0], "1.0"))
    now = [1000.0]
    cache = ResolverCache(client, min_ttl=60, max_ttl=600, clock=lambda: now[0])
    doc = await cache.resolve(CODES[0])
    assert doc is not None and cache.value_of(doc, 1001) == "1.0"
    now[0] += 500
    await cache.resolve(CODES[0])
    assert cache.lookups == 1  # node ttl 86400, capped at 600
    now[0] += 200
    await cache.resolve(CODES[0])
    assert cache.lookups == 2
    assert await cache.resolve("88.118.8/NOPE") is None
    assert await cache.resolve("88.118.8/NOPE") is None
    assert cache.lookups == 4  # unknown codes are not cached


def test_the_gateway_code_carries_imei_and_iccid_when_known(tmp_path: Path) -> None:
    q = RegistrationQueue(tmp_path / "spool.db")
    reg = Registrar(cfg(), q, None, {"gateway": "gw-7", "site": ""})
    rec = reg.record("gateway", "88.118.8/GW-7", imei="867698040123456",
                     iccid="89860121801234567890")
    assert [(v.index, v.type, v.value) for v in rec.values] == [
        (2001, "IMEI", "867698040123456"), (2002, "ICCID", "89860121801234567890"),
        (2003, "EDGEGW_ID", "gw-7")]
    # no modem: what is not known is left out, not registered as "{imei}"
    rec = reg.record("gateway", "88.118.8/GW-7", imei=None, iccid=None)
    assert [(v.index, v.value) for v in rec.values] == [(2003, "gw-7")]
    # configured values replace the defaults
    own = cfg(values={"gateway": [{"index": 2100, "type": "SIM", "value": "{iccid}"}]})
    rec = Registrar(own, q, None, {"gateway": "gw-7", "site": ""}).record(
        "gateway", "88.118.8/GW-7", iccid="8986")
    assert [(v.index, v.value) for v in rec.values] == [(2100, "8986")]
    q.close()


async def test_a_registered_code_whose_values_change_is_updated_at_the_node(
        tmp_path: Path, node: FakeIdNode) -> None:
    """A product's record arrives after its code was registered (the scan) and again
    when it changes (resumed after a fault): the node's update call replaces the values,
    the newest ones win; a record for a code not yet registered registers it first."""
    from gateway.identifiers.client import Value

    q = RegistrationQueue(tmp_path / "spool.db")
    reg = registrar(q, node.url)
    task = asyncio.create_task(reg.run())
    reg.submit("product", CODES[0], device="press-07")
    await until(lambda: q.counts() == {"done": 1})
    assert reg.record_update("product", CODES[0], (Value(2106, "verdict", "pass"),),
                             device="press-07")
    await until(lambda: q.update_counts() == {"done": 1})
    values = {v["index"]: v["data"]["value"] for v in node.records[CODES[0]]["value"]}
    assert values[2000] == "press-07" and values[2106] == "pass"  # configured + record
    reg.record_update("product", CODES[0], (Value(2106, "verdict", "fail"),), device="press-07")
    await until(lambda: node.updates.get(CODES[0]) == 2 and q.update_counts() == {"done": 1})
    values = {v["index"]: v["data"]["value"] for v in node.records[CODES[0]]["value"]}
    assert values[2106] == "fail"
    # not registered yet: registered (configured values), then updated
    reg.record_update("product", CODES[1], (Value(2106, "verdict", "pass"),), device="p")
    await until(lambda: q.update_counts() == {"done": 2})
    assert node.registrations[CODES[1]] == 1 and node.updates[CODES[1]] == 1
    # the node lost it (or someone deleted it): registered again, then updated again
    del node.records[CODES[1]]
    reg.record_update("product", CODES[1], (Value(2106, "verdict", "fail"),), device="p")
    await until(lambda: node.registrations[CODES[1]] == 2 and node.updates[CODES[1]] == 2)
    task.cancel()
    q.close()


async def test_a_node_whose_template_lacks_the_record_keeps_the_registration(
        tmp_path: Path) -> None:
    """The node's data template has no index for the record's values: the update is
    refused and kept as refused with the node's reason; the code stays registered with
    its configured values (found in the field: a registration must not depend on it)."""
    from gateway.identifiers.client import Value

    with FakeIdNode({"edgegw": "123456"}, templates={"1.0": {2000: "station"}}) as node:
        q = RegistrationQueue(tmp_path / "spool.db")
        reg = registrar(q, node.url)
        task = asyncio.create_task(reg.run())
        reg.record_update("product", CODES[2], (Value(2106, "verdict", "pass"),), device="p")
        await until(lambda: q.update_counts() == {"failed": 1})
        assert q.counts() == {"done": 1} and node.registrations[CODES[2]] == 1
        task.cancel()
        q.close()
