from __future__ import annotations

import logging
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from firmware_sim.sim import Simulator

from tests.support.servers import Influxd, Mosquitto, influxd, mosquitto


@pytest.fixture(autouse=True)
def _root_logging() -> Iterator[None]:
    """A command run in process (``cli.main``) replaces the root handlers with one on the
    test's captured stderr; put pytest's back so later tests do not log to a closed file."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    for h in handlers:
        if h not in root.handlers:
            root.addHandler(h)
    root.setLevel(level)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    if not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        pytest.fail("mosquitto is not installed: run scripts/test, which installs it")
    with mosquitto(tmp_path) as m:
        yield m


@pytest.fixture
def influx(tmp_path: Path) -> Iterator[Influxd]:
    """Debian's influxd 1.x on a free port, its data in the test's directory."""
    if not shutil.which("influxd"):
        pytest.fail("influxd is not installed: run scripts/test, which installs it")
    (tmp_path / "influx").mkdir()
    with influxd(tmp_path / "influx") as s:
        yield s


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    s = Simulator(update_interval=0.05)
    yield s
    await s.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """End-to-end tests first (the order is otherwise kept): under pytest-xdist the longest
    tests then start early, instead of running alone on one worker at the end."""
    items.sort(key=lambda item: 0 if item.get_closest_marker("e2e") else 1)
