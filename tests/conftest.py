from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from firmware_sim.sim import Simulator

from tests.servers import Mosquitto, mosquitto


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    if not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        pytest.fail("mosquitto is not installed: run scripts/test, which installs it")
    with mosquitto(tmp_path) as m:
        yield m


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    s = Simulator(update_interval=0.05)
    yield s
    await s.stop()
