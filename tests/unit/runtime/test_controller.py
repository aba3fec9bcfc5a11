"""The control plane driven by hand: probe results, passive failures, operator actions, reloads.

A fake monotonic clock and wall clock stand in for time, so ejections end and slow starts ramp
by advancing a number; nothing here opens a socket or sleeps. Without a running event loop the
controller starts no probe tasks, which is what a unit test wants: probe results are fed to
`on_probe_result` directly, as the HealthChecker would.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import pytest

from evenflow.balancing.base import PickContext
from evenflow.config.load import load_data
from evenflow.config.model import Config
from evenflow.core.backend import Admin, BackendState, Health
from evenflow.runtime.controller import ActionError, Controller

A, B, C, D = "10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000", "10.0.0.4:8000"
PROBE = "GET /healthz"
LOGGER = "evenflow.runtime.controller"

ACTIVE = {
    "http": {"path": "/healthz"},
    "interval": "5s",
    "fast_interval": "1s",
    "timeout": "1s",
    "rise": 2,
    "fall": 3,
}
PASSIVE = {
    "consecutive_failures": 3,
    "ejection_time": "10s",
    "max_ejection_time": "25s",
    "max_ejected_percent": 50,
}


class Clock:
    """A clock that moves only when told to."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def config_data(
    backends: list[Any] | None = None, algorithm: str = "round_robin", **health: Any
) -> dict[str, Any]:
    return {
        "listeners": [{"name": "web", "bind": "127.0.0.1:8080", "pool": "web"}],
        "pools": {
            "web": {
                "algorithm": algorithm,
                "backends": [A, B, C] if backends is None else backends,
                "health": health,
            }
        },
    }


def make_config(
    backends: list[Any] | None = None, algorithm: str = "round_robin", **health: Any
) -> Config:
    return load_data(config_data(backends, algorithm, **health), "test.yaml", {}).config


class Harness:
    """A Controller on fake clocks, with shortcuts to its backends and its published picks."""

    def __init__(self, config: Config) -> None:
        self.clock = Clock(1000.0)
        self.wall = Clock(1_700_000_000.0)
        self.controller = Controller(config, clock=self.clock, wall=self.wall)

    def __getitem__(self, address: str) -> BackendState:
        return self.controller.backend("web", address)

    def probe(self, address: str, results: str, detail: str = "status 503") -> None:
        """Feed probe results: `+` a pass, `-` a failure with `detail`."""
        for r in results:
            ok = r == "+"
            self.controller.on_probe_result(
                self[address], ok, "status 200" if ok else detail, PROBE
            )

    def fail(self, address: str, times: int, reason: str = "status 500") -> None:
        for _ in range(times):
            self.controller.report_failure(self[address], reason)

    def picked(self, count: int = 24) -> set[str]:
        """Which backends the published snapshot's balancer hands out over `count` picks."""
        balancer = self.controller.snapshot.pools["web"].balancer
        ctx = PickContext()
        return {b.address for b in (balancer.pick(ctx) for _ in range(count)) if b is not None}

    def tick(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.wall.advance(seconds)
        self.controller.housekeeping()


def flip_lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and text in r.getMessage()]


# --- active probes ------------------------------------------------------------------------------


def test_fall_failed_probes_flip_a_backend_and_publish_a_snapshot_without_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    h = Harness(make_config(active=ACTIVE))
    assert h.picked() == {A, B, C}
    before = h.controller.snapshot
    h.probe(B, "--")
    assert h[B].health is Health.HEALTHY
    assert h.controller.snapshot is before  # a probe that flips nothing rebuilds nothing
    h.probe(B, "-", detail="connect failed: connection refused")
    assert h[B].health is Health.UNHEALTHY
    assert h.controller.snapshot is not before
    assert h.controller.snapshot.generation > before.generation
    assert h.picked() == {A, C}
    assert h[B].state(h.clock()) == "unhealthy"
    assert h[B].last_flip == "unhealthy: 3 probe failures: connect failed: connection refused"
    assert flip_lines(caplog, "unhealthy") == [
        f"pool web: backend {B} unhealthy: 3 probe failures: connect failed: connection refused"
    ]


