"""Smooth weighted round robin: exact nginx sequences, exact shares per cycle, no bursts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evenflow.balancing import weighted_round_robin
from evenflow.balancing.base import PickContext
from evenflow.balancing.weighted_round_robin import WeightedRoundRobin
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


def picks(balancer: WeightedRoundRobin, count: int) -> str:
    return "".join(b.host for b in (balancer.pick(CTX) for _ in range(count)) if b)


def nginx_reference(
    weights: Sequence[int], count: int, tried: Sequence[set[int]] = ()
) -> list[int]:
    """ngx_http_upstream_get_peer transcribed, in integers: the sequence to match.

    `tried[k]` are the backends step k skips, as nginx skips peers a retry already tried: they
    neither gain weight nor count in the total that step.
    """
    current = [0] * len(weights)
    out = []
    for step in range(count):
        skip = tried[step] if step < len(tried) else set()
        best, total = -1, 0
        for i, w in enumerate(weights):
            if w <= 0 or i in skip:
                continue
            current[i] += w
            total += w
            if best < 0 or current[i] > current[best]:
                best = i
        current[best] -= total
        out.append(best)
    return out


def smoothness_violations(seq: Sequence[int], weights: Sequence[int]) -> list[tuple[int, int, int]]:
    """(backend, window length, count) for every window breaking the smoothness bound.

    nginx keeps every `current` strictly inside (-total, total), and after p picks a backend's
    current is p*w - total*count, so its count over any window of k picks lies strictly within
    k*w/total ± 2: at most ceil(k*w/total) + 1, at least floor(k*w/total) - 1. The sequence is
    periodic with period total, so windows over two cycles cover every case.
    """
    total = sum(weights)
    doubled = list(seq[:total]) * 2
    bad = []
    for i, w in enumerate(weights):
        prefix = [0]
        for x in doubled:
            prefix.append(prefix[-1] + (x == i))
        for k in range(1, total + 1):
            high = -(-k * w // total) + 1
            low = k * w // total - 1
            counts = [prefix[s + k] - prefix[s] for s in range(total)]
            bad += [(i, k, c) for c in (max(counts), min(counts)) if not low <= c <= high]
    return bad


def test_weights_5_1_1_give_the_nginx_sequence_repeating() -> None:
    balancer = WeightedRoundRobin(make_pool(5, 1, 1))
    assert picks(balancer, 70) == "aabacaa" * 10


def test_scaled_weights_give_the_same_sequence() -> None:
    balancer = WeightedRoundRobin(make_pool(50, 10, 10))
    assert picks(balancer, 70) == "aabacaa" * 10


def test_weights_1_2_3_give_exact_shares_over_60000_picks() -> None:
    balancer = WeightedRoundRobin(make_pool(1, 2, 3))
    assert Counter(picks(balancer, 60_000)) == {"a": 10_000, "b": 20_000, "c": 30_000}


def test_equal_weights_rotate_in_list_order() -> None:
    balancer = WeightedRoundRobin(make_pool(3, 3, 3))
    assert picks(balancer, 9) == "abcabcabc"


def test_weight_0_is_never_picked() -> None:
    balancer = WeightedRoundRobin(make_pool(2, 0, 1))
    assert picks(balancer, 30) == "aca" * 10


@pytest.mark.parametrize("weights", [(), (0,), (0, 0, 0)])
def test_no_pickable_backend_gives_none(weights: tuple[int, ...]) -> None:
    assert WeightedRoundRobin(make_pool(*weights)).pick(CTX) is None


def test_fractional_weights_run_the_same_algorithm_live() -> None:
    # slow start hands out fractions; exact binary fractions must reproduce 5,1,1
    balancer = WeightedRoundRobin(make_pool(2.5, 0.5, 0.5))
    assert picks(balancer, 70) == "aabacaa" * 10


def test_slow_start_fractions_keep_their_shares() -> None:
    # 0.1 * 3 is not exact in binary; shares must still follow the weights
    balancer = WeightedRoundRobin(make_pool(0.1 * 3, 1.0, 1.0))
    counts = Counter(picks(balancer, 2300))
    assert abs(counts["a"] - 300) <= 1
    assert abs(counts["b"] - 1000) <= 1
    assert abs(counts["c"] - 1000) <= 1


def test_avoid_takes_the_next_turn_not_avoided_and_the_cycle_carries_on() -> None:
    pool = make_pool(5, 1, 1)
    a, b, _ = pool
    balancer = WeightedRoundRobin(pool)
    # cycle a a b a c a a: the retry skips a's turns up to b, then the cycle resumes after b
    assert balancer.pick(CTX, avoid=(a,)) is b
    assert picks(balancer, 4) == "acaa"


def test_avoid_finds_a_light_backend_whose_turn_is_far_away() -> None:
    pool = make_pool(10, 1)
    a, b = pool
    balancer = WeightedRoundRobin(pool)
    assert [balancer.pick(CTX, avoid=(a,)) for _ in range(5)] == [b] * 5


def test_all_avoided_returns_the_backend_whose_turn_it_is() -> None:
    pool = make_pool(5, 1, 1)
    balancer = WeightedRoundRobin(pool)
    assert "".join(b.host for b in (balancer.pick(CTX, avoid=pool) for _ in range(7)) if b) == (
        "aabacaa"
    )


def test_avoid_on_the_live_path_skips_avoided_backends() -> None:
    pool = make_pool(2.5, 0.5, 0.5)
    a = pool[0]
    balancer = WeightedRoundRobin(pool)
    assert all(balancer.pick(CTX, avoid=(a,)) in pool[1:] for _ in range(20))
    assert balancer.pick(CTX, avoid=pool) in pool


def test_a_retry_on_the_live_path_follows_nginx() -> None:
    pool = make_pool(2.5, 0.5, 0.5)  # 5,1,1 halved: fractional, so the live path
    balancer = WeightedRoundRobin(pool)
    tried = [set(), {0}, {0, 1}, set(), set(), {2}] + [set()] * 8
    got = [balancer.pick(CTX, avoid=[pool[i] for i in skip]) for skip in tried]
    assert [pool.index(b) for b in got if b is not None] == nginx_reference([5, 1, 1], 14, tried)


def test_smoothness_check_rejects_a_bursty_sequence() -> None:
    # the property below must be able to fail: 5,5 sent as a a a a a b b b b b is a burst
    assert smoothness_violations([0] * 5 + [1] * 5, [5, 5])
    assert not smoothness_violations(nginx_reference([5, 5], 10), [5, 5])


weight_lists = st.lists(st.integers(0, 20), min_size=1, max_size=7).filter(any)


@settings(max_examples=150, deadline=None)
@given(weight_lists)
def test_one_cycle_gives_each_backend_its_weight_smoothly(weights: list[int]) -> None:
    pool = make_pool(*weights)
    balancer = WeightedRoundRobin(pool)
    total = sum(weights)
    seq = [pool.index(b) for b in (balancer.pick(CTX) for _ in range(total)) if b is not None]
    assert Counter(seq) == {i: w for i, w in enumerate(weights) if w}
    assert smoothness_violations(seq, weights) == []


@settings(max_examples=150, deadline=None)
@given(weight_lists, st.booleans())
def test_sequence_matches_nginx_on_both_paths(weights: list[int], live: bool) -> None:
    pool = make_pool(*weights)
    # MAX_CYCLE 0 forces the live path for unequal weights
    with mock.patch.object(weighted_round_robin, "MAX_CYCLE", 0 if live else 4096):
        balancer = WeightedRoundRobin(pool)
    count = 2 * sum(weights) + 3
    got = [pool.index(b) for b in (balancer.pick(CTX) for _ in range(count)) if b is not None]
    assert got == nginx_reference(weights, count)
