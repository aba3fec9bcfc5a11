"""The grpc health probe's protobuf by hand and its verdict on an answer, byte by byte."""

from __future__ import annotations

import pytest

from evenflow.core.grpc import frame
from evenflow.health.probes import _health_request, _health_verdict, _serving_status

OK_HEADERS = {b":status": b"200", b"content-type": b"application/grpc", b"grpc-status": b"0"}


def test_request_names_the_service_as_field_1() -> None:
    assert _health_request("users.v1.Users") == b"\x0a\x0eusers.v1.Users"
    assert _health_request("") == b""  # proto3 leaves the default out
    long = "s" * 200  # a length past 127 takes a two-byte varint
    assert _health_request(long) == b"\x0a\xc8\x01" + long.encode()


@pytest.mark.parametrize(
    ("message", "status"),
    [
        (b"\x08\x01", 1),
        (b"\x08\x02", 2),
        (b"\x08\x03", 3),
        (b"", 0),  # UNKNOWN is the default, so it is absent
        (b"\x12\x03abc\x08\x01", 1),  # an unknown length-delimited field first
        (b"\x08\x01\x1d\x00\x00\x00\x00", 1),  # and a fixed32 after
    ],
)
def test_serving_status(message: bytes, status: int) -> None:
    assert _serving_status(message) == status


@pytest.mark.parametrize("message", [b"\x08", b"\x12\x05ab", b"\x0b"])
def test_a_broken_response_is_refused(message: bytes) -> None:
    with pytest.raises(ValueError):
        _serving_status(message)


@pytest.mark.parametrize(
    ("fields", "body", "verdict"),
    [
        (OK_HEADERS, frame(b"\x08\x01"), (True, "SERVING")),
        (OK_HEADERS, frame(b"\x08\x02"), (False, "NOT_SERVING")),
        (OK_HEADERS, frame(b"\x08\x03"), (False, "SERVICE_UNKNOWN")),
        (OK_HEADERS, frame(b""), (False, "UNKNOWN")),
        (OK_HEADERS, frame(b"\x08\x09"), (False, "status 9")),
        (OK_HEADERS, b"", (False, "no answer")),
        (OK_HEADERS, b"\x00\x00", (False, "invalid answer: truncated message prefix")),
        ({**OK_HEADERS, b":status": b"503"}, b"", (False, "HTTP status 503")),
        ({b":status": b"200"}, frame(b"\x08\x01"), (False, "no grpc-status")),
        (
            {**OK_HEADERS, b"grpc-status": b"12", b"grpc-message": b"unknown%20service"},
            b"",
            (False, "grpc-status 12: unknown service"),
        ),
        ({**OK_HEADERS, b"grpc-status": b"14"}, b"", (False, "grpc-status 14")),
    ],
)
def test_verdict(fields: dict[bytes, bytes], body: bytes, verdict: tuple[bool, str]) -> None:
    assert _health_verdict(fields, body) == verdict
