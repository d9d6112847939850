"""Codes from templates; the counter never repeats, even across a crash."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
from pathlib import Path

import pytest

from gateway.identifiers.codes import CodeError
from gateway.identifiers.generate import CodeGenerator, Counter


def test_templates(tmp_path: Path) -> None:
    g = CodeGenerator("{prefix}/{date:%Y%m%d}-{counter:06d}", "88.118.8",
                      Counter(tmp_path / "counter"))
    today = dt.datetime.now().strftime("%Y%m%d")
    assert g.next() == f"88.118.8/{today}-000001"
    assert g.next() == f"88.118.8/{today}-000002"
    dev = CodeGenerator("{prefix}/{device_kind}-{serial}", "88.118.8")
    assert dev.next(device_kind="CNC", serial="UA500-0815") == "88.118.8/CNC-UA500-0815"


def test_counter_survives_a_restart(tmp_path: Path) -> None:
    g1 = CodeGenerator("{prefix}/B-{counter}", "88.118.8", Counter(tmp_path / "c"))
    first = [g1.next() for _ in range(3)]
    g2 = CodeGenerator("{prefix}/B-{counter}", "88.118.8", Counter(tmp_path / "c"))
    assert g2.next() == "88.118.8/B-4" and "88.118.8/B-4" not in first


def _reserve_then_die(path: str) -> None:
    c = Counter(Path(path))
    c.reserve()
    c.reserve()
    os._exit(9)  # a crash: no cleanup, no flush beyond what reserve() did


def test_counter_after_a_crash_skips_never_repeats(tmp_path: Path) -> None:
    path = tmp_path / "c"
    p = multiprocessing.get_context("fork").Process(target=_reserve_then_die, args=(str(path),))
    p.start()
    p.join()
    assert p.exitcode == 9
    assert Counter(path).reserve() == 3  # 1 and 2 were handed out before the crash


@pytest.mark.parametrize(("template", "says"), [
    ("{prefix}/{device_kind}", "not one of prefix, date, counter"),
    ("{prefix}/TYRE {counter}", "invalid code"),
    ("{prefix}-{counter}", "exactly one '/'"),
])
def test_bad_templates_are_explained(tmp_path: Path, template: str, says: str) -> None:
    g = CodeGenerator(template, "88.118.8", Counter(tmp_path / "c"))
    with pytest.raises((CodeError, ValueError), match=says.replace("(", r"\(")):
        g.check()


def test_counter_template_needs_a_counter() -> None:
    with pytest.raises(ValueError, match="needs a counter file"):
        CodeGenerator("{prefix}/{counter}", "88.118.8")