def test_rise_passes_bring_it_back_and_it_ramps_up_over_slow_start() -> None:
    h = Harness(make_config(active=ACTIVE, slow_start="10s"))
    h.probe(B, "---")
    assert h.picked() == {A, C}
    h.probe(B, "+")
    assert h[B].health is Health.UNHEALTHY
    assert h.picked() == {A, C}
    h.probe(B, "+")
    assert h[B].health is Health.HEALTHY
    assert h[B].last_flip == "healthy: 2 probes passed"
    assert h.picked() == {A, B, C}
    assert h[B].effective_weight == pytest.approx(0.1)
    h.tick(5.0)  # housekeeping republishes while a ramp is under way
    assert h[B].effective_weight == pytest.approx(0.5)
    h.tick(5.0)
    assert h[B].effective_weight == pytest.approx(1.0)


def test_probe_results_are_recorded_on_the_backend() -> None:
    h = Harness(make_config(active=ACTIVE))
    h.probe(A, "-", detail="timeout after 1s")
    assert h[A].last_probe == "timeout after 1s"
    assert h[A].last_probe_at == 1_700_000_000.0
    h.wall.advance(3)
    h.probe(A, "+")
    assert h[A].last_probe == "ok"
    assert h[A].last_probe_at == 1_700_000_003.0


def test_one_flip_line_per_flip_never_one_per_probe(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="evenflow")
    h = Harness(make_config(active=ACTIVE))
    h.probe(A, "+" * 10)
    h.probe(A, "-" * 20)
    h.probe(A, "+" * 20)
    h.probe(A, "--+--+")
    about_a = [r for r in caplog.records if A in r.getMessage()]
    assert [r.getMessage() for r in about_a] == [
        f"pool web: backend {A} unhealthy: 3 probe failures: status 503",
        f"pool web: backend {A} healthy: 2 probes passed",
    ]


def test_probing_is_fast_while_a_flip_is_under_way_or_the_backend_is_down() -> None:
    h = Harness(make_config(active=ACTIVE))
    assert not h.controller.is_probing_fast(h[A])
    h.probe(A, "-")
    assert h.controller.is_probing_fast(h[A])
    h.probe(A, "+")
    assert not h.controller.is_probing_fast(h[A])
    h.probe(A, "---")
    assert h.controller.is_probing_fast(h[A])  # down: confirm recovery sooner
    h.probe(A, "++")
    assert not h.controller.is_probing_fast(h[A])


def test_initial_state_unhealthy_serves_nothing_until_rise_passes() -> None:
    h = Harness(make_config(active=ACTIVE, initial_state="unhealthy", panic_threshold="0%"))
    assert h.picked() == set()
    assert h.controller.readiness() == [
        "listeners not bound yet",
        "pool web has no usable backend",
    ]
    h.probe(A, "++")
    assert h.picked() == {A}
    h.controller.listeners_bound = True
    assert h.controller.readiness() == []


def test_initial_state_healthy_serves_at_once() -> None:
    h = Harness(make_config(active=ACTIVE))
    assert all(h[x].health is Health.HEALTHY for x in (A, B, C))
    assert h.picked() == {A, B, C}


# --- panic --------------------------------------------------------------------------------------


