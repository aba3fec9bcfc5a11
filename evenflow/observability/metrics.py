"""The Prometheus view: a collector that reads evenflow's own counters at scrape time.

Nothing here runs per request. On each scrape the collector walks the metric registry
(observability/stats.py), the backends' live state and the listeners' counters, and yields
prometheus-client metric families, which `render()` turns into the text exposition format.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from evenflow.observability.stats import BUCKETS_S, Histogram

if TYPE_CHECKING:
    from evenflow.server import Server

STATES = ("healthy", "unhealthy", "ejected", "draining", "disabled")
CLASSES = ("none", "1xx", "2xx", "3xx", "4xx", "5xx")


def _buckets(hist: Histogram) -> list[tuple[str, float]]:
    out = []
    running = 0
    for bound, count in zip((*BUCKETS_S, float("inf")), hist.counts, strict=True):
        running += count
        out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
    return out


class EvenflowCollector(Collector):
    def __init__(self, server: Server) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        controller = self.server.controller
        stats = controller.stats
        now = controller.clock()

        requests = CounterMetricFamily(
            "evenflow_requests",
            "HTTP requests answered, by listener, route, pool, backend and status class.",
            labels=["listener", "route", "pool", "backend", "code_class"],
        )
        bytes_total = CounterMetricFamily(
            "evenflow_request_bytes",
            "Body bytes of HTTP requests (in, from clients) and responses (out, to clients).",
            labels=["listener", "route", "pool", "backend", "direction"],
        )
        duration = HistogramMetricFamily(
            "evenflow_request_duration_seconds",
            "Time from a request's head to the end of its response.",
            labels=["listener", "route", "pool", "backend"],
        )
        ttfb = HistogramMetricFamily(
            "evenflow_upstream_first_byte_seconds",
            "Time from a request's head to the backend's response head.",
            labels=["listener", "route", "pool", "backend"],
        )
        for labels, series in stats.requests.items():
            for name, count in zip(CLASSES, series.classes, strict=True):
                if count:
                    requests.add_metric([*labels, name], count)
            bytes_total.add_metric([*labels, "in"], series.bytes_in)
            bytes_total.add_metric([*labels, "out"], series.bytes_out)
            duration.add_metric(list(labels), _buckets(series.duration), series.duration.sum)
            if series.ttfb.count:
                ttfb.add_metric(list(labels), _buckets(series.ttfb), series.ttfb.sum)
        yield from (requests, bytes_total, duration, ttfb)

        connect = HistogramMetricFamily(
            "evenflow_upstream_connect_seconds",
            "Time to open a connection to a backend.",
            labels=["pool", "backend"],
        )
        retries = CounterMetricFamily(
            "evenflow_retries",
            "Requests retried on another backend, by what went wrong.",
            labels=["pool", "backend", "reason"],
        )
        ejections = CounterMetricFamily(
            "evenflow_ejections",
            "Times passive detection ejected a backend.",
            labels=["pool", "backend"],
        )
        for (pool, address), backend_stats in stats.backends.items():
            if backend_stats.connect.count:
                connect.add_metric(
                    [pool, address], _buckets(backend_stats.connect), backend_stats.connect.sum
                )
            for reason, count in backend_stats.retries.items():
                retries.add_metric([pool, address, reason], count)
            ejections.add_metric([pool, address], backend_stats.ejections)
        yield from (connect, retries, ejections)

        state = GaugeMetricFamily(
            "evenflow_backend_state",
            "1 for the backend's current state (healthy, unhealthy, ejected, draining, "
            "disabled), 0 for the others.",
            labels=["pool", "backend", "state"],
        )
        weight = GaugeMetricFamily(
            "evenflow_backend_effective_weight",
            "Weight the balancer uses now (after slow start; 0 when not usable).",
            labels=["pool", "backend"],
        )
        in_flight = GaugeMetricFamily(
            "evenflow_backend_in_flight",
            "Requests sent and not yet answered.",
            labels=["pool", "backend"],
        )
        active = GaugeMetricFamily(
            "evenflow_backend_active_connections",
            "Open connections to the backend.",
            labels=["pool", "backend"],
        )
        backend_bytes = CounterMetricFamily(
            "evenflow_backend_bytes",
            "Bytes relayed to (out) and from (in) the backend on tcp and udp listeners.",
            labels=["pool", "backend", "direction"],
        )
        for pool_name, members in controller.backends.items():
            for backend in members:
                pair = [pool_name, backend.address]
                current = backend.state(now)
                for name in STATES:
                    state.add_metric([*pair, name], 1.0 if name == current else 0.0)
                weight.add_metric(pair, backend.effective_weight)
                in_flight.add_metric(pair, backend.in_flight)
                active.add_metric(pair, backend.active_connections)
                backend_bytes.add_metric([*pair, "in"], backend.bytes_in)
                backend_bytes.add_metric([*pair, "out"], backend.bytes_out)
        yield from (state, weight, in_flight, active, backend_bytes)

        panic = GaugeMetricFamily(
            "evenflow_pool_panic",
            "1 while the pool balances over all backends because too few are healthy.",
            labels=["pool"],
        )
        sticky = CounterMetricFamily(
            "evenflow_sticky",
            "Sticky-session outcomes: hit (pinned backend kept), miss (no pin yet), repin "
            "(pinned backend unusable, moved).",
            labels=["pool", "outcome"],
        )
        for pool_name in controller.backends:
            pool_view = controller.views.get(pool_name)
            panic.add_metric([pool_name], 1.0 if pool_view and pool_view.panic else 0.0)
            tracking = controller.tracking.get(pool_name)
            if tracking is not None and (
                tracking.sticky_hits or tracking.sticky_misses or tracking.sticky_repins
            ):
                sticky.add_metric([pool_name, "hit"], tracking.sticky_hits)
                sticky.add_metric([pool_name, "miss"], tracking.sticky_misses)
                sticky.add_metric([pool_name, "repin"], tracking.sticky_repins)
        yield from (panic, sticky)

        share = GaugeMetricFamily(
            "evenflow_backend_traffic_share",
            "The backend's share of its pool's requests over the last minute.",
            labels=["pool", "backend"],
        )
        expected = GaugeMetricFamily(
            "evenflow_backend_expected_share",
            "The share the backend should get (the hash table's, or its weight's).",
            labels=["pool", "backend"],
        )
        nat = GaugeMetricFamily(
            "evenflow_nat_suspects",
            "Client addresses carrying an outsized share of a pool's traffic (likely NATs).",
            labels=["pool"],
        )
        for pool_name in controller.backends:
            hot = controller.describe_hotspots(pool_name)
            for entry in hot["backends"]:
                share.add_metric([pool_name, entry["address"]], entry["share"])
                expected.add_metric([pool_name, entry["address"]], entry["expected_share"])
            nat.add_metric([pool_name], len(hot["nat_suspects"]))
        yield from (share, expected, nat)

        yield from self._listeners()

    def _listeners(self) -> Iterator[Metric]:
        from evenflow.proxy.http1.downstream import HttpListenerContext
        from evenflow.proxy.tcp import TcpListenerContext
        from evenflow.proxy.udp import UdpListenerContext

        opened = CounterMetricFamily(
            "evenflow_connections",
            "Client connections accepted (http and tcp listeners).",
            labels=["listener"],
        )
        active = GaugeMetricFamily(
            "evenflow_connections_active", "Client connections open now.", labels=["listener"]
        )
        closed = CounterMetricFamily(
            "evenflow_l4_connections_closed",
            "tcp listener connections closed, by reason (client, backend, timeout, reset, "
            "connect_failed, refused).",
            labels=["listener", "reason"],
        )
        l4_bytes = CounterMetricFamily(
            "evenflow_l4_bytes",
            "Bytes relayed by tcp and udp listeners: in from clients, out to them.",
            labels=["listener", "direction"],
        )
        datagrams = CounterMetricFamily(
            "evenflow_udp_datagrams",
            "Datagrams relayed by udp listeners.",
            labels=["listener", "direction"],
        )
        flows = GaugeMetricFamily(
            "evenflow_udp_flows", "Client flows tracked now.", labels=["listener"]
        )
        flow_drops = CounterMetricFamily(
            "evenflow_udp_flows_dropped",
            "Flows forgotten: evicted (table full) or expired (idle).",
            labels=["listener", "reason"],
        )
        for name, listening in self.server.listening.items():
            ctx = listening.ctx
            if isinstance(ctx, HttpListenerContext):
                opened.add_metric([name], ctx.opened)
                active.add_metric([name], len(ctx.connections))
            elif isinstance(ctx, TcpListenerContext):
                opened.add_metric([name], ctx.stats.opened)
                active.add_metric([name], len(ctx.connections))
                for reason, count in ctx.stats.reasons.items():
                    closed.add_metric([name, reason], count)
                l4_bytes.add_metric([name, "in"], ctx.stats.bytes_in)
                l4_bytes.add_metric([name, "out"], ctx.stats.bytes_out)
            elif isinstance(ctx, UdpListenerContext):
                udp = ctx.stats
                l4_bytes.add_metric([name, "in"], udp.bytes_in)
                l4_bytes.add_metric([name, "out"], udp.bytes_out)
                datagrams.add_metric([name, "in"], udp.datagrams_in)
                datagrams.add_metric([name, "out"], udp.datagrams_out)
                flows.add_metric([name], len(ctx.flows))
                flow_drops.add_metric([name, "evicted"], udp.evicted)
                flow_drops.add_metric([name, "expired"], udp.expired)
        yield from (opened, active, closed, l4_bytes, datagrams, flows, flow_drops)
        yield from self._http2()
        access_log = self.server.access_log
        dropped = CounterMetricFamily(
            "evenflow_access_log_dropped", "Access log lines lost because the log fell behind."
        )
        dropped.add_metric([], access_log.dropped_total() if access_log is not None else 0)
        yield dropped

    def _http2(self) -> Iterator[Metric]:
        from evenflow.proxy.http1.downstream import HttpListenerContext

        connections = CounterMetricFamily(
            "evenflow_http2_connections",
            "Client connections that spoke HTTP/2 (ALPN h2 or h2c prior knowledge).",
            labels=["listener"],
        )
        streams = CounterMetricFamily(
            "evenflow_http2_streams",
            "HTTP/2 requests received, those reset as malformed (PROTOCOL_ERROR), and those "
            "refused over max_concurrent_streams (REFUSED_STREAM).",
            labels=["listener", "outcome"],
        )
        cut = CounterMetricFamily(
            "evenflow_http2_connections_closed",
            "HTTP/2 connections evenflow closed for a protocol error or for abuse (GOAWAY "
            "ENHANCE_YOUR_CALM: rapid_reset, continuation_flood, ping_flood, ...), by reason.",
            labels=["listener", "reason"],
        )
        for name, listening in self.server.listening.items():
            ctx = listening.ctx
            if not isinstance(ctx, HttpListenerContext) or ctx.http2 is None:
                continue
            h2 = ctx.http2
            connections.add_metric([name], h2.connections)
            streams.add_metric([name, "received"], h2.streams)
            streams.add_metric([name, "malformed"], h2.malformed)
            streams.add_metric([name, "refused"], h2.refused)
            cut.add_metric([name, "protocol_error"], h2.protocol_errors)
            for reason, count in h2.abuse.items():
                cut.add_metric([name, reason], count)
        yield from (connections, streams, cut)


def make_registry(server: Server) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EvenflowCollector(server))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition format (what GET /metrics answers)."""
    return generate_latest(registry)
