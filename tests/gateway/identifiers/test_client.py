"""The node client against the fake secondary node: every answer and every error path."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from firmware_sim.idnode import FakeIdNode

from gateway.identifiers.client import NodeClient, NodeError, Record, Value

pytestmark = pytest.mark.component

TYRE = "88.118.8/TYRE-2026-000123"


@pytest.fixture
def node() -> Iterator[FakeIdNode]:
    with FakeIdNode({"edgegw": "123456"}) as n:
        yield n


def client(node: FakeIdNode, password: str = "123456", login: str = "v1",
           timeout: float = 2.0) -> NodeClient:
    return NodeClient(node.url, "edgegw", lambda: password, login=login, timeout=timeout)


def rec(handle: str = TYRE, *values: Value) -> Record:
    return Record(handle, "1.0", values or (Value(2000, "model", "PCR 205/55R16"),))


@pytest.mark.parametrize("login", ["v1", "plain"])
def test_register_query_resolve(node: FakeIdNode, login: str) -> None:
    c = client(node, login=login)
    assert c.register(rec()) == "created"
    assert c.register(rec()) == "exists"  # "标识已存在" counts as registered
    assert node.registrations[TYRE] == 1
    d = c.detail(TYRE)
    assert d is not None and d["templateVersion"] == "1.0"
    assert c.detail("88.118.8/NOPE") is None
    r = c.resolve(TYRE)
    assert r is not None and r["responseCode"] == 1 and r["handle"] == TYRE
    by_index = {v["index"]: v for v in r["values"]}
    assert by_index[1001]["data"]["value"] == "1.0"  # the template version
    assert by_index[2000]["data"] == {"format": "string", "value": "PCR 205/55R16"}
    assert by_index[2000]["ttl"] == 86400
    assert c.resolve("88.118.8/NOPE") is None


def test_batch_create_chunks_by_2000_and_reports_each(node: FakeIdNode) -> None:
    c = client(node)
    c.register(rec("88.118.8/B-1"))
    recs = [rec(f"88.118.8/B-{i}") for i in range(1, 2503)]
    out = c.batch_create(recs)
    assert len(out) == 2502 and out["88.118.8/B-1"] == "exists"
    assert sum(v == "created" for v in out.values()) == 2501
    assert node.calls.count(("POST", "/identityv2/data/batchCreate")) == 2


def test_token_expiry_logs_in_again(node: FakeIdNode) -> None:
    c = client(node)
    c.register(rec())
    node.expire_tokens()
    assert c.detail(TYRE) is not None
    assert node.calls.count(("POST", "/identity/token/v1")) == 2


@pytest.mark.parametrize(("record", "says"), [
    (rec(TYRE, Value(1001, "TEMPLATE", "2")), "reserved for the template version"),
    (rec(TYRE, Value(100, "x", "y")), "indexes >= 2000"),
    (rec(TYRE, Value(2000, "x", "y" * 256)), "at most 255"),
])
def test_node_rules_checked_before_sending(node: FakeIdNode, record: Record, says: str) -> None:
    with pytest.raises(NodeError, match=says) as ei:
        client(node).register(record)
    assert ei.value.kind == "rejected" and not ei.value.retryable
    assert not node.calls


def test_wrong_password_is_auth_and_not_in_the_message(node: FakeIdNode) -> None:
    with pytest.raises(NodeError) as ei:
        client(node, password="s3cret-wrong").register(rec())
    assert ei.value.kind == "auth" and not ei.value.retryable
    assert "s3cret" not in str(ei.value) and "edgegw" in str(ei.value)


@pytest.mark.parametrize(("fault", "kind"), [
    ("ratelimit", "rate_limit"), ("error", "server"), ("timeout", "unknown"),
])
def test_node_failures_are_retryable_kinds(node: FakeIdNode, fault: str, kind: str) -> None:
    c = client(node)
    c.login()
    node.fault = fault
    with pytest.raises(NodeError) as ei:
        c.register(rec())
    assert ei.value.kind == kind and ei.value.retryable
    if fault == "ratelimit":
        assert ei.value.retry_after == 1.0
    if fault == "timeout":  # stored, then 504: querying tells the truth
        node.fault = "none"
        assert c.detail(TYRE) is not None


def test_no_answer_in_time_is_unknown(node: FakeIdNode) -> None:
    node.fault = "hang"
    node.hang_s = 1.5
    with pytest.raises(NodeError) as ei:
        client(node, timeout=0.5).register(rec())
    assert ei.value.kind == "unknown"


def test_node_down_is_retryable() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    c = NodeClient(f"http://127.0.0.1:{port}", "u", lambda: "p", timeout=1.0)
    with pytest.raises(NodeError) as ei:
        c.register(rec())
    assert ei.value.kind == "down" and ei.value.retryable


def test_concurrent_calls_share_one_login(node: FakeIdNode) -> None:
    c = client(node)
    threads = [threading.Thread(target=c.register, args=(rec(f"88.118.8/T-{i}"),))
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(node.records) == 8
    assert node.calls.count(("POST", "/identity/token/v1")) == 1


@pytest.mark.parametrize(("fault", "call", "kind"), [
    ("nested", "register", "server"),  # refused before parsing: retried later
    ("nested", "resolve", "server"),
    ("items", "batch", "server"),
    ("huge", "batch", "server"),
    ("drip", "register", "unknown"),
])
def test_hostile_answers_are_node_errors_bounded_in_size_and_time(
        node: FakeIdNode, fault: str, call: str, kind: str) -> None:
    """A broken or compromised node: every answer is untrusted (issue 18, item 2)."""
    import resource
    import time

    c = client(node, timeout=1.0)
    c.login()  # logins still work under these faults
    node.fault = fault
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.monotonic()
    calls = {"register": lambda: c.register(rec()), "resolve": lambda: c.resolve(TYRE),
             "batch": lambda: c.batch_create([rec(f"88.118.8/H-{i}") for i in range(3)])}
    with pytest.raises(NodeError) as e:
        calls[call]()
    assert e.value.kind == kind, e.value
    assert time.monotonic() - t0 < 3.0  # the drip is cut off at the 1 s timeout
    # the 64 MB answer was refused after 4 MiB, not buffered (ru_maxrss is in KiB)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 32 * 1024
    node.fault = "none"
    # the client is usable afterwards (the node may have stored the code before)
    assert c.register(rec()) in ("created", "exists")
