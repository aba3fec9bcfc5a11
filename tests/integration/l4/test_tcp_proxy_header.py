"""The PROXY protocol on tcp listeners: accepted from trusted senders only (accept_proxy), and
sent to backends (send_proxy v1/v2) so that they see the real client address."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from l4_support import (
    Accepted,
    Evenflow,
    TcpBackend,
    blocking,
    connect,
    echo,
    how_closed,
    proxy_header_reader,
    recv_exactly,
    recv_line,
    tcp_config,
)

from evenflow.proxy.proxy_protocol import encode_v2

StartEvenflow = Callable[[dict[str, Any]], Awaitable[Evenflow]]
StartBackend = Callable[..., TcpBackend]

V1_HEADER = b"PROXY TCP4 203.0.113.7 198.51.100.1 40000 443\r\n"
V2_HEADER = encode_v2(("203.0.113.7", 40000), ("198.51.100.1", 443))


def tells_source(conn: Accepted) -> None:
    """Reads the PROXY header evenflow sent, answers `ip port` of its source, then echoes."""
    result = proxy_header_reader(conn)
    conn.events.append(f"{result.version} {result.command} {result.transport}")
    assert result.source is not None and result.destination is not None
    (src_ip, src_port), (dst_ip, dst_port) = result.source, result.destination
    answer = f"{src_ip} {src_port} {dst_ip} {dst_port}\n"
    conn.sock.sendall(answer.encode() + result.remaining)
    echo(conn)


@pytest.mark.parametrize("header", [V1_HEADER, V2_HEADER], ids=["v1", "v2"])
async def test_trusted_sender_header_is_stripped_and_names_the_client(
    evenflow: StartEvenflow, tcp_backend: StartBackend, header: bytes
) -> None:
    backend = tcp_backend(echo)
    ef = await evenflow(
        tcp_config(
            {"p": {"backends": [backend.address]}},
            pool="p",
            accept_proxy={"trusted": ["127.0.0.0/8"]},
        )
    )

    def client() -> bytes:
        with connect(ef.port()) as sock:
            sock.sendall(header + b"payload")
            return recv_exactly(sock, 7)

    assert await blocking(client) == b"payload"  # the backend got the stream without the header
    (line,) = await ef.wait_log(1)
    assert line["client"] == "203.0.113.7"


async def test_header_arriving_in_pieces_is_read_whole(
    evenflow: StartEvenflow, tcp_backend: StartBackend
) -> None:
    backend = tcp_backend(tells_source)
    ef = await evenflow(
        tcp_config(
            {"p": {"backends": [backend.address], "send_proxy": "v1"}},
            pool="p",
            accept_proxy={"trusted": ["127.0.0.0/8"]},
        )
    )

    def client() -> tuple[bytes, bytes]:
        with connect(ef.port()) as sock:
            for piece in (V2_HEADER[:5], V2_HEADER[5:17], V2_HEADER[17:] + b"da"):
                sock.sendall(piece)
                time.sleep(0.05)
            sock.sendall(b"ta")
            return recv_line(sock), recv_exactly(sock, 4)

    # the address the tier in front saw goes on to the backend (PROXY in, PROXY out)
    assert await blocking(client) == (b"203.0.113.7 40000 198.51.100.1 443\n", b"data")


async def test_untrusted_sender_is_closed(
    evenflow: StartEvenflow, tcp_backend: StartBackend
) -> None:
    backend = tcp_backend(echo)
    ef = await evenflow(
        tcp_config(
            {"p": {"backends": [backend.address]}},
            pool="p",
            accept_proxy={"trusted": ["10.0.0.0/8"]},
        )
    )

    def client() -> str:
        with connect(ef.port()) as sock:
            sock.sendall(V1_HEADER + b"payload")
            return how_closed(sock, 2)

    assert await blocking(client) in ("eof", "reset")
    assert backend.count == 0


@pytest.mark.parametrize(
    "start",
    [
        b"PROXY TCP4 203.0.113.7 nonsense\r\n",
        b"PROXY TCP4 203.0.113.7 198.51.100.1 99999 443\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        V2_HEADER[:12] + b"\x99" + V2_HEADER[13:],
    ],
    ids=["v1-garbage", "v1-bad-port", "no-header", "v2-bad-version"],
)
async def test_malformed_header_is_closed(
    evenflow: StartEvenflow, tcp_backend: StartBackend, start: bytes
) -> None:
    backend = tcp_backend(echo)
    ef = await evenflow(
        tcp_config(
            {"p": {"backends": [backend.address]}},
            pool="p",
            accept_proxy={"trusted": ["127.0.0.0/8"]},
        )
    )

    def client() -> str:
        with connect(ef.port()) as sock:
            sock.sendall(start + b"payload")
            return how_closed(sock, 2)

    assert await blocking(client) in ("eof", "reset")
    assert backend.count == 0


@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_send_proxy_backend_sees_the_client_address(
    evenflow: StartEvenflow, tcp_backend: StartBackend, version: str
) -> None:
    backend = tcp_backend(tells_source)
    ef = await evenflow(
        tcp_config({"p": {"backends": [backend.address], "send_proxy": version}}, pool="p")
    )

    def client() -> tuple[bytes, int, bytes]:
        # from 127.0.0.2, so the client is told apart from evenflow's own 127.0.0.1
        with connect(ef.port(), "127.0.0.2") as sock:
            port = sock.getsockname()[1]
            sock.sendall(b"first bytes")
            return recv_line(sock), port, recv_exactly(sock, 11)

    seen, client_port, rest = await blocking(client)
    assert seen == b"127.0.0.2 %d 127.0.0.1 %d\n" % (client_port, ef.port())
    assert rest == b"first bytes"  # what followed the header is the client's stream, intact
    assert backend.accepted[0].events[0] == f"{version[1]} PROXY stream"
    assert backend.accepted[0].peer[0] == "127.0.0.1"  # the socket itself is evenflow's
