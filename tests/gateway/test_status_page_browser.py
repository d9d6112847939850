"""The status page in a real headless browser (Debian's chromium-headless-shell): the
script renders every device from /status.json, refreshes by itself, and shows text from
devices as text, never as markup."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from firmware_sim.sim import Simulator

from tests.gateway.health_gateway import health_gateway
from tests.support.servers import Mosquitto

pytestmark = [pytest.mark.component, pytest.mark.timeout(90)]


def browser() -> str:
    for name in ("chromium-headless-shell", "chromium", "chromium-browser"):
        if exe := shutil.which(name):
            return exe
    pytest.fail("no headless chromium: run scripts/setup (it installs "
                "chromium-headless-shell)")


def dump_dom(url: str, budget_ms: int) -> str:
    r = subprocess.run([browser(), "--headless", "--no-sandbox", "--disable-gpu",
                        "--no-first-run", "--user-data-dir=/tmp/edgegw-chromium",
                        f"--virtual-time-budget={budget_ms}", "--dump-dom", url],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


async def test_status_page_in_a_headless_browser(tmp_path: Path, sim: Simulator,
                                                 broker: Mosquitto) -> None:
    async with health_gateway(tmp_path, sim, broker, "gw-page") as gw:
        assert gw.health is not None
        # text from the field that looks like markup must stay text
        gw.stats.devices["cnc"].last_error = '<img id="xss" src="x" onerror="boom()">'
        dom = await asyncio.to_thread(dump_dom, f"http://127.0.0.1:{gw.health.port}/", 7000)
        refreshes = int(re.search(r'data-refreshes="(\d+)"', dom).group(1))  # type: ignore[union-attr]
        assert refreshes >= 2, dom  # the page refreshed itself (2 s interval)
        assert gw.health.requests.get("/status.json", 0) >= 2
        assert "updated " in dom
        assert re.search(r'<tr class="online"><td>cnc</td><td>online</td>', dom), dom
        assert re.search(r'<tr class="offline"><td>gone</td><td>offline</td>', dom), dom
        assert "spindle_speed=" in dom and "1/2 devices online" in dom
        assert "<img" not in dom and '&lt;img id="xss"' in dom  # text, not an element
