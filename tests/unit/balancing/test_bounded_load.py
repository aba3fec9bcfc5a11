"""Bounded load (Mirrokni, Thorup, Zadimoghaddam 2016) on consistent_hash, maglev and ip_hash.

A hot key carrying half the traffic would pile onto its one backend; with bounded_load c, no
backend holds more than ceil(c x mean) in flight, the mean counting the request being placed.
The simulations move the in_flight counters as the data plane does.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from fractions import Fraction

import pytest
from hashing_support import backend, equal_pool, make_pool
from hypothesis import given, settings
from hypothesis import strategies as st

from evenflow.balancing.base import Balancer, BalancerOptions, PickContext, build
from evenflow.balancing.consistent_hash import ConsistentHash
from evenflow.core.backend import BackendState

NAMES = ["consistent_hash", "maglev", "ip_hash"]
C = 1.25
BOUNDED = BalancerOptions(bounded_load=C)


def context(name: str, i: int) -> PickContext:
    """Request i of a stream where every other request carries the same hot key (or client)."""
    if name == "ip_hash":
        ip = "203.0.113.7" if i % 2 == 0 else f"10.{i >> 8 & 255}.{i & 255}.1"
        return PickContext(client_ip=ip)
    return PickContext(hash_key=b"hot-user" if i % 2 == 0 else f"user-{i}".encode())


def capacity(c: float, placed: int, weight: float, total_weight: float) -> int:
    """ceil(c x mean) scaled by weight share, in exact arithmetic: the bound the issue sets."""
    return math.ceil(Fraction(c) * placed * Fraction(weight) / Fraction(total_weight))


def place(balancer: Balancer, ctx: PickContext) -> BackendState:
    picked = balancer.pick(ctx)
    assert picked is not None
    picked.in_flight += 1
    return picked


@pytest.mark.parametrize("name", NAMES)
def test_without_a_bound_the_hot_key_piles_up(name: str) -> None:
    # the control: what the bound is there to stop
    pool = equal_pool(10)
    balancer = build(name, pool)
    for i in range(2000):
        place(balancer, context(name, i))
    assert max(b.in_flight for b in pool) > 1000
    assert max(b.in_flight for b in pool) > capacity(C, 2000, 1, 10) * 3


@pytest.mark.parametrize("name", NAMES)
def test_accumulating_load_never_passes_the_bound(name: str) -> None:
    # requests that never finish: every pick raises the total, the bound rises with it
    pool = equal_pool(10)
    balancer = build(name, pool, BOUNDED)
    hot_went_to: Counter[str] = Counter()
    for i in range(2000):
        picked = place(balancer, context(name, i))
        if i % 2 == 0:
            hot_went_to[picked.address] += 1
        assert max(b.in_flight for b in pool) <= capacity(C, i + 1, 1, 10)
    assert len(hot_went_to) >= 2  # the hot key overflowed: the bound did the work
    assert max(b.in_flight for b in pool) == capacity(C, 2000, 1, 10)


@pytest.mark.parametrize("name", NAMES)
def test_steady_state_with_releases_never_passes_the_bound(name: str) -> None:
    # 200 requests in flight at all times: one finishes (any of them), the next is placed
    pool = equal_pool(10)
    balancer = build(name, pool, BOUNDED)
    rng = random.Random(4)
    open_requests = [place(balancer, context(name, i)) for i in range(200)]
    bound = capacity(C, 200, 1, 10)  # 25
    for i in range(200, 6000):
        done = open_requests.pop(rng.randrange(len(open_requests)))
        done.in_flight -= 1
        open_requests.append(place(balancer, context(name, i)))
        assert max(b.in_flight for b in pool) <= bound
    assert max(b.in_flight for b in pool) == bound  # the hot key's backend sits at the bound


@pytest.mark.parametrize("name", NAMES)
def test_weighted_capacity_is_proportional_to_weight(name: str) -> None:
    pool = make_pool(1, 2, 3, 1, 2, 3)
    balancer = build(name, pool, BOUNDED)
    for i in range(3000):
        place(balancer, context(name, i))
        for b in pool:
            assert b.in_flight <= capacity(C, i + 1, b.effective_weight, 12)


@pytest.mark.parametrize("name", NAMES)
def test_c_of_one_balances_exactly(name: str) -> None:
    pool = equal_pool(7)
    balancer = build(name, pool, BalancerOptions(bounded_load=1.0))
    for i in range(700):
        place(balancer, context(name, i))
        assert max(b.in_flight for b in pool) <= math.ceil((i + 1) / 7)
    assert {b.in_flight for b in pool} == {100}


def test_a_key_with_room_stays_on_its_backend() -> None:
    pool = equal_pool(10)
    plain, bounded = ConsistentHash(pool), ConsistentHash(pool, BOUNDED)
    for b in pool:
        b.in_flight = 10
    for i in range(500):
        ctx = PickContext(hash_key=f"user-{i}".encode())
        assert bounded.pick(ctx) is plain.pick(ctx)  # 10 < 1.25 x 101 / 10: room everywhere


def test_overflow_goes_to_the_next_backend_clockwise() -> None:
    pool = equal_pool(5)
    plain, bounded = ConsistentHash(pool), ConsistentHash(pool, BOUNDED)
    ctx = PickContext(hash_key=b"hot-user")
    own = plain.pick(ctx)
    nxt = plain.pick(ctx, avoid={own})
    assert own is not None
    assert nxt is not None
    own.in_flight = 2  # capacity with 2 in flight: ceil(1.25 x 3 / 5) = 1; full
    assert bounded.pick(ctx) is nxt
    assert bounded.pick(ctx) is nxt  # deterministic, not a random second choice
    own.in_flight = 0
    assert bounded.pick(ctx) is own


def test_everyone_full_but_the_avoided_takes_the_first_candidate() -> None:
    pool = equal_pool(3)
    balancer = ConsistentHash(pool, BOUNDED)
    ctx = PickContext(hash_key=b"user-3")
    own = ConsistentHash(pool).pick(ctx)
    assert own is not None
    others = [b for b in pool if b is not own]
    for b in others:
        b.in_flight = 50  # capacity with 50 + 50 + 0 + 1 placed: ceil(1.25 x 101 / 3) = 43
    # own is idle but avoided; the other two are full: the first of them on the ring
    first_other = ConsistentHash(pool).pick(ctx, avoid={own})
    assert balancer.pick(ctx, avoid={own}) is first_other
    assert balancer.pick(ctx, avoid=set(pool)) is own


def test_no_key_is_bounded_too() -> None:
    pool = equal_pool(4)
    balancer = ConsistentHash(pool, BOUNDED)
    pool[0].in_flight = 30
    picks = Counter(balancer.pick(PickContext()) for _ in range(400))
    assert pool[0] not in picks  # 30 >= ceil(1.25 x 31 / 4) = 10 throughout


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(NAMES),
    st.lists(st.tuples(st.sampled_from([1, 2, 3]), st.integers(0, 6)), min_size=1, max_size=7),
    st.sampled_from([1.0, 1.25, 1.5, 2.0, 3.0]),
    st.lists(st.integers(0, 30), min_size=1, max_size=120),
    st.data(),
)
def test_every_placement_respects_its_capacity(
    name: str,
    specs: list[tuple[int, int]],
    c: float,
    keys: list[int],
    data: st.DataObject,
) -> None:
    pool = [backend(f"10.3.0.{i + 1}:80", w) for i, (w, _) in enumerate(specs)]
    for b, (_, in_flight) in zip(pool, specs, strict=True):
        b.in_flight = in_flight
    avoid = data.draw(st.sets(st.sampled_from(pool), max_size=len(pool) - 1))
    plain = build(name, pool)
    bounded = build(name, pool, BalancerOptions(bounded_load=c))
    total_weight = sum(b.effective_weight for b in pool)
    for k in keys:  # few distinct keys: repeats and hot keys
        ctx = (
            PickContext(client_ip=f"10.4.{k}.1")
            if name == "ip_hash"
            else PickContext(hash_key=f"key-{k}".encode())
        )
        placed = sum(b.in_flight for b in pool) + 1

        def cap(b: BackendState, placed: int = placed) -> int:
            return capacity(c, placed, b.effective_weight, total_weight)

        own = plain.pick(ctx, avoid)
        picked = bounded.pick(ctx, avoid)
        assert own is not None
        assert picked is not None
        assert picked not in avoid
        if own.in_flight < cap(own):
            assert picked is own  # room on the key's own backend: the bound moves nothing
        if any(b.in_flight < cap(b) for b in pool if b not in avoid):
            assert picked.in_flight < cap(picked)
        picked.in_flight += 1
