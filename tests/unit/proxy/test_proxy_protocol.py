"""The PROXY protocol codec: encode, then parse back; the spec's examples; every malformed header.

Sans-IO: bytes in, a ProxyResult or a ProxyProtocolError out, whole or one byte at a time.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evenflow.core.errors import Side
from evenflow.proxy.proxy_protocol import (
    PP2_TYPE_ALPN,
    PP2_TYPE_AUTHORITY,
    PP2_TYPE_CRC32C,
    PP2_TYPE_NOOP,
    PP2_TYPE_SSL,
    PP2_TYPE_UNIQUE_ID,
    V1_MAX_BYTES,
    V2_SIGNATURE,
    ProxyHeaderParser,
    ProxyProtocolError,
    ProxyResult,
    crc32c_checksum,
    encode_v1,
    encode_v2,
    parse_tlvs,
)

SIG = V2_SIGNATURE
PAYLOAD = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"


def parse(data: bytes, **kwargs: int) -> ProxyResult:
    result = ProxyHeaderParser(**kwargs).feed(data)
    assert result is not None, f"no result for {data!r}"
    return result


def parse_bytewise(data: bytes) -> tuple[ProxyResult, int]:
    """Feed one byte at a time; the result and how many bytes it took to get it."""
    parser = ProxyHeaderParser()
    for index in range(len(data)):
        result = parser.feed(data[index : index + 1])
        if result is not None:
            return result, index + 1
    raise AssertionError(f"no result after all {len(data)} bytes")


def rejected(data: bytes, match: str, **kwargs: int) -> ProxyProtocolError:
    with pytest.raises(ProxyProtocolError, match=match) as info:
        parser = ProxyHeaderParser(**kwargs)
        parser.feed(data)
        parser.finish()
    return info.value


def v2(ver_cmd: int, fam: int, block: bytes, length: int | None = None) -> bytes:
    size = len(block) if length is None else length
    return SIG + struct.pack("!BBH", ver_cmd, fam, size) + block


INET_BLOCK = bytes([10, 0, 0, 1, 10, 0, 0, 2]) + struct.pack("!HH", 1234, 80)


# --- the spec's own examples (doc/proxy-protocol.txt §2.1, §2.2) -------------------------------


@pytest.mark.parametrize(
    ("line", "size", "family", "src", "dst"),
    [
        (
            b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
            56,
            "inet",
            ("255.255.255.255", 65535),
            ("255.255.255.255", 65535),
        ),
        (
            b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
            b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
            104,
            "inet6",
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
        ),
        (b"PROXY UNKNOWN\r\n", 15, "unspec", None, None),
        (
            b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
            b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
            107,
            "unspec",
            None,
            None,
        ),
    ],
)
def test_the_spec_v1_maximum_lines_parse(
    line: bytes, size: int, family: str, src: object, dst: object
) -> None:
    assert len(line) == size
    result = parse(line + PAYLOAD)
    assert (result.version, result.command, result.family) == (1, "PROXY", family)
    assert (result.source, result.destination) == (src, dst)
    assert result.header_bytes == size
    assert result.remaining == PAYLOAD


def test_the_spec_v1_example_before_an_http_request() -> None:
    data = (
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
        b"GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n"
    )
    result = parse(data)
    assert result.source == ("192.168.0.1", 56324)
    assert result.destination == ("192.168.0.11", 443)
    assert result.transport == "stream"
    assert result.remaining == b"GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n"
    assert encode_v1(("192.168.0.1", 56324), ("192.168.0.11", 443)) == data[:47]


def test_v2_tcp4_header_has_the_spec_layout_byte_for_byte() -> None:
    header = encode_v2(("192.168.0.1", 56324), ("192.168.0.11", 443))
    assert header == (
        b"\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a"  # §2.2 signature
        b"\x21"  # version 2, PROXY
        b"\x11"  # AF_INET, STREAM
        b"\x00\x0c"  # 12 address bytes
        b"\xc0\xa8\x00\x01\xc0\xa8\x00\x0b"
        b"\xdc\x04\x01\xbb"
    )


def test_v2_local_header_is_sixteen_bytes_with_unspec_family() -> None:
    header = encode_v2(("10.0.0.1", 1), ("10.0.0.2", 2), command="LOCAL")
    assert header == SIG + b"\x20\x00\x00\x00"


def test_v2_udp6_header_uses_family_byte_0x22_and_36_address_bytes() -> None:
    header = encode_v2(("2001:db8::1", 53), ("2001:db8::2", 5353), transport="dgram")
    assert header[12:16] == b"\x21\x22\x00\x24"
    assert len(header) == 16 + 36


def test_crc32c_matches_the_standard_check_value() -> None:
    assert crc32c_checksum(b"123456789") == 0xE3069283
    assert crc32c_checksum(b"") == 0


# --- round trips ------------------------------------------------------------------------------

ADDRESS_PAIRS = [
    (("192.0.2.1", 0), ("198.51.100.7", 65535)),
    (("0.0.0.0", 1), ("255.255.255.255", 443)),
    (("2001:db8::1", 40000), ("2001:db8::ff", 443)),
    (("::", 5), ("::1", 6)),
    (("fe80::1:2:3:4", 7), ("2001:db8:1:2:3:4:5:6", 8)),
]


@pytest.mark.parametrize(("src", "dst"), ADDRESS_PAIRS)
def test_v1_round_trip(src: tuple[str, int], dst: tuple[str, int]) -> None:
    header = encode_v1(src, dst)
    result = parse(header + PAYLOAD)
    assert (result.source, result.destination) == (src, dst)
    assert result.family == ("inet" if "." in src[0] else "inet6")
    assert header.startswith(b"PROXY TCP4 " if "." in src[0] else b"PROXY TCP6 ")
    assert result.remaining == PAYLOAD


@pytest.mark.parametrize("transport", ["stream", "dgram"])
@pytest.mark.parametrize(("src", "dst"), ADDRESS_PAIRS)
def test_v2_round_trip(src: tuple[str, int], dst: tuple[str, int], transport: str) -> None:
    header = encode_v2(src, dst, transport=transport)  # type: ignore[arg-type]
    result = parse(header + PAYLOAD)
    assert (result.version, result.command, result.transport) == (2, "PROXY", transport)
    assert (result.source, result.destination) == (src, dst)
    assert result.family == ("inet" if "." in src[0] else "inet6")
    assert result.header_bytes == len(header)
    assert result.remaining == PAYLOAD


def test_ipv6_addresses_come_back_in_canonical_form() -> None:
    header = encode_v1(("2001:DB8:0:0:0:0:0:1", 1), ("2001:db8::2", 2))
    assert header == b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n"
    result = parse(b"PROXY TCP6 2001:DB8:0000:0:0:0:0:1 ::FFFF 1 2\r\n")
    assert result.source == ("2001:db8::1", 1)
    assert result.destination == ("::ffff", 2)


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (None, ("10.0.0.1", 80)),
        (("10.0.0.1", 80), None),
        (None, None),
        (("10.0.0.1", 80), ("2001:db8::1", 80)),
    ],
)
def test_unknown_or_mixed_addresses_encode_as_unknown_and_unspec(
    src: tuple[str, int] | None, dst: tuple[str, int] | None
) -> None:
    assert encode_v1(src, dst) == b"PROXY UNKNOWN\r\n"
    header = encode_v2(src, dst)
    assert header == SIG + b"\x21\x00\x00\x00"
    for data in (encode_v1(src, dst), header):
        result = parse(data + PAYLOAD)
        assert (result.family, result.source, result.destination) == ("unspec", None, None)
        assert result.command == "PROXY"
        assert result.remaining == PAYLOAD


def test_a_dual_stack_mapped_ipv4_peer_is_sent_as_ipv4() -> None:
    src, dst = ("::ffff:192.0.2.1", 5000), ("192.0.2.9", 80)
    assert encode_v1(src, dst) == b"PROXY TCP4 192.0.2.1 192.0.2.9 5000 80\r\n"
    assert parse(encode_v2(src, dst)).source == ("192.0.2.1", 5000)


def test_a_link_local_scope_is_dropped_on_the_wire() -> None:
    header = encode_v1(("fe80::1%eth0", 1), ("fe80::2", 2))
    assert header == b"PROXY TCP6 fe80::1 fe80::2 1 2\r\n"


def test_local_round_trip_ignores_addresses_and_keeps_tlvs() -> None:
    header = encode_v2(None, None, command="LOCAL", tlvs=[(PP2_TYPE_UNIQUE_ID, b"conn-42")])
    result = parse(header + PAYLOAD)
    assert (result.command, result.family, result.source, result.destination) == (
        "LOCAL",
        "unspec",
        None,
        None,
    )
    assert result.tlv(PP2_TYPE_UNIQUE_ID) == b"conn-42"
    assert result.remaining == PAYLOAD


def test_tlvs_round_trip_in_order_including_empty_and_large_values() -> None:
    tlvs = [
        (PP2_TYPE_ALPN, b"h2"),
        (PP2_TYPE_AUTHORITY, b"api.example.com"),
        (PP2_TYPE_NOOP, b""),
        (0xE0, bytes(range(256)) * 40),
        (PP2_TYPE_ALPN, b"http/1.1"),
    ]
    result = parse(encode_v2(("10.0.0.1", 1), ("10.0.0.2", 2), tlvs=tlvs) + PAYLOAD)
    assert list(result.tlvs) == tlvs
    assert result.tlv(PP2_TYPE_ALPN) == b"h2"  # the first of its type
    assert result.tlv(PP2_TYPE_SSL) is None
    assert result.remaining == PAYLOAD


def test_ssl_tlv_sub_tlvs_parse_with_parse_tlvs() -> None:
    sub = struct.pack("!BH", 0x21, 7) + b"TLSv1.3" + struct.pack("!BH", 0x22, 3) + b"bob"
    ssl_value = b"\x01" + struct.pack("!I", 0) + sub
    result = parse(encode_v2(("10.0.0.1", 1), ("10.0.0.2", 2), tlvs=[(PP2_TYPE_SSL, ssl_value)]))
    value = result.tlv(PP2_TYPE_SSL)
    assert value is not None
    assert parse_tlvs(value[5:]) == ((0x21, b"TLSv1.3"), (0x22, b"bob"))


def test_a_crc32c_header_verifies_and_round_trips() -> None:
    header = encode_v2(("10.0.0.1", 1), ("10.0.0.2", 2), tlvs=[(PP2_TYPE_ALPN, b"h2")], crc32c=True)
    result = parse(header)
    crc = result.tlv(PP2_TYPE_CRC32C)
    assert crc is not None
    zeroed = header[:-4] + bytes(4)
    assert int.from_bytes(crc, "big") == crc32c_checksum(zeroed)


def test_the_largest_v2_header_the_spec_allows_parses() -> None:
    big = 65535 - 12 - 3
    header = encode_v2(("10.0.0.1", 1), ("10.0.0.2", 2), tlvs=[(0xE1, b"x" * big)])
    assert len(header) == 16 + 65535
    result = parse(header + PAYLOAD)
    assert result.tlv(0xE1) == b"x" * big
    assert result.remaining == PAYLOAD


# --- feeding: byte by byte, with payload, after the end ---------------------------------------

HEADERS = [
    encode_v1(("192.0.2.1", 1000), ("192.0.2.2", 80)),
    encode_v1(("2001:db8::1", 1000), ("2001:db8::2", 80)),
    encode_v1(None, None),
    b"PROXY UNKNOWN whatever the sender had here\r\n",
    encode_v2(("192.0.2.1", 1000), ("192.0.2.2", 80)),
    encode_v2(("2001:db8::1", 1000), ("2001:db8::2", 80), transport="dgram"),
    encode_v2(None, None, command="LOCAL"),
    encode_v2(("192.0.2.1", 1), ("192.0.2.2", 2), tlvs=[(PP2_TYPE_ALPN, b"h2")], crc32c=True),
]


@pytest.mark.parametrize("header", HEADERS)
def test_byte_by_byte_gives_the_same_result_at_the_last_header_byte(header: bytes) -> None:
    whole = parse(header + PAYLOAD)
    bytewise, taken = parse_bytewise(header + PAYLOAD)
    assert taken == len(header)
    assert bytewise.remaining == b""  # the payload had not been fed yet
    assert bytewise == ProxyResult(**{**_fields(whole), "remaining": b""})


def _fields(result: ProxyResult) -> dict[str, object]:
    return {name: getattr(result, name) for name in ProxyResult.__dataclass_fields__}


@pytest.mark.parametrize("header", HEADERS)
def test_two_chunks_cut_anywhere_give_the_header_and_the_payload_back(header: bytes) -> None:
    data = header + PAYLOAD
    for cut in range(1, len(data)):
        parser = ProxyHeaderParser()
        first = parser.feed(data[:cut])
        if cut < len(header):
            assert first is None, cut
            result = parser.feed(data[cut:])
            assert result is not None
            assert result.remaining == PAYLOAD
        else:
            assert first is not None, cut
            assert first.remaining == data[len(header) : cut]


def test_a_payload_far_larger_than_the_buffer_comes_back_untouched() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    parser = ProxyHeaderParser(max_v2_length=64)
    result = parser.feed(encode_v2(("10.0.0.1", 1), ("10.0.0.2", 2)) + payload)
    assert result is not None
    assert result.remaining == payload
    assert parser.buffered_bytes == 0


def test_feed_after_a_result_is_a_caller_bug_and_finish_is_a_no_op() -> None:
    parser = ProxyHeaderParser()
    assert parser.feed(HEADERS[0]) is not None
    parser.finish()
    with pytest.raises(RuntimeError):
        parser.feed(b"more")


def test_finish_after_a_rejection_does_not_raise_again() -> None:
    parser = ProxyHeaderParser()
    with pytest.raises(ProxyProtocolError):
        parser.feed(b"GET / HTTP/1.1\r\n")
    parser.finish()


def test_the_error_is_a_downstream_bad_request() -> None:
    error = rejected(b"SSH-2.0-OpenSSH\r\n", "not a PROXY header")
    assert error.side is Side.DOWNSTREAM
    assert error.status == 400


# --- truncation -------------------------------------------------------------------------------


@pytest.mark.parametrize("header", HEADERS)
def test_every_truncation_waits_then_fails_at_eof(header: bytes) -> None:
    for cut in range(len(header)):
        parser = ProxyHeaderParser()
        assert parser.feed(header[:cut]) is None, cut
        expected = "closed before a PROXY header" if cut == 0 else f"after {cut} bytes"
        with pytest.raises(ProxyProtocolError, match=expected):
            parser.finish()


def test_a_truncated_header_fed_byte_by_byte_also_fails_at_eof() -> None:
    header = HEADERS[4]
    parser = ProxyHeaderParser()
    for byte in header[:-1]:
        assert parser.feed(bytes([byte])) is None
    with pytest.raises(ProxyProtocolError, match="inside a PROXY header"):
        parser.finish()


# --- malformed v1 -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"GET / HTTP/1.1\r\n", "not a PROXY header"),
        (b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "not a PROXY header"),
        (b"PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n", "v1: bad signature"),
        (b"PROXX TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "v1: bad signature"),
        (b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "unknown protocol b''"),
        (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "unknown protocol b'TCP5'"),
        (b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "unknown protocol b'tcp4'"),
        (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "unknown protocol b'UDP4'"),
        (b"PROXY UNKNOWNX\r\n", "unknown protocol b'UNKNOWNX'"),
        (b"PROXY \r\n", "unknown protocol b''"),
        (b"PROXY TCP4\r\n", "needs 4 fields .* got 0"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "needs 4 fields .* got 3"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "needs 4 fields .* got 5"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "needs 4 fields .* got 5"),
        (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "needs 4 fields .* got 5"),
        (b"PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n", "source address b'256.2.3.4' is not an IPv4"),
        (b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "source address b'1.2.3' is not an IPv4"),
        (b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "source address b'01.2.3.4'"),
        (b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n", "destination address b'::1' is not an IPv4"),
        (b"PROXY TCP4 localhost 5.6.7.8 1 2\r\n", "source address b'localhost'"),
        (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "source address b'1.2.3.4' is not an IPv6"),
        (b"PROXY TCP6 ::1 1::2::3 1 2\r\n", "destination address b'1::2::3' is not an IPv6"),
        (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "source address b'fe80::1%eth0'"),
        (b"PROXY TCP4 1.2.3.\xc4\xb4 5.6.7.8 1 2\r\n", "source address"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "source port 65536 is over 65535"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", "destination port 99999 is over 65535"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 100000 2\r\n", "source port b'100000'"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "source port b'01'"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 00 2\r\n", "source port b'00'"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "source port b'-1'"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", "source port b'\\+1'"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1a 2\r\n", "source port b'1a'"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \xd9\xa3\r\n", "destination port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "bare LF at byte 30"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n\r\n", "bare LF"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", "CR at byte 30 not followed by LF"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", "CR at byte 30 not followed by LF"),
        (b"PROXY UNKNOWN " + b"a" * 200, "no CRLF in the first 107 bytes"),
        (b"PROXY UNKNOWN " + b"a" * 92 + b"\r\n", "longer than 107 bytes"),
    ],
)
def test_malformed_v1_is_rejected_naming_the_problem(data: bytes, match: str) -> None:
    rejected(data + PAYLOAD, match)


def test_a_107_byte_unknown_line_is_the_longest_accepted() -> None:
    line = b"PROXY UNKNOWN " + b"a" * 91 + b"\r\n"
    assert len(line) == V1_MAX_BYTES
    assert parse(line + PAYLOAD).remaining == PAYLOAD
    rejected(line[:-2] + b"a\r\n", "longer than 107 bytes")


def test_garbage_is_rejected_at_the_first_byte() -> None:
    with pytest.raises(ProxyProtocolError):
        ProxyHeaderParser().feed(b"G")


def test_a_v1_line_without_crlf_is_rejected_once_107_bytes_are_in() -> None:
    parser = ProxyHeaderParser()
    data = b"PROXY TCP4 " + b"1" * 200
    for index in range(V1_MAX_BYTES - 1):
        assert parser.feed(data[index : index + 1]) is None
    with pytest.raises(ProxyProtocolError, match="no CRLF"):
        parser.feed(data[V1_MAX_BYTES - 1 : V1_MAX_BYTES])


def test_a_v1_line_never_buffers_more_than_107_bytes_even_from_a_large_read() -> None:
    parser = ProxyHeaderParser()
    with pytest.raises(ProxyProtocolError, match="no CRLF"):
        parser.feed(b"PROXY " + b"a" * 65536)
    assert parser.buffered_bytes <= V1_MAX_BYTES


# --- malformed v2 -----------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(12))
def test_v2_a_wrong_signature_byte_is_rejected(index: int) -> None:
    header = bytearray(encode_v2(("10.0.0.1", 1), ("10.0.0.2", 2)))
    header[index] ^= 0x40
    match = "v2: bad signature" if index else "not a PROXY header"
    rejected(bytes(header), match)


@pytest.mark.parametrize("version", [0x0, 0x1, 0x3, 0xF])
def test_v2_a_version_other_than_2_is_rejected(version: int) -> None:
    rejected(v2(version << 4 | 1, 0x11, INET_BLOCK), f"unsupported version {version}, expected 2")


@pytest.mark.parametrize("command", range(2, 16))
def test_v2_an_unassigned_command_is_rejected(command: int) -> None:
    rejected(v2(0x20 | command, 0x11, INET_BLOCK), f"unknown command 0x{command:x}")


@pytest.mark.parametrize("family", range(4, 16))
def test_v2_an_unknown_address_family_is_rejected(family: int) -> None:
    rejected(v2(0x21, family << 4 | 1, INET_BLOCK), f"unknown address family 0x{family:x}")


@pytest.mark.parametrize("transport", range(3, 16))
def test_v2_an_unknown_transport_is_rejected(transport: int) -> None:
    rejected(v2(0x21, 0x10 | transport, INET_BLOCK), f"unknown transport protocol 0x{transport:x}")


def test_v2_a_bad_version_byte_is_rejected_before_the_length_arrives() -> None:
    with pytest.raises(ProxyProtocolError, match="unsupported version"):
        ProxyHeaderParser().feed(SIG + b"\x11")


@pytest.mark.parametrize(
    ("fam", "length", "needed"),
    [(0x11, 11, 12), (0x12, 0, 12), (0x21, 35, 36), (0x22, 12, 36), (0x31, 215, 216)],
)
def test_v2_a_length_too_short_for_the_family_is_rejected(
    fam: int, length: int, needed: int
) -> None:
    rejected(v2(0x21, fam, bytes(length)), f"length {length} too short .* \\({needed} bytes\\)")


@pytest.mark.parametrize(
    ("tlv_area", "match"),
    [
        (b"\x01", "truncated TLV header at TLV offset 0"),
        (b"\x01\x00", "truncated TLV header at TLV offset 0"),
        (b"\x01\x00\x02h", "TLV 0x01 at offset 0 declares 2 bytes, only 1 remain"),
        (b"\x04\x00\x00\x01\x00\x05abc", "TLV 0x01 at offset 3 declares 5 bytes, only 3 remain"),
        (b"\x04\x00\x00\x02", "truncated TLV header at TLV offset 3"),
        (b"\x03\x00\x02ab", "CRC32C TLV must appear once, with 4 bytes"),
    ],
)
def test_v2_malformed_tlvs_are_rejected(tlv_area: bytes, match: str) -> None:
    rejected(v2(0x21, 0x11, INET_BLOCK + tlv_area), match)


def test_v2_a_wrong_crc32c_is_rejected() -> None:
    header = bytearray(encode_v2(("10.0.0.1", 1), ("10.0.0.2", 2), crc32c=True))
    header[17] ^= 0x01  # change the source address: the checksum no longer matches
    rejected(bytes(header), "CRC32C mismatch")
    good = encode_v2(("10.0.0.1", 1), ("10.0.0.2", 2), crc32c=True)
    rejected(good[:-1] + bytes([good[-1] ^ 0xFF]), "CRC32C mismatch")


def test_v2_two_crc32c_tlvs_are_rejected() -> None:
    header = encode_v2(
        ("10.0.0.1", 1), ("10.0.0.2", 2), tlvs=[(PP2_TYPE_CRC32C, bytes(4))], crc32c=True
    )
    rejected(header, "CRC32C TLV must appear once")


def test_v2_a_length_over_the_listener_bound_is_rejected_before_buffering_it() -> None:
    parser = ProxyHeaderParser(max_v2_length=256)
    with pytest.raises(ProxyProtocolError, match="declares 257 bytes, over this listener's 256"):
        parser.feed(SIG + b"\x21\x11\x01\x01")
    assert parser.buffered_bytes == 16


# --- v2 families the listener does not use ----------------------------------------------------


def test_v2_local_with_an_inet_block_ignores_the_addresses_and_reads_tlvs_after_them() -> None:
    tlv = struct.pack("!BH", PP2_TYPE_UNIQUE_ID, 2) + b"id"
    result = parse(v2(0x20, 0x11, INET_BLOCK + tlv) + PAYLOAD)
    assert (result.command, result.family, result.source, result.destination) == (
        "LOCAL",
        "inet",
        None,
        None,
    )
    assert result.tlvs == ((PP2_TYPE_UNIQUE_ID, b"id"),)
    assert result.remaining == PAYLOAD


def test_v2_local_with_a_short_opaque_block_is_skipped_by_its_length() -> None:
    result = parse(v2(0x20, 0x11, b"\xff" * 5) + PAYLOAD)
    assert result.command == "LOCAL"
    assert result.tlvs == ()
    assert result.remaining == PAYLOAD


def test_v2_unix_addresses_are_skipped_and_reported_as_unix() -> None:
    block = b"/run/a.sock".ljust(108, b"\x00") + b"/run/b.sock".ljust(108, b"\x00")
    result = parse(v2(0x21, 0x31, block) + PAYLOAD)
    assert (result.family, result.transport, result.source, result.destination) == (
        "unix",
        "stream",
        None,
        None,
    )
    assert result.header_bytes == 16 + 216
    assert result.remaining == PAYLOAD


def test_v2_proxy_with_unspec_transport_has_no_addresses() -> None:
    result = parse(v2(0x21, 0x10, INET_BLOCK) + PAYLOAD)
    assert (result.family, result.transport, result.source) == ("inet", "unspec", None)
    assert result.remaining == PAYLOAD


# --- encoder errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("src", "dst", "match"),
    [
        (("example.com", 1), ("10.0.0.1", 2), "source host 'example.com' is not an IP address"),
        (("10.0.0.1", 1), ("10.0.0.1", 65536), "destination port 65536 is not in 0..65535"),
        (("10.0.0.1", -1), ("10.0.0.1", 2), "source port -1"),
    ],
)
def test_encoders_refuse_bad_addresses(
    src: tuple[str, int], dst: tuple[str, int], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        encode_v1(src, dst)
    with pytest.raises(ValueError, match=match):
        encode_v2(src, dst)


def test_encode_v2_refuses_tlvs_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="does not fit a TLV"):
        encode_v2(None, None, tlvs=[(256, b"")])
    with pytest.raises(ValueError, match="does not fit a TLV"):
        encode_v2(None, None, tlvs=[(1, bytes(65536))])
    with pytest.raises(ValueError, match="over 65535"):
        encode_v2(("10.0.0.1", 1), ("10.0.0.2", 2), tlvs=[(1, bytes(65535 - 12))])


# --- properties -------------------------------------------------------------------------------

ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).filter(lambda ip: ip.ipv4_mapped is None).map(str)
ports = st.integers(0, 65535)
tlv_lists = st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=64)), max_size=5)


@given(
    st.one_of(
        st.tuples(st.tuples(ipv4, ports), st.tuples(ipv4, ports)),
        st.tuples(st.tuples(ipv6, ports), st.tuples(ipv6, ports)),
    ),
    st.sampled_from(["stream", "dgram"]),
    tlv_lists,
    st.binary(max_size=64),
    st.integers(1, 40),
)
def test_any_header_round_trips_in_any_chunking(
    pair: tuple[tuple[str, int], tuple[str, int]],
    transport: str,
    tlvs: list[tuple[int, bytes]],
    payload: bytes,
    chunk: int,
) -> None:
    src, dst = pair
    tlvs = [(kind, value) for kind, value in tlvs if kind != PP2_TYPE_CRC32C]
    for header in (encode_v1(src, dst), encode_v2(src, dst, transport=transport, tlvs=tlvs)):  # type: ignore[arg-type]
        data = header + payload
        parser = ProxyHeaderParser()
        result, fed = None, 0
        while result is None:
            result = parser.feed(data[fed : fed + chunk])
            fed += chunk
        assert (result.source, result.destination) == (src, dst)
        assert result.remaining + data[fed:] == payload
        if result.version == 2:
            assert list(result.tlvs) == tlvs


def feed_garbage(parser: ProxyHeaderParser, chunks: list[bytes], bound: int) -> None:
    for chunk in chunks:
        try:
            result = parser.feed(chunk)
        except ProxyProtocolError:
            return
        assert parser.buffered_bytes <= bound
        if result is not None:
            return
    with pytest.raises(ProxyProtocolError):  # undecided at EOF is always an error
        parser.finish()


@given(st.lists(st.binary(max_size=300), max_size=20), st.integers(0, 2000))
def test_garbage_only_ever_raises_proxy_protocol_error_and_stays_bounded(
    chunks: list[bytes], max_v2_length: int
) -> None:
    bound = max(V1_MAX_BYTES, 16 + max_v2_length)
    feed_garbage(ProxyHeaderParser(max_v2_length=max_v2_length), chunks, bound)


@given(
    st.sampled_from([b"PROXY ", b"PROXY TCP4 ", b"PROXY TCP6 ", SIG + b"\x21", SIG]),
    st.lists(st.binary(max_size=120), max_size=8),
)
def test_garbage_after_a_valid_prefix_only_raises_proxy_protocol_error(
    prefix: bytes, chunks: list[bytes]
) -> None:
    feed_garbage(ProxyHeaderParser(max_v2_length=1024), [prefix, *chunks], 16 + 1024)


@settings(max_examples=300)
@given(st.sampled_from(HEADERS), st.data())
def test_a_valid_header_with_flipped_bytes_parses_or_raises_proxy_protocol_error(
    header: bytes, data: st.DataObject
) -> None:
    mutated = bytearray(header)
    for _ in range(data.draw(st.integers(1, 3))):
        index = data.draw(st.integers(0, len(mutated) - 1))
        mutated[index] = data.draw(st.integers(0, 255))
    feed_garbage(ProxyHeaderParser(), [bytes(mutated) + PAYLOAD], 16 + 65535)
