"""Pools, fixed key sets and measurements shared by the hashing balancers' tests."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from evenflow.balancing.base import Balancer, PickContext
from evenflow.core.backend import BackendState

# Fixed key sets, so every run measures the same thing: user ids as an x-user-id header has them.
KEYS_20K = tuple(f"user-{i}".encode() for i in range(20_000))
KEYS_100K = tuple(f"user-{i}".encode() for i in range(100_000))


def backend(address: str, weight: float = 1.0) -> BackendState:
    """A backend at `address` with this effective weight (fractions as slow start makes them)."""
    b = BackendState("p", address, int(weight))
    b.effective_weight = float(weight)
    return b


def make_pool(*weights: float, first: int = 1) -> list[BackendState]:
    """Backends 10.0.0.<first>:8000, 10.0.0.<first+1>:8000, ... with these weights."""
    return [backend(f"10.0.0.{first + i}:8000", w) for i, w in enumerate(weights)]


def equal_pool(count: int, first: int = 1) -> list[BackendState]:
    return make_pool(*[1.0] * count, first=first)


def owners(balancer: Balancer, keys: Iterable[bytes]) -> list[str]:
    """The address each key's pick lands on."""
    ctx = PickContext()
    out = []
    for key in keys:
        ctx.hash_key = key
        picked = balancer.pick(ctx)
        assert picked is not None
        out.append(picked.address)
    return out


def moved(before: Sequence[str], after: Sequence[str]) -> float:
    """Share of keys whose backend changed."""
    return sum(a != b for a, b in zip(before, after, strict=True)) / len(before)


def max_over_mean(assignment: Sequence[str], backends: int) -> float:
    counts = Counter(assignment)
    assert len(counts) <= backends
    return max(counts.values()) / (len(assignment) / backends)


def shares(assignment: Sequence[str]) -> dict[str, float]:
    return {a: n / len(assignment) for a, n in Counter(assignment).items()}
