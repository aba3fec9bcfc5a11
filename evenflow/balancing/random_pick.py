"""Random: each pick draws a backend with probability proportional to its effective weight.

Also home of WeightedSampler, the draw power_of_two builds on. The default source is the `random`
module's shared generator, which Python reseeds in a forked child, so worker processes do not
draw the same sequence; tests pass their own seeded `random.Random`.
"""

from __future__ import annotations

import itertools
import random
from bisect import bisect_right
from collections.abc import Callable, Collection, Sequence
from typing import ClassVar

from evenflow.balancing.base import Needs, PickContext, register
from evenflow.core.backend import BackendState


class WeightedSampler:
    """Draws indices 0..n-1 in proportion to `weights` (all > 0): O(1) when equal, else O(log n)."""

    __slots__ = ("n", "_cum", "_total", "_random", "_is_uniform")

    def __init__(self, weights: Sequence[float], rand: Callable[[], float]) -> None:
        self.n = len(weights)
        self._cum = list(itertools.accumulate(weights))
        # the last cumulative sum, not sum(): u < _total must keep bisect inside the list
        self._total = self._cum[-1] if self._cum else 0.0
        self._random = rand
        self._is_uniform = len(set(weights)) <= 1

    def draw(self) -> int:
        if self._is_uniform:
            # int(random() * n) < n for any n < 2**53: random() < 1 and rounding cannot reach n
            return int(self._random() * self.n)
        return bisect_right(self._cum, self._random() * self._total)

    def draw_other(self, i: int) -> int:
        """A second index, never `i`, weighted among the others (sampling without replacement)."""
        if self._is_uniform:
            j = int(self._random() * (self.n - 1))
            return j + 1 if j >= i else j
        cum = self._cum
        lo = cum[i - 1] if i else 0.0
        hi = cum[i]
        # draw over the others' mass, then step over i's interval [lo, hi)
        u = self._random() * (self._total - hi + lo)
        if u < lo:
            return bisect_right(cum, u)
        # i is not last here (its interval would end the range); rounding may still land on it
        return min(max(bisect_right(cum, u + (hi - lo)), i + 1), self.n - 1)


class RandomPick:
    """Weighted random choice; uniform when all weights are equal."""

    name: ClassVar[str] = "random"
    needs: ClassVar[Needs] = Needs.NONE

    __slots__ = ("_backends", "_weights", "_random", "_sampler")

    def __init__(
        self, backends: Sequence[BackendState], *, rng: random.Random | None = None
    ) -> None:
        usable = [b for b in backends if b.effective_weight > 0]
        self._backends = tuple(usable)
        self._weights = tuple(b.effective_weight for b in usable)
        self._random = rng.random if rng is not None else random.random
        self._sampler = WeightedSampler(self._weights, self._random)

    def pick(self, ctx: PickContext, avoid: Collection[BackendState] = ()) -> BackendState | None:
        backends = self._backends
        if not backends:
            return None
        if avoid:
            # Retry: draw among the backends not avoided, O(n); if all are, fall through.
            rest = [(b, w) for b, w in zip(backends, self._weights, strict=True) if b not in avoid]
            if rest:
                sampler = WeightedSampler([w for _, w in rest], self._random)
                return rest[sampler.draw()][0]
        return backends[self._sampler.draw()]


register(RandomPick)  # not as a decorator: see register()
