"""Helpers for the layer 4 integration tests: evenflow in this event loop, plain-socket peers.

evenflow runs in the test's event loop (`Server(load_data(...).config)`). Backends and clients are
ordinary blocking sockets in threads, so that what a test checks is what the kernel delivers:
`recv` returning b"" is a FIN, `ConnectionResetError` is an RST, a stalled `sendall` is
backpressure. Blocking client steps run off the loop with `blocking(fn, ...)` so evenflow keeps
running meanwhile. Listener ports cannot be 0 (the config refuses it), so free ports are found
first and the start is retried if another process took one in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from evenflow.config.load import load_data
from evenflow.proxy.proxy_protocol import ProxyHeaderParser, ProxyResult
from evenflow.proxy.tcp import TcpListenerContext
from evenflow.proxy.udp import UdpListenerContext
from evenflow.server import Server, StartupError

T = TypeVar("T")

IO_TIMEOUT_S = 5.0  # the longest any single socket operation of a test may block
# Enough threads for every client a test holds at once (the default executor has cpu+4).
_CLIENTS = ThreadPoolExecutor(max_workers=64, thread_name_prefix="l4-client")


async def blocking(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking client step in a thread; evenflow keeps running on this loop."""
    return await asyncio.get_running_loop().run_in_executor(_CLIENTS, fn, *args)


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    """A port of 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def closed_port() -> int:
    """A port where nothing listens: connecting is refused at once."""
    return free_port()


# --- evenflow ---------------------------------------------------------------------------------


@dataclass
class Evenflow:
    server: Server
    ports: dict[str, int]  # listener name -> bound port
    access_log: Path

    def port(self, listener: str = "l4") -> int:
        return self.ports[listener]

    def tcp(self, listener: str = "l4") -> TcpListenerContext:
        ctx = self.server.listening[listener].ctx
        assert isinstance(ctx, TcpListenerContext)
        return ctx

    def udp(self, listener: str = "l4") -> UdpListenerContext:
        ctx = self.server.listening[listener].ctx
        assert isinstance(ctx, UdpListenerContext)
        return ctx

    def log_lines(self) -> list[dict[str, Any]]:
        if not self.access_log.exists():
            return []
        return [json.loads(line) for line in self.access_log.read_text().splitlines() if line]

    async def wait_log(self, count: int, timeout_s: float = 3.0) -> list[dict[str, Any]]:
        """The access log once it holds at least `count` lines (it is flushed every 0.2 s)."""
        deadline = time.monotonic() + timeout_s
        while True:
            lines = self.log_lines()
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            await asyncio.sleep(0.05)


def tcp_config(pools: dict[str, Any], **listener: Any) -> dict[str, Any]:
    """One tcp listener named `l4` (bind filled in at start) in front of `pools`."""
    return {
        "listeners": [{"name": "l4", "bind": "", "protocol": "tcp", **listener}],
        "pools": pools,
    }


def udp_config(pools: dict[str, Any], **listener: Any) -> dict[str, Any]:
    return {
        "listeners": [{"name": "l4", "bind": "", "protocol": "udp", **listener}],
        "pools": pools,
    }


@contextlib.asynccontextmanager
async def running_evenflow(data: dict[str, Any], log_dir: Path) -> AsyncIterator[Evenflow]:
    """evenflow in this loop with `data` as config (empty binds get free ports); stopped on exit."""
    access_log = log_dir / "access.log"
    data.setdefault("access_log", {"path": str(access_log)})
    data.setdefault("drain_timeout", "1s")
    unbound = [lst for lst in data["listeners"] if not lst.get("bind")]
    server: Server | None = None
    for _ in range(5):
        for listener in unbound:
            kind = socket.SOCK_DGRAM if listener.get("protocol") == "udp" else socket.SOCK_STREAM
            listener["bind"] = f"127.0.0.1:{free_port(kind)}"
        server = Server(load_data(data).config)
        try:
            await server.start()
            break
        except StartupError:
            server = None  # a port was taken meanwhile: try others
    assert server is not None, "evenflow could not bind its listeners in 5 tries"
    ports = {name: int(server.bound(name).rpartition(":")[2]) for name in server.listening}
    try:
        yield Evenflow(server, ports, access_log)
    finally:
        await asyncio.wait_for(server.stop(), 10)
        with contextlib.suppress(OSError):
            print("access log:\n" + access_log.read_text())


# --- TCP backends -----------------------------------------------------------------------------


Handler = Callable[["Accepted"], None]


@dataclass
class Accepted:
    """One connection a TcpBackend accepted; `events` records what its handler saw."""

    sock: socket.socket
    peer: tuple[str, int]
    backend: TcpBackend
    events: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)


class TcpBackend:
    """A threaded TCP server on 127.0.0.1: `handler(accepted)` runs per connection in a thread."""

    def __init__(self, handler: Handler, name: str = "backend") -> None:
        self.name = name
        self.handler = handler
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=512)
        self.listener.settimeout(0.1)
        self.port = int(self.listener.getsockname()[1])
        self.accepted: list[Accepted] = []
        self.progress = 0  # handlers may count bytes here (backpressure tests read it)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name=f"l4-{name}", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.accepted)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                sock, peer = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(IO_TIMEOUT_S)
            conn = Accepted(sock, (peer[0], peer[1]), self)
            with self._lock:
                self.accepted.append(conn)
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: Accepted) -> None:
        try:
            self.handler(conn)
        except ConnectionResetError:
            conn.events.append("reset")
        except Exception as exc:  # the connection's boundary: the test reads what went wrong
            conn.events.append(f"error: {exc!r}")
        finally:
            conn.done.set()
            with contextlib.suppress(OSError):
                conn.sock.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.listener.close()
        with self._lock:
            for conn in self.accepted:
                with contextlib.suppress(OSError):
                    conn.sock.shutdown(socket.SHUT_RDWR)


def echo(conn: Accepted) -> None:
    """Sends back what it receives; at EOF half-closes in turn."""
    while data := conn.sock.recv(65536):
        conn.sock.sendall(data)
    conn.events.append("eof")
    conn.sock.shutdown(socket.SHUT_WR)


def hold(conn: Accepted) -> None:
    """Says its name, then echoes (so a client knows which backend it reached)."""
    conn.sock.sendall(conn.backend.name.encode() + b"\n")
    echo(conn)


def reset(sock: socket.socket) -> None:
    """Close `sock` with an RST instead of a FIN (SO_LINGER on, zero timeout)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def proxy_header_reader(conn: Accepted) -> ProxyResult:
    """Reads a PROXY header off the connection's front with evenflow's own parser."""
    parser = ProxyHeaderParser()
    while True:
        data = conn.sock.recv(65536)
        if not data:
            parser.finish()
        result = parser.feed(data)
        if result is not None:
            return result


