"""Reload planning: which devices are added, removed, changed, and which settings wait
for a restart."""

from __future__ import annotations

from pathlib import Path

import yaml

from gateway.config import load_config
from gateway.reload import plan

PROFILE = """\
vendor: acme
model: mini
version: "1.0"
protocol: modbus
poll_groups: {fast: 1s}
points:
  - {name: speed, type: uint16, table: holding, address: 0, poll_group: fast}
"""


def write(tmp_path: Path, devices: list[dict[str, object]], **extra: object) -> Path:
    conf = tmp_path / "gateway.yaml"
    conf.write_text(yaml.safe_dump({"version": 1, "gateway": {"id": "gw"},
                                    "devices": devices, **extra}))
    return conf


def dev(name: str, port: int = 5020, **kw: object) -> dict[str, object]:
    return {"id": name, "profile": "acme/mini",
            "connection": {"kind": "modbus-tcp", "host": "127.0.0.1", "port": port}, **kw}


def test_plan(tmp_path: Path) -> None:
    (tmp_path / "profiles" / "acme").mkdir(parents=True)
    prof = tmp_path / "profiles" / "acme" / "mini.yaml"
    prof.write_text(PROFILE)
    conf = write(tmp_path, [dev("a"), dev("b"), dev("c"), dev("d", enabled=False)])
    old = load_config(conf)
    write(tmp_path, [dev("a"), dev("b", port=5021), dev("d"), dev("e")],
          store={"max_age": "1d"}, logging={"level": "DEBUG"})
    p = plan(old, load_config(conf))
    assert [d.id for d in p.added] == ["d", "e"]
    assert p.removed == ["c"]
    assert [d.id for d in p.changed] == ["b"]
    assert p.unchanged == ["a"]
    assert p.restart_needed == ["store"]  # logging applies at once
    assert p.order == ["a", "b", "d", "e"]
    assert p.summary() == "2 added, 1 removed, 1 changed, 1 unchanged (+d +e -c ~b)"
    # a profile edited in place changes every device that uses it
    old = load_config(conf)
    prof.write_text(PROFILE.replace("uint16", "int16"))
    p = plan(old, load_config(conf))
    assert sorted(d.id for d in p.changed) == ["a", "b", "d", "e"]
