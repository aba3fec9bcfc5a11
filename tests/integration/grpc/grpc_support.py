"""gRPC backends for the tests: real grpcio servers, and a bare HTTP/2 server that never answers.

The grpcio servers use generic handlers with raw bytes (no .proto compiled): every answer says
which backend gave it (`NAME:` before the payload, and `x-backend` in the initial metadata), so a
test can tell where evenflow routed a call. The standard health service is served by hand in
protobuf bytes, its status switchable per service.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events

from evenflow.config.load import load_data
from evenflow.server import Server, StartupError

SERVING = 1
NOT_SERVING = 2
SLOW_S = 5.0  # how long the slow methods take: well past every deadline the tests give


def grpc_frame(message: bytes) -> bytes:
    return b"\x00" + len(message).to_bytes(4, "big") + message


def grpc_messages(body: bytes) -> list[bytes]:
    out = []
    while body:
        size = int.from_bytes(body[1:5], "big")
        out.append(body[5 : 5 + size])
        body = body[5 + size :]
    return out


class GrpcBackend:
    """A grpcio server for `services`: each has Get (unary), List (server streaming), Fail
    (an error status with a message, trailers-only), FailLate (the same after the headers),
    Slow (answers after SLOW_S); plus grpc.health.v1."""

    def __init__(self, name: str, services: tuple[str, ...]) -> None:
        self.name = name
        self.services = services
        self.health: dict[str, int] = {"": SERVING, **{s: SERVING for s in services}}
        self.calls: list[str] = []  # "service/method" for each call received
        self.cancelled = 0  # calls whose client (evenflow) went away before the answer
        self.server: grpc.aio.Server | None = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> None:
        server = grpc.aio.server()
        handlers = [self._service(name) for name in self.services]
        handlers.append(
            grpc.method_handlers_generic_handler(
                "grpc.health.v1.Health", {"Check": grpc.unary_unary_rpc_method_handler(self._check)}
            )
        )
        server.add_generic_rpc_handlers(tuple(handlers))
        self.port = server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        self.server = server

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(None)
            self.server = None

    def _service(self, service: str) -> grpc.GenericRpcHandler:
        def unary(method: str) -> Any:
            async def handler(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
                self.calls.append(f"{service}/{method}")
                if method == "Fail":  # before any metadata: a trailers-only answer
                    await context.abort(grpc.StatusCode.NOT_FOUND, f"no such user: {request!r}")
                await context.send_initial_metadata((("x-backend", self.name),))
                if method == "FailLate":  # after the headers: the status comes in trailers
                    await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not yours: 100% sure")
                if method == "Slow":
                    try:
                        await asyncio.sleep(SLOW_S)
                    except asyncio.CancelledError:
                        self.cancelled += 1
                        raise
                return f"{self.name}:".encode() + request

            return grpc.unary_unary_rpc_method_handler(handler)

        async def listing(
            request: bytes, context: grpc.aio.ServicerContext
        ) -> AsyncIterator[bytes]:
            self.calls.append(f"{service}/List")
            count = int(request or b"3")
            for i in range(count):
                yield f"{self.name}:{i}".encode()

        return grpc.method_handlers_generic_handler(
            service,
            {
                "Get": unary("Get"),
                "Fail": unary("Fail"),
                "FailLate": unary("FailLate"),
                "Slow": unary("Slow"),
                "List": grpc.unary_stream_rpc_method_handler(listing),
            },
        )

    async def _check(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        # HealthCheckRequest { string service = 1; }: 0x0a, length, name (absent when "")
        service = request[2:].decode() if request[:1] == b"\x0a" else ""
        if service not in self.health:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {service}")
        return b"\x08" + bytes([self.health[service]])  # HealthCheckResponse { status = 1 }


@contextlib.asynccontextmanager
async def grpc_backend(name: str, *services: str) -> AsyncIterator[GrpcBackend]:
    backend = GrpcBackend(name, services)
    await backend.start()
    try:
        yield backend
    finally:
        await backend.stop()


class SilentH2Backend:
    """An h2c server that records each request's headers and never answers (unless told to
    answer with `reply`), and notes each stream evenflow resets: the backend that ignores
    grpc-timeout, so only evenflow can enforce it."""

    def __init__(
        self, reply: list[tuple[bytes, bytes]] | None = None, end_stream: bool = True
    ) -> None:
        self.reply = reply
        self.end_stream = end_stream  # False: the reply's head, then silence
        self.requests: list[dict[bytes, bytes]] = []
        self.bodies: dict[int, bytes] = {}
        self.resets: list[int] = []  # stream ids evenflow reset
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.port = 0
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for writer in self._writers:
                writer.transport.abort()
            await self.server.wait_closed()
            self.server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding=None)
        )
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        self.requests.append(dict(event.headers))  # type: ignore[arg-type]
                    elif isinstance(event, h2.events.DataReceived):
                        sid = event.stream_id
                        self.bodies[sid] = self.bodies.get(sid, b"") + (event.data or b"")
                        conn.acknowledge_received_data(event.flow_controlled_length or 0, sid)
                    elif isinstance(event, h2.events.StreamReset):
                        self.resets.append(event.stream_id or 0)
                    elif isinstance(event, h2.events.StreamEnded) and self.reply is not None:
                        conn.send_headers(event.stream_id or 0, self.reply, self.end_stream)
                writer.write(conn.data_to_send())
        writer.close()


@contextlib.asynccontextmanager
async def silent_h2_backend(
    reply: list[tuple[bytes, bytes]] | None = None, end_stream: bool = True
) -> AsyncIterator[SilentH2Backend]:
    backend = SilentH2Backend(reply, end_stream)
    await backend.start()
    try:
        yield backend
    finally:
        await backend.stop()


# --- evenflow in this loop ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Evenflow:
    server: Server
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def running_evenflow(data: dict[str, Any]) -> AsyncIterator[Evenflow]:
    """evenflow with `data` (its listener on a free port) in this loop, stopped on exit."""
    data.setdefault("access_log", {"path": "off"})
    data.setdefault("drain_timeout", "1s")
    server: Server | None = None
    port = 0
    for _ in range(5):
        port = free_port()
        data["listeners"][0]["bind"] = f"127.0.0.1:{port}"
        server = Server(load_data(data).config)
        try:
            await server.start()
            break
        except StartupError:
            server = None  # the port was taken meanwhile: try another
    assert server is not None, "evenflow could not bind a listener in 5 tries"
    try:
        yield Evenflow(server, port)
    finally:
        await asyncio.wait_for(server.stop(), 10)


def two_pool_config(users: str, orders: str, **pool: Any) -> dict[str, Any]:
    """users.v1.Users → pool users, orders.v1.Orders → pool orders, both h2; the rest → 404."""
    return {
        "listeners": [
            {
                "name": "web",
                "bind": "127.0.0.1:1",
                "routes": [
                    {"match": {"grpc": {"service": "users.v1.Users"}}, "pool": "users"},
                    {"match": {"grpc": {"service": "orders.v1.Orders"}}, "pool": "orders"},
                ],
            }
        ],
        "pools": {
            "users": {"protocol": "h2", "backends": [users], **pool},
            "orders": {"protocol": "h2", "backends": [orders], **pool},
        },
    }


# --- gRPC over HTTP/1.1 through evenflow (no HTTP/2 on the client side) -------------------------


@dataclass
class Http1Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    trailers: dict[str, str] = field(default_factory=dict)

    @property
    def grpc_status(self) -> str | None:
        """From the trailers, or from the headers of a trailers-only answer."""
        return self.trailers.get("grpc-status", self.headers.get("grpc-status"))

    @property
    def grpc_message(self) -> str | None:
        return self.trailers.get("grpc-message", self.headers.get("grpc-message"))


class Http1GrpcClient:
    """A keep-alive HTTP/1.1 connection posting gRPC-framed calls and reading chunked trailers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, address: str) -> Http1GrpcClient:
        host, _, port = address.rpartition(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        return cls(reader, writer)

    async def call(
        self, path: str, message: bytes = b"", headers: dict[str, str] | None = None, **kw: Any
    ) -> Http1Reply:
        body = grpc_frame(message)
        lines = {
            "host": "grpc.test",
            "content-type": "application/grpc",
            "te": "trailers",
            "content-length": str(len(body)),
            **(headers or {}),
        }
        head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in lines.items())
        self.writer.write(head.encode() + b"\r\n" + body)
        return await asyncio.wait_for(self._reply(), kw.get("timeout", 5.0))

    async def _reply(self) -> Http1Reply:
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        headers = _fields(head.split(b"\r\n")[1:])
        if headers.get("transfer-encoding") == "chunked":
            body = bytearray()
            while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
                body += await self.reader.readexactly(size)
                await self.reader.readexactly(2)
            trailer_head = await self.reader.readuntil(b"\r\n")
            if trailer_head != b"\r\n":
                trailer_head += await self.reader.readuntil(b"\r\n\r\n")
            return Http1Reply(status, headers, bytes(body), _fields(trailer_head.split(b"\r\n")))
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return Http1Reply(status, headers, body)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


def _fields(lines: list[bytes]) -> dict[str, str]:
    out = {}
    for line in lines:
        if line:
            name, _, value = line.partition(b":")
            out[name.decode().strip().lower()] = value.decode().strip()
    return out
