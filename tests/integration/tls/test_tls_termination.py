"""TLS termination on an HTTP listener: a client reaches the backend over HTTPS, the certificate
follows the server name it asked for, and old protocols and weak suites are refused."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import shutil
import ssl
from typing import Any

import pytest
from tls_support import (
    Pki,
    TlsClient,
    client_context,
    config,
    curl_args,
    handshake_der,
    run,
    running_proxy,
)

from evenflow.demo.backend import DemoBackend

pytestmark = pytest.mark.timeout(30)


async def test_curl_http1_over_tls_reaches_the_backend(pki: Pki, backend: DemoBackend) -> None:
    api = pki.issue("api", "api.example.com")
    async with running_proxy(config({"certificates": [api.pair()]}, [backend.address])) as proxy:
        rc, out, err = await run(
            *curl_args(proxy.port, pki.ca_path),
            "-w",
            "\n%{http_code} %{http_version} %{scheme}",
            f"https://api.example.com:{proxy.port}/echo",
        )
    assert rc == 0, err
    body, _, status_line = out.rpartition("\n")
    assert status_line == "200 1.1 HTTPS"
    echoed = {name.lower(): value for name, value in json.loads(body)["headers"]}
    assert echoed["x-forwarded-proto"] == "https"
    assert echoed["host"] == f"api.example.com:{proxy.port}"
    assert backend.requests == 1


async def test_sni_picks_exact_then_wildcard_then_the_default(
    pki: Pki, backend: DemoBackend
) -> None:
    default = pki.issue("default", "default.example.org")
    api = pki.issue("api", "api.example.com")
    wild = pki.issue("wild", "*.example.com")
    tls = {"certificates": [default.pair(), wild.pair(), api.pair()]}
    async with running_proxy(config(tls, [backend.address])) as proxy:
        # the wildcard comes first in the list, yet the exact name wins for api.example.com
        assert await handshake_der(proxy.port, pki.ca_path, "api.example.com") == api.der
        assert await handshake_der(proxy.port, pki.ca_path, "www.example.com") == wild.der
        # one label only: a.b.example.com is not under *.example.com
        assert await handshake_der(proxy.port, pki.ca_path, "a.b.example.com") == default.der
        assert await handshake_der(proxy.port, pki.ca_path, "unknown.test") == default.der
        assert await handshake_der(proxy.port, pki.ca_path, None) == default.der
        assert await handshake_der(proxy.port, pki.ca_path, "API.Example.COM") == api.der


async def test_explicit_sni_names_override_the_certificate_names(
    pki: Pki, backend: DemoBackend
) -> None:
    first = pki.issue("first", "first.example.com")
    other = pki.issue("other", "svc.example.net", "alias.example.net")
    tls = {"certificates": [first.pair(), other.pair(sni=["alias.example.net"])]}
    async with running_proxy(config(tls, [backend.address])) as proxy:
        assert await handshake_der(proxy.port, pki.ca_path, "alias.example.net") == other.der
        # not listed in sni: the certificate's own name no longer picks it
        assert await handshake_der(proxy.port, pki.ca_path, "first.example.com") == first.der


async def test_curl_sees_the_certificate_for_the_name_it_asked(
    pki: Pki, backend: DemoBackend
) -> None:
    api = pki.issue("api", "api.example.com")
    wild = pki.issue("wild", "*.example.com")
    tls = {"certificates": [api.pair(), wild.pair()]}
    async with running_proxy(config(tls, [backend.address])) as proxy:
        for name in ("api.example.com", "shop.example.com"):
            rc, out, err = await run(
                *curl_args(proxy.port, pki.ca_path, name),
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{ssl_verify_result}",
                f"https://{name}:{proxy.port}/",
            )
            # curl verified the certificate against the name: it must have been the right one
            assert (rc, out) == (0, "200 0"), err


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
async def test_tls_1_0_and_1_1_refused(
    pki: Pki, backend: DemoBackend, version: ssl.TLSVersion
) -> None:
    api = pki.issue("api", "api.example.com")
    async with running_proxy(config({"certificates": [api.pair()]}, [backend.address])) as proxy:
        # the server ends the handshake (an alert or a reset, as the event loop does it)
        with pytest.raises((ssl.SSLError, ConnectionError)) as refused:
            await TlsClient.open(proxy.port, client_context(pki.ca_path, max_version=version))
        # ... and it was the server: our client did offer the old version
        assert "NO_PROTOCOLS_AVAILABLE" not in str(refused.value)
        # the same client may speak TLS 1.2: it gets in
        client = await TlsClient.open(
            proxy.port, client_context(pki.ca_path, max_version=ssl.TLSVersion.TLSv1_2)
        )
        assert client.ssl_object.version() == "TLSv1.2"
        assert (await client.get()).status == 200
        await client.close()
    assert backend.requests == 1


async def test_min_version_1_3_refuses_1_2(pki: Pki, backend: DemoBackend) -> None:
    api = pki.issue("api", "api.example.com")
    tls = {"certificates": [api.pair()], "min_version": "1.3"}
    async with running_proxy(config(tls, [backend.address])) as proxy:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await TlsClient.open(
                proxy.port, client_context(pki.ca_path, max_version=ssl.TLSVersion.TLSv1_2)
            )
        client = await TlsClient.open(proxy.port, client_context(pki.ca_path))
        assert client.ssl_object.version() == "TLSv1.3"
        await client.close()


async def test_weak_cipher_suites_refused(pki: Pki, backend: DemoBackend) -> None:
    api = pki.issue("api", "api.example.com")
    async with running_proxy(config({"certificates": [api.pair()]}, [backend.address])) as proxy:
        for weak in ("ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384", "AES128-GCM-SHA256"):
            context = client_context(pki.ca_path, max_version=ssl.TLSVersion.TLSv1_2)
            context.set_ciphers(weak)
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await TlsClient.open(proxy.port, context)
        context = client_context(pki.ca_path, max_version=ssl.TLSVersion.TLSv1_2)
        context.set_ciphers("ECDHE-ECDSA-CHACHA20-POLY1305")
        client = await TlsClient.open(proxy.port, context)
        assert client.ssl_object.cipher()[0] == "ECDHE-ECDSA-CHACHA20-POLY1305"
        await client.close()


async def test_alpn_offers_what_the_listener_speaks(pki: Pki, backend: DemoBackend) -> None:
    api = pki.issue("api", "api.example.com")
    tls = {"certificates": [api.pair()], "alpn": ["http/1.1"]}
    async with running_proxy(config(tls, [backend.address])) as proxy:
        client = await TlsClient.open(
            proxy.port, client_context(pki.ca_path, alpn=["h2", "http/1.1"])
        )
        assert client.ssl_object.selected_alpn_protocol() == "http/1.1"
        assert (await client.get()).status == 200
        await client.close()


async def test_keep_alive_over_tls(pki: Pki, backend: DemoBackend) -> None:
    api = pki.issue("api", "api.example.com")
    async with running_proxy(config({"certificates": [api.pair()]}, [backend.address])) as proxy:
        client = await TlsClient.open(proxy.port, client_context(pki.ca_path))
        for i in range(20):
            response = await client.get(f"/echo?i={i}")
            assert response.status == 200
            assert response.echoed()["x-forwarded-proto"] == "https"
        await client.close()
    assert backend.requests == 20


async def test_plaintext_to_a_tls_listener_gets_no_http_answer(
    pki: Pki, backend: DemoBackend
) -> None:
    api = pki.issue("api", "api.example.com")
    async with running_proxy(config({"certificates": [api.pair()]}, [backend.address])) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert not data.startswith(b"HTTP/")
    assert backend.requests == 0


async def test_a_silent_client_is_dropped_after_the_header_timeout(
    pki: Pki, backend: DemoBackend
) -> None:
    api = pki.issue("api", "api.example.com")
    data = config({"certificates": [api.pair()]}, [backend.address])
    data["listeners"][0]["timeouts"] = {"header": "500ms"}
    async with running_proxy(data) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        started = asyncio.get_running_loop().time()
        # no ClientHello ever: the handshake counts against the header timeout
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert asyncio.get_running_loop().time() - started < 3
        writer.close()


def _loop_factories() -> list[Any]:
    factories: list[Any] = [pytest.param(asyncio.new_event_loop, id="asyncio")]
    with contextlib.suppress(ImportError):
        import uvloop

        factories.append(pytest.param(uvloop.new_event_loop, id="uvloop"))
    return factories


@pytest.mark.parametrize("loop_factory", _loop_factories())
def test_large_bodies_both_ways_over_tls(pki: Pki, loop_factory: Any) -> None:
    # many records per read, and a response far larger than the socket buffers, so that
    # evenflow's TLS layer passes backpressure on while the client reads; on both loops,
    # whose TCP transports evenflow's TLS layer runs over
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_large_bodies(pki))


async def _large_bodies(pki: Pki) -> None:
    backend = DemoBackend("b1")
    await backend.start("127.0.0.1", 0)
    api = pki.issue("api", "api.example.com")
    upload = bytes(range(256)) * 8192  # 2 MiB
    try:
        async with running_proxy(
            config({"certificates": [api.pair()]}, [backend.address])
        ) as proxy:
            client = await TlsClient.open(proxy.port, client_context(pki.ca_path))
            head = (
                f"POST /echo HTTP/1.1\r\nhost: api.example.com\r\n"
                f"content-length: {len(upload)}\r\n\r\n"
            )
            client.writer.write(head.encode() + upload)
            answer = await asyncio.wait_for(client.reader.readuntil(b"\r\n\r\n"), 10)
            length = int(answer.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            echoed = json.loads(await asyncio.wait_for(client.reader.readexactly(length), 10))
            assert echoed["body_sha256"] == hashlib.sha256(upload).hexdigest()
            size = 8 * 1024 * 1024
            response = await client.get(f"/big?size={size}")
            assert response.status == 200 and len(response.body) == size
            response = await client.get("/echo?after=big")  # the connection still serves
            assert response.status == 200
            await client.close()
        assert backend.requests == 3
    finally:
        await backend.close()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_a_renegotiation_is_refused_at_once(pki: Pki, backend: DemoBackend) -> None:
    # TLS 1.2 lets a client ask for a new handshake; evenflow refuses (a CPU exhaustion
    # vector), and says so now, not with its next response: the client is not left waiting
    api = pki.issue("api", "api.example.com")
    async with running_proxy(config({"certificates": [api.pair()]}, [backend.address])) as proxy:
        client = await asyncio.create_subprocess_exec(
            *("openssl", "s_client", "-tls1_2", "-connect", f"127.0.0.1:{proxy.port}"),
            *("-servername", "api.example.com", "-CAfile", str(pki.ca_path)),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert client.stdin is not None and client.stdout is not None
        try:
            # s_client prints its session last: the handshake is done
            await asyncio.wait_for(client.stdout.readuntil(b"\n---\n"), 5)
            await asyncio.wait_for(client.stdout.readuntil(b"Verify return code"), 5)
            client.stdin.write(b"R\n")  # s_client's command: renegotiate
            said = await asyncio.wait_for(client.stdout.read(), 5)
        finally:
            if client.returncode is None:
                client.kill()
            await client.wait()
        assert b"RENEGOTIATING" in said and b"no renegotiation" in said
    assert backend.requests == 0
