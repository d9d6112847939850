from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import GatewayProcess
from tests.support.servers import Mosquitto, mosquitto


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[GatewayProcess]:
    gp = GatewayProcess(tmp_path / "gateway.yaml", tmp_path / "gateway.log")
    yield gp
    gp.stop()
    print(gp.log.read_text()[-3000:])


@pytest.fixture
def persistent_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker that keeps sessions and queued messages across its restarts."""
    with mosquitto(tmp_path, persistent=True) as m:
        yield m
