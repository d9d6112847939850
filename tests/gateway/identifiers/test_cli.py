"""`edgegw id ...` against the fake node."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from firmware_sim.idnode import FakeIdNode
from firmware_sim.sim import write_yaml

from gateway.cli import main
from gateway.identifiers.client import Record
from gateway.identifiers.queue import RegistrationQueue

pytestmark = pytest.mark.component


@pytest.fixture
def node() -> Iterator[FakeIdNode]:
    with FakeIdNode({"edgegw": "123456"}) as n:
        yield n


@pytest.fixture
def config(tmp_path: Path, node: FakeIdNode, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("IDNODE_PASSWORD", "123456")
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    path = tmp_path / "gateway.yaml"
    write_yaml(path, {"gateway": {"id": "gw"}, "identifiers": {
        "prefix": "88.118.8",
        "node": {"url": node.url, "username": "edgegw", "password_env": "IDNODE_PASSWORD"}}})
    return path


def test_parse(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["id", "parse", " 88.118.8/TYRE-1 "]) == 0
    assert "88.118.8/TYRE-1\n  prefix  88.118.8\n  suffix  TYRE-1" in capsys.readouterr().out
    assert main(["id", "parse", "88.118.8/TYRE 1"]) == 1
    assert "character ' ' is not allowed" in capsys.readouterr().err


def test_register_then_resolve(config: Path, node: FakeIdNode,
                               capsys: pytest.CaptureFixture[str]) -> None:
    code = "88.118.8/TYRE-2026-000123"
    assert main(["id", "register", code, "-c", str(config),
                 "--value", "2000:model:PCR 205/55R16"]) == 0
    assert f"{code}: registered" in capsys.readouterr().out
    assert main(["id", "register", code, "-c", str(config)]) == 0
    assert "already registered" in capsys.readouterr().out
    assert main(["id", "resolve", code, "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert "PCR 205/55R16" in out and "TEMPLATE" in out and "86400" in out
    assert main(["id", "resolve", "88.118.8/NOPE", "-c", str(config)]) == 1
    node.fault = "error"
    assert main(["id", "resolve", code, "-c", str(config)]) == 2
    assert "HTTP 500" in capsys.readouterr().err


def test_pending_lists_waiting_and_refused(config: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    q = RegistrationQueue(config.parent / "spool.db")
    q.submit("product", Record("88.118.8/A-1", "1.0"))
    q.submit("product", Record("88.118.8/A-2", "1.0"))
    q.failed("88.118.8/A-2", "数据模板9.9不存在")
    q.close()
    assert main(["id", "pending", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert "0 done, 1 pending, 0 to check, 1 refused" in out
    assert "88.118.8/A-1" in out and "数据模板9.9不存在" in out


def test_new_codes_never_repeat(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["id", "new", "{prefix}/{date:%Y%m%d}-{counter:06d}", "--count", "2",
                 "-c", str(config)]) == 0
    assert main(["id", "new", "{prefix}/{date:%Y%m%d}-{counter:06d}", "-c", str(config)]) == 0
    day = dt.datetime.now().strftime("%Y%m%d")
    assert capsys.readouterr().out.split() == [f"88.118.8/{day}-00000{i}" for i in (1, 2, 3)]
    assert main(["id", "new", "{prefix}/{kind} {counter}", "--field", "kind=B",
                 "-c", str(config)]) == 1
    assert "invalid code" in capsys.readouterr().err
