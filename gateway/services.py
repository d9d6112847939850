"""The agent's services and what they report, under one small protocol.

A :class:`Reporter` says what it knows: ``status()`` (keys of the retained status topic)
and ``metrics()`` (families for ``/metrics``). A :class:`Service` is a reporter that also
runs (``run`` until cancelled or done, ``stop`` to end it gently). The gateway keeps one
list of them: the status topic and ``/metrics`` are rendered from that list, once, and
no part probes another's attributes.

The optional services (reload, identifiers, certificate watch, modem watchdog, fault
summaries) run under a :class:`Supervisor`: one that fails is logged, counted (``/healthz``,
``/metrics``) and started again after a backoff; it never stops polling or the uplink.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from gateway.backoff import Backoff
from gateway.httpserve import Family, Sample

log = logging.getLogger("edgegw")

#: an optional service that fails is restarted after a wait that doubles up to this
SERVICE_BACKOFF = (1.0, 300.0)
#: a failure older than this (s) no longer resets the backoff's doubling
QUIET_RESET = 3600.0

__all__ = ["Family", "Reporter", "Sample", "Service", "Supervisor", "Task", "render_status"]


class Reporter(Protocol):
    def status(self) -> dict[str, object]:
        """Keys this part adds to the status topic (none: an empty dict)."""
        ...

    def metrics(self) -> list[Family]:
        """This part's ``/metrics`` families."""
        ...


class Service(Reporter, Protocol):
    @property
    def name(self) -> str: ...

    async def run(self) -> None:
        """Run until cancelled (or done: a service that returns has nothing left to do)."""
        ...

    def stop(self) -> None:
        """Ask :meth:`run` to end on its own (a service with nothing to finish may
        ignore it: it is cancelled)."""
        ...


class Task:
    """A service that is one coroutine and reports nothing of its own."""

    def __init__(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        self._name = name
        self._run = run

    @property
    def name(self) -> str:
        return self._name

    async def run(self) -> None:
        await self._run()

    def stop(self) -> None:
        pass

    def status(self) -> dict[str, object]:
        return {}

    def metrics(self) -> list[Family]:
        return []


def render_status(reporters: Iterable[Reporter]) -> dict[str, object]:
    """Every reporter's status keys, in the reporters' order (each part owns its keys)."""
    out: dict[str, object] = {}
    for r in reporters:
        out.update(r.status())
    return out


class Supervisor:
    """Runs optional services isolated and remembers their failures:
    ``failures[name] = (count, last error, loop time of the last failure)``."""

    def __init__(self) -> None:
        self.failures: dict[str, tuple[int, str, float]] = {}

    async def isolated(self, service: Service) -> None:
        """Run ``service``; when it fails, log and count it and start it again after a
        backoff (1 s doubling to 5 min; reset after an hour without failure)."""
        loop = asyncio.get_running_loop()
        backoff = Backoff(*SERVICE_BACKOFF)
        name = service.name
        while True:
            t0 = loop.time()
            try:
                await service.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the isolation boundary: any failure is contained
                if loop.time() - t0 > QUIET_RESET:
                    backoff.reset()
                count = self.failures.get(name, (0, "", 0.0))[0] + 1
                why = (f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)[:300]
                self.failures[name] = (count, why, loop.time())
                wait = backoff.next()
                log.error("service %s failed (%d time(s)): %s; restarting it in %.0f s "
                          "(devices and the uplink keep running)", name, count, why,
                          wait, exc_info=exc if count == 1 else None)
                await asyncio.sleep(wait)

    def failed(self, now: float) -> dict[str, dict[str, object]]:
        """For /healthz: each service that failed, how often, why, how long ago."""
        return {name: {"failures": n, "last_error": why, "seconds_ago": round(now - when)}
                for name, (n, why, when) in sorted(self.failures.items())}

    def failed_within(self, now: float, seconds: float) -> bool:
        return any(now - when < seconds for _, _, when in self.failures.values())

    def status(self) -> dict[str, object]:
        return {}

    def metrics(self) -> list[Family]:
        return [Family("service_failures_total", "counter",
                       "optional services (identifiers, reload, ...) that failed and were "
                       "restarted",
                       [({"service": k}, v[0]) for k, v in sorted(self.failures.items())]
                       or [({"service": "none"}, 0)])]
