"""Subscriptions' answers read together: a shared clock opens the sockets of the
subscribing sessions (``connection.gather``) for one turn of the event loop per tick.

Measured (bench/README.md, issue 20): on the reference machine a process that sleeps
between events pays for each wake-up (the same Python work takes ~70-90 us at 100
wake-ups a second, 20-30 us at 10,000: ``python -m bench.wakeups``), so ten servers
publishing every 100 ms, each on its own clock, cost what ten Modbus devices polled each
at its own instant cost: a wake-up, a pipeline pass, a spool commit and an MQTT message
per notification. Between ticks the gate leaves the sockets unread (the kernel buffers
the answers; TCP flow control holds the rest); at a tick it resumes them, the selector
returns every one that has data in one call, their notifications go through the
pipeline, the spool and the MQTT client in one turn, and the sockets are paused again. A
notification waits up to ``gather`` longer. The other requests on a subscribing session
(the heartbeat's reads, asyncua's secure channel renewals and its watchdog probe after a
quiet spell) are answered at a tick too, so ``gather`` is at most half the request
timeout (config.py).
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import math
import termios
from collections.abc import Callable


def pending(transport: asyncio.Transport) -> int:
    """Bytes waiting in ``transport``'s socket (0 when that cannot be told)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return 0
    try:
        return int.from_bytes(fcntl.ioctl(sock.fileno(), termios.FIONREAD, bytes(4)), "little")
    except (OSError, ValueError):
        return 0


class Gate:
    """The sockets read at the ticks of one clock (every ``interval`` s, on a grid of
    the loop's time so that gates of equal interval tick together)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.members: set[asyncio.Transport] = set()
        self._timer: asyncio.TimerHandle | None = None
        self.ticks = 0

    def add(self, transport: asyncio.Transport) -> None:
        """Read ``transport`` at the ticks only, from now on."""
        self.members.add(transport)
        transport.pause_reading()
        if self._timer is None:
            self._schedule()

    def join(self, transport: asyncio.Transport) -> Callable[[], None]:
        """:meth:`add` ``transport``; the call that lets it go."""
        self.add(transport)
        return functools.partial(self.discard, transport)

    def discard(self, transport: asyncio.Transport) -> None:
        """Read ``transport`` as data comes again (its stream ends)."""
        if transport in self.members:
            self.members.discard(transport)
            if not transport.is_closing():
                transport.resume_reading()
        if not self.members:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            # forget this gate, not a newer one of the same interval (a stream that ends
            # after its gate emptied and another took its place)
            key = (asyncio.get_running_loop(), self.interval)
            if _GATES.get(key) is self:
                del _GATES[key]

    def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        i = self.interval
        self._timer = loop.call_at((math.floor(loop.time() / i) + 1) * i, self._tick)

    def _tick(self) -> None:
        self.ticks += 1
        for t in list(self.members):
            if t.is_closing():
                self.members.discard(t)
            else:
                t.resume_reading()
        self._pause_later()
        if self.members:
            self._schedule()
        else:
            self._timer = None

    def _pause_later(self) -> None:
        # the selector's next call returns the sockets with data and queues their
        # callbacks behind what is queued now: pause in the turn after that one
        loop = asyncio.get_running_loop()
        loop.call_soon(loop.call_soon, self._pause)

    def _pause(self) -> None:
        """Pause every member whose socket is drained; one that has more (an answer
        larger than a read, or still arriving) is read on in the next turn."""
        more = False
        for t in self.members:
            if t.is_closing() or not t.is_reading():
                continue
            if pending(t):
                more = True
            else:
                t.pause_reading()
        if more:
            self._pause_later()


_GATES: dict[tuple[asyncio.AbstractEventLoop, float], Gate] = {}


def gate(interval: float) -> Gate:
    """The running loop's gate of ``interval`` (one clock for every device that asks
    for the same interval)."""
    key = (asyncio.get_running_loop(), interval)
    g = _GATES.get(key)
    if g is None:
        g = _GATES[key] = Gate(interval)
    return g
