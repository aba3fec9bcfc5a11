"""The contract every algorithm keeps: registry word, weight 0 skipped, avoid honoured, None."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from evenflow.balancing.base import BalancerOptions, Needs, PickContext, algorithm_names, build
from evenflow.core.backend import BackendState

CTX = PickContext()
NEEDS = {
    "consistent_hash": Needs.CLIENT_ADDR,
    "ip_hash": Needs.CLIENT_ADDR,
    "least_conn": Needs.NONE,
    "maglev": Needs.CLIENT_ADDR,
    "power_of_two": Needs.NONE,
    "random": Needs.NONE,
    "round_robin": Needs.NONE,
    "weighted_round_robin": Needs.NONE,
}
NAMES = sorted(NEEDS)
# no key at all, and a request with a key and a client address (hashing algorithms use them)
CONTEXTS = [CTX, PickContext(client_ip="10.1.2.3", hash_key=b"user-1")]


def test_every_config_word_is_registered() -> None:
    assert algorithm_names() == NAMES


def test_every_algorithm_declares_what_it_keys_on() -> None:
    pool = [BackendState("p", "a:80")]
    for name in NAMES:
        balancer = build(name, pool)
        assert type(balancer).name == name
        assert type(balancer).needs is NEEDS[name]


# weights with fractions (slow start) and zeros (drain); in_flight as the data plane leaves it
backend_specs = st.lists(
    st.tuples(st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.0, 3.0, 7.0]), st.integers(0, 5)),
    max_size=8,
)


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(NAMES),
    backend_specs,
    st.sampled_from(CONTEXTS),
    st.sampled_from([None, BalancerOptions(bounded_load=1.25)]),
    st.data(),
)
def test_picks_keep_the_contract(
    name: str,
    specs: list[tuple[float, int]],
    ctx: PickContext,
    options: BalancerOptions | None,
    data: st.DataObject,
) -> None:
    pool = []
    for i, (weight, in_flight) in enumerate(specs):
        backend = BackendState("p", f"b{i}:80", int(weight))
        backend.effective_weight = weight
        backend.in_flight = in_flight
        pool.append(backend)
    pickable = [b for b in pool if b.effective_weight > 0]
    avoid = data.draw(st.sets(st.sampled_from(pool)) if pool else st.just(set[BackendState]()))
    balancer = build(name, pool, options)
    for _ in range(len(pool) * 3 + 1):
        plain = balancer.pick(ctx)
        retry = balancer.pick(ctx, avoid=avoid)
        if not pickable:
            assert plain is None
            assert retry is None
            continue
        assert plain in pickable
        assert retry in pickable
        if any(b not in avoid for b in pickable):
            assert retry not in avoid
