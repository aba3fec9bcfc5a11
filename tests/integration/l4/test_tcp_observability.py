"""What a tcp listener tells its operator: one access-log line per closed connection, with the
close reason (client, backend, timeout, reset), and per-backend counters in the admin API."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

from l4_support import (
    Accepted,
    Evenflow,
    TcpBackend,
    blocking,
    connect,
    free_port,
    how_closed,
    recv_exactly,
    recv_line,
    recv_until_eof,
    reset,
    tcp_config,
)

StartEvenflow = Callable[[dict[str, Any]], Awaitable[Evenflow]]
StartBackend = Callable[..., TcpBackend]


def scripted(conn: Accepted) -> None:
    """The client's first line says how this backend behaves."""
    command = recv_line(conn.sock).strip()
    if command == b"echo":  # echo until the client ends
        while data := conn.sock.recv(65536):
            conn.sock.sendall(data)
    elif command == b"close":  # answer, then the backend closes first
        conn.sock.sendall(b"bye\n")
        conn.sock.shutdown(socket.SHUT_WR)
        recv_until_eof(conn.sock)
    elif command == b"reset":  # answer, then reset
        conn.sock.sendall(b"bye\n")
        time.sleep(0.1)
        reset(conn.sock)
    elif command == b"quiet":  # say nothing more until evenflow gives up
        conn.events.append(how_closed(conn.sock, 10))


async def test_one_log_line_per_closed_connection_with_its_close_reason(
    evenflow: StartEvenflow, tcp_backend: StartBackend
) -> None:
    backend = tcp_backend(scripted)
    ef = await evenflow(
        tcp_config(
            {"p": {"backends": [backend.address]}},
            pool="p",
            timeouts={"idle": "1s", "handshake": "1s"},
        )
    )
    ctx = ef.tcp()

    def client_ends() -> None:
        with connect(ef.port()) as sock:
            sock.sendall(b"echo\n" + b"x" * 995)
            recv_exactly(sock, 995)
            sock.shutdown(socket.SHUT_WR)
            recv_until_eof(sock)

    def backend_ends() -> None:
        with connect(ef.port()) as sock:
            sock.sendall(b"close\n")
            assert recv_until_eof(sock) == b"bye\n"
            time.sleep(0.1)  # a client closing in answer to the backend's end

    def backend_resets() -> None:
        with connect(ef.port()) as sock:
            sock.sendall(b"reset\n")
            recv_exactly(sock, 4)
            how_closed(sock)

    def client_resets() -> None:
        sock = connect(ef.port())
        sock.sendall(b"echo\nabc")
        recv_exactly(sock, 3)
        reset(sock)

    def goes_quiet() -> None:
        with connect(ef.port()) as sock:
            sock.sendall(b"quiet\n")
            how_closed(sock)

    scenarios = [
        (client_ends, "client", 1000, 995),
        (backend_ends, "backend", 6, 4),
        (backend_resets, "reset", 6, 4),
        (client_resets, "reset", 8, 3),
        (goes_quiet, "timeout", 6, 0),
    ]
    for number, (scenario, *_) in enumerate(scenarios, 1):
        await blocking(scenario)
        deadline = time.monotonic() + 5
        while ctx.stats.closed < number and time.monotonic() < deadline:
            await asyncio.sleep(0.02)  # one at a time, so the log's order is theirs
    lines = await ef.wait_log(len(scenarios))
    assert len(lines) == len(scenarios), lines
    got = [(line["close"], line["bytes_in"], line["bytes_out"]) for line in lines]
    assert got == [(reason, bytes_in, bytes_out) for _, reason, bytes_in, bytes_out in scenarios]
    for line in lines:
        assert line["listener"] == "l4"
        assert line["client"] == "127.0.0.1"
        assert line["pool"] == "p"
        assert line["backend"] == backend.address
        assert line["attempts"] == 1
        assert 0 < line["connect_ms"] < 1000
        assert line["duration_ms"] >= line["connect_ms"]
    assert lines[-1]["duration_ms"] >= 900  # the idle timeout (1 s) ended the quiet one
    stats = ctx.stats
    assert (stats.opened, stats.closed) == (5, 5)
    assert stats.bytes_in == sum(s[2] for s in scenarios)
    assert stats.bytes_out == sum(s[3] for s in scenarios)
    assert stats.reasons == {"client": 1, "backend": 1, "reset": 2, "timeout": 1}


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


async def test_admin_api_shows_active_connections_and_bytes_per_backend(
    evenflow: StartEvenflow, tcp_backend: StartBackend
) -> None:
    backend = tcp_backend(scripted)
    data = tcp_config({"p": {"backends": [backend.address]}}, pool="p")
    admin = f"127.0.0.1:{free_port()}"
    data["admin"] = {"bind": admin}
    ef = await evenflow(data)

    async def backend_view() -> dict[str, Any]:
        pools = await blocking(get_json, f"http://{admin}/api/v1/pools")
        (pool,) = [p for p in pools["pools"] if p["name"] == "p"]
        (view,) = pool["backends"]
        assert isinstance(view, dict)
        return view

    socks = [await blocking(connect, ef.port()) for _ in range(3)]
    try:
        for sock in socks:
            await blocking(sock.sendall, b"echo\n" + b"y" * 94)
            await blocking(recv_exactly, sock, 94)
        assert (await backend_view())["active_connections"] == 3
    finally:
        for sock in socks:
            sock.close()
    deadline = time.monotonic() + 3
    while ef.tcp().connections and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    view = await backend_view()
    assert view["active_connections"] == 0
    assert view["bytes_out"] == 3 * 99  # to the backend
    assert view["bytes_in"] == 3 * 94  # from the backend
