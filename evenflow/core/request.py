"""The protocol-neutral view of a request that routing, hashing and policies read.

HTTP/1.1 builds it from httptools callbacks and HTTP/2 from a HEADERS frame, so a route never
knows which protocol carried the request. Header names are lowercase bytes, values raw bytes, in
arrival order; query parameters and cookies are parsed lazily, on first use, because most routes
never look at them.
"""

from __future__ import annotations

from urllib.parse import parse_qsl


class RequestHead:
    __slots__ = (
        "method",
        "target",
        "path",
        "query",
        "host",
        "headers",
        "client_ip",
        "scheme",
        "_query_params",
        "_cookies",
    )

    def __init__(
        self,
        method: str,
        target: str,
        host: str,
        headers: list[tuple[bytes, bytes]],
        client_ip: str = "",
        scheme: str = "http",
    ) -> None:
        self.method = method  # "GET"
        self.target = target  # the request target as sent: "/a/b?x=1"
        path, _, query = target.partition("?")
        self.path = path  # "/a/b", not percent-decoded (routes match what was sent)
        self.query = query  # "x=1"
        self.host = host  # lowercase, without port
        self.headers = headers  # [(b"x-canary", b"true"), ...], names lowercase
        self.client_ip = client_ip
        self.scheme = scheme
        self._query_params: dict[str, str] | None = None
        self._cookies: dict[str, str] | None = None

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
