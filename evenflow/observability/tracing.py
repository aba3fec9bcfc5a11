"""W3C Trace Context (https://www.w3.org/TR/trace-context/): traceparent in, traceparent out.

evenflow is a hop in the trace: a request that brings a valid `traceparent` keeps its trace id
and gets a new span id (evenflow's span, whose parent is the client's); one without starts a
new trace. `tracestate` passes through untouched.

A traceparent is `00-<trace id>-<span id>-<flags>`, written in the pieces the request head is
joined from (trace id, `-<span id>`, `-<flags>`), never formatted on its own. The ids are
slices of random digits drawn in batches (TraceIds): a new trace costs two slices.
"""

from __future__ import annotations

import re
from binascii import hexlify
from os import urandom
from typing import Final

# version 00 (and later versions read as 00: their first four fields keep this layout)
_TRACEPARENT: Final = re.compile(
    rb"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$"
)
_ZERO_TRACE: Final = b"0" * 32
_ZERO_SPAN: Final = b"0" * 16
# the all-zero ids as the random bytes they are drawn as, before hexlify writes them
_ZERO_TRACE_BYTES: Final = bytes(16)
_ZERO_SPAN_BYTES: Final = bytes(8)
SAMPLED: Final = b"-01"  # the flags of a trace that starts here, as written after the span
TRACE_ID_DIGITS: Final = 32
SPAN_PART_BYTES: Final = 17  # `-<span id>`


def parse_traceparent(value: bytes) -> tuple[bytes, bytes, bytes] | None:
    """(trace id, parent span id, flags) of a valid header, else None (a new trace starts)."""
    match = _TRACEPARENT.match(value.strip())
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == b"ff" or (version == b"00" and rest):
        return None
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return trace_id, span_id, flags


def traceparent(trace_id: bytes, span_part: bytes, flags_part: bytes) -> bytes:
    """The header's value: version 00 (the one evenflow speaks), the trace id, then the parts
    `-<span id>` and `-<flags>`."""
    return b"00-" + trace_id + span_part + flags_part


class TraceIds:
    """Random ids, drawn a batch of BATCH of each at a time from the OS (one getrandom call a
    batch; random.randbytes builds its bytes through a big integer, ~40,000 instructions a
    draw, bench/instructions.py). Ids need to be unique and unpredictable enough for tracing,
    not secret (W3C Trace Context §3.2.2.3 asks for randomness).

    Trace ids are 32 digits (16 random bytes); span ids come as `-<16 digits>` (hexlify puts
    the dash between every 8 random bytes)."""

    BATCH = 64

    __slots__ = ("trace_ids", "trace_at", "span_parts", "span_at")

    def __init__(self) -> None:
        self.trace_ids = self.span_parts = b""
        self.trace_at = self.span_at = 0

    def trace_id(self) -> bytes:
        at = self.trace_at
        end = at + TRACE_ID_DIGITS
        if end > len(self.trace_ids):
            self.trace_ids = hexlify(_draw(TRACE_ID_DIGITS // 2 * self.BATCH, _ZERO_TRACE_BYTES))
            at, end = 0, TRACE_ID_DIGITS
        self.trace_at = end
        return self.trace_ids[at:end]

    def span_part(self) -> bytes:
        """`-<span id>`: the part of a traceparent between the trace id and the flags."""
        at = self.span_at
        end = at + SPAN_PART_BYTES
        if end > len(self.span_parts):
            self.span_parts = b"-" + hexlify(_draw(8 * self.BATCH, _ZERO_SPAN_BYTES), b"-", 8)
            at, end = 0, SPAN_PART_BYTES
        self.span_at = end
        return self.span_parts[at:end]


def _draw(size: int, zero_id: bytes) -> bytes:
    """`size` random bytes in which no id (a run of len(zero_id) bytes) is all zeros: such an
    id is invalid (§3.2.2.3, §3.2.2.4). One search a batch, where comparing each id costs
    more: a draw with that many zero bytes in a row anywhere (a chance in 2**53 or less) is
    drawn again."""
    while True:
        drawn = urandom(size)
        if zero_id not in drawn:
            return drawn


_IDS: Final = TraceIds()


def new_trace() -> tuple[bytes, bytes]:
    """A trace that starts here: its trace id, and evenflow's span as `-<span id>` (sampled:
    its flags are SAMPLED)."""
    return _IDS.trace_id(), _IDS.span_part()


def continued_trace(value: bytes) -> tuple[bytes, bytes, bytes]:
    """The client's trace: its trace id, evenflow's span (a child of the client's) as
    `-<span id>`, the client's flags as `-<flags>`; a new, sampled trace when the header is
    not a valid traceparent."""
    parsed = parse_traceparent(value)
    if parsed is None:
        trace_id, span_part = new_trace()
        return trace_id, span_part, SAMPLED
    trace_id, _, flags = parsed
    return trace_id, _IDS.span_part(), SAMPLED if flags == b"01" else b"-" + flags