# --- clients ----------------------------------------------------------------------------------


def connect(port: int, source_ip: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(IO_TIMEOUT_S)
        sock.bind((source_ip, 0))
        sock.connect(("127.0.0.1", port))
    except BaseException:
        sock.close()  # or a later test's garbage collection reports it as a leak
        raise
    return sock


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        data = sock.recv(size - len(buf))
        if not data:
            raise EOFError(f"closed after {len(buf)} of {size} bytes")
        buf += data
    return bytes(buf)


def recv_line(sock: socket.socket) -> bytes:
    buf = bytearray()
    while not buf.endswith(b"\n"):
        data = sock.recv(1)
        if not data:
            raise EOFError(f"closed after {bytes(buf)!r}")
        buf += data
    return bytes(buf)


def recv_until_eof(sock: socket.socket) -> bytes:
    buf = bytearray()
    while data := sock.recv(65536):
        buf += data
    return bytes(buf)


def how_closed(sock: socket.socket, timeout_s: float = IO_TIMEOUT_S) -> str:
    """How the peer ends the connection: "eof", "reset", "open" (nothing within the timeout),
    or "data" (it sent bytes instead)."""
    sock.settimeout(timeout_s)
    try:
        data = sock.recv(65536)
    except ConnectionResetError:
        return "reset"
    except TimeoutError:
        return "open"
    return "data" if data else "eof"


def round_trip(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    return recv_exactly(sock, len(payload))


# --- TLS --------------------------------------------------------------------------------------


def client_hello(server_name: str | None) -> bytes:
    """The bytes of a real ClientHello from Python's ssl module, with SNI `server_name`."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


# --- UDP --------------------------------------------------------------------------------------


class UdpBackend:
    """A UDP server answering `NAME <payload>` to each datagram; records who sent what.

    With `proxy_header`, each datagram must start with a PROXY v2 header (read with evenflow's
    own parser); the header's source is recorded as the client."""

    def __init__(self, name: str, proxy_header: bool = False) -> None:
        self.name = name
        self.proxy_header = proxy_header
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = int(self.sock.getsockname()[1])
        self.received: list[tuple[tuple[str, int], bytes]] = []  # (sender, payload)
        self.headers: list[ProxyResult] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name=f"udp-{name}", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def seen(self) -> list[tuple[tuple[str, int], bytes]]:
        with self._lock:
            return list(self.received)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, sender = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if self.proxy_header:
                result = ProxyHeaderParser().feed(data)
                assert result is not None
                with self._lock:
                    self.headers.append(result)
                data = result.remaining
            with self._lock:
                self.received.append(((sender[0], sender[1]), data))
            self.sock.sendto(self.name.encode() + b" " + data, sender)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def udp_client(source_ip: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(IO_TIMEOUT_S)
    sock.bind((source_ip, 0))
    return sock


def udp_ask(sock: socket.socket, port: int, payload: bytes) -> bytes:
    sock.sendto(payload, ("127.0.0.1", port))
    data, _ = sock.recvfrom(65536)
    return data
