"""Which backends of a pool may take new traffic, and at what effective weight.

Applied once here for every algorithm, so that no balancer knows about health, drain, slow
start or panic: the control plane builds each balancer from `view(...)`'s answer.

- A backend that is disabled or draining, or has weight 0, takes no new traffic.
- Of the rest, the healthy ones (active probes pass, not ejected by passive detection) do.
- Panic (Envoy's term): when healthy backends are fewer than `panic_threshold` of the rest,
  a shared problem is more likely than that many dead backends, and ejecting most of the pool
  would overload the few left; so traffic goes to all of them.
- Slow start: a backend that just became usable ramps its weight linearly from 10% to 100%
  over `slow_start_s`, so a cold cache or JIT is not hit with a full share at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from evenflow.core.backend import Admin, BackendState, Health

SLOW_START_FLOOR: Final = 0.1  # a recovering backend starts at 10% of its weight


class PoolView:
    """The outcome: backends to balance over, whether that is a panic, and whether weights
    are still ramping (the control plane then rebuilds the view again shortly)."""

    __slots__ = ("usable", "panic", "ramping", "healthy", "candidates")

    def __init__(
        self,
        usable: list[BackendState],
        panic: bool,
        ramping: bool,
        healthy: int,
        candidates: int,
    ) -> None:
        self.usable = usable
        self.panic = panic
        self.ramping = ramping
        self.healthy = healthy
        self.candidates = candidates


def view(
    backends: Sequence[BackendState],
    now: float,
    slow_start_s: float = 0.0,
    panic_threshold: float = 0.0,
) -> PoolView:
    """Decide the usable set and set every backend's `effective_weight` (0 when not usable).

    `now` is monotonic time in seconds; `panic_threshold` a share from 0 to 1.
    """
    candidates = [b for b in backends if b.admin is Admin.ENABLED and b.weight > 0]
    healthy = [b for b in candidates if b.health is Health.HEALTHY and b.ejected_until <= now]
    # a backend declared unhealthy at start (initial_state) and never probed yet is not known
    # to be down: it neither counts towards panic nor gets traffic in one
    known = [b for b in candidates if not b.awaiting_probe]
    panic = bool(known) and len(healthy) < panic_threshold * len(known)
    usable = known if panic else healthy
    ramping = False
    chosen = set(map(id, usable))
    for backend in backends:
        if id(backend) not in chosen:
            backend.effective_weight = 0.0
            continue
        weight = float(backend.weight)
        elapsed = now - backend.recovered_at
        if not panic and slow_start_s > 0 and backend.recovered_at and elapsed < slow_start_s:
            weight *= max(SLOW_START_FLOOR, elapsed / slow_start_s)
            ramping = True
        backend.effective_weight = weight
    return PoolView(usable, panic, ramping, len(healthy), len(known))


def usable(backends: Sequence[BackendState]) -> list[BackendState]:
    """The usable backends with no time-based rules (no slow start, no panic)."""
    return view(backends, 0.0).usable
