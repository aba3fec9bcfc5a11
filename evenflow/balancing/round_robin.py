"""Round robin: every backend with weight > 0 in turn, ignoring how large the weight is.

Owns only the rotation. Which backends are usable, and at what weight, is core/pool.py's call; a
weight of 0 (drain) means no new traffic, so those backends are left out of the rotation.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Sequence
from typing import ClassVar

from evenflow.balancing.base import Needs, PickContext, register
from evenflow.core.backend import BackendState


class RoundRobin:
    """a b c a b c ...; a retry skips avoided backends and the rotation carries on after it."""

    name: ClassVar[str] = "round_robin"
    needs: ClassVar[Needs] = Needs.NONE

    __slots__ = ("_n", "_next")

    def __init__(self, backends: Sequence[BackendState]) -> None:
        usable = tuple(b for b in backends if b.effective_weight > 0)
        self._n = len(usable)
        # itertools.cycle's C iterator is the cursor: one call per pick, no index arithmetic
        self._next: Callable[[], BackendState] = itertools.cycle(usable).__next__

    def pick(self, ctx: PickContext, avoid: Collection[BackendState] = ()) -> BackendState | None:
        if not self._n:
            return None
        first = self._next()
        if not avoid or first not in avoid:
            return first
        # Retry: take the next one not avoided, so the rotation resumes after the backend chosen.
        # With all avoided, n more steps bring the cursor back to just after `first`.
        nxt = self._next
        for _ in range(self._n):
            candidate = nxt()
            if candidate not in avoid:
                return candidate
        return first


register(RoundRobin)  # not as a decorator: see register()
