"""Round robin: plain rotation over backends with weight > 0; retries skip and carry on."""

from __future__ import annotations

from collections import Counter

import pytest

from evenflow.balancing.base import PickContext
from evenflow.balancing.round_robin import RoundRobin
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


def picks(balancer: RoundRobin, count: int) -> str:
    return "".join(b.host for b in (balancer.pick(CTX) for _ in range(count)) if b)


def test_300_picks_over_3_backends_rotate_100_each_in_order() -> None:
    seq = picks(RoundRobin(make_pool(1, 1, 1)), 300)
    assert seq == "abc" * 100
    assert Counter(seq) == {"a": 100, "b": 100, "c": 100}


def test_weight_values_are_ignored() -> None:
    assert picks(RoundRobin(make_pool(5, 1, 0.25)), 9) == "abcabcabc"


def test_weight_0_is_never_picked() -> None:
    assert picks(RoundRobin(make_pool(1, 0, 1, 0)), 6) == "acacac"


@pytest.mark.parametrize("weights", [(), (0,), (0, 0)])
def test_no_pickable_backend_gives_none(weights: tuple[int, ...]) -> None:
    assert RoundRobin(make_pool(*weights)).pick(CTX) is None


def test_avoid_skips_to_the_next_and_rotation_resumes_after_it() -> None:
    pool = make_pool(1, 1, 1)
    a, b, _ = pool
    balancer = RoundRobin(pool)
    assert balancer.pick(CTX, avoid=(a,)) is b
    assert picks(balancer, 4) == "cabc"


def test_avoid_of_several_finds_the_one_left() -> None:
    pool = make_pool(1, 1, 1, 1)
    balancer = RoundRobin(pool)
    avoid = {pool[0], pool[1], pool[3]}
    assert [balancer.pick(CTX, avoid=avoid) for _ in range(3)] == [pool[2]] * 3


def test_all_avoided_returns_the_one_whose_turn_it_is_and_rotation_goes_on() -> None:
    pool = make_pool(1, 1, 1)
    balancer = RoundRobin(pool)
    assert balancer.pick(CTX, avoid=pool) is pool[0]
    assert picks(balancer, 3) == "bca"


def test_avoided_backends_outside_the_pool_change_nothing() -> None:
    balancer = RoundRobin(make_pool(1, 1))
    strangers = make_pool(1, 1)
    got = [balancer.pick(CTX, avoid=strangers) for _ in range(4)]
    assert "".join(b.host for b in got if b) == "abab"
