"""Power of two choices: two distinct weighted draws, the less loaded (per weight) wins."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from evenflow.balancing.base import PickContext
from evenflow.balancing.power_of_two import PowerOfTwo
from evenflow.core.backend import BackendState

CTX = PickContext()


def make_pool(*weights: float) -> list[BackendState]:
    """Backends named a, b, c... (their host) with these effective weights."""
    pool = []
    for i, w in enumerate(weights):
        backend = BackendState("p", f"{chr(ord('a') + i)}:80", int(w))
        backend.effective_weight = float(w)
        pool.append(backend)
    return pool


def load(pool: list[BackendState], *in_flight: int) -> None:
    for backend, n in zip(pool, in_flight, strict=True):
        backend.in_flight = n


def picks(balancer: PowerOfTwo, count: int, avoid: tuple[BackendState, ...] = ()) -> Counter[str]:
    return Counter(b.host for b in (balancer.pick(CTX, avoid) for _ in range(count)) if b)


def assert_shares(counts: Counter[str], expected: dict[str, float]) -> None:
    """Each count within 2% of the expected count; nothing else picked."""
    assert set(counts) == set(expected)
    for name, want in expected.items():
        assert abs(counts[name] - want) <= 0.02 * want, (name, counts[name], want)


def test_one_backend_is_always_the_answer() -> None:
    pool = make_pool(1)
    pool[0].in_flight = 100
    balancer = PowerOfTwo(pool, rng=random.Random(1))
    assert balancer.pick(CTX) is pool[0]
    assert balancer.pick(CTX, avoid=pool) is pool[0]


@pytest.mark.parametrize("weights", [(), (0,), (0, 0)])
def test_no_pickable_backend_gives_none(weights: tuple[int, ...]) -> None:
    assert PowerOfTwo(make_pool(*weights)).pick(CTX) is None


def test_of_two_backends_the_less_loaded_always_wins() -> None:
    pool = make_pool(1, 1)
    load(pool, 3, 1)
    assert picks(PowerOfTwo(pool, rng=random.Random(1)), 500) == {"b": 500}


def test_load_is_divided_by_weight() -> None:
    pool = make_pool(3, 1)
    load(pool, 2, 1)  # a: 0.67 per unit of weight, b: 1.0
    assert picks(PowerOfTwo(pool, rng=random.Random(1)), 500) == {"a": 500}


def test_the_most_loaded_of_three_is_never_picked() -> None:
    pool = make_pool(1, 1, 1)
    load(pool, 9, 0, 0)
    assert_shares(picks(PowerOfTwo(pool, rng=random.Random(2)), 30_000), {"b": 15_000, "c": 15_000})


def test_the_two_candidates_are_distinct() -> None:
    # a idle, b and c busy: a wins whenever drawn, which for two distinct uniform draws out of
    # three is 2/3 of picks (5/9 if the draws could repeat)
    pool = make_pool(1, 1, 1)
    load(pool, 0, 5, 5)
    counts = picks(PowerOfTwo(pool, rng=random.Random(3)), 30_000)
    assert abs(counts["a"] - 20_000) <= 0.02 * 20_000


def test_weighted_candidates_are_drawn_without_replacement() -> None:
    # weights 1,2,3; a idle, b busy, c busier: a is in the pair with probability
    # 1/6 + 2/6 * 1/4 + 3/6 * 1/3 = 5/12; otherwise the pair is b,c and b wins
    pool = make_pool(1, 2, 3)
    load(pool, 0, 2, 9)
    counts = picks(PowerOfTwo(pool, rng=random.Random(4)), 60_000)
    assert_shares(counts, {"a": 25_000, "b": 35_000})


def test_idle_backends_share_by_weight() -> None:
    # at zero load every pair ties and the first draw wins: the weighted random shares
    balancer = PowerOfTwo(make_pool(1, 2, 3), rng=random.Random(5))
    assert_shares(picks(balancer, 60_000), {"a": 10_000, "b": 20_000, "c": 30_000})


def test_equal_weights_share_evenly_when_idle() -> None:
    balancer = PowerOfTwo(make_pool(1, 1, 1), rng=random.Random(6))
    assert_shares(picks(balancer, 30_000), {"a": 10_000, "b": 10_000, "c": 10_000})


def test_weight_0_is_never_picked() -> None:
    pool = make_pool(1, 0, 1)
    load(pool, 5, 0, 5)
    assert set(picks(PowerOfTwo(pool, rng=random.Random(7)), 1000)) == {"a", "c"}


def test_the_same_seed_gives_the_same_picks() -> None:
    pool = make_pool(1, 2, 3, 4)
    one, two = PowerOfTwo(pool, rng=random.Random(8)), PowerOfTwo(pool, rng=random.Random(8))
    assert [one.pick(CTX) for _ in range(50)] == [two.pick(CTX) for _ in range(50)]


def test_avoid_chooses_among_the_rest() -> None:
    pool = make_pool(1, 1, 1, 1)
    a, b, c, d = pool
    load(pool, 0, 3, 1, 2)
    balancer = PowerOfTwo(pool, rng=random.Random(9))
    # of b, c, d the most loaded (b) never wins, and avoided a never comes back
    assert set(picks(balancer, 1000, (a,))) == {"c", "d"}
    assert set(picks(balancer, 10, (a, c, d))) == {"b"}


def test_all_avoided_returns_the_less_loaded_pair_winner() -> None:
    pool = make_pool(1, 1)
    load(pool, 4, 2)
    assert PowerOfTwo(pool, rng=random.Random(10)).pick(CTX, avoid=pool) is pool[1]
