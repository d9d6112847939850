"""The link watchdog: when a reset is due (fake clock), and a stuck module cured by a
radio off/on over the simulated AT port."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
from firmware_sim.modem import SimModem
from firmware_sim.sim import write_yaml

from drivers.base import DriverContext
from drivers.modem.config import ModemAt, ModemReset
from drivers.modem.driver import ModemDriver
from drivers.registry import driver_for
from gateway.config import load_config
from gateway.linkwatch import LinkWatchdog


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def fake_modem(reset: ModemReset | None) -> SimpleNamespace:
    m = SimpleNamespace(connected=True, latest=SimpleNamespace(registered=True),
                        device=SimpleNamespace(id="modem", connection=ModemAt(
                            kind="modem-at", port="/dev/ttyUSB2", reset=reset)),
                        sent=[])

    async def do_reset(action: str) -> None:
        m.sent.append(action)

    m.reset = do_reset
    return m


async def test_reset_after_the_dead_time_at_most_n_per_hour(
    caplog: pytest.LogCaptureFixture
) -> None:
    clock, up = Clock(), [True]
    m = fake_modem(ModemReset(after=600, max_per_hour=2))
    wd = LinkWatchdog(lambda: m, lambda: up[0], clock)  # type: ignore[arg-type, return-value]
    assert not await wd.check()  # alive
    m.latest.registered = False
    assert not await wd.check()  # dead from now
    clock.t += 599
    assert not await wd.check()
    clock.t += 1
    assert await wd.check() and m.sent == ["radio"]  # 600 s dead
    clock.t += 300
    assert not await wd.check()  # the timer restarted at the reset
    clock.t += 300
    assert await wd.check() and len(m.sent) == 2
    with caplog.at_level(logging.ERROR, "edgegw.modem"):
        for _ in range(4):  # still dead, two resets in this hour: wait, say it once
            clock.t += 600
            assert not await wd.check()
    assert caplog.text.count("is the limit") == 1 and len(m.sent) == 2
    clock.t += 600  # an hour after the first reset: one more is allowed
    assert await wd.check() and len(m.sent) == 3
    m.latest.registered = True
    clock.t += 3600
    assert not await wd.check() and wd.dead_since is None  # recovered: timer cleared


async def test_no_broker_counts_as_dead_an_unanswering_module_is_not_reset() -> None:
    clock, up = Clock(), [False]
    m = fake_modem(ModemReset(after=60, max_per_hour=1, action="module"))
    wd = LinkWatchdog(lambda: m, lambda: up[0], clock)  # type: ignore[arg-type, return-value]
    await wd.check()
    clock.t += 60
    assert await wd.check() and m.sent == ["module"]
    m.connected = False  # the module restarts: its AT port is gone
    clock.t += 3600
    assert not await wd.check() and wd.dead_since is None


async def test_without_reset_config_nothing_happens() -> None:
    clock = Clock()
    m = fake_modem(None)
    m.latest.registered = False
    wd = LinkWatchdog(lambda: m, lambda: False, clock)  # type: ignore[arg-type, return-value]
    for _ in range(3):
        clock.t += 10_000
        assert not await wd.check()
    assert LinkWatchdog(lambda: None, lambda: False, clock).due() is None


@pytest.mark.component
@pytest.mark.timeout(30)
async def test_a_stuck_module_is_cured_by_a_radio_reset(tmp_path: Path) -> None:
    modem = SimModem(tmp_path / "ttyModem")
    modem.fault = "stuck"
    await modem.start()
    write_yaml(tmp_path / "gateway.yaml", {"gateway": {"id": "gw"}, "devices": [
        {"id": "modem", "profile": "edgegw/modem", "connection": {
            "kind": "modem-at", "port": str(modem.link), "timeout": "1s",
            "reset": {"after": "30s", "max_per_hour": 1}}}]})
    dev = load_config(tmp_path / "gateway.yaml").devices[0]
    ctx = DriverContext("gw", tmp_path, tmp_path)
    drv = driver_for(dev, ctx)
    assert isinstance(drv, ModemDriver)
    clock = Clock()
    wd = LinkWatchdog(lambda: drv, lambda: True, clock)
    try:
        await drv.connect()
        points = [p for p in dev.profile.expanded_points() if p.name == "registered"]
        await drv.read(points)
        assert drv.latest is not None and drv.latest.registered is False
        await wd.check()
        clock.t += 30
        assert await wd.check()
        assert modem.resets == ["AT+CFUN=0", "AT+CFUN=1"]
        await drv.read(points)
        assert drv.latest.registered is True and modem.fault == ""
    finally:
        await drv.close()
        ctx.close()
        await modem.stop()
