"""The production dashboard against a real influxd holding records the production tracker
made from a scripted plant: the numbers on the pages equal the ones in InfluxDB, text
from the field stays text, authentication and HTTPS hold; then the pages in a real
headless chromium (screenshots kept as test artefacts)."""

from __future__ import annotations

import asyncio
import base64
import re
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.dashboard.config import DashboardConfig, DashboardTls
from gateway.dashboard.server import Dashboard
from gateway.influx.lineproto import batch_lines
from gateway.influx.sinkconfig import InfluxV1
from gateway.model import Batch
from gateway.production.machine import Machine
from gateway.production.shifts import Calendar
from gateway.production.spec import ProductionConfig, ProductionSpec
from gateway.wire.encode import decode_batch, encode_batch
from tests.pki import TestCA
from tests.support.servers import Influxd

pytestmark = [pytest.mark.component, pytest.mark.timeout(120)]

ARTEFACTS = Path(__file__).resolve().parents[2] / "artefacts"
XSS = '<img id="xss" src="x" onerror="boom()">'


def _spec() -> ProductionSpec:
    return ProductionSpec.model_validate({
        "count": "cycles", "scrap": "scrap", "ideal_cycle": 50, "order": "order_no",
        "order_quantity": "qty", "planned_stops": ["maintenance"],
        "reasons": {"point": "alarm", "map": {101: "hydraulics", 102: XSS}}})


def plant(now: float) -> list[Batch]:
    """Two machines over the last 3 hours, second by second (polls every 5 s)."""
    cal = Calendar(ProductionConfig(kpi_interval=60))
    out: list[Batch] = []
    start = now - 3 * 3600
    script = {
        "press1": [("running", 3600, 60, 0), ("fault", 900, 0, 101), ("running", 3600, 60, 0),
                   ("maintenance", 600, 0, 0), ("running", 2100, 60, 0)],
        "press2": [("running", 1800, 120, 0), ("fault", 1800, 0, 102), ("idle", 3600, 0, 0),
                   ("running", 3600, 120, 0)],
    }
    for dev, steps in script.items():
        m = Machine("gw1", dev, _spec(), cal, 60.0, {"cycles": 1 << 16, "scrap": 1 << 16})
        m.start(start)
        t = start
        values: dict[str, Any] = {"cycles": 100, "scrap": 0, "alarm": 0,
                                  "order_no": f"PO-{dev}", "qty": 500}
        for state, seconds, every, alarm in steps:
            values["alarm"] = alarm
            for i in range(0, seconds, 5):
                t += 5
                if every and (i // 5) % (every // 5) == 0:
                    values["cycles"] += 1
                out += m.observe(t, state, dict(values))
                out += m.tick(t)
    return out


def load(db: Influxd, batches: list[Batch]) -> None:
    lines: list[str] = []
    for seq, b in enumerate(batches, 1):
        b.seq = seq
        lines += batch_lines(decode_batch(encode_batch(b)))
    body = "\n".join(lines).encode()
    req = urllib.request.Request(f"{db.url}/write?db=edgegw&precision=ms", data=body)
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 204


@pytest.fixture
def database(influx: Influxd) -> Influxd:
    """influxd holding the plant's records in database ``edgegw``."""
    influx.create_db("edgegw")
    load(influx, plant(time.time()))
    return influx


@pytest.fixture
async def dash(database: Influxd, tmp_path: Path) -> AsyncIterator[Dashboard]:
    d = Dashboard(DashboardConfig(port=0, targets={"press2": 100}),
                  InfluxV1(kind="influxdb-v1", url=database.url, database="edgegw"))
    await d.start()
    yield d
    await d.close()


def get(url: str, headers: dict[str, str] | None = None,
        ctx: ssl.SSLContext | None = None) -> tuple[int, str, dict[str, str]]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=20, context=ctx) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


def one(db: Influxd, q: str) -> dict[str, Any]:
    series = db.query(q, "edgegw")
    cols = series[0]["columns"]
    return dict(zip(cols, series[0]["values"][0], strict=True))  # type: ignore[index, call-overload]


