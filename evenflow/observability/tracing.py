"""W3C Trace Context (https://www.w3.org/TR/trace-context/): traceparent in, traceparent out.

evenflow is a hop in the trace: a request that brings a valid `traceparent` keeps its trace id
and gets a new span id (evenflow's span, whose parent is the client's); one without starts a
new trace. `tracestate` passes through untouched. Ids come from a PRNG, formatted once.
"""

from __future__ import annotations

import re
from random import getrandbits

# version 00 (and later versions read as 00: their first four fields keep this layout)
_TRACEPARENT = re.compile(rb"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16


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


def new_trace() -> tuple[bytes, bytes]:
    """A trace that starts here: (trace id, the traceparent of evenflow's span, sampled)."""
    trace_id = b"%032x" % (getrandbits(128) or 1)
    return trace_id, b"00-%s-%016x-01" % (trace_id, getrandbits(64) or 1)


def new_span_id() -> bytes:
    return b"%016x" % (getrandbits(64) or 1)


def traceparent(trace_id: bytes, span_id: bytes, flags: bytes) -> bytes:
    return b"00-%s-%s-%s" % (trace_id, span_id, flags)
