"""Helpers for the proxy integration tests: an in-process evenflow, backends, a strict raw client.

Everything binds 127.0.0.1. Listener ports cannot be 0 (the config refuses port 0, see
`free_port`), so a free port is found first and the start is retried if another process took it
in between. The raw client frames responses itself so that it can judge byte-exact framing
(no body after HEAD/204/304, nothing duplicated, trailers) which a high-level client hides.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evenflow.config.load import load_data
from evenflow.demo.backend import DemoBackend
from evenflow.demo.recorder import RecordingBackend
from evenflow.server import Server, StartupError

# The documented shape of DemoBackend's generated `size=N` bodies (see its docstring).
FILL = b"".join(b"%015d\n" % i for i in range(4096))

READ_TIMEOUT_S = 5.0


def expected_body(size: int) -> bytes:
    return (FILL * (size // len(FILL) + 1))[:size]


def free_port() -> int:
    """A port that was free a moment ago (evenflow's config refuses `bind: host:0`)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def closed_port() -> int:
    """A port where nothing listens: connecting to it is refused."""
    return free_port()


@contextlib.contextmanager
def unanswered_listener() -> Iterator[str]:
    """An address where connecting hangs: a listener whose accept queue is full and never read
    (the kernel drops further SYNs), which is how a backend lost in the network looks."""
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(socket.socket())
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        for _ in range(3):
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        time.sleep(0.1)
        yield f"127.0.0.1:{port}"


# --- backends ---------------------------------------------------------------------------------


class CountingBackend(DemoBackend):
    """A DemoBackend that also counts the connections it accepted (upstream reuse)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.accepted = 0

    def make_protocol(self) -> asyncio.Protocol:
        self.accepted += 1
        return super().make_protocol()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """A backend scripted by the test: `handler(reader, writer)` runs per accepted connection."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.accepted = 0
        self.server: asyncio.Server | None = None
        self.port = 0
        self.tasks: set[asyncio.Task[Any]] = set()
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._on_client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            for writer in self.writers:
                writer.transport.abort()
            for task in list(self.tasks):
                task.cancel()
            await asyncio.sleep(0)
            await self.server.wait_closed()
            self.server = None


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str], bytes]:
    """One request off a raw backend connection: (head, lowercase headers, body). CL or none."""
    head = await reader.readuntil(b"\r\n\r\n")
    headers = parse_headers(head)
    body = b""
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body, _ = await read_chunked(reader)
    return head, headers, body


# --- evenflow in process ----------------------------------------------------------------------


@dataclass
class Proxy:
    server: Server
    host: str
    port: int
    access_log: Path

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def log_lines(self) -> list[dict[str, Any]]:
        """The access log so far (it is flushed a few times a second, so wait before reading)."""
        if not self.access_log.exists():
            return []
        return [json.loads(line) for line in self.access_log.read_text().splitlines() if line]


def config(
    pools: dict[str, Any],
    *,
    routes: list[dict[str, Any]] | None = None,
    pool: str | None = None,
    timeouts: dict[str, Any] | None = None,
    limits: dict[str, Any] | None = None,
    **top: Any,
) -> dict[str, Any]:
    """A one-listener config named `web`; the bind is filled in by `start_proxy`."""
    listener: dict[str, Any] = {"name": "web", "bind": "127.0.0.1:1"}
    if routes is not None:
        listener["routes"] = routes
    if pool is not None:
        listener["pool"] = pool
    if timeouts is not None:
        listener["timeouts"] = timeouts
    if limits is not None:
        listener["limits"] = limits
    return {"listeners": [listener], "pools": pools, **top}


@contextlib.asynccontextmanager
async def running_proxy(data: dict[str, Any], log_dir: Path) -> AsyncIterator[Proxy]:
    """evenflow in this event loop with `data` as its config, stopped on exit."""
    access_log = log_dir / "access.log"
    server: Server | None = None
    for _ in range(5):
        data["listeners"][0]["bind"] = f"127.0.0.1:{free_port()}"
        data.setdefault("access_log", {"path": str(access_log)})
        data.setdefault("drain_timeout", "1s")
        server = Server(load_data(data).config)
        try:
            await server.start()
            break
        except StartupError:
            server = None  # the port was taken meanwhile: try another
    assert server is not None, "evenflow could not bind a listener in 5 tries"
    host, _, port = server.bound("web").rpartition(":")
    proxy = Proxy(server, host, int(port), access_log)
    try:
        yield proxy
    finally:
        await asyncio.wait_for(server.stop(), 10)
        with contextlib.suppress(OSError):
            print("access log:\n" + access_log.read_text())


# --- a strict raw HTTP/1.1 client -------------------------------------------------------------


