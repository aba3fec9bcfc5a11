"""Connection limits of a tcp listener: max_connections (wait, then refuse) and per-source rate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from l4_support import (
    Evenflow,
    TcpBackend,
    blocking,
    connect,
    echo,
    how_closed,
    recv_exactly,
    round_trip,
    tcp_config,
)

StartEvenflow = Callable[[dict[str, Any]], Awaitable[Evenflow]]
StartBackend = Callable[..., TcpBackend]


async def test_excess_connection_waits_then_is_served_when_one_closes(
    evenflow: StartEvenflow, tcp_backend: StartBackend
) -> None:
    backend = tcp_backend(echo)
    ef = await evenflow(
        tcp_config({"p": {"backends": [backend.address]}}, pool="p", limits={"max_connections": 2})
    )
    first = await blocking(connect, ef.port())
    second = await blocking(connect, ef.port())
    third = await blocking(connect, ef.port())
    try:
        assert await blocking(round_trip, first, b"one") == b"one"
        assert await blocking(round_trip, second, b"two") == b"two"
        await blocking(third.sendall, b"three")
        # over the limit: accepted by the kernel, but not relayed while two are open
        assert await blocking(how_closed, third, 0.5) == "open"
        assert backend.count == 2
        first.close()
        waited = time.monotonic()
        third.settimeout(3)
        assert await blocking(recv_exactly, third, 5) == b"three"
        assert time.monotonic() - waited < 2
        assert backend.count == 3
        assert await blocking(round_trip, second, b"still") == b"still"
    finally:
        for sock in (first, second, third):
            sock.close()


async def test_connections_past_twice_the_limit_are_refused(
    evenflow: StartEvenflow, tcp_backend: StartBackend
) -> None:
    backend = tcp_backend(echo)
    ef = await evenflow(
        tcp_config({"p": {"backends": [backend.address]}}, pool="p", limits={"max_connections": 2})
    )
    held = [await blocking(connect, ef.port()) for _ in range(4)]  # 2 relayed, 2 waiting
    try:
        for sock in held[:2]:
            assert await blocking(round_trip, sock, b"x") == b"x"
        try:
            extra = await blocking(connect, ef.port())
        except ConnectionResetError:
            pass  # on loopback the refusal's RST can beat connect() itself
        else:
            held.append(extra)
            assert await blocking(how_closed, extra, 2) in ("eof", "reset")
        for sock in held[2:4]:  # the waiting ones were not dropped
            assert await blocking(how_closed, sock, 0.2) == "open"
        # the refusal freed no relayed slot: still only two connections reach the backend
        assert backend.count == 2, "a refused connection let a waiting one past the limit"
        assert ef.tcp().stats.refused == 1
    finally:
        for sock in held:
            sock.close()


async def test_per_source_rate_refuses_the_excess_of_one_source_only(
    evenflow: StartEvenflow, tcp_backend: StartBackend
) -> None:
    backend = tcp_backend(echo)
    ef = await evenflow(
        tcp_config(
            {"p": {"backends": [backend.address]}}, pool="p", limits={"per_source_rate": "2/s"}
        )
    )

    def attempt(source_ip: str) -> str:
        try:
            with connect(ef.port(), source_ip) as sock:
                sock.settimeout(2)
                sock.sendall(b"hi")
                data = sock.recv(2)
        except (ConnectionResetError, BrokenPipeError):
            # a refused connection may be reset before the client has sent, or even before
            # its connect() returned (the RST can beat the handshake's last look at SO_ERROR)
            return "reset"
        return "served" if data == b"hi" else "eof"

    started = time.monotonic()
    burst = [await blocking(attempt, "127.0.0.1") for _ in range(3)]
    assert time.monotonic() - started < 0.4, "too slow to test a 2/s rate"
    assert burst[:2] == ["served", "served"]
    assert burst[2] in ("eof", "reset")
    assert backend.count == 2  # the refused one never reached a backend
    # another source has its own allowance
    assert await blocking(attempt, "127.0.0.2") == "served"
    # and the first source gets tokens back at 2 per second
    await asyncio.sleep(0.6)
    assert await blocking(attempt, "127.0.0.1") == "served"
    assert backend.count == 4
