"""Helpers for the TLS integration tests: certificates, evenflow in process, TLS clients, and a
small TLS backend that tells what it saw.

Certificates come from trustme and are written to the test's tmp_path. evenflow runs in the
test's event loop, so anything that blocks (curl) runs as an asyncio subprocess. Every wait is
bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import ssl
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from evenflow.config.load import load_data
from evenflow.server import Server, StartupError

TIMEOUT_S = 5.0


def free_port() -> int:
    """A port that was free a moment ago (evenflow's config refuses `bind: host:0`)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- certificates -----------------------------------------------------------------------------


@dataclass
class Issued:
    cert: Path
    key: Path

    def pair(self, **more: Any) -> dict[str, Any]:
        return {"cert": str(self.cert), "key": str(self.key), **more}

    @property
    def der(self) -> bytes:
        return der_of(self.cert.read_bytes())

    def copy_to(self, target: Issued) -> None:
        """Replace target's files with this certificate and key (as an operator renews)."""
        shutil.copyfile(self.cert, target.cert)
        shutil.copyfile(self.key, target.key)


def der_of(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)


class Pki:
    """A CA that writes what it issues into a directory."""

    def __init__(self, directory: Path, name: str = "ca") -> None:
        self.dir = directory
        self.ca = trustme.CA()
        self.ca_path = directory / f"{name}.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_path))

    def issue(self, file_name: str, *names: str, **options: Any) -> Issued:
        leaf = self.ca.issue_cert(*names, **options)
        issued = Issued(self.dir / f"{file_name}.pem", self.dir / f"{file_name}.key")
        leaf.cert_chain_pems[0].write_to_path(str(issued.cert))
        leaf.private_key_pem.write_to_path(str(issued.key))
        return issued


# --- evenflow in process ----------------------------------------------------------------------


@dataclass
class Proxy:
    server: Server
    port: int


def listener(tls: dict[str, Any] | None, pool: str = "web") -> dict[str, Any]:
    found: dict[str, Any] = {"name": "web", "bind": "127.0.0.1:1", "pool": pool}
    if tls is not None:
        found["tls"] = tls
    return found


def config(listener_tls: dict[str, Any] | None, backends: list[str], **pool: Any) -> dict[str, Any]:
    """One listener `web` (TLS when `listener_tls` is given) in front of one pool `web` (with
    `pool` as its other settings)."""
    return {
        "listeners": [listener(listener_tls)],
        "pools": {"web": {"backends": backends, **pool}},
        "access_log": {"path": "off"},
        "drain_timeout": "1s",
    }


@contextlib.asynccontextmanager
async def running_proxy(
    data: dict[str, Any], config_path: Path | None = None
) -> AsyncIterator[Proxy]:
    """evenflow in this loop with `data` as its config (also written to `config_path` if given,
    for Server.reload), stopped on exit."""
    server: Server | None = None
    port = 0
    for _ in range(5):
        port = free_port()
        data["listeners"][0]["bind"] = f"127.0.0.1:{port}"
        if config_path is not None:
            config_path.write_text(yaml.safe_dump(data))
        server = Server(load_data(data).config, str(config_path) if config_path else None)
        try:
            await server.start()
            break
        except StartupError:
            server = None  # the port was taken meanwhile: try another
    assert server is not None, "evenflow could not bind a listener in 5 tries"
    try:
        yield Proxy(server, port)
    finally:
        await asyncio.wait_for(server.stop(), 10)


# --- clients ----------------------------------------------------------------------------------


def client_context(
    ca: Path | None,
    *,
    client: Issued | None = None,
    alpn: list[str] | None = None,
    max_version: ssl.TLSVersion | None = None,
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    if ca is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if client is not None:
        context.load_cert_chain(client.cert, client.key)
    context.set_alpn_protocols(alpn or ["http/1.1"])
    if max_version is not None:
        # old protocols are also below OpenSSL's default security level on the client side
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1, TLSv1_1: on purpose
            context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            context.maximum_version = max_version
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def echoed(self) -> dict[str, str]:
        """The request headers DemoBackend's /echo saw (lowercase names; the last of a name)."""
        return {name.lower(): value for name, value in json.loads(self.body)["headers"]}

    def echoed_all(self, name: str) -> list[str]:
        return [v for n, v in json.loads(self.body)["headers"] if n.lower() == name]


class TlsClient:
    """One TLS connection to evenflow, speaking HTTP/1.1 keep-alive (Content-Length only)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(
        cls, port: int, context: ssl.SSLContext, server_name: str | None = "api.example.com"
    ) -> TlsClient:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                "127.0.0.1", port, ssl=context, server_hostname=server_name or ""
            ),
            TIMEOUT_S,
        )
        return cls(reader, writer)

    @property
    def ssl_object(self) -> ssl.SSLObject:
        found = self.writer.get_extra_info("ssl_object")
        assert isinstance(found, ssl.SSLObject)
        return found

    @property
    def peer_der(self) -> bytes:
        der = self.ssl_object.getpeercert(binary_form=True)
        assert der is not None
        return der

    async def get(self, path: str = "/echo", headers: dict[str, str] | None = None) -> Response:
        lines = [f"GET {path} HTTP/1.1", "host: api.example.com"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), TIMEOUT_S)
        status = int(head.split(b" ", 2)[1])
        fields: dict[str, str] = {}
        for line in head.decode("latin-1").split("\r\n")[1:]:
            if line:
                name, _, value = line.partition(":")
                fields[name.strip().lower()] = value.strip()
        body = await asyncio.wait_for(
            self.reader.readexactly(int(fields.get("content-length", "0"))), TIMEOUT_S
        )
        return Response(status, fields, body)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await asyncio.wait_for(self.writer.wait_closed(), TIMEOUT_S)


async def handshake_der(port: int, ca: Path, server_name: str | None) -> bytes:
    """The certificate evenflow presents for `server_name` (None: no SNI at all), verified
    against `ca` but not against the name (the default certificate is for another name)."""
    context = client_context(ca)
    context.check_hostname = False
    client = await TlsClient.open(port, context, server_name)
    try:
        return client.peer_der
    finally:
        await client.close()


async def run(*argv: str, timeout_s: float = 20.0) -> tuple[int, str, str]:
    """A program as an asyncio subprocess (evenflow runs in this loop): rc, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def curl_args(port: int, ca: Path, name: str = "api.example.com") -> list[str]:
    """curl over TLS to evenflow as `name` (resolved to 127.0.0.1), HTTP/1.1, no config file."""
    return [
        "curl",
        "-q",
        "--noproxy",
        "*",
        "-sS",
        "--http1.1",
        "--max-time",
        "10",
        "--cacert",
        str(ca),
        "--resolve",
        f"{name}:{port}:127.0.0.1",
    ]


# --- a TLS backend ----------------------------------------------------------------------------


class TlsBackend:
    """An HTTPS/1.1 backend: answers every request with JSON of what it saw (the SNI, its
    client's certificate subject, the ALPN protocol chosen, the request headers), keep-alive."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.server_names: list[str | None] = []
        self.requests = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        context.sni_callback = self._on_sni

    def _on_sni(self, ssl_object: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        self.server_names.append(name)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", 0, ssl=self.context, ssl_handshake_timeout=TIMEOUT_S
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        peer = writer.get_extra_info("peercert") or {}
        subject = ",".join(f"{k}={v}" for rdn in peer.get("subject", ()) for k, v in rdn)
        alpn = writer.get_extra_info("ssl_object").selected_alpn_protocol()
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = [line.split(":", 1) for line in lines[1:] if line]
                self.requests += 1
                body = json.dumps(
                    {
                        "request": lines[0],
                        "sni": self.server_names[-1] if self.server_names else None,
                        "client_subject": subject,
                        "alpn": alpn,
                        "headers": [[n.strip(), v.strip()] for n, v in headers],
                    }
                ).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            await self._server.wait_closed()
            self._server = None


def backend_context(cert: Issued, client_ca: Path | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert.cert, cert.key)
    context.set_alpn_protocols(["http/1.1"])  # chosen only when the client offers it
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=str(client_ca))
    return context
