"""Random: shares follow the weights; the sampler's two draws stay in range and distinct."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evenflow.balancing.base import PickContext
from evenflow.balancing.random_pick import RandomPick, WeightedSampler
from evenflow.core.backend import BackendState

CTX = PickContext()
LARGEST_BELOW_1 = 1.0 - 2.0**-53  # the largest value random() returns


def make_pool(*weights: float) -> list[BackendState]:
    """Backends named a, b, c... (their host) with these effective weights."""
    pool = []
    for i, w in enumerate(weights):
        backend = BackendState("p", f"{chr(ord('a') + i)}:80", int(w))
        backend.effective_weight = float(w)
        pool.append(backend)
    return pool


def picks(balancer: RandomPick, count: int) -> Counter[str]:
    return Counter(b.host for b in (balancer.pick(CTX) for _ in range(count)) if b)


def assert_shares(counts: Counter[str], expected: dict[str, int]) -> None:
    """Each count within 2% of what the weights ask for; nothing else picked."""
    assert set(counts) == set(expected)
    for name, want in expected.items():
        assert abs(counts[name] - want) <= 0.02 * want, (name, counts[name], want)


def test_weights_1_2_3_share_60000_picks() -> None:
    balancer = RandomPick(make_pool(1, 2, 3), rng=random.Random(7))
    assert_shares(picks(balancer, 60_000), {"a": 10_000, "b": 20_000, "c": 30_000})


def test_equal_weights_share_evenly() -> None:
    balancer = RandomPick(make_pool(2, 2, 2, 2), rng=random.Random(7))
    assert_shares(picks(balancer, 40_000), dict.fromkeys("abcd", 10_000))


def test_weight_0_is_never_picked() -> None:
    balancer = RandomPick(make_pool(0, 1, 0, 1), rng=random.Random(1))
    assert set(picks(balancer, 1000)) == {"b", "d"}


@pytest.mark.parametrize("weights", [(), (0,), (0, 0)])
def test_no_pickable_backend_gives_none(weights: tuple[int, ...]) -> None:
    assert RandomPick(make_pool(*weights)).pick(CTX) is None


def test_the_same_seed_gives_the_same_picks() -> None:
    pool = make_pool(1, 2, 3)
    one, two = RandomPick(pool, rng=random.Random(3)), RandomPick(pool, rng=random.Random(3))
    assert [one.pick(CTX) for _ in range(50)] == [two.pick(CTX) for _ in range(50)]


def test_avoid_draws_among_the_rest_by_weight() -> None:
    pool = make_pool(5, 2, 3)
    balancer = RandomPick(pool, rng=random.Random(11))
    retries = (balancer.pick(CTX, avoid=(pool[0],)) for _ in range(20_000))
    assert_shares(Counter(b.host for b in retries if b), {"b": 8_000, "c": 12_000})


def test_all_avoided_still_returns_a_backend() -> None:
    pool = make_pool(1, 1)
    assert RandomPick(pool, rng=random.Random(1)).pick(CTX, avoid=pool) in pool


positive_weights = st.lists(
    st.floats(0.001, 1000, allow_nan=False, allow_infinity=False), min_size=2, max_size=12
)
extremes = st.sampled_from([0.0, LARGEST_BELOW_1, 0.5])


@given(positive_weights, st.data(), extremes)
def test_draws_stay_in_range_even_at_the_extremes_of_random(
    weights: list[float], data: st.DataObject, u: float
) -> None:
    sampler = WeightedSampler(weights, lambda: u)
    i = data.draw(st.integers(0, len(weights) - 1))
    assert 0 <= sampler.draw() < len(weights)
    j = sampler.draw_other(i)
    assert 0 <= j < len(weights)
    assert j != i


def test_draw_other_follows_the_weights_of_the_others() -> None:
    sampler = WeightedSampler([1.0, 2.0, 3.0, 4.0], random.Random(5).random)
    counts = Counter(sampler.draw_other(1) for _ in range(40_000))
    # without index 1 the weights are 1, 3, 4 out of 8
    assert set(counts) == {0, 2, 3}
    for index, share in ((0, 1 / 8), (2, 3 / 8), (3, 4 / 8)):
        assert abs(counts[index] - share * 40_000) <= 0.02 * share * 40_000
