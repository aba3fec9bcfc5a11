"""HPACK decoding (RFC 7541) of the header blocks clients send: hpack's Decoder, leaner.

h2 decodes every request's HEADERS with `decoder.decode(block, raw=True)`; this class takes
hpack's place there (as field_encoder's does for the other direction) with the same
attributes and the same exceptions, so h2 handles its errors as it handles hpack's. hpack's
decoder made a dozen Python calls per field (a debug log call among them) and copied the rest
of the block for every literal; here a field is one pass of the loop below, and a request
whose fields are all in the tables (a browser's or h2load's second request) costs an index
lookup per field. Huffman-coded strings are decoded by hpack's own table-driven decoder.

Fields come back as (name, value) tuples of bytes, in order; a field the client marked
never-indexed (§6.2.3) as hpack's NeverIndexedHeaderTuple, which the upstream encoder keeps.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from hpack import Decoder, NeverIndexedHeaderTuple
from hpack.exceptions import HPACKDecodingError, InvalidTableSizeError, OversizedHeaderListError
from hpack.huffman_table import decode_huffman
from hpack.table import HeaderTable

_STATIC: tuple[tuple[bytes, bytes], ...] = HeaderTable.STATIC_TABLE
_STATIC_ENTRIES: Final = len(_STATIC)  # 61
_ENTRY_OVERHEAD: Final = 32  # §4.1: an entry's size is its name and value plus 32
_DEFAULT_TABLE_BYTES: Final = 4096  # §6.5.2 of RFC 9113: SETTINGS_HEADER_TABLE_SIZE's default
_DEFAULT_MAX_LIST_BYTES: Final = 64 * 1024
_MAX_INTEGER_BYTES: Final = 4  # continuation bytes of an integer: 2^28 is beyond any limit here


class FieldDecoder(Decoder):
    """A connection's HPACK decoding context: its dynamic table and limits. A Decoder for
    h2's sake (its type); nothing of hpack's implementation is used."""

    def __init__(self, max_header_list_size: int = _DEFAULT_MAX_LIST_BYTES) -> None:
        # a decoded list larger than this raises OversizedHeaderListError (h2 then closes the
        # connection: the decoding context is lost with the rest of the block)
        self.max_header_list_size = max_header_list_size
        # the largest table the client may ask for: what evenflow's settings allow (§4.2)
        self.max_allowed_table_size = _DEFAULT_TABLE_BYTES
        self._table: deque[tuple[bytes, bytes]] = deque()  # newest first: index 62 is [0]
        self._size = 0  # bytes in the table, entries counted as §4.1 says
        self._max = _DEFAULT_TABLE_BYTES  # the table's current maximum size

    @property
    def header_table_size(self) -> int:
        return self._max

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        self._max = value
        self._evict(0)

    def decode(self, data: bytes, raw: bool = True) -> list[tuple[bytes, bytes]]:  # type: ignore[override]
        """The fields of one complete header block; HPACKDecodingError when it is invalid."""
        if not raw:
            raise ValueError("FieldDecoder returns bytes only (h2's header_encoding=None)")
        fields: list[tuple[bytes, bytes]] = []
        table = self._table
        # read once: hpack's Decoder is a Python class, so this one's attributes are looked up
        max_listed = self.max_header_list_size
        listed = 0
        never_indexed = 0
        at = 0
        end = len(data)
        try:
            while at < end:
                byte = data[at]
                at += 1
                if byte & 0x80:  # §6.1: an indexed field (most of a repeated request's)
                    index = byte & 0x7F
                    if index == 0x7F:
                        index, at = _integer(data, at, index)
                    if 0 < index <= _STATIC_ENTRIES:
                        field = _STATIC[index - 1]
                    elif _STATIC_ENTRIES < index <= _STATIC_ENTRIES + len(table):
                        field = table[index - _STATIC_ENTRIES - 1]
                    else:
                        raise HPACKDecodingError(f"field index {index} is in neither table")
                elif byte & 0x40:  # §6.2.1: a literal, added to the table
                    name, value, at = self._literal(data, at, byte & 0x3F, 0x3F)
                    field = (name, value)
                    self._add(name, value)
                elif byte & 0x20:  # §6.3: a dynamic table size update
                    if fields:
                        raise HPACKDecodingError("table size update after a field (RFC 7541 §4.2)")
                    size = byte & 0x1F
                    if size == 0x1F:
                        size, at = _integer(data, at, size)
                    if size > self.max_allowed_table_size:
                        raise InvalidTableSizeError(
                            f"table size {size} over the {self.max_allowed_table_size} allowed"
                        )
                    self.header_table_size = size
                    continue
                else:  # §6.2.2 and §6.2.3: a literal not added (0000), or never indexed (0001)
                    name, value, at = self._literal(data, at, byte & 0x0F, 0x0F)
                    field = (name, value)
                    never_indexed = byte & 0x10
                if never_indexed:
                    # appended as made: compiled code keeps a variable typed as a pair as two
                    # C fields, and would append a plain tuple rebuilt from them
                    fields.append(NeverIndexedHeaderTuple(*field))
                    never_indexed = 0
                else:
                    fields.append(field)
                listed += len(field[0]) + len(field[1]) + _ENTRY_OVERHEAD
                if listed > max_listed:
                    raise OversizedHeaderListError(f"header list over {max_listed} bytes")
        except IndexError:
            raise HPACKDecodingError("truncated header block") from None
        if self._max > self.max_allowed_table_size:
            # the client must shrink its table at the start of a block once evenflow lowered
            # the limit (§4.2)
            raise InvalidTableSizeError("table size not reduced to the allowed maximum")
        return fields

    def _literal(self, data: bytes, at: int, index: int, full: int) -> tuple[bytes, bytes, int]:
        """§6.2: a literal's name (by index, or a string when the index is 0) and value;
        `index` is the prefix's value, continued past `at` when it is `full`."""
        if index == full:
            index, at = _integer(data, at, index)
        if index:
            name = self._entry(index)[0]
        else:
            name, at = _string(data, at)
        value, at = _string(data, at)
        return name, value, at

    def _entry(self, index: int) -> tuple[bytes, bytes]:
        """The static (1-61) or dynamic (62-) table's entry `index` (§2.3.3)."""
        if 0 < index <= _STATIC_ENTRIES:
            return _STATIC[index - 1]
        dynamic = index - _STATIC_ENTRIES - 1
        if 0 <= dynamic < len(self._table):
            return self._table[dynamic]
        raise HPACKDecodingError(f"field index {index} is in neither table")

    def _add(self, name: bytes, value: bytes) -> None:
        """§4.4: the oldest entries leave to make room; one larger than the table empties it."""
        size = len(name) + len(value) + _ENTRY_OVERHEAD
        self._evict(size)
        if size <= self._max:
            self._table.appendleft((name, value))
            self._size += size

    def _evict(self, room: int) -> None:
        table = self._table
        while table and self._size + room > self._max:
            name, value = table.pop()
            self._size -= len(name) + len(value) + _ENTRY_OVERHEAD


def _integer(data: bytes, at: int, value: int) -> tuple[int, int]:
    """§5.1: an integer whose prefix was full (`value`), continued from `at`."""
    shift = 0
    for _ in range(_MAX_INTEGER_BYTES):
        byte = data[at]
        at += 1
        value += (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
    raise HPACKDecodingError("integer longer than any limit (RFC 7541 §5.1)")


def _string(data: bytes, at: int) -> tuple[bytes, int]:
    """§5.2: a string literal starting at `at`, Huffman-decoded when so marked."""
    byte = data[at]
    length = byte & 0x7F
    at += 1
    if length == 0x7F:
        length, at = _integer(data, at, length)
    end = at + length
    if end > len(data):
        raise HPACKDecodingError("truncated header block")
    if byte & 0x80:
        return decode_huffman(data[at:end]), end
    return data[at:end], end
