"""A connection's timeouts, checked every period instead of re-armed on every event.

Re-arming a timer per request and per read costs a call and a clock read each time. Instead each
connection gets one repeating check that compares what changed since the previous check (bytes
read, requests begun) with the state it is in. A timeout of T therefore fires between T and
T plus one period after the last progress when T is a whole number of periods (never before T,
and at most two periods after it otherwise); the period is the connection's shortest timeout,
and the data path pays nothing for it.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable


class Watchdog:
    __slots__ = ("_loop", "period_s", "_check", "_handle")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, period_s: float, check: Callable[[], bool]
    ) -> None:
        self._loop = loop
        self.period_s = period_s
        self._check = check  # called each period; returning False stops the watchdog
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self._handle is None:
            self._handle = self._loop.call_later(self.period_s, self._fire)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        if self._check():
            self._handle = self._loop.call_later(self.period_s, self._fire)


def periods(timeout_s: float, period_s: float) -> int:
    """How many whole check periods cover `timeout_s` (at least one): rounded up, so that a
    timeout never acts before its value (4 s checked every 3 s is two periods, not one)."""
    return max(1, math.ceil(timeout_s / period_s - 1e-9))
