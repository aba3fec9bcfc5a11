"""HPACK without the dynamic table: header blocks as nginx encodes them (RFC 7541).

A field the static table holds whole (`:status 200`) goes out as its index (§6.1); any other
as a literal without indexing (§6.2.2), its name by static index where the table has the
name, its value Huffman-coded when that is shorter (§5.2). Nothing enters the dynamic table,
so a field's bytes depend on that field alone and are cached: a proxy sends the same few
response fields again and again, and hpack's encoder spent more time searching and growing
its table than the rest of sending a response (a third of the HTTP/2 data path's Python).
Fields marked never-indexed (hpack's NeverIndexedHeaderTuple) say so on the wire (§6.2.3).

The price is bytes: a repeated field costs its literal each time instead of one index byte.
nginx makes the same trade for the same reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from hpack import Encoder, HeaderTuple
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.table import HeaderTable

_HUFFMAN: Final = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)

# name -> static index of its first entry; (name, value) -> index of the entry (§A)
_NAME_INDEX: dict[bytes, int] = {}
_FIELD_INDEX: dict[tuple[bytes, bytes], int] = {}
for _index, (_name, _value) in enumerate(HeaderTable.STATIC_TABLE, start=1):
    _NAME_INDEX.setdefault(_name, _index)
    _FIELD_INDEX.setdefault((_name, _value), _index)

# field -> its bytes, shared by every connection (an encoding depends on the field alone);
# bounded: past the limit it starts over, which a Date that changes each second comes to
_CACHE: dict[tuple[bytes, bytes, bool], bytes] = {}
_CACHE_LIMIT: Final = 4096
_TABLE_SIZE_ZERO: Final = b"\x20"  # dynamic table size update to 0 (§6.3)


def _integer(value: int, prefix_bits: int, first_bits: int) -> bytes:
    """An integer with an N-bit prefix (§5.1), `first_bits` in the prefix octet's upper bits."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first_bits | value,))
    out = bytearray((first_bits | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(data: bytes) -> bytes:
    """A string literal (§5.2), Huffman-coded when that is shorter."""
    coded = _HUFFMAN.encode(data)
    if len(coded) < len(data):
        return _integer(len(coded), 7, 0x80) + coded
    return _integer(len(data), 7, 0) + data


def encode_field(name: bytes, value: bytes, never_indexed: bool = False) -> bytes:
    """One field's representation; never a dynamic-table index or insertion."""
    if not never_indexed:
        whole = _FIELD_INDEX.get((name, value))
        if whole is not None:
            return _integer(whole, 7, 0x80)
    first_bits = 0x10 if never_indexed else 0x00
    name_index = _NAME_INDEX.get(name)
    if name_index is not None:
        return _integer(name_index, 4, first_bits) + _string(value)
    return bytes((first_bits,)) + _string(name) + _string(value)


class StatelessEncoder(Encoder):
    """Stands in for hpack's Encoder on an h2 H2Connection (`conn.encoder = StatelessEncoder()`).

    h2 uses two things of an encoder: `encode(fields)` and the `header_table_size` the peer's
    SETTINGS_HEADER_TABLE_SIZE sets. With no dynamic table, each such change is answered by a
    size update to 0 at the start of the next block: a decoder that shrank its table (nghttp2)
    waits for one, and 0 is within any limit.
    """

    def __init__(self) -> None:
        super().__init__()  # hpack's table, unused: h2 only calls what is overridden here
        self._table_size = 4096
        self._announce = False

    @property
    def header_table_size(self) -> int:
        return self._table_size

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        self._table_size = value
        self._announce = True

    def join(self, pieces: list[bytes]) -> bytes:
        """A header block of fields encoded already (by `encode_field`)."""
        if self._announce:
            self._announce = False
            return _TABLE_SIZE_ZERO + b"".join(pieces)
        return b"".join(pieces)

    def encode(self, headers: Iterable[Any], huffman: bool = True) -> bytes:
        cache = _CACHE
        block = []
        if self._announce:
            self._announce = False
            block.append(_TABLE_SIZE_ZERO)
        for field in headers:
            # hpack marks a never-indexed field with a HeaderTuple subclass; a plain tuple is
            # not one (and compiled code raises an AttributeError to learn that from getattr)
            never_indexed = isinstance(field, HeaderTuple) and not field.indexable
            key = (field[0], field[1], never_indexed)
            encoded = cache.get(key)
            if encoded is None:
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                encoded = cache[key] = encode_field(field[0], field[1], never_indexed)
            block.append(encoded)
        return b"".join(block)
