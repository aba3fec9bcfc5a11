"""The metric registry without a clock or a socket: histogram bucketing (Prometheus' `le`
semantics), quantile interpolation, and the recent per-backend rates and quantiles the dashboard
shows, computed from a history of samples taken at chosen times."""

from __future__ import annotations

import bisect

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evenflow.observability.stats import (
    BUCKETS_S,
    HISTORY_S,
    SAMPLE_S,
    Histogram,
    Registry,
    by_backend,
    quantile,
)

INF = len(BUCKETS_S)  # index of the +Inf bucket


def bucket_index(bound: float) -> int:
    return BUCKETS_S.index(bound)


# --- histograms -------------------------------------------------------------------------------


def test_the_buckets_span_half_a_millisecond_to_thirty_seconds() -> None:
    assert BUCKETS_S[0] == 0.0005 and BUCKETS_S[-1] == 30.0
    assert list(BUCKETS_S) == sorted(set(BUCKETS_S))


@pytest.mark.parametrize(
    ("value", "index"),
    [
        (0.0, 0),
        (0.0001, 0),
        (0.0005, 0),  # on a bound: counted as <= that bound (Prometheus' le)
        (0.00051, 1),
        (0.001, 1),
        (0.0099, bucket_index(0.01)),
        (0.01, bucket_index(0.01)),
        (0.010001, bucket_index(0.025)),
        (29.9, bucket_index(30.0)),
        (30.0, bucket_index(30.0)),
        (30.0001, INF),
        (3600.0, INF),
    ],
)
def test_an_observation_lands_in_the_first_bucket_whose_bound_holds_it(
    value: float, index: int
) -> None:
    hist = Histogram()
    hist.observe(value)
    assert hist.counts[index] == 1 and hist.count == 1
    assert hist.sum == value


def test_count_and_sum_add_up_and_a_copy_is_independent() -> None:
    hist = Histogram()
    for value in (0.002, 0.002, 0.3, 45.0):
        hist.observe(value)
    assert hist.count == 4
    assert hist.sum == pytest.approx(45.304)
    copy = hist.copy()
    hist.observe(0.002)
    assert copy.count == 4 and hist.count == 5
    assert copy.counts[bucket_index(0.0025)] == 2


# --- quantiles --------------------------------------------------------------------------------


def counts_with(**by_bound: int) -> list[int]:
    """Bucket counts from {"b0_001": n, ...} (bound with . written as _; "inf" for +Inf)."""
    counts = [0] * (len(BUCKETS_S) + 1)
    for name, count in by_bound.items():
        index = INF if name == "inf" else bucket_index(float(name[1:].replace("_", ".")))
        counts[index] = count
    return counts


def test_no_observations_no_quantile() -> None:
    assert quantile([0] * (len(BUCKETS_S) + 1), 0.5) is None


def test_a_quantile_is_interpolated_linearly_inside_its_bucket() -> None:
    counts = counts_with(b0_001=10)  # all ten in (0.5 ms, 1 ms]
    assert quantile(counts, 0.5) == pytest.approx(0.00075)
    assert quantile(counts, 0.1) == pytest.approx(0.00055)
    assert quantile(counts, 1.0) == pytest.approx(0.001)


def test_the_first_bucket_starts_at_zero() -> None:
    assert quantile(counts_with(b0_0005=4), 0.5) == pytest.approx(0.00025)


def test_the_rank_picks_the_bucket_across_several() -> None:
    # 90 in (5, 10] ms and 10 in (100, 250] ms: p50 in the first, p99 in the second
    counts = counts_with(b0_01=90, b0_25=10)
    assert quantile(counts, 0.5) == pytest.approx(0.005 + 0.005 * 50 / 90)
    assert quantile(counts, 0.9) == pytest.approx(0.01)  # exactly the first bucket's top
    assert quantile(counts, 0.99) == pytest.approx(0.1 + 0.15 * 9 / 10)


def test_empty_buckets_between_are_skipped() -> None:
    counts = counts_with(b0_001=1, b5_0=1)
    assert quantile(counts, 0.75) == pytest.approx(2.5 + 2.5 * 0.5)


def test_observations_past_the_last_bound_report_that_bound() -> None:
    # as Prometheus' histogram_quantile: the +Inf bucket has no width to interpolate in
    assert quantile(counts_with(inf=5), 0.5) == 30.0
    assert quantile(counts_with(b0_001=99, inf=1), 0.999) == 30.0


def test_quantiles_never_decrease_with_q() -> None:
    counts = counts_with(b0_0005=3, b0_005=20, b0_05=7, b1_0=2, inf=1)
    values = [quantile(counts, q / 100) for q in range(1, 101)]
    assert all(v is not None for v in values)
    assert values == sorted(values)  # type: ignore[type-var]


# --- recent per-backend views -----------------------------------------------------------------


def serve(
    registry: Registry,
    backend: str,
    count: int,
    seconds: float,
    route: str = "r",
    pool: str = "web",
) -> None:
    """`count` more 2xx requests of `seconds` each to `backend` of `pool` via `route`."""
    series = registry.request_series("web", route, pool, backend)
    series.status_2xx += count
    for _ in range(count):
        series.duration.observe(seconds)


