"""The Prometheus collector over a small controller, no socket: the text it renders parses with
prometheus-client's own parser, and each family carries the labels and values the counters,
histograms and backend states hold at scrape time."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from evenflow.config.load import load_data
from evenflow.core.backend import Health
from evenflow.observability.metrics import STATES, make_registry, render
from evenflow.proxy.http1.downstream import HttpListenerContext
from evenflow.runtime.controller import Controller

WEB = ["10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000"]
API = ["10.0.1.1:9000", "10.0.1.2:9000"]


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def small_server(dropped: int = 0) -> Any:
    """What the collector reads of a Server: the controller, the listeners, the access log."""
    config = load_data(
        {
            "listeners": [
                {
                    "name": "public",
                    "bind": "127.0.0.1:8080",
                    "routes": [
                        {"name": "api", "match": {"path_prefix": "/api"}, "pool": "api"},
                        {"name": "site", "pool": "web"},
                    ],
                }
            ],
            "pools": {
                "web": {"backends": WEB},
                "api": {
                    "algorithm": "maglev",
                    "hash_key": "cookie:session",
                    "table_size": 101,
                    "backends": API,
                    "sticky": {"cookie": {"name": "pin"}},
                },
            },
        }
    ).config
    controller = Controller(config, clock=Clock())
    ctx = HttpListenerContext("public", controller, loop=None, access_log=None)  # type: ignore[arg-type]
    listening = {"public": SimpleNamespace(ctx=ctx)}
    return SimpleNamespace(
        controller=controller,
        listening=listening,
        access_log=SimpleNamespace(dropped_total=lambda: dropped),
    )


def scrape(server: Any) -> dict[str, Any]:
    text = render(make_registry(server)).decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(families: dict[str, Any], name: str, sample: str | None = None) -> dict[Any, float]:
    """{frozenset(labels): value} of one family's samples named `sample` (default: `name`)."""
    wanted = sample or name
    return {
        frozenset(s.labels.items()): s.value for s in families[name].samples if s.name == wanted
    }


def value(families: dict[str, Any], name: str, sample: str | None = None, **labels: str) -> float:
    found = samples(families, name, sample).get(frozenset(labels.items()))
    assert found is not None, f"no {sample or name} sample with {labels}"
    return found


def test_every_family_is_there_with_its_type() -> None:
    families = scrape(small_server())
    expected = {
        "evenflow_requests": "counter",
        "evenflow_request_bytes": "counter",
        "evenflow_request_duration_seconds": "histogram",
        "evenflow_upstream_first_byte_seconds": "histogram",
        "evenflow_upstream_connect_seconds": "histogram",
        "evenflow_retries": "counter",
        "evenflow_ejections": "counter",
        "evenflow_backend_state": "gauge",
        "evenflow_backend_effective_weight": "gauge",
        "evenflow_backend_in_flight": "gauge",
        "evenflow_backend_active_connections": "gauge",
        "evenflow_backend_bytes": "counter",
        "evenflow_pool_panic": "gauge",
        "evenflow_sticky": "counter",
        "evenflow_backend_traffic_share": "gauge",
        "evenflow_backend_expected_share": "gauge",
        "evenflow_connections": "counter",
        "evenflow_connections_active": "gauge",
        "evenflow_access_log_dropped": "counter",
    }
    assert {name: families[name].type for name in expected} == expected
    assert all(name.startswith("evenflow_") for name in families)


def test_requests_by_status_class_and_bytes() -> None:
    server = small_server()
    series = server.controller.stats.request_series("public", "site", "web", WEB[0])
    series.status_2xx += 41
    series.status_5xx += 1
    series.bytes_in += 100
    series.bytes_out += 9000
    unrouted = server.controller.stats.request_series("public", "", "", "")
    unrouted.status_4xx += 3
    families = scrape(server)
    labels = {"listener": "public", "route": "site", "pool": "web", "backend": WEB[0]}
    requests = samples(families, "evenflow_requests", "evenflow_requests_total")
    assert requests == {
        frozenset({**labels, "code_class": "2xx"}.items()): 41.0,
        frozenset({**labels, "code_class": "5xx"}.items()): 1.0,
        frozenset(
            {
                "listener": "public",
                "route": "",
                "pool": "",
                "backend": "",
                "code_class": "4xx",
            }.items()
        ): 3.0,
    }  # classes never seen have no sample
    total = "evenflow_request_bytes_total"
    assert value(families, "evenflow_request_bytes", total, **labels, direction="in") == 100
    assert value(families, "evenflow_request_bytes", total, **labels, direction="out") == 9000


