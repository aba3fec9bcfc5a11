"""The key hash every hashing balancer uses, and the slot table they are all built on.

A ring's points and a Maglev table are the same thing seen from a pick: slots in a fixed order,
each owned by a backend. `SlotTable` owns what happens past a key's own slot: a retry that avoids
its backend, bounded load when that backend is full, and picks that come with no key. Building
the slots, and finding a key's slot, is each algorithm's business.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Final

import xxhash

from evenflow.core.backend import BackendState

# XXH3-64 with seed 0: fast, and the same number on every node, run and platform, which
# Python's hash() (salted per process) is not. key_hash(data: bytes) -> int is the C function
# itself: a Python wrapper would add a call frame to every pick.
key_hash: Final[Callable[[bytes], int]] = xxhash.xxh3_64_intdigest

_LOW64 = (1 << 64) - 1

# A fallback walk looks at up to this many slots per backend, then at every backend in address
# order. In an even table n ln n slots meet all n backends; the bound keeps a walk short when
# the one backend left holds a handful of slots (a tiny weight in a huge table).
WALK_SLOTS_PER_BACKEND = 8


def hash_pair(data: bytes) -> tuple[int, int]:
    """Two independent 64-bit hashes of `data`: the halves of its XXH3-128 (seed 0)."""
    h = xxhash.xxh3_128_intdigest(data)
    return h >> 64, h & _LOW64


def _sweep_stride(size: int) -> int:
    """About size / golden ratio, nudged to be coprime with `size`: successive keyless picks land
    far apart on the table, and any `size` of them in a row visit every slot exactly once."""
    stride = max(1, round(size * 0.6180339887498949))
    while math.gcd(stride, size) != 1:
        stride += 1
    return stride


class SlotTable:
    """Slots 0..size-1 in a fixed order, each owned by a backend, and the rules past a key's slot.

    Subclasses build `owners` (which may carry trailing sentinel entries past `size`) and call
    `settle(slot, avoid)` for any pick that is not the plain case: the slot's owner, nothing
    avoided, no bound to check.
    """

    __slots__ = (
        "_owners",
        "_size",
        "_backends",
        "_by_address",
        "_bound",
        "_weight",
        "_total_weight",
        "_cursor",
        "_stride",
    )

    def __init__(
        self,
        owners: Sequence[BackendState],
        size: int,
        backends: Sequence[BackendState],
        bounded_load: float | None,
    ) -> None:
        """`backends`: every usable backend (weight > 0), over which the mean load is taken."""
        self._owners = tuple(owners)
        self._size = size
        self._backends = tuple(backends)
        self._by_address = tuple(sorted(backends, key=lambda b: b.address))
        self._bound = bounded_load
        weights = [b.effective_weight for b in backends]
        # Bounded load's capacity is proportional to weight. Equal weights become 1 each, so the
        # check stays in exact integer-valued arithmetic for the common case.
        is_equal = len(set(weights)) <= 1
        self._weight = {b: 1.0 if is_equal else b.effective_weight for b in backends}
        self._total_weight = float(len(weights)) if is_equal else math.fsum(weights)
        self._cursor = 0
        self._stride = _sweep_stride(size) if size else 1

    @property
    def size(self) -> int:
        """Slots in the table: ring points or Maglev entries; 0 for an empty pool."""
        return self._size

    def expected_shares(self) -> dict[BackendState, float]:
        """Each backend's share of uniformly hashed keys, before bounded load or avoid: what
        its traffic share should be, for the admin view to set beside the measured one."""
        counts = Counter(self._owners[: self._size])
        return {b: counts[b] / self._size for b in self._backends}

    def spread(self, avoid: Collection[BackendState]) -> BackendState | None:
        """A pick with no key: the next slot of a fixed sweep over the table, so keyless picks
        share out as the slots do (by weight), with avoid and bounded load applied as usual."""
        size = self._size
        if not size:
            return None
        slot = self._cursor
        nxt = slot + self._stride
        self._cursor = nxt - size if nxt >= size else nxt
        return self.settle(slot, avoid)

    def settle(self, slot: int, avoid: Collection[BackendState]) -> BackendState:
        """The backend for `slot` (0 <= slot < size, table not empty): its owner, unless that is
        avoided or (bounded load) full; then the next candidate after `slot` that is neither.
        Every candidate avoided or full: the first one not avoided, else the owner."""
        first = self._owners[slot]
        c = self._bound
        if c is None:
            if first not in avoid:
                return first
            for b in self._after(slot):
                if b not in avoid:
                    return b
            return first
        is_free = first not in avoid
        if is_free and first.in_flight == 0:
            return first  # an idle backend always has room: its capacity is at least 1
        # Mirrokni, Thorup, Zadimoghaddam 2016: capacity ceil(c x mean), the mean counting the
        # request being placed; weighted, ceil(c x (total + 1) x w / W). For an integer count,
        # in_flight < ceil(x) is in_flight < x, so no ceiling is taken, and with weights 1 and a
        # dyadic c (1.25, 1.5) both sides are exact. The sum is O(n): no pool-wide counter.
        budget = c * (sum([b.in_flight for b in self._backends]) + 1)
        weight, total_weight = self._weight, self._total_weight
        if is_free and first.in_flight * total_weight < budget * weight[first]:
            return first
        fallback = first if is_free else None
        for b in self._after(slot):
            if b in avoid:
                continue
            if b.in_flight * total_weight < budget * weight[b]:
                return b
            if fallback is None:
                fallback = b
        return first if fallback is None else fallback

    def _after(self, slot: int) -> Iterator[BackendState]:
        """The candidates after `slot`'s owner: the owners of the next slots (wrapping, up to a
        bound), then every backend in address order. Deterministic, so every node agrees."""
        owners, size = self._owners, self._size
        j = slot
        for _ in range(WALK_SLOTS_PER_BACKEND * len(self._backends) + 64):
            j += 1
            if j == size:
                j = 0
            yield owners[j]
        yield from self._by_address
