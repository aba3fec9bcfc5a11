"""The grpc health probe (grpc.health.v1.Health/Check over h2c) against real servers.

Each outcome a probe can have, with its wording, and the probe driving a pool: a backend that
answers NOT_SERVING is taken out of rotation, and put back once it serves again.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

import pytest
from grpc_support import (
    NOT_SERVING,
    SERVING,
    Http1GrpcClient,
    grpc_backend,
    grpc_messages,
    running_evenflow,
    silent_h2_backend,
)

from evenflow.config.health import GrpcProbe
from evenflow.core.backend import Health
from evenflow.demo.backend import DemoBackend
from evenflow.health.probes import describe, probe_grpc

pytestmark = pytest.mark.timeout(30)

TIMEOUT_S = 0.3
SLACK_S = 0.25


async def probe(address: str, service: str = "", timeout_s: float = TIMEOUT_S) -> tuple[bool, str]:
    host, _, port = address.rpartition(":")
    started = time.monotonic()
    result = await probe_grpc(host, int(port), GrpcProbe(service=service), timeout_s, address)
    took = time.monotonic() - started
    assert took < timeout_s + SLACK_S, f"probe took {took:.3f}s"
    return result


async def test_serving_passes() -> None:
    async with grpc_backend("a", "users.v1.Users") as backend:
        assert await probe(backend.address) == (True, "SERVING")
        assert await probe(backend.address, "users.v1.Users") == (True, "SERVING")


async def test_not_serving_fails() -> None:
    async with grpc_backend("a", "users.v1.Users") as backend:
        backend.health["users.v1.Users"] = NOT_SERVING
        assert await probe(backend.address, "users.v1.Users") == (False, "NOT_SERVING")
        assert await probe(backend.address) == (True, "SERVING")  # the server as a whole


async def test_unknown_service_fails_with_the_grpc_status() -> None:
    async with grpc_backend("a", "users.v1.Users") as backend:
        assert await probe(backend.address, "billing.v1.Billing") == (
            False,
            "grpc-status 5: unknown service billing.v1.Billing",
        )


async def test_nothing_listening_fails_as_connect_failed() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    assert await probe(address) == (False, "connect failed: connection refused")


async def test_a_backend_that_never_answers_fails_at_the_timeout() -> None:
    async with silent_h2_backend() as backend:
        assert await probe(backend.address) == (False, f"timeout after {TIMEOUT_S:g}s")


async def test_an_http1_backend_fails_quickly() -> None:
    async with DemoBackend("plain") as backend:
        ok, detail = await probe(backend.address)
        assert not ok
        assert detail.startswith(("HTTP/2 protocol error", "connection closed")), detail


def test_describe_names_the_grpc_probe() -> None:
    assert describe("grpc", GrpcProbe(service="users.v1.Users")) == "grpc health users.v1.Users"
    assert describe("grpc", GrpcProbe()) == "grpc health"


async def wait_for(condition: Callable[[], bool], within_s: float) -> None:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < within_s, f"not true within {within_s}s"
        await asyncio.sleep(0.01)


async def test_a_not_serving_backend_is_taken_out_of_rotation_and_put_back() -> None:
    async with (
        grpc_backend("users-a", "users.v1.Users") as a,
        grpc_backend("users-b", "users.v1.Users") as b,
    ):
        data = {
            "listeners": [
                {
                    "name": "web",
                    "bind": "127.0.0.1:1",
                    "routes": [{"match": {"grpc": {"service": "users.v1.Users"}}, "pool": "users"}],
                }
            ],
            "pools": {
                "users": {
                    "protocol": "h2",
                    "backends": [a.address, b.address],
                    "health": {
                        "active": {
                            "grpc": {"service": "users.v1.Users"},
                            "interval": "0.1s",
                            "fast_interval": "0.05s",
                            "timeout": "0.1s",
                            "rise": 2,
                            "fall": 2,
                        },
                        "panic_threshold": "0%",
                    },
                }
            },
        }
        async with running_evenflow(data) as proxy:
            states = proxy.server.controller.backends["users"]

            def health() -> list[Health]:
                return [state.health for state in states]

            client = await Http1GrpcClient.open(proxy.address)
            try:

                async def served_by() -> set[bytes]:
                    names = set()
                    for _ in range(10):
                        reply = await client.call("/users.v1.Users/Get", b"x")
                        assert reply.grpc_status == "0"
                        names.add(grpc_messages(reply.body)[0].split(b":")[0])
                    return names

                assert await served_by() == {b"users-a", b"users-b"}
                b.health["users.v1.Users"] = NOT_SERVING
                await wait_for(lambda: health() == [Health.HEALTHY, Health.UNHEALTHY], 3.0)
                assert await served_by() == {b"users-a"}
                b.health["users.v1.Users"] = SERVING
                await wait_for(lambda: health() == [Health.HEALTHY, Health.HEALTHY], 3.0)
                assert await served_by() == {b"users-a", b"users-b"}
            finally:
                await client.close()
