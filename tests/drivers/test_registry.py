"""The protocol table (drivers/registry.py): a kind maps to its protocol and its driver,
imported on demand; adding a protocol is one line there (issue 19)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from drivers import registry
from drivers.base import DriverContext
from drivers.registry import KINDS, Kind, driver_for, protocol_of


class FakeDriver:
    """A whole protocol's driver, for the test: it only remembers what it was given."""

    def __init__(self, device: Any, ctx: DriverContext) -> None:
        self.device, self.ctx = device, ctx


@dataclass
class FakeConnection:
    kind: str = "fake-proto"


@dataclass
class FakeDevice:
    id: str = "f1"
    profile: Any = None
    workarounds: Any = None
    connection: FakeConnection = field(default_factory=FakeConnection)


def test_a_new_protocol_is_one_line_in_the_table(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    monkeypatch.setitem(KINDS, "fake-proto", Kind("fake", f"{__name__}:FakeDriver"))
    ctx = DriverContext("gw", tmp_path, tmp_path)
    drv = driver_for(FakeDevice(), ctx)  # type: ignore[arg-type]
    assert isinstance(drv, FakeDriver) and drv.device.id == "f1" and drv.ctx is ctx
    assert protocol_of("fake-proto") == "fake"


def test_an_unknown_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no driver for connection kind 'nope'"):
        driver_for(FakeDevice(connection=FakeConnection("nope")),  # type: ignore[arg-type]
                   DriverContext("gw", tmp_path, tmp_path))


def test_every_kind_names_an_importable_driver() -> None:
    import importlib

    for kind, entry in registry.KINDS.items():
        module, _, name = entry.driver.partition(":")
        assert hasattr(importlib.import_module(module), name), kind


def test_a_modbus_only_gateway_does_not_load_asyncua() -> None:
    code = ("import sys; from gateway.config import GatewayConfig; import drivers.registry; "
            "import drivers.modbus.driver; print('asyncua' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout.strip()
    assert out == "False"
