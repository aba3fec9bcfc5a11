"""The protocol-neutral view of a request that routing, hashing and policies read.

HTTP/1.1 builds it from llhttp callbacks and HTTP/2 from a HEADERS frame, so a route never
knows which protocol carried the request. Header names are lowercase bytes, values raw bytes, in
arrival order. The target and Host may be given as the raw bytes received: they are decoded, and
the path, query, parameters and cookies parsed, only when something asks, because most routes
look at little or nothing of a request.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qsl


def normalize_host(raw: bytes | str) -> str:
    """A Host header value as routes compare it: lowercase, without port."""
    host = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.partition(":")[0]


# Host header bytes -> normalized: a fleet serves a handful of names, asked for again and again
_normalized: dict[bytes, str] = {}
_MAX_NORMALIZED = 1024  # not Final: tests lower it, and compiled code inlines a Final


class _LastHost:
    """The Host header normalized last, checked before the table: requests come in runs
    with one name (a client connection's, a busy site's), and comparing the bytes costs a
    fraction of hashing them for the table (~450 instructions a request, bench/instructions.py).
    A native object: module globals would be dict lookups."""

    __slots__ = ("raw", "host")

    def __init__(self) -> None:
        self.raw = b""
        self.host = ""


_LAST_HOST: Final = _LastHost()


class RequestHead:
    __slots__ = (
        "method",
        "headers",
        "client_ip",
        "scheme",
        "_target",
        "_host",
        "_path",
        "_query",
        "_query_params",
        "_cookies",
    )

    def __init__(
        self,
        method: str,
        target: str | bytes,
        host: str | bytes,
        headers: list[tuple[bytes, bytes]],
        client_ip: str = "",
        scheme: str = "http",
    ) -> None:
        self.method = method  # "GET"
        self.headers = headers  # [(b"x-canary", b"true"), ...], names lowercase
        self.client_ip = client_ip
        self.scheme = scheme
        self._target = target
        self._host = host if isinstance(host, bytes) else normalize_host(host)
        self._path: str | None = None
        self._query = ""
        self._query_params: dict[str, str] | None = None
        self._cookies: dict[str, str] | None = None

    @property
    def target(self) -> str:
        """The request target as sent: "/a/b?x=1"."""
        target = self._target
        if isinstance(target, bytes):
            target = self._target = target.decode("latin-1")
        return target

    @property
    def raw_target(self) -> str | bytes:
        """The target: the bytes received (latin-1) while nothing has decoded them, for the
        access log, which would only encode them again."""
        return self._target

    @property
    def raw_host(self) -> str | bytes:
        """The Host header as received while nothing has asked for `host`, then `host`: for
        the access log, which keeps the last one it normalized."""
        return self._host

    @property
    def host(self) -> str:
        """From the Host header (or the absolute target): lowercase, without port."""
        raw = self._host
        if not isinstance(raw, bytes):
            return raw
        last = _LAST_HOST
        if raw == last.raw:
            host = last.host
        else:
            found = _normalized.get(raw)
            if found is None:
                if len(_normalized) >= _MAX_NORMALIZED:
                    _normalized.clear()  # a client sending endless names cannot grow it
                found = _normalized[raw] = normalize_host(raw)
            host = last.host = found
            last.raw = raw
        self._host = host
        return host

    @property
    def path(self) -> str:
        """ "/a/b": not percent-decoded, routes match what was sent."""
        if self._path is None:
            self._path, _, self._query = self.target.partition("?")
        return self._path

    @property
    def query(self) -> str:
        """ "x=1": the raw query string."""
        if self._path is None:
            self._path, _, self._query = self.target.partition("?")
        return self._query

    def header(self, name: bytes) -> bytes | None:
        """The first value of header `name` (lowercase), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def query_param(self, name: str) -> str | None:
        """The first value of query parameter `name`, or None."""
        if self._query_params is None:
            params: dict[str, str] = {}
            for key, value in parse_qsl(self.query, keep_blank_values=True):
                params.setdefault(key, value)
            self._query_params = params
        return self._query_params.get(name)

    def cookie(self, name: str) -> str | None:
        """The first value of cookie `name` across every Cookie header, or None."""
        if self._cookies is None:
            cookies: dict[str, str] = {}
            for key, value in self.headers:
                if key == b"cookie":
                    for part in value.decode("latin-1").split(";"):
                        cname, sep, cvalue = part.strip().partition("=")
                        if sep and cname:
                            cookies.setdefault(cname, cvalue.strip().strip('"'))
            self._cookies = cookies
        return self._cookies.get(name)
