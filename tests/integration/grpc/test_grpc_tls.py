"""HTTP/2 over TLS to the backends: `protocol: h2` with `tls:` on the pool (CONFIG.md's
users-grpc), against a grpcio server holding a certificate from a test CA (trustme).

evenflow must offer ALPN h2, verify the certificate against the CA for the configured name,
and probe the backends with the gRPC health check over the same TLS.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import trustme
from grpc_support import GrpcBackend, Http1GrpcClient, grpc_messages, running_evenflow

from evenflow.config.health import GrpcProbe
from evenflow.config.model import Pool
from evenflow.core.backend import Health
from evenflow.health.probes import probe_grpc

pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.skipif("tls" not in Pool.model_fields, reason="needs `tls` on pools"),
]

NAME = "users.internal"


class TlsGrpcBackend(GrpcBackend):
    def __init__(self, cert: trustme.LeafCert) -> None:
        super().__init__("users-tls", ("users.v1.Users",))
        self.cert = cert

    async def start(self, port: int = 0) -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers(
            (
                self._service("users.v1.Users"),
                grpc.method_handlers_generic_handler(
                    "grpc.health.v1.Health",
                    {"Check": grpc.unary_unary_rpc_method_handler(self._check)},
                ),
            )
        )
        credentials = grpc.ssl_server_credentials(
            [(self.cert.private_key_pem.bytes(), self.cert.cert_chain_pems[0].bytes())]
        )
        self.port = server.add_secure_port(f"127.0.0.1:{port}", credentials)
        await server.start()
        self.server = server


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def backend(ca: trustme.CA) -> AsyncIterator[TlsGrpcBackend]:
    made = TlsGrpcBackend(ca.issue_cert(NAME))
    await made.start()
    try:
        yield made
    finally:
        await made.stop()


def config(backend: TlsGrpcBackend, ca_file: Path, sni: str = NAME) -> dict[str, object]:
    return {
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
                "tls": {"ca": str(ca_file), "sni": sni},
                "backends": [backend.address],
                "retries": {"attempts": 1},
                "health": {
                    "active": {
                        "grpc": {"service": "users.v1.Users"},
                        # room for a TLS handshake on a loaded machine: one probe that took
                        # longer than 100 ms failed a whole CI run once
                        "interval": "1s",
                        "fast_interval": "0.5s",
                        "timeout": "1s",
                        "rise": 1,
                        "fall": 2,
                    },
                    "panic_threshold": "0%",
                },
            }
        },
    }


async def test_calls_go_over_h2_with_tls_to_the_backend(
    backend: TlsGrpcBackend, ca: trustme.CA, tmp_path: Path
) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with running_evenflow(config(backend, ca_file)) as proxy:
        client = await Http1GrpcClient.open(proxy.address)
        try:
            for i in range(3):
                reply = await client.call("/users.v1.Users/Get", f"u{i}".encode())
                assert reply.grpc_status == "0"
                assert grpc_messages(reply.body) == [f"users-tls:u{i}".encode()]
            states = proxy.server.controller.backends["users"]
            assert [s.health for s in states] == [Health.HEALTHY]
        finally:
            await client.close()


async def test_a_certificate_for_another_name_is_refused(
    backend: TlsGrpcBackend, ca: trustme.CA, tmp_path: Path
) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with running_evenflow(config(backend, ca_file, sni="billing.internal")) as proxy:
        client = await Http1GrpcClient.open(proxy.address)
        try:
            reply = await client.call("/users.v1.Users/Get", b"x")
            # evenflow's own error for an unreachable backend: UNAVAILABLE, or a plain 502/503
            assert reply.grpc_status == "14" or reply.status in (502, 503), reply
            assert backend.calls == []
        finally:
            await client.close()


def client_tls(ca: trustme.CA, alpn: list[str]) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.set_alpn_protocols(alpn)
    return context


async def test_the_grpc_probe_speaks_tls(backend: TlsGrpcBackend, ca: trustme.CA) -> None:
    started = time.monotonic()
    ok, detail = await probe_grpc(
        "127.0.0.1",
        backend.port,
        GrpcProbe(service="users.v1.Users"),
        1.0,
        NAME,
        client_tls(ca, ["h2"]),
        NAME,
    )
    assert (ok, detail) == (True, "SERVING")
    assert time.monotonic() - started < 1.0


async def test_the_grpc_probe_fails_without_http2_over_tls(
    backend: TlsGrpcBackend, ca: trustme.CA
) -> None:
    ok, detail = await probe_grpc(
        "127.0.0.1",
        backend.port,
        GrpcProbe(),
        1.0,
        NAME,
        client_tls(ca, ["http/1.1"]),
        NAME,
    )
    assert not ok
    assert detail.startswith(("no HTTP/2 over TLS", "connect failed")), detail
