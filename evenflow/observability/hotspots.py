"""Hot spots made visible: each backend's recent share of its pool against its expected share,
the heaviest hash keys and client addresses, and client addresses that look like a NAT.

The control plane owns a `HotspotWatch`: housekeeping calls `tick` (a few dict copies every
SAMPLE_S, nothing on the data plane), the admin API calls `describe`. It reads the counters the
data plane moves (`requests_total`) and the sketches it feeds (a pool's tracking), and knows
nothing of stickiness or balancers beyond that.

The NAT rule. A client address is a NAT suspect when, over the sketch window, it sent more
than NAT_MIN_SHARE (25%) of the requests the pool saw from all clients, at least
NAT_MIN_REQUESTS (50) of them, while more than one client address was seen. Both figures use the
sketch's lower bound (count minus overestimate), so a sketch's error never raises a flag. One
address with a quarter of a pool's traffic, keyed on the client address (ip_hash, source_ip,
hashing without a hash_key), pins at least a quarter of the load to one backend whatever the
pool's size: the shape of many users behind one NAT or proxy. A single client is not flagged:
it is the whole traffic, not a hot spot within it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from evenflow.config.model import Pool
from evenflow.core.backend import BackendState
from evenflow.observability.heavy_hitters import SpaceSaving, merged_top

log = logging.getLogger(__name__)

SAMPLE_S = 2.0  # how often each backend's request total is sampled
# Backend shares are measured over the last WINDOW_S; the key and client sketches start afresh
# every WINDOW_S and a view merges the current one with the one before: one to two windows.
WINDOW_S = 60.0
# samples kept per pool: one window of them plus the baseline; a bound whatever the uptime
MAX_SAMPLES = int(WINDOW_S / SAMPLE_S) + 1
TOP_N = 10  # keys and client addresses shown
NAT_MIN_SHARE = 0.25
NAT_MIN_REQUESTS = 50


class SourceTable(Protocol):
    """A source-address sticky table, as far as the view reads it."""

    @property
    def evicted(self) -> int: ...

    def __len__(self) -> int: ...


class Tracked(Protocol):
    """A pool's long-lived tracking (sticky/affinity.py's PoolTracking): the sketches this
    module rotates, and the sticky counters it reports."""

    keys: SpaceSaving
    clients: SpaceSaving

    @property
    def source(self) -> SourceTable | None: ...

    @property
    def sticky_hits(self) -> int: ...

    @property
    def sticky_misses(self) -> int: ...

    @property
    def sticky_repins(self) -> int: ...


def weight_shares(usable: Sequence[BackendState]) -> dict[BackendState, float]:
    """Expected shares by effective weight, for algorithms without a table of their own."""
    total = sum(b.effective_weight for b in usable)
    return {b: b.effective_weight / total if total > 0 else 0.0 for b in usable}


def nat_suspect(lower_bound: int, clients_total: int, clients_seen: int) -> bool:
    """The NAT rule (module docstring) for one address counted at least `lower_bound` times
    out of `clients_total`, with `clients_seen` distinct addresses."""
    return (
        clients_seen > 1
        and lower_bound >= NAT_MIN_REQUESTS
        and lower_bound > NAT_MIN_SHARE * clients_total
    )


class _PoolWatch:
    """One pool's samples, its previous sketches and the NAT suspects last logged."""

    __slots__ = ("samples", "tracking", "previous", "rotated_at", "sketched_since", "suspects")

    def __init__(self, now: float, tracking: Tracked) -> None:
        # (monotonic time, address → requests_total); the oldest is the window's baseline. A
        # pool first seen now starts from zero: its backends' totals count from their creation.
        self.samples: deque[tuple[float, dict[str, int]]] = deque([(now, {})], maxlen=MAX_SAMPLES)
        self.tracking = tracking
        self.previous: tuple[SpaceSaving, SpaceSaving] | None = None
        self.rotated_at = now  # when the current sketches started
        self.sketched_since = now  # when the oldest sketches in view started
        self.suspects: set[str] = set()

    def sketches(self) -> tuple[list[SpaceSaving], list[SpaceSaving]]:
        keys, clients = [self.tracking.keys], [self.tracking.clients]
        if self.previous is not None:
            keys.append(self.previous[0])
            clients.append(self.previous[1])
        return keys, clients


