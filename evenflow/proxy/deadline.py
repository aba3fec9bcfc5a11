"""One timer per connection, re-armed lazily.

Moving a deadline later is one float store; the pending timer notices when it fires and sleeps
again. Only a deadline earlier than the pending timer schedules a new one, so a busy keep-alive
connection creates a timer handle every few seconds, not one per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Deadline:
    __slots__ = ("_loop", "_on_expiry", "_at", "_handle", "_handle_at")

    def __init__(self, loop: asyncio.AbstractEventLoop, on_expiry: Callable[[], None]) -> None:
        self._loop = loop
        self._on_expiry = on_expiry
        self._at = 0.0  # 0: not armed
        self._handle: asyncio.TimerHandle | None = None
        self._handle_at = 0.0

    def arm(self, delay_s: float) -> None:
        """Expire `delay_s` seconds from now, replacing any earlier setting."""
        at = self._loop.time() + delay_s
        self._at = at
        if self._handle is None or at < self._handle_at:
            if self._handle is not None:
                self._handle.cancel()
            self._handle_at = at
            self._handle = self._loop.call_at(at, self._fire)

    def disarm(self) -> None:
        self._at = 0.0

    @property
    def armed(self) -> bool:
        return self._at != 0.0

    def cancel(self) -> None:
        """Disarm and drop the pending timer (the connection is going away)."""
        self._at = 0.0
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        at = self._at
        if at == 0.0:
            return
        if self._loop.time() < at:
            self._handle_at = at
            self._handle = self._loop.call_at(at, self._fire)
            return
        self._at = 0.0
        self._on_expiry()
