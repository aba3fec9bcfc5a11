"""Event-loop lag: how late a periodic timer fires, measured while the admin API runs.

The data plane and the admin API share one loop, so a late timer is the latency every
connection just paid; /live reports it. Owns one timer handle, nothing else.
"""

from __future__ import annotations

import asyncio
from collections import deque

PERIOD_S = 0.1
# Samples kept for the worst recent lag: at one per PERIOD_S (or fewer when late), about the
# last minute; a probe polling every few seconds would miss a spike that `last_s` alone shows.
WINDOW_SAMPLES = 600


class LoopLag:
    """Re-arms a PERIOD_S timer and records how far past its due time each one fired."""

    def __init__(self) -> None:
        self.last_s = 0.0
        self._recent: deque[float] = deque(maxlen=WINDOW_SAMPLES)
        self._due = 0.0
        self._handle: asyncio.TimerHandle | None = None

    @property
    def worst_s(self) -> float:
        """The largest lag of about the last minute (0 before the first sample)."""
        return max(self._recent, default=0.0)

    def start(self) -> None:
        """Start measuring on the running loop."""
        self._arm(asyncio.get_running_loop())

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        self._due = loop.time() + PERIOD_S
        self._handle = loop.call_later(PERIOD_S, self._on_timer, loop)

    def _on_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        # asyncio may run a timer up to its clock resolution early: that is no lag
        self.last_s = max(0.0, loop.time() - self._due)
        self._recent.append(self.last_s)
        self._arm(loop)