def test_histograms_are_cumulative_with_a_count_and_a_sum() -> None:
    server = small_server()
    series = server.controller.stats.request_series("public", "site", "web", WEB[1])
    for seconds in (0.0004, 0.003, 0.003, 0.2, 40.0):
        series.duration.observe(seconds)
    series.ttfb.observe(0.002)
    families = scrape(server)
    name = "evenflow_request_duration_seconds"
    labels = {"listener": "public", "route": "site", "pool": "web", "backend": WEB[1]}
    buckets = {
        float(dict(key)["le"]): count
        for key, count in samples(families, name, name + "_bucket").items()
        if dict(key)["backend"] == WEB[1]
    }
    assert buckets[0.0005] == 1 and buckets[0.0025] == 1 and buckets[0.005] == 3
    assert buckets[0.25] == 4 and buckets[30.0] == 4 and buckets[math.inf] == 5
    assert list(buckets.values()) == sorted(buckets.values())
    assert value(families, name, name + "_count", **labels) == 5
    assert value(families, name, name + "_sum", **labels) == pytest.approx(40.2064)
    ttfb = "evenflow_upstream_first_byte_seconds"
    assert value(families, ttfb, ttfb + "_count", **labels) == 1
    # a series with no time to first byte (evenflow answered itself) has no ttfb sample
    server.controller.stats.request_series("public", "", "", "").duration.observe(0.0001)
    families = scrape(server)
    assert all(dict(k)["route"] == "site" for k in samples(families, ttfb, ttfb + "_count"))


def test_connect_times_retries_and_ejections_per_backend() -> None:
    server = small_server()
    stats = server.controller.stats.backend_series("web", WEB[2])
    stats.connect.observe(0.0003)
    stats.retries["connect_failed"] = 4
    stats.retries["timeout"] = 1
    stats.ejections = 2
    families = scrape(server)
    pair = {"pool": "web", "backend": WEB[2]}
    connect = "evenflow_upstream_connect_seconds"
    assert value(families, connect, connect + "_count", **pair) == 1
    retries = "evenflow_retries_total"
    assert value(families, "evenflow_retries", retries, **pair, reason="connect_failed") == 4
    assert value(families, "evenflow_retries", retries, **pair, reason="timeout") == 1
    assert value(families, "evenflow_ejections", "evenflow_ejections_total", **pair) == 2


def test_backend_state_is_one_of_five_and_follows_the_controller() -> None:
    server = small_server()
    controller = server.controller
    controller.drain("web", WEB[0])
    controller.disable("web", WEB[1])
    web2 = controller.backend("web", WEB[2])
    web2.in_flight, web2.active_connections = 3, 5
    families = scrape(server)
    state = samples(families, "evenflow_backend_state")
    for address, current in ((WEB[0], "draining"), (WEB[1], "disabled"), (WEB[2], "healthy")):
        shown = {
            name: state[frozenset({"pool": "web", "backend": address, "state": name}.items())]
            for name in STATES
        }
        assert shown == {name: 1.0 if name == current else 0.0 for name in STATES}
    weight = "evenflow_backend_effective_weight"
    assert value(families, weight, pool="web", backend=WEB[0]) == 0.0  # drained: no new picks
    assert value(families, weight, pool="web", backend=WEB[2]) == 1.0
    pair = {"pool": "web", "backend": WEB[2]}
    assert value(families, "evenflow_backend_in_flight", **pair) == 3
    assert value(families, "evenflow_backend_active_connections", **pair) == 5


def test_panic_per_pool() -> None:
    server = small_server()
    controller = server.controller
    for backend in controller.backends["web"]:
        backend.health = Health.UNHEALTHY
    controller.publish()
    families = scrape(server)
    assert value(families, "evenflow_pool_panic", pool="web") == 1.0
    assert value(families, "evenflow_pool_panic", pool="api") == 0.0


def test_sticky_outcomes_and_shares() -> None:
    server = small_server()
    tracking = server.controller.tracking["api"]
    tracking.sticky_hits, tracking.sticky_misses, tracking.sticky_repins = 7, 2, 1
    families = scrape(server)
    sticky = "evenflow_sticky_total"
    outcomes = {
        outcome: value(families, "evenflow_sticky", sticky, pool="api", outcome=outcome)
        for outcome in ("hit", "miss", "repin")
    }
    assert outcomes == {"hit": 7, "miss": 2, "repin": 1}
    assert not any(dict(k)["pool"] == "web" for k in samples(families, "evenflow_sticky", sticky))
    # expected shares: the maglev table's for api, the weights' for web; each pool sums to 1
    expected = samples(families, "evenflow_backend_expected_share")
    for pool, members in (("web", WEB), ("api", API)):
        shares = [expected[frozenset({"pool": pool, "backend": a}.items())] for a in members]
        assert sum(shares) == pytest.approx(1.0, abs=0.01)
    assert expected[frozenset({"pool": "web", "backend": WEB[0]}.items())] == pytest.approx(
        1 / 3, abs=0.001
    )


def test_listener_connections_and_dropped_log_lines() -> None:
    server = small_server(dropped=12)
    ctx = server.listening["public"].ctx
    ctx.opened = 9
    ctx.connections.update({object(), object()})
    families = scrape(server)
    assert (
        value(families, "evenflow_connections", "evenflow_connections_total", listener="public")
        == 9
    )
    assert value(families, "evenflow_connections_active", listener="public") == 2
    dropped = "evenflow_access_log_dropped"
    assert value(families, dropped, dropped + "_total") == 12


def test_no_access_log_counts_nothing_dropped() -> None:
    server = small_server()
    server.access_log = None
    dropped = "evenflow_access_log_dropped"
    assert value(scrape(server), dropped, dropped + "_total") == 0
