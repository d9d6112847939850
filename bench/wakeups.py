"""What a wake-up costs on this machine: ten asyncio tasks each wake every P seconds and
do the same small piece of work (a dict of 50 floats dumped to JSON); printed per rate,
the work's median time (``perf_counter`` around it) and the process's CPU per wake-up
(user + system). A process that sleeps between events finds its caches cold; on the
reference machine the same work takes three times as long at 100 wake-ups/s as at
10,000/s, which is why the gateway reads devices in poll slots and, with
``connection.gather``, OPC UA notifications at shared ticks (bench/README.md).

``--sockets`` measures the floor of a design that wakes once per message, as a
subscription client does: ten sender processes, each on its own clock, send a 1 KB
message every P seconds over loopback TCP; the receiver (an asyncio protocol) answers
each with 60 bytes, as a client answers a PublishResponse with its next PublishRequest,
and does nothing else (then again with the JSON work per message). Printed per period:
messages/s and the receiver's CPU per message.

    .venv/bin/python -m bench.wakeups [--seconds 4] [--sockets]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time


def work() -> str:
    return json.dumps({f"k{i}": i * 1.5 for i in range(50)})


async def measure(period: float, seconds: float) -> tuple[int, float, float]:
    """(wake-ups, median work us, CPU us per wake-up) for ten tasks waking every
    ``period`` s, spread evenly over it."""
    loop = asyncio.get_running_loop()
    took: list[float] = []

    async def task(i: int) -> None:
        due = loop.time() + i * period / 10
        while True:
            due += period
            await asyncio.sleep(due - loop.time())
            t0 = time.perf_counter()
            work()
            took.append(time.perf_counter() - t0)

    tasks = [asyncio.create_task(task(i)) for i in range(10)]
    await asyncio.sleep(min(1.0, seconds / 4))  # warm up
    took.clear()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.sleep(seconds)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    n = len(took)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    took.sort()
    return n, took[n // 2] * 1e6, cpu * 1e6 / max(1, n)


_SENDER = """
import random, socket, sys, time
port, period = int(sys.argv[1]), float(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
time.sleep(random.random() * period)  # a phase of its own
due = time.monotonic()
while True:
    due += period
    time.sleep(max(0.0, due - time.monotonic()))
    s.sendall(b"x" * 1000)
    s.recv(100)
"""


async def receive(period: float, seconds: float, busy: bool) -> tuple[float, float, float]:
    """(messages/s, CPU us per message, of it user us) of a receiver answering ten
    senders' messages, one every ``period`` s each."""
    count = 0

    class Answer(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            nonlocal count
            count += 1
            if busy:
                work()
            self.transport.write(b"r" * 60)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(Answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    senders = [subprocess.Popen([sys.executable, "-c", _SENDER, str(port), str(period)])
               for _ in range(10)]
    try:
        await asyncio.sleep(2.0)  # connected, warm
        count = 0
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        await asyncio.sleep(seconds)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        n = max(1, count)
    finally:
        for s in senders:
            s.kill()
            s.wait()
        server.close()
    user = r1.ru_utime - r0.ru_utime
    cpu = user + r1.ru_stime - r0.ru_stime
    return n / seconds, cpu * 1e6 / n, user * 1e6 / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="measured per rate")
    ap.add_argument("--sockets", action="store_true",
                    help="messages from ten sender processes, each answered")
    a = ap.parse_args()
    if a.sockets:
        print(f"{'messages/s':>10} {'work':>5} {'CPU us per message':>19} {'of it user':>11}")
        for period in (1.0, 0.1, 0.01):
            for busy in (False, True):
                rate, per, user = asyncio.run(receive(period, a.seconds, busy))
                print(f"{rate:10.0f} {'yes' if busy else 'no':>5} {per:19.1f} {user:11.1f}")
        return 0
    print(f"{'wake-ups/s':>10} {'work median us':>15} {'CPU us per wake-up':>19}")
    for period in (1.0, 0.1, 0.01, 0.001):
        n, median, per = asyncio.run(measure(period, a.seconds))
        print(f"{n / a.seconds:10.0f} {median:15.1f} {per:19.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
