"""Judge: gRPC through `evenflow run`, judged by grpcio's own client and by curl.

Two grpcio servers (generic handlers, raw bytes: no .proto) serve users.v1.Users and
orders.v1.Orders; evenflow routes each service to its own pool over HTTP/2 (h2c) and probes the
backends with the standard gRPC health check. A grpcio client calls through evenflow with h2c
prior knowledge (the HTTP/2 downstream); curl calls over HTTP/1.1, where grpc-status arrives as
chunked trailer fields. Everything started here is stopped here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from lb_support import Evenflow, curl, listener_config, running_evenflow

pytestmark = [pytest.mark.judge, pytest.mark.timeout(120)]

SERVING, NOT_SERVING = 1, 2
CALL_TIMEOUT_S = 5.0


class Backend:
    """A threaded grpcio server: Get (unary), List (server streaming), Fail (an error status
    with a message), Slow (sleeps 5s unless the call ends first), and grpc.health.v1."""

    def __init__(self, name: str, service: str) -> None:
        self.name = name
        self.service = service
        self.serving = SERVING
        self.calls = 0
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        self.server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    service,
                    {
                        "Get": grpc.unary_unary_rpc_method_handler(self._get),
                        "List": grpc.unary_stream_rpc_method_handler(self._list),
                        "Fail": grpc.unary_unary_rpc_method_handler(self._fail),
                        "Slow": grpc.unary_unary_rpc_method_handler(self._slow),
                    },
                ),
                grpc.method_handlers_generic_handler(
                    "grpc.health.v1.Health",
                    {"Check": grpc.unary_unary_rpc_method_handler(self._check)},
                ),
            )
        )
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.stop(0).wait(5)

    def _count(self) -> None:
        with self._lock:
            self.calls += 1

    def _get(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._count()
        context.send_initial_metadata((("x-backend", self.name),))
        return f"{self.name}:".encode() + request

    def _list(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        self._count()
        for i in range(int(request)):
            yield f"{self.name}:{i}".encode()

    def _fail(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, "account locked: 3 bad attempts")
        raise AssertionError("abort returns only by raising")

    def _slow(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        deadline = time.monotonic() + 5.0
        while context.is_active() and time.monotonic() < deadline:
            time.sleep(0.01)
        return b"late"

    def _check(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        return b"\x08" + bytes([self.serving])


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, Backend]]:
    started = {
        "users-a": Backend("users-a", "users.v1.Users"),
        "users-b": Backend("users-b", "users.v1.Users"),
        "orders-a": Backend("orders-a", "orders.v1.Orders"),
    }
    try:
        yield started
    finally:
        for backend in started.values():
            backend.stop()


def health(service: str) -> dict[str, Any]:
    return {
        "active": {
            "grpc": {"service": service},
            "interval": "0.2s",
            "fast_interval": "0.1s",
            "timeout": "0.2s",
            "rise": 2,
            "fall": 2,
        },
        "panic_threshold": "0%",
    }


@pytest.fixture(scope="module")
def evenflow(
    backends: dict[str, Backend], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Evenflow]:
    config = listener_config(
        {
            "users": {
                "protocol": "h2",
                "backends": [backends["users-a"].address, backends["users-b"].address],
                "health": health("users.v1.Users"),
            },
            "orders": {
                "protocol": "h2",
                "backends": [backends["orders-a"].address],
                "health": health("orders.v1.Orders"),
            },
        },
        routes=[
            {"name": "users", "match": {"grpc": {"service": "users.v1.Users"}}, "pool": "users"},
            {
                "name": "orders",
                "match": {"grpc": {"service": "orders.v1.Orders"}},
                "pool": "orders",
            },
        ],
        drain_timeout="1s",
    )
    with running_evenflow(config, tmp_path_factory.mktemp("grpc")) as running:
        yield running


@pytest.fixture
def channel(evenflow: Evenflow) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{evenflow.port}") as made:
        yield made


def test_two_services_reach_two_pools_unary_and_streaming(
    channel: grpc.Channel, backends: dict[str, Backend]
) -> None:
    reply, call = channel.unary_unary("/orders.v1.Orders/Get").with_call(
        b"o-1", timeout=CALL_TIMEOUT_S
    )
    assert reply == b"orders-a:o-1"
    assert call.code() == grpc.StatusCode.OK
    assert ("x-backend", "orders-a") in tuple(call.initial_metadata())
    replies = {
        channel.unary_unary("/users.v1.Users/Get")(b"u", timeout=CALL_TIMEOUT_S) for _ in range(10)
    }
    assert replies == {b"users-a:u", b"users-b:u"}  # balanced over the users pool only
    stream = channel.unary_stream("/users.v1.Users/List")(b"25", timeout=CALL_TIMEOUT_S)
    messages = list(stream)
    assert len(messages) == 25 and messages[0].split(b":")[1] == b"0"
    assert stream.code() == grpc.StatusCode.OK


def test_error_status_and_message_reach_the_client(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        channel.unary_unary("/users.v1.Users/Fail")(b"x", timeout=CALL_TIMEOUT_S)
    error: Any = caught.value
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == "account locked: 3 bad attempts"


def test_deadline_exceeded_within_bounds(channel: grpc.Channel) -> None:
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        channel.unary_unary("/users.v1.Users/Slow")(b"", timeout=0.5)
    error: Any = caught.value
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 1.5


def grpc_body(tmp_path: Path, message: bytes) -> str:
    """A file holding one gRPC-framed message, for curl's --data-binary @FILE."""
    path = tmp_path / "message.bin"
    path.write_bytes(b"\x00" + len(message).to_bytes(4, "big") + message)
    return f"@{path}"


