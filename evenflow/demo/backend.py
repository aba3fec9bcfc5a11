"""The demo backend: an HTTP/1.1 server that names itself and does what the query string asks.

Used by `evenflow demo`, the integration and judge tests and the benchmarks. It parses with
httptools and frames its responses by hand (connection.py), keep-alive and pipelining included,
so a proxy in front of it meets a real backend; it knows nothing of evenflow. See `DemoBackend`
for what it answers and `main` for running it as a subprocess.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import signal
import sys
from collections.abc import Callable, Iterable, Sequence

from evenflow.demo.base import DemoServer
from evenflow.demo.connection import BackendConnection

# Distinct paths counted in `paths`; others count under OTHER_PATHS, so a scan of random paths
# cannot grow the counter without bound.
_MAX_PATHS = 10_000
OTHER_PATHS = "<other>"
_NAME = re.compile(r"[A-Za-z0-9._~-]{1,64}")


class DemoBackend(DemoServer):
    """An HTTP/1.1 backend that names itself in `x-backend` and counts what it answered.

    Paths:
      - `GET /healthz`: 200 `ok`, or 503 `unhealthy` while `healthy` is False.
      - `POST /_control/health?ok=0|1`: sets `healthy` (for a backend in another process).
      - `/echo`, any method: JSON with the method, full target, headers as received (in order,
        original case), and the length and sha256 of the request body (hashed, never kept).
      - anything else: `backend NAME: METHOD TARGET\\n` (TARGET as received, query included).

    Query options on any path: `delay=MS` (answer that much later, other connections go on),
    `status=CODE` (200..599), `size=BYTES` (a generated body of exactly that size, written with
    backpressure: see connection.BLOCK), `chunked=1` (Transfer-Encoding: chunked). A bad value
    is a 400.

    Counters: `requests` (responses answered), `in_flight` (requests from their first byte
    until their response is written, or their connection lost), `paths` (answers per path,
    query excluded, at most 10 000 distinct paths then OTHER_PATHS). `reset_counters()` zeroes
    `requests` and `paths`.
    """

    def __init__(self, name: str, *, healthy: bool = True) -> None:
        if not _NAME.fullmatch(name):
            raise ValueError(f"backend name {name!r}: use 1-64 of A-Z a-z 0-9 . _ ~ -")
        super().__init__(name)
        self.healthy = healthy
        self.requests = 0
        self.in_flight = 0
        self.paths: collections.Counter[str] = collections.Counter()
        self.name_header = b"x-backend: %s\r\n" % name.encode()

    def make_protocol(self) -> asyncio.Protocol:
        return BackendConnection(self)

    def on_answered(self, path: str) -> None:
        self.requests += 1
        self.in_flight -= 1
        paths = self.paths
        paths[path if path in paths or len(paths) < _MAX_PATHS else OTHER_PATHS] += 1

    def reset_counters(self) -> None:
        self.requests = 0
        self.paths.clear()


async def start_backends(
    names: Iterable[str], host: str = "127.0.0.1", port: int = 0
) -> list[DemoBackend]:
    """Start one DemoBackend per name on host (free ports by default); close them when done.

    If one fails to start, those already started are closed before the error propagates.
    """
    backends: list[DemoBackend] = []
    try:
        for name in names:
            backend = DemoBackend(name)
            await backend.start(host, port)
            backends.append(backend)
    except BaseException:
        for backend in backends:
            await backend.close()
        raise
    return backends


# --- command line -----------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m evenflow.demo.backend",
        description="Run demo backends until SIGTERM or SIGINT. Prints one line per backend, "
        "`listening NAME HOST:PORT`, once it accepts connections. Several backends: repeat "
        "--name, and --port in the same order (e.g. --name a --port 0 --name b --port 0).",
    )
    parser.add_argument(
        "--name", action="append", required=True, help="backend name (x-backend); repeatable"
    )
    parser.add_argument(
        "--port",
        action="append",
        type=int,
        default=[],
        help="port of the --name in the same position; 0 (the default) picks a free port",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    args = parser.parse_args(argv)
    if args.port and len(args.port) != len(args.name):
        parser.error(f"{len(args.name)} --name but {len(args.port)} --port: give one per name")
    for name in args.name:
        if not _NAME.fullmatch(name):
            parser.error(f"--name {name!r}: use 1-64 of A-Z a-z 0-9 . _ ~ -")
    if len(set(args.name)) != len(args.name):
        parser.error("--name: each backend needs its own name")
    args.port = args.port or [0] * len(args.name)
    return args


async def _serve(names: list[str], ports: list[int], host: str) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    backends: list[DemoBackend] = []
    try:
        for name, port in zip(names, ports, strict=True):
            backend = DemoBackend(name)
            try:
                await backend.start(host, port)
            except OSError as exc:
                print(f"backend {name}: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
                return 1
            backends.append(backend)
        for backend in backends:
            print(f"listening {backend.name} {backend.address}", flush=True)
        await stop.wait()
        return 0
    finally:
        for backend in backends:
            await backend.close()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def main(argv: Sequence[str] | None = None) -> int:
    """Run the backends named on the command line; the exit status to return."""
    args = _parse_args(argv)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(_serve(args.name, args.port, args.host))


if __name__ == "__main__":
    raise SystemExit(main())
