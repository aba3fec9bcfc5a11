"""Cookie affinity with an opaque value: an HMAC of the backend's identity, no table.

The cookie names no address. Its value is HMAC-SHA256(secret, pool and backend address),
truncated; every node that shares the secret computes the same values for the same backends,
so any node honours a cookie another issued, and nothing is stored. A value that matches no
backend (forged, tampered, or for a backend that left) is simply ignored: the request is
balanced anew and gets a fresh cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

from evenflow.config.affinity import CookieSticky
from evenflow.core.backend import BackendState

_TOKEN_BYTES = 16  # 128 bits of the MAC: unguessable, and a short cookie


def cookie_token(secret: bytes, pool: str, address: str) -> str:
    """The cookie value naming `address` of `pool` under `secret` (URL-safe, no padding)."""
    mac = hmac.new(
        secret, b"evenflow-affinity\0%s\0%s" % (pool.encode(), address.encode()), hashlib.sha256
    ).digest()
    return base64.urlsafe_b64encode(mac[:_TOKEN_BYTES]).rstrip(b"=").decode("ascii")


class CookieAffinity:
    """One pool's cookie: value ↔ backend, and the Set-Cookie line that pins a backend."""

    __slots__ = ("name", "config", "_by_token", "_token_of", "_attributes")

    def __init__(
        self, pool: str, config: CookieSticky, secret: bytes, backends: Sequence[BackendState]
    ) -> None:
        self.name = config.name
        self.config = config
        self._by_token: dict[str, BackendState] = {}
        self._token_of: dict[int, str] = {}
        for backend in backends:
            token = cookie_token(secret, pool, backend.address)
            self._by_token[token] = backend
            self._token_of[id(backend)] = token
        parts = [f"Path={config.path}"]
        if config.ttl is not None:
            parts.append(f"Max-Age={int(config.ttl)}")
        if config.domain:
            parts.append(f"Domain={config.domain}")
        if config.secure:
            parts.append("Secure")
        if config.http_only:
            parts.append("HttpOnly")
        if config.same_site:
            parts.append(f"SameSite={config.same_site}")
        self._attributes = "; ".join(parts)

    def pinned(self, value: str | None) -> BackendState | None:
        """The backend a cookie value names, or None (no cookie, or not one of ours)."""
        if not value:
            return None
        return self._by_token.get(value)

    def set_cookie(self, backend: BackendState) -> bytes:
        """The response header line that pins `backend`."""
        token = self._token_of[id(backend)]
        return f"set-cookie: {self.name}={token}; {self._attributes}\r\n".encode("latin-1")
