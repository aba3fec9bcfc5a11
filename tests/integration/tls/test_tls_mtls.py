"""Client certificates (mTLS) on a listener: required or optional, and the verified subject
passed to the backend in a header that a client cannot forge."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from tls_support import Pki, TlsClient, client_context, config, curl_args, run, running_proxy

from evenflow.demo.backend import DemoBackend

pytestmark = pytest.mark.timeout(30)


def mtls(pki: Pki, clients: Pki, **more: str) -> dict[str, object]:
    api = pki.issue("api", "api.example.com")
    return {"certificates": [api.pair()], "client_ca": str(clients.ca_path), **more}


@pytest.fixture
def clients(tmp_path: Path) -> Pki:
    """The CA that signs client certificates (not the one that signs evenflow's)."""
    directory = tmp_path / "clients"
    directory.mkdir()
    return Pki(directory, "clients-ca")


async def no_response(client_context_: ssl.SSLContext, port: int) -> bool:
    """True when a client with this context gets no HTTP response: its handshake fails, or
    (TLS 1.3: the client finishes before the server has seen its certificate) the first read
    does."""
    try:
        client = await TlsClient.open(port, client_context_)
    except (ssl.SSLError, ConnectionError):
        return True
    try:
        await client.get()
    except (ssl.SSLError, ConnectionError, EOFError):
        return True
    finally:
        await client.close()
    return False


async def test_required_client_certificate(pki: Pki, clients: Pki, backend: DemoBackend) -> None:
    alice = clients.issue("alice", "alice@example.com", common_name="alice")
    (pki.dir / "stranger").mkdir()
    stranger = Pki(pki.dir / "stranger").issue("mallory", "m@example.com")
    async with running_proxy(config(mtls(pki, clients), [backend.address])) as proxy:
        assert await no_response(client_context(pki.ca_path), proxy.port)
        # a certificate from a CA the listener does not trust is no better than none
        assert await no_response(client_context(pki.ca_path, client=stranger), proxy.port)
        client = await TlsClient.open(proxy.port, client_context(pki.ca_path, client=alice))
        response = await client.get()
        await client.close()
    assert response.status == 200
    subject = response.echoed()["x-client-cert-subject"]
    assert subject.startswith("O=trustme"), subject
    assert subject.endswith(",CN=alice"), subject
    assert backend.requests == 1


async def test_curl_with_and_without_a_client_certificate(
    pki: Pki, clients: Pki, backend: DemoBackend
) -> None:
    alice = clients.issue("alice", "alice@example.com", common_name="alice")
    async with running_proxy(config(mtls(pki, clients), [backend.address])) as proxy:
        url = f"https://api.example.com:{proxy.port}/echo"
        rc, _, _ = await run(*curl_args(proxy.port, pki.ca_path), url)
        assert rc != 0
        rc, out, err = await run(
            *curl_args(proxy.port, pki.ca_path),
            "--cert",
            str(alice.cert),
            "--key",
            str(alice.key),
            url,
        )
        assert rc == 0, err
        assert "CN=alice" in out


async def test_a_client_sent_subject_header_is_dropped(
    pki: Pki, clients: Pki, backend: DemoBackend
) -> None:
    alice = clients.issue("alice", "alice@example.com", common_name="alice")
    async with running_proxy(config(mtls(pki, clients), [backend.address])) as proxy:
        client = await TlsClient.open(proxy.port, client_context(pki.ca_path, client=alice))
        spoofed = {"X-Client-Cert-Subject": "CN=admin", "x-other": "kept"}
        response = await client.get(headers=spoofed)
        # a second request on the same connection: still only the verified subject
        again = await client.get(headers=spoofed)
        await client.close()
    for answer in (response, again):
        assert answer.status == 200
        values = answer.echoed_all("x-client-cert-subject")
        assert len(values) == 1 and values[0].endswith("CN=alice"), values
        assert answer.echoed()["x-other"] == "kept"


async def test_optional_client_certificate(pki: Pki, clients: Pki, backend: DemoBackend) -> None:
    alice = clients.issue("alice", "alice@example.com", common_name="alice")
    tls = mtls(pki, clients, client_auth="optional", client_cert_header="x-ssl-client-dn")
    async with running_proxy(config(tls, [backend.address])) as proxy:
        anonymous = await TlsClient.open(proxy.port, client_context(pki.ca_path))
        response = await anonymous.get(headers={"x-ssl-client-dn": "CN=admin"})
        await anonymous.close()
        assert response.status == 200
        assert "x-ssl-client-dn" not in response.echoed()  # the forged one was dropped
        client = await TlsClient.open(proxy.port, client_context(pki.ca_path, client=alice))
        response = await client.get()
        await client.close()
        assert response.echoed()["x-ssl-client-dn"].endswith("CN=alice")


async def test_without_client_ca_no_certificate_is_asked_and_no_header_is_dropped(
    pki: Pki, backend: DemoBackend
) -> None:
    api = pki.issue("api", "api.example.com")
    async with running_proxy(config({"certificates": [api.pair()]}, [backend.address])) as proxy:
        client = await TlsClient.open(proxy.port, client_context(pki.ca_path))
        response = await client.get(headers={"x-client-cert-subject": "from the client"})
        await client.close()
    # without mTLS evenflow has no opinion on the header: it is the client's, passed on
    assert response.echoed()["x-client-cert-subject"] == "from the client"
