"""Exponential backoff with jitter for reconnects."""

from __future__ import annotations

import random

#: one generator for every backoff: jitter needs no stream of its own (a Random is 2.5 KB,
#: one per device before)
_RNG = random.Random()


class Backoff:
    def __init__(self, initial: float, maximum: float, jitter: float = 0.2,
                 rng: random.Random | None = None) -> None:
        self.initial, self.maximum, self.jitter = initial, maximum, jitter
        self._next = initial
        self._rng = rng or _RNG

    def next(self) -> float:
        """The delay to wait now; doubles (up to the maximum) for the next call."""
        base = self._next
        self._next = min(self._next * 2, self.maximum)
        return base * (1 + self._rng.uniform(-self.jitter, self.jitter))

    def reset(self) -> None:
        self._next = self.initial
