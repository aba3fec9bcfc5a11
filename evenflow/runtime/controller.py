"""The control plane: owns the config and every backend's state, and publishes snapshots.

Every change goes through here: a probe result, a failure seen on real traffic, an operator's
action, a reload. Each is applied to the long-lived `BackendState` objects and ends in one new
`Snapshot` swapped in with a single assignment, so the data plane never sees a half-applied
change. Only flips and decisions are logged ("backend 10.0.0.2:8000 unhealthy: 3 probe
failures: connect timeout"), never a probe or a request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from evenflow.config.health import ActiveHealth
from evenflow.config.model import Config
from evenflow.core.address import join_host_port, split_host_port
from evenflow.core.backend import Admin, BackendState, Health
from evenflow.core.pool import PoolView, view
from evenflow.health.state import RiseFall
from evenflow.observability.hotspots import HotspotWatch, weight_shares
from evenflow.observability.stats import SAMPLE_S, Registry
from evenflow.runtime.snapshot import Snapshot
from evenflow.sticky.affinity import PoolTracking

log = logging.getLogger(__name__)

TICK_S = 0.25  # housekeeping period: slow-start ramps, ejection ends, drain deadlines
DEFAULT_DRAIN_S = 30.0
FLIP_HISTORY = 200  # recent flips kept for the admin API and dashboard


class ActionError(Exception):
    """An operator's request that cannot be done; `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class FlipRecord:
    """One transition, kept for the admin API and dashboard."""

    __slots__ = ("at", "pool", "address", "state", "reason")

    def __init__(self, at: float, pool: str, address: str, state: str, reason: str) -> None:
        self.at = at  # wall-clock time
        self.pool = pool
        self.address = address
        self.state = state
        self.reason = reason

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "pool": self.pool,
            "backend": self.address,
            "state": self.state,
            "reason": self.reason,
        }


