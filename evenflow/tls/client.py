"""TLS from evenflow to a pool's backends: the client context a pool's connector uses.

A pool's runtime is rebuilt on every health flip or weight change, so contexts are kept per
settings and per state of the files they read: loading the system trust store takes tens of
milliseconds, and a context that stays the same lets idle connections and sessions be reused.
Opening connections is the connector's business (proxy/connectors.py), not this module's.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Sequence

from evenflow.config.tls import PoolTls

log = logging.getLogger(__name__)

_MAX_CACHED = 64  # distinct pool TLS settings alive at once; past it the cache starts over
_cache: dict[tuple[object, ...], tuple[ssl.SSLContext, str | None]] = {}


def client_context(
    tls: PoolTls, default_alpn: Sequence[str] = ()
) -> tuple[ssl.SSLContext, str | None]:
    """(context, server name to send as SNI and verify; None: the backend's host).

    Verifies against `tls.ca` or the system store, with hostname checking, unless
    `insecure_skip_verify` (a warning is logged once for such settings). Offers
    `tls.alpn`, else `default_alpn` (the connector passes ["h2"] for an HTTP/2 pool).
    Raises OSError or ssl.SSLError when a file cannot be loaded.
    """
    key = (tls.model_dump_json(), tuple(default_alpn), _stamp(tls))
    found = _cache.get(key)
    if found is not None:
        return found
    if tls.insecure_skip_verify:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        log.warning(
            "pool TLS with insecure_skip_verify: backend certificates are not verified "
            "(anyone on the path can impersonate the backends; for labs only)"
        )
    else:
        context = ssl.create_default_context(cafile=tls.ca)  # cafile None: the system store
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.cert is not None:
        context.load_cert_chain(tls.cert, tls.key)
    alpn = tls.alpn if tls.alpn is not None else list(default_alpn)
    if alpn:
        context.set_alpn_protocols(alpn)
    if len(_cache) >= _MAX_CACHED:
        _cache.clear()
    result = _cache[key] = (context, tls.sni)
    return result


def _stamp(tls: PoolTls) -> tuple[tuple[int, int, int] | None, ...]:
    """The state of the files a context reads: a renewed CA or client certificate makes a new
    context on the next rebuild (a reload, or any change to the pool)."""
    stamps: list[tuple[int, int, int] | None] = []
    for path in (tls.ca, tls.cert, tls.key):
        if path is None:
            continue
        try:
            st = os.stat(path)
        except OSError:
            stamps.append(None)
            continue
        stamps.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(stamps)
