"""Certificates reloaded without a restart: when their files change, and on a config reload.
Established connections keep working; a replacement that cannot be used changes nothing."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

import pytest
import yaml
from tls_support import (
    Issued,
    Pki,
    TlsClient,
    client_context,
    config,
    handshake_der,
    running_proxy,
)

from evenflow.config.load import ConfigError
from evenflow.demo.backend import DemoBackend
from evenflow.server import StartupError
from evenflow.tls import server as tls_server

pytestmark = pytest.mark.timeout(30)

WAIT_S = 3 * tls_server.POLL_INTERVAL_S + 2


async def until_presented(port: int, ca: Path, want: bytes, name: str = "api.example.com") -> None:
    """Handshake again and again until evenflow presents `want` (bounded)."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while await handshake_der(port, ca, name) != want:
        assert asyncio.get_running_loop().time() < deadline, "the new certificate never came"
        await asyncio.sleep(0.1)


async def until_logged(caplog: pytest.LogCaptureFixture, text: str) -> str:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        for record in caplog.records:
            if text in record.getMessage():
                return record.getMessage()
        assert asyncio.get_running_loop().time() < deadline, f"never logged: {text}"
        await asyncio.sleep(0.1)


async def test_changed_files_are_picked_up_and_connections_stay(
    pki: Pki, backend: DemoBackend
) -> None:
    live = pki.issue("live", "api.example.com")
    first_der = live.der
    renewed = pki.issue("renewed", "api.example.com")
    async with running_proxy(config({"certificates": [live.pair()]}, [backend.address])) as proxy:
        established = await TlsClient.open(proxy.port, client_context(pki.ca_path))
        assert (await established.get()).status == 200
        renewed.copy_to(live)  # the operator renews the files in place
        await until_presented(proxy.port, pki.ca_path, renewed.der)
        # the connection from before still works, on the certificate it was opened with
        assert established.peer_der == first_der
        for _ in range(3):
            assert (await established.get()).status == 200
        await established.close()
    assert backend.requests == 4


async def test_a_bad_replacement_keeps_the_certificate_in_use(
    pki: Pki, backend: DemoBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="evenflow.tls.server")
    live = pki.issue("live", "api.example.com")
    good_der = live.der
    other = pki.issue("other", "api.example.com")
    async with running_proxy(config({"certificates": [live.pair()]}, [backend.address])) as proxy:
        shutil.copyfile(other.cert, live.cert)  # a new certificate, but the old key
        message = await until_logged(caplog, "cannot be used")
        assert "keeping the certificates in use" in message
        assert str(live.cert) in message
        assert await handshake_der(proxy.port, pki.ca_path, "api.example.com") == good_der
        client = await TlsClient.open(proxy.port, client_context(pki.ca_path))
        assert (await client.get()).status == 200
        await client.close()
        # then the right key arrives: the pair is complete, and it is taken
        other.copy_to(live)
        await until_presented(proxy.port, pki.ca_path, other.der)


async def test_config_reload_rereads_the_files(
    pki: Pki, backend: DemoBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tls_server, "POLL_INTERVAL_S", 3600.0)  # only the reload may do it
    live = pki.issue("live", "api.example.com")
    first_der = live.der
    renewed = pki.issue("renewed", "api.example.com")
    data = config({"certificates": [live.pair()]}, [backend.address])
    async with running_proxy(data, tmp_path / "evenflow.yaml") as proxy:
        established = await TlsClient.open(proxy.port, client_context(pki.ca_path))
        renewed.copy_to(live)
        assert await handshake_der(proxy.port, pki.ca_path, "api.example.com") == first_der
        await proxy.server.reload()
        assert await handshake_der(proxy.port, pki.ca_path, "api.example.com") == renewed.der
        assert (await established.get()).status == 200
        await established.close()


async def test_config_reload_adds_a_certificate(
    pki: Pki, backend: DemoBackend, tmp_path: Path
) -> None:
    api = pki.issue("api", "api.example.com")
    shop = pki.issue("shop", "shop.example.net")
    data = config({"certificates": [api.pair()]}, [backend.address])
    path = tmp_path / "evenflow.yaml"
    async with running_proxy(data, path) as proxy:
        assert await handshake_der(proxy.port, pki.ca_path, "shop.example.net") == api.der
        data["listeners"][0]["tls"]["certificates"].append(shop.pair())
        path.write_text(yaml.safe_dump(data))
        await proxy.server.reload()
        assert await handshake_der(proxy.port, pki.ca_path, "shop.example.net") == shop.der
        assert await handshake_der(proxy.port, pki.ca_path, "api.example.com") == api.der


async def test_config_reload_with_a_bad_certificate_is_refused(
    pki: Pki, backend: DemoBackend, tmp_path: Path
) -> None:
    api = pki.issue("api", "api.example.com")
    other = pki.issue("other", "api.example.com")
    data = config({"certificates": [api.pair()]}, [backend.address])
    path = tmp_path / "evenflow.yaml"
    async with running_proxy(data, path) as proxy:
        data["listeners"][0]["tls"]["certificates"] = [Issued(other.cert, api.key).pair()]
        path.write_text(yaml.safe_dump(data))
        with pytest.raises(ConfigError) as refused:
            await proxy.server.reload()
        assert refused.value.problems == [
            (
                "listeners[0].tls.certificates[0].key",
                f"{api.key} is not the private key of {other.cert}",
            )
        ]
        assert await handshake_der(proxy.port, pki.ca_path, "api.example.com") == api.der


async def test_tls_cannot_be_switched_on_by_a_reload(
    pki: Pki, backend: DemoBackend, tmp_path: Path
) -> None:
    api = pki.issue("api", "api.example.com")
    data = config(None, [backend.address])
    path = tmp_path / "evenflow.yaml"
    async with running_proxy(data, path) as proxy:
        data["listeners"][0]["tls"] = {"certificates": [api.pair()]}
        path.write_text(yaml.safe_dump(data))
        with pytest.raises(StartupError, match="adding or removing tls needs a restart"):
            await proxy.server.reload()
        # still plain HTTP, still serving
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 200")
        writer.close()
