"""W3C Trace Context (https://www.w3.org/TR/trace-context/): traceparent in, traceparent out.

evenflow is a hop in the trace: a request that brings a valid `traceparent` keeps its trace id
and gets a new span id (evenflow's span, whose parent is the client's); one without starts a
new trace. `tracestate` passes through untouched. Ids are slices of random digits drawn in
batches.
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


class RandomHex:
    """Random lowercase hex digits, drawn a batch at a time: one draw and one hexlify per
    DRAW_BYTES, then each id is a slice. Ids need to be unique and unpredictable enough for
    tracing, not secret (W3C Trace Context §3.2.2.3 asks for randomness). Drawn from the OS:
    random.randbytes builds its bytes through a big integer, ~40,000 instructions a draw
    (bench/instructions.py), where urandom is one getrandom call."""

    DRAW_BYTES = 1536  # 64 new traces (trace id + span id: 48 digits) per draw

    __slots__ = ("digits", "at")

    def __init__(self) -> None:
        self.digits = b""
        self.at = 0

    def take(self, width: int) -> bytes:
        at = self.at
        end = at + width
        if end > len(self.digits):
            self.digits = hexlify(urandom(self.DRAW_BYTES))
            at = 0
            end = width
        self.at = end
        return self.digits[at:end]


_RANDOM: Final = RandomHex()


def new_trace() -> tuple[bytes, bytes]:
    """A trace that starts here: (trace id, the traceparent of evenflow's span, sampled)."""
    trace_id = _nonzero(_RANDOM.take(32), _ZERO_TRACE)
    span_id = _nonzero(_RANDOM.take(16), _ZERO_SPAN)
    return trace_id, b"00-%s-%s-01" % (trace_id, span_id)  # compiled: one copy, no tuple


def new_span_id() -> bytes:
    return _nonzero(_RANDOM.take(16), _ZERO_SPAN)


def _nonzero(digits: bytes, zero: bytes) -> bytes:
    # an all-zero id is invalid (§3.2.2.3, §3.2.2.4): one chance in 2**64 or 2**128
    return zero[:-1] + b"1" if digits == zero else digits


def traceparent(trace_id: bytes, span_id: bytes, flags: bytes) -> bytes:
    return b"00-%s-%s-%s" % (trace_id, span_id, flags)
