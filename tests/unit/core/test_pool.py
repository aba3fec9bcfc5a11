"""core/pool.view(): which backends take new traffic, and at what effective weight.

Plain BackendState objects and a time passed in: drain, disable, weight 0, health, ejection,
panic and the slow-start ramp, each decided here once for every algorithm.
"""

from __future__ import annotations

import pytest

from evenflow.core.backend import Admin, BackendState, Health
from evenflow.core.pool import SLOW_START_FLOOR, usable, view

NOW = 1000.0  # monotonic seconds; far from 0, which means "never recovered"


def pool(*weights: int) -> list[BackendState]:
    """Backends a, b, c... (their host) with these weights, all healthy and enabled."""
    return [BackendState("p", f"{chr(ord('a') + i)}:80", w) for i, w in enumerate(weights)]


def names(backends: list[BackendState]) -> str:
    return "".join(b.host for b in backends)


def weights(backends: list[BackendState]) -> list[float]:
    return [b.effective_weight for b in backends]


# --- who is usable ------------------------------------------------------------------------------


def test_every_healthy_enabled_backend_is_usable_at_its_weight() -> None:
    backends = pool(1, 2, 3)
    result = view(backends, NOW)
    assert names(result.usable) == "abc"
    assert weights(backends) == [1.0, 2.0, 3.0]
    assert not result.panic
    assert not result.ramping
    assert (result.healthy, result.candidates) == (3, 3)


@pytest.mark.parametrize("admin", [Admin.DISABLED, Admin.DRAINING])
def test_disabled_and_draining_backends_take_no_new_traffic(admin: Admin) -> None:
    backends = pool(1, 1, 1)
    backends[1].admin = admin
    result = view(backends, NOW)
    assert names(result.usable) == "ac"
    assert backends[1].effective_weight == 0.0
    assert result.candidates == 2


def test_weight_zero_takes_no_new_traffic() -> None:
    backends = pool(1, 0, 1)
    result = view(backends, NOW)
    assert names(result.usable) == "ac"
    assert backends[1].effective_weight == 0.0
    assert result.candidates == 2


def test_an_unhealthy_backend_is_left_out() -> None:
    backends = pool(1, 1, 1)
    backends[2].health = Health.UNHEALTHY
    result = view(backends, NOW)
    assert names(result.usable) == "ab"
    assert backends[2].effective_weight == 0.0
    assert (result.healthy, result.candidates) == (2, 3)


def test_an_ejected_backend_is_left_out_until_its_ejection_ends() -> None:
    backends = pool(1, 1, 1)
    backends[0].ejected_until = NOW + 5
    assert names(view(backends, NOW).usable) == "bc"
    assert backends[0].effective_weight == 0.0
    assert names(view(backends, NOW + 4.999).usable) == "bc"
    # at its end (housekeeping may not have run yet) it is back
    assert names(view(backends, NOW + 5).usable) == "abc"
    assert backends[0].effective_weight == 1.0


def test_effective_weight_of_a_backend_that_becomes_unusable_drops_to_zero() -> None:
    backends = pool(4, 4)
    view(backends, NOW)
    assert weights(backends) == [4.0, 4.0]
    backends[0].admin = Admin.DRAINING
    view(backends, NOW)
    assert weights(backends) == [0.0, 4.0]


def test_usable_ignores_time_based_rules() -> None:
    backends = pool(1, 1, 1)
    backends[0].health = Health.UNHEALTHY
    assert names(usable(backends)) == "bc"


# --- panic --------------------------------------------------------------------------------------


def test_panic_below_the_threshold_balances_over_every_enabled_backend() -> None:
    backends = pool(1, 1, 1, 1)
    backends[0].health = Health.UNHEALTHY
    backends[1].ejected_until = NOW + 30
    backends[3].admin = Admin.DISABLED  # 1 of 3 candidates healthy, below 50%
    result = view(backends, NOW, panic_threshold=0.5)
    assert result.panic
    assert names(result.usable) == "abc"  # unhealthy and ejected ones too, never disabled
    assert weights(backends) == [1.0, 1.0, 1.0, 0.0]
    assert (result.healthy, result.candidates) == (1, 3)


def test_panic_includes_draining_never() -> None:
    backends = pool(1, 1, 1)
    backends[0].health = Health.UNHEALTHY
    backends[1].health = Health.UNHEALTHY
    backends[2].admin = Admin.DRAINING
    result = view(backends, NOW, panic_threshold=0.5)
    assert result.panic
    assert names(result.usable) == "ab"


def test_exactly_at_the_threshold_is_no_panic() -> None:
    backends = pool(1, 1, 1, 1)
    backends[0].health = Health.UNHEALTHY
    backends[1].health = Health.UNHEALTHY  # 2 of 4: exactly 50%
    result = view(backends, NOW, panic_threshold=0.5)
    assert not result.panic
    assert names(result.usable) == "cd"


def test_every_backend_down_is_a_panic() -> None:
    backends = pool(1, 1, 1)
    for backend in backends:
        backend.health = Health.UNHEALTHY
    result = view(backends, NOW, panic_threshold=0.5)
    assert result.panic
    assert names(result.usable) == "abc"
    assert result.healthy == 0


def test_threshold_zero_turns_panic_off() -> None:
    backends = pool(1, 1, 1)
    for backend in backends:
        backend.health = Health.UNHEALTHY
    result = view(backends, NOW, panic_threshold=0.0)
    assert not result.panic
    assert result.usable == []
    assert weights(backends) == [0.0, 0.0, 0.0]


def test_no_candidates_is_no_panic() -> None:
    backends = pool(1, 1)
    for backend in backends:
        backend.admin = Admin.DISABLED
    result = view(backends, NOW, panic_threshold=1.0)
    assert not result.panic
    assert result.usable == []


@pytest.mark.parametrize(
    ("healthy", "total", "threshold", "panic"),
    [(1, 3, 0.5, True), (2, 3, 0.5, False), (2, 4, 0.5, False), (1, 4, 0.5, True),
     (3, 4, 0.8, True), (4, 4, 1.0, False), (0, 1, 0.01, True), (9, 10, 0.9, False)],
)  # fmt: skip
def test_panic_is_healthy_share_strictly_below_threshold(
    healthy: int, total: int, threshold: float, panic: bool
) -> None:
    backends = pool(*[1] * total)
    for backend in backends[healthy:]:
        backend.health = Health.UNHEALTHY
    assert view(backends, NOW, panic_threshold=threshold).panic is panic


# --- slow start ---------------------------------------------------------------------------------


def test_slow_start_begins_at_the_ten_percent_floor() -> None:
    backends = pool(10, 10)
    backends[0].recovered_at = NOW
    result = view(backends, NOW, slow_start_s=30.0)
    assert SLOW_START_FLOOR == 0.1
    assert weights(backends) == [pytest.approx(1.0), 10.0]
    assert result.ramping
    assert names(result.usable) == "ab"


def test_slow_start_ramps_linearly_to_full_weight() -> None:
    backends = pool(10)
    backends[0].recovered_at = NOW
    seen = []
    for elapsed in (1.5, 3.0, 7.5, 15.0, 22.5, 29.0):
        view(backends, NOW + elapsed, slow_start_s=30.0)
        seen.append(backends[0].effective_weight)
    # under the floor for the first 10% of the window, then linear
    assert seen == pytest.approx([1.0, 1.0, 2.5, 5.0, 7.5, 29.0 / 3])


def test_slow_start_is_over_at_slow_start() -> None:
    backends = pool(10)
    backends[0].recovered_at = NOW
    result = view(backends, NOW + 30.0, slow_start_s=30.0)
    assert backends[0].effective_weight == 10.0
    assert not result.ramping
    view(backends, NOW + 300.0, slow_start_s=30.0)
    assert backends[0].effective_weight == 10.0


def test_slow_start_off_gives_full_weight_at_once() -> None:
    backends = pool(10)
    backends[0].recovered_at = NOW
    result = view(backends, NOW, slow_start_s=0.0)
    assert backends[0].effective_weight == 10.0
    assert not result.ramping


def test_a_backend_that_never_recovered_is_not_ramping() -> None:
    backends = pool(10)  # recovered_at 0: in the pool since the start
    result = view(backends, 5.0, slow_start_s=30.0)
    assert backends[0].effective_weight == 10.0
    assert not result.ramping


def test_slow_start_is_not_applied_in_panic() -> None:
    backends = pool(10, 10, 10)
    backends[0].recovered_at = NOW  # just came back, but 2 of 3 are down
    backends[1].health = Health.UNHEALTHY
    backends[2].health = Health.UNHEALTHY
    result = view(backends, NOW, slow_start_s=30.0, panic_threshold=0.5)
    assert result.panic
    assert weights(backends) == [10.0, 10.0, 10.0]
    assert not result.ramping


def test_an_unusable_backend_has_weight_zero_even_while_ramping() -> None:
    backends = pool(10, 10)
    backends[0].recovered_at = NOW
    backends[0].health = Health.UNHEALTHY
    result = view(backends, NOW + 10, slow_start_s=30.0)
    assert weights(backends) == [0.0, 10.0]
    assert not result.ramping


def test_slow_start_scales_a_runtime_weight() -> None:
    backends = pool(1)
    backends[0].weight = 8  # set at runtime
    backends[0].recovered_at = NOW
    view(backends, NOW + 15.0, slow_start_s=30.0)
    assert backends[0].effective_weight == pytest.approx(4.0)
