"""The floods an HTTP/2 client can send, recognised from frame headers before h2 parses them.

Sans-IO: `FrameGuard.feed` reads the 9-byte frame headers of what a client sent (payloads are
skipped, not copied) and says when a connection has crossed a limit: RST_STREAM frames per
second (rapid reset, CVE-2023-44487), PING/SETTINGS/PRIORITY/unknown/empty frames per second
(CVE-2019-9512, 9515, 9518), CONTINUATION frames or bytes in one header block (CVE-2024-27316).
h2 checks the rest of the protocol itself. `Http2Stats` is what a listener's metrics show.
"""

from __future__ import annotations

from typing import Final

_PREFACE_BYTES: Final = 24  # RFC 9113 §3.4: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", checked by h2

_DATA: Final = 0
_HEADERS: Final = 1
_PRIORITY: Final = 2
_RST_STREAM: Final = 3
_SETTINGS: Final = 4
_PING: Final = 6
_WINDOW_UPDATE: Final = 8
_CONTINUATION: Final = 9
_END_STREAM: Final = 0x1
_ACK: Final = 0x1
_END_HEADERS: Final = 0x4

# Frames that cost the server work and carry no request: counted against the control budget
_CONTROL_NAMES: Final = {_PRIORITY: "priority", _SETTINGS: "settings", _PING: "ping"}

# reasons a connection is closed for abuse (the metrics' labels)
RAPID_RESET: Final = "rapid_reset"
CONTINUATION_FLOOD: Final = "continuation_flood"
HEADER_BLOCK_TOO_LARGE: Final = "header_block_too_large"


class GuardLimits:
    __slots__ = ("resets_per_s", "control_per_s", "continuations", "header_block_bytes")

    def __init__(
        self, resets_per_s: int, control_per_s: int, continuations: int, header_block_bytes: int
    ) -> None:
        self.resets_per_s = resets_per_s
        self.control_per_s = control_per_s
        self.continuations = continuations  # CONTINUATION frames in one header block
        self.header_block_bytes = header_block_bytes  # encoded bytes of one header block


class FrameGuard:
    """Counts one client connection's frames; `feed` returns why to close it, or None."""

    __slots__ = (
        "limits",
        "block_since",
        "_skip",
        "_partial",
        "_window_start",
        "_resets",
        "_control",
        "_continuations",
        "_block_bytes",
    )

    def __init__(self, limits: GuardLimits, preface: bool = True) -> None:
        self.limits = limits
        self.block_since: float | None = None  # when the open header block began, if one is
        self._skip = _PREFACE_BYTES if preface else 0  # bytes to pass over (preface, payload)
        self._partial = b""  # a frame header cut by the end of a read (under 9 bytes)
        self._window_start = 0.0
        self._resets = 0  # RST_STREAM frames in the current one-second window
        self._control = 0  # control frames in the current one-second window
        self._continuations = 0  # CONTINUATION frames of the open header block
        self._block_bytes = 0  # encoded bytes of the open header block

    def feed(self, data: bytes, now: float) -> str | None:
        """Scan what the client sent at `now` (seconds, monotonic); a reason past a limit."""
        if now - self._window_start >= 1.0:
            # fixed one-second windows: a burst straddling two windows gets at most twice the
            # rate, which still bounds the work a client can cause
            self._window_start = now
            self._resets = 0
            self._control = 0
        size = len(data)
        at = min(self._skip, size)
        self._skip -= at
        if self._partial and at < size:
            # a frame header cut by the end of the previous read (no payload was pending)
            head = self._partial + data[at : at + 9 - len(self._partial)]
            at += 9 - len(self._partial)
            if len(head) < 9:
                self._partial = head
                return None
            self._partial = b""
            reason = self._frame(head, 0, now)
            if reason is not None:
                return reason
            at += int.from_bytes(head[0:3])
        while at + 9 <= size:
            reason = self._frame(data, at, now)
            if reason is not None:
                return reason
            at += 9 + int.from_bytes(data[at : at + 3])
        if at < size:
            self._partial = data[at:]
        elif at > size:
            self._skip = at - size  # the rest of a payload comes in the next reads
        return None

    def _frame(self, data: bytes, at: int, now: float) -> str | None:
        kind = data[at + 3]
        flags = data[at + 4]
        length = int.from_bytes(data[at : at + 3])
        limits = self.limits
        if kind == _CONTINUATION:
            self._continuations += 1
            self._block_bytes += length
            if self._continuations > limits.continuations:
                return CONTINUATION_FLOOD
            if self._block_bytes > limits.header_block_bytes:
                return HEADER_BLOCK_TOO_LARGE
            if flags & _END_HEADERS:
                self.block_since = None
            return None
        if kind == _HEADERS:
            if length > limits.header_block_bytes:
                return HEADER_BLOCK_TOO_LARGE
            if not flags & _END_HEADERS:
                self.block_since = now
                self._continuations = 0
                self._block_bytes = length
            return None
        if kind == _DATA:
            if length or flags & _END_STREAM:
                return None
            name = "empty_data"  # carries nothing, ends nothing: pure cost (CVE-2019-9518)
        elif kind == _RST_STREAM:
            self._resets += 1
            return RAPID_RESET if self._resets > limits.resets_per_s else None
        elif kind == _WINDOW_UPDATE:
            return None  # needed for every response; h2 refuses the zero increments
        elif kind in _CONTROL_NAMES:
            if kind != _PRIORITY and flags & _ACK:
                return None  # an answer to evenflow's own PING or SETTINGS
            name = _CONTROL_NAMES[kind]
        else:
            name = "unknown_frame"  # ignored by h2 (RFC 9113 §4.1) but still read
        self._control += 1
        return f"{name}_flood" if self._control > limits.control_per_s else None


class Http2Stats:
    """One listener's HTTP/2 counters (read by observability/metrics.py when scraped)."""

    __slots__ = ("connections", "streams", "malformed", "refused", "protocol_errors", "abuse")

    def __init__(self) -> None:
        self.connections = 0  # client connections that spoke HTTP/2
        self.streams = 0  # requests received over them
        self.malformed = 0  # streams reset for a malformed request (PROTOCOL_ERROR)
        self.refused = 0  # streams over MAX_CONCURRENT_STREAMS, reset with REFUSED_STREAM
        self.protocol_errors = 0  # connections closed for an HTTP/2 protocol error
        self.abuse: dict[str, int] = {}  # reason → connections closed with ENHANCE_YOUR_CALM
