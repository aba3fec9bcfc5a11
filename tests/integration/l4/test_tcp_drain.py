"""Draining a tcp backend: new connections go elsewhere, established ones run on until the drain
deadline, then are cut."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from l4_support import (
    Evenflow,
    TcpBackend,
    blocking,
    connect,
    hold,
    recv_line,
    round_trip,
    tcp_config,
)

StartEvenflow = Callable[[dict[str, Any]], Awaitable[Evenflow]]
StartBackend = Callable[..., TcpBackend]

DEADLINE_S = 1.5


async def test_drained_backend_keeps_its_connections_until_the_deadline(
    evenflow: StartEvenflow, tcp_backend: StartBackend
) -> None:
    a, b = tcp_backend(hold, "a"), tcp_backend(hold, "b")
    ef = await evenflow(tcp_config({"p": {"backends": [a.address, b.address]}}, pool="p"))
    established = await blocking(connect, ef.port())
    try:
        name = (await blocking(recv_line, established)).strip().decode()
        drained, other = (a, b) if name == "a" else (b, a)
        ef.server.controller.drain("p", drained.address, deadline_s=DEADLINE_S)
        drained_at = time.monotonic()

        def keep_talking() -> tuple[float, str]:
            """Round trips every 0.1 s until the connection is cut: (when, how)."""
            while time.monotonic() - drained_at < DEADLINE_S + 3:
                try:
                    if round_trip(established, b"ping") != b"ping":
                        return time.monotonic() - drained_at, "garbled"
                except (EOFError, ConnectionError) as exc:
                    return time.monotonic() - drained_at, type(exc).__name__
                time.sleep(0.1)
            return time.monotonic() - drained_at, "never cut"

        def new_connection() -> str:
            with connect(ef.port()) as sock:
                return recv_line(sock).strip().decode()

        newcomers = [await blocking(new_connection) for _ in range(4)]
        assert newcomers == [other.name] * 4  # nothing new for the draining backend
        cut_after, how = await blocking(keep_talking)
    finally:
        established.close()
    assert how in ("EOFError", "ConnectionResetError", "BrokenPipeError"), how
    # housekeeping runs every 0.25 s: the cut comes at the deadline, a tick or two late at most
    assert DEADLINE_S - 0.1 <= cut_after <= DEADLINE_S + 0.8
    assert drained.count == 1
    await blocking(drained.accepted[0].done.wait, 3)
    assert drained.accepted[0].events in (["eof"], ["reset"])  # its backend side closed too
    backend_state = ef.server.controller.backend("p", drained.address)
    assert backend_state.active_connections == 0
