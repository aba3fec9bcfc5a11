"""Least connections: lowest in_flight / weight wins, equals take turns, retries go elsewhere."""

from __future__ import annotations

from collections import Counter

import pytest

from evenflow.balancing.base import PickContext
from evenflow.balancing.least_conn import LeastConn
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


def picks(balancer: LeastConn, count: int) -> str:
    return "".join(b.host for b in (balancer.pick(CTX) for _ in range(count)) if b)


def test_idle_backends_take_turns() -> None:
    seq = picks(LeastConn(make_pool(1, 1, 1)), 300)
    assert seq == "abc" * 100


def test_picks_the_least_loaded() -> None:
    pool = make_pool(1, 1, 1)
    load(pool, 3, 1, 2)
    assert picks(LeastConn(pool), 5) == "bbbbb"


def test_ties_among_the_least_loaded_rotate() -> None:
    pool = make_pool(1, 1, 1, 1)
    load(pool, 5, 0, 7, 0)
    assert picks(LeastConn(pool), 6) == "bdbdbd"


def test_load_is_divided_by_weight() -> None:
    pool = make_pool(1, 3)
    load(pool, 1, 2)  # a: 1.0 per unit of weight, b: 0.67
    assert picks(LeastConn(pool), 3) == "bbb"
    load(pool, 0, 1)  # a: 0, b: 0.33
    assert picks(LeastConn(pool), 3) == "aaa"


def test_requests_that_stay_in_flight_fill_backends_by_weight() -> None:
    pool = make_pool(1, 2, 3)
    balancer = LeastConn(pool)
    for _ in range(600):
        chosen = balancer.pick(CTX)
        assert chosen is not None
        chosen.in_flight += 1
    assert [b.in_flight for b in pool] == [100, 200, 300]


def test_weight_0_is_never_picked_even_when_idle() -> None:
    pool = make_pool(1, 0, 1)
    load(pool, 4, 0, 9)
    assert picks(LeastConn(pool), 4) == "aaaa"


@pytest.mark.parametrize("weights", [(), (0,), (0, 0)])
def test_no_pickable_backend_gives_none(weights: tuple[int, ...]) -> None:
    assert LeastConn(make_pool(*weights)).pick(CTX) is None


def test_weights_are_read_at_build_time() -> None:
    # a weight dropped to 0 after the build waits for the rebuild: no division by zero meanwhile
    pool = make_pool(1, 2)
    balancer = LeastConn(pool)
    pool[1].effective_weight = 0.0
    assert balancer.pick(CTX) is not None


def test_avoid_sends_a_retry_to_the_next_least_loaded() -> None:
    pool = make_pool(1, 1, 1)
    a, b, c = pool
    load(pool, 0, 4, 2)
    balancer = LeastConn(pool)
    assert balancer.pick(CTX, avoid=(a,)) is c
    assert balancer.pick(CTX, avoid={a, c}) is b


def test_avoid_honours_weights() -> None:
    pool = make_pool(1, 1, 4)
    a, b, c = pool
    load(pool, 0, 2, 4)  # b: 2, c: 1 per unit of weight
    assert LeastConn(pool).pick(CTX, avoid=[a]) is c


def test_all_avoided_returns_the_least_loaded() -> None:
    pool = make_pool(1, 1, 1)
    load(pool, 3, 1, 2)
    assert LeastConn(pool).pick(CTX, avoid=pool) is pool[1]


def test_retries_rotate_ties_too() -> None:
    pool = make_pool(1, 1, 1)
    balancer = LeastConn(pool)
    avoid = (pool[0],)
    got = Counter(b.host for b in (balancer.pick(CTX, avoid=avoid) for _ in range(10)) if b)
    assert got == {"b": 5, "c": 5}
