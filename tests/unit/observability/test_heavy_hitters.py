"""The space-saving sketch: bounded memory, and the two guarantees the hot-key view relies on
(every key over total/k is there; a count overestimates by at most its error), also merged."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from evenflow.observability.heavy_hitters import SpaceSaving, merged_top


def fed(keys: list[str], capacity: int) -> SpaceSaving:
    sketch = SpaceSaving(capacity)
    for key in keys:
        sketch.offer(key)
    return sketch


def check(sketch: SpaceSaving, truth: Counter[str]) -> None:
    """Both guarantees of Metwally et al. against the exact counts."""
    total = sum(truth.values())
    assert sketch.total == total
    assert len(sketch) <= sketch.capacity
    listed = {key: (count, error) for key, count, error in sketch.top(sketch.capacity)}
    for key, count in truth.items():
        if count * sketch.capacity > total:
            assert key in listed, (key, count, total)
    for key, (estimate, error) in listed.items():
        assert estimate - error <= truth[key] <= estimate, key
        assert error * sketch.capacity <= total  # the error is at most total/k
    # an absent key was seen at most `floor` times
    for key, count in truth.items():
        if key not in listed:
            assert count <= sketch.floor


# skewed streams: a few heavy keys among many light ones, so replacement really happens
STREAMS = st.lists(
    st.one_of(
        st.integers(0, 3).map(lambda i: f"hot-{i}"),
        st.integers(0, 400).map(lambda i: f"k-{i}"),
    ),
    max_size=600,
)


@settings(max_examples=200, deadline=None)
@given(STREAMS, st.integers(1, 12))
def test_heavy_keys_are_always_listed_and_counts_are_bounded(keys: list[str], k: int) -> None:
    check(fed(keys, k), Counter(keys))


@settings(max_examples=150, deadline=None)
@given(STREAMS, STREAMS, st.integers(1, 10))
def test_merged_sketches_keep_both_guarantees(old: list[str], new: list[str], k: int) -> None:
    a, b = fed(old, k), fed(new, k)
    truth = Counter(old) + Counter(new)
    merged = {key: (count, error) for key, count, error in merged_top([b, a], 10_000)}
    for key, count in truth.items():
        # over both thresholds' sum, a key is over one of them, so one sketch lists it
        if count * k > a.total + b.total:
            assert key in merged, key
    for key, (estimate, error) in merged.items():
        assert estimate - error <= truth[key] <= estimate, key


def test_below_capacity_every_count_is_exact() -> None:
    sketch = fed(["a", "b", "a", "c", "a", "b"], 8)
    assert sketch.top() == [("a", 3, 0), ("b", 2, 0), ("c", 1, 0)]
    assert sketch.floor == 0  # not full: an absent key was never seen
    assert sketch.total == 6


def test_a_new_key_takes_over_the_smallest_counter_and_inherits_its_count() -> None:
    sketch = fed(["a", "a", "a", "b", "c"], 2)  # c replaces b (the smallest: 1)
    assert sketch.top() == [("a", 3, 0), ("c", 2, 1)]
    assert sketch.floor == 2


def test_a_flooded_key_stays_first_among_a_thousand_others() -> None:
    keys = []
    for i in range(1000):
        keys.append(f"user-{i}")
        if i % 2 == 0:
            keys.append("hot")
    sketch = fed(keys, 32)
    key, count, error = sketch.top(1)[0]
    assert key == "hot"
    assert count - error <= 500 <= count
    assert len(sketch) == 32  # a thousand keys, 32 counters


def test_top_is_heaviest_first_and_at_most_n() -> None:
    sketch = fed([f"k{i}" for i in range(5) for _ in range(i + 1)], 8)
    assert [key for key, _, _ in sketch.top(3)] == ["k4", "k3", "k2"]


def test_merged_top_of_one_sketch_is_its_top() -> None:
    sketch = fed(["a", "b", "a", "c"], 4)
    assert merged_top([sketch], 2) == sketch.top(2)
    assert merged_top([sketch, SpaceSaving(4)], 2) == sketch.top(2)


def test_merged_top_adds_the_floor_of_a_sketch_that_lacks_the_key() -> None:
    full = fed(["x", "x", "y", "y", "y"], 2)  # floor 2
    other = fed(["z"] * 4, 2)  # not full: floor 0
    assert merged_top([full, other]) == [("z", 6, 2), ("y", 3, 0), ("x", 2, 0)]


def test_reset_forgets_everything() -> None:
    sketch = fed(["a", "b"], 1)
    sketch.reset()
    assert (sketch.total, sketch.top(), len(sketch)) == (0, [], 0)