class HotspotWatch:
    """Every pool's recent traffic shares and heavy hitters, for the admin API and the log."""

    def __init__(self) -> None:
        self._last_tick = float("-inf")  # the first tick samples at once
        self._pools: dict[str, _PoolWatch] = {}

    def tick(
        self,
        now: float,
        members: Mapping[str, Sequence[BackendState]],
        tracking: Mapping[str, Tracked],
    ) -> None:
        """Housekeeping: every SAMPLE_S, sample request totals, rotate sketches whose window
        is over, and log NAT suspects that appear or clear."""
        if now - self._last_tick < SAMPLE_S:
            return
        self._last_tick = now
        for name in set(self._pools) - set(members):
            del self._pools[name]
        for name, backends in members.items():
            tracked = tracking.get(name)
            if tracked is None:
                continue
            watch = self._watch(name, tracked, now)
            watch.samples.append((now, {b.address: b.requests_total for b in backends}))
            if now - watch.rotated_at >= WINDOW_S:
                watch.previous = (tracked.keys, tracked.clients)
                tracked.keys = SpaceSaving(tracked.keys.capacity)
                tracked.clients = SpaceSaving(tracked.clients.capacity)
                watch.sketched_since, watch.rotated_at = watch.rotated_at, now
            self._log_suspects(name, watch)

    def describe(
        self,
        name: str,
        config: Pool,
        backends: Sequence[BackendState],
        expected: Mapping[BackendState, float],
        tracking: Tracked,
        now: float,
    ) -> dict[str, Any]:
        """The hot-spot view of pool `name` (the admin API's /hotspots answer)."""
        watch = self._watch(name, tracking, now)
        since, baseline = watch.samples[0]
        deltas = []
        for b in backends:
            base = baseline.get(b.address, 0)
            # a total below its baseline is a backend removed and added again: count it all
            deltas.append(b.requests_total - base if b.requests_total >= base else b.requests_total)
        total = sum(deltas)
        keys, clients = watch.sketches()
        keys_total = sum(s.total for s in keys)
        clients_total = sum(s.total for s in clients)
        top_clients, suspects = self._clients(watch)
        source = tracking.source
        sticky = config.sticky
        return {
            "pool": name,
            "algorithm": config.algorithm,
            "window_s": round(now - since, 3),
            "requests": total,
            "backends": [
                {
                    "address": b.address,
                    "state": b.state(now),
                    "requests": delta,
                    "share": _share(delta, total),
                    "expected_share": round(expected.get(b, 0.0), 4),
                }
                for b, delta in zip(backends, deltas, strict=True)
            ],
            "sketch_window_s": round(now - watch.sketched_since, 3),
            "hash_key": config.hash_key,
            "keys_total": keys_total,
            "keys": [
                {
                    "key": key,
                    "count": count,
                    "share": _share(count, keys_total),
                    "max_overestimate": error,
                }
                for key, count, error in merged_top(keys, TOP_N)
            ],
            "clients_total": clients_total,
            "clients": [
                {
                    "address": address,
                    "count": count,
                    "share": _share(count, clients_total),
                    "max_overestimate": error,
                    "nat_suspect": address in suspects,
                }
                for address, count, error in top_clients
            ],
            "nat_suspects": sorted(suspects),
            "sticky": None
            if sticky is None
            else {
                "kind": "cookie" if sticky.cookie is not None else "source_ip",
                "hits": tracking.sticky_hits,
                "misses": tracking.sticky_misses,
                "repins": tracking.sticky_repins,
                "table_entries": len(source) if source is not None else None,
                "table_evicted": source.evicted if source is not None else None,
            },
        }

    def _watch(self, name: str, tracking: Tracked, now: float) -> _PoolWatch:
        watch = self._pools.get(name)
        if watch is None:
            watch = self._pools[name] = _PoolWatch(now, tracking)
        elif watch.tracking is not tracking:
            # a reload changed the pool's affinity settings, so its sketches are new: the old
            # generation counted other keys. Request totals live on the backends: kept.
            watch.tracking = tracking
            watch.previous = None
            watch.rotated_at = watch.sketched_since = now
        return watch

    @staticmethod
    def _clients(watch: _PoolWatch) -> tuple[list[tuple[str, int, int]], set[str]]:
        _, clients = watch.sketches()
        total = sum(s.total for s in clients)
        seen = len({key for s in clients for key in s.top(s.capacity)})
        top = merged_top(clients, TOP_N)
        return top, {a for a, count, error in top if nat_suspect(count - error, total, seen)}

    def _log_suspects(self, name: str, watch: _PoolWatch) -> None:
        top, suspects = self._clients(watch)
        if suspects == watch.suspects:
            return
        _, clients = watch.sketches()
        total = sum(s.total for s in clients)
        counts = {address: count - error for address, count, error in top}
        for address in sorted(suspects - watch.suspects):
            log.warning(
                "pool %s: client %s sent %d of %d requests (%.0f%%): likely a NAT or proxy "
                "hot spot, pinning that share to one backend",
                name,
                address,
                counts[address],
                total,
                100 * counts[address] / total,
            )
        for address in sorted(watch.suspects - suspects):
            log.warning(
                "pool %s: client %s is no longer a hot spot (under %.0f%% of requests)",
                name,
                address,
                NAT_MIN_SHARE * 100,
            )
        watch.suspects = suspects


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0
