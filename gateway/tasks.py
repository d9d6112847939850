"""Stopping tasks for certain, in bounded time.

One ``cancel()`` is not always enough: on Python 3.11 ``asyncio.wait_for`` can swallow
a cancellation that arrives as the awaited future completes (CPython gh-86296), and
pymodbus awaits every response that way, so a cancelled poll loop may go on polling.
:func:`stop_tasks` therefore cancels again every ``RECANCEL`` seconds until each task has
ended or the time is up, and never waits for a task that ignores all of it (unlike
``wait_for``, which waits for the cancelled task to finish): it returns those still
running, for the caller to log and leave behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

log = logging.getLogger("edgegw")

RECANCEL = 0.05


async def stop_tasks(tasks: Iterable[asyncio.Task[object]] | Iterable[asyncio.Task[None]],
                     timeout: float) -> list[asyncio.Task[object]]:  # noqa: ASYNC109
    """Cancel ``tasks`` (again and again) until they end or ``timeout`` seconds passed;
    return the ones still running."""
    pending: set[asyncio.Task[object]] = {t for t in tasks if not t.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while pending:
        for t in pending:
            t.cancel()
        left = deadline - loop.time()
        if left <= 0:
            break
        _, pending = await asyncio.wait(pending, timeout=min(RECANCEL, left))
    return sorted(pending, key=lambda t: t.get_name())


def describe_stuck(tasks: list[asyncio.Task[object]]) -> str:
    """Each task's name and where it waits (its innermost frame)."""
    out = []
    for t in tasks:
        stack = t.get_stack(limit=1)
        where = (f"{stack[-1].f_code.co_filename}:{stack[-1].f_lineno}" if stack else "?")
        out.append(f"{t.get_name()} (at {where})")
    return ", ".join(out)