def test_panic_is_logged_on_entering_and_leaving(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    h = Harness(make_config(active={**ACTIVE, "fall": 1, "rise": 1}))
    h.probe(A, "-")
    assert h.picked() == {B, C}
    assert flip_lines(caplog, "panic") == []
    h.probe(B, "-")  # 1 of 3 healthy, below 50%
    assert h.controller.snapshot.pools["web"].panic
    assert h.picked() == {A, B, C}
    assert flip_lines(caplog, "panic") == [
        "pool web: panic mode: 1 of 3 backends healthy, below 50%: balancing over all of them"
    ]
    h.probe(C, "-")  # still panic: no second line
    assert len(flip_lines(caplog, "panic")) == 1
    h.probe(C, "+")
    h.probe(B, "+")
    assert not h.controller.snapshot.pools["web"].panic
    assert h.picked() == {B, C}
    assert flip_lines(caplog, "panic")[1:] == ["pool web: panic mode over: 2 of 3 backends healthy"]
    assert h.controller.describe_pool("web")["panic"] is False


def test_panic_threshold_zero_never_panics(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    h = Harness(make_config(active={**ACTIVE, "fall": 1}, panic_threshold="0%"))
    h.probe(A, "-")
    h.probe(B, "-")
    h.probe(C, "-")
    assert h.picked() == set()
    assert flip_lines(caplog, "panic") == []


# --- the shared-dependency line -----------------------------------------------------------------


def test_every_backend_failing_the_same_probe_within_an_interval_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    h = Harness(make_config(active=ACTIVE))
    h.probe(A, "-", detail="status 503")
    h.clock.advance(2.0)
    h.probe(B, "-", detail="status 503")
    assert flip_lines(caplog, "shared dependency") == []
    h.clock.advance(2.0)
    h.probe(C, "-", detail="status 503")  # three within one 5s interval
    lines = flip_lines(caplog, "shared dependency")
    assert len(lines) == 1
    assert "every backend (3) failed probe GET /healthz" in lines[0]
    assert "status 503" in lines[0]
    for _ in range(5):  # the failure goes on: still one line
        h.clock.advance(1.0)
        h.probe(A, "-")
        h.probe(B, "-")
        h.probe(C, "-")
    assert len(flip_lines(caplog, "shared dependency")) == 1


def test_the_shared_dependency_line_is_not_logged_for_failures_spread_over_intervals(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    h = Harness(make_config(active=ACTIVE))
    h.probe(A, "-")
    h.clock.advance(10.0)  # two intervals later
    h.probe(B, "-")
    h.clock.advance(10.0)
    h.probe(C, "-")
    assert flip_lines(caplog, "shared dependency") == []


def test_the_shared_dependency_line_needs_every_backend(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    h = Harness(make_config(active=ACTIVE))
    h.probe(A, "-")
    h.probe(B, "-")
    h.probe(C, "+")
    h.probe(A, "-")
    h.probe(B, "-")
    assert flip_lines(caplog, "shared dependency") == []


def test_the_shared_dependency_ends_when_a_probe_passes_and_can_be_logged_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    h = Harness(make_config(active=ACTIVE))
    for x in (A, B, C):
        h.probe(x, "-")
    assert len(flip_lines(caplog, "shared dependency")) == 1
    h.clock.advance(1.0)
    h.probe(B, "+")
    assert flip_lines(caplog, "passes again") == [f"pool web: probe {PROBE} passes again on {B}"]
    h.clock.advance(1.0)
    h.probe(B, "-")
    assert len(flip_lines(caplog, "shared dependency")) == 2


# --- passive detection --------------------------------------------------------------------------


def passive_harness(**extra: Any) -> Harness:
    return Harness(make_config([A, B, C, D], passive=PASSIVE, **extra))


def test_consecutive_failures_eject_for_ejection_time(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    h = passive_harness()
    h.fail(A, 2)
    assert h[A].state(h.clock()) == "healthy"
    assert h.picked() == {A, B, C, D}
    h.fail(A, 1, reason="connect failed: connection refused")
    assert h[A].state(h.clock()) == "ejected"
    assert h[A].ejected_until == h.clock() + 10.0
    assert h.picked() == {B, C, D}
    assert flip_lines(caplog, "ejected") == [
        f"pool web: backend {A} ejected: 3 failures in a row on traffic: "
        "connect failed: connection refused; out for 10s"
    ]
    h.tick(9.9)
    assert h.picked() == {B, C, D}
    h.tick(0.1)
    assert h[A].state(h.clock()) == "healthy"
    assert h.picked() == {A, B, C, D}
    assert flip_lines(caplog, f"{A} healthy") == [
        f"pool web: backend {A} healthy: ejection time over"
    ]


def test_a_backend_whose_ejection_is_over_is_logged_back_before_it_takes_traffic(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Its time runs out between two housekeeping ticks, and meanwhile another change
    # publishes a snapshot. Whichever way evenflow handles that, a backend that takes traffic
    # again has had its return logged (one line per flip) and ramps up from it (slow start).
    caplog.set_level(logging.INFO, logger=LOGGER)
    h = passive_harness(slow_start="4s")
    h.fail(A, 3)
    h.clock.advance(10.1)  # A's ejection is over; the next tick is up to 250ms away
    h.controller.set_weight("web", B, 2)  # any change publishes a new snapshot
    if A in h.picked():
        assert flip_lines(caplog, f"{A} healthy") == [
            f"pool web: backend {A} healthy: ejection time over"
        ], f"{A} is back in the balancer but its return was never logged"
        assert h[A].effective_weight == pytest.approx(0.1)
    h.controller.housekeeping()
    assert A in h.picked()
    assert len(flip_lines(caplog, f"{A} healthy")) == 1


def test_failures_while_ejected_do_not_extend_the_ejection() -> None:
    h = passive_harness()
    h.fail(A, 3)
    until = h[A].ejected_until
    h.clock.advance(5.0)
    h.fail(A, 10)  # in-flight requests that were already on it
    assert h[A].ejected_until == until


def test_a_success_resets_the_failure_streak() -> None:
    h = passive_harness()
    h.fail(A, 2)
    h[A].consecutive_failures = 0  # what the data plane does on a good response
    h.fail(A, 2)
    assert h[A].state(h.clock()) == "healthy"
    h.fail(A, 1)
    assert h[A].state(h.clock()) == "ejected"


def test_repeated_ejections_grow_up_to_the_cap() -> None:
    h = passive_harness()
    durations = []
    for _ in range(4):
        h.fail(A, 3)
        durations.append(h[A].ejected_until - h.clock())
        h.tick(h[A].ejected_until - h.clock())
        assert h[A].state(h.clock()) == "healthy"
    assert durations == [10.0, 20.0, 25.0, 25.0]  # 1x, 2x, 3x capped at 25s
    assert h[A].last_flip == "healthy: ejection time over"


def test_the_ejection_count_resets_after_behaving_for_max_ejection_time() -> None:
    h = passive_harness()
    h.fail(A, 3)
    h.tick(10.0)
    h.fail(A, 3)
    h.tick(20.0)
    h.tick(25.1)  # longer than max_ejection_time without an ejection
    h.fail(A, 3)
    assert h[A].ejected_until - h.clock() == 10.0


def test_max_ejected_percent_caps_how_many_are_ejected(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    h = passive_harness()
    h.fail(A, 3)
    h.clock.advance(1.0)
    h.fail(B, 3)
    h.fail(C, 3)  # a third of 4 would be 75%, past 50%
    h.fail(D, 3)
    now = h.clock()
    assert [h[x].state(now) for x in (A, B, C, D)] == ["ejected", "ejected", "healthy", "healthy"]
    assert h.picked() == {C, D}
    refused = flip_lines(caplog, "not ejected")
    assert len(refused) == 2
    assert "2 of 4 are ejected already (max_ejected_percent 50)" in refused[0]
    # once one comes back, the next offender can go
    h.tick(9.0)  # A's ejection is over, B's is not
    h.fail(C, 3)
    assert [h[x].state(h.clock()) for x in (A, B, C, D)] == [
        "healthy",
        "ejected",
        "ejected",
        "healthy",
    ]
    assert sum(h[x].state(h.clock()) == "ejected" for x in (A, B, C, D)) == 2


@pytest.mark.parametrize(
    ("percent", "pool_size", "most"),
    [(50, 4, 2), (50, 3, 1), (0, 4, 0), (100, 3, 3), (25, 4, 1), (50, 1, 0)],
)
def test_max_ejected_percent_is_never_exceeded(percent: int, pool_size: int, most: int) -> None:
    backends = [A, B, C, D][:pool_size]
    h = Harness(make_config(backends, passive={**PASSIVE, "max_ejected_percent": percent}))
    for x in backends:
        h.fail(x, 3)
    ejected = [x for x in backends if h[x].state(h.clock()) == "ejected"]
    assert len(ejected) == most
    assert len(ejected) * 100 <= percent * pool_size


def test_an_ejected_backend_ramps_back_over_slow_start() -> None:
    h = passive_harness(slow_start="4s")
    h.fail(A, 3)
    h.tick(10.0)
    assert h[A].effective_weight == pytest.approx(0.1)
    h.tick(2.0)
    assert h[A].effective_weight == pytest.approx(0.5)
    h.tick(2.0)
    assert h[A].effective_weight == pytest.approx(1.0)
    assert h[B].effective_weight == 1.0


def test_without_passive_config_failures_are_counted_but_never_eject() -> None:
    h = Harness(make_config())
    h.fail(A, 50)
    assert h[A].failures_total == 50
    assert h[A].state(h.clock()) == "healthy"
    assert h.picked() == {A, B, C}


def test_passive_failures_count_towards_failures_total() -> None:
    h = passive_harness()
    h.fail(A, 5)
    assert h[A].failures_total == 5


def test_ejected_backends_count_as_unhealthy_for_panic(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    passive = {**PASSIVE, "max_ejected_percent": 100}
    h = Harness(make_config([A, B, C], active={**ACTIVE, "fall": 1}, passive=passive))
    h.fail(A, 3)
    h.probe(B, "-")  # 1 of 3 healthy
    assert h.controller.snapshot.pools["web"].panic
    assert h.picked() == {A, B, C}
    assert len(flip_lines(caplog, "panic mode:")) == 1


# --- operator actions ---------------------------------------------------------------------------


class FakeConn:
    """An upstream connection as far as the controller cares: closed when idle (`close`), cut
    when a deadline passes (`abort`, or `terminate` with the reason the client is given)."""

    def __init__(self) -> None:
        self.closed = False
        self.aborted = False

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def terminate(self, reason: str) -> None:
        self.aborted = True


def test_drain_stops_new_traffic_closes_idle_and_aborts_the_rest_at_the_deadline() -> None:
    h = Harness(make_config())
    idle, busy = FakeConn(), FakeConn()
    h[A].idle.append(idle)
    h[A].live.update({idle, busy})
    h.controller.drain("web", A, deadline_s=5.0)
    assert h[A].admin is Admin.DRAINING
    assert h[A].state(h.clock()) == "draining"
    assert h.picked() == {B, C}
    assert idle.closed
    assert not busy.aborted and not busy.closed  # in flight: may finish
    assert h[A].last_flip == "draining: by operator, deadline 5s"
    assert h.controller.describe_backend(h[A])["drain_deadline_in_s"] == 5.0
    h.tick(4.9)
    assert not busy.aborted
    h.tick(0.1)
    assert busy.aborted


def test_drain_without_a_deadline_uses_30s() -> None:
    h = Harness(make_config())
    h.controller.drain("web", A)
    assert h[A].drain_deadline == h.clock() + 30.0


def test_enable_after_drain_brings_it_back_with_slow_start() -> None:
    h = Harness(make_config(slow_start="10s"))
    h.controller.drain("web", A)
    h.clock.advance(3)
    h.controller.enable("web", A)
    assert h[A].admin is Admin.ENABLED
    assert h.picked() == {A, B, C}
    assert h[A].effective_weight == pytest.approx(0.1)
    assert h[A].last_flip == "enabled: by operator"


def test_enable_of_an_enabled_backend_changes_nothing() -> None:
    h = Harness(make_config(slow_start="10s"))
    before = h.controller.snapshot
    h.controller.enable("web", A)
    assert h.controller.snapshot is before
    assert h[A].effective_weight == 1.0


def test_disable_takes_it_out_even_in_panic() -> None:
    h = Harness(make_config(active={**ACTIVE, "fall": 1}))
    idle = FakeConn()
    h[C].idle.append(idle)
    h.controller.disable("web", C)
    assert idle.closed
    assert h[C].state(h.clock()) == "disabled"
    assert h.picked() == {A, B}
    h.probe(A, "-")
    h.probe(B, "-")  # 0 of 2 candidates healthy: panic, over A and B only
    assert h.controller.snapshot.pools["web"].panic
    assert h.picked() == {A, B}
    h.controller.enable("web", C)  # 1 of 3 healthy: still a panic, now over all three
    assert h.controller.snapshot.pools["web"].panic
    assert h.picked() == {A, B, C}


def test_set_weight_changes_the_share() -> None:
    h = Harness(make_config(algorithm="weighted_round_robin"))
    h.controller.set_weight("web", A, 4)
    assert h[A].weight == 4
    assert h[A].config_weight == 1
    balancer = h.controller.snapshot.pools["web"].balancer
    picks = [balancer.pick(PickContext()) for _ in range(60)]
    assert sum(1 for b in picks if b is not None and b.address == A) == 40
    h.controller.set_weight("web", A, 0)
    assert h.picked() == {B, C}


@pytest.mark.parametrize("weight", [-1, 10001, 1.5, True, "3"])
def test_set_weight_refuses_a_bad_weight(weight: Any) -> None:
    h = Harness(make_config())
    with pytest.raises(ActionError) as caught:
        h.controller.set_weight("web", A, weight)
    assert caught.value.status == 400
    assert h[A].weight == 1


@pytest.mark.parametrize(
    ("pool", "address", "message"),
    [("nope", A, "no pool 'nope'"), ("web", "10.9.9.9:1", "pool 'web' has no backend")],
)
@pytest.mark.parametrize("action", ["drain", "enable", "disable", "set_weight", "remove_backend"])
def test_actions_on_an_unknown_pool_or_backend_are_404(
    action: str, pool: str, address: str, message: str
) -> None:
    h = Harness(make_config())
    args: tuple[Any, ...] = (pool, address, 2) if action == "set_weight" else (pool, address)
    with pytest.raises(ActionError, match=message) as caught:
        getattr(h.controller, action)(*args)
    assert caught.value.status == 404


def test_add_backend_joins_with_slow_start_and_probes() -> None:
    h = Harness(make_config(active=ACTIVE, slow_start="10s"))
    added = h.controller.add_backend("web", "10.0.0.9:8000", weight=2)
    assert added.address == "10.0.0.9:8000"
    assert h.picked() == {A, B, C, "10.0.0.9:8000"}
    assert added.effective_weight == pytest.approx(0.2)
    h.probe("10.0.0.9:8000", "---")  # probe results count for it from the start
    assert h.picked() == {A, B, C}


def test_an_added_backend_follows_initial_state() -> None:
    h = Harness(make_config(active=ACTIVE, initial_state="unhealthy", panic_threshold="0%"))
    h.probe(A, "++")
    h.controller.add_backend("web", "10.0.0.9:8000")
    assert h.picked() == {A}
    h.probe("10.0.0.9:8000", "++")
    assert h.picked() == {A, "10.0.0.9:8000"}


@pytest.mark.parametrize(
    ("pool", "address", "weight", "status"),
    [
        ("nope", "10.0.0.9:8000", 1, 404),
        ("web", "no-port", 1, 400),
        ("web", "10.0.0.9:8000", -1, 400),
        ("web", "10.0.0.9:8000", 10001, 400),
        ("web", A, 1, 409),
    ],
)
def test_add_backend_refusals(pool: str, address: str, weight: int, status: int) -> None:
    h = Harness(make_config())
    with pytest.raises(ActionError) as caught:
        h.controller.add_backend(pool, address, weight)
    assert caught.value.status == status
    assert len(h.controller.backends["web"]) == 3


def test_remove_backend_drains_then_removes_once_idle(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    h = Harness(make_config())
    leaving = h[A]
    leaving.in_flight = 1
    h.controller.remove_backend("web", A, deadline_s=10.0)
    assert leaving.state(h.clock()) == "draining"
    assert h.picked() == {B, C}
    h.tick(1.0)
    assert [b.address for b in h.controller.backends["web"]] == [A, B, C]
    leaving.in_flight = 0
    h.tick(0.25)
    assert [b.address for b in h.controller.backends["web"]] == [B, C]
    assert flip_lines(caplog, "removed") == [f"pool web: backend {A} removed"]
    with pytest.raises(ActionError):
        h.controller.backend("web", A)


def test_remove_backend_removes_at_the_deadline_whatever_is_left() -> None:
    h = Harness(make_config())
    busy = FakeConn()
    h[A].in_flight = 1
    h[A].live.add(busy)
    h.controller.remove_backend("web", A, deadline_s=2.0)
    h.tick(1.9)
    assert len(h.controller.backends["web"]) == 3
    h.tick(0.1)
    assert busy.aborted
    assert [b.address for b in h.controller.backends["web"]] == [B, C]


def test_enable_cancels_a_removal() -> None:
    h = Harness(make_config())
    h[A].in_flight = 1
    h.controller.remove_backend("web", A, deadline_s=2.0)
    h.controller.enable("web", A)
    h[A].in_flight = 0
    h.tick(5.0)
    assert [b.address for b in h.controller.backends["web"]] == [A, B, C]


# --- reload -------------------------------------------------------------------------------------


def test_apply_config_keeps_runtime_state_and_takes_new_weights_elsewhere() -> None:
    backends = [{"address": x, "weight": 1} for x in (A, B, C, D)]
    h = Harness(make_config(backends, slow_start="10s"))
    h.controller.set_weight("web", A, 5)
    h.controller.drain("web", B)
    h.controller.disable("web", C)
    objects = {x: h[x] for x in (A, B, C, D)}
    new = copy.deepcopy(backends)
    for entry in new:
        entry["weight"] = 3
    new.append({"address": "10.0.0.5:8000", "weight": 2})
    h.clock.advance(1.0)
    h.controller.apply_config(make_config(new, slow_start="10s"))
    assert [b.address for b in h.controller.backends["web"]] == [A, B, C, D, "10.0.0.5:8000"]
    for x in (A, B, C, D):
        assert h[x] is objects[x]  # the same live state: counters and connections survive
    assert (h[A].weight, h[A].config_weight) == (5, 3)  # set at runtime: kept
    assert h[B].admin is Admin.DRAINING
    assert h[C].admin is Admin.DISABLED
    assert (h[D].weight, h[D].config_weight) == (3, 3)  # untouched: follows the file
    assert h.picked() == {A, D, "10.0.0.5:8000"}
    assert h["10.0.0.5:8000"].effective_weight == pytest.approx(0.2)  # new: ramps up
    assert h[D].effective_weight == 3.0


def test_apply_config_drops_backends_gone_from_the_file() -> None:
    h = Harness(make_config([A, B, C]))
    idle = FakeConn()
    h[C].idle.append(idle)
    h.controller.apply_config(make_config([A, B]))
    assert [b.address for b in h.controller.backends["web"]] == [A, B]
    assert idle.closed
    assert h.picked() == {A, B}


def test_apply_config_keeps_health_of_backends_that_stay() -> None:
    h = Harness(make_config(active=ACTIVE))
    h.probe(A, "---")
    h.controller.apply_config(make_config(active=ACTIVE))
    assert h[A].health is Health.UNHEALTHY
    assert h.picked() == {B, C}
    h.probe(A, "++")
    assert h.picked() == {A, B, C}


def test_apply_config_with_a_new_fall_uses_it_for_existing_backends() -> None:
    h = Harness(make_config(active=ACTIVE))  # fall 3
    h.controller.apply_config(make_config(active={**ACTIVE, "fall": 1}))
    h.probe(A, "-")
    assert h[A].health is Health.UNHEALTHY, "fall: 1 from the reloaded file was not applied"


def test_apply_config_without_active_probes_does_not_leave_a_backend_down_for_good() -> None:
    h = Harness(make_config(active=ACTIVE))
    h.probe(A, "---")
    assert h.picked() == {B, C}
    h.controller.apply_config(make_config())  # the operator removes active health checks
    # nothing will ever probe A again: keeping it unhealthy would exclude it forever
    assert h.picked() == {A, B, C}


# --- the admin API's view -----------------------------------------------------------------------


def test_describe_pool_fields() -> None:
    h = Harness(make_config(active=ACTIVE, passive=PASSIVE, slow_start="10s"))
    h.controller.set_weight("web", A, 4)
    h[A].in_flight = 2
    h[A].active_connections = 3
    h.probe(B, "---", detail="timeout after 1s")
    described = h.controller.describe_pool("web")
    assert {k: described[k] for k in ("name", "algorithm", "panic", "healthy", "usable")} == {
        "name": "web",
        "algorithm": "round_robin",
        "panic": False,
        "healthy": 2,
        "usable": 2,
    }
    by_address = {b["address"]: b for b in described["backends"]}
    assert list(by_address) == [A, B, C]
    a = by_address[A]
    assert a["state"] == "healthy"
    assert (a["weight"], a["config_weight"], a["effective_weight"]) == (4, 1, 4.0)
    assert (a["in_flight"], a["active_connections"]) == (2, 3)
    assert a["last_probe"] == {"result": None, "at": None}
    assert a["last_flip"] == {"reason": None, "at": None}
    assert a["drain_deadline_in_s"] is None
    assert a["ejected_for_s"] == 0.0
    b = by_address[B]
    assert b["state"] == "unhealthy"
    assert b["health"] == "unhealthy"
    assert b["admin"] == "enabled"
    assert b["effective_weight"] == 0.0
    assert b["last_probe"] == {"result": "timeout after 1s", "at": 1_700_000_000.0}
    assert b["last_flip"] == {
        "reason": "unhealthy: 3 probe failures: timeout after 1s",
        "at": 1_700_000_000.0,
    }
    h.fail(C, 3)
    c = h.controller.describe_backend(h[C])
    assert c["state"] == "ejected"
    assert c["ejected_for_s"] == 10.0
    assert h.controller.describe_pool("web")["panic"] is True  # 1 of 3 healthy
    with pytest.raises(ActionError) as caught:
        h.controller.describe_pool("nope")
    assert caught.value.status == 404


def test_flip_history_records_every_transition() -> None:
    h = Harness(make_config([A, B, C, D], active=ACTIVE, passive=PASSIVE))
    h.probe(A, "---")
    h.fail(B, 3)
    h.controller.drain("web", C)
    h.controller.disable("web", D)
    assert [(f.address, f.state) for f in h.controller.flips] == [
        (A, "unhealthy"),
        (B, "ejected"),
        (C, "draining"),
        (D, "disabled"),
    ]
    assert h.controller.flips[0].as_dict() == {
        "at": 1_700_000_000.0,
        "pool": "web",
        "backend": A,
        "state": "unhealthy",
        "reason": "3 probe failures: status 503",
    }
