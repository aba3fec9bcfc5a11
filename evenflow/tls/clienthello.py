"""Peek at a TLS ClientHello for its server_name (SNI) and ALPN offers, without terminating TLS.

Owns just enough of the record layer (RFC 8446 §5.1, RFC 5246 §6.2) to reassemble the first
handshake message, and the ClientHello (RFC 8446 §4.1.2) up to the server_name (RFC 6066 §3) and
ALPN (RFC 7301 §3.1) extensions. It only reads: the caller forwards every byte it fed, unchanged,
to a backend that terminates TLS. Pools and routes are not its business.
"""

from __future__ import annotations

import dataclasses

from evenflow.core.errors import BadRequest

RECORD_HEADER_BYTES = 5
MAX_FRAGMENT_BYTES = 2**14  # RFC 8446 §5.1: a record's length MUST NOT exceed 2^14
# A ClientHello fits in one full record: even post-quantum key shares keep it near 2 KB.
MAX_HELLO_BYTES = 2**14
# Bytes a listener holds before deciding: the hello plus room for ~200 record headers, so a hello
# cut into small records still fits but a stream of empty-ish records cannot pin memory.
MAX_PEEK_BYTES = MAX_HELLO_BYTES + 1024

_HANDSHAKE = 0x16
_CLIENT_HELLO = 0x01
_EXT_SERVER_NAME = 0
_EXT_ALPN = 16
_NAME_TYPE_HOST_NAME = 0


class ClientHelloError(BadRequest):
    """The stream does not open with a well-formed TLS ClientHello; the listener closes it."""

    reason = "not a TLS ClientHello"


@dataclasses.dataclass(frozen=True, slots=True)
class ClientHelloResult:
    """What the ClientHello asked for.

    `server_name`: the SNI host_name, lowercased, without a trailing dot; None when the client
    sent none (an IP literal target, or a client without SNI). `alpn_protocols`: the offered ALPN
    names in the client's order, decoded as Latin-1 so any byte survives (RFC 7301 names are
    opaque); empty when no ALPN extension was sent.
    """

    server_name: str | None
    alpn_protocols: tuple[str, ...]


