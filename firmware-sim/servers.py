"""Real servers for tests, the demo and the bench: started on free loopback ports with
temp dirs, stopped by PID (never by name)."""

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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

    def start(self) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        conf = self.workdir / "mosquitto.conf"
        persistence = (f"persistence true\npersistence_location {self.workdir}/\n"
                       if self.persistent else "persistence false\n")
        # started as root, mosquitto switches to user 'mosquitto', which cannot write
        # its persistence file into our temp dir: stay the user that started it
        user = "user root\n" if os.geteuid() == 0 else ""
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n{user}{persistence}"
            "max_queued_messages 0\nmax_inflight_messages 0\n"
        )
        log = (self.workdir / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=log, stderr=log)
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # by PID, never by name
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


@contextlib.contextmanager
def mosquitto(workdir: Path, persistent: bool = False) -> Iterator[Mosquitto]:
    m = Mosquitto(free_port(), workdir, persistent=persistent)
    m.start()
    try:
        yield m
    finally:
        m.stop()
