"""The HPACK decoder, judged by RFC 7541's own examples and against hpack's encoder and decoder
on generated header blocks (dynamic table, Huffman, evictions, size updates)."""

from __future__ import annotations

import pytest
from hpack import Decoder, Encoder, NeverIndexedHeaderTuple
from hpack.exceptions import HPACKDecodingError, InvalidTableSizeError, OversizedHeaderListError
from hypothesis import given, settings
from hypothesis import strategies as st

from evenflow.proxy.http2.field_decoder import FieldDecoder

# RFC 7541 Appendix C.3 (without Huffman coding) and C.4 (with): three requests on one
# connection, each block relying on the table the previous ones filled
REQUESTS = [
    [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"),
     (b":authority", b"www.example.com")],
    [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"),
     (b":authority", b"www.example.com"), (b"cache-control", b"no-cache")],
    [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/index.html"),
     (b":authority", b"www.example.com"), (b"custom-key", b"custom-value")],
]  # fmt: skip
TABLE_BYTES = [57, 110, 164]  # the RFC's "Table size" after each block
C3 = [
    "828684410f7777772e6578616d706c652e636f6d",
    "828684be58086e6f2d6361636865",
    "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565",
]
C4 = [
    "828684418cf1e3c2e5f23a6ba0ab90f4ff",
    "828684be5886a8eb10649cbf",
    "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf",
]


@pytest.mark.parametrize("blocks", [C3, C4], ids=["C.3 plain", "C.4 huffman"])
def test_the_rfc_examples(blocks: list[str]) -> None:
    decoder = FieldDecoder()
    for block, expected, table_bytes in zip(blocks, REQUESTS, TABLE_BYTES, strict=True):
        assert decoder.decode(bytes.fromhex(block)) == expected
        assert decoder._size == table_bytes  # noqa: SLF001 (the RFC states the table's size)


# --- against hpack, on what its encoder makes -------------------------------------------------

NAMES = st.sampled_from(
    [b":path", b":authority", b"accept", b"cookie", b"user-agent", b"x-custom", b"x-" + b"n" * 40]
)
VALUES = st.binary(max_size=60) | st.sampled_from([b"", b"/", b"gzip, br", b"v" * 300])
FIELDS = st.tuples(NAMES, VALUES, st.booleans())  # the boolean: never indexed
BLOCK = st.tuples(
    st.lists(FIELDS, max_size=12),
    st.booleans(),  # Huffman
    st.none() | st.sampled_from([0, 64, 256, 4096]),  # a table size change before the block
)


@settings(max_examples=300, deadline=None)
@given(blocks=st.lists(BLOCK, min_size=1, max_size=8))
def test_decodes_what_hpack_encodes_as_hpack_decodes_it(
    blocks: list[tuple[list[tuple[bytes, bytes, bool]], bool, int | None]],
) -> None:
    encoder, reference, decoder = Encoder(), Decoder(), FieldDecoder()
    for fields, huffman, table_size in blocks:
        if table_size is not None:
            encoder.header_table_size = table_size  # announced at the next block's start
        headers = [
            NeverIndexedHeaderTuple(name, value) if never else (name, value)
            for name, value, never in fields
        ]
        block = encoder.encode(headers, huffman=huffman)
        expected = reference.decode(block, raw=True)
        found = decoder.decode(block)
        assert found == [tuple(field) for field in expected]
        # a field marked never-indexed stays so, for the hop after evenflow
        assert [isinstance(f, NeverIndexedHeaderTuple) for f in found] == [
            isinstance(f, NeverIndexedHeaderTuple) for f in expected
        ]
        assert decoder.header_table_size == reference.header_table_size
        # the same entries evicted: a table never holds more than the client was allowed
        assert decoder._size == reference.header_table._current_size  # noqa: SLF001


# --- invalid blocks: hpack's exceptions, which h2 turns into a connection error --------------


@pytest.mark.parametrize(
    "block",
    [
        "80",  # index 0
        "be",  # index 62 with an empty dynamic table
        "ff80808080808001",  # an integer longer than any limit
        "ff",  # an integer cut short
        "000561",  # a name string cut short
        "0001610561",  # a value string cut short
        "0081ff00",  # a Huffman-coded name whose padding is longer than 7 bits
    ],
)
def test_an_invalid_block_is_a_decoding_error(block: str) -> None:
    with pytest.raises(HPACKDecodingError):
        FieldDecoder().decode(bytes.fromhex(block))


def test_a_table_size_update_after_a_field_is_refused() -> None:
    with pytest.raises(HPACKDecodingError, match="after a field"):
        FieldDecoder().decode(bytes.fromhex("8220"))


def test_the_table_size_is_bounded_by_what_evenflow_allows() -> None:
    decoder = FieldDecoder()
    with pytest.raises(InvalidTableSizeError):
        decoder.decode(bytes.fromhex("3fe21f"))  # 4097
    decoder = FieldDecoder()
    decoder.max_allowed_table_size = 0  # evenflow lowered it: the client must say so first
    with pytest.raises(InvalidTableSizeError):
        decoder.decode(bytes.fromhex("82"))
    assert FieldDecoder().decode(bytes.fromhex("2082")) == [(b":method", b"GET")]


def test_a_header_list_over_the_limit_is_refused() -> None:
    decoder = FieldDecoder(max_header_list_size=100)
    name, value = b"x-big", b"v" * 40  # 77 bytes as a list entry: two are over 100
    block = Encoder().encode([(name, value), (name, value)])
    with pytest.raises(OversizedHeaderListError):
        decoder.decode(block)


def test_an_entry_larger_than_the_table_empties_it() -> None:
    decoder = FieldDecoder()
    decoder.decode(bytes.fromhex("2082"))  # size 0... then 100 bytes allowed below
    decoder.header_table_size = 100
    first = Encoder()
    first.header_table_size = 100
    blocks = [first.encode([(b"a", b"1")]), first.encode([(b"b", b"x" * 90)])]
    reference = Decoder()
    reference.header_table_size = 100
    for block in blocks:
        assert decoder.decode(block) == [tuple(f) for f in reference.decode(block, raw=True)]
    assert decoder._size == 0  # noqa: SLF001 (the big entry evicted the first and did not fit)
