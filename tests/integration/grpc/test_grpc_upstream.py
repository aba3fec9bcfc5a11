"""gRPC through evenflow to HTTP/2 backends, with an HTTP/1.1 client on the front.

These need no HTTP/2 on the client side: the client posts gRPC-framed calls over HTTP/1.1 and
reads grpc-status where evenflow relays it (the chunked body's trailer fields, or the headers
of a trailers-only answer). Behind evenflow are real grpcio servers, or a bare h2c server that
never answers (only evenflow can then enforce a deadline). Every test bounds its own time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from grpc_support import (
    Http1GrpcClient,
    grpc_backend,
    grpc_messages,
    running_evenflow,
    silent_h2_backend,
    two_pool_config,
)

pytestmark = pytest.mark.timeout(30)

TRAILERS_ONLY_OK = [
    (b":status", b"200"),
    (b"content-type", b"application/grpc"),
    (b"grpc-status", b"0"),
]


@pytest.fixture
async def client_factory() -> AsyncIterator[list[Http1GrpcClient]]:
    clients: list[Http1GrpcClient] = []
    yield clients
    for client in clients:
        await client.close()


async def open_client(clients: list[Http1GrpcClient], address: str) -> Http1GrpcClient:
    client = await Http1GrpcClient.open(address)
    clients.append(client)
    return client


async def test_two_services_are_routed_to_two_pools(
    client_factory: list[Http1GrpcClient],
) -> None:
    async with (
        grpc_backend("users-a", "users.v1.Users") as users,
        grpc_backend("orders-a", "orders.v1.Orders") as orders,
        running_evenflow(two_pool_config(users.address, orders.address)) as proxy,
    ):
        client = await open_client(client_factory, proxy.address)
        reply = await client.call("/users.v1.Users/Get", b"bob")
        assert (reply.status, reply.grpc_status) == (200, "0")
        assert grpc_messages(reply.body) == [b"users-a:bob"]
        assert reply.headers["x-backend"] == "users-a"
        reply = await client.call("/orders.v1.Orders/Get", b"o-17")
        assert (reply.status, reply.grpc_status) == (200, "0")
        assert grpc_messages(reply.body) == [b"orders-a:o-17"]
        assert users.calls == ["users.v1.Users/Get"]
        assert orders.calls == ["orders.v1.Orders/Get"]


async def test_a_service_no_route_names_is_not_forwarded(
    client_factory: list[Http1GrpcClient],
) -> None:
    async with (
        grpc_backend("users-a", "users.v1.Users") as users,
        grpc_backend("orders-a", "orders.v1.Orders") as orders,
        running_evenflow(two_pool_config(users.address, orders.address)) as proxy,
    ):
        client = await open_client(client_factory, proxy.address)
        reply = await client.call("/billing.v1.Billing/Get", b"x")
        # evenflow's own 404, gRPC-shaped for a gRPC client (UNIMPLEMENTED) or plain
        assert reply.grpc_status == "12" or reply.status == 404, reply
        assert users.calls == [] and orders.calls == []


async def test_server_streaming_call_relays_every_message_in_order(
    client_factory: list[Http1GrpcClient],
) -> None:
    async with (
        grpc_backend("users-a", "users.v1.Users") as users,
        grpc_backend("orders-a", "orders.v1.Orders") as orders,
        running_evenflow(two_pool_config(users.address, orders.address)) as proxy,
    ):
        client = await open_client(client_factory, proxy.address)
        reply = await client.call("/orders.v1.Orders/List", b"50")
        assert reply.grpc_status == "0"
        assert grpc_messages(reply.body) == [f"orders-a:{i}".encode() for i in range(50)]


async def test_error_status_and_message_are_relayed_intact(
    client_factory: list[Http1GrpcClient],
) -> None:
    async with (
        grpc_backend("users-a", "users.v1.Users") as users,
        grpc_backend("orders-a", "orders.v1.Orders") as orders,
        running_evenflow(two_pool_config(users.address, orders.address)) as proxy,
    ):
        client = await open_client(client_factory, proxy.address)
        reply = await client.call("/users.v1.Users/Fail", b"bob")
        # a trailers-only answer: its fields arrive as headers of an empty response
        assert reply.status == 200
        assert reply.headers["content-length"] == "0"
        assert reply.grpc_status == "5"  # NOT_FOUND
        assert reply.grpc_message == "no such user: b'bob'"
        # and the connection carries the next call normally
        reply = await client.call("/users.v1.Users/Get", b"eve")
        assert grpc_messages(reply.body) == [b"users-a:eve"] and reply.grpc_status == "0"


async def test_grpc_timeout_is_enforced_when_the_backend_ignores_it(
    client_factory: list[Http1GrpcClient],
) -> None:
    async with (
        silent_h2_backend() as backend,
        running_evenflow(two_pool_config(backend.address, backend.address)) as proxy,
    ):
        client = await open_client(client_factory, proxy.address)
        started = time.monotonic()
        reply = await client.call(
            "/users.v1.Users/Get", b"bob", headers={"grpc-timeout": "200m"}, timeout=3.0
        )
        took = time.monotonic() - started
        # evenflow's deadline error: DEADLINE_EXCEEDED, gRPC-shaped, or a plain 504
        assert reply.grpc_status == "4" or reply.status == 504, reply
        assert 0.2 <= took < 0.8, f"answered after {took:.3f}s for a 200ms deadline"
        # the backend is told to stop working on it
        for _ in range(100):
            if backend.resets:
                break
            await asyncio.sleep(0.01)
        assert backend.resets == [1]


async def test_deadline_after_the_answer_began_ends_it_with_deadline_exceeded(
    client_factory: list[Http1GrpcClient],
) -> None:
    head_only = [(b":status", b"200"), (b"content-type", b"application/grpc")]
    async with (
        silent_h2_backend(head_only, end_stream=False) as backend,
        running_evenflow(two_pool_config(backend.address, backend.address)) as proxy,
    ):
        client = await open_client(client_factory, proxy.address)
        started = time.monotonic()
        reply = await client.call(
            "/users.v1.Users/Get", b"bob", headers={"grpc-timeout": "200m"}, timeout=3.0
        )
        took = time.monotonic() - started
        # the head was out, so no error response is possible: the call ends as gRPC ends a
        # call past its deadline, and the connection stays usable
        assert reply.status == 200
        assert reply.trailers == {"grpc-status": "4", "grpc-message": "Deadline Exceeded"}
        assert 0.2 <= took < 0.8, f"answered after {took:.3f}s for a 200ms deadline"
        for _ in range(100):
            if backend.resets:
                break
            await asyncio.sleep(0.01)
        assert backend.resets == [1]
        # the connection is still usable; with 1 ms, evenflow may well see the deadline pass
        # before the head arrives (a trailers-only answer) rather than after (trailers)
        reply = await client.call("/users.v1.Users/Get", b"bob", headers={"grpc-timeout": "1m"})
        assert reply.grpc_status == "4", reply


async def test_deadline_also_ends_a_slow_grpcio_call(
    client_factory: list[Http1GrpcClient],
) -> None:
    async with (
        grpc_backend("users-a", "users.v1.Users") as users,
        grpc_backend("orders-a", "orders.v1.Orders") as orders,
        running_evenflow(two_pool_config(users.address, orders.address)) as proxy,
    ):
        client = await open_client(client_factory, proxy.address)
        started = time.monotonic()
        reply = await client.call(
            "/users.v1.Users/Slow", b"", headers={"grpc-timeout": "300m"}, timeout=3.0
        )
        took = time.monotonic() - started
        # evenflow's 504 or grpcio's own DEADLINE_EXCEEDED, whichever fires first: both say
        # the deadline passed, both well before the handler's 5s
        assert reply.grpc_status == "4" or reply.status == 504, reply
        assert 0.25 <= took < 1.0, f"answered after {took:.3f}s for a 300ms deadline"


async def test_request_is_translated_to_http2_fields(
    client_factory: list[Http1GrpcClient],
) -> None:
    async with (
        silent_h2_backend(TRAILERS_ONLY_OK) as backend,
        running_evenflow(two_pool_config(backend.address, backend.address)) as proxy,
    ):
        client = await open_client(client_factory, proxy.address)
        reply = await client.call(
            "/users.v1.Users/Get?x=1",
            b"bob",
            headers={"x-tenant": "t1", "connection": "keep-alive, x-hop", "x-hop": "1"},
        )
        assert reply.grpc_status == "0"
        (fields,) = backend.requests
        assert fields[b":method"] == b"POST"
        assert fields[b":scheme"] == b"http"
        assert fields[b":authority"] == b"grpc.test"
        assert fields[b":path"] == b"/users.v1.Users/Get?x=1"
        assert fields[b"te"] == b"trailers"
        assert fields[b"x-tenant"] == b"t1"
        assert fields[b"content-length"] == b"8"
        for name in (b"host", b"connection", b"keep-alive", b"x-hop", b"transfer-encoding"):
            assert name not in fields
        assert backend.bodies[1] == b"\x00\x00\x00\x00\x03bob"


async def test_concurrent_clients_share_one_http2_connection(
    client_factory: list[Http1GrpcClient],
) -> None:
    async with (
        silent_h2_backend(TRAILERS_ONLY_OK) as backend,
        running_evenflow(two_pool_config(backend.address, backend.address)) as proxy,
    ):
        clients = [await open_client(client_factory, proxy.address) for _ in range(10)]

        async def five_calls(client: Http1GrpcClient) -> list[str | None]:
            return [(await client.call("/users.v1.Users/Get", b"x")).grpc_status for _ in range(5)]

        results = await asyncio.gather(*(five_calls(c) for c in clients))
        assert results == [["0"] * 5] * 10
        assert len(backend.requests) == 50
        assert backend.connections == 1


async def test_a_backend_restart_is_survived(client_factory: list[Http1GrpcClient]) -> None:
    async with (
        grpc_backend("users-a", "users.v1.Users") as users,
        grpc_backend("orders-a", "orders.v1.Orders") as orders,
        running_evenflow(two_pool_config(users.address, orders.address)) as proxy,
    ):
        client = await open_client(client_factory, proxy.address)
        assert (await client.call("/users.v1.Users/Get", b"1")).grpc_status == "0"
        await users.stop()  # the shared HTTP/2 connection dies with it
        await users.start(users.port)
        reply = await client.call("/users.v1.Users/Get", b"2")
        assert reply.grpc_status == "0" and grpc_messages(reply.body) == [b"users-a:2"]
