"""How a response body travels to the client (shared by the exchange and the connection)."""

from typing import Final

BODY_NONE: Final = 0  # no body: HEAD, 1xx, 204, 304
BODY_RAW: Final = 1  # forwarded as received (Content-Length, or until close to an HTTP/1.0 client)
BODY_CHUNKED: Final = 2  # re-framed as chunks (the backend's chunks, or a body without a length)
