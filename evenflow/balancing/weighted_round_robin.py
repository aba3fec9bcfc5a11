"""Smooth weighted round robin, the nginx algorithm (ngx_http_upstream_get_peer).

Every pick adds each backend's weight to its `current`, the largest `current` wins (ties: first in
list order) and the winner gives back the total. Weights 5,1,1 give a a b a c a a: shares exact
over one cycle of sum(weights) picks, and no bursts. Weights are fixed per build, so with integer
weights the cycle is computed once and a pick is one step of a C iterator.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Callable, Collection, Sequence
from typing import ClassVar, Final

from evenflow.balancing.base import Needs, PickContext, register
from evenflow.core.backend import BackendState

# Longest cycle precomputed (tens of KiB of references per pool), and the most backend-steps
# spent building it: each of the cycle's picks scans all n backends, and 2**18 steps take ~15 ms
# here (4000 unequal backends would take a second). Past either bound, or with fractional
# weights, the algorithm runs live, O(n) per pick.
MAX_CYCLE: Final = 4096
MAX_BUILD_STEPS: Final = 1 << 18


class _Smooth:
    """nginx's running state: `current` per backend; one step returns the winner's index."""

    __slots__ = ("weights", "current", "total")

    def __init__(self, weights: Sequence[float]) -> None:
        self.weights = tuple(weights)
        self.current = [0.0] * len(weights)
        self.total = sum(weights)

    def step(self) -> int:
        cur = self.current
        cur[:] = map(operator.add, cur, self.weights)
        # max() and index() both return the first maximum: nginx's tie rule (first in list)
        best = cur.index(max(cur))
        cur[best] -= self.total
        return best

    def step_among(self, eligible: Sequence[int]) -> int:
        """One step as nginx takes it on a retry: tried backends neither gain nor count in total."""
        cur, weights = self.current, self.weights
        best, best_cur, total = -1, -math.inf, 0.0
        for i in eligible:
            w = weights[i]
            total += w
            c = cur[i] + w
            cur[i] = c
            if c > best_cur:
                best, best_cur = i, c
        cur[best] -= total
        return best


def _cycle_weights(weights: Sequence[float]) -> list[int] | None:
    """Integer weights divided by their gcd, if all are integers and one cycle is cheap enough.

    The sequence is unchanged by scaling every weight alike (each `current` scales with them), so
    10,20,30 runs the cycle of 1,2,3.
    """
    if not all(w.is_integer() for w in weights):
        return None
    ints = [int(w) for w in weights]
    g = math.gcd(*ints)
    reduced = [w // g for w in ints]
    length = sum(reduced)
    if length == len(reduced):
        return reduced  # all equal: the cycle is the list itself, nothing to step through
    return reduced if length <= MAX_CYCLE and length * len(reduced) <= MAX_BUILD_STEPS else None


class WeightedRoundRobin:
    """Smooth weighted round robin; exact shares per cycle, each backend spread across it."""

    name: ClassVar[str] = "weighted_round_robin"
    needs: ClassVar[Needs] = Needs.NONE

    __slots__ = ("_backends", "_weights", "_next", "_live")

    def __init__(self, backends: Sequence[BackendState]) -> None:
        usable = [b for b in backends if b.effective_weight > 0]
        self._backends = tuple(usable)
        self._weights = tuple(b.effective_weight for b in usable)
        self._next: Callable[[], BackendState] | None = None
        self._live: _Smooth | None = None
        ints = _cycle_weights(self._weights) if usable else None
        if ints is None:
            # Fractional weights (slow start ramps) or a cycle too long: run nginx's steps live.
            # Ramps rebuild the balancer often, so a precomputed cycle would not pay off anyway.
            self._live = _Smooth(self._weights)
            return
        if len(ints) == sum(ints):
            schedule = usable  # equal weights: nginx's steps give plain list order
        else:
            smooth = _Smooth([float(w) for w in ints])
            schedule = [usable[smooth.step()] for _ in range(sum(ints))]
        self._next = itertools.cycle(schedule).__next__

    def pick(self, ctx: PickContext, avoid: Collection[BackendState] = ()) -> BackendState | None:
        nxt = self._next
        if nxt is None:
            return self._pick_live(avoid)
        first = nxt()
        if not avoid or first not in avoid:
            return first
        heaviest = self._heaviest_not_avoided(avoid)
        if heaviest is None:
            return first  # all avoided: the turn stands, and the cycle moved by one as usual
        # Retry: the next turn in the cycle that is not avoided, skipping the avoided turns. Look
        # at most n turns ahead so a retry stays O(n) whatever the weights.
        for _ in range(len(self._backends)):
            candidate = nxt()
            if candidate not in avoid:
                return candidate
        # A light backend beside heavy avoided ones: its turn is far away, take the heaviest left.
        return heaviest

    def _pick_live(self, avoid: Collection[BackendState]) -> BackendState | None:
        smooth = self._live
        if smooth is None or not self._backends:
            return None
        if avoid:
            eligible = [i for i, b in enumerate(self._backends) if b not in avoid]
            if eligible:
                return self._backends[smooth.step_among(eligible)]
        return self._backends[smooth.step()]

    def _heaviest_not_avoided(self, avoid: Collection[BackendState]) -> BackendState | None:
        best: BackendState | None = None
        best_w = 0.0
        for b, w in zip(self._backends, self._weights, strict=True):
            if w > best_w and b not in avoid:
                best, best_w = b, w
        return best


register(WeightedRoundRobin)  # not as a decorator: see register()