class ClientHelloParser:
    """Feed the stream's first bytes; None means "need more", a result is final.

    Bytes past the ClientHello are ignored (the caller keeps and forwards them). At EOF call
    finish(), which raises if no ClientHello completed. Holds at most `max_hello_bytes` plus one
    record header, and reads at most `max_peek_bytes` of stream before giving up.
    """

    __slots__ = (
        "_max_hello_bytes",
        "_max_peek_bytes",
        "_peeked",
        "_records",
        "_record_header",
        "_record_left",
        "_hello",
        "_hello_bytes",
        "_done",
    )

    def __init__(
        self, *, max_hello_bytes: int = MAX_HELLO_BYTES, max_peek_bytes: int = MAX_PEEK_BYTES
    ) -> None:
        self._max_hello_bytes = max_hello_bytes
        self._max_peek_bytes = max_peek_bytes
        self._peeked = 0  # stream bytes examined so far
        self._records = 0  # records whose header has been read
        self._record_header = bytearray()  # a record header split across reads
        self._record_left = 0  # fragment bytes of the current record not yet read
        self._hello = bytearray()  # the handshake message reassembled from fragments
        self._hello_bytes = -1  # its full size, header included, once known
        self._done = False

    @property
    def peeked_bytes(self) -> int:
        """Stream bytes examined so far (the caller holds at least these to forward)."""
        return self._peeked

    def feed(self, data: bytes) -> ClientHelloResult | None:
        """Look at the next bytes of the stream. Raises ClientHelloError."""
        if self._done:
            raise RuntimeError("ClientHelloParser.feed() called after it returned or raised")
        try:
            with memoryview(data) as view:
                result = self._consume(view)
        except ClientHelloError:
            self._done = True
            raise
        if result is None and self._peeked >= self._max_peek_bytes:
            self._done = True
            raise ClientHelloError(
                f"no complete ClientHello in the first {self._max_peek_bytes} bytes"
            )
        self._done = result is not None
        return result

    def finish(self) -> None:
        """The peer closed: raise unless a ClientHello was already returned (or rejected)."""
        if self._done:
            return
        self._done = True
        if self._peeked == 0:
            raise ClientHelloError("connection closed before a ClientHello arrived")
        raise ClientHelloError(
            f"connection closed after {self._peeked} bytes, inside the ClientHello"
        )

    def _consume(self, view: memoryview) -> ClientHelloResult | None:
        pos = 0
        end = min(len(view), self._max_peek_bytes - self._peeked)
        while pos < end:
            if self._record_left == 0:
                take = min(RECORD_HEADER_BYTES - len(self._record_header), end - pos)
                self._record_header += view[pos : pos + take]
                self._check_record_header()
            else:
                take = min(self._record_left, end - pos, self._hello_needs())
                self._hello += view[pos : pos + take]
                self._record_left -= take
            pos += take
            self._peeked += take
            result = self._check_hello()
            if result is not None:
                return result
        return None

    def _check_record_header(self) -> None:
        header = self._record_header
        if header[0] != _HANDSHAKE:
            if self._records == 0:
                raise ClientHelloError(
                    f"not TLS: first byte 0x{header[0]:02x} is not a handshake record (0x16)"
                )
            # RFC 8446 §5.1: handshake messages MUST NOT be interleaved with other record types.
            raise ClientHelloError(
                f"record {self._records + 1} has type 0x{header[0]:02x} before the ClientHello "
                "was complete"
            )
        # RFC 8446 §5.1: legacy_record_version is 0x0301 or 0x0303; older stacks send 0x0300.
        if (len(header) >= 2 and header[1] != 3) or (len(header) >= 3 and header[2] > 4):
            raise ClientHelloError(
                f"record {self._records + 1}: version bytes 0x{bytes(header[1:3]).hex()} "
                "are not TLS 0x0300..0x0304"
            )
        if len(header) < RECORD_HEADER_BYTES:
            return
        length = int.from_bytes(header[3:5], "big")
        # RFC 8446 §5.1: no zero-length handshake fragments, none over 2^14.
        if not 0 < length <= MAX_FRAGMENT_BYTES:
            raise ClientHelloError(
                f"record {self._records + 1}: length {length} is not in 1..{MAX_FRAGMENT_BYTES}"
            )
        self._records += 1
        self._record_left = length
        self._record_header.clear()

    def _hello_needs(self) -> int:
        # Until the 4-byte handshake header is in, only it; then the rest of the message.
        if self._hello_bytes < 0:
            return 4 - len(self._hello)
        return self._hello_bytes - len(self._hello)

    def _check_hello(self) -> ClientHelloResult | None:
        hello = self._hello
        if not hello:
            return None
        if hello[0] != _CLIENT_HELLO:
            raise ClientHelloError(f"handshake message type {hello[0]} is not a ClientHello (1)")
        if self._hello_bytes < 0:
            if len(hello) < 4:
                return None
            self._hello_bytes = 4 + int.from_bytes(hello[1:4], "big")
            if self._hello_bytes > self._max_hello_bytes:
                raise ClientHelloError(
                    f"ClientHello of {self._hello_bytes} bytes is over the "
                    f"{self._max_hello_bytes}-byte limit"
                )
        if len(hello) < self._hello_bytes:
            return None
        return _parse_client_hello(bytes(hello[4:]))


class _Reader:
    """A cursor over one length-delimited block; every overrun names the field it was in."""

    __slots__ = ("_data", "_pos", "_end", "_where")

    def __init__(self, data: bytes, start: int, end: int, where: str) -> None:
        self._data, self._pos, self._end, self._where = data, start, end, where

    def at_end(self) -> bool:
        return self._pos >= self._end

    def left(self) -> int:
        return self._end - self._pos

    def take(self, size: int, what: str) -> bytes:
        if size > self.left():
            raise ClientHelloError(
                f"{self._where} ends inside {what}: needs {size} bytes, {self.left()} left"
            )
        chunk = self._data[self._pos : self._pos + size]
        self._pos += size
        return chunk

    def uint(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what), "big")

    def vector(self, length_bytes: int, what: str) -> _Reader:
        """A sub-reader over a vector whose length prefix is `length_bytes` wide."""
        size = self.uint(length_bytes, f"the length of {what}")
        if size > self.left():
            raise ClientHelloError(
                f"{what} length {size} overruns {self._where} ({self.left()} bytes left)"
            )
        sub = _Reader(self._data, self._pos, self._pos + size, what)
        self._pos += size
        return sub

    def rest(self) -> bytes:
        return self.take(self.left(), "the rest")

    def expect_end(self) -> None:
        if not self.at_end():
            raise ClientHelloError(f"{self.left()} stray bytes after {self._where}")


