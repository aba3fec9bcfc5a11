"""TLS passthrough: a tcp listener routes on the ClientHello's server name without terminating
TLS; exact names, `*.` wildcards, a default route for no (or no matching) name."""

from __future__ import annotations

import hashlib
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
from l4_support import (
    Accepted,
    Evenflow,
    TcpBackend,
    blocking,
    client_hello,
    connect,
    how_closed,
    recv_until_eof,
    tcp_config,
)

StartEvenflow = Callable[[dict[str, Any]], Awaitable[Evenflow]]
StartBackend = Callable[..., TcpBackend]


def names_itself(conn: Accepted) -> None:
    """Answers its name and the sha256 of the first bytes it got (a ClientHello, here)."""
    data = conn.sock.recv(65536)
    digest = hashlib.sha256(data).hexdigest().encode()
    conn.sock.sendall(b"%s %s\n" % (conn.backend.name.encode(), digest))
    conn.sock.shutdown(socket.SHUT_WR)


@pytest.fixture
async def routed(evenflow: StartEvenflow, tcp_backend: StartBackend) -> Evenflow:
    pools = {
        name: {"backends": [tcp_backend(names_itself, name).address]}
        for name in ("alpha", "wild", "default")
    }
    return await evenflow(
        tcp_config(
            pools,
            routes=[
                {"match": {"sni": "alpha.test"}, "pool": "alpha"},
                {"match": {"sni": "*.wild.test"}, "pool": "wild"},
                {"pool": "default"},
            ],
        )
    )


def ask(port: int, first: bytes, pause_after: int | None = None) -> bytes:
    with connect(port) as sock:
        if pause_after is None:
            sock.sendall(first)
        else:  # the ClientHello split over two segments
            sock.sendall(first[:pause_after])
            time.sleep(0.1)
            sock.sendall(first[pause_after:])
        return recv_until_eof(sock)


@pytest.mark.parametrize(
    ("server_name", "pool"),
    [
        ("alpha.test", "alpha"),
        ("ALPHA.test", "alpha"),
        ("api.wild.test", "wild"),
        ("wild.test", "default"),  # *.wild.test is one label under it, not the apex
        ("a.b.wild.test", "default"),  # nor two labels
        ("other.test", "default"),
        (None, "default"),  # no SNI at all
    ],
)
async def test_server_name_picks_the_pool(
    routed: Evenflow, server_name: str | None, pool: str
) -> None:
    hello = client_hello(server_name)
    answer = await blocking(ask, routed.port(), hello)
    # the backend got the ClientHello byte for byte: TLS is not terminated
    assert answer == b"%s %s\n" % (pool.encode(), hashlib.sha256(hello).hexdigest().encode())
    (line,) = await routed.wait_log(1)
    assert line["server_name"] == (server_name.lower() if server_name else None)
    assert line["pool"] == pool


async def test_client_hello_in_pieces_is_routed(routed: Evenflow) -> None:
    hello = client_hello("x.wild.test")
    answer = await blocking(ask, routed.port(), hello, 7)  # split inside the record header
    assert answer.startswith(b"wild ")


async def test_non_tls_bytes_are_closed_not_relayed(routed: Evenflow) -> None:
    def client() -> str:
        with connect(routed.port()) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: alpha.test\r\n\r\n")
            return how_closed(sock, 2)

    # a passthrough listener takes TLS only: garbage is refused, not sent to the default pool
    assert await blocking(client) in ("eof", "reset")
    (line,) = await routed.wait_log(1)
    assert line["backend"] is None


async def test_unmatched_name_without_default_route_is_closed(
    evenflow: StartEvenflow, tcp_backend: StartBackend
) -> None:
    backend = tcp_backend(names_itself, "alpha")
    ef = await evenflow(
        tcp_config(
            {"alpha": {"backends": [backend.address]}},
            routes=[{"match": {"sni": "alpha.test"}, "pool": "alpha"}],
        )
    )

    def client() -> str:
        with connect(ef.port()) as sock:
            sock.sendall(client_hello("beta.test"))
            return how_closed(sock, 2)

    assert await blocking(client) in ("eof", "reset")
    assert backend.count == 0


async def test_tls_stays_end_to_end_to_the_named_backend(
    evenflow: StartEvenflow, tcp_backend: StartBackend, tmp_path: Path
) -> None:
    ca = trustme.CA()

    def tls_backend(name: str) -> Callable[[Accepted], None]:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert(name).configure_cert(context)

        def serve(conn: Accepted) -> None:
            with context.wrap_socket(conn.sock, server_side=True) as tls:
                request = tls.recv(1024)
                tls.sendall(b"%s heard %s" % (name.encode(), request))

        return serve

    alpha = tcp_backend(tls_backend("alpha.test"), "alpha")
    beta = tcp_backend(tls_backend("beta.test"), "beta")
    ef = await evenflow(
        tcp_config(
            {"alpha": {"backends": [alpha.address]}, "beta": {"backends": [beta.address]}},
            routes=[
                {"match": {"sni": "alpha.test"}, "pool": "alpha"},
                {"match": {"sni": "beta.test"}, "pool": "beta"},
            ],
        )
    )
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    def client(name: str) -> tuple[bytes, str]:
        with (
            connect(ef.port()) as raw,
            client_context.wrap_socket(raw, server_hostname=name) as tls,
        ):
            tls.sendall(b"hello")
            names = tls.getpeercert()["subjectAltName"]
            return tls.recv(1024), ",".join(str(value) for _, value in names)

    # the certificate verified is the backend's own: evenflow holds no key
    assert await blocking(client, "alpha.test") == (b"alpha.test heard hello", "alpha.test")
    assert await blocking(client, "beta.test") == (b"beta.test heard hello", "beta.test")
    assert (alpha.count, beta.count) == (1, 1)
