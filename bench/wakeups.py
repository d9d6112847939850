"""What a wake-up costs on this machine: ten asyncio tasks each wake every P seconds and
do the same small piece of work (a dict of 50 floats dumped to JSON); printed per rate,
the work's median time (``perf_counter`` around it) and the process's CPU per wake-up
(user + system). A process that sleeps between events finds its caches cold; on the
reference machine the same work takes three times as long at 100 wake-ups/s as at
10,000/s, which is why the gateway reads devices in poll slots and, with
``connection.gather``, OPC UA notifications at shared ticks (bench/README.md).

    .venv/bin/python -m bench.wakeups [--seconds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="measured per rate")
    a = ap.parse_args()
    print(f"{'wake-ups/s':>10} {'work median us':>15} {'CPU us per wake-up':>19}")
    for period in (1.0, 0.1, 0.01, 0.001):
        n, median, per = asyncio.run(measure(period, a.seconds))
        print(f"{n / a.seconds:10.0f} {median:15.1f} {per:19.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
