"""The heaviest keys of a stream in bounded memory: the space-saving sketch.

Metwally, Agrawal, El Abbadi (2005). It keeps k counters; a key not counted yet takes over the
smallest counter and inherits its count (the `error` bound). Every key whose true count is over
total/k is guaranteed to be among the counters, so a hot key or a NAT address carrying a large
share of a pool's traffic always shows up, whatever the number of distinct keys.
"""

from __future__ import annotations


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

    def top(self, n: int = 10) -> list[tuple[str, int, int]]:
        """(key, estimated count, maximum overestimate), heaviest first."""
        ranked = sorted(self._counts.items(), key=lambda item: -item[1])[:n]
        return [(key, count, self._errors[key]) for key, count in ranked]

    def reset(self) -> None:
        self.total = 0
        self._counts.clear()
        self._errors.clear()
