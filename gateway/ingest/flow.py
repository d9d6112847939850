"""Client-side flow control for the ingest's MQTT client.

Receive Maximum (MQTT v5) asks the broker to keep at most N unacknowledged messages in
flight, but a broker may not keep to it: mosquitto 2.0.11, resuming a session with a
large backlog, sent about six messages for every acknowledgement (measured: 95,000
queued in the client with a window of 10,000, 1.1 GB RSS), and MQTT 3.1.1 has no such
window at all. aiomqtt's queue is unbounded, and bounding it drops messages (never
acknowledged in that session). So the gate stops reading the socket while ``high``
messages wait in the queue and reads again at ``high // 2``: TCP then holds the broker
back, nothing is dropped, and memory is bounded by the queue, whatever the broker does.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiomqtt


class ReadGate:
    def __init__(self, client: aiomqtt.Client, high: int) -> None:
        self.client = client
        self.high = high
        self.low = max(1, high // 2)
        self.paused = False
        self.pauses = 0  # times reading stopped (the broker sent more than the window)
        self.peak = 0  # most messages waiting in the queue at once
        self._paho: Any = client._client
        self._queue: asyncio.Queue[Any] = client._queue
        self._fd: int | None = None
        opened: Any = self._paho.on_socket_open
        took: Any = self._paho.on_message

        def on_socket_open(c: Any, userdata: Any, sock: Any) -> None:
            opened(c, userdata, sock)  # aiomqtt adds its reader (soon, thread-safe)
            self._fd = sock.fileno()
            self.paused = False

        def on_message(c: Any, userdata: Any, message: Any) -> None:
            took(c, userdata, message)
            n = self._queue.qsize()
            self.peak = max(self.peak, n)
            if not self.paused and n >= self.high:
                self._pause()

        self._paho.on_socket_open = on_socket_open
        self._paho.on_message = on_message

    def _pause(self) -> None:
        if self._fd is not None:
            asyncio.get_running_loop().remove_reader(self._fd)
            self.paused = True
            self.pauses += 1

    def drained(self) -> None:
        """Call after taking a message: reads again once the queue is down to ``low``."""
        if self.paused and self._queue.qsize() <= self.low:
            self.paused = False
            sock = self._paho._sock
            if sock is not None and self._fd is not None and sock.fileno() == self._fd:
                asyncio.get_running_loop().add_reader(self._fd, self._read)

    def _read(self) -> None:
        # as aiomqtt's own reader: a failed read ends the session
        try:
            while True:
                self._paho.loop_read()
                sock = self._paho._sock
                if sock is not None and hasattr(sock, "pending") and sock.pending() > 0:
                    continue  # TLS: decoded bytes left behind
                break
        except Exception as exc:  # noqa: BLE001  (aiomqtt does the same)
            done = self.client._disconnected
            if not done.done():
                done.set_exception(exc)
