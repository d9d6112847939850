from __future__ import annotations

import logging
import random

import pytest

from gateway.backoff import Backoff
from gateway.faultlog import FaultLog


def test_fault_logged_once_then_summarised(caplog: pytest.LogCaptureFixture) -> None:
    log = FaultLog(logging.getLogger("t"), interval=3600)
    with caplog.at_level(logging.INFO, "t"):
        for _ in range(100):
            log.fault(("d1", "x"), "device d1: timeout")
        assert len(caplog.records) == 1
        log.summary()
        assert "repeated 99 times" in caplog.records[-1].getMessage()
        log.summary()  # nothing new: no line
        assert len(caplog.records) == 2
        log.clear(("d1", "x"), "device d1: back")
        assert "after 100 fault(s)" in caplog.records[-1].getMessage()
    assert log.total == 100 and log.active == 0


def test_backoff_grows_with_jitter_and_resets() -> None:
    b = Backoff(0.5, 4.0, jitter=0.2, rng=random.Random(1))
    delays = [b.next() for _ in range(6)]
    for d, base in zip(delays, [0.5, 1, 2, 4, 4, 4], strict=True):
        assert base * 0.8 <= d <= base * 1.2
    b.reset()
    assert b.next() <= 0.6


def test_clear_of_unknown_key_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    log = FaultLog(logging.getLogger("t2"))
    with caplog.at_level(logging.INFO, "t2"):
        log.clear(("d", "g", "p"), "recovered")
    assert not caplog.records
