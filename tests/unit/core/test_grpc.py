"""gRPC wire details: grpc-timeout values, message framing, statuses for HTTP errors."""

from __future__ import annotations

import pytest

from evenflow.core import grpc


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (b"1H", 3600.0),
        (b"2M", 120.0),
        (b"5S", 5.0),
        (b"100m", 0.1),
        (b"250u", 0.00025),
        (b"1000000n", 0.001),
        (b"99999999S", 99999999.0),
        (b"0m", 0.0),
    ],
)
def test_timeout_values(value: bytes, seconds: float) -> None:
    assert grpc.parse_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    [b"", b"m", b"10", b"10x", b"10 m", b"-1S", b"1.5S", b"123456789S", b"S1", b"\xff1S"],
)
def test_malformed_timeouts_are_none(value: bytes) -> None:
    assert grpc.parse_timeout(value) is None


def test_frame_and_unframe() -> None:
    assert grpc.frame(b"abc") == b"\x00\x00\x00\x00\x03abc"
    assert grpc.frame(b"") == b"\x00\x00\x00\x00\x00"
    assert grpc.unframe(grpc.frame(b"a") + grpc.frame(b"") + grpc.frame(b"bc")) == [
        b"a",
        b"",
        b"bc",
    ]
    assert grpc.unframe(b"") == []


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x00\x00\x00", "truncated message prefix"),
        (b"\x00\x00\x00\x00\x05abc", "truncated message"),
        (b"\x01\x00\x00\x00\x01a", "compressed message"),
    ],
)
def test_unframe_refuses_cut_or_compressed_bodies(data: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        grpc.unframe(data)


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, 13),
        (401, 16),
        (403, 7),
        (404, 12),
        (429, 14),
        (502, 14),
        (503, 14),
        (504, 14),
        (500, 2),
    ],
)
def test_status_for_http_follows_the_mapping(status: int, code: int) -> None:
    assert grpc.status_for_http(status) == code


@pytest.mark.parametrize(
    ("seconds", "value"),
    [
        (0.25, b"250m"),
        (0.0004, b"1m"),  # rounded up: a deadline never looks earlier than it is
        (0.0, b"1m"),  # and never zero
        (1.5, b"1500m"),
        (99_999.9, b"99999900m"),
        (200_000.0, b"200000S"),  # past 8 digits of milliseconds: seconds
        (1e12, b"99999999S"),
    ],
)
def test_format_timeout(seconds: float, value: bytes) -> None:
    assert grpc.format_timeout(seconds) == value
    parsed = grpc.parse_timeout(value)
    assert parsed is not None and parsed >= min(seconds, 99_999_999)
