"""The hot-spot view with a fake clock: recent backend shares against expected ones, sketch
windows, the NAT rule and its log lines, and the controller's expected shares per algorithm."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from evenflow.config.load import load_data
from evenflow.config.model import Pool
from evenflow.core.backend import Admin, BackendState
from evenflow.observability.heavy_hitters import SpaceSaving
from evenflow.observability.hotspots import (
    NAT_MIN_REQUESTS,
    SAMPLE_S,
    WINDOW_S,
    HotspotWatch,
    nat_suspect,
    weight_shares,
)
from evenflow.runtime.controller import ActionError, Controller
from evenflow.sticky.affinity import PoolTracking

ADDRESSES = ["10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def config(**pool: Any) -> Any:
    data = {
        "listeners": [{"name": "web", "bind": "127.0.0.1:8080", "pool": "web"}],
        "pools": {"web": {"backends": ADDRESSES, **pool}},
    }
    return load_data(data).config


def controller(**pool: Any) -> tuple[Controller, Clock]:
    clock = Clock()
    return Controller(config(**pool), clock=clock), clock


def serve(c: Controller, counts: list[int]) -> None:
    """The data plane sent counts[i] more requests to backend i."""
    for backend, n in zip(c.backends["web"], counts, strict=True):
        backend.requests_total += n


def advance(c: Controller, clock: Clock, seconds: float) -> None:
    """Let `seconds` pass with housekeeping running as it does, every 0.25 s."""
    end = clock.now + seconds
    while clock.now < end:
        clock.now = min(end, clock.now + 0.25)
        c.housekeeping()


def shares(view: dict[str, Any]) -> list[tuple[float, float, int]]:
    return [(b["share"], b["expected_share"], b["requests"]) for b in view["backends"]]


# --- backend shares ---------------------------------------------------------------------------


def test_shares_are_measured_over_the_recent_window() -> None:
    c, clock = controller()
    serve(c, [60, 30, 10])
    advance(c, clock, 5)
    view = c.describe_hotspots("web")
    assert view["requests"] == 100
    assert shares(view) == [(0.6, 0.3333, 60), (0.3, 0.3333, 30), (0.1, 0.3333, 10)]
    assert view["window_s"] == pytest.approx(5)
    # a minute and more later, that burst has left the window; the new traffic is even
    advance(c, clock, WINDOW_S + 2 * SAMPLE_S)
    serve(c, [10, 10, 10])
    view = c.describe_hotspots("web")
    assert view["requests"] == 30
    assert [b["share"] for b in view["backends"]] == [0.3333] * 3
    assert WINDOW_S <= view["window_s"] <= WINDOW_S + 2 * SAMPLE_S


def test_history_is_bounded() -> None:
    c, clock = controller()
    advance(c, clock, 20 * WINDOW_S)
    watch = c.hotspots._pools["web"]
    assert watch.samples.maxlen is not None and len(watch.samples) == watch.samples.maxlen


def test_no_traffic_is_no_share() -> None:
    c, _ = controller()
    view = c.describe_hotspots("web")
    assert view["requests"] == 0 and [b["share"] for b in view["backends"]] == [0.0] * 3


def test_a_backend_added_at_runtime_counts_from_zero() -> None:
    c, clock = controller()
    serve(c, [10, 10, 10])
    advance(c, clock, 3)
    added = c.add_backend("web", "10.0.0.4:8000")
    added.requests_total += 30
    view = c.describe_hotspots("web")
    assert [b["requests"] for b in view["backends"]] == [10, 10, 10, 30]
    assert view["backends"][3]["share"] == 0.5


def test_expected_shares_follow_weights_and_usability() -> None:
    c, _ = controller(backends=[{"address": ADDRESSES[0], "weight": 1}, ADDRESSES[1]])
    c.set_weight("web", ADDRESSES[1], 3)
    assert [b["expected_share"] for b in c.describe_hotspots("web")["backends"]] == [0.25, 0.75]
    c.disable("web", ADDRESSES[1])
    view = c.describe_hotspots("web")
    assert [(b["state"], b["expected_share"]) for b in view["backends"]] == [
        ("healthy", 1.0),
        ("disabled", 0.0),
    ]


@pytest.mark.parametrize("algorithm", ["consistent_hash", "maglev", "ip_hash"])
def test_hashing_pools_expect_their_tables_shares(algorithm: str) -> None:
    c, _ = controller(algorithm=algorithm)
    balancer: Any = c.snapshot.pools["web"].balancer
    table = {b.address: share for b, share in balancer.expected_shares().items()}
    expected = [b["expected_share"] for b in c.describe_hotspots("web")["backends"]]
    assert expected == [round(table[a], 4) for a in ADDRESSES]
    assert sum(expected) == pytest.approx(1, abs=1e-3)
    if algorithm == "consistent_hash":
        # a ring's arcs are not even: the view shows the table, not 1/3 each
        assert expected != [0.3333] * 3


def test_unknown_pool_is_404() -> None:
    c, _ = controller()
    with pytest.raises(ActionError) as caught:
        c.describe_hotspots("nope")
    assert caught.value.status == 404


def test_weight_shares_of_nothing_usable() -> None:
    assert weight_shares([]) == {}
    b = BackendState("p", "10.0.0.1:1", 0)
    b.effective_weight = 0.0
    assert weight_shares([b]) == {b: 0.0}


# --- keys, clients, sticky counters -----------------------------------------------------------


def test_keys_are_listed_heaviest_first_with_their_share() -> None:
    c, _ = controller(algorithm="maglev", hash_key="header:x-user-id")
    keys = c.tracking["web"].keys
    for i in range(300):
        keys.offer(f"user-{i}")
        keys.offer("hot")
    view = c.describe_hotspots("web")
    assert view["hash_key"] == "header:x-user-id"
    assert view["keys_total"] == 600
    first = view["keys"][0]
    assert first["key"] == "hot"
    assert first["count"] - first["max_overestimate"] <= 300 <= first["count"]
    assert first["share"] == round(first["count"] / 600, 4)
    assert len(view["keys"]) == 10


def test_sketches_rotate_each_window_and_the_view_spans_two() -> None:
    c, clock = controller(algorithm="maglev", hash_key="header:x-user-id")
    tracking = c.tracking["web"]
    for _ in range(100):
        tracking.keys.offer("old-hot")
    advance(c, clock, WINDOW_S + SAMPLE_S)
    assert tracking.keys.total == 0  # a fresh sketch for this window
    for _ in range(10):
        tracking.keys.offer("new")
    view = c.describe_hotspots("web")
    assert [(k["key"], k["count"]) for k in view["keys"]] == [("old-hot", 100), ("new", 10)]
    assert view["keys_total"] == 110
    assert view["sketch_window_s"] > WINDOW_S
    advance(c, clock, WINDOW_S + SAMPLE_S)
    view = c.describe_hotspots("web")
    assert [(k["key"], k["count"]) for k in view["keys"]] == [("new", 10)]


def test_a_reload_that_changes_affinity_drops_the_old_generation() -> None:
    c, clock = controller(algorithm="maglev", hash_key="header:x-user-id")
    for _ in range(5):
        c.tracking["web"].keys.offer("u")
    advance(c, clock, WINDOW_S + SAMPLE_S)  # "u" is in the previous generation now
    c.apply_config(config(algorithm="maglev", hash_key="header:x-tenant"))
    view = c.describe_hotspots("web")
    assert (view["hash_key"], view["keys"], view["keys_total"]) == ("header:x-tenant", [], 0)


def test_sticky_counters_and_the_source_table() -> None:
    c, _ = controller(sticky={"source_ip": {"max_entries": 2}})
    tracking = c.tracking["web"]
    tracking.sticky_hits, tracking.sticky_misses, tracking.sticky_repins = 7, 3, 1
    assert tracking.source is not None
    for i in range(3):
        tracking.source.pin(f"192.0.2.{i}", ADDRESSES[0], 0.0)
    assert c.describe_hotspots("web")["sticky"] == {
        "kind": "source_ip",
        "hits": 7,
        "misses": 3,
        "repins": 1,
        "table_entries": 2,
        "table_evicted": 1,
    }
    c2, _ = controller(sticky={"cookie": {"secret": "x"}})
    assert c2.describe_hotspots("web")["sticky"]["kind"] == "cookie"
    assert c2.describe_hotspots("web")["sticky"]["table_entries"] is None
    c3, _ = controller()
    assert c3.describe_hotspots("web")["sticky"] is None


# --- the NAT rule -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lower_bound", "total", "seen", "flagged"),
    [
        (60, 100, 5, True),
        (26, 100, 5, False),  # over 25%, under 50 requests
        (50, 200, 5, False),  # 50 requests, exactly 25%: not over it
        (51, 200, 5, True),
        (500, 500, 1, False),  # the only client is the whole traffic, not a hot spot in it
        (400, 500, 2, True),
    ],
)
def test_the_nat_rule(lower_bound: int, total: int, seen: int, flagged: bool) -> None:
    assert nat_suspect(lower_bound, total, seen) is flagged


def offer_clients(tracking: PoolTracking, heavy: int, others: int, each: int = 1) -> None:
    for _ in range(heavy):
        tracking.clients.offer("203.0.113.9")
    for i in range(others):
        for _ in range(each):
            tracking.clients.offer(f"198.51.100.{i}")


def test_a_dominant_client_is_flagged_and_logged_once_then_cleared(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "evenflow.observability.hotspots")
    c, clock = controller(algorithm="ip_hash")
    tracking = c.tracking["web"]
    offer_clients(tracking, heavy=200, others=100)
    view = c.describe_hotspots("web")
    assert view["nat_suspects"] == ["203.0.113.9"]
    first = view["clients"][0]
    assert (first["address"], first["nat_suspect"]) == ("203.0.113.9", True)
    assert not any(client["nat_suspect"] for client in view["clients"][1:])
    advance(c, clock, 3 * SAMPLE_S)
    offer_clients(tracking, heavy=10, others=0)
    advance(c, clock, 3 * SAMPLE_S)
    appeared = [r.getMessage() for r in caplog.records if "likely a NAT" in r.getMessage()]
    assert appeared == [
        "pool web: client 203.0.113.9 sent 200 of 300 requests (67%): likely a NAT or proxy "
        "hot spot, pinning that share to one backend"
    ]
    # two windows of diverse traffic later, it is one client among many again
    for _ in range(2):
        advance(c, clock, WINDOW_S)
        offer_clients(tracking, heavy=5, others=30, each=5)
    advance(c, clock, 2 * SAMPLE_S)
    assert c.describe_hotspots("web")["nat_suspects"] == []
    cleared = [r.getMessage() for r in caplog.records if "no longer" in r.getMessage()]
    assert cleared == [
        "pool web: client 203.0.113.9 is no longer a hot spot (under 25% of requests)"
    ]


def test_sketch_error_never_raises_the_flag() -> None:
    # 32 counters, thousands of one-off addresses: counts inherit large errors, yet the
    # lower bound of none of them is anywhere near the rule
    c, _ = controller(algorithm="ip_hash")
    tracking = c.tracking["web"]
    for i in range(5000):
        tracking.clients.offer(f"10.{i >> 8 & 255}.{i & 255}.1")
    view = c.describe_hotspots("web")
    assert view["nat_suspects"] == []
    assert max(client["count"] for client in view["clients"]) >= NAT_MIN_REQUESTS


def test_a_hotspot_watch_works_on_plain_objects() -> None:
    # no controller: the module only needs backends, a pool config and the sketches
    watch = HotspotWatch()
    pool = Pool.model_validate({"backends": ADDRESSES})
    backends = [BackendState("web", a) for a in ADDRESSES]
    tracking = PoolTracking(pool)
    watch.tick(0.0, {"web": backends}, {"web": tracking})
    backends[0].requests_total = 4
    backends[2].admin = Admin.DRAINING
    view = watch.describe("web", pool, backends, {backends[0]: 1.0}, tracking, 1.0)
    assert [(b["state"], b["share"], b["expected_share"]) for b in view["backends"]] == [
        ("healthy", 1.0, 1.0),
        ("healthy", 0.0, 0.0),
        ("draining", 0.0, 0.0),
    ]
    assert isinstance(tracking.keys, SpaceSaving)