def test_curl_over_http1_gets_grpc_status_in_the_trailers(
    evenflow: Evenflow, tmp_path: Path
) -> None:
    done = curl(
        "--http1.1",
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        "--data-binary",
        grpc_body(tmp_path, b"bob"),
        f"http://127.0.0.1:{evenflow.port}/orders.v1.Orders/Get",
        timeout=10,
    )
    assert done.returncode == 0, done.stderr
    lines = [line.strip().lower() for line in done.stdout.splitlines()]
    assert lines[0].startswith("http/1.1 200")
    assert "transfer-encoding: chunked" in lines
    assert "grpc-status: 0" in lines  # a trailer field of the last chunk


def test_curl_over_http1_error_without_body_has_grpc_status_as_headers(
    evenflow: Evenflow, tmp_path: Path
) -> None:
    done = curl(
        "--http1.1",
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-H",
        "content-type: application/grpc",
        "--data-binary",
        grpc_body(tmp_path, b""),
        f"http://127.0.0.1:{evenflow.port}/users.v1.Users/Fail",
        timeout=10,
    )
    assert done.returncode == 0, done.stderr
    lines = [line.strip().lower() for line in done.stdout.splitlines()]
    assert "grpc-status: 9" in lines
    assert "grpc-message: account locked: 3 bad attempts" in lines
    assert "content-length: 0" in lines


def test_not_serving_backend_is_taken_out_by_the_grpc_probe(
    channel: grpc.Channel, backends: dict[str, Backend]
) -> None:
    users_b = backends["users-b"]
    users_b.serving = NOT_SERVING
    try:
        deadline = time.monotonic() + 10
        streak = 0
        while streak < 20:  # 20 calls in a row that avoid users-b
            assert time.monotonic() < deadline, "users-b still served after 10s of NOT_SERVING"
            reply = channel.unary_unary("/users.v1.Users/Get")(b"h", timeout=CALL_TIMEOUT_S)
            streak = streak + 1 if reply == b"users-a:h" else 0
            time.sleep(0.01)
        before = users_b.calls
        for _ in range(20):
            channel.unary_unary("/users.v1.Users/Get")(b"h", timeout=CALL_TIMEOUT_S)
        assert users_b.calls == before
    finally:
        users_b.serving = SERVING
    deadline = time.monotonic() + 10
    while b"users-b:h" not in {
        channel.unary_unary("/users.v1.Users/Get")(b"h", timeout=CALL_TIMEOUT_S) for _ in range(4)
    }:
        assert time.monotonic() < deadline, "users-b not back 10s after SERVING again"
        time.sleep(0.05)
