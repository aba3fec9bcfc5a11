"""Rise/fall: a backend flips only after N probe results in a row agree (sans-IO).

The flip table, for a backend that is healthy (rise R, fall F):
    pass                         -> stays healthy, failure streak reset
    fail, streak < F             -> stays healthy ("changing": probed at the fast interval)
    fail, streak reaches F       -> flips to unhealthy, reason names the last failure
and symmetrically for an unhealthy one with R passes. Only flips are logged, never a probe.
"""

from __future__ import annotations


class Flip:
    """A health transition: where to, and the sentence the log and the admin API show."""

    __slots__ = ("healthy", "reason")

    def __init__(self, healthy: bool, reason: str) -> None:
        self.healthy = healthy
        self.reason = reason

    def __repr__(self) -> str:
        return f"Flip({'healthy' if self.healthy else 'unhealthy'}: {self.reason})"


class RiseFall:
    """Counts consecutive probe results for one backend and decides flips."""

    __slots__ = ("rise", "fall", "healthy", "streak")

    def __init__(self, rise: int, fall: int, healthy: bool = True) -> None:
        if rise < 1 or fall < 1:
            raise ValueError("rise and fall must be at least 1")
        self.rise = rise
        self.fall = fall
        self.healthy = healthy
        self.streak = 0  # results in a row that disagree with the current state

    @property
    def changing(self) -> bool:
        """A flip is under way (some results disagree): probe faster to settle it."""
        return self.streak > 0

    def record(self, ok: bool, detail: str = "") -> Flip | None:
        """Count one probe result; a Flip when this result completes a run of rise or fall."""
        if ok == self.healthy:
            self.streak = 0
            return None
        self.streak += 1
        needed = self.rise if ok else self.fall
        if self.streak < needed:
            return None
        self.healthy = ok
        self.streak = 0
        if ok:
            return Flip(True, f"{needed} probe{'s' if needed > 1 else ''} passed")
        failures = f"{needed} probe failure{'s' if needed > 1 else ''}"
        return Flip(False, f"{failures}: {detail}" if detail else failures)

    def force(self, healthy: bool) -> None:
        """Set the state outright (initial state, or an operator's override)."""
        self.healthy = healthy
        self.streak = 0
