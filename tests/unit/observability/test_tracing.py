"""W3C Trace Context (https://www.w3.org/TR/trace-context/ §3.2) as evenflow reads and writes
`traceparent`: what continues a trace, what starts a new one, and the ids it makes."""

from __future__ import annotations

import re

import pytest

from evenflow.observability import tracing
from evenflow.observability.tracing import (
    new_span_id,
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


def test_new_ids_are_lowercase_hex_of_the_right_length_and_differ() -> None:
    traces = {new_trace()[0] for _ in range(100)}
    spans = {new_span_id() for _ in range(100)}
    assert len(traces) == 100 and len(spans) == 100
    assert all(re.fullmatch(rb"[0-9a-f]{32}", t) for t in traces)
    assert all(re.fullmatch(rb"[0-9a-f]{16}", s) for s in spans)


def test_a_new_trace_is_a_valid_sampled_traceparent_with_its_trace_id() -> None:
    started = [new_trace() for _ in range(100)]
    assert len({trace_id for trace_id, _ in started}) == 100
    for trace_id, header in started:
        parsed = parse_traceparent(header)
        assert parsed is not None and parsed[0] == trace_id and parsed[2] == b"01"
        assert re.fullmatch(rb"00-[0-9a-f]{32}-[0-9a-f]{16}-01", header)


def test_new_ids_are_never_all_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    # an all-zero id is invalid (§3.2.2.3, §3.2.2.4): a downstream service would drop the trace
    monkeypatch.setattr(tracing, "urandom", lambda n: bytes(n))
    shared = tracing._RANDOM
    shared.at = len(shared.digits)  # the next id draws: zeros
    try:
        assert new_trace()[0] == b"0" * 31 + b"1"
        assert new_span_id() == b"0" * 15 + b"1"
        assert parse_traceparent(traceparent(new_trace()[0], new_span_id(), b"01")) is not None
        assert parse_traceparent(new_trace()[1]) is not None
    finally:
        shared.at = len(shared.digits)  # no zeros left for the next test


def test_ids_are_consecutive_slices_of_one_draw_then_of_the_next() -> None:
    draws = iter([bytes.fromhex("ab" * 1536), bytes.fromhex("cd" * 1536)])
    ids = tracing.RandomHex()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tracing, "urandom", lambda n: next(draws))
        taken = [ids.take(48) for _ in range(65)]  # a draw is 3,072 digits: 64 of 48
    assert taken[0] == b"ab" * 24 and taken[63] == b"ab" * 24
    assert taken[64] == b"cd" * 24


def test_evenflow_span_continues_the_clients_trace() -> None:
    parsed = parse_traceparent(b"00-" + TRACE + b"-" + SPAN + b"-01")
    assert parsed is not None
    trace_id, _, flags = parsed
    out = traceparent(trace_id, new_span_id(), flags)
    again = parse_traceparent(out)
    assert again is not None
    assert again[0] == TRACE and again[1] != SPAN and again[2] == b"01"
    assert out.startswith(b"00-")  # evenflow writes the version it speaks
