"""maglev: Google's Maglev lookup table (Eisenbud et al., NSDI 2016, section 3.4), weighted.

Every backend has a preference list, a permutation of the M slots (M prime): offset, offset +
skip, offset + 2 skip, ... mod M, with offset and skip from two hashes of its address. Backends
take turns claiming the next slot of their list that is still empty until all M are owned; a
pick is table[key_hash(key) mod M], O(1). Slot counts differ by at most one between equal
backends, and a membership change moves little more than the changed backend's share.

Weights: in round r (1, 2, ...) a backend takes a turn when its weight has earned one, so its
j-th turn comes in round ceil(j x w_max / w): the heaviest every round, one with a third of its
weight every third round. Within a round, turns go in address order. This is the idea of
Envoy's weighted Maglev; the turn order is computed up front, then the fill is one loop.

Building costs O(M log M) probes (tens of milliseconds for M = 65537, see bench/hash_bench.py):
it runs on the control plane when membership, weight or health changes, never per pick.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from operator import attrgetter
from typing import ClassVar, cast

from evenflow.balancing.base import BalancerOptions, Needs, PickContext, register
from evenflow.balancing.hashing import SlotTable, hash_pair, key_hash
from evenflow.core.backend import BackendState


def preference(address: str, table_size: int) -> tuple[int, int]:
    """(offset, skip) of a backend's preference list: slot j is (offset + j x skip) mod M.

    0 < skip < M and M prime make the list a permutation of every slot.
    """
    h1, h2 = hash_pair(address.encode())
    return h1 % table_size, h2 % (table_size - 1) + 1


def turn_order(weights: Sequence[float], table_size: int) -> list[int]:
    """Indices into `weights` (all > 0), one per turn, for the first `table_size` turns."""
    n = len(weights)
    w_max = max(weights)
    # enough rounds for table_size turns: round r has given backend k floor(r x w_k / w_max)
    rounds = math.ceil((table_size + n) / sum(w / w_max for w in weights)) + 1
    # one sortable number per turn: its round, then the backend's index within the round
    turns: list[int] = []
    for k, w in enumerate(weights):
        turns += [math.ceil(j * w_max / w) * n + k for j in range(1, int(rounds * w / w_max) + 1)]
    turns.sort()
    return [t % n for t in turns[:table_size]]


def maglev_table(backends: Sequence[BackendState], table_size: int) -> list[BackendState]:
    """The table for `backends` (non-empty, weight > 0, in address order): the owner per slot."""
    prefs = [preference(b.address, table_size) for b in backends]
    position = [offset for offset, _ in prefs]  # each backend's next slot to try
    skips = [skip for _, skip in prefs]
    table: list[BackendState | None] = [None] * table_size
    for k in turn_order([b.effective_weight for b in backends], table_size):
        slot, skip = position[k], skips[k]
        while table[slot] is not None:
            slot = (slot + skip) % table_size
        table[slot] = backends[k]
        position[k] = (slot + skip) % table_size
    # each turn fills one empty slot, and there are exactly table_size turns
    return cast("list[BackendState]", table)


@register
class Maglev(SlotTable):
    """The Maglev table; a retry or an overflow moves to the next slots, a keyless pick sweeps."""

    name: ClassVar[str] = "maglev"
    # as consistent_hash: keys on ctx.hash_key, which the data plane may fill from the client
    # address; config/ refuses an HTTP-keyed hash_key on a tcp/udp listener
    needs: ClassVar[Needs] = Needs.CLIENT_ADDR
    takes_options: ClassVar[bool] = True

    __slots__ = ()

    def __init__(
        self, backends: Sequence[BackendState], options: BalancerOptions | None = None
    ) -> None:
        opts = options if options is not None else BalancerOptions()
        # address order: every node builds the same table whatever order its pool lists
        usable = sorted((b for b in backends if b.effective_weight > 0), key=attrgetter("address"))
        owners = maglev_table(usable, opts.table_size) if usable else []
        super().__init__(owners, len(owners), usable, opts.bounded_load)

    def pick(self, ctx: PickContext, avoid: Collection[BackendState] = ()) -> BackendState | None:
        key = ctx.hash_key
        if key is None:
            return self.spread(avoid)
        owners = self._owners
        if not owners:
            return None
        slot = key_hash(key) % self._size
        first = owners[slot]
        if not avoid and (self._bound is None or first.in_flight == 0):
            return first
        return self.settle(slot, avoid)
