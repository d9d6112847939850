"""Real servers for the tests and the bench: started on free loopback ports with temp
dirs, stopped by PID (never by name). Test support, not shipped (issue 19: it was in the
simulator package, installed on every gateway)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """Stop a server we started: by its PID, never by name; kill it if it lingers."""
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@dataclass
class Mosquitto:
    """A mosquitto broker; ``persistent`` keeps sessions and queued messages across its
    own restarts (saved on SIGTERM), as a production broker would."""

    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    persistent: bool = False
    #: a second listener with TLS: {port, cafile, certfile, keyfile}; it requires a
    #: client certificate signed by ``cafile`` (mutual TLS)
    tls: dict[str, str | int] | None = None
    #: user -> password: no anonymous clients (a password file made by mosquitto_passwd)
    users: dict[str, str] | None = None

    def start(self) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        conf = self.workdir / "mosquitto.conf"
        persistence = (f"persistence true\npersistence_location {self.workdir}/\n"
                       if self.persistent else "persistence false\n")
        # started as root, mosquitto switches to user 'mosquitto', which cannot write
        # its persistence file into our temp dir: stay the user that started it
        user = "user root\n" if os.geteuid() == 0 else ""
        tls = ""
        if self.tls is not None:
            t = self.tls
            tls = (f"listener {t['port']} 127.0.0.1\ncafile {t['cafile']}\n"
                   f"certfile {t['certfile']}\nkeyfile {t['keyfile']}\n"
                   "require_certificate true\n")
        auth = "allow_anonymous true\n"
        if self.users:
            pw = self.workdir / "mosquitto.passwd"
            pw.write_text("")
            for name, password in self.users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(pw), name, password],
                               check=True, capture_output=True)
            pw.chmod(0o644)  # mosquitto reads it as the user it switched to
            auth = f"allow_anonymous false\npassword_file {pw}\n"
        conf.write_text(
            f"per_listener_settings false\n{auth}{user}{persistence}"
            "max_queued_messages 0\nmax_inflight_messages 0\n"
            f"listener {self.port} 127.0.0.1\n{tls}"
        )
        log = (self.workdir / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=log, stderr=log)
        wait_port(self.port)
        if self.tls is not None:
            wait_port(int(self.tls["port"]))

    def stop(self) -> None:
        stop_process(self.proc, 5)
        self.proc = None


@dataclass
class Amqtt:
    """amqtt, a third-party broker (PyPI) that speaks only MQTT 3.1.1: a CONNECT for v5
    is refused (return code 1), one with properties dropped without an answer. Sessions
    live in its memory (a restart loses them), and it keeps no messages for anonymous
    clients even on a persistent session: give ``users``."""

    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    users: dict[str, str] | None = None

    def start(self) -> None:
        import sys

        exe = Path(sys.executable).parent / "amqtt"
        if not exe.exists():
            raise FileNotFoundError(f"{exe}: amqtt is not installed (scripts/setup installs "
                                    "the dev dependencies)")
        listen = f"listeners:\n  default:\n    type: tcp\n    bind: 127.0.0.1:{self.port}\n"
        conf = self.workdir / "amqtt.yaml"
        if self.users:
            # the entry-point style config: in amqtt 0.12 the FileAuthPlugin cannot be
            # configured the new (plugins: {dotted.path: ...}) way
            from pwdlib import PasswordHash

            hasher = PasswordHash.recommended()
            pw = self.workdir / "amqtt.passwd"
            pw.write_text("".join(f"{u}:{hasher.hash(p)}\n" for u, p in self.users.items()))
            conf.write_text(f"{listen}auth:\n  allow-anonymous: false\n  password-file: {pw}\n"
                            "  plugins: [auth_file]\ntopic-check:\n  enabled: false\n")
        else:
            conf.write_text(f"{listen}plugins:\n"
                            "  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
                            "    allow_anonymous: true\n")
        log = (self.workdir / "amqtt.log").open("ab")
        self.proc = subprocess.Popen([str(exe), "-c", str(conf)], stdout=log, stderr=log)
        wait_port(self.port)

    def stop(self) -> None:
        stop_process(self.proc, 5)
        self.proc = None


@contextlib.contextmanager
def mosquitto(workdir: Path, persistent: bool = False) -> Iterator[Mosquitto]:
    m = Mosquitto(free_port(), workdir, persistent=persistent)
    m.start()
    try:
        yield m
    finally:
        m.stop()


def _wait_http(url: str, timeout: float = 20.0, ok: tuple[int, ...] = (200, 204)) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status in ok:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


@dataclass
class HttpServer:
    """A server process with an HTTP API on a loopback port, stopped by PID."""

    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        stop_process(self.proc, 10)
        self.proc = None


class Influxd(HttpServer):
    """InfluxDB 1.x (Debian ``influxdb``) with its own config and data dir.
    ``max_values_per_tag``: InfluxDB's own limit (default 100,000), lowered in tests."""

    max_values_per_tag = 100_000

    def start(self) -> None:
        d = self.workdir
        conf = d / "influxdb.conf"
        conf.write_text(
            "reporting-disabled = true\n"
            f'bind-address = "127.0.0.1:{free_port()}"\n'
            f'[meta]\n  dir = "{d}/meta"\n'
            f'[data]\n  dir = "{d}/data"\n  wal-dir = "{d}/wal"\n  query-log-enabled = false\n'
            f"  max-values-per-tag = {self.max_values_per_tag}\n"
            f'[http]\n  enabled = true\n  bind-address = "127.0.0.1:{self.port}"\n'
            "  log-enabled = false\n  max-body-size = 0\n"
            "[monitor]\n  store-enabled = false\n"
            "[continuous_queries]\n  enabled = false\n"
            "[subscriber]\n  enabled = false\n"
        )
        log = (d / "influxd.log").open("ab")
        self.proc = subprocess.Popen(["influxd", "run", "-config", str(conf)],
                                     stdout=log, stderr=log)
        _wait_http(f"{self.url}/ping")

    def query(self, q: str, db: str) -> list[dict[str, object]]:
        """Run InfluxQL; return the series of the first statement."""
        import json
        import urllib.parse
        import urllib.request

        url = f"{self.url}/query?" + urllib.parse.urlencode({"db": db, "q": q, "epoch": "ms"})
        with urllib.request.urlopen(url, timeout=10) as r:
            res = json.loads(r.read())["results"][0]
        if "error" in res:
            raise RuntimeError(res["error"])
        return list(res.get("series", []))

    def create_db(self, db: str) -> None:
        import urllib.parse
        import urllib.request

        body = urllib.parse.urlencode({"q": f'CREATE DATABASE "{db}"'}).encode()
        with urllib.request.urlopen(f"{self.url}/query", data=body, timeout=10) as r:
            r.read()  # a connection closed before the answer can cancel the statement