async def test_the_pages_show_what_influxdb_holds(dash: Dashboard, database: Influxd) -> None:
    base = f"http://127.0.0.1:{dash.port}"
    code, body, _ = await asyncio.to_thread(get, base + "/")
    assert code == 200
    for dev in ("press1", "press2"):
        kpi = one(database, f'SELECT last("parts") AS parts, "availability", "oee" FROM '
                            f'"edgegw/kpi" WHERE device = \'{dev}\'')
        tile = re.search(rf'data-device="{dev}">(.*?)</a>', body, re.S)
        assert tile is not None, body
        t = tile.group(1)
        assert f'<b class="parts">{kpi["parts"]}</b>' in t
        assert f'<b class="availability">{100 * kpi["availability"]:.0f} %</b>' in t
        assert f'<b class="oee">{100 * kpi["oee"]:.0f} %</b>' in t
    assert ">running</div>" in body  # press1 runs now
    # the machine page: the timeline's running share and the stop reasons
    code, body, _ = await asyncio.to_thread(get, base + "/machine?id=press1")
    assert code == 200
    assert "hydraulics" in body and 'data-seconds="900"' in body
    assert body.count('data-state="fault"') == 1
    code, body2, _ = await asyncio.to_thread(get, base + "/machine?id=press2")
    # a reason from the field that looks like markup is shown as text
    assert XSS not in body2 and "&lt;img id=&quot;xss&quot;" in body2
    code, _, _ = await asyncio.to_thread(get, base + "/machine?id=nope")
    assert code == 404
    # orders: count and planned as InfluxDB holds them
    code, body, _ = await asyncio.to_thread(get, base + "/orders")
    o = one(database, 'SELECT last("good") AS good, "planned" FROM "edgegw/order" '
                      "WHERE device = 'press1'")
    assert f'{o["good"]} / {o["planned"]}' in body
    # read-only
    req = urllib.request.Request(base + "/", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        await asyncio.to_thread(urllib.request.urlopen, req, None, 10)
    assert e.value.code == 405


async def test_authentication_and_https(database: Influxd, tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    (tmp_path / "token").write_text("tv-token-123\n")
    ca = TestCA(tmp_path / "ca")
    cert, key = ca.issue("dashboard", server=True, hosts=("127.0.0.1",))
    cfg = DashboardConfig(host="0.0.0.0", port=0, username="shift",
                          password_file=tmp_path / "pw", token_file=tmp_path / "token",
                          tls=DashboardTls(cert_file=cert, key_file=key))
    d = Dashboard(cfg, InfluxV1(kind="influxdb-v1", url=database.url, database="edgegw"))
    await d.start()
    try:
        ctx = ssl.create_default_context(cafile=str(ca.path))
        base = f"https://127.0.0.1:{d.port}"
        code, _, h = await asyncio.to_thread(get, base + "/", None, ctx)
        assert code == 401 and "Basic" in h.get("WWW-Authenticate", "")
        bad = base64.b64encode(b"shift:wrong").decode()
        code, _, _ = await asyncio.to_thread(get, base + "/", {"Authorization": f"Basic {bad}"},
                                             ctx)
        assert code == 401
        good = base64.b64encode(b"shift:s3cret").decode()
        code, body, _ = await asyncio.to_thread(get, base + "/",
                                                {"Authorization": f"Basic {good}"}, ctx)
        assert code == 200 and "press1" in body
        code, _, _ = await asyncio.to_thread(get, base + "/orders",
                                             {"Authorization": "Bearer tv-token-123"}, ctx)
        assert code == 200
        # a TV opens the URL with the token once: a cookie, and the token leaves the URL
        req = urllib.request.Request(base + "/?token=tv-token-123")

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *a: Any, **k: Any) -> None:
                return None

        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx),
                                             NoRedirect())
        with pytest.raises(urllib.error.HTTPError) as e:
            await asyncio.to_thread(opener.open, req, None, 10)
        assert e.value.code == 302
        cookie = e.value.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "Secure" in cookie
        code, _, _ = await asyncio.to_thread(get, base + "/", {"Cookie": cookie.split(";")[0]},
                                             ctx)
        assert code == 200
    finally:
        await d.close()
    with pytest.raises(ValueError, match="beyond loopback"):
        DashboardConfig(host="0.0.0.0")


def browser() -> str:
    for name in ("chromium-headless-shell", "chromium", "chromium-browser"):
        if exe := shutil.which(name):
            return exe
    pytest.fail("no headless chromium: run scripts/setup")