def test_no_rates_before_two_samples() -> None:
    registry = Registry()
    assert by_backend(registry) == {}
    serve(registry, "b1", 10, 0.001)
    registry.sample(now=100.0)
    assert by_backend(registry) == {}
    assert registry.recent() == {}


def test_rate_and_quantiles_cover_only_the_window() -> None:
    registry = Registry()
    registry.sample(now=0.0)
    serve(registry, "b1", 1000, 2.0)  # long ago: slow requests, outside the window
    for at in range(5, 101, 5):  # every 5 s, 10 requests of 3 ms
        registry.sample(now=float(at))
        serve(registry, "b1", 10, 0.003)
    registry.sample(now=105.0)
    recent = by_backend(registry, window_s=60.0)[("web", "b1")]
    assert recent.rps == pytest.approx(2.0)  # 10 every 5 s
    assert recent.p50 is not None and 0.0025 < recent.p50 <= 0.005
    assert recent.p99 is not None and recent.p99 <= 0.005  # the 2 s requests are out of it
    # the sparkline: one value per sample period, oldest first, over the whole history
    assert recent.history_rps[0] == pytest.approx(1000 / 5)
    assert recent.history_rps[1:] == [2.0] * 20
    assert recent.as_dict() == {
        "rps": 2.0,
        "p50_ms": round(recent.p50 * 1000, 3),
        "p99_ms": round(recent.p99 * 1000, 3),
        "history_rps": recent.history_rps,
    }


def test_series_of_one_backend_are_merged_and_unpicked_requests_left_out() -> None:
    registry = Registry()
    serve(registry, "b1", 1, 0.001, route="api")  # before the window starts: not counted
    registry.sample(now=0.0)
    serve(registry, "b1", 30, 0.001, route="api")
    serve(registry, "b1", 20, 0.020, route="static")
    serve(registry, "b2", 5, 0.001)
    serve(registry, "", 7, 0.0001)  # answered by evenflow itself (no route, no backend)
    serve(registry, "b1", 4, 0.001, pool="other")
    registry.sample(now=10.0)
    recent = by_backend(registry)
    assert set(recent) == {("web", "b1"), ("web", "b2"), ("other", "b1")}
    b1 = recent[("web", "b1")]
    assert b1.rps == pytest.approx(5.0)  # 50 in 10 s, both routes
    assert b1.p50 is not None and b1.p50 <= 0.001  # 30 fast ones of 50
    assert b1.p99 is not None and 0.01 < b1.p99 <= 0.025
    assert recent[("web", "b2")].rps == pytest.approx(0.5)
    assert recent[("other", "b1")].rps == pytest.approx(0.4)


def test_a_series_that_appears_mid_window_counts_from_zero() -> None:
    registry = Registry()
    registry.sample(now=0.0)
    registry.sample(now=5.0)
    serve(registry, "new", 15, 0.001)
    registry.sample(now=10.0)
    recent = by_backend(registry)[("web", "new")]
    assert recent.rps == pytest.approx(1.5)
    assert recent.history_rps == [0.0, 3.0]


def test_an_idle_backend_has_a_zero_rate_and_no_quantiles() -> None:
    registry = Registry()
    serve(registry, "b1", 3, 0.001)
    registry.sample(now=0.0)
    registry.sample(now=5.0)
    recent = by_backend(registry)[("web", "b1")]
    assert recent.rps == 0.0 and recent.p50 is None and recent.p99 is None
    assert recent.as_dict()["p50_ms"] is None


def test_recent_per_series() -> None:
    registry = Registry()
    registry.sample(now=0.0)
    serve(registry, "b1", 20, 0.004)
    registry.sample(now=4.0)
    [(key, stats)] = registry.recent().items()
    assert key == ("web", "r", "web", "b1")
    assert stats.rate == pytest.approx(5.0)
    assert stats.p50 is not None and 0.0025 < stats.p50 <= 0.005


def test_history_is_bounded() -> None:
    registry = Registry()
    for at in range(0, 10 * HISTORY_S, SAMPLE_S):
        registry.sample(now=float(at))
    assert len(registry.history) == HISTORY_S // SAMPLE_S + 1
    assert registry.history[0][0] == 10 * HISTORY_S - SAMPLE_S - HISTORY_S


def test_series_are_found_again_by_name() -> None:
    # a reload rebuilds routes; their series must be the same objects, counters intact
    registry = Registry()
    first = registry.request_series("web", "r", "web", "b1")
    first.status_2xx += 1
    assert registry.request_series("web", "r", "web", "b1") is first
    assert registry.request_series("web", "r", "web", "b1").classes[2] == 1
    assert registry.backend_series("web", "b1") is registry.backend_series("web", "b1")


@pytest.mark.parametrize(
    ("status", "index"),
    [(0, 0), (99, 0), (101, 1), (200, 2), (299, 2), (304, 3), (404, 4), (503, 5), (600, 0)],
)
def test_a_request_is_counted_in_its_status_class(status: int, index: int) -> None:
    series = Registry().request_series("web", "r", "web", "b1")
    series.count_status(status)
    assert series.classes == [1 if i == index else 0 for i in range(6)]


@given(st.floats(min_value=0.0, max_value=1e6, allow_nan=False))
def test_the_bucket_is_the_one_bisect_left_finds(value: float) -> None:
    hist = Histogram()
    hist.observe(value)
    assert hist.counts[bisect.bisect_left(BUCKETS_S, value)] == 1
