"""Source-address affinity: a table with a TTL per client and a bound on its size."""

from __future__ import annotations

from evenflow.config.affinity import SourceSticky
from evenflow.sticky.source import SourceAffinity

A, B = "10.0.0.1:8000", "10.0.0.2:8000"


def table(ttl: str = "30s", max_entries: int = 100) -> SourceAffinity:
    return SourceAffinity(SourceSticky.model_validate({"ttl": ttl, "max_entries": max_entries}))


def test_an_unknown_client_is_pinned_nowhere() -> None:
    assert table().pinned("192.0.2.1", 0.0) is None


def test_a_client_keeps_its_backend_until_its_ttl_runs_out() -> None:
    source = table(ttl="30s")
    source.pin("192.0.2.1", A, now=100.0)
    assert source.pinned("192.0.2.1", 100.0) == A
    assert source.pinned("192.0.2.1", 130.0) == A  # the last instant of the TTL
    assert source.pinned("192.0.2.1", 130.001) is None
    assert len(source) == 0  # an expired entry is dropped when found
    assert source.pinned("192.0.2.1", 131.0) is None


def test_each_pin_restarts_the_ttl() -> None:
    source = table(ttl="10s")
    for t in range(0, 60, 5):  # a client seen every 5 s never expires
        assert source.pinned("192.0.2.1", float(t)) == (None if t == 0 else A)
        source.pin("192.0.2.1", A, float(t))
    assert source.pinned("192.0.2.1", 64.0) == A
    assert source.pinned("192.0.2.1", 65.5) is None


def test_a_repin_replaces_the_backend() -> None:
    source = table()
    source.pin("192.0.2.1", A, 0.0)
    source.pin("192.0.2.1", B, 1.0)
    assert source.pinned("192.0.2.1", 2.0) == B
    assert len(source) == 1


def test_the_table_stays_within_its_bound_forgetting_the_least_recently_pinned() -> None:
    source = table(max_entries=3)
    for i in range(3):
        source.pin(f"192.0.2.{i}", A, float(i))
    source.pin("192.0.2.0", B, 3.0)  # seen again: now the most recent
    source.pin("192.0.2.10", A, 4.0)
    source.pin("192.0.2.11", A, 5.0)
    assert len(source) == 3
    assert source.evicted == 2
    assert source.pinned("192.0.2.1", 6.0) is None  # the two least recent went
    assert source.pinned("192.0.2.2", 6.0) is None
    assert source.pinned("192.0.2.0", 6.0) == B
    assert source.pinned("192.0.2.11", 6.0) == A


def test_a_flood_of_addresses_cannot_grow_the_table() -> None:
    source = table(max_entries=1000)
    for i in range(50_000):
        source.pin(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", A, 0.0)
    assert len(source) == 1000
    assert source.evicted == 49_000
