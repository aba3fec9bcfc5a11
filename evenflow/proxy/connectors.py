"""How the data plane opens a connection to a backend of a pool: plain TCP, TLS, or a stream
on a shared HTTP/2 connection. Chosen once per pool config; the exchange only awaits it.

Every connector has the shape of `loop.create_connection`: it takes a protocol factory and a
backend and returns (transport, protocol). An HTTP/2 connector returns a virtual transport
over one stream, so the HTTP/1.1 exchange machinery above it is the same for every protocol.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Coroutine
from typing import Any

from evenflow.config.model import Pool
from evenflow.core.backend import BackendState

Connector = Callable[
    [asyncio.AbstractEventLoop, Callable[[], asyncio.Protocol], BackendState],
    Coroutine[Any, Any, tuple[asyncio.BaseTransport, Any]],
]


def connector_for(config: Pool) -> Connector:
    """The connector for a pool: TLS when `tls:` is set, HTTP/2 when `protocol: h2`."""
    context: ssl.SSLContext | None = None
    server_name: str | None = None
    is_h2 = getattr(config, "protocol", "http1") == "h2"
    if config.tls is not None:
        from evenflow.tls.client import client_context

        context, server_name = client_context(config.tls, ("h2",) if is_h2 else ())
    if is_h2:
        from evenflow.proxy.http2.upstream import open_h2

        def h2(
            loop: asyncio.AbstractEventLoop,
            factory: Callable[[], asyncio.Protocol],
            backend: BackendState,
        ) -> Coroutine[Any, Any, tuple[asyncio.BaseTransport, Any]]:
            return open_h2(loop, factory, backend, context, server_name or backend.host)

        return h2

    if context is not None:
        tls_context = context

        def tls(
            loop: asyncio.AbstractEventLoop,
            factory: Callable[[], asyncio.Protocol],
            backend: BackendState,
        ) -> Coroutine[Any, Any, tuple[asyncio.BaseTransport, Any]]:
            return loop.create_connection(
                factory,
                backend.host,
                backend.port,
                ssl=tls_context,
                server_hostname=server_name or backend.host,
            )

        return tls

    return plain


def plain(
    loop: asyncio.AbstractEventLoop,
    factory: Callable[[], asyncio.Protocol],
    backend: BackendState,
) -> Coroutine[Any, Any, tuple[asyncio.BaseTransport, Any]]:
    return loop.create_connection(factory, backend.host, backend.port)
