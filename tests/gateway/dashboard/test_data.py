"""The dashboard's shaping of InfluxDB rows, without a database."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from gateway.dashboard import data, pages

H = 3_600_000


def test_segments_start_with_the_state_before_the_window() -> None:
    before = [{"time": -5 * H, "state": "fault", "cat": "down", "reason": "hydraulics"}]
    rows = [{"time": 2 * H, "state": "running", "cat": "run", "reason": None},
            {"time": 3 * H, "state": "maintenance", "cat": "planned", "reason": "maintenance"}]
    segs = data.segments(before, rows, 0, 4 * H)
    assert [(s.start, s.end, s.state) for s in segs] == [
        (0, 2 * H, "fault"), (2 * H, 3 * H, "running"), (3 * H, 4 * H, "maintenance")]
    assert data.stop_reasons(segs) == [("hydraulics", "down", 7200.0),
                                       ("maintenance", "planned", 3600.0)]
    assert data.time_per_category(segs) == {"down": 7200.0, "run": 3600.0, "planned": 3600.0}
    assert data.segments([], [], 0, H)[0].state == "unknown"


def test_counts_per_hour_from_shift_counts() -> None:
    kpis = [{"time": t * H // 2, "parts": p, "shift_start": s} for t, p, s in (
        (1, 10, 0), (2, 25, 0), (3, 40, 0), (4, 5, 4 * H // 2))]  # a new shift at 2 h
    assert data.counts_per_hour(kpis, 0, 3) == [10, 30, 5]


def test_tiles_take_the_order_quantity_as_target() -> None:
    now = 10 * H
    ts = data.tiles(
        [{"device": "m1", "time": now - H, "state": "running", "cat": "run", "reason": None}],
        [{"device": "m1", "time": now, "parts": 40, "availability": 0.8, "oee": 0.5,
          "shift": "early", "shift_end": now + H}],
        [{"device": "m1", "time": now, "status": "running", "order": "PO-1", "good": 38,
          "planned": 100}], now, {"m1": 500})
    assert ts[0].target == 100 and ts[0].parts == 40 and ts[0].kpis["oee"] == 0.5
    html = pages.overview("Plant", ts, ZoneInfo("UTC"), now, 15)
    assert '<b class="parts">40</b>' in html and "38 of 100" in html
    assert '<b class="oee">50 %</b>' in html


def test_markup_from_the_field_is_text() -> None:
    now = 10 * H
    ts = data.tiles([{"device": "<b>x</b>", "time": now, "state": "fault", "cat": "down",
                      "reason": "<script>alert(1)</script>"}], [], [], now, {})
    html = pages.overview("Plant", ts, ZoneInfo("UTC"), now, 15)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<b>x</b>" not in html


def test_influxql_literals_are_escaped() -> None:
    assert data.literal("a'b\\c") == "'a\\'b\\\\c'"
