"""systemd's notify protocol, without a dependency: READY, WATCHDOG, STATUS, STOPPING.

Under ``Type=notify`` systemd passes ``$NOTIFY_SOCKET`` (a unix datagram socket; a
leading ``@`` is the abstract namespace) and, with ``WatchdogSec=``, ``$WATCHDOG_USEC``
(and ``$WATCHDOG_PID``). Outside systemd every call is a no-op. A send never raises:
the gateway must not fail because its supervisor went away.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        path = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + path[1:] if path.startswith("@") else path
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        self.watchdog_usec = int(usec) if usec.isdigit() and (
            not pid or pid == str(os.getpid())) else 0
        self.sent: list[str] = []  # what was sent (for tests and the log)

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    @property
    def watchdog_interval(self) -> float | None:
        """Ping this often: half the watchdog timeout, as sd_watchdog_enabled(3) advises."""
        return self.watchdog_usec / 2e6 if self.watchdog_usec else None

    def send(self, *fields: str) -> bool:
        if not self.address:
            return False
        msg = "\n".join(fields)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.sendto(msg.encode("utf-8"), self.address)
        except OSError:
            return False
        self.sent.append(msg)
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def reloading(self) -> bool:
        """Type=notify-reload (systemd 253+) wants MONOTONIC_USEC with RELOADING=1;
        READY=1 follows when the reload is done."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading")

    def stopping(self) -> bool:
        return self.send("STOPPING=1", "STATUS=stopping")