class VictoriaMetrics(HttpServer):
    """Debian ``victoria-metrics``: accepts the InfluxDB v2 write API."""

    def start(self) -> None:
        log = (self.workdir / "victoria-metrics.log").open("ab")
        self.proc = subprocess.Popen(
            ["victoria-metrics", f"-httpListenAddr=127.0.0.1:{self.port}",
             f"-storageDataPath={self.workdir}/vm-data", "-retentionPeriod=100y",
             "-search.latencyOffset=0s", "-loggerLevel=ERROR"],
            stdout=log, stderr=log)
        _wait_http(f"{self.url}/health")

    def export(self, match: str) -> list[dict[str, object]]:
        """Every stored series matching ``match`` (flushed first), as JSON lines."""
        import json
        import urllib.parse
        import urllib.request

        with urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10) as r:
            r.read()
        url = f"{self.url}/api/v1/export?" + urllib.parse.urlencode({"match[]": match})
        with urllib.request.urlopen(url, timeout=10) as r:
            return [json.loads(line) for line in r.read().splitlines() if line.strip()]


S = TypeVar("S", bound=HttpServer)


@contextlib.contextmanager
def _serve(kind: type[S], workdir: Path) -> Iterator[S]:
    s = kind(free_port(), workdir)
    s.start()
    try:
        yield s
    finally:
        s.stop()


def influxd(workdir: Path) -> contextlib.AbstractContextManager[Influxd]:
    return _serve(Influxd, workdir)


def victoria_metrics(workdir: Path) -> contextlib.AbstractContextManager[VictoriaMetrics]:
    return _serve(VictoriaMetrics, workdir)
