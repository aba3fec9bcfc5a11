"""The ClientHello peek: SNI and ALPN out of real ClientHellos, and errors for anything else.

Real hellos come from Python's ssl module writing into a MemoryBIO: no sockets. Hand-built hellos
cover the malformed cases a real client never sends.
"""

from __future__ import annotations

import ssl
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evenflow.core.errors import Side
from evenflow.tls.clienthello import (
    MAX_PEEK_BYTES,
    ClientHelloError,
    ClientHelloParser,
    ClientHelloResult,
    sni_matches,
)


def real_hello(
    server_hostname: str | None = "api.example.com",
    *,
    alpn: list[str] | None = None,
    minimum: ssl.TLSVersion | None = None,
    maximum: ssl.TLSVersion | None = None,
) -> bytes:
    """The bytes a real TLS client sends first: its ClientHello, in TLS records."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if server_hostname is None:
        ctx.check_hostname = False
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if minimum is not None:
        ctx.minimum_version = minimum
    if maximum is not None:
        ctx.maximum_version = maximum
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    assert hello[:1] == b"\x16"
    return hello


def handshake_of(records: bytes) -> bytes:
    """Undo the record layer: the handshake bytes carried by a run of records."""
    out, pos = bytearray(), 0
    while pos < len(records):
        size = int.from_bytes(records[pos + 3 : pos + 5], "big")
        out += records[pos + 5 : pos + 5 + size]
        pos += 5 + size
    return bytes(out)


def reframe(handshake: bytes, size: int, version: bytes = b"\x03\x01") -> bytes:
    """Carry handshake bytes in records of at most `size` bytes each."""
    return b"".join(
        b"\x16"
        + version
        + struct.pack("!H", len(handshake[i : i + size]))
        + handshake[i : i + size]
        for i in range(0, len(handshake), size)
    )


def vec(length_bytes: int, body: bytes) -> bytes:
    return len(body).to_bytes(length_bytes, "big") + body


def sni_ext(*names: tuple[int, bytes]) -> tuple[int, bytes]:
    return 0, vec(2, b"".join(bytes([kind]) + vec(2, name) for kind, name in names))


def alpn_ext(*names: bytes) -> tuple[int, bytes]:
    return 16, vec(2, b"".join(vec(1, name) for name in names))


def build_hello(
    extensions: list[tuple[int, bytes]] | None = None,
    *,
    version: int = 0x0303,
    session_id: bytes = b"\x07" * 32,
    suites: bytes = b"\x13\x01\x13\x02",
    compression: bytes = b"\x00",
    extensions_block: bytes | None = None,
) -> bytes:
    """A ClientHello handshake message (RFC 8446 §4.1.2), no record layer."""
    body = struct.pack("!H", version) + b"\x11" * 32
    body += vec(1, session_id) + vec(2, suites) + vec(1, compression)
    if extensions_block is not None:
        body += extensions_block
    elif extensions is not None:
        body += vec(
            2, b"".join(struct.pack("!H", kind) + vec(2, data) for kind, data in extensions)
        )
    return b"\x01" + vec(3, body)


def parse(data: bytes) -> ClientHelloResult:
    result = ClientHelloParser().feed(data)
    assert result is not None
    return result


def parse_bytewise(data: bytes) -> tuple[ClientHelloResult, int]:
    parser = ClientHelloParser()
    for index in range(len(data)):
        result = parser.feed(data[index : index + 1])
        if result is not None:
            return result, index + 1
    raise AssertionError("no result after every byte")


def rejected(data: bytes, match: str) -> ClientHelloError:
    with pytest.raises(ClientHelloError, match=match) as info:
        parser = ClientHelloParser()
        parser.feed(data)
        parser.finish()
    return info.value


TLS12 = ssl.TLSVersion.TLSv1_2
TLS13 = ssl.TLSVersion.TLSv1_3

REAL = {
    "default": (real_hello(), ClientHelloResult("api.example.com", ())),
    "no-sni": (real_hello(None), ClientHelloResult(None, ())),
    "ip-literal": (real_hello("192.0.2.10"), ClientHelloResult(None, ())),
    "alpn": (
        real_hello("api.example.com", alpn=["h2", "http/1.1"]),
        ClientHelloResult("api.example.com", ("h2", "http/1.1")),
    ),
    "tls12-only": (
        real_hello("shop.example.org", maximum=TLS12, alpn=["http/1.1"]),
        ClientHelloResult("shop.example.org", ("http/1.1",)),
    ),
    "tls13-only": (
        real_hello("grpc.example.net", minimum=TLS13, alpn=["h2"]),
        ClientHelloResult("grpc.example.net", ("h2",)),
    ),
    "upper-case": (real_hello("API.Example.COM"), ClientHelloResult("api.example.com", ())),
    "no-sni-alpn": (real_hello(None, alpn=["h2"]), ClientHelloResult(None, ("h2",))),
}


# --- real ClientHellos ------------------------------------------------------------------------


@pytest.mark.parametrize("name", REAL)
def test_a_real_client_hello_gives_its_sni_and_alpn(name: str) -> None:
    data, expected = REAL[name]
    assert parse(data) == expected


@pytest.mark.parametrize("name", REAL)
def test_byte_by_byte_gives_the_same_result_at_the_hello_s_last_byte(name: str) -> None:
    data, expected = REAL[name]
    result, taken = parse_bytewise(data)
    assert result == expected
    assert taken == len(data)  # ssl sends the hello in one record, nothing after it


def extensions_of(handshake: bytes) -> dict[int, bytes]:
    """The extensions of a well-formed ClientHello message, by type (a test oracle)."""
    pos = 4 + 2 + 32
    pos += 1 + handshake[pos]
    pos += 2 + int.from_bytes(handshake[pos : pos + 2], "big")
    pos += 1 + handshake[pos]
    end = pos + 2 + int.from_bytes(handshake[pos : pos + 2], "big")
    pos += 2
    found = {}
    while pos < end:
        kind, size = struct.unpack_from("!HH", handshake, pos)
        found[kind] = handshake[pos + 4 : pos + 4 + size]
        pos += 4 + size
    return found


def test_the_fixtures_really_differ_in_the_versions_they_offer() -> None:
    # legacy_version is 0x0303 in both (RFC 8446 §4.1.2); supported_versions (43) tells them apart.
    tls12 = extensions_of(handshake_of(REAL["tls12-only"][0]))
    tls13 = extensions_of(handshake_of(REAL["tls13-only"][0]))
    assert 43 not in tls12 or b"\x03\x04" not in tls12[43]
    assert tls13[43] == b"\x02\x03\x04"  # offers TLS 1.3 only
    assert 0 not in extensions_of(handshake_of(REAL["no-sni"][0]))
    assert 0 not in extensions_of(handshake_of(REAL["ip-literal"][0]))


@pytest.mark.parametrize("size", [1, 2, 7, 100, 511, 2**14])
@pytest.mark.parametrize("name", ["default", "alpn", "tls12-only"])
def test_a_hello_split_across_records_reassembles(name: str, size: int) -> None:
    data, expected = REAL[name]
    records = reframe(handshake_of(data), size)
    assert parse(records) == expected
    result, taken = parse_bytewise(records)
    assert result == expected
    assert taken == len(records)


def test_records_with_version_0x0303_and_0x0300_are_accepted() -> None:
    handshake = handshake_of(REAL["alpn"][0])
    for version in (b"\x03\x00", b"\x03\x03"):
        assert parse(reframe(handshake, 64, version)) == REAL["alpn"][1]


def test_bytes_after_the_hello_are_left_alone() -> None:
    data, expected = REAL["alpn"]
    change_cipher_spec = b"\x14\x03\x03\x00\x01\x01"
    early_data = b"\x17\x03\x03\x00\x05hello"
    parser = ClientHelloParser()
    assert parser.feed(data + change_cipher_spec + early_data) == expected
    assert parser.peeked_bytes == len(data)


def test_the_result_decides_at_the_hello_end_even_inside_a_record() -> None:
    # A record that goes on past the hello: the hello is complete, so decide without waiting.
    handshake = handshake_of(REAL["default"][0])
    record = b"\x16\x03\x01" + struct.pack("!H", len(handshake) + 50) + handshake
    parser = ClientHelloParser()
    assert parser.feed(record + bytes(20)) == REAL["default"][1]
    assert parser.peeked_bytes == 5 + len(handshake)


def test_the_parser_does_not_hold_or_alter_the_callers_buffer() -> None:
    data = bytearray(REAL["alpn"][0])
    snapshot = bytes(data)
    parser = ClientHelloParser()
    assert parser.feed(data[:100]) is None  # type: ignore[arg-type]
    data.extend(b"more")  # would raise BufferError if a view of it were still exported
    assert bytes(data[: len(snapshot)]) == snapshot
    bad = bytearray(b"GET / HTTP/1.1\r\n")
    with pytest.raises(ClientHelloError):
        ClientHelloParser().feed(bad)  # type: ignore[arg-type]
    bad.extend(b"x")


# --- hand-built hellos ------------------------------------------------------------------------


def test_a_hello_without_any_extensions_has_no_sni() -> None:
    # RFC 5246 §7.4.1.2: extensions may be absent altogether.
    assert parse(reframe(build_hello(None), 512)) == ClientHelloResult(None, ())


def test_an_empty_extensions_block_has_no_sni() -> None:
    assert parse(reframe(build_hello([]), 512)) == ClientHelloResult(None, ())


def test_sni_is_lowercased_and_its_trailing_dot_dropped() -> None:
    hello = build_hello([sni_ext((0, b"WWW.Example.COM."))])
    assert parse(reframe(hello, 512)).server_name == "www.example.com"


def test_unknown_name_types_are_skipped() -> None:
    hello = build_hello([sni_ext((7, b"opaque"), (0, b"a.example.com"), (8, b""))])
    assert parse(reframe(hello, 512)).server_name == "a.example.com"


def test_other_extensions_are_skipped_whatever_they_hold() -> None:
    hello = build_hello([(0xFF01, b"\x00"), (21, bytes(300)), sni_ext((0, b"x.test")), (51, b"")])
    assert parse(reframe(hello, 512)).server_name == "x.test"


def test_alpn_names_keep_every_byte() -> None:
    hello = build_hello([alpn_ext(b"h2", b"\xff\x00raw", b"http/1.1")])
    assert parse(reframe(hello, 512)).alpn_protocols == ("h2", "\xff\x00raw", "http/1.1")


def test_an_older_legacy_version_still_parses() -> None:
    hello = build_hello([sni_ext((0, b"old.example"))], version=0x0301, session_id=b"")
    assert parse(reframe(hello, 512)).server_name == "old.example"


# --- truncation -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["default", "alpn", "no-sni", "tls12-only"])
def test_every_truncation_waits_then_fails_at_eof(name: str) -> None:
    data = REAL[name][0]
    for cut in range(len(data)):
        parser = ClientHelloParser()
        assert parser.feed(data[:cut]) is None, cut
        expected = "closed before a ClientHello" if cut == 0 else f"after {cut} bytes"
        with pytest.raises(ClientHelloError, match=expected):
            parser.finish()


def test_every_truncation_of_a_multi_record_hello_fails_at_eof() -> None:
    data = reframe(handshake_of(REAL["alpn"][0]), 50)
    for cut in range(len(data)):
        parser = ClientHelloParser()
        assert parser.feed(data[:cut]) is None, cut
        with pytest.raises(ClientHelloError, match="closed"):
            parser.finish()


def test_finish_after_a_result_is_a_no_op_and_feed_is_a_caller_bug() -> None:
    parser = ClientHelloParser()
    assert parser.feed(REAL["default"][0]) is not None
    parser.finish()
    with pytest.raises(RuntimeError):
        parser.feed(b"\x17")


# --- not a ClientHello ------------------------------------------------------------------------

GOOD = build_hello([sni_ext((0, b"a.example.com"))])


def one_record(handshake: bytes) -> bytes:
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "not TLS: first byte 0x47"),
        (b"SSH-2.0-OpenSSH_9.6\r\n", "not TLS: first byte 0x53"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "not TLS: first byte 0x50"),
        (b"\x80\x2e\x01\x00\x02", "not TLS: first byte 0x80"),  # an SSLv2-style hello
        (b"\x15\x03\x03\x00\x02\x02\x28", "not TLS: first byte 0x15"),  # an alert
        (b"\x17\x03\x03\x00\x05hello", "not TLS: first byte 0x17"),
        (b"\x16\x02\x00\x00\x05", "version bytes 0x0200 are not TLS"),
        (b"\x16\x03\x05\x00\x05", "version bytes 0x0305 are not TLS"),
        (b"\x16\xfe\xfd\x00\x05", "version bytes 0xfefd"),  # DTLS 1.2
        (b"\x16\x03\x01\x00\x00", "length 0 is not in 1..16384"),
        (b"\x16\x03\x01\x40\x01", "length 16385 is not in 1..16384"),
        (b"\x16\x03\x03\x00\x04\x02\x00\x00\x00", "handshake message type 2 is not a ClientHello"),
        (b"\x16\x03\x03\x00\x01\x00", "handshake message type 0 is not a ClientHello"),
        (one_record(b"\x01\x00\x40\x00" + bytes(100)), "ClientHello of 16388 bytes is over"),
        (one_record(b"\x01\x00\x00\x00"), "ClientHello ends inside legacy_version"),
        (one_record(build_hello(version=0x0200)), "legacy_version 0x0200 is not TLS"),
        (one_record(b"\x01" + vec(3, GOOD[4:20])), "ClientHello ends inside random"),
        (
            one_record(b"\x01" + vec(3, GOOD[4:40])),
            "legacy_session_id length 32 overruns ClientHello",
        ),
        (one_record(build_hello(session_id=bytes(33))), "legacy_session_id of 33 bytes"),
        (one_record(build_hello(suites=b"")), "cipher_suites of 0 bytes"),
        (one_record(build_hello(suites=b"\x13\x01\x13")), "cipher_suites of 3 bytes"),
        (one_record(build_hello(compression=b"")), "empty legacy_compression_methods"),
        (one_record(build_hello(extensions_block=b"\x00")), "ends inside the length of extensions"),
        (
            one_record(build_hello(extensions_block=b"\x00\x05\x00\x00\x00")),
            "extensions length 5 overruns ClientHello",
        ),
        (
            one_record(build_hello(extensions_block=b"\x00\x00\xaa")),
            "1 stray bytes after ClientHello",
        ),
        (
            one_record(build_hello(extensions_block=b"\x00\x03\x00\x00\x00")),
            "extensions ends inside the length of extension 0",
        ),
        (
            one_record(build_hello(extensions_block=b"\x00\x05\x00\x10\x00\x09\x00")),
            "extension 16 length 9 overruns extensions",
        ),
        (
            one_record(build_hello([sni_ext((0, b"a.test")), sni_ext((0, b"b.test"))])),
            "extension 0 appears twice",
        ),
        (one_record(build_hello([(16, b""), (16, b"")])), "ends inside the length of"),
        (
            one_record(build_hello([alpn_ext(b"h2"), alpn_ext(b"h2")])),
            "extension 16 appears twice",
        ),
        (
            one_record(build_hello([sni_ext((0, b"a.test"), (0, b"b.test"))])),
            "more than one host_name",
        ),
        (one_record(build_hello([(0, b"\x00\x00")])), "empty server_name_list"),
        (one_record(build_hello([(0, b"")])), "extension 0 ends inside the length of"),
        (one_record(build_hello([sni_ext((0, b""))])), "empty host_name"),
        (one_record(build_hello([sni_ext((0, b"."))])), "empty host_name"),
        (one_record(build_hello([sni_ext((0, b"a\x00.test"))])), "host_name contains byte 0x00"),
        (one_record(build_hello([sni_ext((0, b"a b.test"))])), "host_name contains byte 0x20"),
        (
            one_record(build_hello([sni_ext((0, "bücher.de".encode()))])),
            "host_name contains byte 0xc3",
        ),
        (one_record(build_hello([sni_ext((7, b"opaque"))])), "without a host_name"),
        (
            one_record(build_hello([(0, vec(2, b"\x00\x00\x09ab"))])),
            "a server name length 9 overruns server_name_list",
        ),
        (
            one_record(build_hello([(0, vec(2, b"\x00" + vec(2, b"a.test")) + b"!")])),
            "1 stray bytes after extension 0",
        ),
        (one_record(build_hello([(16, b"\x00\x00")])), "empty protocol_name_list"),
        (one_record(build_hello([alpn_ext(b"h2", b"")])), "empty ALPN protocol name"),
        (
            one_record(build_hello([(16, vec(2, b"\x05h2"))])),
            "an ALPN protocol name length 5 overruns protocol_name_list",
        ),
    ],
)
def test_malformed_input_is_rejected_naming_the_problem(data: bytes, match: str) -> None:
    rejected(data, match)


def test_the_error_is_a_downstream_bad_request() -> None:
    error = rejected(b"GET / HTTP/1.1\r\n", "not TLS")
    assert error.side is Side.DOWNSTREAM
    assert error.status == 400


def test_http_is_rejected_at_its_first_byte() -> None:
    with pytest.raises(ClientHelloError, match="not TLS"):
        ClientHelloParser().feed(b"G")


def test_a_bad_record_version_is_rejected_before_the_length_arrives() -> None:
    with pytest.raises(ClientHelloError, match="version bytes"):
        ClientHelloParser().feed(b"\x16\x04")


def test_another_record_type_interleaved_in_the_hello_is_rejected() -> None:
    # RFC 8446 §5.1: handshake messages must not be interleaved with other record types.
    handshake = handshake_of(REAL["default"][0])
    data = (
        reframe(handshake[:100], 100)
        + b"\x15\x03\x03\x00\x02\x01\x00"
        + reframe(handshake[100:], 512)
    )
    rejected(data, "record 2 has type 0x15 before the ClientHello was complete")


def test_a_stream_of_tiny_records_is_cut_off_at_the_peek_bound() -> None:
    hello = build_hello([(0xFFAA, bytes(6000)), sni_ext((0, b"late.example"))])
    data = reframe(hello, 1)  # six bytes of stream per byte of hello
    parser = ClientHelloParser()
    with pytest.raises(
        ClientHelloError, match=f"no complete ClientHello in the first {MAX_PEEK_BYTES}"
    ):
        for start in range(0, len(data), 4096):
            parser.feed(data[start : start + 4096])
    assert parser.peeked_bytes == MAX_PEEK_BYTES


def test_a_large_hello_in_normal_records_is_within_the_bounds() -> None:
    hello = build_hello([(0xFFAA, bytes(15000)), sni_ext((0, b"big.example"))])
    assert parse(reframe(hello, 2**14)).server_name == "big.example"
    assert parse(reframe(hello, 4000)).server_name == "big.example"


def test_the_bounds_are_configurable() -> None:
    data = REAL["alpn"][0]
    with pytest.raises(ClientHelloError, match="is over the 256-byte limit"):
        ClientHelloParser(max_hello_bytes=256).feed(data)
    with pytest.raises(ClientHelloError, match="in the first 100 bytes"):
        ClientHelloParser(max_peek_bytes=100).feed(data)


# --- properties -------------------------------------------------------------------------------


def feed_garbage(chunks: list[bytes]) -> None:
    parser = ClientHelloParser()
    for chunk in chunks:
        try:
            result = parser.feed(chunk)
        except ClientHelloError:
            return
        assert parser.peeked_bytes <= MAX_PEEK_BYTES
        if result is not None:
            return
    with pytest.raises(ClientHelloError):  # undecided at EOF is always an error
        parser.finish()


@given(st.lists(st.binary(max_size=500), max_size=20))
def test_random_bytes_only_ever_raise_client_hello_error(chunks: list[bytes]) -> None:
    feed_garbage(chunks)


@given(st.binary(max_size=2000), st.integers(1, 300))
def test_random_bytes_inside_a_handshake_record_only_raise_client_hello_error(
    body: bytes, size: int
) -> None:
    feed_garbage([reframe(b"\x01" + vec(3, body), size)])
    feed_garbage([reframe(b"\x01" + body, size)])


@settings(max_examples=300)
@given(st.sampled_from(sorted(REAL)), st.data())
def test_a_real_hello_with_bytes_changed_parses_or_raises_client_hello_error(
    name: str, data: st.DataObject
) -> None:
    mutated = bytearray(REAL[name][0])
    for _ in range(data.draw(st.integers(1, 4))):
        mutated[data.draw(st.integers(0, len(mutated) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(mutated)))
    feed_garbage([bytes(mutated[:cut]), bytes(mutated[cut:])])


@given(
    st.lists(st.from_regex(r"[a-z0-9-]{1,20}", fullmatch=True), min_size=1, max_size=4),
    st.lists(st.binary(min_size=1, max_size=20), max_size=4),
    st.integers(1, 200),
)
def test_any_well_formed_hello_gives_its_name_and_alpn_back(
    labels: list[str], alpn: list[bytes], size: int
) -> None:
    name = ".".join(labels)
    extensions = [sni_ext((0, name.encode()))]
    if alpn:
        extensions.append(alpn_ext(*alpn))
    result = parse(reframe(build_hello(extensions), size))
    assert result == ClientHelloResult(name, tuple(p.decode("latin-1") for p in alpn))


# --- sni_matches ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "pattern", "expected"),
    [
        ("api.example.com", "api.example.com", True),
        ("API.Example.com", "api.EXAMPLE.com", True),
        ("api.example.com.", "api.example.com", True),
        ("api.example.com", "api.example.com.", True),
        ("api.example.com", "www.example.com", False),
        ("example.com", "api.example.com", False),
        ("api.example.com", "*.example.com", True),
        ("API.EXAMPLE.COM", "*.Example.Com", True),
        ("x.example.com.", "*.example.com", True),
        ("example.com", "*.example.com", False),  # not the apex
        ("a.b.example.com", "*.example.com", False),  # one label only
        (".example.com", "*.example.com", False),  # an empty label is no label
        ("api.example.org", "*.example.com", False),
        ("apiexample.com", "*.example.com", False),
        ("api.badexample.com", "*.example.com", False),
        ("*.example.com", "*.example.com", True),  # a literal star label is still one label
        ("api.example.com", "*", False),
        ("api", "*.", False),
        ("api..", "*..", False),
        ("api.example.com", "a*.example.com", False),  # a star elsewhere is literal
        ("a*.example.com", "a*.example.com", True),
        ("api.example.com", "*.*.com", False),
    ],
)
def test_sni_matches(name: str, pattern: str, expected: bool) -> None:
    assert sni_matches(name, pattern) is expected