def _parse_client_hello(body: bytes) -> ClientHelloResult:
    # RFC 8446 §4.1.2 (and RFC 5246 §7.4.1.2 for TLS 1.2 and earlier).
    reader = _Reader(body, 0, len(body), "ClientHello")
    version = reader.uint(2, "legacy_version")
    if version >> 8 != 3:
        raise ClientHelloError(f"ClientHello legacy_version 0x{version:04x} is not TLS")
    reader.take(32, "random")
    session_id = reader.vector(1, "legacy_session_id")
    if session_id.left() > 32:
        raise ClientHelloError(f"legacy_session_id of {session_id.left()} bytes, over 32")
    suites = reader.vector(2, "cipher_suites")
    if suites.left() < 2 or suites.left() % 2:
        raise ClientHelloError(f"cipher_suites of {suites.left()} bytes: not a list of 2-byte ids")
    if reader.vector(1, "legacy_compression_methods").at_end():
        raise ClientHelloError("empty legacy_compression_methods")
    if reader.at_end():
        # RFC 5246 §7.4.1.2: extensions may be absent altogether.
        return ClientHelloResult(None, ())
    extensions = reader.vector(2, "extensions")
    reader.expect_end()
    server_name: str | None = None
    alpn: tuple[str, ...] = ()
    seen: set[int] = set()
    while not extensions.at_end():
        ext_type = extensions.uint(2, "an extension type")
        ext = extensions.vector(2, f"extension {ext_type}")
        # RFC 8446 §4.2: at most one extension of a type. A second server_name could route one
        # way here and be honoured another way by the backend.
        if ext_type in seen:
            raise ClientHelloError(f"extension {ext_type} appears twice")
        seen.add(ext_type)
        if ext_type == _EXT_SERVER_NAME:
            server_name = _parse_server_name(ext)
        elif ext_type == _EXT_ALPN:
            alpn = _parse_alpn(ext)
    return ClientHelloResult(server_name, alpn)


def _parse_server_name(ext: _Reader) -> str:
    # RFC 6066 §3: ServerNameList of (name_type, opaque<1..2^16-1>); one host_name at most.
    names = ext.vector(2, "server_name_list")
    ext.expect_end()
    if names.at_end():
        raise ClientHelloError("server_name extension with an empty server_name_list")
    host_name: str | None = None
    while not names.at_end():
        name_type = names.uint(1, "a name_type")
        # RFC 6066 §3: every future name type also starts with a 16-bit length, so skip those.
        raw = names.vector(2, "a server name").rest()
        if name_type != _NAME_TYPE_HOST_NAME:
            continue
        if host_name is not None:
            raise ClientHelloError("server_name_list holds more than one host_name")
        bad = next((byte for byte in raw if not 0x21 <= byte <= 0x7E), None)
        if bad is not None:
            raise ClientHelloError(f"host_name contains byte 0x{bad:02x}, not a DNS name")
        host_name = raw.decode("ascii").lower()
        host_name = host_name[:-1] if host_name.endswith(".") else host_name
        if not host_name:
            raise ClientHelloError("empty host_name in server_name")
    if host_name is None:
        raise ClientHelloError("server_name extension without a host_name")
    return host_name


def _parse_alpn(ext: _Reader) -> tuple[str, ...]:
    # RFC 7301 §3.1: ProtocolName protocol_name_list<2..2^16-1>, each name opaque<1..2^8-1>.
    names = ext.vector(2, "protocol_name_list")
    ext.expect_end()
    if names.at_end():
        raise ClientHelloError("ALPN extension with an empty protocol_name_list")
    protocols = []
    while not names.at_end():
        name = names.vector(1, "an ALPN protocol name").rest()
        if not name:
            raise ClientHelloError("empty ALPN protocol name")
        protocols.append(name.decode("latin-1"))
    return tuple(protocols)


def sni_matches(name: str, pattern: str) -> bool:
    """Whether a server name matches an exact name or a "*.example.com" wildcard.

    Case-insensitive; a trailing dot on either side is ignored. The wildcard stands for exactly
    one non-empty label: "*.example.com" matches "a.example.com", not "example.com" or
    "a.b.example.com". A "*" anywhere else is literal.
    """
    name, pattern = name.lower().removesuffix("."), pattern.lower().removesuffix(".")
    if pattern.startswith("*.") and len(pattern) > 2:
        suffix = pattern[1:]
        label = name[: -len(suffix)] if name.endswith(suffix) else ""
        return bool(label) and "." not in label
    return name == pattern
