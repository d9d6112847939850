from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import VictoriaMetrics, victoria_metrics


@pytest.fixture
def vm(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    if not shutil.which("victoria-metrics"):
        pytest.fail("victoria-metrics is not installed: run scripts/test, which installs it")
    (tmp_path / "vm").mkdir()
    with victoria_metrics(tmp_path / "vm") as s:
        yield s
