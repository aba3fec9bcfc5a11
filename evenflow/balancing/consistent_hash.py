"""consistent_hash: a ring of virtual nodes, looked up by bisection (Karger et al. 1997, ketama).

Each backend puts points on a 64-bit ring at key_hash(f"{address}#{i}"); a key goes to the
first point at or after key_hash(key), wrapping. A point's place depends on nothing but its
backend's address, so every node and every run builds the same ring, adding a backend moves
only the keys its points take, and removing one moves only its own keys.

Weight scales the count, as in nginx: round(virtual_nodes x weight) points, at least 1 while the
weight is above 0, none at 0. A count depends on nothing but the backend's own weight, and points
are numbered, so a weight change (a slow-start ramp step included) adds or drops points of that
backend only and moves only keys to or from it. Scaling by the mean weight instead would keep
the ring's size fixed, but every weight or membership change in a weighted pool would then nudge
every count and move keys between backends that did not change (measured: 2-3% of keys).
Large weights would make a huge ring, so past MAX_RING_POINTS the weight unit doubles until the
ring fits; only a change that crosses such a step rescales every backend.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Collection, Sequence
from operator import attrgetter
from typing import ClassVar

from evenflow.balancing.base import BalancerOptions, Needs, PickContext, register
from evenflow.balancing.hashing import SlotTable, key_hash
from evenflow.core.backend import BackendState

# Most points on a ring, as many as a default Maglev table has slots: about 3 MB of positions and
# owners, and ~0.1 s to build on a slow core. 100 backends of weight 4 fit at 160 points each.
MAX_RING_POINTS = 1 << 16

# A point past every 64-bit hash, owned by the first point's backend: a key beyond the last
# point wraps to the first without a branch on the hot path.
_RING_END = 1 << 64


def ring_points(
    backends: Sequence[BackendState], virtual_nodes: int
) -> tuple[list[int], list[BackendState], list[BackendState]]:
    """(sorted point positions, the owner of each point, the backends with points)."""
    # address order: ties between positions then break the same way on every node
    usable = sorted((b for b in backends if b.effective_weight > 0), key=attrgetter("address"))
    if not usable:
        return [], [], []
    # the weight that earns `virtual_nodes` points: 1, doubled until the ring fits the bound
    unit = 1.0
    while virtual_nodes * sum(b.effective_weight for b in usable) / unit > MAX_RING_POINTS:
        unit *= 2
    # one int per point, position << 40 | backend rank << 20 | point number, sorted as ints:
    # faster and smaller than tuples (ranks and counts stay below 2**20: MAX_RING_POINTS)
    entries: list[int] = []
    for rank, b in enumerate(usable):
        # round() takes halves to even: the same on every node, which is what matters here
        count = max(1, round(virtual_nodes * b.effective_weight / unit))
        address = b.address
        tag = rank << 20
        entries += [key_hash(f"{address}#{i}".encode()) << 40 | tag | i for i in range(count)]
    entries.sort()
    mask = (1 << 20) - 1
    return [e >> 40 for e in entries], [usable[e >> 20 & mask] for e in entries], usable


@register
class ConsistentHash(SlotTable):
    """The ring; a pick with no hash key sweeps the points, so it spreads by weight."""

    name: ClassVar[str] = "consistent_hash"
    # The algorithm keys on whatever bytes the data plane passes as ctx.hash_key: a header or
    # cookie on HTTP, the client address on TCP/UDP. At most it needs the client address;
    # config/ refuses an HTTP-keyed hash_key on a tcp/udp listener, which it alone can see.
    needs: ClassVar[Needs] = Needs.CLIENT_ADDR
    takes_options: ClassVar[bool] = True

    __slots__ = ("_points",)

    def __init__(
        self, backends: Sequence[BackendState], options: BalancerOptions | None = None
    ) -> None:
        opts = options if options is not None else BalancerOptions()
        points, owners, usable = ring_points(backends, opts.virtual_nodes)
        self._points = (*points, _RING_END)
        super().__init__((*owners, *owners[:1]), len(points), usable, opts.bounded_load)

    def expected_shares(self) -> dict[BackendState, float]:
        """Each backend's share of the ring: the arcs that end at its points."""
        points, owners = self._points, self._owners
        shares = dict.fromkeys(self._backends, 0)
        if points[:-1]:
            # the first point's arc starts at the last point and wraps past 2**64
            shares[owners[0]] += points[0] + _RING_END - points[-2]
            for k in range(1, self._size):
                shares[owners[k]] += points[k] - points[k - 1]
        return {b: arc / _RING_END for b, arc in shares.items()}

    def pick(self, ctx: PickContext, avoid: Collection[BackendState] = ()) -> BackendState | None:
        key = ctx.hash_key
        if key is None:
            return self.spread(avoid)
        return self.pick_hash(key_hash(key), avoid)

    def pick_hash(self, h: int, avoid: Collection[BackendState] = ()) -> BackendState | None:
        """The backend for a key whose key_hash is `h`: the first point at or after it."""
        owners = self._owners
        if not owners:
            return None
        slot = bisect_left(self._points, h)
        first = owners[slot]
        if not avoid and (self._bound is None or first.in_flight == 0):
            return first
        return self.settle(slot if slot < self._size else 0, avoid)
