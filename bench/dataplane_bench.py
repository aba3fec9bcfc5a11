"""Python cost of one proxied HTTP/1.1 request, without sockets.

Drives the real DownstreamConnection / Exchange / UpstreamConnection with in-memory transports:
a request goes in, the response comes back on a parked backend connection, repeat. What it
measures is the interpreter work per request (the part evenflow can change); the kernel's share
is the same for every proxy and is measured by bench/run.py with wrk.

    .venv/bin/python bench/dataplane_bench.py [N] [--count]

--count reports bytecodes and calls per request instead of time: deterministic, so it shows
what a change did even on a noisy shared machine.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from evenflow.config.load import load_data
from evenflow.proxy.http1.downstream import DownstreamConnection, HttpListenerContext
from evenflow.proxy.http1.upstream import UpstreamConnection
from evenflow.runtime.controller import Controller

REQUEST = b"GET /1k HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
BODY = b"x" * 1024
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 26 Nov 2026 18:55:01 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 1024\r\n"
    b"Last-Modified: Thu, 26 Nov 2026 18:48:51 GMT\r\nConnection: keep-alive\r\n"
    b'ETag: "6b087f13-400"\r\nAccept-Ranges: bytes\r\n\r\n' + BODY
)


class FakeTransport:
    """Enough of asyncio.Transport for the protocols; counts what is written."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def writelines(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            self.written += len(piece)

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...
    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None: ...


def _count_work(down: DownstreamConnection, up: UpstreamConnection, n: int) -> str:
    """Bytecodes and calls per request: deterministic, unlike time on a shared machine."""
    opcodes = 0
    calls = 0

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        nonlocal opcodes
        frame.f_trace_opcodes = True
        if event == "opcode":
            opcodes += 1
        return tracer

    def profiler(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1

    sys.settrace(tracer)
    sys.setprofile(profiler)
    try:
        for _ in range(n):
            down.data_received(REQUEST)
            up.data_received(RESPONSE)
    finally:
        sys.settrace(None)
        sys.setprofile(None)
    return f"{opcodes / n:.0f} bytecodes and {calls / n:.0f} calls per proxied request"


async def main(n: int, count_only: bool = False) -> None:
    config = load_data(
        {
            "listeners": [{"name": "web", "bind": "127.0.0.1:1", "pool": "web"}],
            "pools": {"web": {"backends": ["127.0.0.1:2"]}},
            "access_log": {"path": "off"},
        }
    ).config
    controller = Controller(config)
    loop = asyncio.get_running_loop()
    ctx = HttpListenerContext("web", controller, loop, None)
    down = DownstreamConnection(ctx)
    down_transport = FakeTransport()
    down.connection_made(down_transport)  # type: ignore[arg-type]
    backend = controller.backends["web"][0]
    up = UpstreamConnection(backend, loop, 30.0, 30.0, 8)
    up.connection_made(FakeTransport())  # type: ignore[arg-type]
    up.release(reusable=True)
    for _ in range(1000):  # warm up
        down.data_received(REQUEST)
        up.data_received(RESPONSE)
    if count_only:
        print(_count_work(down, up, 2000))
        return
    # the machine is shared and noisy: many short rounds, the fastest is the intrinsic cost
    rounds = []
    for _ in range(20):
        started = time.perf_counter()
        for _ in range(n // 20):
            down.data_received(REQUEST)
            up.data_received(RESPONSE)
        rounds.append((time.perf_counter() - started) / (n // 20) * 1e6)
    assert backend.in_flight == 0 and down.current is None
    rounds.sort()
    print(
        f"{rounds[0]:.2f} us of Python per proxied request (min of 20 rounds; median "
        f"{rounds[10]:.2f})"
    )


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    args = [a for a in sys.argv[1:] if a != "--count"]
    asyncio.run(main(int(args[0]) if args else 200_000, "--count" in sys.argv))
