"""The shared key hash, BalancerOptions, and how build() hands options to the algorithms."""

from __future__ import annotations

import dataclasses

import pytest

from evenflow.balancing.base import BalancerOptions, PickContext, build, is_prime
from evenflow.balancing.consistent_hash import ConsistentHash
from evenflow.balancing.hashing import hash_pair, key_hash
from evenflow.balancing.maglev import Maglev
from evenflow.core.backend import BackendState


def test_key_hash_is_xxh3_64_with_seed_0() -> None:
    # XXH3_64bits("") from the xxHash reference; a salted or different hash cannot give it
    assert key_hash(b"") == 0x2D06800538D394C2
    # pinned: a node running another version, platform or process must agree on these
    assert key_hash(b"abc") == 8696274497037089104
    assert key_hash(b"user-42") == key_hash(b"user-42")


def test_hash_pair_gives_two_different_64_bit_hashes() -> None:
    h1, h2 = hash_pair(b"10.0.0.1:8000")
    assert h1 != h2
    assert 0 <= h1 < 1 << 64
    assert 0 <= h2 < 1 << 64
    assert hash_pair(b"10.0.0.1:8000") == (h1, h2)


def test_options_defaults() -> None:
    opts = BalancerOptions()
    assert opts.virtual_nodes == 160
    assert opts.table_size == 65537
    assert opts.bounded_load is None
    assert opts.ip_prefix is False


@pytest.mark.parametrize(
    "bad",
    [
        {"virtual_nodes": 0},
        {"virtual_nodes": 10_001},
        {"table_size": 65536},
        {"table_size": 5},
        {"table_size": 1},
        {"bounded_load": 0.99},
        {"bounded_load": float("nan")},
        {"bounded_load": float("inf")},
    ],
)
def test_options_refuse_bad_values(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BalancerOptions(**bad)  # type: ignore[arg-type]


def test_options_are_frozen() -> None:
    opts = BalancerOptions(bounded_load=1.25)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.bounded_load = 2.0  # type: ignore[misc]


def test_is_prime() -> None:
    assert [n for n in range(30) if is_prime(n)] == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]
    assert is_prime(65537)
    assert not is_prime(65537 * 3)


def test_build_hands_options_to_hashing_algorithms() -> None:
    pool = [BackendState("p", "a:80"), BackendState("p", "b:80")]
    ring = build("consistent_hash", pool, BalancerOptions(virtual_nodes=7))
    assert isinstance(ring, ConsistentHash)
    assert ring.size == 14
    table = build("maglev", pool, BalancerOptions(table_size=101))
    assert isinstance(table, Maglev)
    assert table.size == 101


def test_build_without_options_uses_the_defaults() -> None:
    pool = [BackendState("p", "a:80")]
    ring = build("consistent_hash", pool)
    assert isinstance(ring, ConsistentHash)
    assert ring.size == 160
    table = build("maglev", pool)
    assert isinstance(table, Maglev)
    assert table.size == 65537


def test_other_algorithms_ignore_options() -> None:
    pool = [BackendState("p", "a:80"), BackendState("p", "b:80")]
    rr = build("round_robin", pool, BalancerOptions(bounded_load=2.0, virtual_nodes=3))
    ctx = PickContext()
    assert [b.address for b in (rr.pick(ctx), rr.pick(ctx)) if b] == ["a:80", "b:80"]
