"""The flood guard: frame headers scanned from what a client sends, limits per second and per
header block. Sans-IO: bytes and a clock value in, a reason or None out, whole or byte by byte.
"""

from __future__ import annotations

import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from evenflow.proxy.http2.guard import FrameGuard, GuardLimits

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def guard(
    resets: int = 5, control: int = 5, continuations: int = 3, block: int = 1000
) -> FrameGuard:
    return FrameGuard(GuardLimits(resets, control, continuations, block))


def headers(stream_id: int, size: int = 10, end_headers: bool = True) -> bytes:
    frame = HeadersFrame(stream_id, data=b"h" * size)
    if end_headers:
        frame.flags.add("END_HEADERS")
    return frame.serialize()


def continuation(stream_id: int, size: int = 10, end: bool = False) -> bytes:
    frame = ContinuationFrame(stream_id, data=b"c" * size)
    if end:
        frame.flags.add("END_HEADERS")
    return frame.serialize()


def rst(stream_id: int) -> bytes:
    return RstStreamFrame(stream_id, error_code=8).serialize()


def feed(g: FrameGuard, data: bytes, now: float = 0.0, byte_by_byte: bool = False) -> str | None:
    if not byte_by_byte:
        return g.feed(data, now)
    for i in range(len(data)):
        reason = g.feed(data[i : i + 1], now)
        if reason is not None:
            return reason
    return None


@pytest.mark.parametrize("byte_by_byte", [False, True])
def test_ordinary_traffic_passes(byte_by_byte: bool) -> None:
    start = PREFACE + SettingsFrame(0, settings={4: 65535}).serialize()
    requests = (
        SettingsFrame(0, flags=["ACK"]).serialize()
        + headers(1, 200)
        + DataFrame(1, data=b"x" * 5000, flags=["END_STREAM"]).serialize()
        + WindowUpdateFrame(0, window_increment=100).serialize()
        + PingFrame(0, flags=["ACK"], opaque_data=b"12345678").serialize()
    )
    g = guard()
    assert feed(g, start, byte_by_byte=byte_by_byte) is None
    for _ in range(20):  # acks, windows and requests are never counted
        assert feed(g, requests, byte_by_byte=byte_by_byte) is None


@pytest.mark.parametrize("byte_by_byte", [False, True])
def test_rapid_reset_is_caught_past_the_limit_per_second(byte_by_byte: bool) -> None:
    g = guard(resets=5)
    feed(g, PREFACE)
    flood = b"".join(headers(i) + rst(i) for i in range(1, 11, 2))  # 5 resets: at the limit
    assert feed(g, flood, 0.1, byte_by_byte) is None
    assert feed(g, headers(11) + rst(11), 0.2, byte_by_byte) == "rapid_reset"


def test_the_reset_budget_renews_every_second() -> None:
    g = guard(resets=5)
    feed(g, PREFACE)
    for second in range(10):
        assert g.feed(b"".join(rst(i) for i in range(1, 11, 2)), float(second)) is None


@pytest.mark.parametrize("byte_by_byte", [False, True])
def test_continuation_flood_is_caught(byte_by_byte: bool) -> None:
    g = guard(continuations=3)
    feed(g, PREFACE)
    opened = headers(1, end_headers=False) + continuation(1) * 3
    assert feed(g, opened, 0.0, byte_by_byte) is None
    assert g.block_since == 0.0  # a header block is open
    assert feed(g, continuation(1), 0.0, byte_by_byte) == "continuation_flood"


def test_a_header_block_ends_with_end_headers() -> None:
    g = guard(continuations=3)
    feed(g, PREFACE)
    for i in range(1, 21, 2):  # many blocks, each within the limit
        block = headers(i, end_headers=False) + continuation(i) * 2 + continuation(i, end=True)
        assert g.feed(block, 5.0) is None
        assert g.block_since is None


def test_header_block_bytes_are_capped_across_frames() -> None:
    g = guard(continuations=10, block=1000)
    feed(g, PREFACE)
    assert g.feed(headers(1, 400, end_headers=False) + continuation(1, 500), 0) is None
    assert g.feed(continuation(1, 200), 0) == "header_block_too_large"
    assert guard(block=1000).feed(PREFACE + headers(1, 1001), 0) == "header_block_too_large"


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (PingFrame(0, opaque_data=b"12345678").serialize(), "ping_flood"),
        (SettingsFrame(0).serialize(), "settings_flood"),
        (PriorityFrame(1, depends_on=0, stream_weight=10).serialize(), "priority_flood"),
        (DataFrame(1).serialize(), "empty_data_flood"),
        (b"\x00\x00\x01\x20\x00\x00\x00\x00\x00x", "unknown_frame_flood"),
    ],
    ids=["ping", "settings", "priority", "empty data", "unknown type"],
)
def test_control_floods_are_caught(frame: bytes, reason: str) -> None:
    g = guard(control=5)
    feed(g, PREFACE)
    assert g.feed(frame * 5, 0.5) is None
    assert g.feed(frame, 0.6) == reason
    assert guard(control=5).feed(PREFACE + frame * 5, 0.0) is None


def test_an_empty_data_frame_that_ends_the_stream_is_no_flood() -> None:
    g = guard(control=1)
    feed(g, PREFACE)
    assert g.feed(DataFrame(1, flags=["END_STREAM"]).serialize() * 10, 0) is None


def test_payloads_spanning_reads_are_skipped_exactly() -> None:
    g = guard(resets=2)
    feed(g, PREFACE)
    big = DataFrame(1, data=b"\x03" * 100_000).serialize()  # payload bytes look like RST types
    data = big + rst(1) + rst(3)
    for at in range(0, len(data), 7777):
        assert g.feed(data[at : at + 7777], 0) is None
    assert g.feed(rst(5), 0) == "rapid_reset"
