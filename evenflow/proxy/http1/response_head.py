"""What a backend's response head means for forwarding it: framing and hop-by-hop fields.

Sans-IO and called once per response, without a Python callback per header: llhttp has already
refused whitespace before a colon and bare CR or LF, so "\\r\\nname:" can only be the start of that
field. The common head is read line by line, most names only as far as their first letter; any
other head is scanned with one regular expression over its lowercased bytes.
"""

from __future__ import annotations

import re
from typing import Final

HAS_LENGTH: Final = 1  # Content-Length framing
CHUNKED: Final = 2  # chunked framing (chunked is the final transfer coding)
HOP_SEEN: Final = 4  # a hop-by-hop field other than a lone "Connection: keep-alive": clean the head
KEEP_ALIVE_ONLY: Final = 8  # the only hop-by-hop field is "Connection: keep-alive"
CONNECTION_NAMES_OTHERS: Final = 16  # Connection names other fields: rebuild the head
BACKEND_CLOSES: Final = 32  # the backend closes after this response (set by the connection)

_SPECIAL_FIELD: Final = re.compile(
    rb"\r\n(content-length|transfer-encoding|connection|keep-alive|proxy-[^:]*|te|trailer|upgrade)"
    rb":[ \t]*([^\r]*)"
)
_HOP_LINE: Final = re.compile(
    rb"\r\n(?:connection|keep-alive|proxy-[^:]*|te|trailer|upgrade):[^\r]*", re.IGNORECASE
)


def special_fields(raw: bytes) -> list[tuple[bytes, bytes]]:
    """The (name, value) of each field that matters, in order, both lowercased; the value
    without the whitespace after the colon. One regular expression over the lowercased head:
    the general reading, for heads that are not the common one."""
    return _SPECIAL_FIELD.findall(raw.lower())


def analyze(raw: bytes) -> tuple[int, int]:
    """(flags, content length or -1) of a response head, status line to blank line."""
    size, flags, length = read_head(raw.split(b"\r\n"))
    if flags < 0:
        return analyze_fields(raw)
    return flags, length


def read_head(lines: list[bytes]) -> tuple[int, int, int]:
    """(size, flags, length) of the head that `lines` begin (bytes split at each CRLF): its
    size with its blank line, and analyze()'s flags and length when it is the common head,
    else flags -1 (special_fields() then decides). Size -1 when its blank line is not among
    `lines` (the last of which, maybe cut short, does not count): the head is not all there."""
    # what bytes.find(b"\r\n\r\n") + 4 gives: the first empty line after the first ends it
    size = len(lines[0]) + 2
    flags = 0
    length = -1
    # the common head: at most a Content-Length and "Connection: keep-alive", once each, and no
    # line that may be another special field; at any doubt the general reading decides
    for i in range(1, len(lines) - 1):
        line = lines[i]
        width = len(line)  # (compiled, `not line` would be a generic truth test)
        if width == 0:
            return size + 2, flags, length
        size += width + 2
        if flags < 0:
            continue  # in doubt already: only the size is still wanted
        initial = line[0] | 0x20  # lowercase, for a letter (and only a letter becomes one)
        if initial == 0x63:  # c
            if _has_name(line, b"Content-Length:", b"content-length:"):
                length = _digits(line, 15)
                flags = -1 if flags & HAS_LENGTH or length < 0 else flags | HAS_LENGTH
            elif _has_name(line, b"Connection:", b"connection:"):
                if flags & KEEP_ALIVE_ONLY or line[11:] != b" keep-alive":
                    flags = -1
                else:
                    flags |= KEEP_ALIVE_ONLY
        elif initial == 0x74 or initial == 0x6B or initial == 0x70 or initial == 0x75:
            # t, k, p, u: maybe Transfer-Encoding, TE, Trailer, Keep-Alive, Proxy-*, Upgrade
            flags = -1
    return -1, -1, -1


def analyze_fields(raw: bytes) -> tuple[int, int]:
    """analyze() of a head read_head() found is not the common one."""
    return _analyze_found(special_fields(raw))


def status_code(raw: bytes) -> int:
    """The status code of a head llhttp accepted, read from its status line: the three digits
    llhttp requires after "HTTP/x.y ". -1 when the head does not start with its status line (a
    leading CRLF, which llhttp skips): llhttp must then be asked."""
    if len(raw) < 13 or raw[0] != 0x48 or raw[8] != 0x20 or raw[12] not in (0x20, 0x0D):
        return -1
    hundreds = raw[9] - 0x30
    tens = raw[10] - 0x30
    units = raw[11] - 0x30
    if 0 <= hundreds <= 9 and 0 <= tens <= 9 and 0 <= units <= 9:
        return hundreds * 100 + tens * 10 + units
    return -1


def keeps_connection(raw: bytes, flags: int) -> bool:
    """Whether a head (with analyze()'s `flags`) shows by itself that the backend keeps the
    connection open: HTTP/1.1, framed by a Content-Length, and no Connection field but
    "keep-alive" (RFC 9112 §9.3), which is when llhttp's should_keep_alive() says yes. False
    only means llhttp must be asked."""
    return (flags & ~KEEP_ALIVE_ONLY) == HAS_LENGTH and raw.startswith(b"HTTP/1.1 ")


def _has_name(line: bytes, usual: bytes, lowercase: bytes) -> bool:
    """Whether the field on `line` is `lowercase` (a name and its colon), in any case; its
    `usual` spelling is tried first, which needs no copy."""
    size = len(lowercase)
    return (
        len(line) >= size
        and line[size - 1] == 0x3A  # the colon, where this name would end
        and (line.startswith(usual) or line[:size].lower() == lowercase)
    )


def _digits(line: bytes, start: int) -> int:
    """The number `line` holds from `start` on, between spaces and tabs; -1 for anything else.
    What llhttp lets through as a Content-Length, read without int()'s generic call."""
    value = -1
    after = False  # past the digits: only trailing space may follow
    for i in range(start, len(line)):
        byte = line[i]
        if 0x30 <= byte <= 0x39 and not after:
            value = (value * 10 if value > 0 else 0) + byte - 0x30
        elif byte == 0x20 or byte == 0x09:
            after = value >= 0
        else:
            return -1
    return value


def _analyze_found(found: list[tuple[bytes, bytes]]) -> tuple[int, int]:
    """analyze() from the special fields of a head that is not the common one."""
    flags = 0
    length = -1
    # the common head: at most a Content-Length and "Connection: keep-alive", once each
    for name, value in found:
        if name == b"content-length" and not flags & HAS_LENGTH:
            flags |= HAS_LENGTH
            length = int(value)  # llhttp checked it: digits and trailing space
        elif (
            name == b"connection"
            and not flags & KEEP_ALIVE_ONLY
            and value.rstrip() == b"keep-alive"
        ):
            flags |= KEEP_ALIVE_ONLY
        else:
            return _analyze_fields(found)
    return flags, length


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
