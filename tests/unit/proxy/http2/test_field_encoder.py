"""The stateless HPACK encoder, judged by hpack's own Decoder (RFC 7541)."""

from __future__ import annotations

from hpack import Decoder, HeaderTuple, NeverIndexedHeaderTuple

from evenflow.proxy.http2.field_encoder import StatelessEncoder, encode_field

RESPONSE = [
    (b":status", b"200"),
    (b"server", b"nginx/1.22.1"),
    (b"date", b"Thu, 26 Nov 2026 21:18:21 GMT"),
    (b"content-type", b"application/octet-stream"),
    (b"content-length", b"1024"),
    (b"x-backend", b"web-1"),
    (b"etag", b'"6565a1b2-400"'),
]


def decode(decoder: Decoder, block: bytes) -> list[tuple[bytes, bytes]]:
    return [(bytes(n), bytes(v)) for n, v in decoder.decode(block, raw=True)]


def test_a_response_decodes_to_what_was_encoded_and_leaves_the_table_empty() -> None:
    encoder, decoder = StatelessEncoder(), Decoder()
    for _ in range(3):  # again and again: the cached bytes must decode the same
        assert decode(decoder, encoder.encode(RESPONSE)) == RESPONSE
    assert len(decoder.header_table.dynamic_entries) == 0


def test_a_field_the_static_table_holds_whole_is_one_index_byte() -> None:
    assert encode_field(b":status", b"200") == b"\x88"  # index 8, §A
    assert encode_field(b":status", b"404") == b"\x8d"  # index 13


def test_a_known_name_goes_by_index_with_a_literal_value_not_indexed() -> None:
    # §6.2.2: 0000 + 4-bit name index; content-length is static entry 28 (> 15: continued)
    encoded = encode_field(b"content-length", b"1024")
    assert encoded[0] == 0x0F and encoded[1] == 28 - 15
    assert decode(Decoder(), encoded) == [(b"content-length", b"1024")]


def test_an_unknown_name_is_a_literal_too() -> None:
    encoded = encode_field(b"x-backend", b"web-1")
    assert encoded[0] == 0x00
    assert decode(Decoder(), encoded) == [(b"x-backend", b"web-1")]


def test_huffman_only_when_it_is_shorter() -> None:
    text = encode_field(b"x-a", b"aaaaaaaaaaaaaaaa")  # 'a' is 5 bits: Huffman wins
    assert text[-1 - 10] & 0x80  # the value's length octet has the H bit
    binary = bytes(range(200, 216))  # long codes: raw is shorter
    encoded = encode_field(b"x-b", binary)
    assert encoded[-1 - len(binary)] == len(binary)  # H bit clear, raw length
    assert decode(Decoder(), text + encoded) == [(b"x-a", b"a" * 16), (b"x-b", binary)]


def test_a_long_value_takes_a_multi_octet_length() -> None:
    value = bytes(range(128, 256)) * 3  # 384 raw bytes: the 7-bit prefix overflows
    assert decode(Decoder(), encode_field(b"x-long", value)) == [(b"x-long", value)]


def test_never_indexed_fields_say_so_on_the_wire() -> None:
    fields = [HeaderTuple(b":status", b"200"), NeverIndexedHeaderTuple(b"authorization", b"t")]
    decoded = Decoder().decode(StatelessEncoder().encode(fields), raw=True)
    assert isinstance(decoded[1], NeverIndexedHeaderTuple)
    assert not isinstance(decoded[0], NeverIndexedHeaderTuple)


def test_a_never_indexed_field_is_never_the_static_index() -> None:
    assert encode_field(b":status", b"200", never_indexed=True)[0] & 0xF0 == 0x10


def test_a_smaller_peer_table_is_answered_by_a_size_update_to_zero() -> None:
    encoder, decoder = StatelessEncoder(), Decoder()
    decoder.max_allowed_table_size = 0  # the peer's SETTINGS_HEADER_TABLE_SIZE 0
    encoder.header_table_size = 0  # as h2 sets it on that SETTINGS
    block = encoder.encode(RESPONSE)
    assert block[0] == 0x20
    assert decode(decoder, block) == RESPONSE
    assert encoder.encode(RESPONSE)[0] != 0x20  # once, at the next block only
