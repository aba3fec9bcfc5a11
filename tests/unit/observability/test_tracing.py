"""W3C Trace Context (https://www.w3.org/TR/trace-context/ §3.2) as evenflow reads and writes
`traceparent`: what continues a trace, what starts a new one, and the ids it makes."""

from __future__ import annotations

import re

import pytest

from evenflow.observability import tracing
from evenflow.observability.tracing import (
    continued_trace,
    new_trace,
    parse_traceparent,
    traceparent,
)

TRACE = b"4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = b"00f067aa0ba902b7"


@pytest.mark.parametrize(
    ("header", "flags"),
    [
        (b"00-" + TRACE + b"-" + SPAN + b"-01", b"01"),
        (b"00-" + TRACE + b"-" + SPAN + b"-00", b"00"),  # not sampled: kept as sent
        (b"00-" + TRACE + b"-" + SPAN + b"-09", b"09"),  # unknown flag bits pass through
        (b"  00-" + TRACE + b"-" + SPAN + b"-01 ", b"01"),  # optional whitespace around
        # §3.2.4: a later version is read by its first four fields; more may follow a dash
        (b"01-" + TRACE + b"-" + SPAN + b"-01", b"01"),
        (b"cc-" + TRACE + b"-" + SPAN + b"-01-what-the-future-holds", b"01"),
    ],
)
def test_a_valid_traceparent_continues_the_trace(header: bytes, flags: bytes) -> None:
    assert parse_traceparent(header) == (TRACE, SPAN, flags)


@pytest.mark.parametrize(
    "header",
    [
        b"ff-" + TRACE + b"-" + SPAN + b"-01",  # version ff is forbidden
        b"00-" + b"0" * 32 + b"-" + SPAN + b"-01",  # all-zero trace id
        b"00-" + TRACE + b"-" + b"0" * 16 + b"-01",  # all-zero parent id
        b"00-" + TRACE.upper() + b"-" + SPAN + b"-01",  # hex is lowercase only
        b"00-" + TRACE + b"-" + SPAN.upper() + b"-01",
        b"00-" + TRACE + b"-" + SPAN + b"-0A",
        b"0A-" + TRACE + b"-" + SPAN + b"-01",
        b"00-" + TRACE + b"-" + SPAN + b"-01-extra",  # version 00 has exactly four fields
        b"00-" + TRACE + b"-" + SPAN + b"-01-",
        b"01-" + TRACE + b"-" + SPAN + b"-01extra",  # a later version: a dash after flags
        b"00-" + TRACE[:-1] + b"-" + SPAN + b"-01",  # ids of the wrong length
        b"00-" + TRACE + b"0-" + SPAN + b"-01",
        b"00-" + TRACE + b"-" + SPAN[:-1] + b"-01",
        b"00-" + TRACE + b"-" + SPAN + b"-1",
        b"0-" + TRACE + b"-" + SPAN + b"-01",
        b"00_" + TRACE + b"_" + SPAN + b"_01",
        b"00-" + TRACE.replace(b"f", b"g") + b"-" + SPAN + b"-01",  # not hex
        b"",
        b"garbage",
    ],
)
def test_an_invalid_traceparent_is_ignored(header: bytes) -> None:
    assert parse_traceparent(header) is None


def test_new_traces_are_lowercase_hex_of_the_right_length_and_differ() -> None:
    started = [new_trace() for _ in range(300)]  # several batches
    assert len({trace_id for trace_id, _ in started}) == 300
    assert len({span for _, span in started}) == 300
    for trace_id, span in started:
        assert re.fullmatch(rb"[0-9a-f]{32}", trace_id)
        assert re.fullmatch(rb"-[0-9a-f]{16}", span)


def test_a_new_trace_is_a_valid_sampled_traceparent_with_its_trace_id() -> None:
    for _ in range(100):
        trace_id, span = new_trace()
        header = traceparent(trace_id, span, tracing.SAMPLED)
        assert re.fullmatch(rb"00-[0-9a-f]{32}-[0-9a-f]{16}-01", header)
        assert parse_traceparent(header) == (trace_id, span[1:], b"01")


def test_an_all_zero_id_is_never_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    # an all-zero id is invalid (§3.2.2.3, §3.2.2.4): a downstream service would drop the trace
    draws = [
        b"\xab" * 500 + b"\x00" * 16 + b"\xab" * 508,  # an all-zero trace id among others
        b"\x12" * 1024,
        b"\xcd" * 200 + b"\x00" * 8 + b"\xcd" * 304,  # and a span id
        b"\x34" * 512,
    ]
    monkeypatch.setattr(tracing, "urandom", lambda n: draws.pop(0))
    ids = tracing.TraceIds()
    assert ids.trace_id() == b"12" * 16  # the draw with zeros was thrown away
    assert ids.span_part() == b"-" + b"34" * 8
    assert not draws


def test_ids_are_consecutive_slices_of_one_draw_then_of_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fills = iter([0x1B, 0x2C, 0x3D, 0x4E])
    monkeypatch.setattr(tracing, "urandom", lambda n: bytes([next(fills)]) * n)
    ids = tracing.TraceIds()
    traces = [ids.trace_id() for _ in range(65)]  # a draw holds 64
    assert traces[0] == traces[63] == b"1b" * 16 and traces[64] == b"2c" * 16
    spans = [ids.span_part() for _ in range(65)]
    assert spans[0] == spans[63] == b"-" + b"3d" * 8 and spans[64] == b"-" + b"4e" * 8


@pytest.mark.parametrize("flags", [b"01", b"00", b"09"])
def test_evenflow_span_continues_the_clients_trace(flags: bytes) -> None:
    trace_id, span, flags_part = continued_trace(b"00-" + TRACE + b"-" + SPAN + b"-" + flags)
    assert trace_id == TRACE and flags_part == b"-" + flags  # the client's flags kept
    header = traceparent(trace_id, span, flags_part)
    assert parse_traceparent(header) == (TRACE, span[1:], flags) and span[1:] != SPAN
    assert header.startswith(b"00-")  # evenflow writes the version it speaks


@pytest.mark.parametrize("header", [b"", b"garbage", b"ff-" + TRACE + b"-" + SPAN + b"-01"])
def test_an_invalid_traceparent_starts_a_new_trace(header: bytes) -> None:
    trace_id, span, flags_part = continued_trace(header)
    assert trace_id != TRACE and re.fullmatch(rb"[0-9a-f]{32}", trace_id)
    assert re.fullmatch(rb"-[0-9a-f]{16}", span) and flags_part == b"-01"