def parse_headers(head: bytes) -> dict[str, str]:
    """Lowercase name → value; repeated fields joined with ', ' (as RFC 9110 §5.3 allows)."""
    headers: dict[str, str] = {}
    for line in head.split(b"\r\n")[1:]:
        if not line:
            continue
        name, _, value = line.partition(b":")
        key = name.decode("latin-1").strip().lower()
        text = value.decode("latin-1").strip()
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def header_lines(head: bytes) -> list[tuple[str, str]]:
    """Every header line of a head, in order: (lowercase name, value)."""
    pairs = []
    for line in head.split(b"\r\n")[1:]:
        if line:
            name, _, value = line.partition(b":")
            pairs.append((name.decode("latin-1").lower(), value.decode("latin-1").strip()))
    return pairs


async def read_chunked(reader: asyncio.StreamReader) -> tuple[bytes, list[tuple[str, str]]]:
    """A chunked body and its trailer fields."""
    body = bytearray()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            break
        body += await reader.readexactly(size)
        assert await reader.readexactly(2) == b"\r\n", "chunk not followed by CRLF"
    trailers: list[tuple[str, str]] = []
    while True:
        line = await reader.readuntil(b"\r\n")
        if line == b"\r\n":
            break
        name, _, value = line[:-2].partition(b":")
        trailers.append((name.decode("latin-1").lower(), value.decode("latin-1").strip()))
    return bytes(body), trailers


@dataclass
class Response:
    status: int
    head: bytes
    headers: dict[str, str]
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    interim: list[int] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.body.decode("latin-1")

    def json(self) -> Any:
        return json.loads(self.body)


class RawClient:
    """One client connection; frames responses by RFC 9112 §6.3 itself (HEAD aware)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, proxy: Proxy) -> RawClient:
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_head(self, timeout: float = READ_TIMEOUT_S) -> bytes:
        return await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)

    async def response(
        self, *, head_request: bool = False, timeout: float = READ_TIMEOUT_S
    ) -> Response:
        """The next final response (interim 1xx ones are recorded in `interim`)."""

        async def read() -> Response:
            interim: list[int] = []
            while True:
                head = await self.reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                if status >= 200 or status == 101:
                    break
                interim.append(status)
            headers = parse_headers(head)
            resp = Response(status, head, headers, interim=interim)
            if head_request or status in (204, 304) or status < 200:
                return resp
            te = headers.get("transfer-encoding", "").lower()
            if te:
                assert te == "chunked", f"unexpected transfer-encoding {te!r}"
                resp.body, resp.trailers = await read_chunked(self.reader)
            elif "content-length" in headers:
                resp.body = await self.reader.readexactly(int(headers["content-length"]))
            else:
                resp.body = await self.reader.read()  # until close
            return resp

        return await asyncio.wait_for(read(), timeout)

    async def request(
        self, method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> Response:
        await self.send(build_request(method, target, headers, body))
        return await self.response(head_request=method == "HEAD")

    async def get(self, target: str, headers: dict[str, str] | None = None) -> Response:
        return await self.request("GET", target, headers)

    async def is_closed_by_peer(self, timeout: float = READ_TIMEOUT_S) -> bool:
        """True when the peer closes (EOF or reset) before `timeout`, with nothing more sent."""
        try:
            data = await asyncio.wait_for(self.reader.read(1), timeout)
        except ConnectionError:
            return True
        except TimeoutError:
            return False
        assert data == b"", f"unexpected bytes after the response: {data!r}"
        return True

    async def nothing_more(self, wait: float = 0.2) -> bytes:
        """Bytes that arrive within `wait` with no request outstanding (should be none)."""
        try:
            return await asyncio.wait_for(self.reader.read(65536), wait)
        except TimeoutError:
            return b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


def build_request(
    method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    hdrs = {"Host": "test.local"}
    hdrs.update(headers or {})
    if body and not any(k.lower() in ("content-length", "transfer-encoding") for k in hdrs):
        hdrs["Content-Length"] = str(len(body))
    lines = "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
    return f"{method} {target} HTTP/1.1\r\n{lines}\r\n".encode("latin-1") + body


@contextlib.asynccontextmanager
async def raw_client(proxy: Proxy) -> AsyncIterator[RawClient]:
    client = await RawClient.open(proxy)
    try:
        yield client
    finally:
        await client.close()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def echo_headers(resp: Response) -> list[tuple[str, str]]:
    """The headers a DemoBackend /echo received, names lowercased, in order."""
    return [(n.lower(), v) for n, v in resp.json()["headers"]]


def values(pairs: list[tuple[str, str]], name: str) -> list[str]:
    return [v for n, v in pairs if n == name]


class Timer:
    def __init__(self) -> None:
        self.start = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start


# what the conftest fixtures hand a test
StartBackends = Callable[..., Awaitable[list[CountingBackend]]]
StartProxy = Callable[[dict[str, Any]], Awaitable[Proxy]]
StartRawServer = Callable[[Handler], Awaitable[RawServer]]
StartRecorder = Callable[[], Awaitable[RecordingBackend]]
