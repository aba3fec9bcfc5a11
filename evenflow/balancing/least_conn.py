"""Least connections: the backend with the fewest requests in flight per unit of weight.

`in_flight` is the live counter the data plane moves on BackendState, so it survives rebuilds;
this module reads it and keeps nothing but the weights and a rotating start. The scan is O(n), a
tight loop, which beats an ordered structure kept in step with every request start and end.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import ClassVar

from evenflow.balancing.base import Needs, PickContext, register
from evenflow.core.backend import BackendState


class LeastConn:
    """Lowest `in_flight / effective_weight`; among equals, successive picks rotate."""

    name: ClassVar[str] = "least_conn"
    needs: ClassVar[Needs] = Needs.NONE

    __slots__ = ("_n", "_is_equal", "_ring", "_pairs", "_after", "_start")

    def __init__(self, backends: Sequence[BackendState]) -> None:
        usable = [b for b in backends if b.effective_weight > 0]
        n = len(usable)
        self._n = n
        # The list twice, so a scan starting anywhere is one slice: ring[start:start + n].
        # Weights are read here, not per pick: a weight set to 0 meanwhile cannot divide by zero.
        self._is_equal = len({b.effective_weight for b in usable}) <= 1
        self._ring = tuple(usable) * 2
        self._pairs = tuple((b, b.effective_weight) for b in usable) * 2
        # where the next scan starts after a backend wins: just past it, so ties take turns
        self._after = {b: (i + 1) % n for i, b in enumerate(usable)}
        self._start = 0

    def pick(self, ctx: PickContext, avoid: Collection[BackendState] = ()) -> BackendState | None:
        n = self._n
        if not n:
            return None
        start = self._start
        best: BackendState | None = None
        if avoid:
            best = self._least_not_avoided(avoid)
        if best is None:
            if self._is_equal:
                # equal weights: compare the integer counters, no division
                scan = self._ring[start : start + n]
                best = scan[0]
                low = best.in_flight
                for b in scan:
                    if b.in_flight < low:
                        best, low = b, b.in_flight
            else:
                best, w = self._pairs[start]
                low_w = best.in_flight / w
                for b, w in self._pairs[start : start + n]:
                    load = b.in_flight / w
                    if load < low_w:
                        best, low_w = b, load
        self._start = self._after[best]
        return best

    def _least_not_avoided(self, avoid: Collection[BackendState]) -> BackendState | None:
        """The retry path: the same rule over the backends not in `avoid`; None if all are."""
        start, n = self._start, self._n
        best: BackendState | None = None
        low = 0.0
        for b, w in self._pairs[start : start + n]:
            if b in avoid:
                continue
            load = b.in_flight / w
            if best is None or load < low:
                best, low = b, load
        return best


register(LeastConn)  # not as a decorator: see register()
