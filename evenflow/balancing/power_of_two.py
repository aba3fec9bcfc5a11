"""Power of two choices: draw two distinct backends at random, send to the less loaded one.

Load is `in_flight / effective_weight`, read from the live counters at pick time. Candidates are
drawn in proportion to weight (uniformly when weights are equal). On a tie the first draw wins,
so at zero load the shares are exactly the weighted random ones.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from typing import ClassVar

from evenflow.balancing.base import Needs, PickContext, register
from evenflow.balancing.random_pick import WeightedSampler
from evenflow.core.backend import BackendState


def _less_loaded(
    backends: Sequence[BackendState], weights: Sequence[float], sampler: WeightedSampler
) -> BackendState:
    """Two distinct draws (needs n >= 2), the lower `in_flight / weight` wins, the first on ties."""
    i = sampler.draw()
    j = sampler.draw_other(i)
    a, b = backends[i], backends[j]
    return b if b.in_flight / weights[j] < a.in_flight / weights[i] else a


class PowerOfTwo:
    """Power of two choices over weighted draws; with one backend, that backend."""

    name: ClassVar[str] = "power_of_two"
    needs: ClassVar[Needs] = Needs.NONE

    __slots__ = ("_backends", "_weights", "_random", "_sampler")

    def __init__(
        self, backends: Sequence[BackendState], *, rng: random.Random | None = None
    ) -> None:
        usable = [b for b in backends if b.effective_weight > 0]
        self._backends = tuple(usable)
        self._weights = tuple(b.effective_weight for b in usable)
        # the module's shared generator by default: Python reseeds it in forked workers
        self._random = rng.random if rng is not None else random.random
        self._sampler = WeightedSampler(self._weights, self._random)

    def pick(self, ctx: PickContext, avoid: Collection[BackendState] = ()) -> BackendState | None:
        backends = self._backends
        if len(backends) < 2:
            return backends[0] if backends else None
        if avoid:
            # Retry: the same choice among the backends not avoided, O(n); if all are, fall through.
            rest = [(b, w) for b, w in zip(backends, self._weights, strict=True) if b not in avoid]
            if len(rest) == 1:
                return rest[0][0]
            if rest:
                weights = [w for _, w in rest]
                sampler = WeightedSampler(weights, self._random)
                return _less_loaded([b for b, _ in rest], weights, sampler)
        return _less_loaded(backends, self._weights, self._sampler)


register(PowerOfTwo)  # not as a decorator: see register()
