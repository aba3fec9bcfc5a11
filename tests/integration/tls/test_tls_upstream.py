"""TLS from evenflow to the backends of a pool: verified against a CA file, with the server name
configured or the backend's host, a client certificate when the backend asks, and an explicit
opt-out of verification for labs."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from tls_support import Issued, Pki, TlsBackend, backend_context, config, running_proxy

pytestmark = pytest.mark.timeout(30)

Start = Callable[[Issued, Path | None], Awaitable[TlsBackend]]


@pytest.fixture
async def tls_backend() -> AsyncIterator[Start]:
    started: list[TlsBackend] = []

    async def start(cert: Issued, client_ca: Path | None = None) -> TlsBackend:
        backend = TlsBackend(backend_context(cert, client_ca))
        await backend.start()
        started.append(backend)
        return backend

    try:
        yield start
    finally:
        for backend in started:
            await backend.close()


async def get(port: int, path: str = "/") -> tuple[int, bytes]:
    """One plain HTTP/1.1 request to evenflow's cleartext listener: (status, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nhost: app\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await asyncio.wait_for(reader.readexactly(length), 10)
    finally:
        writer.close()
    return int(head.split(b" ", 2)[1]), body


def pool_tls(backend: TlsBackend, **tls: Any) -> dict[str, Any]:
    return config(None, [backend.address], tls=tls, retries={"attempts": 1})


async def test_verified_against_the_ca_file(pki: Pki, tls_backend: Start) -> None:
    backend = await tls_backend(pki.issue("b", "127.0.0.1"), None)
    async with running_proxy(pool_tls(backend, ca=str(pki.ca_path))) as proxy:
        for _ in range(3):
            status, body = await get(proxy.port)
            assert status == 200, body
    seen = json.loads(body)
    assert seen["request"] == "GET / HTTP/1.1"
    assert seen["sni"] is None  # an IP address is never sent as SNI (RFC 6066 §3)
    assert backend.requests == 3


async def test_sni_sent_as_configured(pki: Pki, tls_backend: Start) -> None:
    backend = await tls_backend(pki.issue("b", "users.internal"), None)
    async with running_proxy(pool_tls(backend, ca=str(pki.ca_path), sni="users.internal")) as proxy:
        status, body = await get(proxy.port)
    assert status == 200, body
    assert json.loads(body)["sni"] == "users.internal"
    assert backend.server_names == ["users.internal"]


async def test_sni_defaults_to_the_backend_host(pki: Pki, tls_backend: Start) -> None:
    backend = await tls_backend(pki.issue("b", "localhost"), None)
    data = config(None, [f"localhost:{backend.port}"], tls={"ca": str(pki.ca_path)})
    async with running_proxy(data) as proxy:
        status, body = await get(proxy.port)
    assert status == 200, body
    assert json.loads(body)["sni"] == "localhost"


def failures(access_log: Path) -> list[str]:
    """Every failure the access log recorded (it is flushed when evenflow stops)."""
    found: list[str] = []
    for line in access_log.read_text().splitlines():
        found += json.loads(line).get("failures", [])
    return found


async def test_wrong_name_is_a_502(pki: Pki, tls_backend: Start, tmp_path: Path) -> None:
    backend = await tls_backend(pki.issue("b", "users.internal"), None)
    data = pool_tls(backend, ca=str(pki.ca_path), sni="other.internal")
    data["access_log"] = {"path": str(tmp_path / "access.log")}
    async with running_proxy(data) as proxy:
        status, _ = await get(proxy.port)
    assert status == 502
    assert backend.requests == 0
    reason = "TLS: hostname mismatch, certificate is not valid for 'other.internal'"
    assert any(reason in failure for failure in failures(tmp_path / "access.log"))


async def test_wrong_ca_is_a_502(pki: Pki, tls_backend: Start, tmp_path: Path) -> None:
    backend = await tls_backend(pki.issue("b", "127.0.0.1"), None)
    (tmp_path / "elsewhere").mkdir()
    other_ca = Pki(tmp_path / "elsewhere").ca_path
    data = pool_tls(backend, ca=str(other_ca))
    data["access_log"] = {"path": str(tmp_path / "access.log")}
    async with running_proxy(data) as proxy:
        status, _ = await get(proxy.port)
    assert status == 502
    assert backend.requests == 0
    found = failures(tmp_path / "access.log")
    assert any(f.endswith("failed: TLS: unable to get local issuer certificate") for f in found)


async def test_system_store_does_not_trust_a_private_ca(pki: Pki, tls_backend: Start) -> None:
    backend = await tls_backend(pki.issue("b", "127.0.0.1"), None)
    async with running_proxy(pool_tls(backend)) as proxy:
        status, _ = await get(proxy.port)
    assert status == 502


async def test_insecure_skip_verify_accepts_anything_and_says_so(
    pki: Pki, tls_backend: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="evenflow.tls.client")
    backend = await tls_backend(pki.issue("b", "somewhere.else"), None)
    async with running_proxy(pool_tls(backend, insecure_skip_verify=True)) as proxy:
        for _ in range(2):
            status, _ = await get(proxy.port)
            assert status == 200
    warnings = [r for r in caplog.records if "insecure_skip_verify" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING


async def test_client_certificate_to_a_backend_that_asks(
    pki: Pki, tls_backend: Start, tmp_path: Path
) -> None:
    (tmp_path / "clients").mkdir()
    clients = Pki(tmp_path / "clients", "clients-ca")
    backend = await tls_backend(pki.issue("b", "127.0.0.1"), clients.ca_path)
    evenflow_cert = clients.issue("evenflow", "evenflow.internal", common_name="evenflow")
    without = pool_tls(backend, ca=str(pki.ca_path))
    async with running_proxy(without) as proxy:
        status, _ = await get(proxy.port)
    assert status == 502
    with_cert = pool_tls(
        backend, ca=str(pki.ca_path), cert=str(evenflow_cert.cert), key=str(evenflow_cert.key)
    )
    async with running_proxy(with_cert) as proxy:
        status, body = await get(proxy.port)
    assert status == 200, body
    assert json.loads(body)["client_subject"].endswith("commonName=evenflow")


async def test_alpn_offered_only_when_configured(pki: Pki, tls_backend: Start) -> None:
    backend = await tls_backend(pki.issue("b", "127.0.0.1"), None)
    async with running_proxy(pool_tls(backend, ca=str(pki.ca_path))) as proxy:
        _, body = await get(proxy.port)
    assert json.loads(body)["alpn"] is None
    async with running_proxy(pool_tls(backend, ca=str(pki.ca_path), alpn=["http/1.1"])) as proxy:
        _, body = await get(proxy.port)
    assert json.loads(body)["alpn"] == "http/1.1"
