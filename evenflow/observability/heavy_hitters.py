"""The heaviest keys of a stream in bounded memory: the space-saving sketch.

Metwally, Agrawal, El Abbadi (2005). It keeps k counters; a key not counted yet takes over the
smallest counter and inherits its count (the `error` bound). Every key whose true count is over
total/k is guaranteed to be among the counters, so a hot key or a NAT address carrying a large
share of a pool's traffic always shows up, whatever the number of distinct keys.

Sketches merge (Agarwal et al. 2012, "Mergeable summaries"): a key absent from a full sketch
was seen there at most `floor` times, so summing counts, with `floor` for an absence, keeps every
estimate an upper bound and `error` the most it overestimates. `merged_top` is how a view covers
the current window and the one before it without ever starting from nothing.
"""

from __future__ import annotations

from collections.abc import Sequence


class SpaceSaving:
    __slots__ = ("capacity", "total", "_counts", "_errors")

    def __init__(self, capacity: int = 32) -> None:
        self.capacity = capacity
        self.total = 0
        self._counts: dict[str, int] = {}
        self._errors: dict[str, int] = {}

    def offer(self, key: str) -> None:
        self.total += 1
        counts = self._counts
        count = counts.get(key)
        if count is not None:
            counts[key] = count + 1
            return
        if len(counts) < self.capacity:
            counts[key] = 1
            self._errors[key] = 0
            return
        # replace the smallest counter: O(k), k is small and this is the rare path for hot keys
        victim = min(counts, key=counts.__getitem__)
        floor = counts.pop(victim)
        del self._errors[victim]
        counts[key] = floor + 1
        self._errors[key] = floor

    @property
    def floor(self) -> int:
        """The most a key not counted here was seen: the smallest counter once the sketch is
        full, 0 before (every key seen so far has its own counter)."""
        counts = self._counts
        return min(counts.values()) if len(counts) >= self.capacity else 0

    def __len__(self) -> int:
        """Keys counted (at most `capacity`)."""
        return len(self._counts)

    def top(self, n: int = 10) -> list[tuple[str, int, int]]:
        """(key, estimated count, maximum overestimate), heaviest first."""
        ranked = sorted(self._counts.items(), key=lambda item: -item[1])[:n]
        return [(key, count, self._errors[key]) for key, count in ranked]

    def reset(self) -> None:
        self.total = 0
        self._counts.clear()
        self._errors.clear()


def merged_top(sketches: Sequence[SpaceSaving], n: int = 10) -> list[tuple[str, int, int]]:
    """`top(n)` of the stream the sketches counted between them: (key, estimated count, maximum
    overestimate), heaviest first. Counts stay upper bounds: a sketch that lacks a key adds its
    `floor` to both the count and the overestimate."""
    floors = [s.floor for s in sketches]
    merged: dict[str, tuple[int, int]] = {}
    for key in {key for s in sketches for key in s._counts}:
        count = error = 0
        for sketch, floor in zip(sketches, floors, strict=True):
            own = sketch._counts.get(key)
            if own is None:
                count += floor
                error += floor
            else:
                count += own
                error += sketch._errors[key]
        merged[key] = (count, error)
    # ties broken by key, so the view does not shuffle between two reads
    ranked = sorted(merged.items(), key=lambda item: (-item[1][0], item[0]))[:n]
    return [(key, count, error) for key, (count, error) in ranked]
