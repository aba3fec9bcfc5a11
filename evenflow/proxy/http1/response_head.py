"""What a backend's response head means for forwarding it: framing and hop-by-hop fields.

Sans-IO and called once per response. The head is scanned with one regular expression over its
lowercased bytes instead of a Python callback per header: llhttp has already refused whitespace
before a colon and bare CR or LF, so "\\r\\nname:" can only be the start of that field.
"""

from __future__ import annotations

import re

HAS_LENGTH = 1  # Content-Length framing
CHUNKED = 2  # chunked framing (chunked is the final transfer coding)
HOP_SEEN = 4  # a hop-by-hop field other than a lone "Connection: keep-alive": clean the head
KEEP_ALIVE_ONLY = 8  # the only hop-by-hop field is "Connection: keep-alive"
CONNECTION_NAMES_OTHERS = 16  # Connection names other fields: rebuild the head
BACKEND_CLOSES = 32  # the backend closes after this response (set by the connection)

_SPECIAL_FIELD = re.compile(
    rb"\r\n(content-length|transfer-encoding|connection|keep-alive|proxy-[^:]*|te|trailer|upgrade)"
    rb":[ \t]*([^\r]*)"
)
_HOP_LINE = re.compile(
    rb"\r\n(?:connection|keep-alive|proxy-[^:]*|te|trailer|upgrade):[^\r]*", re.IGNORECASE
)


_COMMON_FIELDS = frozenset((b"content-length", b"connection"))


def analyze(raw: bytes) -> tuple[int, int]:
    """(flags, content length or -1) of a response head, status line to blank line."""
    found = _SPECIAL_FIELD.findall(raw.lower())
    fields = dict(found)
    # the common head: at most a Content-Length and "Connection: keep-alive", once each
    if len(fields) == len(found) and fields.keys() <= _COMMON_FIELDS:
        connection = fields.get(b"connection")
        flags = 0
        if connection is not None:
            if connection.rstrip() != b"keep-alive":
                return _analyze_fields(found)
            flags = KEEP_ALIVE_ONLY
        length = fields.get(b"content-length")
        if length is None:
            return flags, -1
        return flags | HAS_LENGTH, int(length)  # llhttp checked it: digits and trailing space
    return _analyze_fields(found)


def _analyze_fields(found: list[tuple[bytes, bytes]]) -> tuple[int, int]:
    flags = 0
    length = -1
    for name, value in found:
        if name == b"content-length":
            flags |= HAS_LENGTH
            length = int(value)
        elif name == b"transfer-encoding":
            # RFC 9112 §6.3: chunked only when it is the final coding; otherwise until close
            if value.rsplit(b",", 1)[-1].strip() == b"chunked":
                flags |= CHUNKED
            else:
                flags &= ~CHUNKED
        elif (
            name == b"connection"
            and value.rstrip(b" \t") == b"keep-alive"
            and not flags & (HOP_SEEN | KEEP_ALIVE_ONLY)
        ):
            flags |= KEEP_ALIVE_ONLY
        else:
            flags |= HOP_SEEN
            if name == b"connection":
                for token in value.split(b","):
                    if token.strip() not in (b"close", b"keep-alive", b""):
                        flags |= CONNECTION_NAMES_OTHERS
    if flags & CHUNKED:
        flags &= ~HAS_LENGTH  # RFC 9112 §6.3: Transfer-Encoding overrides Content-Length
        length = -1
    if flags & HOP_SEEN:
        flags &= ~KEEP_ALIVE_ONLY
    return flags, length


def strip_hop_by_hop(raw: bytes) -> bytes:
    """`raw` without its hop-by-hop lines (Connection, Keep-Alive, Proxy-*, TE, Trailer...)."""
    return _HOP_LINE.sub(b"", raw)


def parse_header_lines(raw: bytes) -> list[tuple[bytes, bytes]]:
    """The (lowercase name, value) pairs of a head llhttp already validated."""
    pairs = []
    for line in raw.split(b"\r\n")[1:]:
        if line:
            name, _, value = line.partition(b":")
            pairs.append((name.lower(), value.strip(b" \t")))
    return pairs