def chromium(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([browser(), "--headless", "--no-sandbox", "--disable-gpu",
                           "--no-first-run", "--user-data-dir=/tmp/edgegw-chromium-dash",
                           "--enable-logging=stderr", "--v=0", *args, url],
                          capture_output=True, text=True, timeout=60, check=False)


async def test_the_pages_in_a_headless_browser(dash: Dashboard, database: Influxd) -> None:
    ARTEFACTS.mkdir(exist_ok=True)
    base = f"http://127.0.0.1:{dash.port}"
    for name, path, size in (("overview", "/", "1920,1080"), ("machine", "/machine?id=press2",
                             "1280,900"), ("orders", "/orders", "1280,700"),
                             ("overview-phone", "/", "400,900")):
        shot = ARTEFACTS / f"dashboard-{name}.png"
        r = await asyncio.to_thread(chromium, base + path, f"--screenshot={shot}",
                                    f"--window-size={size}", "--hide-scrollbars")
        assert r.returncode == 0, r.stderr[-2000:]
        assert shot.exists() and shot.stat().st_size > 10_000
        assert "Uncaught" not in r.stderr and "CONSOLE" not in r.stderr, r.stderr[-2000:]
        dom = await asyncio.to_thread(chromium, base + path, "--dump-dom")
        assert dom.returncode == 0
        assert "<img" not in dom.stdout  # the reason with markup stayed text
    # the overview as the browser built it: each tile's numbers are InfluxDB's
    dom = await asyncio.to_thread(chromium, base + "/", "--dump-dom")
    for dev in ("press1", "press2"):
        kpi = one(database, f'SELECT last("parts") AS parts, "availability", "oee" FROM '
                            f'"edgegw/kpi" WHERE device = \'{dev}\'')
        tile = re.search(rf'data-device="{dev}">(.*?)</a>', dom.stdout, re.S)
        assert tile is not None, dom.stdout
        assert f'<b class="parts">{kpi["parts"]}</b>' in tile.group(1)
        assert f'<b class="oee">{100 * kpi["oee"]:.0f} %</b>' in tile.group(1)


async def test_the_trace_page_shows_a_product_record_and_its_process_curve(
        influx: Influxd) -> None:
    """A tyre's record (as the tracer makes it) and the press's raw samples over its
    window: the page shows the record's numbers and one curve point per raw sample."""
    from gateway.trace.builder import TraceBuilder
    from gateway.trace.spec import TraceSpec

    influx.create_db("edgegw")
    spec = TraceSpec.model_validate({"summaries": [{"point": "platen_temp_top", "above": 160,
                                                    "min": 150}]})
    b = TraceBuilder(spec)
    t0 = time.time() - 600
    code = "88.118.8/TYRE-<b>1</b>"
    samples: list[Batch] = []
    temps = [158.0, 163.5, 168.25, 170.0, 169.5]
    for i, v in enumerate(temps):
        b.observe(t0 + i, True, code, {"platen_temp_top": v}, ("platen_temp_top",),
                  {"compound": "88.118.8/CMP-1"})
        samples.append(Batch("gw1", "press1", "presstec/tyre-curing-tc48@3.2",
                             int((t0 + i) * 1000), {"platen_temp_top": v}))
    [rec] = b.observe(t0 + len(temps), False, None, {}, ())
    record = Batch("gw1", "press1", "presstec/tyre-curing-tc48/trace@3.2",
                   int(rec.start * 1000), rec.fields(spec, "88.118.8/PRESS-01"))
    load(influx, [*samples, record])
    d = Dashboard(DashboardConfig(port=0),
                  InfluxV1(kind="influxdb-v1", url=influx.url, database="edgegw"))
    await d.start()
    try:
        base = f"http://127.0.0.1:{d.port}"
        status, listing, _ = await asyncio.to_thread(get, base + "/trace")
        assert status == 200 and "TYRE-&lt;b&gt;1&lt;/b&gt;" in listing
        assert "<b>1</b>" not in listing
        href = re.search(r'href="(/trace\?code=[^"]+)"', listing)
        assert href is not None
        status, body, _ = await asyncio.to_thread(get, base + href.group(1).replace("&amp;", "&"))
        assert status == 200, body
        assert "88.118.8/CMP-1" in body and ">pass<" in body
        assert f"<td>{len(temps)}</td><td>158</td><td>170</td><td>165.85</td>" in body
        curve = re.search(r'id="curve-platen_temp_top"><polyline points="([^"]+)"', body)
        assert curve is not None and len(curve.group(1).split()) == len(temps)
        status, _, _ = await asyncio.to_thread(get, base + "/trace?code=88.118.8/NONE")
        assert status == 404
    finally:
        await d.close()
