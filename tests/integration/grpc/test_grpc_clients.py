"""A real gRPC client (grpcio) calling through evenflow: HTTP/2 on both sides.

The client speaks h2c with prior knowledge to evenflow's listener (the HTTP/2 downstream), and
evenflow speaks h2c to grpcio servers (the HTTP/2 upstream). Two services on two servers are
routed to two pools; statuses, messages, metadata and deadlines must come through as a gRPC
client sees them with no proxy in between.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from grpc_support import grpc_backend, running_evenflow, silent_h2_backend, two_pool_config

pytestmark = pytest.mark.timeout(30)

CALL_TIMEOUT_S = 5.0


async def test_unary_calls_to_two_services_reach_two_pools() -> None:
    async with (
        grpc_backend("users-a", "users.v1.Users") as users,
        grpc_backend("orders-a", "orders.v1.Orders") as orders,
        running_evenflow(two_pool_config(users.address, orders.address)) as proxy,
        grpc.aio.insecure_channel(proxy.address) as channel,
    ):
        call = channel.unary_unary("/users.v1.Users/Get")(b"bob", timeout=CALL_TIMEOUT_S)
        assert await call == b"users-a:bob"
        assert await call.code() == grpc.StatusCode.OK
        assert ("x-backend", "users-a") in tuple(await call.initial_metadata())
        call = channel.unary_unary("/orders.v1.Orders/Get")(b"o-1", timeout=CALL_TIMEOUT_S)
        assert await call == b"orders-a:o-1"
        assert users.calls == ["users.v1.Users/Get"]
        assert orders.calls == ["orders.v1.Orders/Get"]


async def test_server_streaming_call() -> None:
    async with (
        grpc_backend("users-a", "users.v1.Users") as users,
        grpc_backend("orders-a", "orders.v1.Orders") as orders,
        running_evenflow(two_pool_config(users.address, orders.address)) as proxy,
        grpc.aio.insecure_channel(proxy.address) as channel,
    ):
        call = channel.unary_stream("/orders.v1.Orders/List")(b"20", timeout=CALL_TIMEOUT_S)
        assert [m async for m in call] == [f"orders-a:{i}".encode() for i in range(20)]
        assert await call.code() == grpc.StatusCode.OK


@pytest.mark.parametrize(
    ("method", "code", "details"),
    [
        ("Fail", grpc.StatusCode.NOT_FOUND, "no such user: b'bob'"),  # trailers-only
        ("FailLate", grpc.StatusCode.PERMISSION_DENIED, "not yours: 100% sure"),  # trailers
    ],
)
async def test_error_status_and_message_reach_the_client_intact(
    method: str, code: grpc.StatusCode, details: str
) -> None:
    async with (
        grpc_backend("users-a", "users.v1.Users") as users,
        grpc_backend("orders-a", "orders.v1.Orders") as orders,
        running_evenflow(two_pool_config(users.address, orders.address)) as proxy,
        grpc.aio.insecure_channel(proxy.address) as channel,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channel.unary_unary(f"/users.v1.Users/{method}")(b"bob", timeout=CALL_TIMEOUT_S)
        assert caught.value.code() == code
        assert caught.value.details() == details


async def test_many_concurrent_calls_share_the_backend_connection() -> None:
    async with (
        grpc_backend("users-a", "users.v1.Users") as users,
        grpc_backend("orders-a", "orders.v1.Orders") as orders,
        running_evenflow(two_pool_config(users.address, orders.address)) as proxy,
        grpc.aio.insecure_channel(proxy.address) as channel,
    ):
        get = channel.unary_unary("/users.v1.Users/Get")
        replies = await asyncio.gather(
            *(get(str(i).encode(), timeout=CALL_TIMEOUT_S) for i in range(200))
        )
        assert replies == [f"users-a:{i}".encode() for i in range(200)]


async def test_deadline_reaches_the_client_as_deadline_exceeded_and_the_backend_as_a_reset() -> (
    None
):
    async with (
        silent_h2_backend() as backend,
        running_evenflow(two_pool_config(backend.address, backend.address)) as proxy,
        grpc.aio.insecure_channel(proxy.address) as channel,
    ):
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channel.unary_unary("/users.v1.Users/Get")(b"bob", timeout=0.3)
        took = time.monotonic() - started
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert took < 1.0, f"DEADLINE_EXCEEDED after {took:.3f}s for a 300ms deadline"
        # the backend was asked with the deadline, and told to stop when it passed
        (fields,) = backend.requests
        assert fields[b"grpc-timeout"].endswith((b"m", b"u", b"n"))
        for _ in range(100):
            if backend.resets:
                break
            await asyncio.sleep(0.01)
        assert backend.resets == [1]


async def test_slow_grpcio_handler_gets_deadline_exceeded() -> None:
    async with (
        grpc_backend("users-a", "users.v1.Users") as users,
        grpc_backend("orders-a", "orders.v1.Orders") as orders,
        running_evenflow(two_pool_config(users.address, orders.address)) as proxy,
        grpc.aio.insecure_channel(proxy.address) as channel,
    ):
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channel.unary_unary("/users.v1.Users/Slow")(b"", timeout=0.3)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 1.0
