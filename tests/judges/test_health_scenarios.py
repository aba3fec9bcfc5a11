"""Issue 3's "done when", tried as a user would: evenflow and its backends as real processes.

- a backend killed with SIGKILL under steady load: no client request fails (GETs are retried),
  it is marked unhealthy within `interval x fall + timeout`, and gets no request after that;
- restarted: healthy after `rise` passes, and its share grows over `slow_start`;
- a backend answering 500 to half the requests: ejected by passive detection, back after
  `ejection_time`, and never more than `max_ejected_percent` of the pool ejected;
- every backend failing /healthz at once while still serving: clients keep getting 200s
  (panic mode), and evenflow logs the panic and the suspected shared dependency.
(Drain through the admin API is judged in tests/integration/admin.)

Timings are small (probes every 300ms, 100ms while a flip is under way, 200ms timeout) so each
scenario takes a few seconds. Flip times come from the stamps on evenflow's own log lines, and
"which backend served what" from its access log and the backends' x-backend header.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from health_support import (
    Access,
    Backend,
    Evenflow,
    Load,
    LogLine,
    Result,
    backend_processes,
    running_evenflow,
    share,
)

pytestmark = [pytest.mark.judge, pytest.mark.timeout(90)]

INTERVAL_S = 0.3
FAST_INTERVAL_S = 0.1
TIMEOUT_S = 0.2
RISE = 2
FALL = 3
JITTER = 0.1  # evenflow's default: each interval varies by up to 10%
ACTIVE = {
    "http": {"path": "/healthz"},
    "interval": "300ms",
    "fast_interval": "100ms",
    "timeout": "200ms",
    "rise": RISE,
    "fall": FALL,
}
MARKED_DOWN_WITHIN_S = INTERVAL_S * FALL + TIMEOUT_S  # the bound
STAMP_SLACK_S = 0.002  # log and access-log stamps are truncated to the millisecond


def pool(backends: list[Backend], algorithm: str = "round_robin", **health: Any) -> dict[str, Any]:
    return {
        "web": {
            "algorithm": algorithm,
            "backends": [b.address for b in backends],
            "retries": {"attempts": 3},
            "health": health,
        }
    }


def flip_pattern(backend: Backend, state: str) -> str:
    return rf"^pool web: backend {re.escape(backend.address)} {state}: "


def failed(results: list[Any]) -> list[Any]:
    return [r for r in results if r.status != 200]


def attempts_on(entries: list[Access], backend: Backend) -> list[Access]:
    """Access-log entries whose request went to `backend`, as the server or as a failed try."""
    prefix = f"{backend.address}: "
    return [
        e
        for e in entries
        if e.backend == backend.address or any(f.startswith(prefix) for f in e.failures)
    ]


def settle_access_log(evenflow: Evenflow) -> list[Access]:
    time.sleep(0.5)  # the access log is flushed every 0.2s
    return evenflow.access()


# --- a backend killed under load ----------------------------------------------------------------


CLIENTS = 4


@pytest.mark.parametrize(
    ("method", "most_failures"),
    [
        ("GET", 0),  # idempotent: whatever was in flight on it is retried elsewhere
        # not retried once sent: at most what was in flight on it, at most one per client
        ("POST", CLIENTS),
    ],
)
def test_a_killed_backend_costs_no_request_and_is_out_within_interval_x_fall_plus_timeout(
    tmp_path: Path, method: str, most_failures: int
) -> None:
    with backend_processes(tmp_path) as procs:
        a, b, c = procs.demo("a"), procs.demo("b"), procs.demo("c")
        with (
            running_evenflow(pool([a, b, c], active=ACTIVE), tmp_path) as evenflow,
            Load(evenflow.url, clients=CLIENTS, method=method) as load,
        ):
            load.wait_for(300, within_s=10)
            before = load.snapshot()
            assert {r.backend for r in before} == {"a", "b", "c"}, "all three serve at first"
            killed_at = time.time()
            b.kill()
            down = evenflow.wait_for_line(flip_pattern(b, "unhealthy"), within_s=5)
            load.wait_for(300, within_s=10)
            load.stop()
            results = load.snapshot()
            entries = settle_access_log(evenflow)
            log_tail = evenflow.log_text()[-2000:]

    bad = failed(results)
    # (a rare GET timed out here in CI, twice in many runs: what evenflow logged of the
    # requests that were not plain successes says where it went)
    unusual = [e for e in entries if e.status != 200 or e.attempts != 1]
    assert len(bad) <= most_failures, (
        f"{len(bad)} of {len(results)} client requests failed: {bad[:5]}; killed at "
        f"{killed_at:.3f}; access log of the unusual ones: {unusual[-10:]}; log:\n{log_tail}"
    )
    assert all(r.status == 502 for r in bad), f"a failure is a 502, not a hang: {bad}"
    took = down.at - killed_at
    assert took <= MARKED_DOWN_WITHIN_S + STAMP_SLACK_S, (
        f"marked unhealthy {took:.3f}s after the kill, bound {MARKED_DOWN_WITHIN_S:.3f}s: "
        f"{down.message}"
    )
    reason = f"unhealthy: {FALL} probe failures: connect failed: connection refused"
    assert down.message.endswith(reason), down.message
    after = [e for e in attempts_on(entries, b) if e.started > down.at + STAMP_SLACK_S]
    assert after == [], f"{len(after)} requests were sent to {b.address} after its flip"
    assert [e for e in entries if e.started > down.at] != [], "load went on after the flip"
    served_after = {r.backend for r in results if r.started > down.at}
    assert served_after == {"a", "c"}


# --- the same backend restarted: rise, then slow start -------------------------------------------

SLOW_START_S = 3.0


@pytest.mark.parametrize(
    ("algorithm", "clients", "path"),
    [
        ("weighted_round_robin", 4, "/"),
        # least_conn weighs requests in flight: slow requests keep some in flight on each
        ("least_conn", 12, "/?delay=40"),
    ],
)
def test_a_restarted_backend_is_back_after_rise_passes_and_ramps_up_over_slow_start(
    tmp_path: Path, algorithm: str, clients: int, path: str
) -> None:
    with backend_processes(tmp_path) as procs:
        a, b, c = procs.demo("a"), procs.demo("b"), procs.demo("c")
        pools = pool([a, b, c], algorithm, active=ACTIVE, slow_start=f"{SLOW_START_S}s")
        with (
            running_evenflow(pools, tmp_path) as evenflow,
            Load(evenflow.url, clients=clients, path=path) as load,
        ):
            load.wait_for(100, within_s=10)
            b.kill()
            down = evenflow.wait_for_line(flip_pattern(b, "unhealthy"), within_s=5)
            procs.demo("b", port=b.port)  # returns once it announced it is listening
            restarted_at = time.time()
            up = evenflow.wait_for_line(flip_pattern(b, "healthy"), within_s=5)
            # the whole ramp, and one more second at full weight
            while time.time() < up.at + SLOW_START_S + 1.0:
                time.sleep(0.05)
            load.stop()
            results = load.snapshot()
            entries = settle_access_log(evenflow)

    assert down.at < restarted_at
    assert up.message.endswith(f"healthy: {RISE} probes passed"), up.message
    # down, it is probed every fast_interval: back after `rise` passes, not after intervals
    took = up.at - restarted_at
    bound = RISE * FAST_INTERVAL_S * (1 + JITTER) + TIMEOUT_S
    assert took <= bound, f"healthy {took:.3f}s after the restart (bound {bound:.3f}s)"
    early = [
        e
        for e in attempts_on(entries, b)
        if down.at + STAMP_SLACK_S < e.started < up.at - STAMP_SLACK_S
    ]
    assert early == [], f"{len(early)} requests reached b between its flips"
    bad = failed(results)
    assert bad == [], f"{len(bad)} of {len(results)} client requests failed: {bad[:5]}"

    third = SLOW_START_S / 3
    first = [r for r in results if up.at <= r.started < up.at + third]
    last = [r for r in results if up.at + 2 * third <= r.started < up.at + SLOW_START_S]
    full = [r for r in results if up.at + SLOW_START_S + 0.2 <= r.started]
    assert min(len(first), len(last), len(full)) >= 50, (len(first), len(last), len(full))
    first_share, last_share, full_share = (share(x, "b") for x in (first, last, full))
    shares = f"b's share: first third {first_share:.3f}, last third {last_share:.3f}, "
    shares += f"after the ramp {full_share:.3f}"
    # the ramp starts at 10% of b's weight (its fair share is 1/3) and grows linearly
    assert first_share < 0.5 * full_share, shares
    assert last_share > 1.5 * first_share, shares
    assert full_share > 0.25, shares


# --- a backend answering 500 to half the requests: passive ejection -------------------------------

EJECTION_S = 1.0
MAX_EJECTION_S = 3.0
PASSIVE = {
    "consecutive_failures": 3,
    "ejection_time": f"{EJECTION_S}s",
    "max_ejection_time": f"{MAX_EJECTION_S}s",
    "max_ejected_percent": 50,
}
HOUSEKEEPING_S = 0.25  # evenflow ends ejections on a 250ms tick


RUN_AFTER_FIRST_RETURN_S = 2.5


@dataclass(frozen=True)
class Ejection:
    name: str
    at: float  # stamp of its "ejected" line
    out_for_s: float  # the time the line announced

    @property
    def until(self) -> float:
        return self.at + self.out_for_s


@dataclass(frozen=True)
class EjectionRun:
    """One run of the scenario, judged by the tests below."""

    backends: list[Backend]
    ejections: list[Ejection]
    returns: list[tuple[float, str]]  # stamps and names of "healthy: ejection time over"
    log: list[LogLine]
    entries: list[Access]
    results: list[Result]
    ended: float

    def backend(self, name: str) -> Backend:
        return next(b for b in self.backends if b.name == name)


@pytest.fixture(scope="module")
def ejection_run(tmp_path_factory: pytest.TempPathFactory) -> EjectionRun:
    """Four backends, three of them answering 500 to half the requests, under steady load."""
    tmp_path = tmp_path_factory.mktemp("ejection")
    with backend_processes(tmp_path) as procs:
        good = procs.demo("good")
        flaky = [procs.flaky(f"flaky{i}", seed=i) for i in range(1, 4)]
        backends = [good, *flaky]
        with (
            running_evenflow(pool(backends, passive=PASSIVE), tmp_path) as evenflow,
            Load(evenflow.url, clients=4) as load,
        ):
            load.wait_for(200, within_s=10)
            evenflow.wait_for_line(r" ejected: ", within_s=5)
            evenflow.wait_for_line(r" healthy: ejection time over", within_s=5)
            time.sleep(RUN_AFTER_FIRST_RETURN_S)
            load.stop()
            ended = time.time()
            log = evenflow.log_lines()
            entries = settle_access_log(evenflow)
            results = load.snapshot()

    names = {b.address: b.name for b in backends}
    ejections, returns = [], []
    event = re.compile(r"^pool web: backend (\S+) (ejected|healthy): (.*)$")
    for line in log:
        match = event.match(line.message)
        if match is None:
            continue
        name, reason = names[match.group(1)], match.group(3)
        if match.group(2) == "ejected":
            out_for = re.search(r"out for ([\d.]+)s$", reason)
            assert out_for is not None, line.message
            assert reason.startswith("3 failures in a row on traffic: status 500"), line.message
            ejections.append(Ejection(name, line.at, float(out_for.group(1))))
        else:
            assert reason == "ejection time over", line.message
            returns.append((line.at, name))
    return EjectionRun(backends, ejections, returns, log, entries, results, ended)


def test_a_backend_answering_500_to_half_the_requests_is_ejected(ejection_run: EjectionRun) -> None:
    ejected = {e.name for e in ejection_run.ejections}
    assert "good" not in ejected, "a backend answering only 200s was ejected"
    assert len(ejected) >= 2, f"flaky backends ejected: {sorted(ejected)}"
    assert ejection_run.ejections[0].out_for_s == EJECTION_S
    assert all(r.status == 200 for r in ejection_run.results if r.backend == "good")


def test_ejection_never_exceeds_max_ejected_percent(ejection_run: EjectionRun) -> None:
    ejections = ejection_run.ejections
    for ejection in ejections:
        out = sorted(e.name for e in ejections if e.at <= ejection.at < e.until)
        assert len(out) <= 2, (
            f"{len(out)} of 4 backends ejected at once (max_ejected_percent 50): {out}"
        )
    capped = [line for line in ejection_run.log if " not ejected: " in line.message]
    assert capped, "3 flaky of 4: the cap must have held one back (a 'not ejected' line)"
    assert capped[0].message.endswith("(max_ejected_percent 50)"), capped[0].message


def test_an_ejected_backend_gets_no_request_while_out(ejection_run: EjectionRun) -> None:
    for ejection in ejection_run.ejections:
        backend = ejection_run.backend(ejection.name)
        during = [
            e
            for e in attempts_on(ejection_run.entries, backend)
            if ejection.at + 0.005 < e.started < ejection.until - STAMP_SLACK_S
        ]
        assert during == [], f"{len(during)} requests reached {ejection.name} while ejected"


def test_an_ejected_backend_returns_after_ejection_time(ejection_run: EjectionRun) -> None:
    # once its time is over it is back within a housekeeping tick, and takes requests again
    checked = 0
    for ejection in ejection_run.ejections:
        if ejection.until + HOUSEKEEPING_S + 0.15 > ejection_run.ended:
            continue  # still out, or just back, when the load stopped
        backend = ejection_run.backend(ejection.name)
        after = [
            e.started
            for e in attempts_on(ejection_run.entries, backend)
            if e.started >= ejection.until - STAMP_SLACK_S
        ]
        assert after, f"{ejection.name} got no request after its ejection ended"
        late = min(after) - ejection.until
        assert late <= HOUSEKEEPING_S + 0.15, (
            f"{ejection.name}'s first request came {late:.3f}s after its ejection ended"
        )
        checked += 1
    assert checked >= 1


def test_repeated_ejections_grow_and_stay_under_the_cap(ejection_run: EjectionRun) -> None:
    # 1x, 2x, 3x ejection_time..., capped at max_ejection_time; the count starts over once a
    # backend has behaved for max_ejection_time since it came back
    for name in {e.name for e in ejection_run.ejections}:
        repeats, back_at = 0, None
        got, expected = [], []
        for ejection in (e for e in ejection_run.ejections if e.name == name):
            if back_at is not None and ejection.at - back_at > MAX_EJECTION_S:
                repeats = 0
            repeats += 1
            got.append(ejection.out_for_s)
            expected.append(min(EJECTION_S * repeats, MAX_EJECTION_S))
            back_at = ejection.until
        assert got == expected, f"{name}: ejection times {got}"


def test_every_return_from_ejection_is_logged(ejection_run: EjectionRun) -> None:
    # issue 3, item 7: one line per flip. A backend that is ejected again was back in
    # between, so its return must have been logged in between too.
    for ejection in ejection_run.ejections:
        later = [
            e for e in ejection_run.ejections if e.name == ejection.name and e.at > ejection.at
        ]
        if not later:
            continue
        returned = [
            at
            for at, name in ejection_run.returns
            if name == ejection.name and ejection.at < at < later[0].at
        ]
        assert returned, (
            f"{ejection.name} was ejected at {ejection.at:.3f} for {ejection.out_for_s}s and "
            f"again at {later[0].at:.3f} ({later[0].at - ejection.until:.3f}s after its time "
            "was over) with no 'healthy: ejection time over' line in between"
        )


def test_the_cap_decision_is_not_logged_once_per_failed_request(
    ejection_run: EjectionRun,
) -> None:
    # STYLE.md: log decisions, never per request. "not ejected: ... max_ejected_percent" is
    # one decision while the cap holds; a line for every 3 failed requests floods the log.
    capped = [line for line in ejection_run.log if " not ejected: " in line.message]
    seconds = ejection_run.ended - ejection_run.log[0].at
    assert len(capped) <= 3 * seconds, (
        f"{len(capped)} 'not ejected' lines in {seconds:.1f}s, the first: {capped[0].message}"
    )


# --- a shared dependency down: every /healthz fails, traffic still works --------------------------


def test_every_backend_failing_its_health_check_at_once_keeps_serving_in_panic_mode(
    tmp_path: Path,
) -> None:
    with backend_processes(tmp_path) as procs:
        backends = [procs.demo(name) for name in ("a", "b", "c")]
        with (
            running_evenflow(pool(backends, active=ACTIVE), tmp_path) as evenflow,
            Load(evenflow.url, clients=4) as load,
        ):
            load.wait_for(200, within_s=10)
            broken_at = time.time()
            for backend in backends:
                backend.set_health(False)
            panic = evenflow.wait_for_line(r"^pool web: panic mode: ", within_s=5)
            shared = evenflow.wait_for_line(r"suspected shared dependency", within_s=5)
            for backend in backends:
                evenflow.wait_for_line(flip_pattern(backend, "unhealthy"), within_s=5)
            panic_seen_at = time.time()
            while time.time() < panic_seen_at + 1.5:  # serving through the panic
                time.sleep(0.05)
            during = load.snapshot()
            for backend in backends:
                backend.set_health(True)
            over = evenflow.wait_for_line(r"^pool web: panic mode over: ", within_s=5)
            load.wait_for(100, within_s=10)
            load.stop()
            results = load.snapshot()

    assert broken_at < panic.at
    assert "below 50%: balancing over all of them" in panic.message, panic.message
    assert re.search(r"every backend \(3\) failed probe GET /healthz", shared.message), (
        shared.message
    )
    assert over.at > panic.at
    in_panic = [r for r in during if r.started > panic.at]
    assert len(in_panic) >= 100, "the load kept flowing in panic mode"
    assert {r.backend for r in in_panic} == {"a", "b", "c"}, "panic balances over all of them"
    bad = failed(results)
    assert bad == [], f"{len(bad)} of {len(results)} requests failed: {bad[:5]}"
