"""Parsing of `host:port` addresses as written in the config (`[::1]:8080` for IPv6)."""

from __future__ import annotations


def split_host_port(address: str) -> tuple[str, int]:
    """Split `host:port` or `[v6]:port` into host and port; ValueError says what is wrong."""
    text = address.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise ValueError(f"{address!r} is not [ipv6]:port")
        host, port_text = text[1:end], text[end + 2 :]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{address!r} is not host:port")
        if ":" in host:
            raise ValueError(f"{address!r}: write IPv6 addresses as [addr]:port")
    # isdigit alone accepts "²" and non-ASCII digits, which int() refuses or reads oddly.
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise ValueError(f"{address!r}: port must be a number from 1 to 65535")
    return host, int(port_text)


def join_host_port(host: str, port: int) -> str:
    """The canonical text form of an address, as split_host_port reads it."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
