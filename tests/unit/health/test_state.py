"""The rise/fall flip table: a backend flips only after `rise` passes or `fall` failures in a row.

Pure state machine, no sockets: feed probe results, read flips, their reasons and `changing`.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evenflow.health.state import Flip, RiseFall


def feed(tracker: RiseFall, results: str, detail: str = "connect timeout") -> list[Flip | None]:
    """Record results written as a string: `+` a pass, `-` a failure."""
    return [tracker.record(r == "+", "" if r == "+" else detail) for r in results]


def flips(tracker: RiseFall, results: str) -> str:
    """Which results flipped, as a string: `U` to unhealthy, `H` to healthy, `.` no flip."""
    out = []
    for flip in feed(tracker, results):
        out.append("." if flip is None else ("H" if flip.healthy else "U"))
    return "".join(out)


# --- the table, from healthy ------------------------------------------------------------------


def test_a_healthy_backend_that_passes_stays_healthy_and_steady() -> None:
    tracker = RiseFall(rise=2, fall=3)
    assert flips(tracker, "+++++") == "....."
    assert tracker.healthy
    assert not tracker.changing


def test_failures_below_fall_do_not_flip_but_mark_it_changing() -> None:
    tracker = RiseFall(rise=2, fall=3)
    assert flips(tracker, "--") == ".."
    assert tracker.healthy
    assert tracker.changing  # probed at the fast interval to settle it sooner
    assert tracker.streak == 2


def test_the_fall_th_failure_in_a_row_flips_to_unhealthy() -> None:
    tracker = RiseFall(rise=2, fall=3)
    results = feed(tracker, "---")
    assert results[:2] == [None, None]
    flip = results[2]
    assert flip is not None
    assert flip.healthy is False
    assert flip.reason == "3 probe failures: connect timeout"
    assert not tracker.healthy
    assert not tracker.changing  # settled: the streak restarts after a flip
    assert tracker.streak == 0


def test_the_reason_names_the_last_failure() -> None:
    tracker = RiseFall(rise=2, fall=2)
    assert tracker.record(False, "connect failed: connection refused") is None
    flip = tracker.record(False, "status 503")
    assert flip is not None
    assert flip.reason == "2 probe failures: status 503"


def test_a_pass_resets_the_failure_streak() -> None:
    tracker = RiseFall(rise=2, fall=3)
    assert flips(tracker, "--+--+--") == "........"
    assert tracker.healthy
    assert tracker.streak == 2
    assert flips(tracker, "-") == "U"


def test_a_pass_ends_changing() -> None:
    tracker = RiseFall(rise=2, fall=3)
    feed(tracker, "--")
    assert tracker.changing
    feed(tracker, "+")
    assert not tracker.changing
    assert tracker.streak == 0


def test_fall_one_flips_on_the_first_failure_with_a_singular_reason() -> None:
    tracker = RiseFall(rise=1, fall=1)
    flip = tracker.record(False, "status 500")
    assert flip is not None and not flip.healthy
    assert flip.reason == "1 probe failure: status 500"


def test_a_failure_without_detail_gives_a_bare_count() -> None:
    tracker = RiseFall(rise=2, fall=2)
    tracker.record(False)
    flip = tracker.record(False)
    assert flip is not None
    assert flip.reason == "2 probe failures"


# --- the table, from unhealthy ----------------------------------------------------------------


def test_an_unhealthy_backend_that_fails_stays_unhealthy_and_steady() -> None:
    tracker = RiseFall(rise=2, fall=3, healthy=False)
    assert flips(tracker, "-----") == "....."
    assert not tracker.healthy
    assert not tracker.changing


def test_the_rise_th_pass_in_a_row_flips_to_healthy() -> None:
    tracker = RiseFall(rise=3, fall=2, healthy=False)
    results = feed(tracker, "+++")
    assert results[:2] == [None, None]
    assert tracker.changing is False
    flip = results[2]
    assert flip is not None
    assert flip.healthy is True
    assert flip.reason == "3 probes passed"
    assert tracker.healthy


def test_passes_below_rise_mark_it_changing() -> None:
    tracker = RiseFall(rise=3, fall=2, healthy=False)
    feed(tracker, "++")
    assert tracker.changing
    assert not tracker.healthy


def test_a_failure_resets_the_pass_streak() -> None:
    tracker = RiseFall(rise=3, fall=2, healthy=False)
    assert flips(tracker, "++-++-++") == "........"
    assert not tracker.healthy
    assert flips(tracker, "+") == "H"


def test_rise_one_flips_on_the_first_pass_with_a_singular_reason() -> None:
    tracker = RiseFall(rise=1, fall=3, healthy=False)
    flip = tracker.record(True, "status 200")
    assert flip is not None and flip.healthy
    assert flip.reason == "1 probe passed"


def test_a_full_cycle_down_and_up_again() -> None:
    tracker = RiseFall(rise=2, fall=3)
    # healthy: 3 failures flip; unhealthy: a failure resets the passes; 2 passes flip; then down
    assert flips(tracker, "---+-++---") == "..U...H..U"


# --- force --------------------------------------------------------------------------------------


def test_force_sets_the_state_and_clears_a_streak_under_way() -> None:
    tracker = RiseFall(rise=2, fall=3)
    feed(tracker, "--")
    tracker.force(False)
    assert not tracker.healthy
    assert not tracker.changing
    # the streak now counts towards rise, from zero
    assert flips(tracker, "+") == "."
    assert flips(tracker, "+") == "H"


def test_force_to_the_same_state_only_clears_the_streak() -> None:
    tracker = RiseFall(rise=2, fall=3)
    feed(tracker, "--")
    tracker.force(True)
    assert tracker.healthy
    assert flips(tracker, "--") == ".."
    assert flips(tracker, "-") == "U"


@pytest.mark.parametrize(("rise", "fall"), [(0, 1), (1, 0), (-1, 3)])
def test_rise_and_fall_must_be_at_least_one(rise: int, fall: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RiseFall(rise=rise, fall=fall)


def test_flip_repr_names_the_direction_and_reason() -> None:
    assert repr(Flip(False, "3 probe failures: status 503")) == (
        "Flip(unhealthy: 3 probe failures: status 503)"
    )


# --- the property -------------------------------------------------------------------------------


def expected_flips(results: list[bool], rise: int, fall: int, healthy: bool) -> list[bool | None]:
    """The flips as the issue states them, computed by looking back over the results instead of
    keeping a counter: at result i a backend flips to unhealthy exactly when it is healthy and
    the last `fall` results (all since its last flip) are failures; symmetric with `rise`."""
    out: list[bool | None] = []
    last_flip = -1  # index of the result that completed the last flip
    for i in range(len(results)):
        needed = fall if healthy else rise
        window = results[i - needed + 1 : i + 1]
        since_flip = i - needed + 1 > last_flip
        if since_flip and len(window) == needed and all(r != healthy for r in window):
            healthy = not healthy
            last_flip = i
            out.append(healthy)
        else:
            out.append(None)
    return out


@given(
    results=st.lists(st.booleans(), max_size=60),
    rise=st.integers(1, 5),
    fall=st.integers(1, 5),
    healthy=st.booleans(),
)
def test_flips_happen_exactly_after_rise_or_fall_results_in_a_row(
    results: list[bool], rise: int, fall: int, healthy: bool
) -> None:
    tracker = RiseFall(rise, fall, healthy)
    got = []
    for ok in results:
        flip = tracker.record(ok, "" if ok else "status 503")
        got.append(None if flip is None else flip.healthy)
        # the state always agrees with the last flip, and changing means results disagree
        assert tracker.changing == (tracker.streak > 0)
    assert got == expected_flips(results, rise, fall, healthy)
    final = healthy
    for flip_to in got:
        if flip_to is not None:
            final = flip_to
    assert tracker.healthy == final


@given(results=st.lists(st.booleans(), max_size=60), rise=st.integers(1, 5))
def test_every_flip_reason_counts_the_results_that_caused_it(
    results: list[bool], rise: int
) -> None:
    fall = 3
    tracker = RiseFall(rise, fall)
    for ok in results:
        flip = tracker.record(ok, "" if ok else "status 503")
        if flip is None:
            continue
        if flip.healthy:
            assert flip.reason == f"{rise} probe{'s' if rise > 1 else ''} passed"
        else:
            assert flip.reason == "3 probe failures: status 503"
