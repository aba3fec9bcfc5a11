"""Which backends of a pool may take new traffic, and at what effective weight.

Applied once here for every algorithm, so that no balancer knows about health or weights set
at runtime: the control plane builds each balancer from `usable(...)`'s answer.
"""

from __future__ import annotations

from collections.abc import Sequence

from evenflow.core.backend import BackendState, Health


def usable(backends: Sequence[BackendState]) -> list[BackendState]:
    """The backends a balancer may pick from, with `effective_weight` brought up to date."""
    chosen = []
    for backend in backends:
        backend.effective_weight = float(backend.weight)
        if backend.weight > 0 and backend.health is Health.HEALTHY:
            chosen.append(backend)
    return chosen
