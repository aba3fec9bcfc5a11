"""The access log's text option: a finished request as Apache's combined format, in bytes.

`client - - [time] "method target version" status bytes "referer" "agent"`: the target, the
referer and the agent are written as received (latin-1), a quote or a backslash in them
escaped with a backslash; the client and the method as they are. Characters some readers take
for line breaks (NEL, which a client can send as 0x85, LINE and PARAGRAPH SEPARATOR) are
written as \\u escapes, as in the JSON lines, so a line is always one line. The time is
formatted once a second, the client and method once per change, the rest checked by one native
loop over its bytes and copied: ~1/5 of what a str f-string, quoted and encoded, cost
(bench/instructions.py).

It knows nothing of files, batches or the loop: access_log.py writes the lines.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

from evenflow.core.request import RequestHead
from evenflow.observability.log_numbers import DIGITS, Number

if TYPE_CHECKING:  # i64: a native int to mypyc, only ever an annotation (not run)
    from mypy_extensions import i64


class CombinedLines:
    """Encodes finished requests as combined-format lines (see `line`), keeping the time of
    the current second, the last client and the last method encoded."""

    __slots__ = ("_second", "_second_text", "_client", "_client_text", "_method", "_method_text")

    def __init__(self) -> None:
        self._second = -1
        self._second_text = b""
        self._client = self._method = ""
        self._client_text = self._method_text = b""

    def line(self, at: float, req: RequestHead, status: int, bytes_out: int, http10: bool) -> bytes:
        """One request's line, UTF-8, ending in a newline. `at`: wall-clock seconds."""
        second = int(at)
        if second != self._second:
            stamp = time.strftime(' - - [%d/%b/%Y:%H:%M:%S +0000] "', time.gmtime(second))
            self._second_text = stamp.encode()
            self._second = second
        client = req.client_ip
        if client != self._client:  # (identical strings compare without reading them)
            self._client_text = _text_bytes(client)
            self._client = client
        method = req.method
        if method != self._method:
            self._method_text = _text_bytes(method) + b" "
            self._method = method
        target = req.raw_target
        referer = req.header(b"referer")
        agent = req.header(b"user-agent")
        out_high, out_low = _BYTES_OUT.count(bytes_out)
        return b'%b%b%b%b%b%b%b%b "%b" "%b"\n' % (
            self._client_text,
            self._second_text,
            self._method_text,
            _quoted_latin1(target) if isinstance(target, bytes) else _quoted(target),
            b' HTTP/1.0" ' if http10 else b' HTTP/1.1" ',
            DIGITS[status] if 0 <= status < 1000 else b"%d" % status,
            out_high,
            out_low,
            # absent or empty: "-" (len: native, where truth is a call)
            b"-" if referer is None or len(referer) == 0 else _quoted_latin1(referer),
            b"-" if agent is None or len(agent) == 0 else _quoted_latin1(agent),
        )


_BYTES_OUT: Final = Number(b" ")


def _text_bytes(text: str) -> bytes:
    """`text` as UTF-8, with what UTF-8 cannot hold (a lone surrogate) backslash-escaped and
    the characters some readers take for line breaks escaped."""
    return line_breaks_escaped(text.encode("utf-8", "backslashreplace"))


def _quoted(text: str) -> bytes:
    """`text` between quotes: a quote or a backslash escaped with a backslash."""
    return _text_bytes(text.replace("\\", "\\\\").replace('"', '\\"'))


def _quoted_latin1(raw: bytes) -> bytes:
    """Bytes as received (latin-1) between quotes: the bytes themselves when they are ASCII
    with no quote or backslash."""
    return raw if _is_unquoted(raw) else _quoted(raw.decode("latin-1"))


def _is_unquoted(raw: bytes) -> bool:
    """Every byte ASCII, none a quote or a backslash: a native loop, ~14 instructions a byte."""
    size: i64 = len(raw)
    i: i64 = 0
    while i < size:
        byte: i64 = raw[i]
        if byte == 0x22 or byte == 0x5C or byte >= 0x80:
            return False
        i += 1
    return True


# NEL, LINE SEPARATOR and PARAGRAPH SEPARATOR, as UTF-8: line breaks to str.splitlines() and
# some log shippers. Their lead bytes never continue another character.
_LINE_BREAKS: Final = (
    (b"\xc2\x85", b"\\u0085"),
    (b"\xe2\x80\xa8", b"\\u2028"),
    (b"\xe2\x80\xa9", b"\\u2029"),
)


def line_breaks_escaped(data: bytes) -> bytes:
    if b"\xc2" not in data and b"\xe2" not in data:
        return data  # the common case: two memchr scans for the lead bytes, no line break
    for raw, escaped in _LINE_BREAKS:
        data = data.replace(raw, escaped)
    return data