class Controller:
    def __init__(
        self,
        config: Config,
        config_path: str | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.clock = clock
        self.wall = wall
        self.backends: dict[str, list[BackendState]] = {}
        self.trackers: dict[tuple[str, str], RiseFall] = {}
        self.views: dict[str, PoolView] = {}
        self.panic: dict[str, bool] = {}
        self.flips: deque[FlipRecord] = deque(maxlen=FLIP_HISTORY)
        self.generation = 0
        self._removing: dict[tuple[str, str], float] = {}  # draining before removal: deadline
        self._shared_failure: dict[str, str] = {}  # pool → the probe every backend failed
        self._probe_failures: dict[tuple[str, str], tuple[float, str]] = {}
        self._cap_logged: set[tuple[str, str]] = set()  # "not ejected: cap" said already
        self._checkers: dict[str, Any] = {}  # pool → HealthChecker
        self.tracking: dict[str, PoolTracking] = {}  # pool → sticky table, hot-key sketches
        self.stats = Registry()  # metric series: the data plane moves them, /metrics reads
        self._last_sample = 0.0
        self.secrets: dict[str, bytes] = {}  # pool → the key that signs its sticky cookies
        self._tick: asyncio.TimerHandle | None = None
        self.listeners_bound = False
        for name, pool in config.pools.items():
            self.backends[name] = [
                self._new_backend(name, b.address, b.weight, fresh=False) for b in pool.backends
            ]
        self._refresh_affinity_state(config)
        self.snapshot = self._build(None)
        self.hotspots = HotspotWatch()  # recent shares per backend, heavy hitters, NAT suspects
        self.hotspots.tick(self.clock(), self.backends, self.tracking)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start active probes and housekeeping (needs a running loop)."""
        self._restart_checkers()
        self._schedule_tick()

    async def stop(self) -> None:
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        for checker in self._checkers.values():
            await checker.stop()
        self._checkers.clear()

    def _schedule_tick(self) -> None:
        self._tick = asyncio.get_running_loop().call_later(TICK_S, self._on_tick)

    def _on_tick(self) -> None:
        try:
            self.housekeeping()
        except Exception:  # a bug here must not stop housekeeping for good
            log.exception("control-plane housekeeping failed")
        self._schedule_tick()

    # -- snapshots ---------------------------------------------------------------------------

    def _build(self, previous: Snapshot | None) -> Snapshot:
        now = self.clock()
        self._end_ejections(now)  # never let a rebuild bring one back silently
        views = {}
        for name, pool in self.config.pools.items():
            health = pool.health
            pool_view = view(self.backends[name], now, health.slow_start, health.panic_threshold)
            views[name] = pool_view
            was = self.panic.get(name, False)
            if pool_view.panic != was:
                self.panic[name] = pool_view.panic
                if pool_view.panic:
                    log.warning(
                        "pool %s: panic mode: %d of %d backends healthy, below %g%%: "
                        "balancing over all of them",
                        name,
                        pool_view.healthy,
                        pool_view.candidates,
                        health.panic_threshold * 100,
                    )
                else:
                    log.warning(
                        "pool %s: panic mode over: %d of %d backends healthy",
                        name,
                        pool_view.healthy,
                        pool_view.candidates,
                    )
        self.views = views
        self.generation += 1
        return Snapshot(
            self.config,
            views,
            self.generation,
            previous,
            self.backends,
            self.tracking,
            self.secrets,
        )

    def publish(self) -> None:
        """Rebuild the snapshot from the current config and backend states, and swap it in."""
        self.snapshot = self._build(self.snapshot)

    def all_backends(self) -> list[BackendState]:
        return [b for backends in self.backends.values() for b in backends]

    # -- health inputs -----------------------------------------------------------------------

    def on_probe_result(self, backend: BackendState, ok: bool, detail: str, probe: str) -> None:
        """An active probe finished (called by the pool's HealthChecker)."""
        backend.last_probe = "ok" if ok else detail
        backend.last_probe_at = self.wall()
        if backend.awaiting_probe:
            backend.awaiting_probe = False
            self.publish()  # now known either way: it counts for panic from here
        tracker = self.trackers.get((backend.pool, backend.address))
        if tracker is None:
            return  # removed meanwhile
        self._note_shared_failure(backend, ok, detail, probe)
        flip = tracker.record(ok, detail)
        if flip is None:
            return
        if flip.healthy:
            backend.health = Health.HEALTHY
            backend.recovered_at = self.clock()
            backend.consecutive_failures = 0
            self._flip(backend, "healthy", flip.reason)
        else:
            backend.health = Health.UNHEALTHY
            self._flip(backend, "unhealthy", flip.reason)
        self.publish()

    def is_probing_fast(self, backend: BackendState) -> bool:
        """Probe at the fast interval: a flip is under way, or the backend is down."""
        tracker = self.trackers.get((backend.pool, backend.address))
        return tracker is not None and (tracker.changing or not tracker.healthy)

    def report_failure(self, backend: BackendState, reason: str) -> None:
        """A failure seen on real traffic (data plane): connect error, reset, timeout, 5xx."""
        backend.failures_total += 1
        pool = self.config.pools.get(backend.pool)
        if pool is None or pool.health.passive is None:
            return
        policy = pool.health.passive
        backend.consecutive_failures += 1
        checker = self._checkers.get(backend.pool)
        if checker is not None:
            checker.wake(backend)  # a passive failure brings the next probe forward
        now = self.clock()
        if (
            backend.consecutive_failures < policy.consecutive_failures
            or backend.ejected_until > now
        ):
            return
        members = self.backends.get(backend.pool, [])
        ejected = sum(1 for b in members if b.ejected_until > now)
        if (ejected + 1) * 100 > policy.max_ejected_percent * len(members):
            backend.consecutive_failures = 0
            key = (backend.pool, backend.address)
            if key in self._cap_logged:
                return  # said once until the ejected count drops
            self._cap_logged.add(key)
            log.info(
                "pool %s: backend %s not ejected: %d failures in a row, but %d of %d are "
                "ejected already (max_ejected_percent %d)",
                backend.pool,
                backend.address,
                backend.consecutive_failures,
                ejected,
                len(members),
                policy.max_ejected_percent,
            )
            return
        backend.ejections += 1
        self.stats.backend_series(backend.pool, backend.address).ejections += 1
        duration = min(policy.ejection_time * backend.ejections, policy.max_ejection_time)
        backend.ejected_until = now + duration
        reason_text = (
            f"{backend.consecutive_failures} failures in a row on traffic: {reason}; "
            f"out for {duration:g}s"
        )
        backend.consecutive_failures = 0
        self._flip(backend, "ejected", reason_text)
        self.publish()

    def _note_shared_failure(
        self, backend: BackendState, ok: bool, detail: str, probe: str
    ) -> None:
        """Every backend of a pool failing the same probe within one interval is one failure
        (a shared dependency), not N dead backends: say so once, by name."""
        pool = backend.pool
        key = (pool, backend.address)
        if ok:
            self._probe_failures.pop(key, None)
            if pool in self._shared_failure:
                del self._shared_failure[pool]
                log.warning("pool %s: probe %s passes again on %s", pool, probe, backend.address)
            return
        now = self.clock()
        self._probe_failures[key] = (now, detail)
        active = self.config.pools[pool].health.active
        window = active.interval if active is not None else 5.0
        members = [b for b in self.backends.get(pool, []) if b.admin is not Admin.DISABLED]
        if len(members) < 2 or pool in self._shared_failure:
            return
        recent = [self._probe_failures.get((pool, b.address)) for b in members]
        if all(r is not None and now - r[0] <= window * 1.5 for r in recent):
            self._shared_failure[pool] = probe
            log.warning(
                "pool %s: every backend (%d) failed probe %s within %gs (%s): suspected "
                "shared dependency failure rather than %d dead backends",
                pool,
                len(members),
                probe,
                window,
                detail,
                len(members),
            )

    def _flip(self, backend: BackendState, state: str, reason: str) -> None:
        backend.last_flip = f"{state}: {reason}"
        backend.last_flip_at = self.wall()
        self.flips.append(
            FlipRecord(backend.last_flip_at, backend.pool, backend.address, state, reason)
        )
        log.warning("pool %s: backend %s %s: %s", backend.pool, backend.address, state, reason)

    # -- housekeeping ------------------------------------------------------------------------

    def housekeeping(self) -> None:
        """Periodic: end ejections, advance slow starts, enforce drain deadlines, remove;
        and remember metric totals for rates and recent quantiles."""
        now = self.clock()
        changed = False
        if now - self._last_sample >= SAMPLE_S:
            self._last_sample = now
            self.stats.sample(now)
        if self._end_ejections(now):
            changed = True
        for name, backends in self.backends.items():
            policy = self.config.pools[name].health.passive
            for backend in backends:
                if (
                    backend.ejections
                    and not backend.ejected_until
                    and policy is not None
                    and now - backend.recovered_at > policy.max_ejection_time
                ):
                    backend.ejections = 0  # behaved long enough: the next ejection is short
                if backend.admin is Admin.DRAINING and backend.drain_deadline <= now:
                    self._close_connections(backend, abort=True)
            if self.views.get(name) is not None and self.views[name].ramping:
                changed = True
        self.hotspots.tick(now, self.backends, self.tracking)
        for key, deadline in list(self._removing.items()):
            leaving = self._find(*key)
            if leaving is None:
                del self._removing[key]
            elif (leaving.in_flight == 0 and not leaving.live) or deadline <= now:
                self._close_connections(leaving, abort=True)
                self.backends[key[0]].remove(leaving)
                self.trackers.pop(key, None)
                del self._removing[key]
                log.warning("pool %s: backend %s removed", key[0], key[1])
                self._restart_checkers({key[0]})
                changed = True
        if changed:
            self.publish()

    def _end_ejections(self, now: float) -> bool:
        """Bring back backends whose ejection time is over: logged, and ramping up."""
        ended = False
        for backends in self.backends.values():
            for backend in backends:
                if backend.ejected_until and backend.ejected_until <= now:
                    backend.ejected_until = 0.0
                    backend.recovered_at = now
                    self._cap_logged.discard((backend.pool, backend.address))
                    self._flip(backend, "healthy", "ejection time over")
                    ended = True
        if ended:
            self._cap_logged.clear()  # fewer are ejected: the cap may be worth saying again
        return ended

    def _close_connections(self, backend: BackendState, abort: bool) -> None:
        for conn in list(backend.idle):
            conn.close()
        backend.idle.clear()
        if abort:
            for conn in list(backend.live):
                conn.terminate(f"backend {backend.address} drain deadline passed")

    # -- operator actions --------------------------------------------------------------------

    def backend(self, pool: str, address: str) -> BackendState:
        """The backend `address` of `pool`, or ActionError 404."""
        if pool not in self.backends:
            raise ActionError(404, f"no pool {pool!r}")
        found = self._find(pool, address)
        if found is None:
            raise ActionError(404, f"pool {pool!r} has no backend {address!r}")
        return found

    def drain(self, pool: str, address: str, deadline_s: float | None = None) -> BackendState:
        """No new requests or connections; in-flight ones finish; past the deadline, the
        connections left are closed."""
        backend = self.backend(pool, address)
        wait = DEFAULT_DRAIN_S if deadline_s is None else deadline_s
        backend.admin = Admin.DRAINING
        backend.drain_deadline = self.clock() + wait
        self._close_connections(backend, abort=False)
        self._flip(backend, "draining", f"by operator, deadline {wait:g}s")
        self.publish()
        return backend

    def enable(self, pool: str, address: str) -> BackendState:
        backend = self.backend(pool, address)
        if backend.admin is not Admin.ENABLED:
            backend.admin = Admin.ENABLED
            backend.recovered_at = self.clock()
            self._removing.pop((backend.pool, backend.address), None)
            self._flip(backend, "enabled", "by operator")
            self.publish()
        return backend

    def disable(self, pool: str, address: str) -> BackendState:
        """Maintenance: no traffic; in-flight requests finish, idle connections close."""
        backend = self.backend(pool, address)
        backend.admin = Admin.DISABLED
        self._close_connections(backend, abort=False)
        self._flip(backend, "disabled", "by operator")
        self.publish()
        return backend

    def set_weight(self, pool: str, address: str, weight: int) -> BackendState:
        if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= 10000:
            raise ActionError(400, "weight must be a whole number from 0 to 10000")
        backend = self.backend(pool, address)
        backend.weight = weight
        log.warning("pool %s: backend %s weight set to %d", pool, backend.address, weight)
        self.publish()
        return backend

    def add_backend(self, pool: str, address: str, weight: int = 1) -> BackendState:
        if pool not in self.backends:
            raise ActionError(404, f"no pool {pool!r}")
        try:
            host, port = split_host_port(address)
        except ValueError as exc:
            raise ActionError(400, str(exc)) from None
        if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= 10000:
            raise ActionError(400, "weight must be a whole number from 0 to 10000")
        canonical = join_host_port(host, port)
        if self._find(pool, canonical) is not None:
            raise ActionError(409, f"pool {pool!r} already has backend {canonical}")
        backend = self._new_backend(pool, canonical, weight, fresh=True)
        self.backends[pool].append(backend)
        log.warning("pool %s: backend %s added (weight %d)", pool, canonical, weight)
        self._restart_checkers({pool})
        self.publish()
        return backend

    def remove_backend(self, pool: str, address: str, deadline_s: float | None = None) -> None:
        """Drain, then remove once idle (or at the deadline)."""
        backend = self.drain(pool, address, deadline_s)
        self._removing[(pool, backend.address)] = backend.drain_deadline

    def apply_config(self, config: Config) -> None:
        """Switch to a new config, keeping the runtime state of backends that still exist:
        drain, disable and weights set at runtime survive; new backends ramp up."""
        old_config = self.config
        old = {(b.pool, b.address): b for b in self.all_backends()}
        backends: dict[str, list[BackendState]] = {}
        for name, pool in config.pools.items():
            kept = []
            for entry in pool.backends:
                host, port = split_host_port(entry.address)
                address = join_host_port(host, port)
                existing = old.pop((name, address), None)
                if existing is None:
                    kept.append(self._new_backend(name, address, entry.weight, fresh=True))
                    continue
                if existing.weight == existing.config_weight:
                    existing.weight = entry.weight  # not overridden at runtime: follow the file
                existing.config_weight = entry.weight
                kept.append(existing)
            backends[name] = kept
        for key in [k for k in self._removing if k not in old]:
            del self._removing[key]  # the file lists it again: the pending removal is cancelled
        for backend in old.values():  # gone from the file: stop reusing their connections
            self._close_connections(backend, abort=False)
            self.trackers.pop((backend.pool, backend.address), None)
        self.config = config
        self.backends = backends
        self._refresh_affinity_state(config, old_config)
        self._refresh_trackers(config, old_config)
        changed_health = {
            name
            for name, pool in config.pools.items()
            if old_config.pools.get(name) is None
            or old_config.pools[name].health != pool.health
            or [b.address for b in old_config.pools[name].backends]
            != [b.address for b in pool.backends]
        } | (set(old_config.pools) - set(config.pools))
        if self._checkers or any(p.health.active for p in config.pools.values()):
            self._restart_checkers(changed_health)
        self.publish()

    # -- views for the admin API -------------------------------------------------------------

    def describe_backend(self, backend: BackendState) -> dict[str, Any]:
        now = self.clock()
        return {
            "address": backend.address,
            "state": backend.state(now),
            "health": backend.health.value,
            "admin": backend.admin.value,
            "weight": backend.weight,
            "config_weight": backend.config_weight,
            "effective_weight": round(backend.effective_weight, 3),
            "active_connections": backend.active_connections,
            "in_flight": backend.in_flight,
            "requests_total": backend.requests_total,
            "failures_total": backend.failures_total,
            "bytes_in": backend.bytes_in,
            "bytes_out": backend.bytes_out,
            "ejected_for_s": round(max(0.0, backend.ejected_until - now), 3),
            "drain_deadline_in_s": (
                round(max(0.0, backend.drain_deadline - now), 3)
                if backend.admin is Admin.DRAINING
                else None
            ),
            "last_probe": {
                "result": backend.last_probe or None,
                "at": backend.last_probe_at or None,
            },
            "last_flip": {"reason": backend.last_flip or None, "at": backend.last_flip_at or None},
        }

    def describe_pool(self, name: str) -> dict[str, Any]:
        if name not in self.backends:
            raise ActionError(404, f"no pool {name!r}")
        pool = self.config.pools[name]
        pool_view = self.views.get(name)
        return {
            "name": name,
            "algorithm": pool.algorithm,
            "panic": bool(pool_view and pool_view.panic),
            "healthy": pool_view.healthy if pool_view else 0,
            "usable": len(pool_view.usable) if pool_view else 0,
            "backends": [self.describe_backend(b) for b in self.backends[name]],
        }

    def describe_hotspots(self, name: str) -> dict[str, Any]:
        """Pool `name`'s hot spots: each backend's recent share against its expected share (the
        balancer's table for hashing pools, else effective weight), the heaviest keys and client
        addresses, NAT suspects and sticky counters (see observability/hotspots.py)."""
        if name not in self.backends:
            raise ActionError(404, f"no pool {name!r}")
        runtime = self.snapshot.pools[name]
        table_shares = getattr(runtime.balancer, "expected_shares", None)
        expected: dict[BackendState, float] = (
            table_shares() if table_shares is not None else weight_shares(self.views[name].usable)
        )
        return self.hotspots.describe(
            name,
            self.config.pools[name],
            self.backends[name],
            expected,
            self.tracking[name],
            self.clock(),
        )

    def describe_pools(self) -> list[dict[str, Any]]:
        return [self.describe_pool(name) for name in self.backends]

    def readiness(self) -> list[str]:
        """Why evenflow is not ready (empty: ready): listeners bound, every pool usable."""
        problems = [] if self.listeners_bound else ["listeners not bound yet"]
        for name, pool_view in self.views.items():
            if not pool_view.usable:
                problems.append(f"pool {name} has no usable backend")
        return problems

    # -- internals ---------------------------------------------------------------------------

    def _find(self, pool: str, address: str) -> BackendState | None:
        try:
            host, port = split_host_port(address)
        except ValueError:
            return None
        canonical = join_host_port(host, port)
        for backend in self.backends.get(pool, ()):
            if backend.address == canonical:
                return backend
        return None

    def _new_backend(self, pool: str, address: str, weight: int, fresh: bool) -> BackendState:
        backend = BackendState(pool, address, weight)
        health = self.config.pools[pool].health if pool in self.config.pools else None
        healthy = health is None or health.initial_state == "healthy"
        backend.health = Health.HEALTHY if healthy else Health.UNHEALTHY
        if fresh:
            backend.recovered_at = self.clock()  # added at runtime: ramp up (slow start)
        if health is not None and health.active is not None:
            active = health.active
            backend.awaiting_probe = not healthy
            self.trackers[(pool, backend.address)] = RiseFall(active.rise, active.fall, healthy)
        return backend

    def _refresh_trackers(self, config: Config, old: Config) -> None:
        """New rise/fall settings apply to backends that stay (their health is kept); a pool
        that no longer probes can no longer hold a backend down: it is healthy again."""
        for name, pool in config.pools.items():
            before = old.pools.get(name)
            active = pool.health.active
            previous = before.health.active if before is not None else None
            if active == previous:
                continue
            for backend in self.backends[name]:
                key = (name, backend.address)
                if active is None:
                    self.trackers.pop(key, None)
                    if backend.health is Health.UNHEALTHY:
                        backend.health = Health.HEALTHY
                        backend.recovered_at = self.clock()
                        self._flip(backend, "healthy", "active probes removed from the config")
                else:
                    self.trackers[key] = RiseFall(
                        active.rise, active.fall, backend.health is Health.HEALTHY
                    )

    def _refresh_affinity_state(self, config: Config, old: Config | None = None) -> None:
        """Per-pool state that outlives snapshots; kept across a reload while the pool's
        affinity settings are unchanged (a sticky table survives an unrelated change)."""
        for name, pool in config.pools.items():
            previous = old.pools.get(name) if old is not None else None
            if (
                name not in self.tracking
                or previous is None
                or previous.sticky != pool.sticky
                or previous.hash_key != pool.hash_key
            ):
                self.tracking[name] = PoolTracking(pool)
            cookie = pool.sticky.cookie if pool.sticky is not None else None
            if cookie is None:
                self.secrets.pop(name, None)
            elif cookie.secret is not None:
                self.secrets[name] = cookie.secret.encode()
            elif cookie.secret_env is not None:
                self.secrets[name] = os.environ.get(cookie.secret_env, "").encode()
            elif name not in self.secrets:
                # no secret given: stickiness holds for this process only (said in the docs)
                log.warning(
                    "pool %s: sticky cookie without secret or secret_env: a random secret "
                    "is used, so sessions do not survive a restart or span nodes",
                    name,
                )
                self.secrets[name] = secrets.token_bytes(32)
        for name in set(self.tracking) - set(config.pools):
            del self.tracking[name]
            self.secrets.pop(name, None)

    def _restart_checkers(self, pools: set[str] | None = None) -> None:
        """(Re)start the active probes of `pools` (all when None) from the current config."""
        from evenflow.health.checker import HealthChecker

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # not started yet: start() does it
        names = set(self.config.pools) | set(self._checkers) if pools is None else pools
        for name in names:
            checker = self._checkers.pop(name, None)
            if checker is not None:
                checker.cancel()
            pool = self.config.pools.get(name)
            if pool is None or pool.health.active is None:
                continue
            active: ActiveHealth = pool.health.active
            for backend in self.backends[name]:
                key = (name, backend.address)
                if key not in self.trackers:
                    self.trackers[key] = RiseFall(
                        active.rise, active.fall, backend.health is Health.HEALTHY
                    )
            checker = HealthChecker(name, active, self)
            self._checkers[name] = checker
            checker.start()
