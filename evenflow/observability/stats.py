"""Counters and histograms the data plane moves per request, read when someone scrapes.

The hot path only adds integers: one `RequestStats` per (listener, route, pool, backend) is
found through a dict keyed by the backend object cached on the route, then a status-class
counter, two byte counters and two histogram buckets move. Everything that costs (labels,
text, quantiles, rates) happens when /metrics or the dashboard asks.

Series live in a registry the control plane owns, keyed by names, so a reload (which rebuilds
routes) does not reset a counter Prometheus is graphing.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Final

# request duration, time to first byte and connect time: 0.5 ms to 30 s (then +Inf). Typed as a
# tuple of any length: mypyc would keep a fixed-length tuple of floats as fifteen C doubles, and
# box them all into a new tuple whenever the tuple itself is passed on.
BUCKETS_S: Final[tuple[float, ...]] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


class Histogram:
    """Bucket counts (each bucket's own, made cumulative when read) and a sum, Prometheus
    style. A native integer per bucket: in a list, compiled, every increment past 256 boxes
    a new int and frees the old one."""

    __slots__ = (
        "sum",
        "up_to_500us",
        "up_to_1ms",
        "up_to_2_5ms",
        "up_to_5ms",
        "up_to_10ms",
        "up_to_25ms",
        "up_to_50ms",
        "up_to_100ms",
        "up_to_250ms",
        "up_to_500ms",
        "up_to_1s",
        "up_to_2_5s",
        "up_to_5s",
        "up_to_10s",
        "up_to_30s",
        "over_30s",
    )

    def __init__(self) -> None:
        self.sum = 0.0
        self.up_to_500us = 0  # values in (previous bound, 0.5 ms]
        self.up_to_1ms = 0
        self.up_to_2_5ms = 0
        self.up_to_5ms = 0
        self.up_to_10ms = 0
        self.up_to_25ms = 0
        self.up_to_50ms = 0
        self.up_to_100ms = 0
        self.up_to_250ms = 0
        self.up_to_500ms = 0
        self.up_to_1s = 0
        self.up_to_2_5s = 0
        self.up_to_5s = 0
        self.up_to_10s = 0
        self.up_to_30s = 0
        self.over_30s = 0  # the +Inf bucket

    def observe(self, value: float) -> None:
        # BUCKETS_S as literals, compared from the bottom (a proxied request's times fall in
        # the first buckets): compiled, each compare is on C doubles, where a walk over the
        # tuple unboxed a float per step. A test checks every bucket against bisect.
        if value <= 0.0005:
            self.up_to_500us += 1
        elif value <= 0.001:
            self.up_to_1ms += 1
        elif value <= 0.0025:
            self.up_to_2_5ms += 1
        elif value <= 0.005:
            self.up_to_5ms += 1
        elif value <= 0.01:
            self.up_to_10ms += 1
        elif value <= 0.025:
            self.up_to_25ms += 1
        elif value <= 0.05:
            self.up_to_50ms += 1
        elif value <= 0.1:
            self.up_to_100ms += 1
        elif value <= 0.25:
            self.up_to_250ms += 1
        elif value <= 0.5:
            self.up_to_500ms += 1
        elif value <= 1.0:
            self.up_to_1s += 1
        elif value <= 2.5:
            self.up_to_2_5s += 1
        elif value <= 5.0:
            self.up_to_5s += 1
        elif value <= 10.0:
            self.up_to_10s += 1
        elif value <= 30.0:
            self.up_to_30s += 1
        else:
            self.over_30s += 1
        self.sum += value

    @property
    def counts(self) -> list[int]:
        """Each bucket's count, in BUCKETS_S's order, then +Inf's."""
        return [
            self.up_to_500us,
            self.up_to_1ms,
            self.up_to_2_5ms,
            self.up_to_5ms,
            self.up_to_10ms,
            self.up_to_25ms,
            self.up_to_50ms,
            self.up_to_100ms,
            self.up_to_250ms,
            self.up_to_500ms,
            self.up_to_1s,
            self.up_to_2_5s,
            self.up_to_5s,
            self.up_to_10s,
            self.up_to_30s,
            self.over_30s,
        ]

    @property
    def count(self) -> int:
        return sum(self.counts)

    def copy(self) -> Histogram:
        other = Histogram()
        (
            other.up_to_500us,
            other.up_to_1ms,
            other.up_to_2_5ms,
            other.up_to_5ms,
            other.up_to_10ms,
            other.up_to_25ms,
            other.up_to_50ms,
            other.up_to_100ms,
            other.up_to_250ms,
            other.up_to_500ms,
            other.up_to_1s,
            other.up_to_2_5s,
            other.up_to_5s,
            other.up_to_10s,
            other.up_to_30s,
            other.over_30s,
        ) = self.counts
        other.sum = self.sum
        return other


def quantile(counts: list[int], q: float) -> float | None:
    """The q-quantile (0..1) of bucketed observations, interpolated within its bucket (as
    Prometheus' histogram_quantile does); None without observations."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(counts):
        if seen + count >= rank and count:
            low = BUCKETS_S[index - 1] if index > 0 else 0.0
            high = BUCKETS_S[index] if index < len(BUCKETS_S) else BUCKETS_S[-1]
            return low + (high - low) * (rank - seen) / count
        seen += count
    return BUCKETS_S[-1]


class RequestStats:
    """One (listener, route, pool, backend) series of HTTP requests."""

    __slots__ = (
        "labels",
        "no_response",
        "status_1xx",
        "status_2xx",
        "status_3xx",
        "status_4xx",
        "status_5xx",
        "bytes_in",
        "bytes_out",
        "duration",
        "ttfb",
    )

    def __init__(self, labels: tuple[str, str, str, str]) -> None:
        self.labels = labels  # listener, route, pool, backend ("" when none was picked)
        # requests by status class: a native integer each, as Histogram's buckets
        self.no_response = 0
        self.status_1xx = 0
        self.status_2xx = 0
        self.status_3xx = 0
        self.status_4xx = 0
        self.status_5xx = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.duration = Histogram()
        self.ttfb = Histogram()

    def count_status(self, status: int) -> None:
        """One more request answered with `status` (0: none)."""
        if 200 <= status < 300:
            self.status_2xx += 1
        elif 300 <= status < 400:
            self.status_3xx += 1
        elif 400 <= status < 500:
            self.status_4xx += 1
        elif 500 <= status < 600:
            self.status_5xx += 1
        elif 100 <= status < 200:
            self.status_1xx += 1
        else:
            self.no_response += 1

    @property
    def classes(self) -> list[int]:
        """Requests by status class: none, 1xx .. 5xx."""
        return [
            self.no_response,
            self.status_1xx,
            self.status_2xx,
            self.status_3xx,
            self.status_4xx,
            self.status_5xx,
        ]


class BackendStats:
    """Per backend: how long connecting takes, and what went wrong."""

    __slots__ = ("connect", "retries", "ejections")

    def __init__(self) -> None:
        self.connect = Histogram()
        self.retries: dict[str, int] = {}  # reason → retries it caused
        self.ejections = 0


class Registry:
    """Every series, by name; owned by the control plane, survives reloads."""

    __slots__ = ("requests", "backends", "history")

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str, str], RequestStats] = {}
        self.backends: dict[tuple[str, str], BackendStats] = {}
        # (time, {labels: (requests, duration histogram copy)}) every SAMPLE_S, for rates and
        # recent quantiles on the dashboard; bounded to HISTORY_S
        self.history: deque[tuple[float, dict[tuple[str, str, str, str], tuple[int, Histogram]]]]
        self.history = deque(maxlen=HISTORY_S // SAMPLE_S + 1)

    def request_series(self, listener: str, route: str, pool: str, backend: str) -> RequestStats:
        key = (listener, route, pool, backend)
        series = self.requests.get(key)
        if series is None:
            series = self.requests[key] = RequestStats(key)
        return series

    def backend_series(self, pool: str, address: str) -> BackendStats:
        key = (pool, address)
        series = self.backends.get(key)
        if series is None:
            series = self.backends[key] = BackendStats()
        return series

    def sample(self, now: float | None = None) -> None:
        """Remember the totals now (called every SAMPLE_S by the control plane)."""
        self.history.append(
            (
                time.monotonic() if now is None else now,
                {key: (sum(s.classes), s.duration.copy()) for key, s in self.requests.items()},
            )
        )

    def recent(self, window_s: float = 60.0) -> dict[tuple[str, str, str, str], RecentStats]:
        """Per series over about the last `window_s`: requests/s and duration quantiles."""
        if len(self.history) < 2:
            return {}
        newest_at, newest = self.history[-1]
        oldest_at, oldest = self.history[0]
        for at, totals in self.history:
            if newest_at - at <= window_s:
                oldest_at, oldest = at, totals
                break
        span = max(newest_at - oldest_at, 1e-9)
        result = {}
        for key, (count, hist) in newest.items():
            before_count, before_hist = oldest.get(key, (0, Histogram()))
            counts = [a - b for a, b in zip(hist.counts, before_hist.counts, strict=True)]
            result[key] = RecentStats(
                (count - before_count) / span, quantile(counts, 0.5), quantile(counts, 0.99)
            )
        return result


def by_backend(registry: Registry, window_s: float = 60.0) -> dict[tuple[str, str], BackendRecent]:
    """Per (pool, backend address) over about the last `window_s`: requests/s, p50 and p99
    latency, and the requests/s of each sample period (oldest first) for a sparkline."""
    history = list(registry.history)
    if len(history) < 2:
        return {}
    newest_at, newest = history[-1]
    start = next(i for i, (at, _) in enumerate(history) if newest_at - at <= window_s)
    oldest_at, oldest = history[start]
    span = max(newest_at - oldest_at, 1e-9)
    requests: dict[tuple[str, str], int] = {}
    counts: dict[tuple[str, str], list[int]] = {}
    for key, (count, hist) in newest.items():
        pair = (key[2], key[3])
        if not pair[1]:
            continue  # requests that reached no backend
        before_count, before_hist = oldest.get(key, (0, Histogram()))
        requests[pair] = requests.get(pair, 0) + count - before_count
        merged = counts.setdefault(pair, [0] * (len(BUCKETS_S) + 1))
        for i, (now_count, then_count) in enumerate(
            zip(hist.counts, before_hist.counts, strict=True)
        ):
            merged[i] += now_count - then_count
    series: dict[tuple[str, str], list[float]] = {pair: [] for pair in requests}
    for (at_a, totals_a), (at_b, totals_b) in zip(history, history[1:], strict=False):
        gap = max(at_b - at_a, 1e-9)
        sums: dict[tuple[str, str], int] = {}
        for key, (count, _) in totals_b.items():
            pair = (key[2], key[3])
            if pair in series:
                previous = totals_a.get(key)
                sums[pair] = sums.get(pair, 0) + count - (previous[0] if previous else 0)
        for pair, points in series.items():
            points.append(round(sums.get(pair, 0) / gap, 3))
    return {
        pair: BackendRecent(
            requests[pair] / span,
            quantile(counts[pair], 0.5),
            quantile(counts[pair], 0.99),
            series[pair],
        )
        for pair in requests
    }


class BackendRecent:
    __slots__ = ("rps", "p50", "p99", "history_rps")

    def __init__(
        self, rps: float, p50: float | None, p99: float | None, history_rps: list[float]
    ) -> None:
        self.rps = rps
        self.p50 = p50  # seconds
        self.p99 = p99
        self.history_rps = history_rps  # one value per SAMPLE_S, oldest first

    def as_dict(self) -> dict[str, object]:
        return {
            "rps": round(self.rps, 3),
            "p50_ms": None if self.p50 is None else round(self.p50 * 1000, 3),
            "p99_ms": None if self.p99 is None else round(self.p99 * 1000, 3),
            "history_rps": self.history_rps,
        }


class RecentStats:
    __slots__ = ("rate", "p50", "p99")

    def __init__(self, rate: float, p50: float | None, p99: float | None) -> None:
        self.rate = rate  # requests per second
        self.p50 = p50  # seconds
        self.p99 = p99


SAMPLE_S: Final = 5  # how often totals are remembered for rates and recent quantiles
HISTORY_S: Final = 300  # how far back (the dashboard shows the last minutes)
