"""How a response body travels to the client (shared by the exchange and the connection)."""

BODY_NONE = 0  # no body: HEAD, 1xx, 204, 304
BODY_RAW = 1  # forwarded as received (Content-Length, or until close to an HTTP/1.0 client)
BODY_CHUNKED = 2  # re-framed as chunks (the backend's chunks, or a body without a length)
