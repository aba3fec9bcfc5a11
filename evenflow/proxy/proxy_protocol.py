"""The PROXY protocol, versions 1 and 2: building a header, and reading one off a stream's front.

Owns the wire format of HAProxy's "The PROXY protocol" (doc/proxy-protocol.txt; sections cited as
§). Sans-IO: bytes in, a ProxyResult or a ProxyProtocolError out. Which listeners accept a header,
which sources are trusted and which pools send one belong to config and the listener.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import struct
from collections.abc import Iterable
from typing import Literal

from evenflow.core.errors import BadRequest

Address = tuple[str, int]
Command = Literal["PROXY", "LOCAL"]
Family = Literal["inet", "inet6", "unix", "unspec"]
Transport = Literal["stream", "dgram", "unspec"]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

V1_PREFIX = b"PROXY "
# §2.1: the longest line is "PROXY UNKNOWN" with two full IPv6 addresses and ports, CRLF included.
V1_MAX_BYTES = 107
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_HEADER_BYTES = 16
V2_MAX_LENGTH = 0xFFFF  # §2.2: the length field is 16 bits, so a v2 header is at most 65551 bytes

# §2.2: registered TLV types.
PP2_TYPE_ALPN = 0x01
PP2_TYPE_AUTHORITY = 0x02
PP2_TYPE_CRC32C = 0x03
PP2_TYPE_NOOP = 0x04
PP2_TYPE_UNIQUE_ID = 0x05
PP2_TYPE_SSL = 0x20
PP2_TYPE_NETNS = 0x30

_FAMILIES: dict[int, Family] = {0x0: "unspec", 0x1: "inet", 0x2: "inet6", 0x3: "unix"}
_TRANSPORTS: dict[int, Transport] = {0x0: "unspec", 0x1: "stream", 0x2: "dgram"}
# §2.2: bytes of the address block per family (addresses, then ports for inet and inet6).
_ADDRESS_BYTES: dict[Family, int] = {"unspec": 0, "inet": 12, "inet6": 36, "unix": 216}


class ProxyProtocolError(BadRequest):
    """A PROXY header that does not match the spec; the listener closes the connection."""

    reason = "malformed PROXY protocol header"


@dataclasses.dataclass(frozen=True, slots=True)
class ProxyResult:
    """A parsed header.

    `source`/`destination` are the original endpoints, or None when the header carries none the
    receiver may use (v1 UNKNOWN, v2 LOCAL, an unspec family or transport, AF_UNIX): then the
    connection's own endpoints apply (§2.1, §2.2). `remaining` is what followed the header: the
    real stream's start. `tlvs` are v2's, in order as sent (NOOP and CRC32C included).
    """

    version: Literal[1, 2]
    command: Command
    family: Family
    transport: Transport
    source: Address | None
    destination: Address | None
    tlvs: tuple[tuple[int, bytes], ...]
    header_bytes: int
    remaining: bytes

    def tlv(self, tlv_type: int) -> bytes | None:
        """The value of the first TLV of this type, or None."""
        for kind, value in self.tlvs:
            if kind == tlv_type:
                return value
        return None


def encode_v1(src: Address | None, dst: Address | None) -> bytes:
    """The v1 line announcing a TCP connection from `src` to `dst`.

    "PROXY UNKNOWN" when an address is missing or the families differ (§2.1). Raises ValueError
    for a host that is not an IP address or a port out of range.
    """
    pair = _ip_pair(src, dst)
    if pair is None:
        return b"PROXY UNKNOWN\r\n"
    (src_ip, src_port), (dst_ip, dst_port) = pair
    proto = "TCP4" if src_ip.version == 4 else "TCP6"
    return f"PROXY {proto} {src_ip} {dst_ip} {src_port} {dst_port}\r\n".encode("ascii")


def encode_v2(
    src: Address | None,
    dst: Address | None,
    *,
    command: Command = "PROXY",
    transport: Literal["stream", "dgram"] = "stream",
    tlvs: Iterable[tuple[int, bytes]] = (),
    crc32c: bool = False,
) -> bytes:
    """The v2 header announcing a connection (or datagram flow) from `src` to `dst`.

    LOCAL ignores the addresses (§2.2: a health check). PROXY with a missing address or mixed
    families sends AF_UNSPEC. TLVs go out in the order given; with `crc32c`, a PP2_TYPE_CRC32C
    TLV is appended last (§2.2.3). Raises ValueError for a bad host, port or TLV, or addresses
    and TLVs past the 16-bit length.
    """
    pair = _ip_pair(src, dst) if command == "PROXY" else None
    if pair is None:
        fam_proto, block = 0x00, b""
    else:
        (src_ip, src_port), (dst_ip, dst_port) = pair
        family = 0x10 if src_ip.version == 4 else 0x20
        fam_proto = family | (0x1 if transport == "stream" else 0x2)
        block = src_ip.packed + dst_ip.packed + struct.pack("!HH", src_port, dst_port)
    parts = [block]
    for tlv_type, value in tlvs:
        if not 0 <= tlv_type <= 0xFF or len(value) > 0xFFFF:
            raise ValueError(f"TLV type {tlv_type} with {len(value)} bytes does not fit a TLV")
        parts.append(struct.pack("!BH", tlv_type, len(value)) + value)
    if crc32c:
        parts.append(struct.pack("!BHI", PP2_TYPE_CRC32C, 4, 0))
    payload = b"".join(parts)
    if len(payload) > V2_MAX_LENGTH:
        raise ValueError(f"PROXY v2 addresses and TLVs take {len(payload)} bytes, over 65535")
    ver_cmd = 0x21 if command == "PROXY" else 0x20
    header = V2_SIGNATURE + struct.pack("!BBH", ver_cmd, fam_proto, len(payload)) + payload
    if crc32c:
        header = header[:-4] + struct.pack("!I", crc32c_checksum(header))
    return header


class ProxyHeaderParser:
    """Reads one PROXY header (v1 or v2, told apart by the first bytes, §2.2) off a stream's front.

    Feed bytes as they arrive: None means "need more"; a ProxyResult is final. At EOF call
    finish(), which raises if a header was begun or never came. At most one header's worth is
    buffered: 107 bytes for v1, 16 + `max_v2_length` for v2.
    """

    __slots__ = ("_buf", "_max_v2_length", "_limit", "_done")

    def __init__(self, *, max_v2_length: int = V2_MAX_LENGTH) -> None:
        if not 0 <= max_v2_length <= V2_MAX_LENGTH:
            raise ValueError(f"max_v2_length must be in 0..65535, got {max_v2_length}")
        self._buf = bytearray()
        self._max_v2_length = max_v2_length
        self._limit = max(V1_MAX_BYTES, V2_HEADER_BYTES + max_v2_length)
        self._done = False

    @property
    def buffered_bytes(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> ProxyResult | None:
        """Add bytes; return the result once the header is complete. Raises ProxyProtocolError."""
        if self._done:
            raise RuntimeError("ProxyHeaderParser.feed() called after it returned or raised")
        # Take only what a header can still need; anything beyond is the stream and goes back
        # untouched in `remaining`, so garbage never grows the buffer past the bound.
        first = self._buf[:1] or data[:1]
        limit = V1_MAX_BYTES if first == V1_PREFIX[:1] else self._limit
        room = limit - len(self._buf)
        self._buf += data[:room]
        try:
            parsed = self._parse()
        except ProxyProtocolError:
            self._done = True
            raise
        if parsed is None:
            return None  # undecided only while under the limit, so nothing of `data` was left
        self._done = True
        rest = bytes(self._buf[parsed.header_bytes :])
        self._buf = bytearray()
        if len(data) > room:
            rest += data[room:]
        return dataclasses.replace(parsed, remaining=rest)

    def finish(self) -> None:
        """The peer closed: raise unless a header was already returned (or rejected)."""
        if self._done:
            return
        self._done = True
        if not self._buf:
            raise ProxyProtocolError("connection closed before a PROXY header arrived")
        raise ProxyProtocolError(
            f"connection closed inside a PROXY header, after {len(self._buf)} bytes"
        )

    def _parse(self) -> ProxyResult | None:
        buf = self._buf
        if not buf:
            return None
        if buf[0] == V2_SIGNATURE[0]:
            return self._parse_v2()
        if buf[0] == V1_PREFIX[0]:
            return self._parse_v1()
        raise ProxyProtocolError(
            f"not a PROXY header: starts with {bytes(buf[:8])!r}, expected 'PROXY ' or the v2 "
            "signature"
        )

    def _parse_v1(self) -> ProxyResult | None:
        buf = self._buf
        head = bytes(buf[: len(V1_PREFIX)])
        if not V1_PREFIX.startswith(head):
            raise ProxyProtocolError(f"v1: bad signature {head!r}, expected 'PROXY '")
        cr, lf = buf.find(b"\r", 0, V1_MAX_BYTES), buf.find(b"\n", 0, V1_MAX_BYTES)
        if lf >= 0 and (cr < 0 or lf < cr):
            raise ProxyProtocolError(f"v1: bare LF at byte {lf}, the line must end in CRLF")
        if cr < 0:
            if len(buf) >= V1_MAX_BYTES:
                raise ProxyProtocolError("v1: no CRLF in the first 107 bytes (§2.1)")
            return None
        if cr + 1 >= V1_MAX_BYTES:
            raise ProxyProtocolError("v1: line longer than 107 bytes (§2.1)")
        if cr + 1 == len(buf):
            return None
        if buf[cr + 1] != 0x0A:
            raise ProxyProtocolError(f"v1: CR at byte {cr} not followed by LF")
        fields = bytes(buf[len(V1_PREFIX) : cr]).split(b" ")
        header_bytes = cr + 2
        # §2.1: after UNKNOWN the receiver ignores everything up to the CRLF.
        if fields[0] == b"UNKNOWN":
            return ProxyResult(1, "PROXY", "unspec", "unspec", None, None, (), header_bytes, b"")
        if fields[0] not in (b"TCP4", b"TCP6"):
            raise ProxyProtocolError(
                f"v1: unknown protocol {fields[0]!r}, expected TCP4, TCP6 or UNKNOWN"
            )
        if len(fields) != 5:
            raise ProxyProtocolError(
                f"v1: {fields[0].decode()} needs 4 fields separated by single spaces, "
                f"got {len(fields) - 1}"
            )
        version = 4 if fields[0] == b"TCP4" else 6
        src = (_v1_address(fields[1], version, "source"), _v1_port(fields[3], "source"))
        dst = (_v1_address(fields[2], version, "destination"), _v1_port(fields[4], "destination"))
        family: Family = "inet" if version == 4 else "inet6"
        return ProxyResult(1, "PROXY", family, "stream", src, dst, (), header_bytes, b"")

    def _parse_v2(self) -> ProxyResult | None:
        buf = self._buf
        head = bytes(buf[: len(V2_SIGNATURE)])
        if not V2_SIGNATURE.startswith(head):
            raise ProxyProtocolError(f"v2: bad signature {head!r}")
        # Reject a bad version, command or family as soon as its byte arrives (§2.2).
        if len(buf) > 12 and buf[12] >> 4 != 2:
            raise ProxyProtocolError(f"v2: unsupported version {buf[12] >> 4}, expected 2")
        if len(buf) > 12 and buf[12] & 0x0F not in (0x0, 0x1):
            raise ProxyProtocolError(f"v2: unknown command 0x{buf[12] & 0x0F:x}")
        if len(buf) > 13 and buf[13] >> 4 not in _FAMILIES:
            raise ProxyProtocolError(f"v2: unknown address family 0x{buf[13] >> 4:x}")
        if len(buf) > 13 and buf[13] & 0x0F not in _TRANSPORTS:
            raise ProxyProtocolError(f"v2: unknown transport protocol 0x{buf[13] & 0x0F:x}")
        if len(buf) < V2_HEADER_BYTES:
            return None
        length = int.from_bytes(buf[14:16], "big")
        if length > self._max_v2_length:
            raise ProxyProtocolError(
                f"v2: header declares {length} bytes, over this listener's {self._max_v2_length}"
            )
        header_bytes = V2_HEADER_BYTES + length
        if len(buf) < header_bytes:
            return None
        header = bytes(buf[:header_bytes])
        command: Command = "PROXY" if header[12] & 0x0F else "LOCAL"
        family, transport = _FAMILIES[header[13] >> 4], _TRANSPORTS[header[13] & 0x0F]
        address_bytes = _ADDRESS_BYTES[family]
        block = header[V2_HEADER_BYTES:]
        src = dst = None
        if command == "PROXY" and family != "unspec" and transport != "unspec":
            if length < address_bytes:
                raise ProxyProtocolError(
                    f"v2: length {length} too short for {family} addresses ({address_bytes} bytes)"
                )
            if family in ("inet", "inet6"):
                src, dst = _v2_addresses(block, family)
        elif length < address_bytes:
            # §2.2: LOCAL and unspec headers ignore the address block; what is there is opaque.
            address_bytes = length
        tlvs = parse_tlvs(block[address_bytes:])
        _check_crc32c(header, tlvs, V2_HEADER_BYTES + address_bytes)
        return ProxyResult(2, command, family, transport, src, dst, tlvs, header_bytes, b"")


def parse_tlvs(data: bytes) -> tuple[tuple[int, bytes], ...]:
    """Split a v2 TLV area into (type, value) pairs, in order.

    Also splits a PP2_TYPE_SSL value's sub-TLVs (after its 5-byte client/verify prefix, §2.2.6).
    Raises ProxyProtocolError when a TLV overruns the area.
    """
    tlvs = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 3:
            raise ProxyProtocolError(f"v2: truncated TLV header at TLV offset {pos}")
        tlv_type, size = data[pos], int.from_bytes(data[pos + 1 : pos + 3], "big")
        if pos + 3 + size > len(data):
            raise ProxyProtocolError(
                f"v2: TLV 0x{tlv_type:02x} at offset {pos} declares {size} bytes, "
                f"only {len(data) - pos - 3} remain"
            )
        tlvs.append((tlv_type, data[pos + 3 : pos + 3 + size]))
        pos += 3 + size
    return tuple(tlvs)


def crc32c_checksum(data: bytes) -> int:
    """CRC-32C (Castagnoli, RFC 4960 appendix B), as PP2_TYPE_CRC32C carries it (§2.2.3)."""
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for index in range(256):
        crc = index
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def _check_crc32c(header: bytes, tlvs: tuple[tuple[int, bytes], ...], tlv_start: int) -> None:
    # §2.2.3: a receiver that supports the checksum MUST verify it with the field zeroed.
    crcs = [value for kind, value in tlvs if kind == PP2_TYPE_CRC32C]
    if not crcs:
        return
    if len(crcs) > 1 or len(crcs[0]) != 4:
        raise ProxyProtocolError("v2: the CRC32C TLV must appear once, with 4 bytes")
    zeroed = bytearray(header)
    pos = tlv_start
    while header[pos] != PP2_TYPE_CRC32C:
        pos += 3 + int.from_bytes(header[pos + 1 : pos + 3], "big")
    zeroed[pos + 3 : pos + 7] = bytes(4)
    expected = int.from_bytes(crcs[0], "big")
    actual = crc32c_checksum(bytes(zeroed))
    if actual != expected:
        raise ProxyProtocolError(
            f"v2: CRC32C mismatch: header says 0x{expected:08x}, computed 0x{actual:08x}"
        )


def _v1_address(field: bytes, version: int, which: str) -> str:
    problem = f"v1: {which} address {field!r} is not an IPv{version} address"
    # A scope ("fe80::1%eth0") names an interface of the sender's, no address of the client's.
    if not field.isascii() or b"%" in field:
        raise ProxyProtocolError(problem)
    ip_type = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    try:
        ip = ip_type(field.decode())  # IPv4Address refuses leading zeros, as §2.1 requires
    except ValueError:
        raise ProxyProtocolError(problem) from None
    return str(ip)


def _v1_port(field: bytes, which: str) -> int:
    # §2.1: decimal 0..65535, no leading zeros.
    if not (field.isdigit() and len(field) <= 5 and (field == b"0" or field[:1] != b"0")):
        raise ProxyProtocolError(f"v1: {which} port {field!r} is not a decimal in 0..65535")
    port = int(field)
    if port > 65535:
        raise ProxyProtocolError(f"v1: {which} port {port} is over 65535")
    return port


def _v2_addresses(block: bytes, family: Family) -> tuple[Address, Address]:
    size = 4 if family == "inet" else 16
    ip_type = ipaddress.IPv4Address if family == "inet" else ipaddress.IPv6Address
    src_ip, dst_ip = ip_type(block[:size]), ip_type(block[size : 2 * size])
    src_port, dst_port = struct.unpack_from("!HH", block, 2 * size)
    return (str(src_ip), src_port), (str(dst_ip), dst_port)


def _ip_pair(
    src: Address | None, dst: Address | None
) -> tuple[tuple[IPAddress, int], tuple[IPAddress, int]] | None:
    """Both endpoints as IP objects of one family, or None when that is not possible."""
    if src is None or dst is None:
        return None
    src_ip, dst_ip = _ip(src, "source"), _ip(dst, "destination")
    if src_ip.version != dst_ip.version:
        # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; unmapped, they may agree.
        src_ip, dst_ip = _unmapped(src_ip), _unmapped(dst_ip)
        if src_ip.version != dst_ip.version:
            return None
    return (src_ip, src[1]), (dst_ip, dst[1])


def _ip(address: Address, which: str) -> IPAddress:
    host, port = address
    if not 0 <= port <= 65535:
        raise ValueError(f"{which} port {port} is not in 0..65535")
    try:
        # A link-local scope ("fe80::1%eth0") means nothing to the receiver; the wire has no room.
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        raise ValueError(f"{which} host {host!r} is not an IP address") from None


def _unmapped(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip
