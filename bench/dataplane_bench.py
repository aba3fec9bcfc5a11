"""Python cost of one proxied HTTP/1.1 request, without sockets.

Drives the real DownstreamConnection / Exchange / UpstreamConnection with in-memory transports:
a request goes in, the response comes back on a parked backend connection, repeat. What it
measures is the interpreter work per request (the part evenflow can change); the kernel's share
is the same for every proxy and is measured by bench/run.py with wrk.

    .venv/bin/python bench/dataplane_bench.py [N] [--count] [--observability] [--browser]

--count reports bytecodes and calls per request instead of time: deterministic, so it shows
what a change did even on a noisy shared machine.

--browser sends the head a browser sends (a dozen fields: user agent, accept, cookies, fetch
metadata...) instead of wrk's two lines: the per-field cost that wrk's benchmark does not see.

--observability measures what observability costs per request, each variant against `bare`
(no metric counters, no trace context, no access log): the default (counters and trace context
on, log off), each of those alone, and the access log on in JSON and combined format (written
to a file and flushed every FLUSH_EVERY requests inside the measured loop, so rendering and
writing the lines count too). Bytecodes with --count, else time.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evenflow.config.load import load_data
from evenflow.observability.access_log import AccessLog
from evenflow.proxy.http1.downstream import DownstreamConnection, HttpListenerContext
from evenflow.proxy.http1.upstream import UpstreamConnection
from evenflow.runtime.controller import Controller

FLUSH_EVERY = 200  # about what a 0.2 s flush timer batches at 1000 req/s
REQUEST = b"GET /1k HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
BROWSER_REQUEST = (
    b"GET /app/page?id=42 HTTP/1.1\r\nHost: shop.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"Chrome/131.0.0.0 Safari/537.36\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\nAccept-Language: en-US,en;q=0.9\r\n"
    b"Cookie: session=4f9a8d7e6c5b4a39; theme=dark\r\nReferer: https://shop.example.com/\r\n"
    b'Sec-Ch-Ua: "Chromium";v="131"\r\nSec-Ch-Ua-Mobile: ?0\r\nSec-Ch-Ua-Platform: "Linux"\r\n'
    b"Sec-Fetch-Dest: document\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-Site: same-origin\r\n"
    b"Upgrade-Insecure-Requests: 1\r\n\r\n"
)
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


def _count_work(step: Callable[[], None], n: int) -> tuple[float, float]:
    """Bytecodes and calls per step: deterministic, unlike time on a shared machine."""
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
            step()
    finally:
        sys.settrace(None)
        sys.setprofile(None)
    return opcodes / n, calls / n


def _time_work(step: Callable[[], None], n: int, rounds: int = 20) -> tuple[float, float]:
    """Microseconds per step: the fastest and the median of `rounds` rounds of n/rounds steps
    (the machine is shared and noisy: the fastest is the intrinsic cost)."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(n // rounds):
            step()
        times.append((time.perf_counter() - started) / (n // rounds) * 1e6)
    times.sort()
    return times[0], times[len(times) // 2]


VARIANTS = {  # name: (metric counters, trace context, access log format or None)
    "bare": (False, False, None),
    "metrics": (True, False, None),
    "tracing": (False, True, None),
    "default": (True, True, None),
    "default+log json": (True, True, "json"),
    "default+log combined": (True, True, "combined"),
}


def _setup(
    loop: asyncio.AbstractEventLoop,
    metrics: bool,
    tracing: bool,
    log_format: str | None,
    workdir: Path,
) -> tuple[Callable[[], None], Callable[[], None]]:
    """One proxied request per call of the first function; the second checks and cleans up."""
    config = load_data(
        {
            "listeners": [{"name": "web", "bind": "127.0.0.1:1", "pool": "web"}],
            "pools": {"web": {"backends": ["127.0.0.1:2"]}},
            "access_log": {"path": "off"},
            "tracing": {"enabled": tracing},
            "metrics": {"requests": metrics},
        }
    ).config
    controller = Controller(config)
    log = AccessLog(loop, str(workdir / "access.log"), log_format) if log_format else None
    ctx = HttpListenerContext("web", controller, loop, log)
    down = DownstreamConnection(ctx)
    down.connection_made(FakeTransport())  # type: ignore[arg-type]
    backend = controller.backends["web"][0]
    up = UpstreamConnection(backend, loop, 30.0, 30.0, 8)
    up.connection_made(FakeTransport())  # type: ignore[arg-type]
    up.release(reusable=True)
    served = 0

    def step() -> None:
        nonlocal served
        down.data_received(REQUEST)
        up.data_received(RESPONSE)
        served += 1
        if log is not None and served % FLUSH_EVERY == 0:
            log.flush()  # the flush timer's work, inside the measured loop

    def done() -> None:
        assert backend.in_flight == 0 and down.current is None
        if log is not None:
            log.close()

    for _ in range(1000):  # warm up
        step()
    return step, done


async def main(n: int, count_only: bool = False, observability: bool = False) -> None:
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory(prefix="evenflow-dataplane-") as tmp:
        if not observability:
            step, done = _setup(loop, True, True, None, Path(tmp))
            if count_only:
                opcodes, calls = _count_work(step, 2000)
                print(f"{opcodes:.0f} bytecodes and {calls:.0f} calls per proxied request")
            else:
                fastest, median = _time_work(step, n)
                print(
                    f"{fastest:.2f} us of Python per proxied request (min of 20 rounds; "
                    f"median {median:.2f})"
                )
            done()
            return
        steps = {}
        for name, (metrics, tracing, log_format) in VARIANTS.items():
            steps[name] = _setup(loop, metrics, tracing, log_format, Path(tmp))
        results: dict[str, list[float]] = {name: [] for name in VARIANTS}
        # variants interleaved, round after round, so the machine's drift hits them all alike
        for _ in range(1 if count_only else 20):
            for name, (step, _) in steps.items():
                if count_only:
                    results[name].append(_count_work(step, 2000)[0])
                else:
                    results[name].append(_time_work(step, n // 20, rounds=1)[0])
        for _, finish in steps.values():
            finish()
    unit = "bytecodes" if count_only else "us (min of 20 rounds)"
    base = min(results["bare"])
    print(f"{'variant':<22} {unit:>22} {'vs bare':>8}")
    for name, values in results.items():
        print(f"{name:<22} {min(values):>22.1f} {min(values) / base:>8.3f}")


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if "--browser" in sys.argv:
        REQUEST = BROWSER_REQUEST
    asyncio.run(
        main(
            int(args[0]) if args else 200_000,
            "--count" in sys.argv,
            "--observability" in sys.argv,
        )
    )
