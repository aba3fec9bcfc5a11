"""ip_hash: consistent on the client address, whole /24s and /64s with ip_prefix."""

from __future__ import annotations

import ipaddress
from collections import Counter

from hashing_support import backend, equal_pool, make_pool, moved
from hypothesis import given, settings
from hypothesis import strategies as st

from evenflow.balancing.base import BalancerOptions, Needs, PickContext, build
from evenflow.balancing.ip_hash import IpHash, address_key

PREFIX = BalancerOptions(ip_prefix=True)

# 20,000 fixed client addresses across many networks
CLIENTS = [f"10.{i >> 12 & 255}.{i >> 4 & 255}.{(i * 37) % 254 + 1}" for i in range(20_000)]

PREFIXED_RING = IpHash(equal_pool(10), PREFIX)  # read-only: shared by the property tests


def pick_for(balancer: IpHash, ip: str) -> str:
    picked = balancer.pick(PickContext(client_ip=ip))
    assert picked is not None
    return picked.address


def test_config_word_and_needs() -> None:
    assert IpHash.name == "ip_hash"
    assert IpHash.needs is Needs.CLIENT_ADDR
    assert isinstance(build("ip_hash", equal_pool(2)), IpHash)


def test_the_same_client_keeps_its_backend() -> None:
    first, second = IpHash(equal_pool(5)), IpHash(list(reversed(equal_pool(5))))
    for ip in CLIENTS[:2000]:
        assert pick_for(first, ip) == pick_for(first, ip) == pick_for(second, ip)


def test_clients_of_one_network_spread_without_prefix() -> None:
    balancer = IpHash(equal_pool(10))
    used = {pick_for(balancer, f"10.1.2.{host}") for host in range(256)}
    assert len(used) == 10


def test_prefix_maps_a_whole_ipv4_slash_24_to_one_backend() -> None:
    balancer = IpHash(equal_pool(10), PREFIX)
    assert len({pick_for(balancer, f"10.1.2.{host}") for host in range(256)}) == 1


def test_prefix_keeps_different_slash_24s_apart() -> None:
    balancer = IpHash(equal_pool(10), PREFIX)
    counts = Counter(pick_for(balancer, f"10.1.{net}.9") for net in range(200))
    assert len(counts) == 10
    assert max(counts.values()) < 40  # 20 each on average: no network pulls the others along


def test_prefix_maps_a_whole_ipv6_slash_64_to_one_backend() -> None:
    balancer = IpHash(equal_pool(10), PREFIX)
    net = ipaddress.IPv6Network("2001:db8:1:2::/64")
    hosts = [str(net[i * 7919 + 1]) for i in range(300)]
    spellings = ["2001:db8:1:2::1", "2001:0db8:0001:0002:0000:0000:0000:0001", "2001:DB8:1:2::ff"]
    assert len({pick_for(balancer, ip) for ip in hosts + spellings}) == 1
    others = Counter(pick_for(balancer, f"2001:db8:1:{n:x}::1") for n in range(200))
    assert len(others) == 10


def test_ipv6_clients_spread_without_prefix_and_any_spelling_agrees() -> None:
    balancer = IpHash(equal_pool(10))
    used = {pick_for(balancer, f"2001:db8:1:2::{n:x}") for n in range(1, 300)}
    assert len(used) == 10
    spellings = ["2001:db8::1", "2001:0db8:0:0:0:0:0:1", "2001:DB8::0:1"]
    assert len({pick_for(balancer, ip) for ip in spellings}) == 1


def test_an_ipv4_mapped_address_is_that_ipv4_client() -> None:
    for options in (BalancerOptions(), PREFIX):
        balancer = IpHash(equal_pool(10), options)
        for ip in CLIENTS[:300]:
            assert pick_for(balancer, f"::ffff:{ip}") == pick_for(balancer, ip)


def test_address_keys() -> None:
    assert address_key("10.1.2.3", False) == b"10.1.2.3"
    assert address_key("10.1.2.3", True) == b"10.1.2"
    assert address_key("::FFFF:10.1.2.3", True) == b"10.1.2"
    assert address_key("2001:db8::1", False) == ipaddress.IPv6Address("2001:db8::1").packed
    assert address_key("2001:db8:1:2::1", True) == bytes.fromhex("20010db800010002")
    assert address_key("fe80::1%eth0", True) == bytes.fromhex("fe80000000000000")
    assert address_key("not:an:address", False) == b"not:an:address"


def test_adding_an_11th_backend_moves_about_one_eleventh_and_only_to_it() -> None:
    pool = equal_pool(10)
    ring = IpHash(pool)
    before = [pick_for(ring, ip) for ip in CLIENTS]
    added = backend("10.0.0.11:8000")
    grown = IpHash([*pool, added])
    after = [pick_for(grown, ip) for ip in CLIENTS]
    assert moved(before, after) <= 1 / 11 + 0.02  # a modulo would move 10/11
    assert all(a == b or b == added.address for a, b in zip(before, after, strict=True))


def test_weights_and_weight_zero() -> None:
    pool = make_pool(1, 0, 3)
    balancer = IpHash(pool)
    counts = Counter(pick_for(balancer, ip) for ip in CLIENTS)
    assert "10.0.0.2:8000" not in counts
    assert abs(counts["10.0.0.3:8000"] / len(CLIENTS) - 0.75) < 0.03


def test_no_client_address_spreads() -> None:
    balancer = IpHash(equal_pool(4))
    picks = Counter(pick_for(balancer, "") for _ in range(balancer.size))
    assert set(picks.values()) == {160}


def test_retry_avoids_the_clients_backend() -> None:
    pool = equal_pool(4)
    balancer = IpHash(pool)
    for ip in CLIENTS[:200]:
        ctx = PickContext(client_ip=ip)
        own = balancer.pick(ctx)
        assert own is not None
        retry = balancer.pick(ctx, avoid={own})
        assert retry is not None
        assert retry is not own
        assert balancer.pick(ctx, avoid={own}) is retry  # deterministic


def test_empty_pool_gives_none() -> None:
    assert IpHash([]).pick(PickContext(client_ip="10.1.2.3")) is None


@settings(max_examples=40, deadline=None)
@given(st.ip_addresses(v=4), st.integers(0, 255))
def test_prefix_ignores_the_host_byte(address: ipaddress.IPv4Address, host: int) -> None:
    balancer = PREFIXED_RING
    other = ipaddress.IPv4Address(int(address) & ~0xFF | host)
    assert pick_for(balancer, str(address)) == pick_for(balancer, str(other))


@settings(max_examples=40, deadline=None)
@given(st.ip_addresses(v=6), st.integers(0, 2**64 - 1))
def test_prefix_ignores_the_interface_id(address: ipaddress.IPv6Address, iid: int) -> None:
    other = ipaddress.IPv6Address(int(address) & ~(2**64 - 1) | iid)
    assert pick_for(PREFIXED_RING, str(address)) == pick_for(PREFIXED_RING, other.exploded)
